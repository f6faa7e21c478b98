"""The room's results board: every participant's run, pooled into one picture of the four groups.

The randomised experiment of Wiggins et al. (2021) only means something when the room's runs are
put side by side. Each finished training run becomes a small record (:mod:`hello_dl.room.records`)
and goes to the room's board:

* on the room server, to the store the hub runs (:mod:`hello_dl.room.store`): the hub tells each
  participant's container where it is (``HELLO_DL_BOARD=http://…/services/room-board/``) and
  the container's own hub token proves whose record it is;
* anywhere else (laptops, Docker, cloud notebooks), to a folder: ``<output_dir>/board/`` unless
  ``HELLO_DL_BOARD`` names another (a shared drive). ``hello-dl room export`` writes the file
  there; the instructor collects the files into one folder and points the board at it.

The board then shows, per group, every run's gap between training and validation at the last
epoch as a spread (one dot per run, the mean with its 95 % interval), the viewer's own run
highlighted, how many runs each group has, and the instructor's reference runs as their own series
labelled "reference" (so an empty room still shows all four groups). :func:`for_lesson` is
notebook 05's one call; :func:`watch` is the instructor's live view (``hello-dl room board``).
"""

from __future__ import annotations

import html
import json
import math
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping

from hello_dl import groups, plots, runs, stats
from hello_dl.errors import HelloDLError
from hello_dl.room import records
from hello_dl.settings import Settings

#: Where the room's board is: a folder, or the hub store's address (the hub sets it in each container).
BOARD_VARIABLE = "HELLO_DL_BOARD"
#: The default board folder, inside the outputs folder.
FOLDER = "board"
#: On the room server: who is signed in, and the token that proves it (JupyterHub sets both).
HUB_USER_VARIABLE, HUB_TOKEN_VARIABLE = "JUPYTERHUB_USER", "JUPYTERHUB_API_TOKEN"
#: The knobs a record states beside its group, so runs of different recipes are not pooled unseen.
RECIPE = ("image_size", "warmup_epochs", "finetune_epochs", "weights", "augment", "dropout")
TIMEOUT_SECONDS = 20
VIEW_FIGURE, VIEW_PAGE = "board.png", "board.html"

#: The measures a board can show: how each is computed from a record's last epoch, and its axis label.
MEASURES = {
    "loss": ("validation loss − training loss at the last epoch\n(above 0: it does better on the training "
             "images)"),
    "accuracy": ("training accuracy − validation accuracy at the last epoch\n(percentage points; above 0: "
                 "better on the training images)"),
}


class BoardError(HelloDLError):
    """The room's board cannot be reached or refused a record; the message says what to do."""


# --- a run's record ----------------------------------------------------------------------------------
def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _finished_at(folder: Path) -> str:
    marker = folder / runs.FINISHED if (folder / runs.FINISHED).is_file() else folder / runs.METRICS
    stamp = marker.stat().st_mtime if marker.is_file() else folder.stat().st_mtime
    return datetime.fromtimestamp(stamp, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _intervals(run: runs.Run, metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The run's final validation numbers, each with its 95 % interval (hello_dl.stats)."""
    images = int(metrics.get("val_images") or 0)
    out: dict[str, Any] = {"val_loss": metrics.get("val_loss"), "val_images": images,
                           "train_images": metrics.get("train_images"), "best_epoch": metrics.get("best_epoch"),
                           "epochs_run": metrics.get("epochs_run")}
    if images and metrics.get("val_accuracy") is not None:
        correct = int(round(float(metrics["val_accuracy"]) * images))
        out["val_accuracy"] = stats.Proportion(correct, images).as_dict()
    evaluation = run.folder / runs.EVALUATION
    try:
        predictions = json.loads(evaluation.read_text())["predictions"]
        names = list(run.settings.class_names)
        truth = [names.index(p["true"]) for p in predictions]
        auc = stats.auc_interval(truth, [float(p["probability"]) for p in predictions], seed=run.settings.seed)
    except (OSError, ValueError, KeyError, TypeError):
        auc = None  # an old run without its predictions: the AUC stays out rather than without interval
    if auc is not None:
        out["val_auc"] = auc.as_dict()
    return out


def record_of_run(run: runs.Run, *, kind: str = records.PARTICIPANT, seat: str | None = None,
                  group: str | None = None) -> dict[str, Any]:
    """The board record of a finished run: seat, group, seed, per-epoch curves, final metrics with intervals.

    A reference run needs only its history (instructors may hand out just ``history.json``);
    ``group`` then says whose reference it is when the folder does not.
    """
    reference = kind == records.REFERENCE
    if not reference and not run.finished:
        raise BoardError(f"The run in {run.folder} has not finished (no {runs.FINISHED} marker), so it cannot go "
                         "on the room's board. Let notebook 04 run to the end, then try again.")
    metrics = run.metrics if (run.folder / runs.METRICS).is_file() else {}
    group = str(group or metrics.get("experiment_group") or run.settings.experiment_group or "")
    if not group:
        raise BoardError(f"The run in {run.folder} belongs to no experiment group (no seat or group card was set "
                         "when it was trained), so it has no place on the room's board. Type your seat number "
                         "(PARTICIPANT) or group card (GROUP) in notebook 04 and train again.")
    history = run.history
    record = {
        "format": records.FORMAT, "version": records.VERSION, "kind": kind,
        "seat": "" if reference else str(seat if seat is not None else _seat(run.settings)),
        "group": group, "seed": int(metrics.get("seed", run.settings.seed)), "profile": run.settings.profile,
        "run": run.name, "created": _finished_at(run.folder),
        "recipe": {name: _short(getattr(run.settings, name)) for name in RECIPE},
        "history": {name: [int(v) if name in ("epoch", "phase") else float(v) for v in history[name]]
                    for name in records.CURVES if name in history},
        "metrics": _intervals(run, metrics) if metrics else {},
    }
    return records.validate(record, f"the record of {run.folder}")


def _short(value: Any) -> Any:
    return value[:records.MAX_TEXT] if isinstance(value, str) else value


def _seat(settings: Settings) -> str:
    """Who this is on the room's board: the hub's user name on the room server, else the seat typed in."""
    return os.environ.get(HUB_USER_VARIABLE) or groups.seat_key(settings.participant or "")


# --- where the board is ------------------------------------------------------------------------------
@dataclass
class FolderBoard:
    """A board kept as one record file per run in ``folder`` (a laptop, or the instructor's collection)."""

    folder: Path

    def describe(self) -> str:
        return f"the folder {self.folder}"

    def put(self, record: dict[str, Any]) -> str:
        path = records.write_record(record, self.folder)
        return f"written to {path}"

    def collect(self) -> records.Collected:
        return records.read_folder(self.folder)


@dataclass
class HubBoard:
    """The store the room's hub runs (:mod:`hello_dl.room.store`), reached with a hub token."""

    url: str
    token: str = field(repr=False)

    def describe(self) -> str:
        return f"the room server's board ({self.url})"

    def _call(self, method: str, path: str, body: bytes | None = None) -> Any:
        request = urllib.request.Request(self.url.rstrip("/") + "/" + path, data=body, method=method, headers={
            "Authorization": f"token {self.token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as answer:
                return json.loads(answer.read(records.MAX_BYTES * 200) or b"null")
        except urllib.error.HTTPError as exc:
            try:
                why = json.loads(exc.read(4096)).get("message", "")
            except (ValueError, AttributeError):
                why = ""
            raise BoardError(f"The room's board at {self.url} refused the request ({exc.code} {exc.reason}"
                             f"{': ' + why if why else ''}). If you are signed in with your own seat card, "
                             "tell the instructor.") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise BoardError(f"The room's board at {self.url} does not answer ({reason}). Run the cell again in a "
                             "minute; if it keeps failing, tell the instructor.") from None

    def put(self, record: dict[str, Any]) -> str:
        key = records.record_key(record)
        self._call("PUT", f"{records.RECORDS_PATH}/{key}", json.dumps(record).encode("utf-8"))
        return f"sent to {self.describe()}"

    def collect(self) -> records.Collected:
        answer = self._call("GET", records.RECORDS_PATH)
        found = records.Collected(notes=[f"The board skipped {note}" for note in answer.get("skipped", [])])
        for index, data in enumerate(answer.get("records", [])):
            try:
                found.add(records.validate(data, f"record {index + 1} from {self.url}"))
            except records.RecordError as exc:
                found.notes.append(f"Skipped {exc}")
        return found


def local_folder(settings: Settings) -> Path:
    """This computer's board folder: ``HELLO_DL_BOARD`` when it names a folder, else ``<output_dir>/board``."""
    named = os.environ.get(BOARD_VARIABLE, "").strip()
    if named and not named.startswith(("http://", "https://")):
        return Path(named).expanduser()
    return Path(settings.output_dir) / FOLDER


def locate(settings: Settings, where: str | Path | None = None, token: str | None = None) -> FolderBoard | HubBoard:
    """The board to use: ``where`` (a folder or the hub store's address), else ``HELLO_DL_BOARD``, else the folder."""
    target = str(where if where is not None else os.environ.get(BOARD_VARIABLE, "")).strip()
    if target.startswith(("http://", "https://")):
        token = token or os.environ.get(HUB_TOKEN_VARIABLE, "")
        if not token:
            raise BoardError(f"The room's board at {target} needs a hub token: on the room server it is there by "
                             f"itself; elsewhere make one on the hub's token page (/hub/token) and give it with "
                             f"--token-file or {HUB_TOKEN_VARIABLE}.")
        return HubBoard(target.rstrip("/") + "/", token)
    return FolderBoard(Path(target).expanduser() if target else local_folder(settings))


# --- the board's numbers --------------------------------------------------------------------------------
def mean_interval(values: list[float]) -> stats.Estimate | None:
    """The mean of a group's runs with its 95 % interval (Student's t); no interval from fewer than two runs."""
    if not values:
        return None
    mean = sum(values) / len(values)
    if len(values) < 2:
        return stats.Estimate(mean, math.nan, math.nan, "one run: no interval")
    from scipy.stats import t  # scikit-learn's own dependency; imported here to keep start-up fast

    spread = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    half = float(t.ppf(0.975, len(values) - 1)) * spread / math.sqrt(len(values))
    return stats.Estimate(mean, mean - half, mean + half, f"Student's t interval of the mean of {len(values)} runs")


@dataclass
class Board:
    """The pooled records of the room, ready to count, read and draw."""

    records: dict[str, dict[str, Any]]
    source: str
    notes: list[str] = field(default_factory=list)
    own: str | None = None  # the key of the viewer's own record, highlighted
    shared: str = ""  # what happened to the viewer's own record

    def participants(self, group: str) -> list[dict[str, Any]]:
        return [r for r in self.records.values() if r["kind"] == records.PARTICIPANT and r["group"] == group]

    def references(self, group: str) -> list[dict[str, Any]]:
        return [r for r in self.records.values() if r["kind"] == records.REFERENCE and r["group"] == group]

    @property
    def counts(self) -> dict[str, int]:
        """Participants' runs per group so far (reference runs not counted)."""
        return {group: len(self.participants(group)) for group in groups.GROUPS}

    def values(self, measure: str = "loss") -> dict[str, list[float]]:
        return {group: [v for v in (records.gap(r, measure) for r in self.participants(group)) if v is not None]
                for group in groups.GROUPS}

    def summary(self, measure: str = "loss") -> str:
        counts = self.counts
        with_reference = [g for g in groups.GROUPS if self.references(g)]
        lines = [f"The room's board ({self.source}): {sum(counts.values())} participant run(s) so far: "
                 + ", ".join(f"{group} {count}" for group, count in counts.items()) + "."]
        lines.append(f"Reference runs (the instructor's): {', '.join(with_reference)}." if with_reference else
                     "No reference runs yet (the instructor makes them with `hello-dl reference`).")
        mine = self.records.get(self.own or "")
        if mine is not None:
            unit = "" if measure == "loss" else " points"
            who = f"seat {mine['seat']}" if mine["seat"] else mine["run"]
            lines.append(f"Your run ({who}, group {mine['group']}, seed {mine['seed']}): "
                         f"gap {records.gap(mine, measure):+.2f}{unit}.")
        mixed = self.mixed_recipes()
        if mixed:
            lines.append(f"Not every run used the same recipe ({mixed}): compare such runs with care.")
        if self.shared:
            lines.append(self.shared)
        return "\n".join(lines + self.notes)

    def mixed_recipes(self) -> str:
        """The knobs other than the group's own in which the runs differ (e.g. a smaller recipe on a slow laptop)."""
        differing = []
        for name in RECIPE:
            if name in ("augment", "dropout"):
                continue  # these are what the groups differ in, on purpose
            seen = sorted({str(r.get("recipe", {}).get(name)) for r in self.records.values()
                           if r.get("recipe", {}).get(name) is not None})
            if len(seen) > 1:
                differing.append(f"{name.replace('_', ' ')} {', '.join(seen)}")
        return "; ".join(differing)

    def reading(self) -> str:
        """One plain paragraph: what a difference between the groups does and does not show, with these numbers."""
        counts = [c for c in self.counts.values()]
        images = sorted({int(r["metrics"].get("val_images") or 0) for r in self.records.values()} - {0})
        scored = f"{images[0]} validation images" if len(images) == 1 else "the same few validation images"
        if max(counts, default=0) < 2:
            size = ("So far no group has two runs of its own, so there is no interval yet: one dot per group "
                    "says nothing about the recipe, only about that one run.")
        else:
            many = f"{min(counts)}" if min(counts) == max(counts) else f"{min(counts)}–{max(counts)}"
            size = (f"With {many} runs per group, every run scored on {scored}, the bars "
                    "(95 % intervals of each group's mean) are wide.")
        return (f"What this shows, and what it does not. {size} Runs of one recipe differ by chance alone "
                "(their seeds, the order of the images, the random augmentations); the dots of one group show "
                "how much. Where two groups' intervals overlap widely, this room cannot tell the recipes "
                "apart, whatever the means say. Where they clearly do not overlap, the recipes probably do "
                "differ, but only on these 65 training images and this one validation split, not yet on other "
                "patients or hospitals. And dropout and augmentation act only while training: they make the "
                "training numbers themselves worse, so part of a smaller gap in groups 1 and A comes from that, "
                "not from a better network on new images.")

    def figure(self, measure: str = "loss", *, save_path: str | Path | None = None):
        """The board as a figure: one column per group, a dot per run, mean and 95 % interval, yours marked."""
        if measure not in MEASURES:
            raise BoardError(f"The board shows the gap in {' or '.join(MEASURES)}, not {measure!r}.")
        values = self.values(measure)
        intervals = {}
        for group, found in values.items():
            estimate = mean_interval(found)
            if estimate is not None:
                intervals[group] = (estimate.value, estimate.low, estimate.high)
        reference = {g: [v for v in (records.gap(r, measure) for r in self.references(g)) if v is not None]
                     for g in groups.GROUPS}
        mine = self.records.get(self.own or "")
        highlight = (mine["group"], records.gap(mine, measure)) if mine is not None and records.gap(mine, measure) is not None \
            else None
        labels = {g: f"{g}\n{groups.GROUP_MEANING[g[0]].replace('augmentation', 'augment.')}\n"
                     f"{groups.GROUP_MEANING[g[1]]}\n{len(values[g])} run{'s' if len(values[g]) != 1 else ''}"
                  for g in groups.GROUPS}
        return plots.plot_group_spread(values, reference=reference, intervals=intervals, highlight=highlight,
                                       labels=labels, ylabel=MEASURES[measure], save_path=save_path,
                                       title="The room's experiment: the gap between training and validation, "
                                             "per group")


# --- pooling, sharing --------------------------------------------------------------------------------------
def reference_records(references: Mapping[str, str | Path]) -> list[dict[str, Any]]:
    """Records of the instructor's reference runs (group → run folder, as ``reference.reference_runs`` gives)."""
    return [record_of_run(runs.open_run(folder), kind=records.REFERENCE, group=group)
            for group, folder in references.items()]


def pool(settings: Settings, *, references: Mapping[str, str | Path] | None = None,
         where: str | Path | None = None, token: str | None = None, own: str | None = None) -> Board:
    """Everyone's records from the board (hub store or folder), plus the local reference runs."""
    board = locate(settings, where, token)
    found = board.collect()
    for record in reference_records(references or {}):
        found.add(record)
    return Board(found.records, board.describe(), found.notes, own)


def share(run: runs.Run, settings: Settings, *, references: Mapping[str, str | Path] | None = None,
          where: str | Path | None = None, token: str | None = None) -> tuple[str | None, str]:
    """Put ``run``'s record on the room's board; returns (its key, what happened, in one sentence).

    On the room server the record goes to the hub's store and a copy to this computer's board folder
    (the file ``hello-dl room export`` writes); elsewhere into the board folder. The instructor's
    reference run (the catch-up path) is never shared as the participant's own.
    """
    folders = {Path(path).resolve() for path in (references or {}).values()}
    if getattr(run, "own", True) is False or run.folder.resolve() in folders:  # a lesson's catch-up run, too
        return None, ("This is the instructor's reference run, not your own, so it is not added to the board "
                      "as yours (it is there as the group's reference).")
    try:
        record = record_of_run(run)
    except BoardError as exc:
        return None, str(exc)
    key = records.record_key(record)
    board = locate(settings, where, token)
    done = board.put(record)
    if isinstance(board, HubBoard):
        copy = records.write_record(record, local_folder(settings))
        done += f"; a copy is in {copy}"
    return key, f"Your run {run.name} (group {record['group']}) is on the board: {done}."


def share_references(settings: Settings, references: Mapping[str, str | Path], *, where: str | Path | None = None,
                     token: str | None = None) -> list[str]:
    """Put the instructor's reference runs on the board (on the hub: with the instructor's token)."""
    board = locate(settings, where, token)
    return [f"Reference run of group {record['group']} ({record['run']}) {board.put(record)}."
            for record in reference_records(references)]


def for_lesson(run: runs.Run, settings: Settings, references: Mapping[str, str | Path] | None = None) -> Board:
    """Notebook 05's one call: share your run with the room, then pool everyone's runs into the board."""
    key, said = share(run, settings, references=references)
    board = pool(settings, references=references, own=key)
    board.shared = said
    return board


# --- the instructor's live view -------------------------------------------------------------------------------
def write_view(board: Board, folder: str | Path, measure: str = "loss", *, refresh_seconds: int = 0) -> Path:
    """Write the board as ``board.png`` and a page ``board.html`` (reloading itself) into ``folder``."""
    folder = Path(folder)
    board.figure(measure, save_path=folder / VIEW_FIGURE)
    e = html.escape
    reload = f'<meta http-equiv="refresh" content="{int(refresh_seconds)}">' if refresh_seconds else ""
    rows = "".join(f"<tr><td>{e(g)}</td><td>{e(groups.describe_group(g))}</td><td>{n}</td>"
                   f"<td>{len(board.references(g))}</td></tr>" for g, n in board.counts.items())
    notes = "".join(f"<li>{e(note)}</li>" for note in board.notes)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">{reload}<title>The room's board</title>
<style>body {{ font-family: "DejaVu Sans", Arial, sans-serif; margin: 2em; max-width: 70em; }}
img {{ max-width: 100%; }} td, th {{ padding: 0.2em 1em; text-align: left; }}</style></head>
<body><h1>The room's experiment</h1>
<p>{e(board.source)}; updated {e(datetime.now().strftime('%H:%M:%S'))}{', every ' + str(refresh_seconds) + ' s' if refresh_seconds else ''}.</p>
<img src="{VIEW_FIGURE}?{int(time.time())}" alt="The gap between training and validation of every run, per group">
<table><tr><th>group</th><th>recipe</th><th>runs</th><th>reference</th></tr>{rows}</table>
<p>{e(board.reading())}</p>
{'<ul>' + notes + '</ul>' if notes else ''}
</body></html>
"""
    return runs.write_atomic(folder / VIEW_PAGE, page)


def watch(settings: Settings, out: str | Path, *, references: Mapping[str, str | Path] | None = None,
          where: str | Path | None = None, token: str | None = None, measure: str = "loss", every: float = 0,
          minutes: float = 90, rounds: int | None = None, echo: Callable[[str], None] = print) -> Board | None:
    """The instructor's live view: pool, write ``board.png`` and ``board.html`` into ``out``; with ``every``
    seconds, again and again until ``minutes`` have passed, ``rounds`` views are written, or Ctrl-C.

    While repeating, a board that does not answer for a moment is said and tried again.
    """
    stop = time.monotonic() + minutes * 60
    board, written = None, 0
    while True:
        try:
            board = pool(settings, references=references, where=where, token=token)
            page = write_view(board, out, measure, refresh_seconds=int(math.ceil(every)))
            written += 1
            echo(f"[{datetime.now():%H:%M:%S}] {sum(board.counts.values())} run(s): "
                 + ", ".join(f"{g} {n}" for g, n in board.counts.items()) + f" → {page}")
            for note in board.notes:
                echo("  " + note)
        except BoardError as exc:
            if not every:
                raise
            echo(f"[{datetime.now():%H:%M:%S}] {exc} Trying again in {every:g} s.")
        if not every or (rounds is not None and written >= rounds) or time.monotonic() + every > stop:
            return board
        time.sleep(every)


__all__ = [
    "BOARD_VARIABLE", "Board", "BoardError", "FOLDER", "FolderBoard", "HubBoard", "MEASURES",
    "for_lesson", "local_folder", "locate", "mean_interval", "pool", "record_of_run", "reference_records",
    "share", "share_references", "watch", "write_view",
]
