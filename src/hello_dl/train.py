"""Training in two phases, with Keras callbacks doing all the bookkeeping.

Phase 1 (``warmup_epochs``): the InceptionV3 base is frozen and only the new head learns, at
``learning_rate``. Phase 2 (``finetune_epochs``): the base is unfrozen (all of it, or from
``fine_tune_from`` up) and everything is fine-tuned at ``finetune_learning_rate``. The
``paper`` profile has no phase 1: everything trains from epoch 1 for 20 epochs, as in the
original notebook. Without pretrained weights the settings carry the from-scratch recipe
(:mod:`hello_dl.recipes`): no phase 1, every layer trained from the first epoch, early stopping.

Every run writes into a new folder of its own under ``settings.output_dir``::

    outputs/20250101-093000_conference_1A/
        settings.json        every setting of the run and where it came from
        history.csv          Keras' CSVLogger: one row per epoch (with a phase column)
        history.json         the same, rewritten after every epoch (plots work mid-run)
        best_model.keras     the epoch with the lowest validation loss (BestModelKeeper)
        metrics.json         every set's accuracy, sensitivity, specificity, AUC with 95 % intervals, timings
        evaluation*.json     per set: the same, confusion matrix, predictions (hello_dl.evaluate)
        model_card.md        one page: intended use, data, recipe, results with intervals (hello_dl.modelcard)
        figures/             training curves, ROC, confusion matrix, predictions, intervals
        FINISHED             written last: only then is the run "finished" (hello_dl.runs)

The folder and its file names belong to :mod:`hello_dl.runs`. Nothing of an earlier run is ever
overwritten. An interrupted run keeps its history and the best model so far, but no FINISHED
marker, so later lessons never pick it up as "the latest run".

Nothing broken is ever called finished: a loss that becomes NaN or infinite stops training at
once (:class:`StopOnInvalidLoss`, Keras' ``TerminateOnNaN``) with :class:`TrainingDiverged`, which
names the likely cause; the best model is saved atomically (a full disk leaves the previous
best model, never half a file), and a full or read-only disk ends in a plain
:class:`~hello_dl.runs.StorageError` naming the run folder and the space needed. In every one of
these cases the FINISHED marker is not written, so earlier runs stay "the latest".
"""

from __future__ import annotations

import errno
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import keras  # at the top here: the callbacks below are Keras classes

from hello_dl import dataset as dataset_module
from hello_dl import environment, evaluate, feature_cache, modelcard, pipeline, plots, runs, stress
from hello_dl import model as model_module
from hello_dl import weights as weights_module
from hello_dl.errors import HelloDLError
from hello_dl.explain import shortcut_check
from hello_dl.settings import Settings

PHASE_NAMES = {1: "warm-up (base frozen, new head learns)", 2: "fine-tuning (base unfrozen)"}


# --- callbacks --------------------------------------------------------------------------------------
class PhaseColumn(keras.callbacks.Callback):
    """Adds the phase number (1 or 2) to each epoch's logs, so CSVLogger writes a phase column."""

    def __init__(self, phase: int):
        super().__init__()
        self.phase = phase

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["phase"] = self.phase


class JsonHistory(keras.callbacks.Callback):
    """Rewrites ``history.json`` after every epoch (both phases in one continuous history)."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = Path(path)
        self.history: dict[str, list] = {}
        self._started = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch + 1, **{key: float(value) for key, value in (logs or {}).items()}}
        row["phase"] = int(row.get("phase", 0))
        row["learning_rate"] = model_module.current_learning_rate(self.model)
        row["seconds"] = round(time.perf_counter() - self._started, 3)
        for key, value in row.items():
            self.history.setdefault(key, []).append(value)
        runs.write_json(self.path, self.history)


class TrainingDiverged(HelloDLError):
    """The loss became NaN or infinite: the weights are broken and training cannot go on."""


class StopOnInvalidLoss(keras.callbacks.TerminateOnNaN):
    """Keras' TerminateOnNaN (stop at the first batch whose loss is NaN or infinite), remembering where.

    A validation loss that is not a number stops training too (the weights are then broken even
    if the last training batches were not). :func:`train` turns what it saw into a plain message.
    """

    def __init__(self):
        super().__init__()
        self.epoch = 0
        self.stopped: dict | None = None  # where it happened: epoch (from 1), batch, which loss, value

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_batch_end(self, batch, logs=None):
        super().on_batch_end(batch, logs)
        loss = (logs or {}).get("loss")
        if self.stopped is None and loss is not None and not math.isfinite(float(loss)):
            self.stopped = {"epoch": self.epoch + 1, "batch": batch + 1, "loss": "loss", "value": float(loss)}

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("val_loss")
        if self.stopped is None and loss is not None and not math.isfinite(float(loss)):
            self.stopped = {"epoch": epoch + 1, "batch": None, "loss": "val_loss", "value": float(loss)}
            self.model.stop_training = True


class BestModelKeeper(keras.callbacks.Callback):
    """Keeps the weights of the epoch with the lowest validation loss, and writes that model at the end of a fit.

    Keras' ModelCheckpoint writes the whole model with the optimizer's state (270 MB with
    InceptionV3) after every better epoch: about a second each time on a 2-core machine, a sixth
    of a feature-cached epoch at 299 px (issue 18). This keeps a copy of
    the weights in memory instead (about 0.1 s) and writes ``best_model.keras`` once, when the fit
    ends, and when training is interrupted (:func:`train` calls :meth:`write`). The file is
    written atomically by :func:`hello_dl.runs.save_model` (temporary file, fsync, rename): a reader or a full disk never sees half
    a model, and a full disk ends in a plain message naming the space needed.

    ``write_when_fit_ends=False`` leaves the writing to the caller: :func:`train` writes once the
    fit has returned and, after the last one, once it has let go of the training's optimizer state
    (:func:`let_go_of_training`), so the file is built in memory below the training's peak.

    One keeper serves both phases, so phase 2 only replaces the saved model if it does better.
    ``network`` is the model saved whichever model is being fit (with the feature cache a phase
    fits only the network's upper part: :mod:`hello_dl.feature_cache`); ``None``: the fitted one.
    An epoch whose training or validation loss is not a finite number is never kept.
    """

    def __init__(self, network, path: Path, monitor: str = "val_loss", *, write_when_fit_ends: bool = True):
        super().__init__()
        self.network = network
        self.path = Path(path)
        self.monitor = monitor
        # False: the caller writes (train() first lets go of the finished fit's optimizer state).
        self.write_when_fit_ends = write_when_fit_ends
        self.best = math.inf
        self.best_epoch: int | None = None
        self._weights: list | None = None  # the best epoch's weights, not yet on disk

    @property
    def saved_model(self):
        return self.network if self.network is not None else self.model

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        value = logs.get(self.monitor)
        if value is None or not math.isfinite(float(value)) or not math.isfinite(float(logs.get("loss", 0.0))):
            return
        if float(value) < self.best:
            self.best, self.best_epoch = float(value), epoch + 1
            self._weights = [variable.numpy() for variable in self.saved_model.weights]  # copies: later epochs cannot change them

    def on_train_end(self, logs=None):
        if self.write_when_fit_ends:
            self.write()

    def _swap(self, network) -> None:
        """Exchange the network's weights with the kept ones, one weight at a time (no second full copy)."""
        for index, variable in enumerate(network.weights):
            held = variable.numpy()
            variable.assign(self._weights[index])
            self._weights[index] = held

    def write(self) -> None:
        """Write the best weights kept so far into ``best_model.keras`` (nothing to do if they are on disk).

        The file holds the network and its weights, not the optimizer's state: Adam's two moments
        per weight would triple it (about 270 MB instead of 90) and Keras builds the file in
        memory, so they would also add about 0.3 GB to the run's peak memory at every save. They
        are only needed to resume training, which the kit never does from a saved model.
        """
        if self._weights is None:
            return
        network = self.saved_model
        # Keras builds the file in memory: first hand the finished epochs' buffers back to the system,
        # so the file's 90 MB do not come on top of the training's high-water mark.
        environment.release_free_memory()
        self._swap(network)  # the best weights in, the last epoch's kept: training goes on from those
        try:
            # The same layers as a model that was never compiled: saved without any optimizer.
            runs.save_model(keras.Model(network.inputs, network.outputs, name=network.name), self.path,
                            needed_bytes=model_file_bytes(network))
        finally:
            self._swap(network)
        self._weights = None


def model_file_bytes(model: keras.Model) -> int:
    """About how large the run's saved model is: every weight in float32 (no optimizer state, see :class:`BestModelKeeper`)."""
    return 4 * model.count_params()


def diverged_message(stopped: dict, settings: Settings, phase: int, run_dir: Path) -> str:
    """Plain words for a loss that became NaN or infinite: where, the likely cause, what to do."""
    rate_name = "learning_rate" if phase == 1 else "finetune_learning_rate"
    rate = getattr(settings, rate_name)
    where = f"epoch {stopped['epoch']}" + (f", batch {stopped['batch']}" if stopped["batch"] else " (validation)")
    which = "training" if stopped["loss"] == "loss" else "validation"
    return (f"Training stopped in {where} of phase {phase}: the {which} loss became {stopped['value']} (not a number), so the weights are broken. The likely cause is a "
            f"learning rate too high for this run: {rate_name} is {rate:g} (from "
            f"{settings.sources.get(rate_name, 'default')}). Try a smaller one, e.g. --set {rate_name}=1e-5 "
            f"(the paper used 1e-4).{_weights_hint(settings)} The run folder {run_dir} keeps its history for a "
            f"look, but it is not marked finished, so no later step uses it.")


def _weights_hint(settings: Settings) -> str:
    if weights_module.weights_choice(settings) != "file":
        return ""
    return (f" If this happens at once even with a small learning rate, the weights file {settings.weights} may "
            f"hold broken values: try HELLO_DL_WEIGHTS=imagenet or none.")


def callbacks_for_phase(phase: int, run_dir: Path, settings: Settings, shared: dict,
                        extra: Sequence[keras.callbacks.Callback] = ()) -> list:
    """The Keras callbacks of one phase; ``shared`` keeps the ones whose memory spans both phases.

    ``extra`` callbacks come first, so they see each epoch before the kit saves anything (a timer
    then measures the epoch, not the writing of the model). ``shared["network"]``, if set, is the
    model the checkpoint saves (see :class:`BestModelKeeper`).
    """
    if "checkpoint" not in shared:
        # One checkpoint for both phases: it keeps the best validation loss seen so far, so
        # phase 2 only replaces the saved model if it really does better.
        shared["checkpoint"] = BestModelKeeper(shared.get("network"), run_dir / runs.BEST_MODEL, monitor="val_loss",
                                               write_when_fit_ends=shared.get("write_when_fit_ends", True))
        shared["invalid_loss"] = StopOnInvalidLoss()
        shared["history"] = JsonHistory(run_dir / runs.HISTORY_JSON)
        shared["csv"] = keras.callbacks.CSVLogger(str(run_dir / runs.HISTORY_CSV), append=True)
    # The loss check first: an epoch whose loss became NaN is never saved as the best model.
    callbacks = [shared["invalid_loss"], *extra, PhaseColumn(phase), shared["history"], shared["csv"],
                 shared["checkpoint"]]
    if settings.early_stopping_patience > 0:
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_loss", mode="min",
                                                       patience=settings.early_stopping_patience,
                                                       start_from_epoch=settings.early_stopping_start_epoch))
    return callbacks


# --- training ---------------------------------------------------------------------------------------
@dataclass
class TrainResult:
    run_dir: Path
    history: dict[str, list]
    metrics: dict[str, Any]
    model: Any = field(default=None, repr=False)  # the best model, reloaded from disk

    @property
    def best_model_path(self) -> Path:
        return self.run_dir / runs.BEST_MODEL

    @property
    def run(self) -> runs.Run:
        """The finished run, its best model already in memory."""
        return runs.Run(self.run_dir, runs.run_settings(self.run_dir), self.model)

    def format(self) -> str:
        m = self.metrics
        lines = [f"Run folder: {self.run_dir}",
                 f"Best model: epoch {m['best_epoch']} of {m['epochs_run']} "
                 f"(validation loss {m['val_loss']:.3f}, accuracy {m['val_accuracy']:.0%}, "
                 f"AUC {_maybe(m['val_auc'])})",
                 *m.get("headlines", []),
                 f"Training time: {m['timings']['total_seconds']:.0f} s"]
        return "\n".join(lines + list(m.get("warnings", [])))


def _maybe(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def train(settings: Settings, *, verbose: int = 2, datasets: Any = None,
          callbacks: Sequence[keras.callbacks.Callback] = (), use_feature_cache: bool = True) -> TrainResult:
    """Train with ``settings``: build data and model, run both phases, save and evaluate the best model.

    ``verbose`` is Keras' (0 silent, 1 progress bar, 2 one line per epoch). ``datasets`` may be
    passed in (from :func:`hello_dl.pipeline.build_datasets`) to reuse them. ``callbacks`` are
    extra Keras callbacks, used in both phases (e.g. a timer or a progress display); in a phase
    that uses the feature cache their ``self.model`` is the part being fit.
    ``use_feature_cache=False`` fits the whole network in every phase: the same training, slower
    (:mod:`hello_dl.feature_cache`; kept for the tests and the benchmark that compare the two).
    """
    started = time.perf_counter()
    environment.set_seed(settings.seed)
    environment.return_large_buffers_promptly()  # a lower peak per participant (issue 18)
    say = print if verbose else (lambda *a, **k: None)
    say(model_module.describe_start(settings))
    say(settings.describe_recipe())
    # Data and model first: a missing dataset or weights file stops here, before a run folder exists.
    data = datasets if datasets is not None else pipeline.build_datasets(settings)
    network = model_module.build_model(settings)
    leak_warning = dataset_module.leak_warning(getattr(data, "leaks", []))
    if leak_warning:
        say(leak_warning)
    run_dir = runs.create(settings)
    say(f"Run folder: {run_dir}")
    try:
        result = _train_in(run_dir, network, data, settings, verbose, tuple(callbacks), started, leak_warning,
                           use_feature_cache)
    except OSError as exc:  # a full or read-only disk while writing the run (history, figures)
        if exc.errno not in _STORAGE_ERRNOS:
            raise
        written = Path(exc.filename) if exc.filename else run_dir / runs.METRICS
        raise runs.storage_error(exc, written, model_file_bytes(network)) from None
    say(result.format())
    return result


#: OS errors while writing a run that are the disk's state (full, read-only, forbidden), not a bug.
_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def _train_in(run_dir: Path, network, data, settings: Settings, verbose: int, callbacks: tuple, started: float,
              leak_warning: str | None, use_feature_cache: bool) -> TrainResult:
    """Both phases, the evaluation and the run's files; the FINISHED marker only when all of it worked."""
    say = print if verbose else (lambda *a, **k: None)
    # The best model is written by _fit_phase once each fit has returned (not by the keeper inside
    # it): after the last fit, the training's own state is let go of first (let_go_of_training).
    shared: dict = {"extra": callbacks, "network": network, "feature_cache": use_feature_cache,
                    "write_when_fit_ends": False}
    timings: dict[str, float] = {"data_and_model_seconds": round(time.perf_counter() - started, 2)}
    phases = []

    if settings.warmup_epochs > 0:
        model_module.freeze_base(network, learning_rate=settings.learning_rate)
        say(f"Phase 1, {PHASE_NAMES[1]}: {settings.warmup_epochs} epoch(s) at learning rate "
            f"{settings.learning_rate:g}. {model_module.trainable_summary(network)}")
        phases.append(_fit_phase(network, data, 1, 0, settings.warmup_epochs, run_dir, settings, shared,
                                 verbose, timings, settings.learning_rate, last=settings.finetune_epochs <= 0))
        _stop_if_diverged(shared, settings, 1, run_dir)
    if settings.finetune_epochs > 0:
        first = _epochs_done(shared)
        model_module.unfreeze_base(network, from_layer=settings.fine_tune_from or None,
                                   learning_rate=settings.finetune_learning_rate)
        where = f"from layer {settings.fine_tune_from} up" if settings.fine_tune_from else "the whole base"
        heading = (f"Training from scratch ({where} and the head)" if settings.from_scratch and not phases
                   else f"Phase 2, {PHASE_NAMES[2]} ({where})")
        say(f"{heading}: {settings.finetune_epochs} epoch(s) at learning rate "
            f"{settings.finetune_learning_rate:g}. {model_module.trainable_summary(network)}")
        phases.append(_fit_phase(network, data, 2, first, first + settings.finetune_epochs, run_dir, settings,
                                 shared, verbose, timings, settings.finetune_learning_rate))
        _stop_if_diverged(shared, settings, 2, run_dir)

    history = shared["history"].history if "history" in shared else {}
    best_path = run_dir / runs.BEST_MODEL
    environment.release_free_memory()  # training's buffers are free: the evaluation starts low
    best = slim_best_model(run_dir, settings)
    evaluation = evaluate.evaluate_model(best, settings, split="val", datasets=data)
    evaluate.save_evaluation(evaluation, run_dir)
    plots.plot_training_curves(history, title=f"Training curves: {run_dir.name}",
                               save_path=run_dir / runs.FIGURES / "training_curves.png")
    timings["total_seconds"] = round(time.perf_counter() - started, 2)

    val_losses = history.get("val_loss", [])
    best_index = min(range(len(val_losses)), key=val_losses.__getitem__) if val_losses else 0
    metrics = {
        "val_loss": evaluation.loss,
        "val_accuracy": evaluation.accuracy,
        "val_auc": evaluation.auc,
        "threshold": settings.threshold,
        "best_epoch": history["epoch"][best_index] if history.get("epoch") else None,
        "best_phase": history["phase"][best_index] if history.get("phase") else None,
        "epochs_run": len(history.get("epoch", [])),
        "epochs_planned": settings.total_epochs,
        "train_images": data.train_count,
        "val_images": data.val_count,
        "image_size": settings.image_size,
        "profile": settings.profile,
        "experiment_group": settings.experiment_group,
        "weights": settings.weights,
        "from_scratch": not model_module.keeps_batchnorm_statistics(network),
        "recipe": settings.describe_recipe(),
        "seed": settings.seed,
        "device": environment.device_sentence(),
        "phases": phases,
        "timings": timings,
        "best_model": str(best_path),
        # Identical images in two splits flatter the validation numbers: counted, and said in words.
        "images_shared_between_splits": len(getattr(data, "leaks", [])),
        "warnings": [leak_warning] if leak_warning else [],
    }
    # Every set with its 95 % intervals (training and TEST as well as validation), then the card.
    evaluations = evaluate.evaluate_sets(best, settings, known={"val": evaluation}, datasets=data)
    for split, other in evaluations.items():
        if split != "val":
            evaluate.save_evaluation(other, run_dir)
    evaluate.plot_sets(evaluations, save_path=run_dir / runs.FIGURES / evaluate.INTERVALS_FIGURE)
    metrics.update(evaluate.sets_metrics(evaluations))
    # The stress test on the validation and TEST images, for the card (notebook 07 draws it).
    stressed = stress.stress_test(best, settings)
    metrics["stress_test"] = {"summary": stressed.summary_line(), "passed": stressed.passed,
                              "worst_flip_rate": stressed.worst_flip_rate}
    runs.write_json(run_dir / runs.METRICS, metrics)
    modelcard.write_model_card(run_dir, settings, metrics, evaluations, dataset_module.summarize(settings),
                               shortcut=shortcut_check(settings), stress=stressed)
    runs.mark_finished(run_dir)
    return TrainResult(run_dir=run_dir, history=history, metrics=metrics, model=best)


def _stop_if_diverged(shared: dict, settings: Settings, phase: int, run_dir: Path) -> None:
    stopped = shared["invalid_loss"].stopped if "invalid_loss" in shared else None
    if stopped:
        raise TrainingDiverged(diverged_message(stopped, settings, phase, run_dir))


def slim_best_model(run_dir: Path, settings: Settings):
    """Reload the best model from the run folder (safe mode) and compile it; return it.

    :class:`BestModelKeeper` saves it without the optimizer's state (90 MB rather than 270 MB).
    Reloading proves the file reads back in safe mode before the run is called finished, and the
    evaluation then uses exactly what later lessons will load. The model is compiled afresh, so it
    can still be evaluated or trained further.
    """
    best = runs.load_model(run_dir / runs.BEST_MODEL)
    model_module.compile_model(best, settings.finetune_learning_rate if settings.finetune_epochs
                               else settings.learning_rate, settings.steps_per_execution)
    return best


def let_go_of_training(*models) -> None:
    """Drop what only a next fit would need: each model's optimizer (Adam's two moments per weight) and compiled steps.

    Called after the last fit, before the best model is written and the run is evaluated: with
    the whole InceptionV3 base trainable, Adam's state alone is about 175 MB, and every later
    step (the model file built in memory, the evaluation of every set, the stress test) would
    otherwise come on top of it and set the run's peak memory (issue 18). The models still
    predict (Keras builds a new predict step when asked); they are never trained again (the
    evaluation uses the saved best model, compiled afresh by :func:`slim_best_model`).
    """
    import gc

    for model in dict.fromkeys(models):  # the same model twice (no feature cache) is let go of once
        if getattr(model, "optimizer", None) is not None:
            # TensorFlow's checkpoint tracking holds the optimizer by its attribute name: delete the
            # attribute (not only overwrite it) so the tracking lets go too.
            del model.optimizer
            model.optimizer = None
        # The compile configuration names the optimizer object; the model is left uncompiled.
        if hasattr(model, "_compile_config"):
            model._compile_config = None
        if hasattr(model, "compiled"):
            model.compiled = False
        model.train_function = model.test_function = model.predict_function = None
    gc.collect()
    environment.release_free_memory()


def _epochs_done(shared: dict) -> int:
    history = shared["history"].history if "history" in shared else {}
    return len(history.get("epoch", []))


def _fit_phase(network, data, phase: int, initial_epoch: int, epochs: int, run_dir: Path, settings: Settings,
               shared: dict, verbose: int, timings: dict, learning_rate: float, last: bool = True) -> dict:
    started = time.perf_counter()
    cached = (feature_cache.prepare_phase(network, data, settings, learning_rate)
              if shared.get("feature_cache") else None)
    if cached is not None and verbose:
        print(cached.sentence(settings))
    fitted, train_data, val_data = (cached.model, cached.train, cached.val) if cached else (network, data.train,
                                                                                             data.val)
    environment.release_free_memory()  # start the phase without the last one's freed buffers
    # shuffle=False: the training dataset already reshuffles itself every epoch (seeded).
    try:
        fitted.fit(train_data, validation_data=val_data, initial_epoch=initial_epoch, epochs=epochs,
                   callbacks=callbacks_for_phase(phase, run_dir, settings, shared, shared["extra"]),
                   verbose=verbose, shuffle=False)
    except KeyboardInterrupt:
        # Stopped by hand: the run stays unfinished, but keeps its best model so far with its history.
        shared["checkpoint"].write()
        raise
    if last:
        let_go_of_training(fitted, network)
    shared["checkpoint"].write()
    seconds = round(time.perf_counter() - started, 2)
    timings[f"phase{phase}_seconds"] = seconds
    done = _epochs_done(shared) - initial_epoch
    return {"phase": phase, "name": PHASE_NAMES[phase], "first_epoch": initial_epoch + 1, "epochs": done,
            "epochs_planned": epochs - initial_epoch, "learning_rate": learning_rate, "seconds": seconds,
            "feature_cache": cached.record if cached else None}


__all__ = ["BestModelKeeper", "JsonHistory", "PHASE_NAMES", "PhaseColumn", "StopOnInvalidLoss", "TrainResult",
           "TrainingDiverged", "callbacks_for_phase", "diverged_message", "let_go_of_training", "model_file_bytes",
           "slim_best_model", "train"]
