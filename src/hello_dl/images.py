"""Load any supported image file as an 8-bit RGB array, the one way every part of the kit does.

Training, validation, inference, Grad-CAM and the notebook previews all call :func:`load_image`,
so a picture is never decoded one way for training and another way for prediction.

What comes out is always a ``(height, width, 3)`` ``uint8`` array:

* **PNG / JPEG** in any Pillow mode. Grayscale (``L``, ``1``) is copied into the three channels
  (InceptionV3 expects three). Palette (``P``) images are expanded through their palette. CMYK and
  YCbCr are converted to RGB. JPEG files carrying an EXIF orientation are turned upright first.
* **Transparency** (``RGBA``, ``LA``, ``PA``, palette with a transparent colour) is flattened onto
  **black**, the same black used to pad images when the aspect ratio is kept, so transparent
  areas look like "no image here" rather than like bright tissue.
* **16-bit and 32-bit grayscale** (``I;16``, ``I``, ``F``) is stretched from the image's own
  darkest to brightest pixel onto 0-255. Decision and reason: 16-bit PNGs exported from scanners
  usually hold 10-12 bit data, so dividing by 65535 (the bit depth) would give an almost black
  picture; the image's real range is what a viewer's default window shows. A flat image becomes
  black.
* **DICOM** (``.dcm``/``.dicom`` or any file with the DICOM signature) goes through
  :func:`hello_dl.dicom.read_dicom`: modality LUT, VOI LUT or window, MONOCHROME1 inverted.

A file that cannot be decoded (corrupt, truncated, not an image at all) raises
:class:`~hello_dl.errors.DataError` naming the file; so does an image smaller than
:data:`MIN_IMAGE_SIDE` pixels, the smallest input InceptionV3 accepts, and one larger than
Pillow's pixel limit (``PIL.Image.MAX_IMAGE_PIXELS``, about 89 million pixels), which is said to
be too large, with the limit, rather than damaged.
"""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from hello_dl import dicom
from hello_dl.errors import DataError, unreadable_file
from hello_dl.filetypes import is_dicom_file
from hello_dl.settings import MIN_IMAGE_SIDE


# --- loading -----------------------------------------------------------------------------------
def load_image(path: str | Path, *, min_side: int = MIN_IMAGE_SIDE) -> np.ndarray:
    """The image at ``path`` as a ``(height, width, 3)`` uint8 RGB array (see the module notes).

    Raises :class:`DataError` naming the file if it is not a readable image or is smaller
    than ``min_side`` pixels on a side (pass ``min_side=0`` to allow tiny images).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Image file not found: {path}. Check the name and folder.")
    if is_dicom_file(path):
        rgb = gray_to_rgb(dicom.read_dicom(path).display)
    else:
        rgb = _load_with_pillow(path)
    check_size(rgb, path, min_side)
    return rgb


def image_info(path: str | Path) -> tuple[int, int, str]:
    """``(width, height, mode)`` of an image file, reading its full content (so corrupt files fail).

    The mode is Pillow's name for the pixel format (``RGB``, ``L``, ``I;16``...) or, for DICOM,
    e.g. ``DICOM MONOCHROME2 12-bit``.
    """
    path = Path(path)
    if is_dicom_file(path):
        image = dicom.read_dicom(path)
        height, width = image.display.shape[:2]
        return width, height, image.mode_description
    with _open_pillow(path) as img:
        return img.width, img.height, img.mode


def check_size(rgb: np.ndarray, path: str | Path, min_side: int = MIN_IMAGE_SIDE) -> None:
    height, width = rgb.shape[:2]
    check_dimensions(width, height, path, min_side)


def check_dimensions(width: int, height: int, path: str | Path, min_side: int = MIN_IMAGE_SIDE) -> None:
    """Raise :class:`DataError` if an image is too small for the model (message names the file)."""
    if min(height, width) < min_side:
        raise DataError(
            f"{path} is only {width}x{height} pixels; the model needs at least "
            f"{min_side}x{min_side}. Use a larger export of this image or leave it out of the data folder."
        )


def _open_pillow(path: Path) -> Image.Image:
    """Open and fully decode with Pillow, turning every decoder complaint into a DataError."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            # Pillow only warns between its pixel limit and twice that; the kit refuses both the same way.
            warnings.simplefilter("always", Image.DecompressionBombWarning)
            img = Image.open(path)
            if any(issubclass(w.category, Image.DecompressionBombWarning) for w in caught):
                img.close()
                raise _too_large(path, img.width, img.height)
            img.load()
        for other in caught:  # any other warning is passed on as Pillow gave it
            if not issubclass(other.category, Image.DecompressionBombWarning):
                warnings.warn_explicit(other.message, other.category, other.filename, other.lineno)
        return img
    except UnidentifiedImageError:
        raise DataError(
            f"{path} is not an image Pillow can read (PNG or JPEG expected). If it is not an "
            f"image, move it out of the data folder; if it should be one, export it again."
        ) from None
    except Image.DecompressionBombError as exc:
        raise _too_large(path, None, None, str(exc)) from None
    except PermissionError:
        raise unreadable_file(path) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise DataError(
            f"{path} is damaged or incomplete and cannot be read ({exc}). Copy or export the file "
            f"again, or remove it from the data folder."
        ) from None


def _too_large(path: Path, width: int | None, height: int | None, pillow_text: str = "") -> DataError:
    """The message for an image above Pillow's pixel limit: its size, the limit, and what to do."""
    if width and height:
        size = f"{width}x{height} = {width * height / 1e6:.0f} million pixels"
    else:  # above twice the limit Pillow refuses before saying the size; its message holds the count
        counted = re.search(r"\((\d+) pixels\)", pillow_text)
        size = f"{int(counted.group(1)) / 1e6:.0f} million pixels" if counted else "far too many pixels"
    limit = Image.MAX_IMAGE_PIXELS or 0
    return DataError(
        f"{path} is too large to load: {size}, above the limit of {limit / 1e6:.0f} million pixels "
        f"(about {math.isqrt(limit)}x{math.isqrt(limit)}; Pillow's guard against files made to exhaust memory). "
        f"The model looks at it at a few hundred pixels anyway: save a smaller copy (for example 4096 "
        f"pixels on the longer side) and use that, or leave the file out of the data folder."
    )


def _load_with_pillow(path: Path) -> np.ndarray:
    with _open_pillow(path) as img:
        img = ImageOps.exif_transpose(img)  # phone/camera JPEGs: show them upright
        return pil_to_rgb(img, source=path)


def pil_to_rgb(img: Image.Image, source: str | Path = "image") -> np.ndarray:
    """Convert a decoded Pillow image in any mode to ``(H, W, 3)`` uint8 RGB (rules in the module doc)."""
    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return gray_to_rgb(stretch_to_uint8(np.asarray(img)))
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif mode in ("PA", "LA", "La", "RGBa") or (mode in ("L", "RGB") and "transparency" in img.info):
        img = img.convert("RGBA")
    if img.mode == "RGBA":
        return _flatten_on_black(np.asarray(img))
    if img.mode != "RGB":
        try:
            img = img.convert("RGB")
        except (ValueError, OSError) as exc:
            raise DataError(f"{source} uses the pixel format {mode!r}, which cannot be converted to RGB "
                            f"({exc}). Save it again as an 8-bit PNG.") from None
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))


def _flatten_on_black(rgba: np.ndarray) -> np.ndarray:
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0
    return np.rint(rgba[..., :3].astype(np.float32) * alpha).astype(np.uint8)


def stretch_to_uint8(values: np.ndarray) -> np.ndarray:
    """Map an array's own minimum..maximum onto 0..255 (a flat array becomes all zeros)."""
    return dicom.unit_to_uint8(dicom.unit_range(values))


def gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    """``(H, W)`` or ``(H, W, 1)`` uint8 → ``(H, W, 3)``; an RGB array passes through."""
    gray = np.asarray(gray)
    if gray.ndim == 3 and gray.shape[2] == 3:
        return np.ascontiguousarray(gray.astype(np.uint8, copy=False))
    if gray.ndim == 3 and gray.shape[2] == 1:
        gray = gray[..., 0]
    if gray.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale or (H, W, 3) array, got shape {gray.shape}")
    return np.repeat(gray.astype(np.uint8, copy=False)[..., None], 3, axis=2)


# --- resizing ----------------------------------------------------------------------------------
def resize_image(image: np.ndarray, size: int | tuple[int, int], keep_aspect_ratio: bool = False) -> np.ndarray:
    """Resize a ``(H, W, 3)`` uint8 image to ``size`` (an int for a square, or ``(height, width)``).

    ``keep_aspect_ratio=False`` stretches to fill, as the paper did. ``True`` scales the longer
    side to fit and pads the rest with black, centred (Pillow's ``ImageOps.pad``), so an image's
    shape can no longer tell the model which class it is (see the dataset README: sizes nearly
    separate the classes). Bilinear with antialiasing (Pillow), so shrinking a 512-pixel image
    does not alias.
    """
    target_h, target_w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"resize_image expects an (H, W, 3) uint8 array, got {image.shape} {image.dtype}")
    if image.shape[:2] == (target_h, target_w):
        return image.copy()
    picture = Image.fromarray(image)
    if keep_aspect_ratio:
        resized = ImageOps.pad(picture, (target_w, target_h), Image.Resampling.BILINEAR, color=(0, 0, 0))
    else:
        resized = picture.resize((target_w, target_h), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)


__all__ = [
    "MIN_IMAGE_SIDE", "check_dimensions", "check_size", "gray_to_rgb", "image_info", "load_image", "pil_to_rgb",
    "resize_image", "stretch_to_uint8",
]
