"""Clocks for the benchmark: a Keras callback that times the parts of every epoch, and the
arithmetic that turns epoch times into steady-state and first-epoch figures.

The callback timestamps ``on_epoch_begin``, the end of the epoch's first training step (the first
``on_train_batch_end``), the moment validation starts and ends (``on_test_begin`` /
``on_test_end``; ``on_epoch_end`` when there is no validation) and the end of the epoch. So the
training seconds of an epoch exclude validation, and an epoch's full seconds run until the next
epoch (or the fit) begins/ends, so they include validation and whatever the kit's own callbacks
do after it (checkpoints, logs). Each mark also records the process's CPU seconds (all threads):
on a machine shared with other work they are steadier than wall seconds.

Where a first epoch's extra time goes (``first_epoch_breakdown``): its first training step minus a
steady step is the tracing of the training step (building and optimising its TensorFlow graph)
and first allocations; its validation minus a steady validation is the tracing of the
validation step; its bookkeeping (checkpoint, logs) minus a steady epoch's is the first model
save. The first step is the only per-batch mark: the callback does nothing on other batches.
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
    first_step_seconds: float = 0.0
    validation_seconds: float = 0.0
    bookkeeping_seconds: float = -1.0  # from on_epoch_end to the next epoch: checkpoint, logs
    cpu_seconds: float = -1.0  # CPU seconds of the whole epoch (all threads), like total_seconds
    train_cpu_seconds: float = 0.0


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
        self._start = self._train_end = self._first_step = self._val_end = self._end = 0.0
        self._cpu_start = self._cpu_train_end = 0.0
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
        self._close_previous(time.perf_counter(), time.process_time())

    def _close_previous(self, now: float, cpu: float) -> None:
        # Other callbacks (checkpoint saving, CSV logs) run after this one's on_epoch_end, so an
        # epoch's full cost is only known when the next epoch (or the fit) begins/ends.
        if self.epochs and self.epochs[-1].total_seconds < 0:
            last = self.epochs[-1]
            last.total_seconds = now - self._start
            last.bookkeeping_seconds = now - self._end
            last.cpu_seconds = cpu - self._cpu_start

    def on_epoch_begin(self, epoch, logs=None):
        now, cpu = time.perf_counter(), time.process_time()
        self._close_previous(now, cpu)
        self._start, self._cpu_start = now, cpu
        self._train_end = self._first_step = self._val_end = 0.0
        self._in_epoch = True

    def on_train_batch_end(self, batch, logs=None):
        if self._in_epoch and not self._first_step:
            self._first_step = time.perf_counter()

    def on_test_begin(self, logs=None):
        # Validation inside fit; evaluate() outside an epoch is ignored.
        if self._in_epoch and not self._train_end:
            self._train_end, self._cpu_train_end = time.perf_counter(), time.process_time()

    def on_test_end(self, logs=None):
        if self._in_epoch and self._train_end and not self._val_end:
            self._val_end = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        now, cpu = time.perf_counter(), time.process_time()
        train_end = self._train_end or now
        steps = int(self.params.get("steps") or 0) if self.params else 0
        self.epochs.append(EpochTime(
            self.phase, int(epoch), steps, self.images_per_epoch, train_end - self._start, -1.0,
            first_step_seconds=(self._first_step or train_end) - self._start,
            validation_seconds=(self._val_end - self._train_end) if self._val_end else 0.0,
            train_cpu_seconds=(self._cpu_train_end if self._train_end else cpu) - self._cpu_start))
        self._end = now
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
            "epoch_cpu_seconds": [round(e.cpu_seconds, 3) for e in self.epochs],
            "first_epoch_seconds": round(first.total_seconds, 3),
            "first_epoch_cpu_seconds": round(first.cpu_seconds, 3),
        }
        if self.steady:
            # The median resists one epoch slowed by something else on the machine.
            def median(attribute: str) -> float:
                return statistics.median(getattr(e, attribute) for e in self.steady)

            epoch_train, epoch_total = median("train_seconds"), median("total_seconds")
            step = epoch_train / max(1, first.steps)
            out.update({
                "steady_epoch_seconds": round(epoch_total, 3),
                "steady_epoch_train_seconds": round(epoch_train, 3),
                "steady_epoch_cpu_seconds": round(median("cpu_seconds"), 3),
                "steady_seconds_per_step": round(step, 4),
                "steady_images_per_second": round(first.images / epoch_train, 3),
                # What the first epoch costs on top of a normal one: tracing, graph optimisation,
                # first allocation, decoding caches.
                "first_epoch_overhead_seconds": round(first.total_seconds - epoch_total, 3),
                "first_epoch_overhead_cpu_seconds": round(first.cpu_seconds - median("cpu_seconds"), 3),
                "first_epoch_breakdown": {
                    "training_step_tracing": round(first.first_step_seconds - step, 3),
                    "validation_tracing": round(first.validation_seconds - median("validation_seconds"), 3),
                    "first_save_and_logs": round(first.bookkeeping_seconds - median("bookkeeping_seconds"), 3),
                },
            })
            breakdown = out["first_epoch_breakdown"]
            breakdown["rest"] = round(out["first_epoch_overhead_seconds"] - sum(breakdown.values()), 3)
        return out


def summarize(timer: EpochTimer) -> dict[str, dict]:
    """Group a timer's epochs by phase (in order of appearance) and summarise each."""
    phases: dict[str, PhaseSummary] = {}
    for epoch in timer.epochs:
        phases.setdefault(epoch.phase, PhaseSummary(epoch.phase)).epochs.append(epoch)
    return {name: summary.as_dict() for name, summary in phases.items()}


class Stopwatch:
    """``with Stopwatch() as sw: ...`` then ``sw.seconds`` (wall) and ``sw.cpu_seconds`` (this process, all threads)."""

    def __enter__(self):
        self._start, self._cpu = time.perf_counter(), time.process_time()
        self.seconds = self.cpu_seconds = 0.0
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self._start
        self.cpu_seconds = time.process_time() - self._cpu
        return False
