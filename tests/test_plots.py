"""Every figure renders to a PNG (Agg backend), returns its Figure, and saves atomically."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from hello_dl import plots
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
    assert not list(path.parent.glob(".*.tmp.*"))  # no temporary file left behind


@pytest.fixture
def settings(fetched_dataset):
    return load_settings("smoke", environ={}, data_dir=str(fetched_dataset))


def test_sample_grid_from_the_dataset(settings, tmp_path):
    samples = plots.class_samples(settings, split="train", per_class=3)
    assert list(samples) == ["chest", "abdomen"] and all(len(v) == 3 for v in samples.values())
    figure = plots.plot_sample_grid(samples, per_class=3, save_path=tmp_path / "grid.png")
    _check(figure, tmp_path / "grid.png")
    titles = [axis.get_title() for axis in figure.axes]
    assert any("512x512 px" in title for title in titles)  # sizes shown: the shortcut is visible


def test_sample_grid_accepts_arrays(tmp_path):
    arrays = {"a": [np.zeros((20, 30), dtype=np.uint8)], "b": [np.ones((30, 20, 3), dtype=np.float32) * 0.5]}
    _check(plots.plot_sample_grid(arrays, per_class=1, save_path=tmp_path / "arrays.png"), tmp_path / "arrays.png")


def test_augmentation_preview(settings, tmp_path):
    example = plots.class_samples(settings, per_class=1)["chest"][0]
    figure = plots.plot_augmentation_preview(example, settings, count=5, seed=3,
                                             save_path=tmp_path / "augment.png")
    _check(figure, tmp_path / "augment.png")
    images = [axis.images[0].get_array() for axis in figure.axes if axis.images]
    assert len(images) == 6 and images[0].shape == (75, 75, 3)
    assert any(not np.array_equal(images[0], other) for other in images[1:])  # really augmented


def test_training_curves_mark_the_phase_change(tmp_path):
    figure = plots.plot_training_curves(HISTORY, save_path=tmp_path / "curves.png")
    _check(figure, tmp_path / "curves.png")
    assert plots.phase_boundaries(HISTORY) == [2.5]
    loss_axis = figure.axes[0]
    assert any(list(line.get_xdata()) == [2.5, 2.5] for line in loss_axis.lines)  # the vertical marker
    labels = [text.get_text() for text in loss_axis.get_legend().get_texts()]
    assert "training" in labels and "validation" in labels and "best model (epoch 3)" in labels


def test_training_curves_from_a_keras_history_and_a_file(tmp_path):
    import json

    (tmp_path / "history.json").write_text(json.dumps(HISTORY))
    _check(plots.plot_training_curves(tmp_path, save_path=tmp_path / "from_folder.png"), tmp_path / "from_folder.png")
    keras_like = SimpleNamespace(history={k: v for k, v in HISTORY.items() if k not in {"epoch", "phase"}})
    figure = plots.plot_training_curves(keras_like, save_path=tmp_path / "keras.png")
    _check(figure, tmp_path / "keras.png")
    assert plots.phase_boundaries(keras_like.history) == []


def test_roc_and_confusion_matrix(tmp_path):
    figure = plots.plot_roc([0, 0, 1, 1, 1], [0.1, 0.6, 0.4, 0.8, 0.9], save_path=tmp_path / "roc.png")
    _check(figure, tmp_path / "roc.png")
    assert any("AUC 0.83" in t.get_text() for t in figure.axes[0].get_legend().get_texts())
    _check(plots.plot_roc([1, 1], [0.4, 0.8], save_path=tmp_path / "roc_one_class.png"), tmp_path / "roc_one_class.png")
    figure = plots.plot_confusion_matrix([[4, 1], [0, 5]], ("chest", "abdomen"), save_path=tmp_path / "cm.svg")
    assert (tmp_path / "cm.svg").read_text().lstrip().startswith("<?xml")  # format from the suffix
    assert sorted(t.get_text() for t in figure.axes[0].texts) == ["0", "1", "4", "5"]


def test_prediction_gallery_colours_right_and_wrong(tmp_path):
    files = []
    for index in range(3):
        path = tmp_path / f"image_{index}.png"
        Image.new("RGB", (64, 48), (index * 80, 0, 0)).save(path)
        files.append(path)
    predictions = [SimpleNamespace(file=files[0], probability=0.9, display_name="abdomen", true_name="abdomen"),
                   SimpleNamespace(file=files[1], probability=0.2, display_name="chest", true_name="abdomen"),
                   SimpleNamespace(file=files[2], probability=0.3, display_name="chest")]
    figure = plots.plot_prediction_gallery(predictions, columns=2, save_path=tmp_path / "gallery.png")
    _check(figure, tmp_path / "gallery.png")
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
