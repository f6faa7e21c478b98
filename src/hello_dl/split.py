"""Split a folder of your own images (one sub-folder per class) into TRAIN / VAL / TEST.

::

    my_images/                      my_split/
      chest/   *.png       ──►        TRAIN/chest/ ...   TRAIN/abdomen/ ...
      abdomen/ *.png                  VAL/chest/   ...   VAL/abdomen/   ...
                                      TEST/chest/  ...   TEST/abdomen/  ...   (only if test_fraction > 0)
                                      split.json   (which file went where, with its sha256)

Promises:

* **Sources are only read.** Files are copied (or, on request, hard-linked); nothing in the
  source folder is moved, renamed, changed or added to.
* **Stratified and seeded.** Each class is split on its own with the fractions from the
  settings (``val_fraction``, ``test_fraction``) and a random order fixed by ``settings.seed``,
  so the same images and seed give the same split, byte for byte, on any computer.
* **No leaks.** Files with identical content are kept together in one split, so the same
  picture can never be in training and in validation. The same picture in two *classes* is
  refused, because one of the two labels must be wrong.
* **Never mixed.** The split is assembled in a temporary folder and renamed into place at the
  end. Running again into an existing folder checks it: identical → nothing to do; different
  → refused, with a message, without touching it.
"""

from __future__ import annotations

import json
import os
import random
import shlex
import shutil
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from hello_dl.dataset import images_under, scan
from hello_dl.errors import DataError
from hello_dl.filetypes import file_hash, is_image_file, is_junk
from hello_dl.runs import publish_folder, staging_folder, write_atomic
from hello_dl.settings import Settings

PLAN_FILE = "split.json"


@dataclass(frozen=True)
class PlannedFile:
    split: str  # folder name, e.g. TRAIN
    class_folder: str
    relative: str  # path inside the class folder (sub-folders are kept)
    source: Path
    sha256: str

    @property
    def target(self) -> str:
        return f"{self.split}/{self.class_folder}/{self.relative}"


@dataclass
class SplitResult:
    source: Path
    destination: Path
    classes: list[str]
    counts: dict[str, dict[str, int]]  # split folder → class folder → count
    duplicates: list[list[str]]  # groups of identical source files, each kept in one split
    skipped: list[str]  # non-image files in the source that were not copied
    seed: int
    val_fraction: float
    test_fraction: float
    linked: bool = False
    already_existed: bool = False
    settings_classes: list[str] = field(default_factory=list)

    def format(self) -> str:
        how = "hard-linked" if self.linked else "copied"
        if self.already_existed:
            lines = [f"{self.destination} already holds exactly this split (checked file by file); nothing was changed."]
        else:
            lines = [f"Split {sum(sum(c.values()) for c in self.counts.values())} images from {self.source} into "
                     f"{self.destination} ({how}; the source files were only read)."]
        lines.append(f"Seed {self.seed}, validation {self.val_fraction:.0%}, test {self.test_fraction:.0%}, "
                     f"stratified by class.")
        header = ["split"] + self.classes + ["total"]
        rows = [header] + [[split] + [str(per_class.get(c, 0)) for c in self.classes] + [str(sum(per_class.values()))]
                           for split, per_class in self.counts.items()]
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        for row in rows:
            lines.append("  " + "  ".join(cell.rjust(w) if i else cell.ljust(w)
                                          for i, (cell, w) in enumerate(zip(row, widths))))
        if self.duplicates:
            lines.append(f"Identical files kept together in one split ({len(self.duplicates)} group(s)):")
            lines += ["  " + "  =  ".join(group) for group in self.duplicates]
        if self.skipped:
            lines.append(f"Not images, not copied ({len(self.skipped)}): " + ", ".join(self.skipped))
        # An absolute path: a relative data_dir would be taken from the kit's folder, not from here.
        where = Path(os.path.abspath(Path(self.destination).expanduser()))
        if list(self.settings_classes) != self.classes:
            lines.append(f"To train on it, set data_dir={where} and class_folders={','.join(self.classes)} "
                         f"(label 0 = {self.classes[0]}, label 1 = {self.classes[-1]}; reorder to swap), "
                         f"plus class_names.")
        else:
            lines.append(f"To train on it, set data_dir={where}.")
        lines.append(f"  For example:  export HELLO_DL_DATA_DIR={shlex.quote(str(where))}   "
                     f"(or --set data_dir={shlex.quote(str(where))} on the hello-dl command line)")
        return "\n".join(lines)


# --- planning ----------------------------------------------------------------------------------------
def _class_folders(source: Path, settings: Settings) -> list[Path]:
    folders, loose = [], []
    for child in sorted(source.iterdir(), key=lambda p: p.name):
        if is_junk(child.name):
            continue
        if child.is_dir():
            folders.append(child)
        elif is_image_file(child):
            loose.append(child)
    split_names = {settings.train_folder.lower(), settings.val_folder.lower(), settings.test_folder.lower()}
    if any(folder.name.lower() in split_names for folder in folders):
        raise DataError(
            f"{source} already looks split (it has {', '.join(f.name for f in folders)}). Give the folder that "
            f"holds one sub-folder per class (e.g. chest/ and abdomen/), not an already split one."
        )
    if loose:
        raise DataError(
            f"{loose[0]} lies directly in {source}, outside any class folder, so its class is unknown. "
            f"Move it into one of the class folders ({', '.join(f.name for f in folders) or 'e.g. chest/, abdomen/'})."
        )
    if len(folders) < 2:
        raise DataError(
            f"{source} needs one sub-folder per class (at least two, e.g. chest/ and abdomen/); "
            f"found {len(folders)}."
        )
    return folders


def _counts_for(units: int, val_fraction: float, test_fraction: float, class_name: str) -> tuple[int, int]:
    """(validation, test) unit counts for one class: rounded fractions, at least one where asked."""
    wanted_splits = 1 + (val_fraction > 0) + (test_fraction > 0)
    if units < wanted_splits:
        raise DataError(
            f"The class {class_name!r} has only {units} distinct image(s), too few to put at least one in each "
            f"of the {wanted_splits} splits. Add images, or lower val_fraction/test_fraction."
        )
    n_test = max(1, round(units * test_fraction)) if test_fraction > 0 else 0
    n_val = max(1, round(units * val_fraction)) if val_fraction > 0 else 0
    while n_test + n_val >= units:  # training keeps at least one
        if n_test > 1 and n_test >= n_val:
            n_test -= 1
        else:
            n_val -= 1
    return n_val, n_test


def plan_split(source: str | Path, settings: Settings) -> tuple[list[PlannedFile], list[list[str]], list[str], list[str]]:
    """Decide where every file goes. Returns (files, duplicate groups, classes, skipped files)."""
    source = Path(source)
    if not source.is_dir():
        raise DataError(f"The folder to split, {source}, does not exist. Give the folder with one sub-folder per class.")
    folders = _class_folders(source, settings)
    classes = [f.name for f in folders]

    by_hash: dict[str, list[tuple[str, str, Path]]] = defaultdict(list)  # sha → (class, relative, path)
    skipped: list[str] = []
    for folder in folders:
        images, other = images_under(folder)
        skipped += [p.relative_to(source).as_posix() for p in other]
        if not images:
            raise DataError(f"The class folder {folder} holds no images (PNG, JPEG or DICOM). "
                            f"Add images or remove the folder.")
        for path in images:
            by_hash[file_hash(path)].append((folder.name, path.relative_to(folder).as_posix(), path))

    duplicates = []
    units_per_class: dict[str, list[tuple[str, list[tuple[str, str, Path]]]]] = defaultdict(list)
    for digest, members in by_hash.items():
        member_classes = sorted({m[0] for m in members})
        if len(member_classes) > 1:
            names = [str(m[2]) for m in members]
            raise DataError(
                f"The same image is in more than one class: {' and '.join(names)} have identical content. "
                f"One label must be wrong: delete or move the wrong copy, then split again."
            )
        members.sort(key=lambda m: m[1])
        if len(members) > 1:
            duplicates.append([f"{m[0]}/{m[1]}" for m in members])
        units_per_class[member_classes[0]].append((digest, members))

    val_fraction, test_fraction = float(settings.val_fraction), float(settings.test_fraction)
    planned: list[PlannedFile] = []
    for class_name in classes:
        units = sorted(units_per_class[class_name], key=lambda unit: unit[1][0][1])  # by first file name
        random.Random(f"{settings.seed}/{class_name}").shuffle(units)
        n_val, n_test = _counts_for(len(units), val_fraction, test_fraction, class_name)
        for position, (digest, members) in enumerate(units):
            split = (settings.test_folder if position < n_test else
                     settings.val_folder if position < n_test + n_val else settings.train_folder)
            planned += [PlannedFile(split, class_name, relative, path, digest) for _, relative, path in members]
    planned.sort(key=lambda f: f.target)
    return planned, sorted(duplicates), classes, skipped


def _plan_document(planned: list[PlannedFile], settings: Settings, classes: list[str]) -> bytes:
    """split.json: deterministic (no dates, no absolute paths), so reruns are byte-identical."""
    document = {
        "seed": int(settings.seed),
        "val_fraction": float(settings.val_fraction),
        "test_fraction": float(settings.test_fraction),
        "classes": classes,
        "files": [{"path": f.target, "source": f"{f.class_folder}/{f.relative}", "sha256": f.sha256} for f in planned],
    }
    return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode("utf-8")


# --- writing -------------------------------------------------------------------------------------------
def _existing_files(folder: Path) -> dict[str, Path]:
    return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*"))
            if p.is_file() and not is_junk(p.relative_to(folder))}


def _matches(destination: Path, planned: list[PlannedFile], document: bytes) -> list[str]:
    """Differences between an existing destination and the plan (empty = identical)."""
    existing = _existing_files(destination)
    expected = {f.target: f.sha256 for f in planned}
    problems = [f"not part of this split: {name}" for name in sorted(set(existing) - set(expected) - {PLAN_FILE})]
    for name in sorted(set(expected) & set(existing)):
        if file_hash(existing[name]) != expected[name]:
            problems.append(f"different content: {name}")
    problems += [f"missing: {name}" for name in sorted(set(expected) - set(existing))]
    plan_file = destination / PLAN_FILE
    if not plan_file.is_file() or plan_file.read_bytes() != document:
        problems.append(f"{PLAN_FILE} is missing or records a different split (seed or fractions)")
    return problems


def _place(source: Path, target: Path, link: bool) -> bool:
    """Copy (or hard-link) one file; returns True if it was linked."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if link:
        try:
            os.link(source, target)
            return True
        except OSError:  # another disk, or a file system without hard links: copy instead
            pass
    shutil.copyfile(source, target)
    return False


def split_folder(source: str | Path, destination: str | Path, settings: Settings, *, link: bool = False) -> SplitResult:
    """Split ``source`` (one sub-folder per class) into ``destination``/TRAIN|VAL|TEST (see module notes).

    ``link=True`` hard-links instead of copying (saves disk space; the split files then *are*
    the source files, so never edit them in place).
    """
    # Absolute from here on, so every message and the advice name the folder the caller means.
    source = Path(os.path.abspath(Path(source).expanduser()))
    destination = Path(os.path.abspath(Path(destination).expanduser()))
    src, dst = source.resolve(), destination.resolve()
    if dst == src or src in dst.parents or dst in src.parents:
        raise DataError(f"Choose a destination outside the source folder (and not containing it): "
                        f"{destination} and {source} overlap, and the source must stay as it is.")
    planned, duplicates, classes, skipped = plan_split(source, settings)
    document = _plan_document(planned, settings, classes)
    counts: dict[str, dict[str, int]] = {}
    for name in (settings.train_folder, settings.val_folder, settings.test_folder):
        per_class = {c: sum(1 for f in planned if f.split == name and f.class_folder == c) for c in classes}
        if sum(per_class.values()) or name != settings.test_folder:
            counts[name] = per_class
    result = SplitResult(source, destination, classes, counts, duplicates, skipped, int(settings.seed),
                         float(settings.val_fraction), float(settings.test_fraction), link,
                         settings_classes=list(settings.class_folders))

    if destination.exists() and not (destination.is_dir() and not any(destination.iterdir())):
        problems = _matches(destination, planned, document) if destination.is_dir() else ["it is a file"]
        if problems:
            shown = "\n  ".join(problems[:10]) + ("\n  ..." if len(problems) > 10 else "")
            raise DataError(
                f"{destination} already exists and holds a different split:\n  {shown}\n"
                f"Nothing was changed. Choose a new destination folder, or delete {destination} yourself "
                f"if you want to split again."
            )
        result.already_existed = True
        return result
    if destination.is_dir():
        destination.rmdir()  # empty: simply fill it

    with staging_folder(destination) as staging:
        linked = False
        for item in planned:
            linked |= _place(item.source, staging / item.target, link)
        write_atomic(staging / PLAN_FILE, document)
        problems = _matches(staging, planned, document)
        if problems:  # a source changed while copying: do not install a mixed split
            raise DataError(f"The copy does not match the sources ({problems[0]}); was a file changed "
                            f"during the split? Nothing was installed; run the split again.")
        try:
            publish_folder(staging, destination)
        except FileExistsError:
            raise DataError(f"{destination} appeared while the split was being made (another split into the "
                            f"same folder?). Nothing was changed; run the split again to check it.") from None
    result.linked = linked
    return result


# --- practice material for the lessons ---------------------------------------------------------------
def example_source(settings: Settings, destination: str | Path) -> Path:
    """A folder shaped like your own data (``<class name>/`` image folders), for practising a split.

    Copies the tutorial's TRAIN and VAL images (read only) into ``destination/chest/`` and
    ``destination/abdomen/`` (the class display names), so :func:`split_folder` can be tried
    without touching anyone's real images. Assembled in a temporary folder and renamed into place;
    an existing ``destination`` is returned as it is.
    """
    destination = Path(destination).expanduser()
    if destination.exists():
        return destination
    index = scan(settings)
    with staging_folder(destination) as staging:
        for split in (index.train, index.val):
            for path, label in zip(split.files, split.labels):
                target = staging / index.class_info.name_of(label) / path.name
                target.parent.mkdir(exist_ok=True)
                shutil.copyfile(path, target)
        try:
            publish_folder(staging, destination)
        except FileExistsError:  # made meanwhile by another call: that one is as good
            pass
    return destination


__all__ = ["PLAN_FILE", "PlannedFile", "SplitResult", "example_source", "plan_split", "split_folder"]
