"""The run folder's owner, and the kit's one way of writing files safely.

This first part is the writer every module uses (run folders, figures, executed notebooks,
fetched data, splits, DICOM exports, downloaded weights):

* :func:`write_atomic` writes text, bytes or JSON to a temporary file in the target's own
  folder, flushes it to disk (``fsync``) and renames it over the target in one step. A reader
  never sees half a file; a crash or a full disk leaves the old file (or none), never a
  truncated one. ``exclusive=True`` never replaces a file that is already there.
* :func:`staging_folder` / :func:`publish_folder` do the same for a whole folder: assemble it in
  a temporary folder beside the destination, then rename it into place at once.

A full disk or a folder the user may not write to ends in a :class:`~hello_dl.errors.HelloDLError`
that names the folder and the fix, never in a raw ``OSError`` traceback.

The second part owns the run folder: its file names, creating one, marking it finished, finding
the finished runs and the latest one, and opening one as a :class:`Run` (its folder, the settings
it was trained with, its model, history and metrics)::

    run = runs.latest(settings)        # the newest finished run, or "run notebook 04 first"
    run.model                          # loaded on first use, in Keras' safe mode
    run.settings                       # as trained (image size, classes ...), your folders and threshold
    run.history, run.metrics           # per-epoch history, the final numbers
"""

from __future__ import annotations

import contextlib
import csv
import errno
import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from hello_dl.errors import DataError, HelloDLError
from hello_dl.settings import Settings, load_settings, settings_from_json

if TYPE_CHECKING:  # pragma: no cover
    import keras  # here, not at the top: TensorFlow takes seconds to load


class StorageError(HelloDLError):
    """A file or folder could not be written: disk full, read-only, no permission."""


def _plain(value: Any) -> Any:
    """JSON fallback for NumPy scalars and arrays, paths and anything else printable."""
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def json_text(data: Any) -> str:
    """The kit's JSON layout: indented, NumPy values made plain, a final newline."""
    return json.dumps(data, indent=2, default=_plain) + "\n"


def _users_folder(path: Path) -> Path:
    """The folder to name for a write to ``path``: above any temporary staging folder (it is gone by then)."""
    folder = Path(path).parent
    for depth, part in enumerate(folder.parts):
        if part.startswith(".") and ".partial-" in part:
            return Path(*folder.parts[:depth])
    return folder


def storage_error(exc: OSError, path: Path, needed_bytes: int | None = None) -> HelloDLError:
    """A plain-words error for an OS failure while writing ``path`` (or the original error's text)."""
    folder = _users_folder(Path(path))
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        need = f" (this needs about {needed_bytes / 1e6:.0f} MB free)" if needed_bytes else ""
        return StorageError(f"No space left on the disk that holds {folder}{need}. Free some space there, or "
                            f"choose a folder on a disk with room, and run again. Nothing half-written was kept.")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return StorageError(f"The folder {folder} cannot be written to ({exc.strerror}). Choose a folder you "
                            f"may write to (HELLO_DL_OUTPUT_DIR for runs, HELLO_DL_DATA_DIR for the data, or "
                            f"the folder given on the command line), or ask whoever owns {folder} to make it "
                            f"writable.")
    return StorageError(f"Could not write {path}: {exc.strerror or exc}.")


def _fsync_folder(folder: Path) -> None:
    # Makes the rename itself survive a power cut; not every file system allows it, and that is fine.
    with contextlib.suppress(OSError):
        handle = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)


def write_atomic(path: str | Path, data: str | bytes | Any, *, exclusive: bool = False) -> Path:
    """Write ``data`` to ``path`` all at once: ``str`` as UTF-8 text, ``bytes`` as is, anything else as JSON.

    With ``exclusive=True`` an existing ``path`` is left as it is and :class:`FileExistsError`
    is raised (a file that appeared meanwhile is never replaced either).
    """
    path = Path(path)
    payload = data if isinstance(data, bytes) else (data if isinstance(data, str) else json_text(data)).encode("utf-8")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    except OSError as exc:
        raise storage_error(exc, path, len(payload)) from None
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(payload)
            out.flush()
            os.fsync(out.fileno())
        # mkstemp makes the file private (0600); give it the mode any new file of this user gets.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        if exclusive:
            os.link(temporary, path)  # refuses an existing target, atomically
        else:
            os.replace(temporary, path)
    except FileExistsError:
        raise
    except OSError as exc:
        raise storage_error(exc, path, len(payload)) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
    _fsync_folder(path.parent)
    return path


def write_json(path: str | Path, data: Any) -> Path:
    """:func:`write_atomic` for JSON (kept as its own name because most run files are JSON)."""
    return write_atomic(path, json_text(data))


@contextlib.contextmanager
def staging_folder(destination: str | Path) -> Iterator[Path]:
    """A new temporary folder beside ``destination`` (same disk), removed when the block ends.

    Build the result inside it, then move it into place with :func:`publish_folder`; whatever
    happens in between, nothing is left behind and ``destination`` is never half-filled.
    """
    destination = Path(destination)
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.partial-", dir=destination.parent))
        # mkdtemp makes the folder private (0700); once published it needs the mode any new folder gets.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, 0o777 & ~umask)
    except OSError as exc:
        raise storage_error(exc, destination) from None
    try:
        yield staging
    except OSError as exc:
        # Only a failure to write inside the staging folder is a storage problem (full disk,
        # permissions); anything else, such as an unreadable source file, keeps its own message.
        # (A copy names its source first: the name to report is the one inside the staging folder.)
        written = [Path(name) for name in (exc.filename, getattr(exc, "filename2", None)) if name]
        inside = [name for name in written if name.resolve().is_relative_to(staging.resolve())]
        if inside:
            raise storage_error(exc, inside[0]) from None
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def publish_folder(ready: str | Path, destination: str | Path) -> Path:
    """Rename the finished folder ``ready`` to ``destination`` in one step (both on the same disk).

    An existing ``destination`` is never replaced: :class:`FileExistsError` is raised instead.
    """
    ready, destination = Path(ready), Path(destination)
    if destination.exists():
        raise FileExistsError(errno.EEXIST, "already exists", str(destination))
    try:
        os.rename(ready, destination)
    except OSError as exc:
        if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
            raise FileExistsError(errno.EEXIST, "already exists", str(destination)) from None
        raise storage_error(exc, destination) from None
    _fsync_folder(destination.parent)
    return destination


def save_model(model: "keras.Model", path: str | Path, *, needed_bytes: int | None = None) -> Path:
    """Save a Keras model to ``path`` (``.keras``) all at once: temporary file beside it, fsync, rename.

    Keras writes the file itself (it needs a file name ending in ``.keras``), so this is the
    model's counterpart of :func:`write_atomic`: a reader never loads half a model. A full disk
    ends in :func:`storage_error`, which names ``needed_bytes`` (about the file's size) if given.
    """
    path = Path(path)
    temporary = path.with_name(f".{path.stem}.{os.getpid()}.partial{path.suffix}")
    try:
        model.save(temporary)
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as exc:
        raise storage_error(exc, path, needed_bytes) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
    _fsync_folder(path.parent)
    return path


# --- the run folder ----------------------------------------------------------------------------------
#: The files of a run folder (see :mod:`hello_dl.train` for what writes each).
BEST_MODEL = "best_model.keras"
HISTORY_JSON = "history.json"
HISTORY_CSV = "history.csv"
METRICS = "metrics.json"
SETTINGS = "settings.json"
EVALUATION = "evaluation.json"
MODEL_CARD = "model_card.md"
FIGURES = "figures"
#: Written last, when everything else of the run is complete: only such runs count as finished.
FINISHED = "FINISHED"

#: Written into settings.json by :func:`create`; a run folder without it predates the FINISHED marker.
LAYOUT_KEY = "run_folder_layout"
LAYOUT = 2

#: What a run takes from the caller's settings rather than its own: where things are on this
#: computer, and the decision threshold (not part of the trained model).
CALLERS_KNOBS = ("data_source", "data_dir", "output_dir", "threshold")


class MissingStepError(HelloDLError):
    """A lesson needs the result of an earlier notebook that has not been run yet."""


def _stamp(now: datetime | None) -> str:
    return (now or datetime.now()).strftime("%Y%m%d-%H%M%S")


def create(settings: Settings, *, prefix: str | None = None, now: datetime | None = None) -> Path:
    """A new, empty folder under ``settings.output_dir``, with ``figures/`` in it; never an old one.

    A training run is named ``<YYYYmmdd-HHMMSS>_<profile>[_<group>]`` and gets its ``settings.json``
    at once; with ``prefix`` (the headless runner passes ``"tutorial"``) the name is
    ``<prefix>-<YYYYmmdd-HHMMSS>`` and it gets no settings.json. If the name is taken (two in the
    same second), ``-2``, ``-3``... is appended.
    """
    stamp = _stamp(now)
    name = f"{prefix}-{stamp}" if prefix else "_".join(
        part for part in (stamp, settings.profile, settings.experiment_group) if part)
    parent = Path(settings.output_dir)
    try:
        parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, 1000):
            candidate = parent / (name if attempt == 1 else f"{name}-{attempt}")
            try:
                candidate.mkdir()
            except FileExistsError:
                continue
            (candidate / FIGURES).mkdir()
            break
        else:
            raise StorageError(f"Could not create a new folder in {parent}: 999 folders named {name} exist. "
                               "Move old ones away.")
    except OSError as exc:
        raise storage_error(exc, parent / name) from None
    if not prefix:
        write_json(candidate / SETTINGS, {**json.loads(settings.to_json()), LAYOUT_KEY: LAYOUT})
    return candidate


def mark_finished(folder: str | Path) -> Path:
    """Mark a run complete: call this last, after every other file of the run is written."""
    return write_atomic(Path(folder) / FINISHED, f"finished {datetime.now().isoformat(timespec='seconds')}\n")


def _layout(folder: Path) -> int:
    try:
        return int(json.loads((folder / SETTINGS).read_text()).get(LAYOUT_KEY, 1))
    except OSError:
        return 1
    except (ValueError, AttributeError, TypeError):
        return LAYOUT  # damaged: nothing proves it is an old run, so only the FINISHED marker counts


def is_finished(folder: str | Path) -> bool:
    """True once the run's FINISHED marker is there.

    A folder of the old layout (before the marker existed) counts as finished when it holds its
    best model and its metrics, which that layout wrote only at the very end.
    """
    folder = Path(folder)
    if (folder / FINISHED).is_file():
        return True
    legacy = _layout(folder) < LAYOUT
    return legacy and (folder / BEST_MODEL).is_file() and (folder / METRICS).is_file()


def _started(folder: Path) -> float:
    marker = folder / SETTINGS
    return marker.stat().st_mtime if marker.is_file() else folder.stat().st_mtime


def list_runs(settings: Settings) -> list[Path]:
    """The finished run folders directly under ``settings.output_dir``, oldest first."""
    root = Path(settings.output_dir)
    if not root.is_dir():
        return []
    found = [folder for folder in root.iterdir() if folder.is_dir() and is_finished(folder)]
    # Folder names start with a timestamp; the settings file's time breaks ties and renames.
    return sorted(found, key=lambda folder: (_started(folder), folder.name))


def latest(settings: Settings) -> "Run":
    """The newest finished run under ``settings.output_dir``, or a plain message saying to run 04 first."""
    found = list_runs(settings)
    if not found:
        raise MissingStepError(
            f"No trained model found in {settings.output_dir}. Run notebook 04_train first (to the end, with "
            "the same settings), then run this notebook again from the top. On the command line: "
            "`hello-dl train`, or name a run folder with --run.")
    return open_run(found[-1], settings)


def open_run(folder: str | Path, settings: Settings | None = None) -> "Run":
    """The run in ``folder``, with the settings it was trained with.

    From ``settings`` (the caller's) it keeps the data and output folders and the threshold; without
    ``settings`` the run's own saved settings are used as they are.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DataError(f"{folder} is not a run folder (there is no such folder). Use a folder printed by "
                        "`hello-dl train` (they are in the outputs folder).")
    return Run(folder=folder, settings=run_settings(folder, settings))


def run_settings(folder: str | Path, caller: Settings | None = None) -> Settings:
    """The settings a run was trained with (its ``settings.json``), merged with the caller's (see :func:`open_run`)."""
    saved_file = Path(folder) / SETTINGS
    if not saved_file.is_file():
        return caller if caller is not None else load_settings()
    try:
        saved = settings_from_json(saved_file)
    except (OSError, ValueError, AttributeError, TypeError, KeyError) as exc:
        # (Not valid JSON, JSON of the wrong shape, or values no setting accepts.)
        raise DataError(f"The settings file {saved_file} cannot be read ({type(exc).__name__}: {exc}). It is "
                        f"damaged; train again, restore it from a copy, or use another run (--run).") from None
    if caller is None:
        return saved
    merged = load_settings(base=saved, **{name: getattr(caller, name) for name in CALLERS_KNOBS})
    merged.sources = {name: f"run:{Path(folder).name}" for name in merged.knobs()}
    merged.sources.update({name: caller.sources.get(name, "default") for name in CALLERS_KNOBS})
    return merged


#: The first layer of every kit model: plain 0-255 RGB in, InceptionV3's own range [-1, 1] out.
#: Part of what a saved model promises (it takes 0-255 images), so old runs are upgraded to it.
PIXEL_SCALING_LAYER = "scale_pixels_to_minus1_1"


def pixel_scaling_layer() -> "keras.layers.Layer":
    """x / 127.5 - 1 as a Keras layer: what ``keras.applications.inception_v3.preprocess_input`` computes."""
    import keras  # here, not at the top: TensorFlow takes seconds to load

    return keras.layers.Rescaling(1 / 127.5, offset=-1.0, name=PIXEL_SCALING_LAYER)


def takes_plain_pixels(model: "keras.Model") -> bool:
    """True if the model scales its own input (0-255 images in); False for a model of the old layout."""
    import keras  # here, not at the top: TensorFlow takes seconds to load

    return any(isinstance(layer, keras.layers.Rescaling) for layer in model.layers)


def with_pixel_scaling(legacy: "keras.Model", path: str | Path = "the model") -> "keras.Model":
    """An old-layout model (its callers scaled images to [-1, 1]) rebuilt to take 0-255 images.

    The same layers and weights, with the scaling layer in front: old runs predict exactly as
    they did, through the one interface every kit model now has.
    """
    import keras  # here, not at the top: TensorFlow takes seconds to load

    layers = {layer["name"]: layer for layer in legacy.get_config().get("layers", [])}
    inputs = keras.Input(shape=legacy.input_shape[1:], name=legacy.layers[0].name)
    x, previous = pixel_scaling_layer()(inputs), legacy.layers[0].name
    for layer in legacy.layers[1:]:
        node = (layers.get(layer.name, {}).get("inbound_nodes") or [{}])[0]
        sources = [arg.get("config", {}).get("keras_history", [None])[0] for arg in node.get("args", ())
                   if isinstance(arg, dict)]
        if sources != [previous]:  # not one chain of layers: not a model this kit built
            raise DataError(f"The model in {path} takes its images already scaled to [-1, 1] (the kit's old "
                            "layout) and its layers cannot be re-chained to take 0-255 images. Train again to "
                            "make a model of the current layout.")
        x = layer(x, **{k: v for k, v in (node.get("kwargs") or {}).items() if k == "training"})
        previous = layer.name
    chained = keras.Model(inputs, x, name=legacy.name)
    # The chained model shares its layers with the old one (each layer then sits in two graphs, and
    # `layer.output` would point into the old one); a clone with the same weights has only its own.
    upgraded = keras.models.clone_model(chained)
    upgraded.set_weights(chained.get_weights())
    return upgraded


def load_model(path: str | Path) -> "keras.Model":
    """A saved model, loaded in Keras' safe mode (no arbitrary code runs while loading), uncompiled.

    It always takes plain 0-255 RGB images: a model of the old layout (no scaling layer) is
    rebuilt with one (:func:`with_pixel_scaling`).
    """
    import keras  # here, not at the top: TensorFlow takes seconds to load

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist: {path.parent} is not a finished run folder (no model was saved "
                        "there, perhaps training stopped before the first epoch ended). Use a folder printed "
                        "by `hello-dl train`.")
    if not zipfile.is_zipfile(path):  # a .keras file is a zip archive; Keras would say "File not found"
        raise DataError(f"The model file {path} is damaged and cannot be read: it is not a complete Keras model "
                        "file (perhaps cut off while it was copied or saved). Train again to make a new one, or use "
                        "another run (--run).")
    try:
        model = keras.models.load_model(path, safe_mode=True, compile=False)
    except (ValueError, OSError, TypeError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"The model file {path} is damaged and cannot be read ({type(exc).__name__}: {exc}). "
                        "Train again to make a new one, or use another run (--run).") from None
    return model if takes_plain_pixels(model) else with_pixel_scaling(model, path)


def load_history(source: str | Path) -> dict[str, list]:
    """The per-epoch history of a run (folder, ``history.json`` or ``history.csv``) as lists.

    Epochs are numbered from 1. Falls back to the CSV when the JSON is missing.
    """
    source = Path(source)
    folder = source if source.is_dir() else source.parent
    # A named file is read as it is; a folder's JSON is preferred (it has the kit's extra columns).
    json_path = folder / HISTORY_JSON if source.is_dir() else source if source.suffix == ".json" else None
    csv_path = folder / HISTORY_CSV if source.is_dir() else source if source.suffix == ".csv" else None
    if json_path is not None and json_path.is_file():
        return json.loads(json_path.read_text())
    if csv_path is not None and csv_path.is_file():
        with open(csv_path, newline="") as handle:
            rows = list(csv.DictReader(handle))
        history: dict[str, list] = {}
        for row in rows:
            for key, value in row.items():
                number = float(value)
                history.setdefault(key, []).append(int(number) + 1 if key == "epoch" else number)
        return history
    raise DataError(f"No training history in {folder}: expected {HISTORY_JSON} or {HISTORY_CSV}. "
                    "Is this a run folder written by `hello-dl train`?")


def has_history(folder: str | Path) -> bool:
    folder = Path(folder)
    return (folder / HISTORY_JSON).is_file() or (folder / HISTORY_CSV).is_file()


@dataclass
class Run:
    """One run folder: ``folder``, ``settings`` (as trained), and ``model``, ``history``, ``metrics`` on demand."""

    folder: Path
    settings: Settings
    _model: Any = field(default=None, repr=False, compare=False)

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def finished(self) -> bool:
        return is_finished(self.folder)

    @property
    def best_model_path(self) -> Path:
        return self.folder / BEST_MODEL

    @property
    def figures(self) -> Path:
        return self.folder / FIGURES

    @property
    def model(self) -> "keras.Model":
        """The run's best model (loaded once, in safe mode)."""
        if self._model is None:
            self._model = load_model(self.best_model_path)
        return self._model

    @property
    def history(self) -> dict[str, list]:
        return load_history(self.folder)

    @property
    def metrics(self) -> dict[str, Any]:
        path = self.folder / METRICS
        if not path.is_file():
            raise DataError(f"{path} does not exist: the run in {self.folder} did not finish. Train again "
                            "(notebook 04 or `hello-dl train`).")
        return json.loads(path.read_text())


__all__ = [
    "BEST_MODEL", "CALLERS_KNOBS", "EVALUATION", "FIGURES", "FINISHED", "HISTORY_CSV", "HISTORY_JSON", "METRICS",
    "MODEL_CARD", "MissingStepError", "PIXEL_SCALING_LAYER", "Run", "SETTINGS", "StorageError", "create", "has_history",
    "is_finished", "json_text", "latest", "list_runs", "load_history", "load_model", "mark_finished", "open_run",
    "pixel_scaling_layer", "publish_folder", "run_settings", "save_model", "staging_folder", "storage_error",
    "takes_plain_pixels", "with_pixel_scaling", "write_atomic", "write_json",
]
