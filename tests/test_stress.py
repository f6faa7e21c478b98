"""The stress test: each change on real arrays, and the whole test on small real Keras models."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from hello_dl import stats, stress
from hello_dl.settings import load_settings


def gradient_image(height=120, width=120, low=40, high=220) -> np.ndarray:
    row = np.linspace(low, high, width, dtype=np.float32)
    gray = np.tile(row, (height, 1))
    return np.repeat(np.rint(gray).astype(np.uint8)[..., None], 3, axis=2)


def with_corner_letter(image: np.ndarray, text="L") -> np.ndarray:
    """A white letter in the top-right corner, drawn the way film markers look (thin strokes)."""
    img = Image.fromarray(image.copy())
    width = img.width
    draw = ImageDraw.Draw(img)
    x0, y0 = width - 22, 4
    draw.line([(x0, y0), (x0, y0 + 14)], fill=(255, 255, 255), width=2)
    draw.line([(x0, y0 + 14), (x0 + 9, y0 + 14)], fill=(255, 255, 255), width=2)
    return np.asarray(img)


# --- numbers -------------------------------------------------------------------------------------
def test_wilson_interval_matches_the_textbook_values():
    low, high = stats.wilson_interval(9, 10)
    assert low == pytest.approx(0.5958, abs=1e-3) and high == pytest.approx(0.9821, abs=1e-3)
    low, high = stats.wilson_interval(0, 11)
    assert low == 0.0 and high == pytest.approx(0.2588, abs=1e-3)
    assert stats.wilson_interval(0, 0) == (0.0, 1.0)


def test_labels_from_file_names(smoke_settings):
    settings = smoke_settings()
    assert stress.label_from_name("TEST/abd2.png", settings) == 1
    assert stress.label_from_name("TEST/chest2.png", settings) == 0
    assert stress.label_from_name("TEST/case7.png", settings) is None


# --- the changes -------------------------------------------------------------------------------------
def test_every_change_returns_a_uint8_rgb_image():
    image = gradient_image(90, 70)
    for change in stress.default_changes() + stress.other_sources():
        out = change.apply(image)
        assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3, change.name
        assert min(out.shape[:2]) >= 30, change.name
    assert stress.rescale(image, 0.5).shape[:2] == (45, 35)
    assert stress.rescale(image, 2.0).shape[:2] == (180, 140)


def test_pad_to_square_leaves_square_images_alone_and_pads_others_black():
    square = gradient_image(50, 50)
    np.testing.assert_array_equal(stress.pad_to_square(square), square)
    wide = gradient_image(40, 100)
    padded = stress.pad_to_square(wide)
    assert padded.shape == (100, 100, 3)
    assert padded[:30].max() == 0 and padded[-30:].max() == 0
    np.testing.assert_array_equal(padded[30:70], wide)


def test_rotation_turns_the_anatomy_without_black_corners():
    white = np.full((100, 80, 3), 255, dtype=np.uint8)
    turned = stress.rotate_within_frame(white, 5)
    assert turned.min() >= 250  # no filled-in corners
    assert turned.shape[0] / turned.shape[1] == pytest.approx(100 / 80, rel=0.03)
    striped = gradient_image(80, 80)
    assert not np.array_equal(stress.rotate_within_frame(striped, 5), striped[:turned.shape[0], :turned.shape[1]])


def test_file_format_changes_go_through_the_kits_loader():
    coloured = gradient_image(60, 60, low=50, high=200)
    coloured[10:20, 10:20] = (255, 0, 0)  # a red arrow
    gray = stress.as_grayscale_file(coloured)
    assert np.array_equal(gray[..., 0], gray[..., 1]) and np.array_equal(gray[..., 1], gray[..., 2])
    # 16-bit files are stretched from their own darkest to brightest pixel by hello_dl.images.
    deep = stress.as_16bit_file(gradient_image(60, 60, low=50, high=200))
    assert deep.min() == 0 and deep.max() == 255
    jpeg = stress.as_jpeg_file(coloured, 20)
    assert jpeg.shape == coloured.shape and not np.array_equal(jpeg, coloured)


def test_contrast_and_window_changes():
    image = gradient_image(40, 100, low=0, high=255)
    flat = stress.lower_contrast(image)
    assert flat.min() >= 37 and flat.max() <= 218
    narrow = stress.narrow_window(gradient_image(40, 100, low=60, high=180))
    assert narrow.min() == 0 and narrow.max() == 255


def test_marker_mask_removes_a_corner_letter_and_keeps_the_anatomy():
    base = gradient_image(256, 256, low=60, high=120)
    # A broad bright "bone" band in the middle must survive.
    base[100:160, 40:220] = 200
    marked = with_corner_letter(base)  # 16 pixels tall: 6% of the side, like the films' "L"
    cleaned = stress.mask_corner_marks(marked)
    corner = (slice(0, 64), slice(192, 256))
    assert marked[corner].max() == 255
    assert cleaned[corner].max() < 160  # the letter is gone
    np.testing.assert_array_equal(cleaned[64:], base[64:])  # the band and its edges untouched
    np.testing.assert_array_equal(stress.mask_corner_marks(base), base)  # nothing to mask: unchanged


def test_a_white_border_and_crops():
    image = gradient_image(60, 80)
    framed = stress.add_border(image, 0.05, 255)
    assert framed.shape == (68, 88, 3) and framed[0].min() == 255
    assert stress.crop_to_aspect(image, 0.8).shape[:2] == (60, 48)
    assert stress.central_crop(image, 0.5).shape[:2] == (30, 40)


# --- the whole test on real models ---------------------------------------------------------------------
def corner_brightness_model(size: int):
    """A real Keras model that looks only at the top-right corner: a side-marker shortcut, on purpose."""
    import keras

    inputs = keras.Input((size, size, 3))
    corner = keras.layers.Cropping2D(((0, size - size // 4), (size - size // 4, 0)))(inputs)
    pooled = keras.layers.GlobalMaxPooling2D()(corner)
    output = keras.layers.Dense(1, activation="sigmoid")(pooled)
    model = keras.Model(inputs, output)
    # preprocess_input scales to [-1, 1]; a corner pixel above 0.2 (153 of 255) means "class 1".
    model.layers[-1].set_weights([np.full((3, 1), 10.0, np.float32), np.array([-6.0], np.float32)])
    return model


def test_the_stress_test_catches_a_model_that_reads_the_side_marker():
    settings = load_settings("smoke", environ={}, image_size=96)
    marked = [with_corner_letter(gradient_image(256, 256, 60, 120)) for _ in range(3)]
    plain = [gradient_image(256, 256, 70, 130) for _ in range(3)]
    model = corner_brightness_model(96)
    results = {r.name: r for r in stress.stress_arrays(model, marked + plain, settings)}
    masked = results["marker_masked"]
    assert masked.before[:3].min() > 0.5 and masked.before[3:].max() < 0.5
    assert masked.flip_count == 3 and masked.flip_rate == pytest.approx(0.5)
    assert masked.changed_count == 3  # the unmarked images gave the model the same input
    square = results["pad_square"]
    assert square.changed_count == 0 and square.flip_count == 0 and square.max_shift == 0.0


def test_the_stress_test_asks_the_network_once_and_only_about_new_inputs(monkeypatch):
    from hello_dl import inference

    settings = load_settings("smoke", environ={}, image_size=96)
    images = [with_corner_letter(gradient_image(256, 256, 60, 120)), gradient_image(256, 300, 70, 130)]
    model = corner_brightness_model(96)
    calls: list[int] = []
    real_run = inference._run
    monkeypatch.setattr(inference, "_run", lambda *a: calls.append(len(a[2])) or real_run(*a))
    inference.forget()
    try:
        results = stress.stress_arrays(model, images, settings)
        assert len(calls) == 1  # every change's images in one forward pass
        distinct = {inference.image_key(im) for im in stress.model_inputs(images, settings)}
        for change in stress.default_changes():
            distinct |= {inference.image_key(im) for im in
                         stress.model_inputs([change.apply(np.asarray(im)) for im in images], settings)}
        assert calls == [len(distinct)] and len(distinct) < 2 * (1 + len(results))  # unchanged inputs not rerun
        for result in results:  # and each change still gets its own images' answers
            expected = stress.model_scores(model, stress.model_inputs(
                [next(c for c in stress.default_changes() if c.name == result.name).apply(np.asarray(im))
                 for im in images], settings))
            np.testing.assert_allclose(result.after, expected, rtol=1e-6)
        assert len(calls) == 1  # those were all answered from memory
    finally:
        inference.forget()


def test_stress_and_other_sources_on_the_shared_dataset(smoke_settings):
    import keras

    from hello_dl.model import build_model

    settings = smoke_settings(image_size=75)
    keras.utils.set_random_seed(1)
    model = build_model(settings)
    collected = stress.collect_images(settings)
    # VAL holds one abdominal image twice (same bytes): counted once. TEST labels come from names.
    assert len(collected.files) == 11 and len(collected.duplicates_skipped) == 1
    assert collected.sets.count("val") == 9 and collected.sets.count("test") == 2
    assert None not in collected.labels
    result = stress.stress_test(model, settings, collected=collected)
    assert [c.name for c in result.changes] == [c.name for c in stress.default_changes()]
    assert all(c.count == 11 for c in result.changes)
    # Chest files are square and RGB-with-gray-content: padding changes only the abdominal inputs.
    assert 0 < result["pad_square"].changed_count < 11
    assert result["resolution_down"].changed_count == 11
    text = result.format()
    for change in result.changes:
        assert change.label in text
    assert "11 distinct images" in text and "1 duplicate" in text
    data = result.as_dict()
    assert len(data["changes"]) == len(result.changes) and 0.0 <= data["worst_flip_rate"] <= 1.0
    assert result.passed == all(c.flip_rate <= 0.10 for c in result.changes)
    sources = stress.other_sources_test(model, settings, collected=collected)
    assert sources.sources[0].name == "original" and len(sources.sources) == 1 + len(stress.other_sources())
    assert all(s.count == 11 for s in sources.sources)
    assert "95% CI" in sources.format()


def test_model_scores_feed_plain_pixels_to_a_model_that_scales_inside():
    import keras

    inputs = keras.Input((8, 8, 3))
    scaled = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    pooled = keras.layers.GlobalAveragePooling2D()(scaled)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(pooled))
    model.layers[-1].set_weights([np.full((3, 1), 5.0, np.float32), np.zeros(1, np.float32)])
    bright = np.full((1, 8, 8, 3), 255, np.uint8)
    dark = np.zeros((1, 8, 8, 3), np.uint8)
    scores = stress.model_scores(model, np.concatenate([bright, dark]))
    assert scores[0] > 0.99 and scores[1] < 0.01
