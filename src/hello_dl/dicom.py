"""DICOM files as images: the same grey values a radiologist's viewer would show.

:func:`read_dicom` follows the DICOM display chain (PS3.3 C.11 / PS3.4 N.2); pydicom's own
``apply_modality_lut`` and ``apply_voi_lut`` do steps 1 and 2:

1. **Modality LUT**: *Rescale Slope/Intercept* (e.g. CT values to Hounsfield units) or a
   *Modality LUT Sequence*.
2. **VOI LUT**: a *VOI LUT Sequence* if the file has one, otherwise the first *Window
   Center/Width* pair (with the file's *VOI LUT Function*: LINEAR, LINEAR_EXACT or SIGMOID),
   otherwise (or if the window is invalid, e.g. width 0) the image's own minimum..maximum, so a
   file without a window still shows contrast.
3. **MONOCHROME1** (white = low values, common for computed radiography) is inverted so bone is
   white in every image, as in the PNG exports the tutorial trains on.

Whatever the bit depth (8, 12, 16, signed or not), the result is offered twice: ``values``,
float32 in [0, 1] (full precision, for models that want it), and ``display``, uint8 0-255 (what
PNGs, previews and :func:`hello_dl.images.load_image` use).

Compressed files need a decoder: pydicom decodes JPEG baseline, JPEG 2000 (through Pillow) and
RLE itself; JPEG-LS and lossless JPEG need an extra package. :func:`read_dicom` says which one.

:func:`convert_folder` (DICOM → PNG), :func:`image_to_dicom` (a demo DICOM made from a PNG) and
:func:`ct_phantom` (a synthetic chest CT slice for the windowing lesson) write with
:func:`hello_dl.runs.write_atomic` and never replace a file that is already there.
"""

from __future__ import annotations

import hashlib
import io
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom  # about 0.3 s to import, measured: cheap next to decoding the first image, so at the top
from PIL import Image, ImageOps, UnidentifiedImageError
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_voi_lut, get_decoder
from pydicom.uid import CTImageStorage, ComputedRadiographyImageStorage, ExplicitVRLittleEndian, generate_uid

from hello_dl.errors import DataError, unreadable_file
from hello_dl.filetypes import DICOM_SUFFIXES, is_dicom_file, is_junk
from hello_dl.runs import write_atomic

#: What to install for each family of compressed transfer syntaxes (pip package names).
_DECODER_PACKAGES = {
    "JPEG-LS": "pylibjpeg pylibjpeg-libjpeg",
    "JPEG 2000": "pylibjpeg pylibjpeg-openjpeg",
    "High-Throughput JPEG 2000": "pylibjpeg pylibjpeg-openjpeg",
    "JPEG": "pylibjpeg pylibjpeg-libjpeg",
    "RLE": "pylibjpeg pylibjpeg-rle",
}


@dataclass
class DicomImage:
    """One DICOM frame, windowed and ready to show or feed to a model."""

    path: Path
    values: np.ndarray  # float32 in [0, 1], (H, W) or (H, W, 3) for colour files
    photometric: str  # MONOCHROME1, MONOCHROME2, RGB, ...
    bits_stored: int
    window: tuple[float, float] | None  # (centre, width) actually used, if a window was applied
    voi_source: str  # "VOI LUT", "window", or "pixel range"
    modality: str = ""

    @property
    def display(self) -> np.ndarray:
        """uint8 0-255 version of :attr:`values` (what a PNG export holds)."""
        return unit_to_uint8(self.values)

    @property
    def mode_description(self) -> str:
        return f"DICOM {self.photometric} {self.bits_stored}-bit"


# --- grey values on the 0..1 scale -------------------------------------------------------------------
def unit_range(values: np.ndarray) -> np.ndarray:
    """Map an array's own minimum..maximum onto 0..1 (what a viewer shows without a window).

    A flat or empty array becomes all zeros; NaN counts as the minimum.
    """
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.zeros(values.shape)
    low, high = float(finite.min()), float(finite.max())
    if high <= low:
        return np.zeros(values.shape)
    return np.clip((np.nan_to_num(values, nan=low) - low) / (high - low), 0.0, 1.0)


def unit_to_uint8(values: np.ndarray) -> np.ndarray:
    """0..1 values → uint8 0..255, rounded to the nearest grey level."""
    return np.rint(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)


# --- reading ----------------------------------------------------------------------------------------
#: Attributes every real DICOM object has one of (an image, a report, a DICOMDIR); what random
#: bytes after a "DICM" signature, or a text file read without one, never parse into.
_REAL_DICOM_KEYWORDS = ("SOPClassUID", "PixelData", "Modality", "Rows", "DirectoryRecordSequence")


def _looks_real(ds: Dataset) -> bool:
    meta = getattr(ds, "file_meta", None)
    return any(keyword in ds for keyword in _REAL_DICOM_KEYWORDS) or bool(
        meta is not None and "MediaStorageSOPClassUID" in meta)


def _read_dataset(path: Path) -> Dataset:
    try:
        ds = pydicom.dcmread(path)
    except InvalidDicomError:
        ds = None
    except PermissionError:
        raise unreadable_file(path) from None
    except (OSError, EOFError, ValueError, KeyError, TypeError, struct.error) as exc:
        raise DataError(f"{path} is a damaged DICOM file and cannot be read ({exc}). "
                        f"Export it again from the PACS or viewer.") from None
    if ds is not None:
        if _looks_real(ds):
            return ds
        # The "DICM" signature is there, but what follows parses into nothing a DICOM file holds.
        raise DataError(f"{path} starts like a DICOM file (it has the 'DICM' signature), but what follows "
                        f"cannot be parsed as DICOM: the file is damaged or is not really DICOM. Export it "
                        f"again from the PACS or viewer, or remove it from the folder.")
    # Older files have no 128-byte preamble and "DICM" signature; read them anyway, but only
    # accept the result if it holds real DICOM attributes (a text file parses to nonsense).
    try:
        ds = pydicom.dcmread(path, force=True)
        if _looks_real(ds):
            return ds
    except Exception:  # noqa: BLE001 - anything here means "not DICOM", reported below
        pass
    raise DataError(
        f"{path} is not a DICOM file (no DICOM header found). If it is an image in another "
        f"format, give it the right extension (.png or .jpg); otherwise remove it from the folder."
    )


def _decoder_hint(transfer_syntax) -> str:
    name = getattr(transfer_syntax, "name", str(transfer_syntax))
    for family, packages in _DECODER_PACKAGES.items():
        if name.startswith(family) or family in name:
            return packages
    return "pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg"


def _pixels(ds: Dataset, path: Path) -> np.ndarray:
    """The stored pixel values, with a clear message when a decoder package is missing."""
    if "PixelData" not in ds:
        meta = getattr(ds, "file_meta", None)
        sop_class = ds.get("SOPClassUID") or (meta.get("MediaStorageSOPClassUID") if meta is not None else None)
        if "Rows" in ds or "Image Storage" in getattr(sop_class, "name", ""):
            # An image's file (its class or its size says so) whose pixels are missing: cut off.
            raise DataError(f"{path} is a damaged or incomplete DICOM file: it describes an image but the image "
                            f"data is missing (was it cut off while copying?). Export it again from the PACS "
                            f"or viewer.")
        raise DataError(f"{path} is a DICOM file without an image (for example a report or a DICOMDIR). "
                        f"Leave it out of the image folder.")
    transfer_syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if transfer_syntax is not None and transfer_syntax.is_compressed:
        try:
            available = get_decoder(transfer_syntax).is_available
        except NotImplementedError:
            available = False
        if not available:
            packages = _decoder_hint(transfer_syntax)
            raise DataError(
                f"{path} is compressed as '{transfer_syntax.name}' and no decoder for it is installed. "
                f"Install one into the kit's environment with:  .venv/bin/pip install {packages}  "
                f"and run again (or export the image uncompressed from your viewer)."
            )
    try:
        return ds.pixel_array
    except (RuntimeError, NotImplementedError) as exc:
        packages = _decoder_hint(transfer_syntax) if transfer_syntax is not None else "pylibjpeg"
        raise DataError(f"{path}: the image data cannot be decoded ({exc}). If a package is missing, "
                        f"install it with:  .venv/bin/pip install {packages}") from None
    except (ValueError, AttributeError, KeyError, TypeError, EOFError, OSError) as exc:
        raise DataError(f"{path} has damaged or incomplete image data ({exc}). "
                        f"Export it again from the PACS or viewer.") from None


def _first(value) -> float:
    """Window centre/width may be multi-valued (several presets): the first is the default view."""
    try:
        return float(value[0])
    except (TypeError, IndexError):
        return float(value)


def _voi_to_unit(values: np.ndarray, ds: Dataset) -> tuple[np.ndarray, str, tuple[float, float] | None]:
    """Step 2 of the display chain with pydicom's ``apply_voi_lut``, put on the 0..1 scale.

    Returns (values in 0..1, which VOI step was used, the window (centre, width) if one was).
    """
    lut = ds.get("VOILUTSequence")
    if lut and None not in (lut[0].get("LUTDescriptor"), lut[0].get("LUTData")):  # pydicom's own test
        # A VOI LUT maps whole numbers, and its output scale is the bit depth its descriptor declares.
        looked_up = apply_voi_lut(np.rint(values).astype(np.int64), ds)
        return looked_up / float(2 ** int(lut[0].LUTDescriptor[2]) - 1), "VOI LUT", None
    if ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None:
        try:
            return _windowed(values, ds), "window", (_first(ds.WindowCenter), _first(ds.WindowWidth))
        except ValueError:  # a width the standard forbids (below 1, or 0) or an unknown VOI LUT Function
            pass
    return unit_range(values), "pixel range", None


def _windowed(values: np.ndarray, ds: Dataset) -> np.ndarray:
    """``ds``'s (first) window applied by pydicom, on the 0..1 scale."""
    # exp() overflows to inf far below a narrow SIGMOID window, which gives the right answer (0).
    with np.errstate(over="ignore"):
        windowed = apply_voi_lut(values, ds)
        # pydicom windows onto the range the stored bits (after rescale) could hold: ask it for both ends.
        low, high = apply_voi_lut(np.array([-np.inf, np.inf]), ds)
    return np.clip((windowed - low) / (high - low), 0.0, 1.0)


def window_to_unit(values: np.ndarray, centre: float, width: float, function: str = "LINEAR") -> np.ndarray:
    """Apply a DICOM window to ``values`` (e.g. Hounsfield units) and return values in [0, 1].

    ``function`` is the *VOI LUT Function* (PS3.3 C.11.2.1.2): LINEAR (the default), LINEAR_EXACT
    or SIGMOID. The arithmetic is pydicom's ``apply_voi_lut``, as in :func:`read_dicom`; a width
    the standard does not allow (below 1 for LINEAR, 0 or less otherwise) raises ValueError.
    """
    window = Dataset()
    window.PhotometricInterpretation = "MONOCHROME2"
    window.BitsStored, window.PixelRepresentation = 16, 0  # any output range will do: the result is rescaled
    window.WindowCenter, window.WindowWidth = float(centre), float(width)
    window.VOILUTFunction = (function or "LINEAR").strip().upper()
    return _windowed(np.asarray(values, dtype=np.float64), window)


def read_dicom(path: str | Path, frame: int | None = None) -> DicomImage:
    """Read one DICOM image (one frame of a multi-frame file) through the display chain above."""
    path = Path(path)
    ds = _read_dataset(path)
    stored = np.asarray(_pixels(ds, path))
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if frames > 1:
        if frame is None:
            raise DataError(
                f"{path} holds {frames} images (frames), but the tutorial classifies one radiograph per "
                f"file. Pick one frame (read_dicom(path, frame=0)) or export the frame you want as PNG."
            )
        if not 0 <= frame < frames:
            raise DataError(f"{path} has frames 0 to {frames - 1}; frame {frame} does not exist.")
        stored = stored[frame]
    bits = int(ds.get("BitsStored", 8) or 8)
    modality = str(ds.get("Modality", ""))

    if samples == 3 or stored.ndim == 3:
        # Colour DICOM (e.g. secondary captures): pydicom already returns RGB; just scale by bit depth.
        maximum = float(2 ** bits - 1) if bits <= 16 else float(stored.max() or 1)
        values = np.clip(stored.astype(np.float64) / maximum, 0.0, 1.0)
        return DicomImage(path, values.astype(np.float32), photometric, bits, None, "bit depth", modality)

    unit, source, window = _voi_to_unit(apply_modality_lut(stored, ds), ds)
    if photometric == "MONOCHROME1":
        unit = 1.0 - unit
    return DicomImage(path, unit.astype(np.float32), photometric, bits, window, source, modality)


# --- folder conversion -------------------------------------------------------------------------
def _dicom_candidates(source: Path) -> list[Path]:
    return [path for path in sorted(source.rglob("*"))
            if path.is_file() and not is_junk(path.relative_to(source)) and is_dicom_file(path)]


def _png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


class Converted(list):
    """What :func:`convert_folder` did: the PNG files it wrote (the list itself), and in ``skipped``
    those it left alone because a file of that name was already there (a rerun skips them all)."""

    def __init__(self, written: list[Path], skipped: list[Path]):
        super().__init__(written)
        self.skipped = list(skipped)

    @property
    def written(self) -> list[Path]:
        return list(self)

    def format(self, destination: str | Path) -> str:
        """One line for people: how many were written, and how many skipped as already there."""
        line = f"{len(self)} PNG file(s) were written to {destination}"
        if self.skipped:
            line += (f"; {len(self.skipped)} skipped because a PNG of that name was already there "
                     f"(left as it is; delete it to convert that file again)")
        return line + "."


def convert_folder(source: str | Path, destination: str | Path) -> Converted:
    """Convert every DICOM file under ``source`` into an 8-bit PNG under ``destination``.

    Sub-folders are mirrored (``a/b/IM1.dcm`` → ``a/b/IM1.png``). Source files are only read.
    An existing PNG is never overwritten: it is counted in ``skipped`` and left as it is. Every
    file that can be converted is; if some cannot, a :class:`DataError` lists them all at the end.
    Multi-frame files give one PNG per frame (``name_frame000.png``...).
    Returns the PNG files written by this call (a list, with ``.skipped`` and ``.format()``).
    """
    source, destination = Path(source), Path(destination)
    if not source.is_dir():
        raise DataError(f"DICOM folder not found: {source}. Give the folder that holds the .dcm files.")
    if destination.resolve() == source.resolve():
        raise DataError("Write the PNG files to a different folder than the DICOM files "
                        f"(both are {source}), so the originals stay untouched.")
    written: list[Path] = []
    skipped: list[Path] = []
    failures: list[str] = []
    for path in _dicom_candidates(source):
        relative = path.relative_to(source)
        # Only a DICOM extension is replaced: UID names (1.2.840.5.11, 1.2.840.5.12) must stay apart.
        name = relative.stem if relative.suffix.lower() in DICOM_SUFFIXES else relative.name
        if (destination / relative.parent / f"{name}.png").exists():
            skipped.append(destination / relative.parent / f"{name}.png")  # a rerun: not even decoded again
            continue
        try:
            images = _frames_for_export(path)
        except DataError as exc:
            failures.append(str(exc))
            continue
        for suffix, image in images:
            target = destination / relative.parent / f"{name}{suffix}.png"
            if target.exists():
                skipped.append(target)
                continue
            try:
                write_atomic(target, _png_bytes(image.display), exclusive=True)
            except FileExistsError:  # appeared meanwhile: the user's file stays
                skipped.append(target)
                continue
            written.append(target)
    result = Converted(written, skipped)
    if failures:
        raise DataError(result.format(destination) + f" {len(failures)} file(s) could not be converted:\n  "
                        + "\n  ".join(failures))
    return result


def _frames_for_export(path: Path) -> list[tuple[str, DicomImage]]:
    try:
        frames = int(pydicom.dcmread(path, stop_before_pixels=True).get("NumberOfFrames", 1) or 1)
    except Exception:  # the full read below produces the user-facing message
        frames = 1
    if frames <= 1:
        return [("", read_dicom(path))]
    return [(f"_frame{index:03d}", read_dicom(path, frame=index)) for index in range(frames)]


# --- a demo file for the lessons -----------------------------------------------------------------
def picture_grey(path: str | Path) -> np.ndarray:
    """The grey values (0-255, float) of an 8-bit grey or colour PNG/JPEG: the mean of its channels.

    The same grey as :func:`hello_dl.images.load_image` gives for such files (turned upright by
    their EXIF orientation); other pixel formats are refused with a message.
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            upright = ImageOps.exif_transpose(img)
            mode, pixels = upright.mode, np.asarray(upright, dtype=np.float64)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path} cannot be read as a PNG or JPEG picture ({exc}). Give a PNG or JPEG "
                        f"radiograph.") from None
    if mode not in ("L", "RGB"):
        raise DataError(f"{path} stores its pixels as {mode!r}; the demo DICOM is made from 8-bit grey or "
                        f"colour (RGB) pictures. Save it as an 8-bit PNG and try again.")
    return pixels.mean(axis=2) if pixels.ndim == 3 else pixels


def image_to_dicom(image: str | Path, destination: str | Path, *, photometric: str = "MONOCHROME1") -> Path:
    """Wrap a PNG/JPEG radiograph in a DICOM file, as a computed-radiography (CR) image would come.

    For the lessons and for trying the kit without patient data: the grey values are stored as
    12-bit numbers, by default as MONOCHROME1 (white = low, as many CR systems store them), with a
    window that shows the whole range, so :func:`read_dicom` gives the original picture back.
    The file carries no patient data and no body part (which would give the answer away).
    Writing the same image again gives the same bytes; an existing ``destination`` is left as it is.
    """
    image, destination = Path(image), Path(destination)
    if destination.exists():
        return destination
    photometric = photometric.strip().upper()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise DataError(f"photometric must be MONOCHROME1 or MONOCHROME2, not {photometric!r}.")
    stored = np.rint(picture_grey(image) * (4095.0 / 255.0)).astype(np.uint16)
    if photometric == "MONOCHROME1":
        stored = (4095 - stored).astype(np.uint16)
    return _write_demo(destination, stored, photometric=photometric, sop_class=ComputedRadiographyImageStorage,
                       modality="CR", description=f"Demo made by hello-dl from {image.name}",
                       rescale=(1, 0), window=(2048, 4096))


def _write_demo(destination: Path, stored: np.ndarray, *, photometric: str, sop_class: str, modality: str,
                description: str, rescale: tuple[float, float], window: tuple[float, float]) -> Path:
    """A 12-bit demo DICOM file holding ``stored``, without patient data, written once and atomically."""
    # UIDs derived from the picture itself, so a rerun writes an identical file.
    fingerprint = hashlib.sha256(stored.tobytes()).hexdigest()

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid(entropy_srcs=[fingerprint, "instance"])
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[fingerprint, "study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[fingerprint, "series"])
    ds.PatientName = "Demo^Tutorial"
    ds.PatientID = "DEMO"
    ds.Modality = modality
    ds.SeriesDescription = description
    ds.set_pixel_data(stored, photometric, 12, generate_instance_uid=False)  # rows, bits, pixel data
    ds.RescaleSlope, ds.RescaleIntercept = rescale
    ds.WindowCenter, ds.WindowWidth = window

    encoded = io.BytesIO()
    ds.save_as(encoded, enforce_file_format=True)
    try:
        write_atomic(destination, encoded.getvalue(), exclusive=True)
    except FileExistsError:  # written meanwhile (e.g. by another notebook): keep that one
        pass
    return destination


#: Hounsfield units of the phantom's tissues (typical textbook values).
PHANTOM_HU = {"air": -1000, "emphysema": -980, "lung": -850, "ground glass": -650, "small vessel": -450,
              "fat": -100, "soft tissue": 40, "muscle": 50, "blood vessel": 40, "nodule": 30, "bone": 700,
              "cortical bone": 1200}


def _ellipse(shape: tuple[int, int], centre: tuple[float, float], radii: tuple[float, float]) -> np.ndarray:
    rows, cols = np.ogrid[:shape[0], :shape[1]]
    return ((rows - centre[0]) / radii[0]) ** 2 + ((cols - centre[1]) / radii[1]) ** 2 <= 1.0


def _vessel(shape: tuple[int, int], start: np.ndarray, angle: float, bend: float, length: float,
            width: float) -> np.ndarray:
    """A gently curving, tapering tube (as a mask) from ``start``, heading ``angle`` (radians)."""
    rows, cols = np.ogrid[:shape[0], :shape[1]]
    mask = np.zeros(shape, dtype=bool)
    point = start.astype(float)
    for step in np.linspace(0.0, 1.0, 48):
        heading = angle + bend * step
        point = point + (length / 48) * np.array([np.sin(heading), np.cos(heading)])
        radius = max(0.6, width * (1.0 - 0.75 * step))
        mask |= (rows - point[0]) ** 2 + (cols - point[1]) ** 2 <= radius ** 2
    return mask


def phantom_hounsfield(size: int = 256, seed: int = 0) -> np.ndarray:
    """A synthetic axial chest CT slice in Hounsfield units: lungs, mediastinum, chest wall and spine.

    Made up, not a patient. It holds what windowing is about: inside the lungs, detail between
    -1000 and -400 HU (fine vessels, a patch of ground glass, an emphysematous bulla) that only a
    lung window shows, and outside them fat, muscle, heart and bone that only a soft-tissue window
    tells apart; a small soft-tissue nodule sits in the right lung; a little noise (seeded).
    """
    hu, shape, c = PHANTOM_HU, (size, size), size / 256.0
    image = np.full(shape, float(hu["air"]))
    image[_ellipse(shape, (128 * c, 128 * c), (92 * c, 118 * c))] = hu["fat"]  # subcutaneous fat
    image[_ellipse(shape, (128 * c, 128 * c), (84 * c, 110 * c))] = hu["muscle"]  # chest wall
    image[_ellipse(shape, (130 * c, 128 * c), (72 * c, 98 * c))] = hu["fat"]  # fat inside the chest wall
    lungs = np.zeros(shape, dtype=bool)
    for side in (-1, 1):  # image left = patient right
        lungs |= _ellipse(shape, (124 * c, (128 + side * 46) * c), (60 * c, 38 * c))
    image[lungs] = hu["lung"]
    image[lungs & _ellipse(shape, (150 * c, 176 * c), (22 * c, 16 * c))] = hu["ground glass"]
    image[lungs & _ellipse(shape, (84 * c, 72 * c), (10 * c, 12 * c))] = hu["emphysema"]
    generator = np.random.default_rng(seed)
    for side in (-1, 1):  # vessels fan out from each hilum: large ones near it, fine ones at the edge
        hilum = np.array([128 * c, (128 + side * 24) * c])
        for angle in np.linspace(-1.1, 1.1, 6):
            heading = (0.0 if side > 0 else np.pi) + side * angle
            bend = side * generator.uniform(-0.5, 0.5)
            image[lungs & _vessel(shape, hilum, heading, bend, 55 * c, 2.4 * c)] = hu["blood vessel"]
            twig = hilum + 30 * c * np.array([np.sin(heading), np.cos(heading)])
            image[lungs & _vessel(shape, twig, heading + side * 0.6, -bend, 26 * c, 1.0 * c)] = hu["small vessel"]
    image[_ellipse(shape, (96 * c, 170 * c), (4 * c, 4 * c))] = hu["nodule"]
    image[_ellipse(shape, (132 * c, 122 * c), (30 * c, 26 * c))] = hu["soft tissue"]  # heart
    image[_ellipse(shape, (100 * c, 140 * c), (10 * c, 10 * c))] = hu["blood vessel"]  # aorta
    image[_ellipse(shape, (186 * c, 128 * c), (16 * c, 16 * c))] = hu["cortical bone"]  # vertebral body
    image[_ellipse(shape, (186 * c, 128 * c), (13 * c, 13 * c))] = hu["bone"]
    return np.rint(image + generator.normal(0.0, 12.0, shape)).clip(-1024, 3071)


def ct_phantom(destination: str | Path, *, size: int = 256) -> Path:
    """Write :func:`phantom_hounsfield` as a CT DICOM file (12-bit, rescale intercept -1024), once.

    The stored numbers are Hounsfield units + 1024, as most CT scanners store them; reading the
    file through the modality LUT (slope 1, intercept -1024) gives the Hounsfield units back. The
    header's own window is the soft-tissue one (centre 40, width 400).
    """
    destination = Path(destination)
    if destination.exists():
        return destination
    stored = (phantom_hounsfield(size) + 1024).astype(np.uint16)
    return _write_demo(destination, stored, photometric="MONOCHROME2", sop_class=CTImageStorage, modality="CT",
                       description="Synthetic chest CT slice made by hello-dl (no patient)", rescale=(1, -1024),
                       window=(40, 400))


__all__ = ["Converted", "DicomImage", "PHANTOM_HU", "convert_folder", "ct_phantom", "image_to_dicom", "phantom_hounsfield",
           "picture_grey", "read_dicom", "unit_range", "unit_to_uint8", "window_to_unit"]
