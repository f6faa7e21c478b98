"""The dataset on disk: which files belong to which split and class, and a summary of them.

Expected layout (the paper's, see ``data/README.md``)::

    data_dir/
      TRAIN/<class folder 0>/*.png   TRAIN/<class folder 1>/*.png
      VAL/<class folder 0>/*.png     VAL/<class folder 1>/*.png
      TEST/*.png                     (flat: labels unknown)  or  TEST/<class folder>/*.png

Labels come from ``settings.class_folders`` in that order (label ``i`` = ``class_folders[i]`` =
``class_names[i]``), never from sorting folder names, so renaming a folder cannot silently
flip the labels. Hidden files, ``.DS_Store``, ``Thumbs.db``, ``__MACOSX`` and
``.ipynb_checkpoints`` are ignored everywhere; any other file that is not an image is listed as
skipped so the summary can mention it.

Identical files are found by content (file sizes first, checksums only where sizes agree, so a
scan stays quick). The same picture under two class folders is refused, naming both files: one
of the two labels must be wrong, and training on both would teach the model nonsense. The same
picture in two splits (a TRAIN image copied into VAL) is allowed but recorded in
:attr:`DatasetIndex.leaks`, and the summary (and the training run) warn about it loudly: the
model would be validated on an image it trained on. Copies within one split and class (the
paper's own VAL has one) are only reported by the summary.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from hello_dl.errors import DataError
from hello_dl.filetypes import file_hash, is_image_file, is_junk
from hello_dl.images import check_dimensions, image_info
from hello_dl.settings import Settings

SPLITS = ("TRAIN", "VAL", "TEST")


# --- class mapping ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClassInfo:
    """Label index → folder → display name, in the explicit order of the settings."""

    folders: tuple[str, ...]
    names: tuple[str, ...]

    @classmethod
    def from_settings(cls, settings: Settings) -> "ClassInfo":
        return cls(tuple(settings.class_folders), tuple(settings.class_names))

    def __len__(self) -> int:
        return len(self.folders)

    def index_of(self, folder: str) -> int:
        return self.folders.index(folder)

    def name_of(self, index: int) -> str:
        return self.names[int(index)]

    def folder_of(self, index: int) -> str:
        return self.folders[int(index)]

    def rows(self) -> list[tuple[int, str, str]]:
        return [(i, folder, name) for i, (folder, name) in enumerate(zip(self.folders, self.names))]

    def describe(self) -> str:
        """Lines like ``0 → openI_CXR → chest`` (what the notebooks print)."""
        return "\n".join(f"{i} → {folder} → {name}" for i, folder, name in self.rows())

    def as_dict(self) -> dict[str, dict[str, str]]:
        return {str(i): {"folder": folder, "name": name} for i, folder, name in self.rows()}


# --- the index ----------------------------------------------------------------------------------
@dataclass
class SplitFiles:
    """One split's image files and labels (``None`` where the label is unknown, e.g. a flat TEST/)."""

    name: str  # TRAIN, VAL or TEST as in the settings
    folder: Path
    files: list[Path] = field(default_factory=list)
    labels: list[int | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.files)

    @property
    def labelled(self) -> bool:
        return bool(self.labels) and all(label is not None for label in self.labels)

    def count_per_label(self) -> Counter:
        return Counter(self.labels)


@dataclass
class DatasetIndex:
    root: Path
    class_info: ClassInfo
    train: SplitFiles
    val: SplitFiles
    test: SplitFiles
    skipped: list[Path] = field(default_factory=list)  # non-image files that were not used
    #: Groups of identical files found in more than one split (relative paths, e.g. TRAIN/... = VAL/...).
    leaks: list[list[str]] = field(default_factory=list)

    def leak_warning(self) -> str | None:
        """A plain warning when a split shares an image with another one (``None`` when none does)."""
        return leak_warning(self.leaks)

    def splits(self) -> list[SplitFiles]:
        return [self.train, self.val, self.test]

    def split(self, role: str) -> SplitFiles:
        """``train``, ``val`` or ``test`` (or the split's folder name, e.g. ``TRAIN``)."""
        for key, split in (("train", self.train), ("val", self.val), ("test", self.test)):
            if role.lower() in (key, split.name.lower()):
                return split
        raise KeyError(f"no split named {role!r}; use train, val or test")


def _visible_children(folder: Path) -> tuple[list[Path], list[Path]]:
    """(sub-folders, files) of ``folder`` that are not junk, sorted by name."""
    folders, files = [], []
    for child in sorted(folder.iterdir(), key=lambda p: p.name):
        if is_junk(child.name):
            continue
        (folders if child.is_dir() else files).append(child)
    return folders, files


def images_under(folder: Path) -> tuple[list[Path], list[Path]]:
    """(image files, other files) anywhere below ``folder``, junk ignored, in a stable order."""
    found, other = [], []
    for path in sorted(folder.rglob("*"), key=lambda p: p.relative_to(folder).as_posix()):
        if path.is_dir() or is_junk(path.relative_to(folder)):
            continue
        (found if is_image_file(path) else other).append(path)
    return found, other


def _near_misses(root: Path, wanted: str) -> list[str]:
    return [p.name for p in root.iterdir() if p.is_dir() and p.name.lower() == wanted.lower() and p.name != wanted]


def _scan_labelled_split(root: Path, split_name: str, info: ClassInfo, required: bool,
                         skipped: list[Path]) -> SplitFiles:
    folder = root / split_name
    split = SplitFiles(split_name, folder)
    if not folder.is_dir():
        if not required:
            return split
        similar = _near_misses(root, split_name)
        hint = (f" There is a folder named {similar[0]!r}: rename it to {split_name!r}, or set "
                f"{'train' if split_name.upper() == 'TRAIN' else 'val'}_folder={similar[0]}." if similar else "")
        raise DataError(
            f"The {split_name} folder is missing: expected {folder}.{hint} The data folder needs "
            f"{', '.join(SPLITS[:2])} (and optionally TEST), each with one folder per class "
            f"({', '.join(info.folders)}). Run `hello-dl fetch` for the tutorial data, or "
            f"`hello-dl split` to make this layout from your own images."
        )
    subfolders, loose_files = _visible_children(folder)
    labelled_layout = any(sub.name in info.folders for sub in subfolders)

    if not labelled_layout and not required:
        # A flat TEST/ folder: images without labels (the paper's layout).
        files, other = images_under(folder)
        split.files, split.labels = files, [None] * len(files)
        skipped.extend(other)
        return split

    extra = [sub for sub in subfolders if sub.name not in info.folders]
    if extra:
        raise DataError(
            f"{extra[0]} is not one of the class folders ({', '.join(info.folders)}). Move it out of "
            f"{folder}, or if it is a class, rename it to one of those (the settings class_folders "
            f"say which folder is which class)."
        )
    loose_images = [f for f in loose_files if is_image_file(f)]
    if loose_images and required:
        raise DataError(
            f"{loose_images[0]} lies directly in {folder}, outside any class folder, so its class is "
            f"unknown. Move it into {folder / info.folders[0]} or {folder / info.folders[-1]}."
        )
    for label, class_folder in enumerate(info.folders):
        class_path = folder / class_folder
        if not class_path.is_dir():
            if not required:
                continue
            raise DataError(
                f"The class folder {class_path} is missing. Each of {', '.join(SPLITS[:2])} needs one "
                f"folder per class: {', '.join(info.folders)}."
            )
        files, other = images_under(class_path)
        skipped.extend(other)
        if not files:
            raise DataError(
                f"The class folder {class_path} holds no images (PNG, JPEG or DICOM). Put the "
                f"{info.names[label]} images there, or check that the right data folder is used."
            )
        split.files.extend(files)
        split.labels.extend([label] * len(files))
    # Unlabelled images next to class folders (only allowed in TEST).
    for loose in loose_images:
        split.files.append(loose)
        split.labels.append(None)
    skipped.extend(f for f in loose_files if not is_image_file(f))
    return split


def scan(settings: Settings, root: str | Path | None = None) -> DatasetIndex:
    """Find every image of ``settings.data_dir`` (or ``root``) with its split and label.

    Raises :class:`DataError` for a missing TRAIN or VAL folder, a missing or empty class
    folder, an unexpected extra folder, or an image outside any class folder. TEST is optional.
    """
    root = Path(root if root is not None else settings.data_dir)
    if not root.is_dir():
        raise DataError(
            f"The data folder {root} does not exist. Run `hello-dl fetch` (or the first notebook) to "
            f"download and check the images, or set HELLO_DL_DATA_DIR to where they are."
        )
    info = ClassInfo.from_settings(settings)
    skipped: list[Path] = []
    train = _scan_labelled_split(root, settings.train_folder, info, True, skipped)
    val = _scan_labelled_split(root, settings.val_folder, info, True, skipped)
    test = _scan_labelled_split(root, settings.test_folder, info, False, skipped)
    index = DatasetIndex(root, info, train, val, test, skipped)
    index.leaks = _check_identical_files(index)
    return index


def identical_files(paths: list[Path]) -> list[list[Path]]:
    """Groups (of two or more) of files with identical bytes, each sorted, in a stable order.

    Files are compared by size first and checksummed only where sizes agree, so a folder of
    thousands of images is not read in full just to find that nothing repeats.
    """
    by_size: dict[int, list[Path]] = defaultdict(list)
    for path in paths:
        by_size[path.stat().st_size].append(path)
    groups: list[list[Path]] = []
    for same_size in by_size.values():
        if len(same_size) < 2:
            continue
        by_hash: dict[str, list[Path]] = defaultdict(list)
        for path in same_size:
            by_hash[file_hash(path)].append(path)
        groups += [sorted(group) for group in by_hash.values() if len(group) > 1]
    return sorted(groups)


def _check_identical_files(index: DatasetIndex) -> list[list[str]]:
    """Refuse the same image under two classes; return the groups shared between splits (leaks)."""
    where: dict[Path, tuple[str, int | None]] = {}
    for split in index.splits():
        for path, label in zip(split.files, split.labels):
            where[path] = (split.name, label)
    groups = identical_files(list(where))
    conflicts = [group for group in groups if len({where[p][1] for p in group if where[p][1] is not None}) > 1]
    if conflicts:
        shown = "\n  ".join(" and ".join(f"{p} ({index.class_info.name_of(where[p][1])})" for p in group
                                         if where[p][1] is not None) for group in conflicts[:10])
        shown += "\n  ..." if len(conflicts) > 10 else ""
        raise DataError(
            f"The same image is in two classes ({len(conflicts)} case(s)); these files have identical content:\n"
            f"  {shown}\nOne of the two labels must be wrong, and the model cannot learn from both. Delete or "
            f"move the wrong copy (the kit never changes your files), then run again.")
    return [[p.relative_to(index.root).as_posix() for p in group] for group in groups
            if len({where[p][0] for p in group}) > 1]


def leak_warning(leaks: list[list[str]]) -> str | None:
    """The loud warning for images shared between splits (see :attr:`DatasetIndex.leaks`), or ``None``."""
    if not leaks:
        return None
    splits = sorted({path.split("/", 1)[0] for group in leaks for path in group})
    shown = "\n  ".join("  =  ".join(group) for group in leaks)
    return (f"WARNING: {len(leaks)} image(s) are in more than one split ({' and '.join(splits)}); identical "
            f"files:\n  {shown}\nThe model is then checked on pictures it has trained on, so validation "
            f"(or test) results look better than they are. Remove the extra copies, or make the split with "
            f"`hello-dl split`, which keeps identical files together in one split.")


# --- the summary -------------------------------------------------------------------------------
@dataclass
class GroupStats:
    """Sizes and pixel formats of one split x class group."""

    count: int = 0
    sizes: Counter = field(default_factory=Counter)  # (width, height) → count
    modes: Counter = field(default_factory=Counter)

    def size_text(self) -> str:
        if not self.sizes:
            return "-"
        if len(self.sizes) == 1:
            (width, height), = self.sizes
            return f"all {width}x{height}"
        widths = [w for w, _ in self.sizes]
        heights = [h for _, h in self.sizes]
        return (f"{len(self.sizes)} sizes, widths {min(widths)}-{max(widths)}, "
                f"heights {min(heights)}-{max(heights)}")


@dataclass
class DatasetSummary:
    root: Path
    class_info: ClassInfo
    split_names: dict[str, str]  # role (train/val/test) → folder name
    counts: dict[str, dict[str, int]]  # role → class name (or "unlabelled") → count
    distinct: dict[str, int]  # role → number of distinct images (by content)
    stats: dict[tuple[str, str], GroupStats]  # (role, class name) → sizes and modes
    duplicates: list[list[str]]  # groups of relative paths with identical bytes
    skipped: list[str]
    leaks: list[list[str]] = field(default_factory=list)  # the duplicate groups that span two splits

    def total(self, role: str) -> int:
        return sum(self.counts[role].values())

    def duplicate_kind(self, group: list[str]) -> str:
        splits = {path.split("/", 1)[0] for path in group}
        return f"within {splits.pop()}" if len(splits) == 1 else "across " + " and ".join(sorted(splits))

    def headline(self) -> str:
        parts = []
        for role in ("train", "val", "test"):
            total, distinct = self.total(role), self.distinct[role]
            extra = f" ({distinct} distinct)" if distinct != total else ""
            parts.append(f"{total} {role}{extra}")
        return " / ".join(parts)

    def as_dict(self) -> dict:
        return {
            "root": str(self.root),
            "class_mapping": self.class_info.as_dict(),
            "splits": self.split_names,
            "counts": self.counts,
            "distinct": self.distinct,
            "sizes": {f"{role}/{name}": {"count": g.count, "sizes": {f"{w}x{h}": n for (w, h), n in g.sizes.items()},
                                          "modes": dict(g.modes)} for (role, name), g in self.stats.items()},
            "duplicates": self.duplicates,
            "leaks": self.leaks,
            "skipped": self.skipped,
        }

    def format(self) -> str:
        names = list(self.class_info.names)
        lines = [f"Dataset: {self.root}", f"Images: {self.headline()}", "",
                 "Class mapping (label → folder → name):"]
        lines += [f"  {row}" for row in self.class_info.describe().splitlines()]
        lines += ["", "Images per split and class:"]
        header = ["split"] + names + ["unlabelled", "total", "distinct"]
        table = [header]
        for role in ("train", "val", "test"):
            row = [self.split_names[role]] + [str(self.counts[role].get(n, 0)) for n in names]
            row += [str(self.counts[role].get("unlabelled", 0)), str(self.total(role)), str(self.distinct[role])]
            table.append(row)
        widths = [max(len(r[i]) for r in table) for i in range(len(header))]
        for r in table:
            lines.append("  " + "  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(r, widths))))
        lines += ["", "Image sizes (width x height) and pixel formats:"]
        for (role, name), group in self.stats.items():
            modes = ", ".join(f"{m} ({n})" if len(group.modes) > 1 else m for m, n in sorted(group.modes.items()))
            lines.append(f"  {self.split_names[role]:<5} {name:<10} {group.count:>3} images: {group.size_text()}; {modes}")
        lines.append("")
        if self.duplicates:
            lines.append(f"Duplicates (identical files), {len(self.duplicates)} group(s):")
            for group in self.duplicates:
                lines.append(f"  {self.duplicate_kind(group)}: " + "  =  ".join(group))
        else:
            lines.append("Duplicates (identical files): none")
        warning = leak_warning(self.leaks)
        if warning:
            lines += ["", warning]
        if self.skipped:
            lines += ["", f"Not images, ignored ({len(self.skipped)}): " + ", ".join(self.skipped)]
        return "\n".join(lines)


def summarize(settings: Settings, root: str | Path | None = None) -> DatasetSummary:
    """Counts, sizes, pixel formats and duplicates of the dataset (every image is fully read).

    Unreadable images and images too small for the model are collected and reported together in one :class:`DataError`, so a
    user fixes them all in one go.
    """
    index = scan(settings, root)
    info = index.class_info
    counts: dict[str, dict[str, int]] = {}
    distinct: dict[str, int] = {}
    stats: dict[tuple[str, str], GroupStats] = {}
    by_hash: dict[str, list[str]] = defaultdict(list)
    problems: list[str] = []
    for role, split in zip(("train", "val", "test"), index.splits()):
        counts[role] = {}
        hashes = set()
        for path, label in zip(split.files, split.labels):
            name = info.name_of(label) if label is not None else "unlabelled"
            counts[role][name] = counts[role].get(name, 0) + 1
            group = stats.setdefault((role, name), GroupStats())
            try:
                width, height, mode = image_info(path)
                check_dimensions(width, height, path)
            except DataError as exc:
                problems.append(str(exc))
                continue
            group.count += 1
            group.sizes[(width, height)] += 1
            group.modes[mode] += 1
            digest = file_hash(path)
            hashes.add(digest)
            by_hash[digest].append(path.relative_to(index.root).as_posix())
        distinct[role] = len(hashes)
    if problems:
        raise DataError(f"{len(problems)} image(s) in {index.root} cannot be read:\n  " + "\n  ".join(problems))
    duplicates = sorted(sorted(paths) for paths in by_hash.values() if len(paths) > 1)
    split_names = {"train": index.train.name, "val": index.val.name, "test": index.test.name}
    return DatasetSummary(index.root, info, split_names, counts, distinct, stats, duplicates,
                          [p.relative_to(index.root).as_posix() for p in index.skipped], index.leaks)


__all__ = ["ClassInfo", "DatasetIndex", "DatasetSummary", "SPLITS", "SplitFiles", "identical_files", "images_under",
           "leak_warning", "scan", "summarize"]
