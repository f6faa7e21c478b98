"""Two-phase training: the shared smoke run on the real data, and small runs on images written here."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hello_dl import runs, train
from hello_dl.settings import load_settings


# --- the shared run on the paper's data (trained once per session, see conftest.smoke_run) ------
@pytest.mark.slow
def test_from_scratch_run_learns_above_chance(smoke_run):
    """Integration: 75 px, no pretrained weights, a few epochs: validation clearly above chance."""
    assert smoke_run.exit_code == 0, smoke_run.output
    metrics = json.loads((smoke_run.run_dir / runs.METRICS).read_text())
    assert metrics["from_scratch"] is True
    assert metrics["val_images"] == 10 and metrics["train_images"] == 65
    # Chance is 50% accuracy, AUC 0.5 and a loss of ln 2 = 0.693 (always answering 0.5). With only
    # 10 validation images one mistake is 10%, so all three are required, each with a margin
    # (measured: seed 42 gives 90%, AUC 0.96, loss 0.27; other seeds at least 80%, 0.92, 0.40).
    assert metrics["val_accuracy"] >= 0.7, metrics
    assert metrics["val_auc"] >= 0.85, metrics
    assert metrics["val_loss"] < 0.55, metrics
    history = runs.load_history(smoke_run.run_dir)
    assert max(history["accuracy"]) > 0.7  # training accuracy rose from chance too


@pytest.mark.slow
def test_run_folder_holds_everything(smoke_run):
    run = smoke_run.run_dir
    for name in (runs.SETTINGS, runs.HISTORY_CSV, runs.HISTORY_JSON, runs.BEST_MODEL,
                 runs.METRICS, runs.EVALUATION, runs.FINISHED):
        assert (run / name).is_file(), name
    assert runs.is_finished(run) and runs.list_runs(smoke_run.settings) == [run]
    for figure in ("training_curves.png", "roc.png", "confusion_matrix.png", "predictions.png"):
        assert (run / runs.FIGURES / figure).stat().st_size > 1000, figure
    saved = json.loads((run / runs.SETTINGS).read_text())
    assert saved["settings"]["profile"] == "smoke" and saved["settings"]["batch_size"] == 13
    assert re.fullmatch(r"\d{8}-\d{6}_smoke", run.name), run.name
    # Saved without the optimizer's state: about the size of the weights (22 M floats).
    assert (run / runs.BEST_MODEL).stat().st_size < 120e6


@pytest.mark.slow
def test_history_is_continuous_over_both_phases(smoke_run):
    settings = smoke_run.settings
    history = runs.load_history(smoke_run.run_dir)
    total = settings.warmup_epochs + settings.finetune_epochs
    assert history["epoch"] == list(range(1, total + 1))
    assert history["phase"] == [1] * settings.warmup_epochs + [2] * settings.finetune_epochs
    assert history["learning_rate"][0] == pytest.approx(settings.learning_rate)
    assert history["learning_rate"][-1] == pytest.approx(settings.finetune_learning_rate)
    for key in ("loss", "accuracy", "auc", "val_loss", "val_accuracy", "val_auc"):
        assert len(history[key]) == total and all(math.isfinite(v) for v in history[key])
    # The CSV (Keras' CSVLogger) has the same epochs, its own 0-based numbering, and the phase column.
    rows = (smoke_run.run_dir / runs.HISTORY_CSV).read_text().strip().splitlines()
    assert len(rows) == total + 1 and "phase" in rows[0].split(",")
    from_csv = runs.load_history(smoke_run.run_dir / runs.HISTORY_CSV)
    assert from_csv["epoch"] == history["epoch"]
    assert np.allclose(from_csv["val_loss"], history["val_loss"])

    metrics = json.loads((smoke_run.run_dir / runs.METRICS).read_text())
    assert [p["phase"] for p in metrics["phases"]] == [1, 2]
    assert metrics["best_epoch"] == history["epoch"][int(np.argmin(history["val_loss"]))]
    assert set(metrics["timings"]) >= {"phase1_seconds", "phase2_seconds", "total_seconds"}
    assert metrics["epochs_run"] == total


@pytest.mark.slow
def test_best_model_reloads_in_safe_mode_takes_plain_pixels_and_matches_the_metrics(smoke_run):
    import keras

    from hello_dl import evaluate, pipeline

    model = keras.models.load_model(smoke_run.run_dir / runs.BEST_MODEL, safe_mode=True)
    assert model.layers[1].name == runs.PIXEL_SCALING_LAYER  # the saved file scales its own input
    saved = json.loads((smoke_run.run_dir / runs.EVALUATION).read_text())
    files = [Path(p["file"]) for p in saved["predictions"]]
    images = pipeline.load_images(files, smoke_run.settings)
    assert images.dtype == np.uint8  # plain 0-255 RGB, as any user would load them
    probabilities = model.predict(images, verbose=0).ravel()
    assert np.allclose(probabilities, [p["probability"] for p in saved["predictions"]], atol=1e-5)
    metrics = json.loads((smoke_run.run_dir / runs.METRICS).read_text())
    labels = [smoke_run.settings.class_names.index(p["true"]) for p in saved["predictions"]]
    rescored = evaluate.score(labels, probabilities, smoke_run.settings)
    assert rescored.accuracy == pytest.approx(metrics["val_accuracy"])
    assert rescored.loss == pytest.approx(metrics["val_loss"], abs=1e-5)


# --- small runs on images written by the tests ----------------------------------------------------
def _write_dataset(root: Path, per_class: int = 6) -> Path:
    """Bright round blobs (class 0) vs dark horizontal bands (class 1), PNG files, TRAIN and VAL."""
    rng = np.random.default_rng(0)
    size = 80
    yy, xx = np.mgrid[:size, :size]
    for split, count in (("TRAIN", per_class), ("VAL", 2)):
        for label, folder in enumerate(("openI_CXR", "openI_abd_xray")):
            target = root / split / folder
            target.mkdir(parents=True)
            for index in range(count):
                if label == 0:
                    cx, cy = rng.integers(25, 55, 2)
                    pixels = 200.0 * (((xx - cx) ** 2 + (yy - cy) ** 2) < rng.integers(150, 400))
                else:
                    pixels = 60.0 * ((yy // rng.integers(6, 12)) % 2)
                noisy = np.clip(pixels + rng.normal(0, 20, (size, size)), 0, 255).astype(np.uint8)
                Image.fromarray(noisy).convert("RGB").save(target / f"{folder}_{index}.png")
    return root


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    return _write_dataset(tmp_path_factory.mktemp("tiny") / "data")


def _tiny_settings(data_dir: Path, output_dir: Path, **overrides):
    values = {"data_dir": str(data_dir), "output_dir": str(output_dir), "warmup_epochs": 1,
              "finetune_epochs": 0, "batch_size": 4, "dense_units": 16}
    values.update(overrides)
    return load_settings("smoke", environ={}, **values)


@pytest.fixture(scope="module")
def tiny_runs(tiny_data, tmp_path_factory):
    """The same one-epoch run (frozen base, new head) twice with the same seed."""
    output = tmp_path_factory.mktemp("tiny_runs")
    first = train.train(_tiny_settings(tiny_data, output, seed=1), verbose=0)
    again = train.train(_tiny_settings(tiny_data, output, seed=1), verbose=0)
    return first, again


@pytest.mark.slow  # two real training runs (about 15 s each)
def test_tiny_run_writes_its_own_folder(tiny_runs):
    first, again = tiny_runs
    assert first.run_dir != again.run_dir and first.run_dir.parent == again.run_dir.parent  # never reused
    assert first.metrics["epochs_run"] == 1 and first.history["phase"] == [1]
    assert first.metrics["train_images"] == 12 and first.metrics["val_images"] == 4
    assert (first.run_dir / runs.BEST_MODEL).is_file()
    assert "phase2_seconds" not in first.metrics["timings"]  # finetune_epochs=0: no phase 2


@pytest.mark.slow  # two real training runs (about 15 s each)
def test_same_seed_reproduces_split_and_metrics_on_cpu(tiny_runs):
    first, again = tiny_runs
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert first.history[key] == again.history[key], key
    assert first.metrics["val_loss"] == again.metrics["val_loss"]
    first_eval = json.loads((first.run_dir / "evaluation.json").read_text())
    again_eval = json.loads((again.run_dir / "evaluation.json").read_text())
    assert [p["file"] for p in first_eval["predictions"]] == [p["file"] for p in again_eval["predictions"]]
    assert [p["probability"] for p in first_eval["predictions"]] == \
        [p["probability"] for p in again_eval["predictions"]]


@pytest.mark.slow  # one real training run (about 15 s)
def test_extra_callbacks_see_every_epoch_of_both_phases(tiny_data, tmp_path):
    import keras

    class Recorder(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epochs, self.files_at_end = [], []

        def on_epoch_end(self, epoch, logs=None):
            self.epochs.append(epoch + 1)

        def on_train_end(self, logs=None):
            self.files_at_end.append(sorted(p.name for p in tmp_path.glob("out/*/*")))

    recorder = Recorder()
    result = train.train(_tiny_settings(tiny_data, tmp_path / "out", finetune_epochs=1), verbose=0,
                         callbacks=[recorder])
    assert recorder.epochs == [1, 2] == result.history["epoch"]
    assert len(recorder.files_at_end) == 2  # called in phase 1 and in phase 2
    # Until training has ended the run is not finished; the marker comes last, after the metrics.
    assert runs.FINISHED not in recorder.files_at_end[-1]
    assert runs.is_finished(result.run_dir)
    assert result.run.folder == result.run_dir and result.run.model is result.model
    # After the last fit the trained network let go of its optimizer before the model was written.
    assert recorder.model.optimizer is None and recorder.model.train_function is None


def test_history_is_on_disk_after_every_epoch_and_phase_column(tmp_path):
    """What an interrupted run keeps: the epochs finished so far, in JSON and CSV."""
    import keras

    settings = load_settings("smoke", environ={}, early_stopping_patience=2)
    shared: dict = {}
    callbacks = train.callbacks_for_phase(2, tmp_path, settings, shared)
    assert any(isinstance(c, keras.callbacks.EarlyStopping) for c in callbacks)
    assert not any(isinstance(c, keras.callbacks.EarlyStopping)
                   for c in train.callbacks_for_phase(2, tmp_path, settings.replace(early_stopping_patience=0), {}))

    seen = []

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(json.loads((tmp_path / runs.HISTORY_JSON).read_text())["epoch"])
            if epoch == 1:
                raise KeyboardInterrupt  # the trainee pressed stop

    network = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
    network.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    x = np.random.default_rng(0).normal(size=(16, 3)).astype("float32")
    y = (x[:, :1] > 0).astype("float32")
    with pytest.raises(KeyboardInterrupt):
        network.fit(x, y, validation_data=(x, y), epochs=5, verbose=0, callbacks=callbacks + [Interrupt()])
    assert seen == [[1], [1, 2]]
    history = runs.load_history(tmp_path)
    assert history["epoch"] == [1, 2] and history["phase"] == [2, 2]
    assert runs.load_history(tmp_path / runs.HISTORY_CSV)["phase"] == [2.0, 2.0]
    # The best model is written when a fit ends; an interrupted fit leaves it to train(), which
    # writes it before passing the interruption on (BestModelKeeper.write).
    assert not (tmp_path / runs.BEST_MODEL).exists()
    shared["checkpoint"].write()
    assert keras.models.load_model(tmp_path / runs.BEST_MODEL, safe_mode=True).count_params() == 4


def test_the_best_model_keeper_writes_the_best_epoch_once_and_training_goes_on_from_the_last(tmp_path):
    """Better epochs are kept in memory; the file gets the best one when the fit ends, atomically."""
    import keras

    network = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
    network.compile(optimizer="adam", loss="binary_crossentropy")
    keeper = train.BestModelKeeper(network, tmp_path / runs.BEST_MODEL)
    keeper.set_model(network)
    dense = network.layers[-1]

    def epoch(number, value, val_loss, loss=0.5):
        dense.set_weights([np.full((3, 1), value, "float32"), np.zeros(1, "float32")])
        keeper.on_epoch_end(number, {"loss": loss, "val_loss": val_loss})

    epoch(0, 1.0, 0.40)
    epoch(1, 2.0, 0.30)                      # the best
    epoch(2, 3.0, 0.35)                      # worse: not kept
    epoch(3, 4.0, float("nan"))              # broken: never kept
    epoch(4, 5.0, 0.10, loss=float("inf"))   # its training loss broke: never kept
    assert not (tmp_path / runs.BEST_MODEL).exists()  # nothing written during the fit
    keeper.on_train_end()
    saved = keras.models.load_model(tmp_path / runs.BEST_MODEL, safe_mode=True)
    assert np.all(saved.layers[-1].get_weights()[0] == 2.0) and keeper.best_epoch == 2
    assert np.all(dense.get_weights()[0] == 5.0)  # the network itself keeps its last weights
    assert [p.name for p in tmp_path.iterdir()] == [runs.BEST_MODEL]  # no temporary file left

    # A second phase replaces the file only if it does better than the first.
    before = (tmp_path / runs.BEST_MODEL).stat().st_mtime_ns
    epoch(5, 6.0, 0.31)
    keeper.on_train_end()
    assert (tmp_path / runs.BEST_MODEL).stat().st_mtime_ns == before
    epoch(6, 7.0, 0.20)
    keeper.on_train_end()
    saved = keras.models.load_model(tmp_path / runs.BEST_MODEL, safe_mode=True)
    assert np.all(saved.layers[-1].get_weights()[0] == 7.0) and keeper.best_epoch == 7


def test_missing_weights_stop_before_a_run_folder_exists(tiny_data, tmp_path):
    from hello_dl.errors import WeightsError

    output = tmp_path / "outputs"
    settings = _tiny_settings(tiny_data, output, weights=str(tmp_path / "missing.h5"))
    with pytest.raises(WeightsError, match="does not exist"):
        train.train(settings, verbose=0)
    assert not output.exists() or not any(output.iterdir())


def test_after_the_last_fit_the_optimizer_state_is_let_go_of_and_the_model_still_answers(tmp_path):
    """What train() does before writing the best model: Adam's moments and the compiled steps go."""
    import gc
    import weakref

    import keras

    network = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.Dense(1, activation="sigmoid")])
    network.compile(optimizer="adam", loss="binary_crossentropy")
    x = np.random.default_rng(1).normal(size=(16, 3)).astype("float32")
    y = (x[:, :1] > 0).astype("float32")
    keeper = train.BestModelKeeper(network, tmp_path / runs.BEST_MODEL, write_when_fit_ends=False)
    network.fit(x, y, validation_data=(x, y), epochs=2, verbose=0, callbacks=[keeper])
    assert not (tmp_path / runs.BEST_MODEL).exists()  # left to the caller
    answers = network.predict(x, verbose=0)
    optimizer, moment = weakref.ref(network.optimizer), weakref.ref(network.optimizer.variables[-1])
    train.let_go_of_training(network, network)
    gc.collect()
    assert optimizer() is None and moment() is None  # nothing holds Adam's state any more
    assert network.train_function is None
    np.testing.assert_allclose(network.predict(x, verbose=0), answers, rtol=1e-6)
    keeper.write()
    saved = keras.models.load_model(tmp_path / runs.BEST_MODEL, safe_mode=True)
    assert saved.count_params() == network.count_params()
    network.save(tmp_path / "whole.keras")  # the network itself can still be saved (uncompiled)
