"""Clocks for the benchmark: a Keras callback that times the training part of every epoch,
and the arithmetic that turns epoch times into steady-state and first-epoch figures.

The callback timestamps ``on_epoch_begin`` and the moment validation starts (``on_test_begin``,
or ``on_epoch_end`` when there is no validation), so the training seconds of an epoch exclude
validation; an epoch's full seconds run until the next epoch (or the fit) begins/ends, so they
include validation and whatever the kit's own callbacks do (checkpoints, logs). Per-batch callbacks are avoided on purpose: with ``steps_per_execution > 1`` Keras
only calls them once per execution, and they would add Python work to every step.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

import keras


@dataclass
class EpochTime:
    phase: str
    epoch: int  # 0-based index within the fit
    steps: int
    images: int
    train_seconds: float
    total_seconds: float  # until the next epoch starts: validation, checkpoints and logs included


class EpochTimer(keras.callbacks.Callback):
    """Records the training seconds and the full seconds of every epoch of every ``fit``.

    ``images_per_epoch`` is needed because the last batch of an epoch may be partial (65 images
    in batches of 5 is 13 full steps, but 10 validation images in batches of 4 would not be).
    """

    def __init__(self, images_per_epoch: int, phase_names: tuple[str, ...] = ("train",)):
        super().__init__()
        self.images_per_epoch = int(images_per_epoch)
        self.phase_names = tuple(phase_names)
        self.fits = 0
        self.epochs: list[EpochTime] = []
        self._start = self._train_end = 0.0
        self._in_epoch = False

    @property
    def phase(self) -> str:
        # Each call of fit() is one phase: the kit trains the frozen warm-up and the fine-tune
        # in separate fits (the model is recompiled in between).
        index = max(0, self.fits - 1)
        return self.phase_names[index] if index < len(self.phase_names) else f"fit{index + 1}"

    def on_train_begin(self, logs=None):
        self.fits += 1

    def on_train_end(self, logs=None):
        self._close_previous(time.perf_counter())

    def _close_previous(self, now: float) -> None:
        # Other callbacks (checkpoint saving, CSV logs) run after this one's on_epoch_end, so an
        # epoch's full cost is only known when the next epoch (or the fit) begins/ends.
        if self.epochs and self.epochs[-1].total_seconds < 0:
            self.epochs[-1].total_seconds = now - self._start

    def on_epoch_begin(self, epoch, logs=None):
        now = time.perf_counter()
        self._close_previous(now)
        self._start = now
        self._train_end = 0.0
        self._in_epoch = True

    def on_test_begin(self, logs=None):
        # Validation inside fit; evaluate() outside an epoch is ignored.
        if self._in_epoch and not self._train_end:
            self._train_end = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        now = time.perf_counter()
        train_end = self._train_end or now
        steps = int(self.params.get("steps") or 0) if self.params else 0
        self.epochs.append(EpochTime(self.phase, int(epoch), steps, self.images_per_epoch,
                                     train_end - self._start, -1.0))
        self._in_epoch = False


@dataclass
class PhaseSummary:
    """Steady state (every epoch after the first) and first-epoch overhead of one training phase."""

    phase: str
    epochs: list[EpochTime] = field(default_factory=list)

    @property
    def steady(self) -> list[EpochTime]:
        return self.epochs[1:]

    def as_dict(self) -> dict:
        if not self.epochs:
            return {"phase": self.phase, "epochs": 0}
        first = self.epochs[0]
        out = {
            "phase": self.phase,
            "epochs": len(self.epochs),
            "steps_per_epoch": first.steps,
            "images_per_epoch": first.images,
            "epoch_train_seconds": [round(e.train_seconds, 3) for e in self.epochs],
            "epoch_total_seconds": [round(e.total_seconds, 3) for e in self.epochs],
            "first_epoch_seconds": round(first.total_seconds, 3),
        }
        if self.steady:
            # The median resists one epoch slowed by something else on the machine.
            epoch_train = statistics.median(e.train_seconds for e in self.steady)
            epoch_total = statistics.median(e.total_seconds for e in self.steady)
            out.update({
                "steady_epoch_seconds": round(epoch_total, 3),
                "steady_epoch_train_seconds": round(epoch_train, 3),
                "steady_seconds_per_step": round(epoch_train / max(1, first.steps), 4),
                "steady_images_per_second": round(first.images / epoch_train, 3),
                # What the first epoch costs on top of a normal one: tracing, graph optimisation,
                # first allocation, decoding caches.
                "first_epoch_overhead_seconds": round(first.total_seconds - epoch_total, 3),
            })
        return out


def summarize(timer: EpochTimer) -> dict[str, dict]:
    """Group a timer's epochs by phase (in order of appearance) and summarise each."""
    phases: dict[str, PhaseSummary] = {}
    for epoch in timer.epochs:
        phases.setdefault(epoch.phase, PhaseSummary(epoch.phase)).epochs.append(epoch)
    return {name: summary.as_dict() for name, summary in phases.items()}


class Stopwatch:
    """``with Stopwatch() as sw: ...`` then ``sw.seconds``."""

    def __enter__(self):
        self._start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self._start
        return False
