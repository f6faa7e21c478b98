"""DICOM reading and conversion on files written by the tests (pydicom) and the samples in the pydicom wheel."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_modality_lut, apply_windowing

from conftest import PROJECT_ROOT, refusal
from hello_dl.dicom import convert_folder, image_to_dicom, picture_grey, read_dicom, unit_range, window_to_unit
from hello_dl.errors import DataError
from hello_dl.images import load_image

SAMPLES = Path(pydicom.__file__).parent / "data" / "test_files"


def sample(name: str) -> Path:
    """A sample file shipped inside the pydicom wheel (never downloaded)."""
    path = SAMPLES / name
    if not path.is_file():
        pytest.skip(f"{name} is not in this pydicom wheel ({SAMPLES})")
    return path


def pydicom_reference(path: Path) -> np.ndarray:
    """pydicom's own modality LUT + windowing, scaled to 0-255: an independent implementation."""
    ds = pydicom.dcmread(path)
    hu = apply_modality_lut(ds.pixel_array, ds)
    windowed = apply_windowing(hu, ds)
    if ds.PixelRepresentation == 0:
        low, high = 0, 2 ** ds.BitsStored - 1
    else:
        low, high = -(2 ** (ds.BitsStored - 1)), 2 ** (ds.BitsStored - 1) - 1
    if "RescaleSlope" in ds and "RescaleIntercept" in ds:
        low, high = low * ds.RescaleSlope + ds.RescaleIntercept, high * ds.RescaleSlope + ds.RescaleIntercept
    return (windowed - low) / (high - low) * 255.0


# --- files written by the tests --------------------------------------------------------------------
def test_monochrome2_eight_bit_without_window_uses_the_pixel_range(tmp_path, dicom_file):
    pixels = np.tile(np.arange(20, 220, 2, dtype=np.uint8), (90, 1))
    image = read_dicom(dicom_file(tmp_path / "a.dcm", pixels))
    assert image.voi_source == "pixel range" and image.bits_stored == 8
    assert image.display.dtype == np.uint8 and image.values.dtype == np.float32
    assert image.display[0, 0] == 0 and image.display[0, -1] == 255
    assert (np.diff(image.display[0].astype(int)) >= 0).all()
    assert 0.0 <= image.values.min() and image.values.max() <= 1.0


def test_monochrome1_is_inverted(tmp_path, dicom_file):
    pixels = np.tile(np.arange(0, 4096, 32, dtype=np.uint16), (80, 1))  # 12-bit in 16
    normal = read_dicom(dicom_file(tmp_path / "m2.dcm", pixels, bits_stored=12))
    inverted = read_dicom(dicom_file(tmp_path / "m1.dcm", pixels, bits_stored=12, photometric="MONOCHROME1"))
    assert inverted.mode_description == "DICOM MONOCHROME1 12-bit"
    np.testing.assert_allclose(inverted.values, 1.0 - normal.values, atol=1e-6)
    assert inverted.display[0, 0] == 255 and normal.display[0, 0] == 0


def test_sixteen_bit_full_range(tmp_path, dicom_file):
    pixels = np.linspace(0, 65535, 100 * 100).reshape(100, 100).astype(np.uint16)
    image = read_dicom(dicom_file(tmp_path / "d16.dcm", pixels))
    assert image.bits_stored == 16 and image.display.min() == 0 and image.display.max() == 255


def test_signed_rescaled_ct_with_a_soft_tissue_window(tmp_path, dicom_file):
    stored = np.tile(np.arange(-200, 200, dtype=np.int16), (80, 1))  # with slope 2, intercept -24: -424..374 HU
    path = dicom_file(tmp_path / "ct.dcm", stored, bits_stored=16, slope=2, intercept=-24,
                      window=(40, 400), modality="CT")
    image = read_dicom(path)
    hu = stored.astype(float) * 2 - 24
    assert image.window == (40.0, 400.0) and image.voi_source == "window"
    assert (image.display[hu <= -160] == 0).all()  # below the window: black
    assert (image.display[hu > 239] == 255).all()  # above it: white
    centre = np.argmin(np.abs(hu[0] - 40))
    assert abs(int(image.display[0, centre]) - 128) <= 2
    np.testing.assert_allclose(image.display, pydicom_reference(path), atol=1.0)
    # The modality LUT really is applied first: the same stored values with another intercept differ.
    shifted = read_dicom(dicom_file(tmp_path / "ct2.dcm", stored, slope=2, intercept=76,
                                    window=(40, 400), modality="CT"))
    assert not np.array_equal(shifted.display, image.display)


def _through_a_file(tmp_path, dicom_file, values, window, function=None):
    """Write ``values`` (multiples of 0.5) as one row of a DICOM file (slope 0.5) and read it back."""
    stored = np.tile(np.rint((np.asarray(values) + 2000.0) * 2).astype(np.uint16), (80, 1))
    path = dicom_file(tmp_path / f"{function or 'LINEAR'}.dcm", stored, slope=0.5, intercept=-2000, window=window,
                      voi_function=function)
    return read_dicom(path).values[0].astype(np.float64)


def _through_window_to_unit(tmp_path, dicom_file, values, window, function=None):
    return window_to_unit(np.asarray(values, dtype=np.float64), *window, function or "LINEAR")


@pytest.mark.parametrize("windowed", [_through_a_file, _through_window_to_unit])
def test_window_functions_follow_the_standard(tmp_path, dicom_file, windowed):
    # PS3.3 C.11.2.1.2: LINEAR is shifted by half a grey level; x <= c - 0.5 - (w-1)/2 is black,
    # x > c - 0.5 + (w-1)/2 is white. For c=40, w=400: black up to -160, white above 239.
    x = [-1000.0, -160.5, -160.0, 39.5, 40.0, 239.0, 239.5, 1000.0]
    linear = windowed(tmp_path, dicom_file, x, (40, 400))
    np.testing.assert_allclose(linear, [0, 0, 0, 0.5, 0.5 + 0.5 / 399, 1, 1, 1], atol=1e-6)
    # C.11.2.1.3.2: LINEAR_EXACT is the plain ramp from c - w/2 to c + w/2.
    exact = windowed(tmp_path, dicom_file, [-160.0, 40.0, 240.0], (40, 400), "LINEAR_EXACT")
    np.testing.assert_allclose(exact, [0.0, 0.5, 1.0], atol=1e-6)
    # C.11.2.1.3.1: SIGMOID is 1 / (1 + exp(-4 (x - c) / w)), 0.5 at the centre, no overflow far out.
    x = np.array([-1900.0, -100.0, 40.0, 200.0, 1900.0])
    sigmoid = windowed(tmp_path, dicom_file, x, (40, 10), "SIGMOID")
    with np.errstate(over="ignore"):  # exp(776) is inf, and 1 / inf is the right 0
        np.testing.assert_allclose(sigmoid, 1.0 / (1.0 + np.exp(-4.0 * (x - 40.0) / 10.0)), atol=1e-6)
    assert sigmoid[2] == pytest.approx(0.5) and sigmoid[0] == 0.0 and sigmoid[-1] == pytest.approx(1.0)


def test_window_to_unit_refuses_a_width_the_standard_forbids():
    with pytest.raises(ValueError, match="Window Width"):
        window_to_unit(np.zeros(3), 40, 0.5)


def test_an_invalid_window_falls_back_to_the_pixel_range(tmp_path, dicom_file):
    pixels = np.tile(np.arange(0, 1000, 10, dtype=np.uint16), (80, 1))
    image = read_dicom(dicom_file(tmp_path / "zero width.dcm", pixels, window=(500, 0)))
    assert image.voi_source == "pixel range" and image.window is None
    np.testing.assert_allclose(image.values, unit_range(pixels), atol=1e-6)


def test_sigmoid_and_several_window_presets(tmp_path, dicom_file):
    pixels = np.tile(np.arange(0, 1000, 10, dtype=np.uint16), (80, 1))
    ds_path = dicom_file(tmp_path / "two.dcm", pixels, window=([500, 300], [200, 600]), voi_function="SIGMOID")
    image = read_dicom(ds_path)
    assert image.window == (500.0, 200.0)  # the first preset
    expected = 1.0 / (1.0 + np.exp(-4.0 * (pixels.astype(np.float64) - 500.0) / 200.0))
    np.testing.assert_allclose(image.values, expected, atol=1e-6)


def test_voi_lut_sequence_wins_over_the_window(tmp_path, dicom_file):
    pixels = np.tile(np.arange(0, 4096, 16, dtype=np.uint16), (80, 1))
    inverting_lut = (0, 12, list(range(4095, -1, -1)))
    image = read_dicom(dicom_file(tmp_path / "lut.dcm", pixels, bits_stored=12, window=(2048, 4096),
                                  voi_lut=inverting_lut))
    assert image.voi_source == "VOI LUT"
    expected = np.rint((4095 - pixels.astype(float)) / 4095 * 255)
    np.testing.assert_array_equal(image.display, expected)


def test_rgb_dicom_and_dicom_through_load_image(tmp_path, dicom_file):
    rgb = np.random.default_rng(1).integers(0, 255, (90, 100, 3), dtype=np.uint8)
    path = dicom_file(tmp_path / "colour.dcm", rgb, photometric="RGB")
    np.testing.assert_array_equal(read_dicom(path).display, rgb)
    np.testing.assert_array_equal(load_image(path), rgb)


# --- pydicom's sample files ---------------------------------------------------------------------------
def test_pydicom_ct_and_mr_samples():
    ct = read_dicom(sample("CT_small.dcm"))
    assert ct.display.shape == (128, 128) and ct.modality == "CT"
    assert ct.display.min() == 0 and ct.display.max() == 255  # no window in the file: full range
    mr_path = sample("MR_small.dcm")
    mr = read_dicom(mr_path)
    assert mr.window == (600.0, 1600.0) and mr.display.shape == (64, 64)
    np.testing.assert_allclose(mr.display, pydicom_reference(mr_path), atol=1.0)
    assert get_testdata_file("MR_small.dcm", download=False) == str(mr_path)


def test_rle_compressed_sample_decodes_to_the_same_image():
    np.testing.assert_array_equal(read_dicom(sample("MR_small_RLE.dcm")).display,
                                  read_dicom(sample("MR_small.dcm")).display)


def test_small_sample_is_too_small_for_the_model():
    with pytest.raises(DataError, match="64x64 pixels"):
        load_image(sample("MR_small.dcm"))


def test_compressed_without_decoder_names_the_package():
    from pydicom.pixels import get_decoder

    path = sample("MR_small_jpeg_ls_lossless.dcm")
    if get_decoder(pydicom.dcmread(path).file_meta.TransferSyntaxUID).is_available:
        pytest.skip("a JPEG-LS decoder is installed here, so the missing-decoder message cannot be shown")
    with pytest.raises(DataError) as caught:
        read_dicom(path)
    message = str(caught.value)
    assert "JPEG-LS" in message and "pip install pylibjpeg pylibjpeg-libjpeg" in message and str(path) in message


def test_truncated_sample_is_reported():
    with pytest.raises(DataError) as caught:
        read_dicom(sample("MR_truncated.dcm"))
    assert "MR_truncated.dcm" in str(caught.value)


def test_multi_frame_needs_a_frame_choice():
    path = sample("SC_rgb_rle_2frame.dcm")
    with pytest.raises(DataError, match="holds 2 images"):
        read_dicom(path)
    assert read_dicom(path, frame=1).display.shape[-1] == 3


# --- bad files ------------------------------------------------------------------------------------------
def test_not_a_dicom_file(tmp_path):
    path = tmp_path / "scan.dcm"
    path.write_text("hello")
    assert "not a DICOM file" in refusal(read_dicom, path)


def test_dicom_without_image(tmp_path):
    with pytest.raises(DataError, match="without an image"):
        read_dicom(sample("rtstruct.dcm"))


# --- the files the tests write are standard DICOM ------------------------------------------------------
@pytest.mark.parametrize("pixels, photometric, bits", [
    (np.arange(90 * 80, dtype=np.uint16).reshape(90, 80) % 4096, "MONOCHROME2", 12),
    (np.arange(-3600, 3600, dtype=np.int16).reshape(90, 80), "MONOCHROME1", 16),
    (np.random.default_rng(0).integers(0, 255, (90, 80, 3), dtype=np.uint8), "RGB", 8),
])
def test_written_files_carry_the_standard_image_pixel_module(tmp_path, dicom_file, pixels, photometric, bits):
    path = dicom_file(tmp_path / "f.dcm", pixels, photometric=photometric, bits_stored=bits)
    assert path.read_bytes()[128:132] == b"DICM"  # Part 10 preamble and signature
    ds = pydicom.dcmread(path)
    assert ds.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    samples = 3 if pixels.ndim == 3 else 1
    assert (ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation) == (90, 80, samples, photometric)
    assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit) == (pixels.dtype.itemsize * 8, bits, bits - 1)
    assert ds.PixelRepresentation == (pixels.dtype.kind == "i")
    assert ("PlanarConfiguration" in ds) == (samples == 3)
    np.testing.assert_array_equal(ds.pixel_array, pixels)


# --- the demo DICOM made from a picture -----------------------------------------------------------------
def _pictures(folder: Path) -> dict[str, Path]:
    """Grey PNG, colourful RGB PNG, and a JPEG whose EXIF says "rotate 90°"."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    grey = folder / "grey.png"
    Image.fromarray(rng.integers(0, 256, (90, 100), dtype=np.uint8)).save(grey)
    colour = folder / "annotated.png"
    Image.fromarray(rng.integers(0, 256, (90, 100, 3), dtype=np.uint8)).save(colour)
    rotated = folder / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rng.integers(0, 256, (90, 100, 3), dtype=np.uint8)).save(rotated, exif=exif.tobytes())
    return {"grey": grey, "colour": colour, "rotated": rotated}


def test_demo_dicom_grey_is_load_images_grey(tmp_path):
    for name, picture in _pictures(tmp_path / "pictures").items():
        expected = load_image(picture, min_side=0).mean(axis=2)
        np.testing.assert_allclose(picture_grey(picture), expected, atol=1e-9, err_msg=name)
        made = read_dicom(image_to_dicom(picture, tmp_path / f"{name}.dcm"))
        assert np.abs(made.display.astype(int) - np.rint(expected)).max() <= 1, name
        assert made.display.shape == expected.shape  # the rotated JPEG stands upright: 100 x 90


def test_demo_dicom_refuses_what_it_cannot_store_faithfully(tmp_path):
    deep = tmp_path / "sixteen bit.png"
    Image.fromarray(np.full((80, 80), 3000, np.uint16)).save(deep)
    assert "8-bit" in refusal(picture_grey, deep)
    transparent = tmp_path / "overlay.png"
    Image.fromarray(np.zeros((80, 80, 4), np.uint8)).save(transparent)
    assert "'RGBA'" in refusal(picture_grey, transparent)
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    assert "cannot be read" in refusal(lambda path: image_to_dicom(path, tmp_path / "x.dcm"), text)
    assert not (tmp_path / "x.dcm").exists()
    with pytest.raises(DataError, match="MONOCHROME1 or MONOCHROME2"):
        image_to_dicom(_pictures(tmp_path / "p")["grey"], tmp_path / "y.dcm", photometric="RGB")


def test_demo_dicom_never_replaces_a_file_and_leaves_no_temporaries(tmp_path):
    pictures = _pictures(tmp_path / "pictures")
    out = tmp_path / "out"
    out.mkdir()
    mine = out / "grey.dcm"
    mine.write_bytes(b"the user's own file")
    assert image_to_dicom(pictures["grey"], mine) == mine and mine.read_bytes() == b"the user's own file"
    image_to_dicom(pictures["colour"], out / "colour.dcm")
    assert sorted(p.name for p in out.iterdir()) == ["colour.dcm", "grey.dcm"]


# --- folder conversion ---------------------------------------------------------------------------------
@pytest.fixture
def dicom_folder(tmp_path, dicom_file) -> Path:
    root = tmp_path / "dicoms"
    rng = np.random.default_rng(5)
    dicom_file(root / "a (1).dcm", rng.integers(0, 4096, (100, 90)).astype(np.uint16), bits_stored=12)
    (root / "series 2").mkdir()
    dicom_file(root / "series 2" / "IM0001", rng.integers(0, 255, (80, 80)).astype(np.uint8),
               photometric="MONOCHROME1")
    (root / "notes.txt").write_text("not dicom")
    (root / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    return root


def test_convert_folder_mirrors_and_never_overwrites(dicom_folder, tmp_path, untouched):
    untouched(dicom_folder)
    out = tmp_path / "pngs"
    written = convert_folder(dicom_folder, out)
    assert sorted(p.relative_to(out).as_posix() for p in written) == ["a (1).png", "series 2/IM0001.png"]
    for png, dcm in zip(sorted(written), [dicom_folder / "a (1).dcm", dicom_folder / "series 2" / "IM0001"]):
        np.testing.assert_array_equal(np.asarray(Image.open(png)), read_dicom(dcm).display)
    # A PNG the user edited is kept; a rerun writes nothing new.
    edited = out / "a (1).png"
    edited.write_bytes(b"my edit")
    assert convert_folder(dicom_folder, out) == []
    assert edited.read_bytes() == b"my edit"
    assert not [p for p in out.rglob("*") if ".partial" in p.name]


def test_convert_folder_keeps_uid_named_files_apart(tmp_path, dicom_file):
    source = tmp_path / "pacs export"
    for name, value in (("1.2.840.5.11", 10), ("1.2.840.5.12", 200), ("film.DCM", 90)):
        dicom_file(source / name, np.full((80, 80), value, np.uint8), window=(128, 256))
    written = convert_folder(source, tmp_path / "pngs")
    assert sorted(p.name for p in written) == ["1.2.840.5.11.png", "1.2.840.5.12.png", "film.png"]
    assert [int(np.asarray(Image.open(p))[0, 0]) for p in sorted(written)] == [10, 200, 90]


def test_convert_folder_reports_bad_files_after_converting_the_rest(dicom_folder, tmp_path):
    (dicom_folder / "broken.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"\x00" * 10)
    out = tmp_path / "pngs"
    with pytest.raises(DataError) as caught:
        convert_folder(dicom_folder, out)
    message = str(caught.value)
    assert "2 PNG file(s) were written" in message and "broken.dcm" in message
    assert (out / "a (1).png").is_file()


def test_convert_folder_multi_frame_and_refusals(tmp_path):
    source = tmp_path / "multi"
    source.mkdir()
    (source / "two.dcm").write_bytes(sample("SC_rgb_rle_2frame.dcm").read_bytes())
    written = convert_folder(source, tmp_path / "out")
    assert [p.name for p in written] == ["two_frame000.png", "two_frame001.png"]
    with pytest.raises(DataError, match="different folder"):
        convert_folder(source, source)
    with pytest.raises(DataError, match="not found"):
        convert_folder(tmp_path / "nope", tmp_path / "out2")


def test_script_wrapper(dicom_folder, tmp_path):
    out = tmp_path / "script out"
    done = subprocess.run([sys.executable, str(PROJECT_ROOT / "scripts" / "dicom_to_png.py"), str(dicom_folder), str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "2 PNG file(s) were written" in done.stdout and (out / "series 2" / "IM0001.png").is_file()
