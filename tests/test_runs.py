"""hello_dl.runs: the one atomic writer, the staged folder, and the run folder (create, finish, list, open)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from hello_dl import model as model_lib
from hello_dl import runs
from hello_dl.errors import HelloDLError


def test_write_atomic_writes_text_bytes_and_json_and_leaves_no_temporary(tmp_path):
    runs.write_atomic(tmp_path / "a.txt", "héllo\n")
    runs.write_atomic(tmp_path / "b.bin", b"\x00\x01")
    runs.write_json(tmp_path / "c.json", {"x": np.float32(0.5), "n": np.int64(3), "arr": np.arange(2)})
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "héllo\n"
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert json.loads((tmp_path / "c.json").read_text()) == {"x": 0.5, "n": 3, "arr": [0, 1]}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.bin", "c.json"]


def test_new_files_get_the_users_usual_mode_not_a_private_one(tmp_path):
    old = os.umask(0o022)
    try:
        path = runs.write_atomic(tmp_path / "shared.txt", "x")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_exclusive_never_replaces_an_existing_file(tmp_path):
    target = tmp_path / "keep.txt"
    target.write_text("original")
    with pytest.raises(FileExistsError):
        runs.write_atomic(target, "new", exclusive=True)
    assert target.read_text() == "original"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into read-only folders")
def test_a_read_only_folder_gives_a_plain_message(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(HelloDLError, match="cannot be written to") as caught:
            runs.write_atomic(folder / "x.json", {})
        assert str(folder) in str(caught.value)
    finally:
        folder.chmod(0o700)


def test_staging_folder_is_removed_whatever_happens_and_publish_is_all_or_nothing(tmp_path):
    destination = tmp_path / "result"
    with runs.staging_folder(destination) as staging:
        (staging / "part").mkdir()
        (staging / "part" / "f.txt").write_text("done")
        runs.publish_folder(staging / "part", destination)
    assert (destination / "f.txt").read_text() == "done"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result"]

    with pytest.raises(RuntimeError):
        with runs.staging_folder(tmp_path / "other") as staging:
            (staging / "half.txt").write_text("half")
            raise RuntimeError("interrupted")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result"]

    with runs.staging_folder(destination) as staging:
        with pytest.raises(FileExistsError):
            runs.publish_folder(staging, destination)
    assert (destination / "f.txt").read_text() == "done"


def test_staging_folder_blames_itself_only_for_failures_inside_it(tmp_path):
    import errno

    with pytest.raises(runs.StorageError, match="No space left"):
        with runs.staging_folder(tmp_path / "out") as staging:
            raise OSError(errno.ENOSPC, "No space left on device", str(staging / "big.bin"))
    with pytest.raises(PermissionError) as caught:
        with runs.staging_folder(tmp_path / "out") as staging:
            raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "source.png"))
    assert caught.value.filename == str(tmp_path / "source.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# --- the run folder ---------------------------------------------------------------------------------
def _settings(tmp_path, **overrides):
    from hello_dl.settings import load_settings

    return load_settings("smoke", environ={}, output_dir=str(tmp_path / "outputs"), **overrides)


def test_create_names_the_folder_after_time_profile_and_group_and_never_reuses_one(tmp_path):
    from datetime import datetime

    settings = _settings(tmp_path, participant="ada")
    moment = datetime(2025, 1, 2, 3, 4, 5)
    first = runs.create(settings, now=moment)
    second = runs.create(settings, now=moment)
    assert first.name == f"20250102-030405_smoke_{settings.experiment_group}"
    assert second.name == first.name + "-2" and first.parent == settings.output_dir
    assert (first / runs.FIGURES).is_dir() and (second / runs.FIGURES).is_dir()
    saved = json.loads((first / runs.SETTINGS).read_text())
    assert saved["settings"]["participant"] == "ada" and saved["sources"]["participant"] == "argument"
    # The headless runner's folders come from the same place, named by their prefix, with nothing in them.
    tutorial = runs.create(settings, prefix="tutorial", now=moment)
    assert tutorial.name == "tutorial-20250102-030405"
    assert [p.name for p in tutorial.iterdir()] == [runs.FIGURES]
    assert not runs.is_finished(first) and runs.list_runs(settings) == []


def _fake_run(folder, *, model=True, metrics=True, finished=True, layout=True):
    """A run folder's files without training (the model file's content does not matter for listing)."""
    folder.mkdir(parents=True)
    settings = {"settings": {"profile": "smoke"}, "sources": {}}
    if layout:
        settings[runs.LAYOUT_KEY] = runs.LAYOUT
    (folder / runs.SETTINGS).write_text(json.dumps(settings))
    if model:
        (folder / runs.BEST_MODEL).write_bytes(b"model")
    if metrics:
        (folder / runs.METRICS).write_text(json.dumps({"val_accuracy": 0.9}))
    if finished:
        runs.mark_finished(folder)
    return folder


def test_only_finished_runs_are_listed_oldest_first_and_the_latest_is_the_newest(tmp_path):
    settings = _settings(tmp_path)
    root = settings.output_dir
    older = _fake_run(root / "20250101-090000_smoke")
    newer = _fake_run(root / "20250101-100000_smoke")
    os.utime(older / runs.SETTINGS, (1_000_000, 1_000_000))
    _fake_run(root / "20250101-110000_smoke", metrics=False, finished=False)  # still training
    _fake_run(root / "20250101-120000_smoke", finished=False)  # metrics written, marker not yet
    legacy = _fake_run(root / "20250101-080000_smoke", finished=False, layout=False)  # old layout: complete
    _fake_run(root / "20250101-070000_smoke", metrics=False, finished=False, layout=False)  # old, interrupted
    (root / "tutorial-20250101-130000").mkdir()
    os.utime(legacy / runs.SETTINGS, (900_000, 900_000))
    assert runs.list_runs(settings) == [legacy, older, newer]
    latest = runs.latest(settings)
    assert isinstance(latest, runs.Run) and latest.folder == newer and latest.finished
    assert latest.metrics == {"val_accuracy": 0.9}
    assert (newer / runs.FINISHED).read_text().startswith("finished ")


def test_latest_without_a_finished_run_points_to_notebook_04(tmp_path):
    settings = _settings(tmp_path)
    with pytest.raises(runs.MissingStepError, match="No trained model found") as caught:
        runs.latest(settings)
    assert "04_train" in str(caught.value) and str(settings.output_dir) in str(caught.value)
    _fake_run(settings.output_dir / "20250101-110000_smoke", finished=False)
    with pytest.raises(runs.MissingStepError):
        runs.latest(settings)


def test_a_run_keeps_its_own_settings_and_the_callers_folders_and_threshold(tmp_path):
    trained = _settings(tmp_path, image_size=99, keep_aspect_ratio=True, class_names="thorax,belly",
                        threshold=0.5, batch_size=3)
    folder = runs.create(trained)
    caller = _settings(tmp_path, data_dir=str(tmp_path / "my data"), threshold=0.7)
    run = runs.open_run(folder, caller)
    assert (run.settings.image_size, run.settings.keep_aspect_ratio) == (99, True)
    assert run.settings.class_names == ("thorax", "belly") and run.settings.batch_size == 3
    assert run.settings.data_dir == tmp_path / "my data" and run.settings.threshold == 0.7
    assert run.settings.sources["image_size"] == f"run:{folder.name}"
    assert run.settings.sources["threshold"] == "argument"
    # Without the caller's settings, the run's own are used as they were.
    assert runs.open_run(folder).settings.knobs() == trained.knobs()
    with pytest.raises(HelloDLError, match="not a run folder"):
        runs.open_run(tmp_path / "nowhere", caller)
    with pytest.raises(HelloDLError, match="did not finish"):
        run.metrics
    with pytest.raises(HelloDLError, match="not a finished run folder"):
        run.model


def test_history_from_json_or_csv_and_a_clear_message_without_either(tmp_path):
    (tmp_path / runs.HISTORY_CSV).write_text("epoch,loss,phase\n0,0.7,1\n1,0.5,2\n")
    assert runs.load_history(tmp_path) == {"epoch": [1, 2], "loss": [0.7, 0.5], "phase": [1.0, 2.0]}
    (tmp_path / runs.HISTORY_JSON).write_text(json.dumps({"epoch": [1], "loss": [0.6]}))
    assert runs.load_history(tmp_path) == {"epoch": [1], "loss": [0.6]}  # the JSON wins
    assert runs.load_history(tmp_path / runs.HISTORY_CSV)["epoch"] == [1, 2]
    with pytest.raises(HelloDLError, match="hello-dl train"):
        runs.load_history(tmp_path / "empty")


# --- models: the current layout takes 0-255 images; the old one is upgraded -------------------------
SIZE = 75


def _old_layout_model():
    """The classifier as the kit built it before the scaling moved into the model: callers fed it [-1, 1]."""
    import keras

    keras.utils.set_random_seed(3)
    base = keras.applications.InceptionV3(include_top=False, weights=None, input_shape=(SIZE, SIZE, 3))
    inputs = keras.Input(shape=(SIZE, SIZE, 3), name="image")
    x = base(inputs, training=False)
    x = keras.layers.GlobalAveragePooling2D(name="average_pool")(x)
    x = keras.layers.Dense(16, activation="relu", name="features")(x)
    x = keras.layers.Dropout(0.5, name="dropout")(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", name="probability")(x)
    return keras.Model(inputs, outputs, name="chest_vs_abdomen")


@pytest.fixture(scope="module")
def legacy_run(tmp_path_factory):
    """A run folder of the old layout: no FINISHED marker, no layout key, a model without the scaling layer."""
    folder = tmp_path_factory.mktemp("old_outputs") / "20240101-120000_smoke"
    folder.mkdir()
    model = _old_layout_model()
    model.save(folder / runs.BEST_MODEL)
    settings = {"settings": {"profile": "smoke", "image_size": SIZE, "weights": "none"}, "sources": {}}
    (folder / runs.SETTINGS).write_text(json.dumps(settings))
    (folder / runs.METRICS).write_text(json.dumps({"val_accuracy": 0.8}))
    (folder / runs.HISTORY_JSON).write_text(json.dumps({"epoch": [1], "val_loss": [0.6]}))
    return folder, model


def _pixels(count=4, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (count, SIZE, SIZE, 3), dtype=np.uint8)


def test_an_old_run_is_finished_and_its_model_takes_plain_pixels_and_predicts_as_before(legacy_run, tmp_path):
    from keras.applications.inception_v3 import preprocess_input

    from hello_dl.settings import load_settings

    folder, old_model = legacy_run
    settings = load_settings("smoke", environ={}, output_dir=str(folder.parent))
    assert runs.list_runs(settings) == [folder]
    run = runs.latest(settings)
    assert not runs.takes_plain_pixels(old_model) and runs.takes_plain_pixels(run.model)
    assert [layer.name for layer in run.model.layers][:3] == ["image", runs.PIXEL_SCALING_LAYER, "inception_v3"]
    assert model_lib.keeps_batchnorm_statistics(run.model)  # the base is still called with training=False
    images = _pixels()
    before = old_model.predict(preprocess_input(images.astype("float32")), verbose=0)  # how it was used
    after = run.model.predict(images, verbose=0)
    assert np.ptp(before) > 0 and np.allclose(after, before, atol=1e-5)
    assert run.history["val_loss"] == [0.6] and run.metrics["val_accuracy"] == 0.8


def test_grad_cam_and_features_work_on_an_upgraded_old_model(legacy_run):
    from hello_dl import explain

    folder, _ = legacy_run
    model = runs.open_run(folder).model
    heatmap, probability = explain.grad_cam(model, _pixels(1)[0])
    assert heatmap.shape == (1, 1) and 0.0 <= probability <= 1.0
    assert explain.penultimate_features(model, _pixels(3)).shape == (3, 16)


def test_an_old_model_that_is_not_one_chain_of_layers_gives_a_clear_message(tmp_path):
    import keras

    inputs = keras.Input((4,), name="image")
    joined = keras.layers.Add()([keras.layers.Dense(2, name="a")(inputs), keras.layers.Dense(2, name="b")(inputs)])
    path = tmp_path / runs.BEST_MODEL
    keras.Model(inputs, keras.layers.Dense(1, name="out")(joined)).save(path)
    with pytest.raises(HelloDLError, match="Train again"):
        runs.load_model(path)
    (tmp_path / "broken.keras").write_bytes(b"not a model")
    with pytest.raises(HelloDLError, match="cannot be read"):
        runs.load_model(tmp_path / "broken.keras")


def test_save_model_replaces_the_file_in_one_step(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    target = tmp_path / runs.BEST_MODEL
    target.write_bytes(b"old")
    runs.save_model(model, target)
    reloaded = keras.models.load_model(target, safe_mode=True)
    assert np.allclose(reloaded.get_weights()[0], model.get_weights()[0])
    assert [p.name for p in tmp_path.iterdir()] == [runs.BEST_MODEL]
