"""Predictions on files, lists and folders (PNG/JPEG/DICOM) and metrics of a saved run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hello_dl import evaluate, plots, runs
from hello_dl.errors import DataError

pytestmark = pytest.mark.slow  # every test here uses the shared trained run


@pytest.fixture(scope="module")
def run(smoke_run):
    return runs.open_run(smoke_run.run_dir, smoke_run.settings)


@pytest.fixture(scope="module")
def best_model(run):
    return run.model


def test_predict_one_file_a_list_and_a_folder(smoke_run, fetched_dataset, run):
    settings = smoke_run.settings
    test_folder = fetched_dataset / "TEST"
    one = evaluate.predict_paths([test_folder / "abd2.png"], run)
    assert len(one) == 1
    folder = evaluate.predict_paths([test_folder], run)
    assert sorted(p.file.name for p in folder) == ["abd2.png", "chest2.png"]
    both = evaluate.predict_paths([test_folder / "chest2.png", test_folder / "abd2.png"], run)
    assert [p.file.name for p in both] == ["chest2.png", "abd2.png"]  # the order given
    for prediction in folder + both:
        assert 0.0 <= prediction.probability <= 1.0
        assert prediction.predicted_class == int(prediction.probability >= settings.threshold)
        assert prediction.display_name == settings.class_names[prediction.predicted_class]
        assert prediction.image.shape == (75, 75, 3) and prediction.image.dtype == np.uint8  # what the model saw
        assert str(prediction) == f"{prediction.file}\t{prediction.probability:.4f}\t{prediction.display_name}"
    # The true class, where a file's folder or name gives it, is shown beside the answer.
    assert {p.file.name: p.true_name for p in folder} == {"abd2.png": "abdomen", "chest2.png": "chest"}
    assert folder[0].correct == (folder[0].predicted_class == folder[0].true_class)
    by_name = {p.file.name: p.probability for p in folder}
    # One image alone or in a batch of two: oneDNN sums in another order, so allow float32 rounding.
    assert by_name["abd2.png"] == pytest.approx(one[0].probability, abs=1e-5)


def test_predictions_equal_the_validation_scores(smoke_run, fetched_dataset, run):
    """Inference on a file and validation use the same loading, so the numbers agree."""
    saved = json.loads((smoke_run.run_dir / runs.EVALUATION).read_text())
    files = [p["file"] for p in saved["predictions"]]
    predictions = evaluate.predict_paths(files, run)
    assert np.allclose([p.probability for p in predictions], [p["probability"] for p in saved["predictions"]],
                       atol=1e-5)


def test_jpeg_and_dicom_inputs(smoke_run, fetched_dataset, run, tmp_path):
    from hello_dl import dicom

    source = fetched_dataset / "TEST" / "chest2.png"
    jpeg = tmp_path / "chest2.jpg"
    Image.open(source).convert("RGB").save(jpeg, quality=95)
    dcm = dicom.image_to_dicom(source, tmp_path / "chest2.dcm")
    predictions = evaluate.predict_paths([source, jpeg, dcm], run)
    assert [p.file.suffix for p in predictions] == [".png", ".jpg", ".dcm"]
    png, from_jpeg, from_dicom = (p.image.astype(int) for p in predictions)
    # Same picture, three containers: the model is shown the same image (JPEG is lossy, DICOM 12-bit).
    assert np.abs(png - from_dicom).max() <= 1 and np.abs(png - from_jpeg).mean() < 2
    # From the DICOM the answer is the PNG's. (Not compared for the JPEG: the smoke model, trained from
    # scratch in seconds at 75 px, can react strongly to JPEG's small changes; seen 0.22 on one run.)
    assert predictions[2].probability == pytest.approx(predictions[0].probability, abs=0.02)


def test_a_run_is_read_with_its_own_settings(smoke_run, tmp_path):
    caller = smoke_run.settings.replace(image_size=150, threshold=0.3)  # what a notebook might have
    run = runs.latest(caller)
    assert run.folder == smoke_run.run_dir
    assert run.settings.image_size == 75 and run.settings.threshold == 0.3
    predictions = evaluate.predict_paths([caller.data_dir / "TEST" / "abd2.png"], run)
    assert len(predictions) == 1 and predictions[0].display_name in caller.class_names


def test_bad_paths_are_named(smoke_run, tmp_path, best_model):
    settings = smoke_run.settings
    with pytest.raises(DataError, match="does not exist"):
        evaluate.predict_files(best_model, [tmp_path / "missing.png"], settings)
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match="notes.txt"):
        evaluate.predict_files(best_model, [tmp_path / "notes.txt"], settings)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no PNG, JPEG or DICOM"):
        evaluate.predict_files(best_model, [tmp_path / "empty"], settings)
    wrong_size = settings.replace(image_size=99)
    with pytest.raises(DataError, match="75x75"):
        evaluate.predict_files(best_model, [settings.data_dir / "TEST" / "abd2.png"], wrong_size)


def test_threshold_setting_decides_the_class(smoke_run, best_model):
    settings = smoke_run.settings
    file = settings.data_dir / "TEST" / "abd2.png"
    probability = evaluate.predict_files(best_model, [file], settings)[0].probability
    below = settings.replace(threshold=min(0.999, probability + 1e-3))
    above = settings.replace(threshold=max(0.001, probability - 1e-3))
    assert evaluate.predict_files(best_model, [file], below)[0].display_name == settings.class_names[0]
    assert evaluate.predict_files(best_model, [file], above)[0].display_name == settings.class_names[1]


def test_score_matches_scikit_learn_by_hand(smoke_run):
    settings = smoke_run.settings
    y_true = [0, 0, 0, 1, 1, 1]
    y_prob = [0.1, 0.6, 0.2, 0.9, 0.4, 0.8]
    result = evaluate.score(y_true, y_prob, settings)
    assert result.accuracy == pytest.approx(4 / 6)
    assert result.confusion.tolist() == [[2, 1], [1, 2]]
    assert result.auc == pytest.approx(8 / 9)  # 8 of 9 (abdomen, chest) pairs ranked correctly
    expected_loss = -np.mean([np.log(0.9), np.log(0.4), np.log(0.8), np.log(0.9), np.log(0.4), np.log(0.8)])
    assert result.loss == pytest.approx(expected_loss, rel=1e-5)
    assert "chest" in result.report and "abdomen" in result.report
    assert evaluate.score([1, 1], [0.7, 0.8], settings).auc is None  # one class only: no ROC


def test_evaluate_run_recomputes_numbers_and_figures(smoke_run, tmp_path):
    run_copy = tmp_path / smoke_run.run_dir.name
    shutil.copytree(smoke_run.run_dir, run_copy)
    shutil.rmtree(run_copy / runs.FIGURES)
    (run_copy / runs.EVALUATION).unlink()
    summary = evaluate.evaluate_run(runs.open_run(run_copy, smoke_run.settings))
    metrics = json.loads((smoke_run.run_dir / "metrics.json").read_text())
    assert summary["accuracy"] == pytest.approx(metrics["val_accuracy"], abs=1e-4)
    assert summary["auc"] == pytest.approx(metrics["val_auc"], abs=1e-4)
    assert summary["images"] == 10 and np.sum(summary["confusion_matrix"]) == 10
    for figure in ("roc.png", "confusion_matrix.png", "predictions.png", "training_curves.png"):
        assert (run_copy / "figures" / figure).stat().st_size > 1000
    saved = json.loads((run_copy / "evaluation.json").read_text())
    assert saved["classification_report"]["chest"]["support"] == 5
    assert saved["set"] == "validation" and saved["distinct_images"] == 9
    intervals = saved["intervals_95"]
    assert intervals["accuracy"]["ci95_low"] <= summary["accuracy"] <= intervals["accuracy"]["ci95_high"]
    assert summary["accuracy_95ci"] == pytest.approx([intervals["accuracy"]["ci95_low"],
                                                      intervals["accuracy"]["ci95_high"]], abs=1e-4)
    # The paper's TEST folder is flat; its two file names give the labels, and the kit says so.
    assert summary["test_images"] == 2 and len(summary["test_accuracy_95ci"]) == 2
    test = json.loads((run_copy / "evaluation_test.json").read_text())
    assert test["set"] == "TEST" and test["labels_from"] == "file names"
    assert sorted((Path(p["file"]).name, p["true"]) for p in test["predictions"]) == [
        ("abd2.png", "abdomen"), ("chest2.png", "chest")]
    assert summary["train_images"] == 65 and len(summary["headlines"]) == 3
    assert (run_copy / "figures" / evaluate.INTERVALS_FIGURE).stat().st_size > 1000


def test_saving_the_same_evaluation_again_does_not_redraw_it(run, tmp_path):
    test = evaluate.evaluate_model(run.model, run.settings, "test")
    evaluate.save_evaluation(test, tmp_path)
    figures = sorted((tmp_path / runs.FIGURES).glob("*_test.png"))
    assert [f.name for f in figures] == ["confusion_matrix_test.png", "predictions_test.png", "roc_test.png"]
    drawn = {f: f.stat().st_mtime_ns for f in figures}
    saved = (tmp_path / "evaluation_test.json").read_text()
    assert evaluate.save_evaluation(test, tmp_path) == json.loads(saved)  # the same numbers: nothing redrawn
    assert {f: f.stat().st_mtime_ns for f in figures} == drawn
    figures[1].unlink()  # a figure lost: every figure of the set is drawn again
    evaluate.save_evaluation(test, tmp_path)
    assert figures[1].is_file() and all(f.stat().st_mtime_ns > drawn[f] for f in figures if f != figures[1])
    again = {f: f.stat().st_mtime_ns for f in figures}
    other = test.at_threshold(0.9)  # other numbers: drawn again and saved
    evaluate.save_evaluation(other, tmp_path)
    assert all(f.stat().st_mtime_ns > again[f] for f in figures)
    assert json.loads((tmp_path / "evaluation_test.json").read_text())["threshold"] == pytest.approx(0.9)


def test_every_figure_names_its_set(smoke_run, run):
    test = evaluate.evaluate_model(run.model, run.settings, "test")
    assert "TEST set (2 images)" in test.plot_roc().axes[0].get_title()
    assert "TEST set" in test.plot_confusion_matrix().axes[0].get_title()
    gallery = test.plot_predictions()
    assert "TEST images (true class from the file names)" in gallery.get_suptitle()
    assert all("true: " in axis.get_title() for axis in gallery.axes if axis.get_visible())
    assert "95% CI" in test.plot_confusion_matrix().get_supxlabel()


# --- intervals, thresholds and names (no trained model needed) -----------------------------------------
@pytest.fixture(scope="module")
def plain_settings():
    from hello_dl.settings import load_settings

    return load_settings("smoke", environ={})


@pytest.mark.parametrize("name, label", [
    ("abd2.png", 1), ("chest2.png", 0), ("CHEST_pa.dcm", 0), ("abdomen-supine.jpg", 1), ("openI_CXR_4.png", 0),
    ("openI_abd_xray_1.png", 1), ("case17.png", None), ("chest_and_abdomen.png", None), ("openi_12.png", None),
])
def test_labels_from_file_names(plain_settings, name, label):
    assert evaluate.label_from_name(Path("TEST") / name, plain_settings) == label
    assert evaluate.true_class(Path("TEST") / name, plain_settings) == label


def test_a_class_folder_beats_the_file_name(plain_settings):
    chest_folder, abdomen_folder = plain_settings.class_folders
    assert evaluate.true_class(Path("VAL") / abdomen_folder / "chest_like_name.png", plain_settings) == 1
    assert evaluate.true_class(Path("VAL") / chest_folder / "x.png", plain_settings) == 0
    assert evaluate.true_class(Path("elsewhere") / "x.png", plain_settings) is None


def test_every_share_carries_its_wilson_interval_and_the_auc_a_seeded_one(plain_settings):
    from hello_dl import stats

    result = evaluate.score([0, 0, 0, 1, 1, 1], [0.1, 0.6, 0.2, 0.9, 0.4, 0.8], plain_settings)
    assert result.correct == stats.Proportion(4, 6)
    assert result.sensitivity == stats.Proportion(2, 3) and result.specificity == stats.Proportion(2, 3)
    assert result.auc_estimate.value == pytest.approx(result.auc)
    assert result.auc_estimate == stats.auc_interval(result.y_true, result.y_prob, seed=plain_settings.seed)
    numbers = result.metrics("val_")
    assert numbers["val_accuracy"] == pytest.approx(4 / 6)
    assert (numbers["val_accuracy_ci95_low"], numbers["val_accuracy_ci95_high"]) == stats.wilson_interval(4, 6)
    assert numbers["val_auc_ci95_low"] == result.auc_estimate.low and "bootstrap" in numbers["val_auc_ci95_method"]
    text = result.format()
    assert "4/6 (67%, 95% CI" in text and "validation set" in text and "not a test" in text
    assert stats.SMALL_SET_SENTENCE in text
    assert result.headline().startswith("validation set (6 images): accuracy 4/6")
    saved = result.as_dict()
    assert saved["intervals_95"]["accuracy"]["ci95_low"] == result.correct.low
    assert saved["intervals_95"]["auc"]["method"] == result.auc_estimate.method


def test_another_threshold_changes_the_shares_not_the_auc(plain_settings):
    result = evaluate.score([0, 0, 0, 1, 1, 1], [0.1, 0.6, 0.2, 0.9, 0.4, 0.8], plain_settings)
    strict = result.at_threshold(0.85)
    assert strict.threshold == 0.85 and strict.auc == result.auc and strict.loss == result.loss
    assert strict.sensitivity.count == 1 and strict.specificity.count == 3
    assert strict.confusion.tolist() == [[3, 0], [2, 1]]
    figure = strict.plot_threshold()
    assert any(list(line.get_xdata()) == [0.85, 0.85] for line in figure.axes[0].lines)


def test_ppv_at_a_realistic_prevalence(plain_settings):
    result = evaluate.score([0] * 5 + [1] * 5, [0.1, 0.2, 0.3, 0.1, 0.2, 0.8, 0.9, 0.7, 0.6, 0.95], plain_settings)
    table = evaluate.predictive_values(result, prevalences=(0.5, 0.02))
    half, rare = table.rows
    assert half["ppv"] == pytest.approx(1.0) and rare["ppv"] == pytest.approx(1.0)  # 5/5 right: the observed view
    # At the lower ends of both intervals (5/5 → 57 %), a 2 % prevalence leaves most positive answers wrong.
    assert rare["ppv_pessimistic"] < 0.1 < half["ppv_pessimistic"]
    text = table.format()
    assert "2.0%" in text and "false alarms" in text


def test_the_papers_numbers_are_points_beside_the_curves():
    points = evaluate.paper_points()
    assert sorted(points.values()) == [(5, 0.89), (5, 1.0)]
    assert all(name.startswith("the paper, epoch 5: ") for name in points)
    assert any("training 89%" in name for name in points) and any("validation 100%" in name for name in points)
    figure = plots.plot_training_curves({"loss": [0.7, 0.5], "accuracy": [0.5, 0.8], "val_loss": [0.6, 0.4],
                                         "val_accuracy": [0.6, 0.9]}, reference_points=points)
    labels = figure.axes[1].get_legend_handles_labels()[1]
    assert set(points) <= set(labels)
