"""Every figure renders to a PNG (Agg backend) from arrays, histories or result objects, and saves atomically."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from matplotlib.figure import Figure

from hello_dl import pipeline, plots
from hello_dl.settings import load_settings

HISTORY = {
    "epoch": [1, 2, 3, 4, 5],
    "phase": [1, 1, 2, 2, 2],
    "loss": [0.70, 0.60, 0.50, 0.40, 0.35],
    "val_loss": [0.69, 0.62, 0.45, 0.48, 0.50],
    "accuracy": [0.5, 0.6, 0.7, 0.8, 0.85],
    "val_accuracy": [0.5, 0.6, 0.8, 0.8, 0.7],
}


def _is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 2000


def _check(figure, path: Path) -> None:
    assert isinstance(figure, Figure)
    assert _is_png(path)
    assert not list(path.parent.glob(".*partial*"))  # no temporary file left behind


@pytest.fixture
def settings(fetched_dataset):
    return load_settings("smoke", environ={}, data_dir=str(fetched_dataset))


def test_plots_only_draw_they_import_nothing_of_the_kit_but_the_writer():
    import ast

    tree = ast.parse(Path(plots.__file__).read_text())
    kit = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
           and (node.module or "").startswith("hello_dl")}
    kit |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
            if alias.name.startswith("hello_dl")}
    assert kit == {"hello_dl.runs"}
    assert not [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                and node.col_offset > 0]  # and nothing imported inside a function


def test_sample_grid_from_the_dataset(settings, tmp_path):
    samples = pipeline.class_samples(settings, split="train", per_class=3)
    figure = plots.plot_sample_grid(samples, per_class=3, save_path=tmp_path / "grid.png")
    _check(figure, tmp_path / "grid.png")
    titles = [axis.get_title() for axis in figure.axes]
    assert any("512x512 px" in title for title in titles)  # sizes shown: the shortcut is visible
    assert samples["chest"][0].file.name[:8] in titles[0]


def test_sample_grid_accepts_arrays(tmp_path):
    arrays = {"a": [np.zeros((20, 30), dtype=np.uint8)], "b": [np.ones((30, 20, 3), dtype=np.float32) * 0.5]}
    figure = plots.plot_sample_grid(arrays, per_class=1, save_path=tmp_path / "arrays.png")
    _check(figure, tmp_path / "arrays.png")
    assert [axis.get_title() for axis in figure.axes] == ["30x20 px", "20x30 px"]


def test_augmentation_preview_draws_the_arrays_it_is_given(tmp_path):
    rng = np.random.default_rng(0)
    original = rng.integers(0, 255, (75, 75, 3), dtype=np.uint8)
    augmented = rng.integers(0, 255, (5, 75, 75, 3), dtype=np.uint8)
    figure = plots.plot_augmentation_preview(original, augmented, save_path=tmp_path / "augment.png")
    _check(figure, tmp_path / "augment.png")
    images = [np.asarray(axis.images[0].get_array()) for axis in figure.axes if axis.images]
    assert len(images) == 6
    np.testing.assert_array_equal(images[0], original)
    np.testing.assert_array_equal(images[3], augmented[2])
    titles = [axis.get_title() for axis in figure.axes if axis.get_visible()]
    assert titles[:2] == ["original", "augmented 1"]


def test_training_curves_mark_the_phase_change(tmp_path):
    figure = plots.plot_training_curves(HISTORY, save_path=tmp_path / "curves.png")
    _check(figure, tmp_path / "curves.png")
    assert plots.phase_boundaries(HISTORY) == [2.5]
    loss_axis = figure.axes[0]
    assert any(list(line.get_xdata()) == [2.5, 2.5] for line in loss_axis.lines)  # the vertical marker
    labels = [text.get_text() for text in loss_axis.get_legend().get_texts()]
    assert "training" in labels and "validation" in labels and "best model (epoch 3)" in labels


def test_training_curves_from_a_keras_history(tmp_path):
    keras_like = SimpleNamespace(history={k: v for k, v in HISTORY.items() if k not in {"epoch", "phase"}})
    figure = plots.plot_training_curves(keras_like, save_path=tmp_path / "keras.png")
    _check(figure, tmp_path / "keras.png")
    assert plots.phase_boundaries(keras_like.history) == []


def test_roc_is_scikit_learns_curve_in_the_kits_style(tmp_path):
    from sklearn.metrics import roc_curve

    y_true, y_score = [0, 0, 1, 1, 1], [0.1, 0.6, 0.4, 0.8, 0.9]
    figure = plots.plot_roc(y_true, y_score, positive_name="abdomen", save_path=tmp_path / "roc.png")
    _check(figure, tmp_path / "roc.png")
    axis = figure.axes[0]
    legend = [t.get_text() for t in axis.get_legend().get_texts()]
    assert legend == ["model (AUC 0.83)", "chance (AUC 0.50)"]
    model_line = next(line for line in axis.lines if line.get_label().startswith("model"))
    fpr, tpr, _ = roc_curve(y_true, y_score)
    np.testing.assert_allclose(model_line.get_xdata(), fpr)
    np.testing.assert_allclose(model_line.get_ydata(), tpr)
    assert model_line.get_color() == plots.SERIES_COLOURS[0] and model_line.get_drawstyle() == "steps-post"
    assert axis.get_ylabel() == "true positive rate (sensitivity for abdomen)"
    assert axis.get_xlabel() == "false positive rate (1 - specificity)" and axis.get_title() == "ROC curve"
    one_class = plots.plot_roc([1, 1], [0.4, 0.8], save_path=tmp_path / "roc_one_class.png")
    _check(one_class, tmp_path / "roc_one_class.png")
    assert "both classes" in one_class.axes[0].texts[0].get_text()


def test_confusion_matrix_is_scikit_learns_display_with_the_kits_labels(tmp_path):
    figure = plots.plot_confusion_matrix([[4, 1], [0, 5]], ("chest", "abdomen"), save_path=tmp_path / "cm.svg")
    assert (tmp_path / "cm.svg").read_text().lstrip().startswith("<?xml")  # format from the suffix
    axis = figure.axes[0]
    assert len(figure.axes) == 1  # no colour bar
    assert [t.get_text() for t in axis.texts] == ["4", "1", "0", "5"]  # rows true, columns predicted
    assert [t.get_text() for t in axis.get_xticklabels()] == ["chest", "abdomen"]
    assert (axis.get_xlabel(), axis.get_ylabel(), axis.get_title()) == ("predicted", "true",
                                                                      "Confusion matrix (10 images)")


def test_prediction_gallery_draws_the_images_the_caller_loaded_and_colours_right_and_wrong(tmp_path):
    images = [np.full((48, 64, 3), index * 80, dtype=np.uint8) for index in range(3)]
    nowhere = tmp_path / "not there"  # the files are only names here: nothing is read
    predictions = [SimpleNamespace(file=nowhere / "a.png", image=images[0], probability=0.9, display_name="abdomen",
                                   true_name="abdomen"),
                   SimpleNamespace(file=nowhere / "b.png", image=images[1], probability=0.2, display_name="chest",
                                   true_name="abdomen"),
                   SimpleNamespace(file=nowhere / "c.png", image=images[2], probability=0.3, display_name="chest")]
    figure = plots.plot_prediction_gallery(predictions, columns=2, save_path=tmp_path / "gallery.png")
    _check(figure, tmp_path / "gallery.png")
    np.testing.assert_array_equal(figure.axes[1].images[0].get_array(), images[1])
    titles = [axis.title for axis in figure.axes if axis.get_visible()]
    assert len(titles) == 3
    assert titles[0].get_color() == plots.CORRECT_COLOUR and titles[1].get_color() == plots.WRONG_COLOUR
    assert "p=0.90" in titles[0].get_text()


def test_gradcam_and_tsne_figures(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (75, 75, 3), dtype=np.uint8)
    results = [SimpleNamespace(image=image, overlay=image[::-1], caption=f"case {i}") for i in range(3)]
    _check(plots.plot_gradcam(results, save_path=tmp_path / "cam.png"), tmp_path / "cam.png")
    tsne = SimpleNamespace(embedding=rng.normal(size=(12, 2)), labels=np.array([0, 1] * 6),
                           splits=np.array(["train"] * 8 + ["val"] * 4), class_names=("chest", "abdomen"))
    figure = plots.plot_tsne(tsne, save_path=tmp_path / "tsne.png")
    _check(figure, tmp_path / "tsne.png")
    legend = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert sorted(legend) == ["abdomen (train)", "abdomen (val)", "chest (train)", "chest (val)"]


def test_group_comparison(tmp_path):
    other = dict(HISTORY, val_accuracy=[0.5, 0.5, 0.6, 0.7, 0.9])
    figure = plots.plot_group_comparison({"1A": HISTORY, "2B": other}, save_path=tmp_path / "groups.png")
    _check(figure, tmp_path / "groups.png")
    assert [len(axis.lines) for axis in figure.axes] == [2, 2]


def test_save_replaces_an_existing_file_atomically(tmp_path):
    target = tmp_path / "curves.png"
    target.write_bytes(b"old")
    plots.plot_training_curves(HISTORY, save_path=target)
    assert _is_png(target)
