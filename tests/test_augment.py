"""Shortcut-removing augmentation layers: what each does to real arrays, seeds, training-only."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from hello_dl import augment  # noqa: E402  (needs TensorFlow)


def batch_of(kind: str, count: int = 6, size: int = 64) -> np.ndarray:
    rng = np.random.default_rng(0)
    if kind == "white":
        return np.full((count, size, size, 3), 255.0, np.float32)
    if kind == "gray":
        return np.full((count, size, size, 3), 128.0, np.float32)
    if kind == "checker":
        ys, xs = np.indices((size, size))
        board = ((ys + xs) % 2 * 255).astype(np.float32)
        return np.repeat(np.repeat(board[None, ..., None], 3, axis=3), count, axis=0)
    gradient = np.linspace(20, 235, size, dtype=np.float32)
    noisy = np.tile(gradient, (size, 1))[None, ..., None] + rng.normal(0, 10, (count, size, size, 1))
    return np.clip(np.repeat(noisy, 3, axis=3), 0, 255).astype(np.float32)


def every_layer(probability=1.0, seed=5):
    return [augment.RandomResolution(probability=probability, seed=seed),
            augment.RandomJpegQuality(probability=probability, seed=seed),
            augment.RandomWindow(probability=probability, seed=seed),
            augment.RandomFrame(probability=probability, seed=seed),
            augment.RandomFrame(pad=False, probability=probability, seed=seed),
            augment.RandomCornerMarks(probability=probability, seed=seed),
            augment.RandomBorder(probability=probability, seed=seed)]


def test_every_layer_keeps_shape_and_range_and_is_off_outside_training():
    images = batch_of("noisy")
    for layer in every_layer():
        out = layer(tf.constant(images), training=True).numpy()
        assert out.shape == images.shape and out.dtype == np.float32, layer.name
        assert out.min() >= 0.0 and out.max() <= 255.0, layer.name
        assert not np.allclose(out, images), f"{layer.name} changed nothing at probability 1"
        np.testing.assert_array_equal(layer(tf.constant(images), training=False).numpy(), images)


def test_probability_zero_changes_nothing():
    images = batch_of("noisy")
    for layer in every_layer(probability=0.0):
        np.testing.assert_array_equal(layer(tf.constant(images), training=True).numpy(), images)


def run_in_tf_data(seed: int, config=None, epochs: int = 2) -> np.ndarray:
    """Two epochs through a tf.data map, as the training pipeline uses the layers."""
    layers = augment.shortcut_layers(config or augment.ShortcutAugmentation(), seed=seed)
    data = tf.data.Dataset.from_tensor_slices(batch_of("noisy", count=8)).batch(4)
    data = data.map(lambda x: layers(x, training=True))
    return np.concatenate([batch.numpy() for _ in range(epochs) for batch in data])


def test_same_seed_same_draws_other_seed_other_draws():
    first, again, other = run_in_tf_data(3), run_in_tf_data(3), run_in_tf_data(4)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    # The draws move on: epoch 2 is not a copy of epoch 1.
    assert not np.array_equal(first[:8], first[8:])


def test_frame_gives_square_images_black_bars_or_stretches_them():
    white = batch_of("white", count=12)
    padded = augment.RandomFrame(probability=1.0, seed=1)(tf.constant(white), training=True).numpy()
    for image in padded:
        dark_rows = (image.max(axis=(1, 2)) == 0).sum()
        dark_cols = (image.max(axis=(0, 2)) == 0).sum()
        assert dark_rows + dark_cols > 0  # every square image now has bars, like a padded abdomen figure
    gradient = batch_of("noisy", count=6)
    stretched = augment.RandomFrame(pad=False, probability=1.0, seed=1)(tf.constant(gradient), training=True)
    assert stretched.numpy().min() > 0  # no bars when stretching


def test_frame_stretch_share_mixes_bars_and_stretching_with_the_same_windows():
    white = tf.constant(batch_of("white", count=24))

    def framed(**knobs):
        return augment.RandomFrame(probability=1.0, seed=2, **knobs)(white, training=True).numpy()

    def has_bars(image):
        return bool((image.max(axis=(1, 2)) == 0).any() or (image.max(axis=(0, 2)) == 0).any())

    # The share is drawn after everything else: at 0 the padded frames are the old ones, at 1 they are
    # exactly the stretched frames of the same windows.
    np.testing.assert_array_equal(framed(stretch_share=0.0), framed())
    np.testing.assert_array_equal(framed(stretch_share=1.0), framed(pad=False))
    mixed = [has_bars(image) for image in framed(stretch_share=0.5)]
    assert 0 < sum(mixed) < len(mixed)  # some framed images have bars, some are stretched
    assert augment.ShortcutAugmentation(frame_stretch_share=0.5).frame_stretch_share == 0.5


def test_resolution_jitter_blurs_fine_detail():
    board = batch_of("checker")
    out = augment.RandomResolution(min_scale=0.3, probability=1.0, seed=2)(tf.constant(board), training=True).numpy()
    detail_before = np.abs(np.diff(board, axis=2)).mean()
    detail_after = np.abs(np.diff(out, axis=2)).mean()
    assert detail_after < 0.8 * detail_before


def test_window_keeps_the_order_of_gray_values():
    ramp = np.tile(np.linspace(1, 254, 64, dtype=np.float32), (64, 1))[None, ..., None].repeat(3, axis=3)
    out = augment.RandomWindow(probability=1.0, seed=3)(tf.constant(ramp), training=True).numpy()[0, 0, :, 0]
    assert np.all(np.diff(out) >= 0) and not np.allclose(out, ramp[0, 0, :, 0])


def test_corner_marks_land_only_in_the_corners():
    gray = batch_of("gray", count=16, size=100)
    out = augment.RandomCornerMarks(probability=1.0, seed=4)(tf.constant(gray), training=True).numpy()
    changed = np.abs(out - gray).max(axis=3) > 1
    assert changed.any(axis=(1, 2)).all()  # every image got a mark
    centre = changed[:, 30:70, 30:70]
    assert not centre.any()


def test_border_bars_are_black_or_white_along_edges_only():
    gray = batch_of("gray", count=32, size=50)
    layer = augment.RandomBorder(probability=1.0, max_width=0.2, seed=8)
    out = layer(tf.constant(gray), training=True).numpy()
    changed = out[..., 0] != 128.0
    assert set(np.unique(out[changed])) <= {0.0, 255.0}  # a bar is black or white, all channels alike
    assert not changed[:, 11:39, 11:39].any()  # never deeper than a fifth of the side
    # Both shades and every side turn up across the batch; one image's bars share their shade.
    assert {0.0, 255.0} <= set(np.unique(out))
    for rows, cols in ((slice(0, 1), slice(None)), (slice(-1, None), slice(None)),
                       (slice(None), slice(0, 1)), (slice(None), slice(-1, None))):
        assert changed[:, rows, cols].any()
    for image, mask in zip(out, changed):
        assert len(np.unique(image[mask])) <= 1
    assert augment.RandomBorder(max_width=0.1).get_config()["max_width"] == 0.1


def test_recipe_switches_and_words():
    off = augment.ShortcutAugmentation.off()
    assert off.active() == [] and "off" in off.describe()
    images = batch_of("noisy")
    np.testing.assert_array_equal(augment.shortcut_layers(off)(tf.constant(images), training=True).numpy(), images)
    full = augment.ShortcutAugmentation()
    assert set(full.active()) == set(augment.ShortcutAugmentation.WORDS)
    assert "JPEG" in full.describe() and "training only" in full.describe()
    names = [layer.name for layer in augment.shortcut_layers(full).layers]
    assert names[0] == "random_frame" and "random_grayscale" in names


def test_window_clip_narrows_the_window_and_off_repeats_the_old_draws():
    ramp = np.tile(np.linspace(0, 255, 64, dtype=np.float32), (64, 1))[None, ..., None].repeat(3, axis=3)
    plain = augment.RandomWindow(probability=1.0, contrast=0.0, gamma=1.0001, seed=6)
    clipped = augment.RandomWindow(probability=1.0, contrast=0.0, gamma=1.0001, clip=0.2, seed=6)
    row_plain = plain(tf.constant(ramp), training=True).numpy()[0, 0, :, 0]
    row_clipped = clipped(tf.constant(ramp), training=True).numpy()[0, 0, :, 0]
    np.testing.assert_allclose(row_plain, ramp[0, 0, :, 0], atol=0.1)
    # A narrower window: more pixels end up pure black or pure white.
    assert (row_clipped <= 0.5).sum() + (row_clipped >= 254.5).sum() > 2
    assert np.all(np.diff(row_clipped) >= 0)
    assert augment.RandomWindow(clip=0.1).get_config()["clip"] == 0.1


def test_gray_puts_the_luminance_in_every_channel_and_only_while_training():
    coloured = batch_of("noisy") * np.array([1.0, 0.6, 0.3], np.float32)  # a tinted picture
    layer = augment.RandomGray(probability=1.0, seed=3)
    np.testing.assert_array_equal(layer(tf.constant(coloured), training=False).numpy(), coloured)
    gray = layer(tf.constant(coloured), training=True).numpy()
    np.testing.assert_allclose(gray[..., 0], gray[..., 1])
    np.testing.assert_allclose(gray[..., 1], gray[..., 2])
    expected = coloured @ np.array([0.299, 0.587, 0.114], np.float32)
    np.testing.assert_allclose(gray[..., 0], expected, rtol=1e-5, atol=1e-3)
