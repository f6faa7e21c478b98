"""images.load_image / resize_image on real files the tests write (every Pillow mode)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from conftest import refusal
from hello_dl.errors import DataError
from hello_dl.filetypes import is_image_file
from hello_dl.images import MIN_IMAGE_SIDE, image_info, load_image, resize_image, stretch_to_uint8


def gradient(height=96, width=128):
    """A smooth grey ramp plus a bright square, so orientation and values can be checked."""
    ramp = np.tile(np.linspace(0, 255, width, dtype=np.float32), (height, 1))
    ramp[10:30, 10:30] = 255
    return ramp.astype(np.uint8)


def rgb_image(height=96, width=128):
    gray = gradient(height, width)
    return np.stack([gray, 255 - gray, np.full_like(gray, 40)], axis=2)


def save(array_or_image, path, **options):
    image = array_or_image if isinstance(array_or_image, Image.Image) else Image.fromarray(array_or_image)
    image.save(path, **options)
    return path


# --- every mode becomes (H, W, 3) uint8 --------------------------------------------------------------
def test_rgb_png_round_trips_exactly(tmp_path, untouched):
    pixels = rgb_image()
    path = save(pixels, tmp_path / "rgb.png")
    untouched(tmp_path)
    out = load_image(path)
    assert out.dtype == np.uint8 and out.shape == (96, 128, 3)
    np.testing.assert_array_equal(out, pixels)


def test_grayscale_png_is_copied_into_three_equal_channels(tmp_path):
    gray = gradient()
    out = load_image(save(gray, tmp_path / "gray.png"))
    assert out.shape == (96, 128, 3)
    for channel in range(3):
        np.testing.assert_array_equal(out[..., channel], gray)


def test_one_bit_image(tmp_path):
    bits = Image.fromarray(gradient()).convert("1")
    out = load_image(save(bits, tmp_path / "bw.png"))
    assert set(np.unique(out)) <= {0, 255} and out.shape == (96, 128, 3)


def test_rgba_transparency_is_flattened_onto_black(tmp_path):
    rgba = np.zeros((80, 80, 4), dtype=np.uint8)
    rgba[..., :3] = 200
    rgba[:, :20, 3] = 0  # transparent strip
    rgba[:, 20:40, 3] = 128  # half transparent
    rgba[:, 40:, 3] = 255  # opaque
    out = load_image(save(rgba, tmp_path / "rgba.png"))
    assert out.shape == (80, 80, 3)
    assert (out[:, :20] == 0).all()
    assert (np.abs(out[:, 20:40].astype(int) - 100) <= 1).all()
    assert (out[:, 40:] == 200).all()


def test_gray_with_alpha(tmp_path):
    la = Image.fromarray(np.full((80, 80), 180, np.uint8)).convert("LA")
    la.putalpha(Image.fromarray(np.tile(np.array([0, 255], np.uint8).repeat(40), (80, 1))))
    out = load_image(save(la, tmp_path / "la.png"))
    assert (out[:, :40] == 0).all() and (out[:, 40:] == 180).all()


def test_palette_image_is_expanded_through_its_palette(tmp_path):
    palette_image = Image.fromarray(rgb_image()).quantize(colors=16)
    expected = np.asarray(palette_image.convert("RGB"))
    path = save(palette_image, tmp_path / "palette.png")
    assert Image.open(path).mode == "P"
    np.testing.assert_array_equal(load_image(path), expected)


def test_palette_transparency_becomes_black(tmp_path):
    palette_image = Image.fromarray(np.full((80, 80), 7, np.uint8), mode="L").convert("P")
    palette_image.putpalette([255, 255, 255] * 256)
    palette_image.info["transparency"] = 7
    path = save(palette_image, tmp_path / "ptrans.png", transparency=7)
    assert (load_image(path) == 0).all()


def test_cmyk_jpeg_is_converted_to_rgb(tmp_path):
    cmyk = Image.fromarray(rgb_image()).convert("CMYK")
    path = save(cmyk, tmp_path / "cmyk.jpg", quality=95)
    with Image.open(path) as reread:
        assert reread.mode == "CMYK"
        expected = np.asarray(reread.convert("RGB"))
    out = load_image(path)
    assert out.shape == (96, 128, 3)
    np.testing.assert_array_equal(out, expected)
    # and it still looks like the original picture (JPEG is lossy, so roughly)
    assert np.abs(out.astype(int) - rgb_image().astype(int)).mean() < 8


def test_sixteen_bit_grayscale_is_stretched_by_its_real_range(tmp_path):
    # 12-bit data in a 16-bit PNG, as scanners export it: 1000..3000 of 0..65535
    values = np.linspace(1000, 3000, 100 * 120).reshape(100, 120).astype(np.uint16)
    path = tmp_path / "sixteen.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I")
    out = load_image(path)
    assert out.shape == (100, 120, 3) and out.dtype == np.uint8
    assert out.min() == 0 and out.max() == 255  # full contrast, not a dark 1000/65535 image
    flat = out[..., 0].ravel()
    assert (np.diff(flat.astype(int)) >= 0).all()  # the ramp stays monotonic
    np.testing.assert_array_equal(out[..., 0], stretch_to_uint8(values))


def test_flat_sixteen_bit_image_becomes_black(tmp_path):
    path = tmp_path / "flat16.png"
    Image.fromarray(np.full((90, 90), 4000, np.uint16)).save(path)
    assert (load_image(path) == 0).all()


def test_grayscale_and_rgb_jpeg(tmp_path):
    gray = load_image(save(gradient(), tmp_path / "g.jpg", quality=95))
    color = load_image(save(rgb_image(), tmp_path / "c.jpeg", quality=95))
    assert gray.shape == color.shape == (96, 128, 3)
    assert np.abs(gray[..., 0].astype(int) - gradient().astype(int)).mean() < 3


def test_exif_rotation_is_applied(tmp_path):
    image = Image.fromarray(rgb_image(96, 128))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    path = tmp_path / "phone.jpg"
    image.save(path, exif=exif.tobytes(), quality=95)
    assert load_image(path).shape == (128, 96, 3)


def test_file_name_with_spaces_and_parentheses(tmp_path):
    path = save(rgb_image(), tmp_path / "chest film (copy 2) final.png")
    assert load_image(path).shape == (96, 128, 3)
    assert is_image_file(path)


def test_dicom_through_the_same_loader(tmp_path, dicom_file):
    pixels = (np.arange(100 * 90).reshape(100, 90) % 4096).astype(np.uint16)
    path = dicom_file(tmp_path / "film.dcm", pixels, bits_stored=12)
    no_extension = dicom_file(tmp_path / "IM000001", pixels, bits_stored=12)
    out = load_image(path)
    assert out.shape == (100, 90, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, load_image(no_extension))
    assert is_image_file(no_extension)
    assert image_info(path) == (90, 100, "DICOM MONOCHROME2 12-bit")


# --- bad input -----------------------------------------------------------------------------------------
def _encoded(pixels: np.ndarray, kind: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, kind)
    return buffer.getvalue()


BAD_FILES = {  # name → (content, what the message says)
    "broken scan.png": (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "not an image Pillow can read"),
    "truncated.png": (_encoded(np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8), "PNG")[:20000],
                      "damaged or incomplete"),
    "cut.jpg": (_encoded(rgb_image(300, 300), "JPEG")[:1500], "damaged or incomplete"),
    "notes.png": (b"this is not a radiograph", "not an image"),
    "notes.dcm": (b"this is not a radiograph either", "not a DICOM file"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_a_bad_file_is_refused_by_name_and_left_alone(tmp_path, untouched, name):
    content, says = BAD_FILES[name]
    path = tmp_path / name
    path.write_bytes(content)
    untouched(tmp_path)
    assert says in refusal(load_image, path)


def test_too_small_image_is_refused_with_the_minimum(tmp_path):
    path = save(rgb_image(60, 200), tmp_path / "thumbnail.png")
    with pytest.raises(DataError) as caught:
        load_image(path)
    message = str(caught.value)
    assert str(path) in message and "200x60" in message and f"{MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE}" in message
    assert load_image(path, min_side=0).shape == (60, 200, 3)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_image(tmp_path / "nowhere.png")


# --- resizing ------------------------------------------------------------------------------------------
def test_resize_stretches_by_default():
    out = resize_image(rgb_image(96, 128), 80)
    assert out.shape == (80, 80, 3) and out.dtype == np.uint8


def test_resize_keeping_aspect_ratio_pads_with_black():
    tall = np.full((200, 100, 3), 180, dtype=np.uint8)  # height 200, width 100
    out = resize_image(tall, 100, keep_aspect_ratio=True)
    assert out.shape == (100, 100, 3)
    assert (out[:, :25] == 0).all() and (out[:, 75:] == 0).all()  # black bars left and right
    assert (out[:, 25:75] == 180).all()  # the picture itself, centred, undistorted
    wide = resize_image(np.full((50, 200, 3), 90, np.uint8), (100, 100), keep_aspect_ratio=True)
    assert (wide[:37] == 0).all() and (wide[63:] == 0).all() and (wide[38:62] == 90).all()


def test_resize_square_image_is_the_same_either_way():
    square = rgb_image(120, 120)
    np.testing.assert_array_equal(resize_image(square, 90, True), resize_image(square, 90, False))


def test_padding_keeps_the_picture_whole_and_undistorted():
    # A 300 x 100 picture into 150 x 150 (height, width): scaled by 1/2 to 150 x 50, bars of 50 either side.
    picture = np.zeros((300, 100, 3), np.uint8)
    picture[:, :, 0] = np.linspace(10, 250, 300, dtype=np.uint8)[:, None]  # a ramp from top to bottom
    out = resize_image(picture, (150, 150), keep_aspect_ratio=True)
    assert out.shape == (150, 150, 3)
    assert (out[:, :50] == 0).all() and (out[:, 100:] == 0).all()
    inside = out[:, 50:100, 0].astype(int)
    assert (np.diff(inside[:, 25]) >= 0).all() and abs(inside[0, 25] - 10) <= 2 and abs(inside[-1, 25] - 250) <= 2


def test_shrinking_is_antialiased():
    # One-pixel black/white stripes shrunk four times must become grey, not stripes of black and white.
    stripes = np.zeros((200, 200, 3), np.uint8)
    stripes[:, ::2] = 255
    for keep in (False, True):
        out = resize_image(stripes, 50, keep_aspect_ratio=keep)
        assert np.abs(out[5:-5, 5:-5].astype(int) - 128).max() <= 3


def test_resize_rejects_non_rgb_arrays():
    with pytest.raises(ValueError):
        resize_image(np.zeros((10, 10), np.uint8), 20)
