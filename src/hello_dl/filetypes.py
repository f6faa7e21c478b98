"""Which files are images, which are DICOM, which are clutter to ignore; and a file's checksum.

Every part of the kit that walks a folder (fetch, the dataset scan, the split, DICOM conversion,
prediction on a folder) asks these functions, so a file counts as an image everywhere or nowhere.
They only look at names and, for files without an extension, at the first 132 bytes; whether a
file really decodes is :func:`hello_dl.images.load_image`'s job.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

PIL_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})
DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})
IMAGE_SUFFIXES = PIL_SUFFIXES | DICOM_SUFFIXES

#: Files operating systems drop into folders; never images, always ignored.
JUNK_NAMES = frozenset({".ds_store", "thumbs.db", "desktop.ini", "ehthumbs.db", "icon\r"})
#: Folders that are never data (macOS zip resource forks, notebook autosaves).
JUNK_FOLDERS = frozenset({"__macosx", ".ipynb_checkpoints"})

#: DICOM Part 10 files start with a 128-byte preamble followed by these four bytes.
DICOM_MAGIC = b"DICM"
DICOM_MAGIC_OFFSET = 128


def is_junk(path: str | Path) -> bool:
    """True for hidden files, OS clutter (``.DS_Store``, ``Thumbs.db``) and ``__MACOSX`` content."""
    parts = Path(path).parts
    if any(part.lower() in JUNK_FOLDERS for part in parts):
        return True
    name = Path(path).name
    return name.startswith(".") or name.lower() in JUNK_NAMES


def has_dicom_signature(path: str | Path) -> bool:
    """True if the file carries the DICOM Part 10 signature ("DICM" after a 128-byte preamble)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(DICOM_MAGIC_OFFSET + len(DICOM_MAGIC))
    except OSError:
        return False
    return head[DICOM_MAGIC_OFFSET:] == DICOM_MAGIC


def is_dicom_file(path: str | Path) -> bool:
    """DICOM by extension (``.dcm``, ``.dicom``), or by signature for any other name that is not PNG/JPEG.

    PACS exports often name files without an extension (``IM0001``) or by their UID
    (``1.2.840.113619.2.55.3.320``, whose "extension" is ``.320``); the signature finds those.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    return suffix in DICOM_SUFFIXES or (suffix not in PIL_SUFFIXES and has_dicom_signature(path))


def is_image_file(path: str | Path) -> bool:
    """Should this file be treated as an image? (By name; :func:`hello_dl.images.load_image` checks the content.)

    PNG and JPEG by extension, DICOM as :func:`is_dicom_file` says. Hidden files and OS clutter
    are never images.
    """
    path = Path(path)
    if is_junk(path) or not path.is_file():
        return False
    return path.suffix.lower() in PIL_SUFFIXES or is_dicom_file(path)


def file_hash(path: str | Path, algorithm: str = "sha256") -> str:
    """The hex checksum of a file's bytes (what ``sha256sum`` or ``md5sum`` prints), read in blocks."""
    with open(path, "rb") as handle:
        # usedforsecurity=False keeps md5 usable on FIPS systems: these checksums find damage and mix-ups.
        return hashlib.file_digest(handle, lambda: hashlib.new(algorithm, usedforsecurity=False)).hexdigest()


__all__ = ["DICOM_MAGIC", "DICOM_MAGIC_OFFSET", "DICOM_SUFFIXES", "IMAGE_SUFFIXES", "JUNK_FOLDERS", "JUNK_NAMES",
           "PIL_SUFFIXES", "file_hash", "has_dicom_signature", "is_dicom_file", "is_image_file", "is_junk"]
