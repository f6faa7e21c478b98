"""Grad-CAM, t-SNE of the penultimate features, and the image-size shortcut check."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from hello_dl import explain, runs
from hello_dl import model as model_lib
from hello_dl.settings import load_settings


# --- Grad-CAM maths on an untrained model (no training needed for shapes and scaling) ------------
@pytest.fixture(scope="module")
def model_150():
    """At 150 px InceptionV3's last block is 3x3, so the heatmap has structure (at 75 px it is 1x1)."""
    return model_lib.build_model(load_settings("smoke", environ={}, weights="none", image_size=150, dropout=0.0))


def _image(seed: int, size: int = 150) -> np.ndarray:
    """Plain 0-255 pixels, as the model takes them."""
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3)).astype("float32")


def test_grad_cam_shape_and_normalisation(model_150):
    heatmap, probability = explain.grad_cam(model_150, _image(0))
    assert heatmap.shape == (3, 3)  # mixed10 at 150 px
    assert heatmap.dtype == np.float32
    assert heatmap.min() >= 0.0 and heatmap.max() == pytest.approx(1.0)
    assert probability == pytest.approx(float(model_150(_image(0)[None], training=False)[0, 0]), abs=1e-5)


def test_grad_cam_of_the_two_classes_are_complementary(model_150):
    """For a single sigmoid output, the evidence for chest is the evidence against abdomen."""
    image = _image(1)
    for_abdomen, _ = explain.grad_cam(model_150, image, target_class=1)
    for_chest, _ = explain.grad_cam(model_150, image, target_class=0)
    assert not np.allclose(for_abdomen, for_chest)
    # Where one map is positive the other was clipped to zero by the ReLU, and vice versa.
    assert np.all((for_abdomen == 0) | (for_chest == 0))


def test_grad_cam_on_an_earlier_block(model_150):
    heatmap, _ = explain.grad_cam(model_150, _image(2), layer_name="mixed7")
    assert heatmap.shape == (7, 7)  # mixed7 at 150 px (17x17 at 299 px)
    assert 0.0 <= heatmap.min() and heatmap.max() <= 1.0
    with pytest.raises(ValueError, match="mixed10"):
        explain.grad_cam(model_150, _image(2), layer_name="no_such_layer")


def test_grad_cam_with_a_frozen_base(model_150):
    """Frozen weights are not watched by a gradient tape on their own; the maps must not go blank."""
    unfrozen, _ = explain.grad_cam(model_150, _image(0))
    model_lib.freeze_base(model_150)
    try:
        frozen, _ = explain.grad_cam(model_150, _image(0))
    finally:
        model_lib.unfreeze_base(model_150)
    assert frozen.max() == pytest.approx(1.0)
    assert np.allclose(frozen, unfrozen, atol=1e-5)


def test_grad_cam_is_the_eager_computation_and_follows_the_weights(model_150):
    """The traced step (built once per model and block) gives what an eager tape gives, with today's weights."""
    import tensorflow as tf

    def eager_map(image):
        base = model_lib.base_model(model_150)
        import keras

        inner = keras.Model(base.inputs, [base.get_layer(model_lib.LAST_CONV_BLOCK).output, base.output])
        layers = list(model_150.layers)
        batch = tf.convert_to_tensor(image[None])
        with tf.GradientTape() as tape:
            tape.watch(batch)
            x = batch
            for layer in layers[1:layers.index(base)]:
                x = layer(x, training=False)
            block, features = inner(x, training=False)
            for layer in layers[layers.index(base) + 1:-1]:
                features = layer(features, training=False)
            logit = tf.matmul(features, layers[-1].kernel) + layers[-1].bias
        gradients = tape.gradient(logit, block)
        sign = 1.0 if float(tf.sigmoid(logit)[0, 0]) >= 0.5 else -1.0
        weights = tf.reduce_mean(sign * gradients, axis=(1, 2), keepdims=True)
        return tf.nn.relu(tf.reduce_sum(block * weights, axis=-1))[0].numpy()

    image = _image(5)
    traced, _ = explain.grad_cam(model_150, image, raw=True)
    np.testing.assert_allclose(traced, eager_map(image), rtol=1e-4, atol=1e-7)
    kernel = model_150.layers[-1].kernel
    before = kernel.numpy()
    try:
        kernel.assign(-before)  # "trained further": the same cached step must see the new weights
        flipped, _ = explain.grad_cam(model_150, image, raw=True)
        np.testing.assert_allclose(flipped, eager_map(image), rtol=1e-4, atol=1e-7)
    finally:
        kernel.assign(before)


def test_overlay_is_image_sized_and_blends():
    image = np.full((40, 60, 3), 100, dtype=np.uint8)
    heatmap = np.array([[0.0, 1.0], [0.5, 0.0]], dtype=np.float32)
    full = explain.resize_heatmap(heatmap, 40, 60)
    assert full.shape == (40, 60) and full.min() >= 0.0 and full.max() <= 1.0
    overlay = explain.heatmap_overlay(image, heatmap, alpha=0.5)
    assert overlay.shape == (40, 60, 3) and overlay.dtype == np.uint8
    assert not np.array_equal(overlay[0, 0], overlay[0, -1])  # cold corner vs hot corner
    untouched = explain.heatmap_overlay(image, heatmap, alpha=0.0)
    assert np.array_equal(untouched, image)


def test_raw_grad_cam_keeps_its_size_for_one_scale_figures(model_150):
    raw, probability = explain.grad_cam(model_150, _image(3), raw=True)
    scaled, again = explain.grad_cam(model_150, _image(3))
    assert probability == again and raw.max() > 0
    np.testing.assert_allclose(raw / raw.max(), scaled, rtol=1e-5)
    assert explain.CAM_COLORMAP == "inferno"  # never jet


def test_feature_maps_of_an_early_a_middle_and_a_late_block(model_150):
    import keras

    image = _image(4)
    result = explain.feature_maps(model_150, image, per_block=5)
    assert [b.stage for b in result.blocks] == ["early", "middle", "late"]
    early, middle, late = result.blocks
    assert early.layer == [layer.name for layer in model_lib.base_model(model_150).layers
                           if isinstance(layer, keras.layers.Activation)][2]
    assert (middle.layer, late.layer) == ("mixed2", "mixed7")
    # Deeper blocks: smaller maps, more of them.
    assert early.size[0] > middle.size[0] > late.size[0]
    assert early.total_channels == 64 and middle.total_channels == 288 and late.total_channels == 768
    for block in result.blocks:
        assert block.maps.shape[0] == 5 and len(block.channels) == 5 and (block.maps >= 0).all()  # after ReLU
        means = block.maps.mean(axis=(1, 2))
        assert list(means) == sorted(means, reverse=True)  # the most active first
        assert block.shows in block.label and f"{block.size[0]}x{block.size[1]}" in block.label
    # The maps are the block's own activations of this image (the model's layers before the base,
    # its scaling and, from scratch, its per-image normalisation, applied first).
    base = model_lib.base_model(model_150)
    before_base = model_150.layers[1:model_150.layers.index(base)]
    assert model_lib.NORMALIZE_LAYER in [layer.name for layer in before_base]
    scaled = image[None].astype("float32")
    for layer in before_base:
        scaled = keras.ops.convert_to_numpy(layer(scaled))
    probe = keras.Model(base.inputs, base.get_layer("mixed2").output)
    expected = np.asarray(probe.predict_on_batch(scaled))[0][..., middle.channels[0]]
    np.testing.assert_allclose(middle.maps[0], expected, rtol=1e-4, atol=1e-5)
    assert "mixed7" in result.format()


# --- on the shared trained run ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(smoke_run):
    return runs.open_run(smoke_run.run_dir, smoke_run.settings)


@pytest.mark.slow
def test_grad_cam_files_for_test_images(smoke_run, trained):
    settings = smoke_run.settings
    results = explain.grad_cam_files([settings.data_dir / "TEST"], trained)
    assert [r.file.name for r in results] == ["abd2.png", "chest2.png"]
    for result in results:
        assert result.image.shape == (75, 75, 3) and result.overlay.shape == (75, 75, 3)
        assert result.heatmap.shape == (1, 1) and 0.0 <= result.heatmap.min() <= result.heatmap.max() <= 1.0
        assert result.raw is not None and result.raw.shape == (1, 1)
        assert result.predicted_name in settings.class_names and result.predicted_name in result.caption
    # The TEST files' names give the truth, shown beside the answer.
    assert [r.true_name for r in results] == ["abdomen", "chest"]
    assert all(f"true: {r.true_name}" in r.caption for r in results)


@pytest.mark.slow
def test_feature_maps_of_a_file(smoke_run, trained):
    result = explain.feature_maps_file(smoke_run.settings.data_dir / "TEST" / "chest2.png", trained, per_block=4)
    assert result.file.name == "chest2.png" and result.image.shape == (75, 75, 3)
    assert [len(b.channels) for b in result.blocks] == [4, 4, 4]


@pytest.mark.slow
def test_tsne_of_train_and_val_features(smoke_run, trained):
    result = explain.tsne_features(trained.model, trained.settings)
    assert result.embedding.shape == (75, 2) and np.isfinite(result.embedding).all()
    assert result.features.shape == (75, 256)
    assert list(np.bincount(result.labels)) == [38, 37]
    assert (result.splits == "train").sum() == 65 and (result.splits == "val").sum() == 10
    # The network learned the task, so in the map most images sit among their own class.
    from sklearn.model_selection import cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    neighbours = cross_val_score(KNeighborsClassifier(5), result.embedding, result.labels, cv=5).mean()
    assert neighbours > 0.7


@pytest.mark.slow
def test_shortcut_check_on_the_shared_dataset(smoke_run, trained):
    cnn = trained.metrics["val_accuracy"]
    result = explain.shortcut_check(trained.settings, cnn_accuracy=cnn)
    assert result.cnn_accuracy == cnn
    assert result.train_images == 65 and result.folds == 5
    assert result.accuracy >= 0.8  # size alone nearly gives the class away on this data
    assert result.size_predicts_class and "WARNING" in result.warning and "keep_aspect_ratio" in result.warning
    text = result.format()
    assert f"{result.accuracy:.1%}" in text and f"{cnn:.1%}" in text and "CNN" in text
    assert result.val_accuracy is not None
    # Chest radiographs here are all 512x512: the features say so.
    chest = result.features[result.labels == 0]
    assert np.all(chest[:, 0] == 512) and np.all(chest[:, 2] == 1.0)


def test_shortcut_check_without_a_size_difference(tmp_path):
    """Negative control: every image the same size, so size cannot predict the class (no warning)."""
    for split, count in (("TRAIN", 8), ("VAL", 2)):
        for label, folder in enumerate(("openI_CXR", "openI_abd_xray")):
            target = tmp_path / split / folder
            target.mkdir(parents=True)
            for index in range(count):
                Image.new("RGB", (90, 120), (40 + 150 * label, 0, 0)).save(target / f"{index}.png")
    settings = load_settings("smoke", environ={}, data_dir=str(tmp_path))
    result = explain.shortcut_check(settings)
    assert result.accuracy == pytest.approx(0.5, abs=0.15)
    assert not result.size_predicts_class and "WARNING" not in result.warning
    assert np.allclose(explain.image_size_features([tmp_path / "TRAIN" / "openI_CXR" / "0.png"]),
                       [[90, 120, 0.75]])
