"""The room's run records: one small JSON file per training run, what the results board pools.

A record says who trained (the seat), with which recipe (experiment group, seed, profile), how
training went (the per-epoch training and validation curves) and where it ended (the final
validation metrics, with their intervals)::

    {"format": "hello-dl board record", "version": 1, "kind": "participant", "seat": "seat-07",
     "group": "2A", "seed": 1234567, "profile": "conference", "run": "20250101-093000_conference_2A",
     "created": "2025-01-01T09:40:00Z", "history": {"epoch": [1, 2], "loss": [...], ...},
     "metrics": {"val_accuracy": {"value": 0.9, "correct": 9, "images": 10, "low": ..., "high": ...}, ...}}

Records live as one file each, named after their key (:func:`record_key`): the seat, or
``reference-<group>`` for the instructor's reference run of a group. Writing a record replaces the
file of that key and no other, in one atomic step, so many seats writing at once lose nothing and
a reader never sees half a record. The same folder layout serves the hub's store
(:mod:`hello_dl.room.store`) and a folder of exported files collected by the instructor.

Plain Python only (no NumPy): the hub's image, which has no training stack, reads and checks
records with this module.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hello_dl import groups
from hello_dl.errors import HelloDLError
from hello_dl.runs import write_atomic

FORMAT = "hello-dl board record"
VERSION = 1
PARTICIPANT, REFERENCE = "participant", "reference"
SUFFIX = ".json"
#: The store's address for records, below the service's own (``/services/room-board/api/records``).
RECORDS_PATH = "api/records"
#: Curves a record carries, one value per epoch (others in a run's history are left out).
CURVES = ("epoch", "phase", "loss", "accuracy", "val_loss", "val_accuracy")
REQUIRED_CURVES = ("loss", "val_loss")
MAX_EPOCHS = 1000
MAX_TEXT = 200
#: A record is a few kilobytes; anything much larger is not one (and is refused before parsing).
MAX_BYTES = 256 * 1024
_KEY = re.compile(r"^[a-z0-9][a-z0-9._-]{0,79}$")


class RecordError(HelloDLError):
    """A record that cannot be used; the message names where it came from and why."""


def record_key(record: dict[str, Any]) -> str:
    """The name a record is kept under: ``reference-2a``, the seat (``seat-07``, ``7``), or the run."""
    if record.get("kind") == REFERENCE:
        return f"reference-{str(record['group']).lower()}"
    who = str(record.get("seat") or "") or f"run-{record.get('run') or ''}"
    key = re.sub(r"[^a-z0-9._-]+", "-", who.strip().lower()).strip("-.") or "run"
    return key[:80]


def file_name(record: dict[str, Any]) -> str:
    return record_key(record) + SUFFIX


def is_valid_key(key: str) -> bool:
    return bool(_KEY.match(key or ""))


# --- checking a record -----------------------------------------------------------------------------
def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not a number a record may hold")


def parse(text: str | bytes, where: str) -> dict[str, Any]:
    """A record from JSON text, checked (:func:`validate`); ``where`` names its source in any error."""
    if len(text) > MAX_BYTES:
        raise RecordError(f"{where} is {len(text) // 1024} KB, far larger than a board record (a few KB): "
                          "it is not one. Export the record again with `hello-dl room export`.")
    try:
        data = json.loads(text, parse_constant=_no_constants)  # NaN and Infinity are refused
    except (ValueError, UnicodeDecodeError) as exc:
        raise RecordError(f"{where} is not a readable board record ({exc}). It is damaged or is another "
                          "kind of file: export it again with `hello-dl room export`.") from None
    return validate(data, where)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _plain_value(value: Any, depth: int = 0) -> bool:
    if value is None or _number(value) or isinstance(value, bool):
        return True
    if isinstance(value, str):
        return len(value) <= MAX_TEXT
    if isinstance(value, dict) and depth < 2:
        return len(value) <= 50 and all(isinstance(k, str) and _plain_value(v, depth + 1) for k, v in value.items())
    if isinstance(value, list) and depth < 2:
        return len(value) <= 50 and all(_plain_value(v, depth + 1) for v in value)
    return False


def validate(data: Any, where: str) -> dict[str, Any]:
    """``data`` if it is a complete, sane board record; else a :class:`RecordError` naming ``where``."""
    fix = "Export it again with `hello-dl room export` (after a finished run of notebook 04)."

    def refuse(why: str) -> RecordError:
        return RecordError(f"{where} is not a usable board record: {why}. {fix}")

    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise refuse(f"it does not say format {FORMAT!r}")
    if data.get("version") != VERSION:
        raise refuse(f"it has version {data.get('version')!r}; this kit reads version {VERSION}")
    if data.get("kind") not in (PARTICIPANT, REFERENCE):
        raise refuse(f"its kind is {data.get('kind')!r}, not {PARTICIPANT!r} or {REFERENCE!r}")
    try:
        group = groups.normalise_group(str(data.get("group", "")))
    except groups.GroupError:
        raise refuse(f"its experiment group {data.get('group')!r} is not one of {', '.join(groups.GROUPS)}") from None
    for name in ("seat", "profile", "run", "created"):
        if not isinstance(data.get(name, ""), str) or len(data.get(name, "")) > MAX_TEXT:
            raise refuse(f"its {name} is not a short text")
    if not isinstance(data.get("seed"), int) or isinstance(data.get("seed"), bool):
        raise refuse("its seed is not a whole number")
    history = data.get("history")
    if not isinstance(history, dict):
        raise refuse("it has no per-epoch history")
    lengths = set()
    for name, values in history.items():
        if name not in CURVES:
            raise refuse(f"its history has an unknown curve {name!r}")
        if not isinstance(values, list) or not 1 <= len(values) <= MAX_EPOCHS or not all(map(_number, values)):
            raise refuse(f"its {name} curve is not a list of finite numbers, one per epoch")
        lengths.add(len(values))
    missing = [name for name in REQUIRED_CURVES if name not in history]
    if missing:
        raise refuse(f"its history lacks {', '.join(missing)}")
    if len(lengths) != 1:
        raise refuse("its curves do not all have one value per epoch")
    if not _plain_value(data.get("recipe", {})) or not isinstance(data.get("recipe", {}), dict):
        raise refuse("its recipe is not a short list of plain settings")
    metrics = data.get("metrics")
    if not isinstance(metrics, dict) or not _plain_value(metrics):
        raise refuse("its final metrics are missing or not plain numbers")
    return {**data, "group": group}


def gap(record: dict[str, Any], measure: str = "loss") -> float | None:
    """A run's gap between training and validation at its last epoch; above 0: better on the training images.

    ``loss``: validation loss − training loss. ``accuracy``: training − validation accuracy, in
    percentage points. ``None`` when the record lacks the curves for it.
    """
    history = record["history"]
    try:
        if measure == "loss":
            return float(history["val_loss"][-1]) - float(history["loss"][-1])
        return 100.0 * (float(history["accuracy"][-1]) - float(history["val_accuracy"][-1]))
    except (KeyError, IndexError):
        return None


# --- a folder of records -----------------------------------------------------------------------------
def write_record(record: dict[str, Any], folder: str | Path) -> Path:
    """Write ``record`` into ``folder`` as ``<key>.json``, replacing only that key's file, atomically."""
    checked = validate(record, "the record to write")
    return write_atomic(Path(folder) / file_name(checked), json.dumps(checked, indent=1) + "\n")


@dataclass
class Collected:
    """The usable records of a folder (key → record) and a note for each file that was skipped."""

    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, record: dict[str, Any]) -> None:
        """Keep ``record`` unless a newer one of the same key is already there."""
        key = record_key(record)
        kept = self.records.get(key)
        if kept is None or str(record.get("created", "")) >= str(kept.get("created", "")):
            self.records[key] = record


def read_folder(folder: str | Path) -> Collected:
    """Every record file in ``folder`` (not below it); damaged or foreign files are skipped with a note.

    Files of one key from several copies (a seat exported twice) give the newest record.
    A folder that does not exist yet is simply empty.
    """
    folder = Path(folder)
    found = Collected()
    if not folder.is_dir():
        return found
    for path in sorted(folder.glob("*" + SUFFIX)):
        if path.name.startswith(".") or not path.is_file():
            continue  # a write in progress (write_atomic's temporary) or a stray folder
        try:
            found.add(parse(path.read_bytes(), str(path)))
        except RecordError as exc:
            found.notes.append(f"Skipped {exc}")
        except OSError as exc:
            found.notes.append(f"Skipped {path}: it cannot be read ({exc.strerror or exc}).")
    return found


__all__ = [
    "CURVES", "Collected", "FORMAT", "MAX_BYTES", "PARTICIPANT", "RECORDS_PATH", "REFERENCE", "RecordError", "VERSION",
    "file_name", "gap", "is_valid_key", "parse", "read_folder", "record_key", "validate", "write_record",
]
