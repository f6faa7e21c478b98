"""Temporary views of the shared dataset: fewer images (quick mode) or the same images repeated
(scaling to 130 and 260 training images). A view is a folder of symbolic links in the same
TRAIN|VAL|TEST/<class>/ layout, so the kit and the paper's generator read it like the real thing;
the shared dataset itself is only read, never copied or changed.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

SPLITS = ("TRAIN", "VAL")


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def make_view(source: Path, destination: Path | None = None, *, train_per_class: int | None = None,
              val_per_class: int | None = None, repeat: int = 1) -> Path:
    """Link a subset (``*_per_class`` first files of each class) and/or ``repeat`` copies of TRAIN.

    Repeated files get a ``rep<k>_`` prefix so every link has its own name (the kit caches decoded
    images by path, so a repeated image costs what a new image would).
    """
    source = Path(source).resolve()
    destination = Path(destination or tempfile.mkdtemp(prefix="hello_dl_bench_view_"))
    for split, per_class, copies in (("TRAIN", train_per_class, repeat), ("VAL", val_per_class, 1)):
        for class_dir in sorted(p for p in (source / split).iterdir() if p.is_dir()):
            chosen = _images(class_dir)[:per_class] if per_class else _images(class_dir)
            target_dir = destination / split / class_dir.name
            target_dir.mkdir(parents=True, exist_ok=True)
            for copy in range(copies):
                for image in chosen:
                    name = image.name if copy == 0 else f"rep{copy}_{image.name}"
                    link = target_dir / name
                    if not link.exists():
                        os.symlink(image, link)
    test = source / "TEST"
    if test.is_dir():
        (destination / "TEST").mkdir(exist_ok=True)
        for image in _images(test):
            link = destination / "TEST" / image.name
            if not link.exists():
                os.symlink(image, link)
    return destination


def count_images(root: Path, split: str = "TRAIN") -> int:
    return sum(len(_images(d)) for d in (Path(root) / split).iterdir() if d.is_dir())
