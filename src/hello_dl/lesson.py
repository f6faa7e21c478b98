"""One setup call opens every lesson: ``lesson = hello_dl.lesson.start("04")``.

It does what every notebook used to do in six cells, and says it in a few plain lines:

* pictures appear right under the cells (Matplotlib's inline mode),
* on Google Colab or Kaggle, data, weights and outputs are prepared (:mod:`hello_dl.cloud`),
* the participant's seat: typed once, in notebook 00, and remembered for the session (below),
* the settings (``print(lesson.settings)`` shows every value and where it came from),
* the data, checked file by file against the kit's checksum list,
* the seed, so chance repeats,
* GPU or CPU, in plain words.

**The seat, typed once.** Notebook 00 asks for the seat number (or the group on a card: 1A, 1B,
2A, 2B) and :func:`remember_seat` keeps it in ``<output_dir>/seat.json`` (written atomically), for
:data:`SEAT_MEMORY_HOURS` hours: one session, so the next session on a shared laptop starts
without the last person's seat. Every later notebook shows it and where to change it. The
instructor's ``HELLO_DL_EXPERIMENT_GROUP`` or ``HELLO_DL_PARTICIPANT`` (the room server sets the
latter for every seat) always wins. :func:`current_seat` is the one place that answers "which
seat is this?" for the rest of the kit.

**The catch-up path.** :meth:`Lesson.run` gives notebooks 05-07 the participant's own newest
finished run, or, when 04 was skipped or is still training, the instructor's reference run of the
participant's group (:mod:`hello_dl.reference`), clearly labelled "not your own run" in the text
and in the title of every figure the notebook then draws. :meth:`Lesson.plan_training` (notebook
04) times a few steps of the network on this computer, says how long training will take, and
picks the smaller recipe that fits the session's training slot when the full one does not.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Mapping

from hello_dl import cloud, environment, fetch, groups, reference, runs
from hello_dl.errors import HelloDLError
from hello_dl.settings import Settings, load_settings

#: The seat file, in the outputs folder (the participant's own: a Docker volume, the room server's
#: per-seat volume, or the kit's outputs/ on a laptop).
SEAT_FILE = "seat.json"
#: A remembered seat counts for this long: one session (45 minutes, plus a generous margin).
SEAT_MEMORY_HOURS = 12
#: The notebook where the seat is typed, and the variable it is typed into.
SEAT_NOTEBOOK = "00_hello_world_and_setup"
SEAT_VARIABLE = "SEAT"
#: Who sets the seat for everybody (these win over the remembered seat).
SEAT_VARIABLES = ("HELLO_DL_EXPERIMENT_GROUP", "HELLO_DL_PARTICIPANT")

#: The session's time for training (notebook 04), minutes: from "start training now" to the
#: moment the room moves on to 05 (notebooks/INSTRUCTOR_GUIDE.md, the timeline). An instructor
#: with another timeline sets HELLO_DL_TRAINING_MINUTES.
TRAINING_SLOT_MINUTES = 5.0
TRAINING_SLOT_VARIABLE = "HELLO_DL_TRAINING_MINUTES"

NOT_YOUR_OWN_RUN = "Not your own run"


class SeatError(HelloDLError, ValueError):
    """A seat that cannot be used (empty, or too long to be a seat number or name)."""


# --- the seat ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Seat:
    """Who sits here: a seat number or name (``participant``) or a group card, and where that came from."""

    text: str
    source: str  # "env:HELLO_DL_PARTICIPANT", "env:HELLO_DL_EXPERIMENT_GROUP" or "typed in notebook 00"
    saved_at: datetime | None = None

    @property
    def is_group_card(self) -> bool:
        try:
            groups.normalise_group(self.text)
        except groups.GroupError:
            return False
        return True

    @property
    def from_environment(self) -> bool:
        return self.source.startswith("env:")

    @property
    def group(self) -> str:
        return groups.normalise_group(self.text) if self.is_group_card else groups.assign_group(self.text)

    def overrides(self) -> dict[str, str]:
        """The settings keywords this seat sets (none when it comes from the environment: settings read that)."""
        if self.from_environment:
            return {}
        return {"experiment_group": self.group} if self.is_group_card else {"participant": self.text}

    def describe(self) -> str:
        who = f"group card {self.group}" if self.is_group_card else f"seat {self.text}"
        return f"{who} → {groups.describe_group(self.group)}"


def _base_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """The settings without any seat: where the outputs folder (and so the seat file) is."""
    env = dict(os.environ if environ is None else environ)
    for name in SEAT_VARIABLES:
        env.pop(name, None)
    return load_settings(environ=env)


def seat_file(settings: Settings | None = None) -> Path:
    """Where the remembered seat is kept: ``<output_dir>/seat.json``."""
    return Path((settings or _base_settings()).output_dir) / SEAT_FILE


def _clean_seat(text: Any) -> str:
    cleaned = " ".join(str(text).split())
    if not cleaned:
        raise SeatError("The seat is empty: type your seat number (or the group on your card) between the quotes.")
    if len(cleaned) > 40:
        raise SeatError(f"{cleaned[:40]!r}... is too long for a seat: type your seat number (e.g. 17), or the group "
                        "on your card (1A, 1B, 2A or 2B).")
    return cleaned


def remember_seat(text: Any, settings: Settings | None = None, *, now: datetime | None = None) -> Seat:
    """Keep the seat typed in notebook 00 for the session (atomically written ``seat.json``)."""
    cleaned = _clean_seat(text)
    saved_at = (now or datetime.now()).replace(microsecond=0)
    runs.write_json(seat_file(settings), {"seat": cleaned, "saved_at": saved_at.isoformat()})
    return Seat(cleaned, f"typed in notebook {SEAT_NOTEBOOK[:2]}", saved_at)


def forget_seat(settings: Settings | None = None) -> bool:
    """Remove the remembered seat (True if there was one)."""
    path = seat_file(settings)
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def remembered_seat(settings: Settings | None = None, *, now: datetime | None = None) -> Seat | None:
    """The seat kept by :func:`remember_seat`, if it is from this session (younger than SEAT_MEMORY_HOURS)."""
    import json

    path = seat_file(settings)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        seat = Seat(_clean_seat(data["seat"]), f"typed in notebook {SEAT_NOTEBOOK[:2]}",
                    datetime.fromisoformat(data["saved_at"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return None  # a damaged seat file is as good as none: notebook 00 asks again and rewrites it
    if (now or datetime.now()) - seat.saved_at > timedelta(hours=SEAT_MEMORY_HOURS):
        return None
    return seat


def current_seat(settings: Settings | None = None, *, environ: Mapping[str, str] | None = None,
                 now: datetime | None = None) -> Seat | None:
    """Which seat is this? The instructor's variable if set, else the seat typed in 00 this session, else None.

    This is what every lesson shows and what decides the participant's experiment group.
    """
    env = os.environ if environ is None else environ
    for name in SEAT_VARIABLES:
        value = str(env.get(name, "")).strip()
        if value:
            return Seat(value, f"env:{name}")
    return remembered_seat(settings or _base_settings(environ), now=now)


def _seat_line(seat: Seat | None, number: str, expired: bool) -> str:
    if seat is None:
        hint = (f"type it into {SEAT_VARIABLE} at the top of this notebook and run the cell again" if number == "00"
                else f"type it into {SEAT_VARIABLE} in notebook {SEAT_NOTEBOOK[:2]} (once; every notebook then knows it)")
        stale = " (the one typed earlier is more than a session old)" if expired else ""
        return f"Seat: none yet{stale}. At a conference session, {hint}; at home, no seat is needed."
    if seat.from_environment:
        return f"Seat: {seat.describe()} (set for you by the instructor, {seat.source[4:]})."
    if number == SEAT_NOTEBOOK[:2]:
        return f"Seat: {seat.describe()} (remembered for the session: to change it, type the new one above)."
    return (f"Seat: {seat.describe()} (typed in notebook {SEAT_NOTEBOOK[:2]}: to change it, type the new one "
            f"into {SEAT_VARIABLE} there and run that cell again).")


# --- figures of a catch-up run ---------------------------------------------------------------------------
def _ipython():
    try:
        from IPython import get_ipython  # only inside a notebook (or IPython) is there a shell
    except ImportError:
        return None
    return get_ipython()


def _show_figures_inline(shell) -> None:
    """What ``%matplotlib inline`` does: figures appear right under the cell that made them."""
    if shell is not None and hasattr(shell, "run_line_magic"):
        shell.run_line_magic("matplotlib", "inline")


def label_figures(banner: str | None, shell=None) -> bool:
    """Put ``banner`` above the title of every figure this notebook shows from now on (``None``: stop).

    The kit's plotting functions return Matplotlib figures, which the notebook shows through
    IPython's PNG formatter; the label is added there, so every figure of the lesson (whoever
    wrote the cell) carries it without a change to the cell. Returns False outside a notebook.
    """
    shell = shell if shell is not None else _ipython()
    if shell is None or not hasattr(shell, "display_formatter"):
        return False
    from matplotlib.figure import Figure  # here, not at the top: only a notebook needs it

    formatter = shell.display_formatter.formatters["image/png"]
    try:
        current = formatter.lookup_by_type(Figure)
    except KeyError:
        return False
    original = getattr(current, "hello_dl_original", current)
    if banner is None:
        formatter.for_type(Figure, original)
        return True

    def labelled(figure, *args, **kwargs):
        title = figure.get_suptitle()
        if not title.startswith(banner):
            figure.suptitle(f"{banner}\n{title}" if title else banner, color="#b2182b")
        return original(figure, *args, **kwargs)

    labelled.hello_dl_original = original
    formatter.for_type(Figure, labelled)
    return True


# --- the lesson --------------------------------------------------------------------------------------------
@dataclass
class LessonRun(runs.Run):
    """A run for notebooks 05-07: the participant's own, or a catch-up run (``own`` False) with its label."""

    own: bool = True
    label: str = ""


@dataclass
class TrainingPlan:
    """What notebook 04 will train, and how long it takes on this computer (an estimate, say so)."""

    settings: Settings
    estimate_seconds: float
    full_estimate_seconds: float
    slot_seconds: float
    seconds_per_batch: float
    device: str
    smaller: bool = False
    changes: dict[str, Any] = field(default_factory=dict)

    @property
    def fits(self) -> bool:
        return self.estimate_seconds <= self.slot_seconds

    def format(self) -> str:
        minutes = self.full_estimate_seconds / 60
        slot = self.slot_seconds / 60
        lines = [f"Training the {self.settings.profile} recipe here takes about {_minutes(minutes)}; the session "
                 f"gives training about {_minutes(slot)}. (An estimate from a few timed steps of the network on "
                 f"this computer's {self.device}: {self.seconds_per_batch:.2f} s per batch of "
                 f"{self.settings.batch_size} images.)"]
        if not self.smaller:
            lines.append("That fits: run the next cell and watch the progress bars." if self.full_estimate_seconds
                         <= self.slot_seconds else
                         "That is longer than the session gives, and no smaller recipe fits either: start it now, and "
                         "carry on with notebook 05 while it trains (05-07 use the instructor's run for your group "
                         "until yours is finished).")
        else:
            what = ", ".join(f"{name} {value}" for name, value in self.changes.items())
            lines.append(f"So this notebook trains the smaller recipe ({what}), about "
                         f"{_minutes(self.estimate_seconds / 60)}: it learns this task almost as well. "
                         "If you fall behind anyway, go on with notebook 05: it uses the instructor's run for your "
                         "group until yours is finished.")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


def _minutes(value: float) -> str:
    if value < 1:
        return "under a minute"
    return f"{value:.0f} minute{'s' if round(value) != 1 else ''}"


@dataclass
class Lesson:
    """What a notebook works with after :func:`start`: its settings, the verified data, the seat, the computer."""

    number: str
    settings: Settings
    data_dir: Path
    seat: Seat | None
    device: str
    platform: str | None = None
    lines: list[str] = field(default_factory=list)
    echo: Callable[[str], None] = field(default=print, repr=False)

    def __str__(self) -> str:
        return "\n".join(self.lines)

    # -- notebooks 05-07 ----------------------------------------------------------------------------
    def run(self) -> LessonRun:
        """Your newest finished run (notebook 04), else the instructor's run of your group, labelled.

        Raises :class:`~hello_dl.runs.MissingStepError` (with both ways out) when there is neither.
        """
        found = runs.list_runs(self.settings)
        if found:
            mine = runs.open_run(found[-1], self.settings)
            label_figures(None)
            self.echo(f"Your run: {mine.name} (trained in notebook 04).")
            return LessonRun(folder=mine.folder, settings=mine.settings, own=True, label="your run")
        group = catch_up_group(self.settings)
        folder = reference.catch_up_run(self.settings, group)
        if folder is None:
            raise runs.MissingStepError(
                f"No trained model found in {self.settings.output_dir}, and no catch-up run for group {group} "
                f"either. Run notebook 04_train to the end, then this notebook again from the top; or ask the "
                f"instructor for the catch-up runs (made with `{reference.COMMAND} --profile "
                f"{self.settings.profile}` and copied into your outputs folder).")
        catch_up = runs.open_run(folder, self.settings)
        label = f"{NOT_YOUR_OWN_RUN}: the instructor's run for group {group}"
        label_figures(f"{label} ({catch_up.name})")
        self.echo(f"{label} ({catch_up.name}, {self.settings.profile} recipe). You have no finished run of your own "
                  "yet, so this notebook uses it; every figure says so in its title. Once notebook 04 has finished, "
                  "run this notebook again from the top to see your own.")
        return LessonRun(folder=catch_up.folder, settings=catch_up.settings, own=False, label=label)

    # -- notebook 04 -----------------------------------------------------------------------------------
    def plan_training(self, *, slot_minutes: float | None = None, full_recipe: bool = False) -> TrainingPlan:
        """How long training takes here (a few timed steps), and the recipe that fits the session's slot.

        ``full_recipe=True`` keeps the settings as they are, whatever the estimate says.
        """
        plan = plan_training(self.settings, slot_minutes=slot_minutes, full_recipe=full_recipe)
        self.echo(plan.format())
        return plan


def catch_up_group(settings: Settings) -> str:
    """The group whose reference run stands in for the participant's: theirs, or the one their knobs match."""
    if settings.experiment_group:
        return groups.normalise_group(settings.experiment_group)
    for name in groups.GROUPS:
        knobs = groups.group_settings(name)
        if knobs["augment"] == settings.augment and float(knobs["dropout"]) == float(settings.dropout):
            return name
    return groups.GROUPS[0]


def start(number: str, *, seat: str | None = None, echo: Callable[[str], None] = print,
          environ: Mapping[str, str] | None = None, now: datetime | None = None) -> Lesson:
    """Open lesson ``number`` ("00" … "07"): figures inline, cloud preparation, seat, settings, data, seed, device.

    ``seat`` is what notebook 00's ``SEAT`` line holds: a non-empty value is remembered for the
    session; an empty one keeps what was remembered. Prints a few plain lines and returns the
    :class:`Lesson`.
    """
    number = str(number)[:2]
    shell = _ipython()
    _show_figures_inline(shell)
    label_figures(None, shell)
    platform = cloud.detect(os.environ if environ is None else dict(environ))
    if platform is not None:
        cloud.prepare(number, platform=platform, fetch=False, echo=echo)

    base = _base_settings(environ)
    lines = [f"Notebook {number} is ready."]
    if seat is not None and str(seat).strip():
        remember_seat(seat, base, now=now)
    chosen = current_seat(base, environ=environ, now=now)
    expired = chosen is None and seat_file(base).is_file()
    if seat and chosen is not None and chosen.from_environment:
        lines.append(f"(The seat typed here is kept, but {chosen.source[4:]}, set by the instructor, wins.)")
    settings = load_settings(environ=None if environ is None else dict(environ),
                             **(chosen.overrides() if chosen else {}))
    lines.insert(1, _seat_line(chosen, number, expired))

    data_dir = fetch.fetch_data(settings)
    count = len(fetch.read_manifest())
    lines.append(f"Data: {count} images, each checked against the kit's checksum list, in {data_dir}.")
    environment.set_seed(settings.seed)
    lines.append(f"Recipe: the {settings.profile} profile; seed {settings.seed} (the same chance every time). "
                 "Every setting and where its value came from: print(settings).")
    device = environment.device_sentence()
    lines.append(device)
    lesson = Lesson(number=number, settings=settings, data_dir=Path(data_dir), seat=chosen, device=device,
                    platform=platform, lines=lines, echo=echo)
    for line in lines:
        echo(line)
    return lesson


# --- how long training takes here ------------------------------------------------------------------------
#: The cost of training, in units of one timed forward pass of a batch (measured together on the
#: kit's 2-core test machine, benchmarks/rehearsal.py prints the estimate beside the real time):
#: a training step with the base frozen, one fine-tuning from ``fine_tune_from`` (the upper blocks)
#: or of everything, a validation batch, and the one-off costs (building the network, tracing the
#: graph of each phase, the evaluation at the end).
STEP_COST = {"frozen": 2.0, "partial": 2.6, "full": 5.2, "validation": 1.0}
ONE_OFF_COST = {"build": 12.0, "phase": 40.0, "finetune_extra": 30.0, "evaluation": 25.0}
#: How the time of a step grows with the image side (fitted to the benchmark's 150/224/299 px epochs).
SIZE_EXPONENT = 1.3
#: The smaller recipes tried, in order, when the full one does not fit the slot.
SMALLER_RECIPES = (
    {"image_size": 224},
    {"image_size": 150},
    {"image_size": 150, "warmup_epochs": 3, "finetune_epochs": 2},
)
#: Without pretrained weights there is no warm-up to shorten (a frozen random base teaches
#: nothing): smaller images first (112 px reached the same validation accuracy as 128 px in
#: docs/from_scratch.md), fewer epochs only as the last resort (not measured: the best epochs of
#: the 12-epoch recipe there were 11-12, so a 9-epoch run may stop short of its best).
SMALLER_FROM_SCRATCH_RECIPES = (
    {"image_size": 112},
    {"image_size": 112, "finetune_epochs": 9},
)


def time_forward_pass(settings: Settings, repeats: int = 2) -> float:
    """Seconds for one forward pass of a batch through the network, on this computer (a few timed steps).

    The network is built without pretrained weights (speed does not depend on the weights' values,
    and nothing is read from disk), run once to prepare its compiled graph (as training does), then
    timed ``repeats`` times: compiled steps, not Python's layer-by-layer calls, are what training costs.
    """
    import numpy as np

    from hello_dl import model as model_module  # loads TensorFlow: only when an estimate is asked for

    network = model_module.build_model(settings.replace(weights="none"))
    batch = np.random.default_rng(0).integers(0, 256, (settings.batch_size, settings.image_size,
                                                       settings.image_size, 3)).astype("float32")
    network.predict_on_batch(batch)
    started = time.perf_counter()
    for _ in range(repeats):
        network.predict_on_batch(batch)
    return (time.perf_counter() - started) / repeats


def _batches(count: int, batch_size: int) -> int:
    return -(-count // batch_size)


def estimate_training_seconds(settings: Settings, seconds_per_batch: float, *, timed_size: int | None = None,
                              train_images: int = 65, val_images: int = 10) -> float:
    """Estimated wall time of ``train.train(settings)`` from the timed forward pass (at ``timed_size`` px)."""
    scale = (settings.image_size / (timed_size or settings.image_size)) ** SIZE_EXPONENT
    unit = seconds_per_batch * scale
    steps = _batches(train_images, settings.batch_size)
    validation = _batches(val_images, settings.batch_size) * STEP_COST["validation"]
    finetune = "partial" if settings.fine_tune_from else "full"
    if settings.warmup_epochs == 0:
        finetune = "full" if not settings.fine_tune_from else "partial"
    cost = ONE_OFF_COST["build"] + ONE_OFF_COST["evaluation"]
    if settings.warmup_epochs:
        cost += ONE_OFF_COST["phase"] + settings.warmup_epochs * (steps * STEP_COST["frozen"] + validation)
    if settings.finetune_epochs:
        cost += ONE_OFF_COST["phase"] + ONE_OFF_COST["finetune_extra"]
        cost += settings.finetune_epochs * (steps * STEP_COST[finetune] + validation)
    return cost * unit


def training_slot_seconds(slot_minutes: float | None = None, environ: Mapping[str, str] | None = None) -> float:
    env = os.environ if environ is None else environ
    if slot_minutes is None:
        text = str(env.get(TRAINING_SLOT_VARIABLE, "")).strip()
        try:
            slot_minutes = float(text) if text else TRAINING_SLOT_MINUTES
        except ValueError:
            raise HelloDLError(f"{TRAINING_SLOT_VARIABLE} is {text!r}; it must be a number of minutes, e.g. 5.") from None
    return float(slot_minutes) * 60


def plan_training(settings: Settings, *, slot_minutes: float | None = None, full_recipe: bool = False,
                  seconds_per_batch: float | None = None) -> TrainingPlan:
    """Time a few steps, estimate training, and choose the first recipe that fits the slot (see :class:`TrainingPlan`)."""
    measured = time_forward_pass(settings) if seconds_per_batch is None else seconds_per_batch
    slot = training_slot_seconds(slot_minutes)
    device = "GPU" if "GPU" in environment.device_sentence().split(":")[0] else "CPU"
    full = estimate_training_seconds(settings, measured)
    plan = TrainingPlan(settings=settings, estimate_seconds=full, full_estimate_seconds=full, slot_seconds=slot,
                        seconds_per_batch=measured, device=device)
    if full <= slot or full_recipe:
        return plan
    for changes in SMALLER_FROM_SCRATCH_RECIPES if settings.from_scratch else SMALLER_RECIPES:
        wanted = {name: value for name, value in changes.items()
                  if (name != "image_size" or value < settings.image_size)
                  and (name != "finetune_epochs" or value < settings.finetune_epochs)}
        if not wanted:
            continue
        smaller = settings.replace(**wanted)
        seconds = estimate_training_seconds(smaller, measured, timed_size=settings.image_size)
        if seconds <= slot:
            return TrainingPlan(settings=smaller, estimate_seconds=seconds, full_estimate_seconds=full,
                                slot_seconds=slot, seconds_per_batch=measured, device=device, smaller=True,
                                changes=wanted)
    return plan


__all__ = [
    "Lesson", "LessonRun", "NOT_YOUR_OWN_RUN", "SEAT_FILE", "SEAT_MEMORY_HOURS", "SEAT_NOTEBOOK", "SEAT_VARIABLE",
    "SEAT_VARIABLES", "Seat", "SeatError", "TRAINING_SLOT_MINUTES", "TrainingPlan", "catch_up_group",
    "current_seat", "estimate_training_seconds", "forget_seat", "label_figures", "plan_training", "remember_seat",
    "remembered_seat", "seat_file", "start", "time_forward_pass", "training_slot_seconds",
]
