"""dataset.scan and dataset.summarize: the shared copy and layouts the tests build (good and bad)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hello_dl import dataset
from hello_dl.errors import DataError
from hello_dl.settings import load_settings

CHEST, ABDOMEN = "openI_CXR", "openI_abd_xray"


def settings_for(root: Path, **overrides):
    return load_settings("smoke", environ={}, data_dir=str(root), **overrides)


def write_png(path: Path, value: int = 100, size=(80, 90), mode="RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    array = np.full((height, width, 3), value, np.uint8)
    array[: height // 2, : width // 3] = 255 - value  # make pictures differ by value
    Image.fromarray(array).convert(mode).save(path)
    return path


def make_layout(root: Path, counts: dict[str, int], start: int = 0) -> Path:
    """``{"TRAIN/openI_CXR": 3, ...}`` → that many distinct PNGs in each folder."""
    value = start
    for folder, count in counts.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            value += 3
            write_png(root / folder / f"img_{i}.png", value % 250)
    return root


STANDARD = {f"TRAIN/{CHEST}": 3, f"TRAIN/{ABDOMEN}": 2, f"VAL/{CHEST}": 1, f"VAL/{ABDOMEN}": 1, "TEST": 2}


# --- the shared dataset ----------------------------------------------------------------------------------
def test_scan_of_the_shared_copy(shared_dataset):
    index = dataset.scan(settings_for(shared_dataset))
    assert (len(index.train), len(index.val), len(index.test)) == (65, 10, 2)
    for split in (index.train, index.val):
        for path, label in zip(split.files, split.labels):
            assert label == {CHEST: 0, ABDOMEN: 1}[path.parent.name]
    assert index.train.count_per_label() == {0: 33, 1: 32}
    assert index.val.count_per_label() == {0: 5, 1: 5}
    assert index.test.labels == [None, None] and not index.test.labelled
    assert [p.name for p in index.test.files] == ["abd2.png", "chest2.png"]
    assert index.class_info.describe() == f"0 → {CHEST} → chest\n1 → {ABDOMEN} → abdomen"
    assert index.skipped == []
    assert index.split("val") is index.val and index.split("TEST") is index.test


def test_summary_of_the_shared_copy(shared_dataset, untouched):
    untouched(shared_dataset)
    summary = dataset.summarize(settings_for(shared_dataset))
    text = summary.format()
    assert "65 train / 10 val (9 distinct) / 2 test" in text
    assert f"0 → {CHEST} → chest" in text and f"1 → {ABDOMEN} → abdomen" in text
    duplicate = ["VAL/openI_abd_xray/PMC2584007_1752-1947-2-335-2 (1).png",
                 "VAL/openI_abd_xray/PMC2584007_1752-1947-2-335-2.png"]
    assert summary.duplicates == [duplicate]
    assert "within VAL: " + "  =  ".join(duplicate) in text
    assert summary.counts == {"train": {"chest": 33, "abdomen": 32}, "val": {"chest": 5, "abdomen": 5},
                              "test": {"unlabelled": 2}}
    assert summary.distinct == {"train": 65, "val": 9, "test": 2}
    assert summary.stats[("train", "chest")].sizes == {(512, 512): 33}
    assert summary.stats[("train", "abdomen")].size_text() == "32 sizes, widths 157-512, heights 179-623"
    assert all(group.modes == {"RGB": group.count} for group in summary.stats.values())
    assert summary.as_dict()["class_mapping"]["1"] == {"folder": ABDOMEN, "name": "abdomen"}


# --- layouts the tests build -----------------------------------------------------------------------------
def test_explicit_class_order_decides_the_labels(tmp_path):
    root = make_layout(tmp_path / "data", STANDARD)
    normal = dataset.scan(settings_for(root))
    flipped = dataset.scan(settings_for(root, class_folders=f"{ABDOMEN},{CHEST}", class_names="abdomen,chest"))
    assert normal.train.count_per_label() == {0: 3, 1: 2}
    assert flipped.train.count_per_label() == {0: 2, 1: 3}
    assert flipped.class_info.describe().splitlines()[0] == f"0 → {ABDOMEN} → abdomen"


def test_missing_split_says_what_to_do(tmp_path):
    root = make_layout(tmp_path / "data", {f"TRAIN/{CHEST}": 1, f"TRAIN/{ABDOMEN}": 1})
    with pytest.raises(DataError) as caught:
        dataset.scan(settings_for(root))
    message = str(caught.value)
    assert str(root / "VAL") in message and "hello-dl split" in message


def test_lowercase_split_folder_gets_a_hint(tmp_path):
    root = make_layout(tmp_path / "data", {f"TRAIN/{CHEST}": 1, f"TRAIN/{ABDOMEN}": 1,
                                          f"val/{CHEST}": 1, f"val/{ABDOMEN}": 1})
    with pytest.raises(DataError, match="rename it to 'VAL'"):
        dataset.scan(settings_for(root))
    assert len(dataset.scan(settings_for(root, val_folder="val")).val) == 2


def test_missing_data_folder(tmp_path):
    with pytest.raises(DataError, match="hello-dl fetch"):
        dataset.scan(settings_for(tmp_path / "nothing here"))


def test_empty_class_folder_is_named(tmp_path):
    root = make_layout(tmp_path / "data", {**STANDARD, f"VAL/{ABDOMEN}": 0})
    (root / "VAL" / ABDOMEN / ".DS_Store").write_bytes(b"junk")  # clutter does not count as an image
    with pytest.raises(DataError) as caught:
        dataset.scan(settings_for(root))
    assert str(root / "VAL" / ABDOMEN) in str(caught.value) and "no images" in str(caught.value)


def test_missing_class_folder_is_named(tmp_path):
    root = make_layout(tmp_path / "data", {f"TRAIN/{CHEST}": 1, f"TRAIN/{ABDOMEN}": 1, f"VAL/{CHEST}": 1})
    with pytest.raises(DataError, match=f"{ABDOMEN} is missing"):
        dataset.scan(settings_for(root))


def test_unexpected_extra_class_folder_is_named(tmp_path):
    root = make_layout(tmp_path / "data", {**STANDARD, "TRAIN/openI_knee": 2})
    with pytest.raises(DataError) as caught:
        dataset.scan(settings_for(root))
    message = str(caught.value)
    assert str(root / "TRAIN" / "openI_knee") in message and "Move it out" in message


def test_image_outside_any_class_folder(tmp_path):
    root = make_layout(tmp_path / "data", STANDARD)
    stray = write_png(root / "TRAIN" / "stray.png")
    with pytest.raises(DataError) as caught:
        dataset.scan(settings_for(root))
    assert str(stray) in str(caught.value)


def test_clutter_is_ignored_and_other_files_are_listed(tmp_path):
    root = make_layout(tmp_path / "data", STANDARD)
    for folder in (root / "TRAIN", root / "TRAIN" / CHEST, root / "TEST"):
        (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
        (folder / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    write_png(root / "TRAIN" / "__MACOSX" / CHEST / "._img_0.png")
    write_png(root / "TRAIN" / ".ipynb_checkpoints" / "x.png")
    write_png(root / "TRAIN" / CHEST / ".hidden.png")
    (root / "TRAIN" / CHEST / "notes.txt").write_text("from the PACS")
    index = dataset.scan(settings_for(root))
    assert (len(index.train), len(index.val), len(index.test)) == (5, 2, 2)
    assert [p.name for p in index.skipped] == ["notes.txt"]
    text = dataset.summarize(settings_for(root)).format()
    assert "Not images, ignored (1): TRAIN/openI_CXR/notes.txt" in text


def test_test_split_with_class_folders_has_labels(tmp_path):
    root = make_layout(tmp_path / "data", {**{k: v for k, v in STANDARD.items() if k != "TEST"},
                                          f"TEST/{CHEST}": 2, f"TEST/{ABDOMEN}": 1}, start=100)
    index = dataset.scan(settings_for(root))
    assert index.test.labels == [0, 0, 1] and index.test.labelled


def test_no_test_folder_is_fine(tmp_path):
    root = make_layout(tmp_path / "data", {k: v for k, v in STANDARD.items() if k != "TEST"})
    assert len(dataset.scan(settings_for(root)).test) == 0
    assert "0 test" in dataset.summarize(settings_for(root)).format()


def test_summary_reports_duplicates_across_splits_and_modes(tmp_path):
    root = make_layout(tmp_path / "data", STANDARD)
    (root / "VAL" / CHEST / "leak (copy).png").write_bytes((root / "TRAIN" / CHEST / "img_0.png").read_bytes())
    write_png(root / "TRAIN" / ABDOMEN / "gray.png", 30, mode="L")
    write_png(root / "TRAIN" / ABDOMEN / "palette.png", 60, mode="P")
    Image.fromarray(np.full((90, 100), 1200, np.uint16)).save(root / "TRAIN" / ABDOMEN / "deep.png")
    write_png(root / "TRAIN" / ABDOMEN / "cmyk.jpg", 80, mode="CMYK")
    summary = dataset.summarize(settings_for(root))
    assert summary.duplicates == [["TRAIN/openI_CXR/img_0.png", "VAL/openI_CXR/leak (copy).png"]]
    assert "across TRAIN and VAL" in summary.format()
    modes = summary.stats[("train", "abdomen")].modes
    assert modes["L"] == 1 and modes["P"] == 1 and modes["CMYK"] == 1 and modes["RGB"] == 2
    assert sum(n for mode, n in modes.items() if mode.startswith("I")) == 1
    assert summary.distinct["val"] == 3 and summary.total("val") == 3


def test_summary_names_every_unreadable_image(tmp_path, untouched):
    root = make_layout(tmp_path / "data", STANDARD)
    (root / "TRAIN" / CHEST / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnope")
    write_png(root / "VAL" / ABDOMEN / "tiny (1).png", size=(40, 40))
    untouched(root)
    with pytest.raises(DataError) as caught:
        dataset.summarize(settings_for(root))
    message = str(caught.value)
    assert "2 image(s)" in message
    assert str(root / "TRAIN" / CHEST / "broken.png") in message
    assert str(root / "VAL" / ABDOMEN / "tiny (1).png") in message
