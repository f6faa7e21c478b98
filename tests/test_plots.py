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
    assert "score 0.90" in titles[0].get_text()


def test_gradcam_puts_every_image_on_one_scale_with_a_colour_bar(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (75, 75, 3), dtype=np.uint8)
    strong = np.zeros((3, 3), dtype=np.float32)
    strong[0, 0] = 2.0
    results = [SimpleNamespace(image=image, raw=strong, caption="strong"),
               SimpleNamespace(image=image, raw=strong / 4, caption="weak", caption_colour=plots.WRONG_COLOUR),
               SimpleNamespace(image=image, heatmap=np.full((3, 3), 0.5), caption="no raw map")]
    figure = plots.plot_gradcam(results, save_path=tmp_path / "cam.png")
    _check(figure, tmp_path / "cam.png")
    pictures = [axis for axis in figure.axes if axis.images]
    assert len(pictures) == 3 and len(figure.axes) == 4  # 3 images and the colour bar
    bar = figure.axes[-1]
    assert "strongest spot in this figure" in bar.get_ylabel()
    overlays = [np.asarray(axis.images[1].get_array()) for axis in pictures]
    # One scale: the weak map (a quarter of the strong one) is drawn a quarter as strong, not stretched to 1.
    assert overlays[0][..., 3].max() == pytest.approx(0.6, abs=0.01)
    assert overlays[1][..., 3].max() == pytest.approx(0.15, abs=0.01)
    assert overlays[0][..., 3].min() == pytest.approx(0.0, abs=0.01)  # see-through where the map is cold
    assert pictures[1].title.get_color() == plots.WRONG_COLOUR
    assert plots.HEAT_COLORMAP == "inferno" and "inferno" in {c.cmap.name for c in bar.collections}


def test_tsne_figure(tmp_path):
    rng = np.random.default_rng(0)
    tsne = SimpleNamespace(embedding=rng.normal(size=(12, 2)), labels=np.array([0, 1] * 6),
                           splits=np.array(["train"] * 8 + ["val"] * 4), class_names=("chest", "abdomen"))
    figure = plots.plot_tsne(tsne, save_path=tmp_path / "tsne.png")
    _check(figure, tmp_path / "tsne.png")
    legend = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert sorted(legend) == ["abdomen (train)", "abdomen (val)", "chest (train)", "chest (val)"]


def test_roc_and_confusion_matrix_carry_the_set_and_the_intervals(tmp_path):
    interval = SimpleNamespace(low=0.61, high=0.99)
    figure = plots.plot_roc([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.8], auc_interval=interval, set_name="validation",
                            save_path=tmp_path / "roc.png")
    _check(figure, tmp_path / "roc.png")
    axis = figure.axes[0]
    assert axis.get_title() == "ROC curve, validation set (4 images)"
    assert [t.get_text() for t in axis.get_legend().get_texts()][0] == "model (AUC 0.75, 95% CI 0.61–0.99)"
    matrix = plots.plot_confusion_matrix([[4, 1], [0, 5]], ("chest", "abdomen"), caption="accuracy 9/10 (...)",
                                         save_path=tmp_path / "cm.png")
    assert matrix.get_supxlabel() == "accuracy 9/10 (...)"


def test_metric_intervals_draw_each_set_with_its_bar(tmp_path):
    rows = {"validation (10 images)": {"accuracy": (0.9, 0.6, 0.98), "AUC": (1.0, 0.69, 1.0)},
            "TEST (2 images)": {"accuracy": (0.5, 0.09, 0.91)},
            "the paper": {"accuracy": (1.0, 0.72, 1.0)}}
    figure = plots.plot_metric_intervals(rows, hollow=["the paper"], save_path=tmp_path / "intervals.png")
    _check(figure, tmp_path / "intervals.png")
    accuracy, auc = figure.axes
    assert [t.get_text() for t in accuracy.get_yticklabels()] == list(rows)
    bars = [line for line in accuracy.lines if len(line.get_xdata()) == 2]
    assert sorted(tuple(line.get_xdata()) for line in bars) == [(0.09, 0.91), (0.6, 0.98), (0.72, 1.0)]
    hollow = [line for line in accuracy.lines if line.get_marker() == "D"]
    assert len(hollow) == 1 and hollow[0].get_markerfacecolor() == "none"
    assert "coin toss" in auc.get_xlabel()


def test_stress_test_figure_shows_flips_with_intervals_and_score_shifts(tmp_path):
    from hello_dl.stats import Proportion

    changes = [SimpleNamespace(label="half the resolution", flipped=Proportion(0, 11), shifts=np.full(11, 0.01)),
               SimpleNamespace(label="side marker covered", flipped=Proportion(3, 11),
                               shifts=np.linspace(0, 0.6, 11))]
    result = SimpleNamespace(changes=changes, description="11 distinct images", max_flip_rate=0.1)
    figure = plots.plot_stress_test(result, save_path=tmp_path / "stress.png")
    _check(figure, tmp_path / "stress.png")
    flips, shifts = figure.axes
    assert [t.get_text() for t in flips.get_yticklabels()] == ["half the resolution", "side marker covered"]
    widths = sorted(round(patch.get_width(), 3) for patch in flips.patches)
    assert widths == [0.0, round(3 / 11, 3)]
    assert any(tuple(line.get_xdata()) == Proportion(3, 11).interval for line in flips.lines)
    assert "3/11" in [t.get_text() for t in flips.texts]
    assert len(shifts.collections) == 2 and "11 distinct images" in figure.get_suptitle()


def test_threshold_figure_marks_each_score_right_or_wrong(tmp_path):
    figure = plots.plot_threshold([0, 0, 1, 1], [0.2, 0.7, 0.6, 0.9], 0.65, summary="sensitivity ...",
                                  save_path=tmp_path / "threshold.png")
    _check(figure, tmp_path / "threshold.png")
    axis = figure.axes[0]
    assert any(list(line.get_xdata()) == [0.65, 0.65] for line in axis.lines)
    colours = [tuple(c) for points in axis.collections for c in points.get_facecolors()]
    from matplotlib.colors import to_rgba

    right, wrong = to_rgba(plots.CORRECT_COLOUR), to_rgba(plots.WRONG_COLOUR)
    assert colours == [right, wrong, wrong, right]  # chest 0.2 right, chest 0.7 wrong, abdomen 0.6 wrong, 0.9 right


def test_feature_maps_grid_has_a_row_per_block(tmp_path):
    rng = np.random.default_rng(1)
    blocks = [SimpleNamespace(label=f"{stage} block", maps=rng.random((count, size, size)), channels=list(range(count)))
              for stage, count, size in (("early", 4, 20), ("middle", 3, 8), ("late", 4, 3))]
    result = SimpleNamespace(image=rng.integers(0, 255, (40, 40, 3), dtype=np.uint8), blocks=blocks)
    figure = plots.plot_feature_maps(result, save_path=tmp_path / "maps.png")
    _check(figure, tmp_path / "maps.png")
    shown = [axis for axis in figure.axes if axis.images and axis.get_visible()]
    assert len(shown) == 3 + 4 + 3 + 4  # the radiograph in each row, then its maps
    assert [axis.get_ylabel() for axis in shown if axis.get_ylabel()] == ["early block", "middle block", "late block"]
    assert all(axis.images[0].get_cmap().name == "inferno" for axis in shown if axis.images[0].get_array().ndim == 2)
    assert "strongest in its row" in figure.axes[-1].get_ylabel()


def test_training_curves_show_reference_points(tmp_path):
    figure = plots.plot_training_curves(HISTORY, reference_points={"the paper, training": (5, 0.89)},
                                        save_path=tmp_path / "curves.png")
    labels = [text.get_text() for text in figure.axes[1].get_legend().get_texts()]
    assert "the paper, training" in labels


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
