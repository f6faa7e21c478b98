"""split.split_folder on folders the tests write (and on the shared TRAIN folder): seeded, stratified, safe."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import tree_hashes
from hello_dl import dataset
from hello_dl.errors import DataError
from hello_dl.settings import load_settings
from hello_dl.split import PLAN_FILE, split_folder


def settings(**overrides):
    return load_settings("smoke", environ={}, **overrides)


def write_png(path: Path, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (80, 80, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture
def source(tmp_path) -> Path:
    """chest/ with 10 images (one pair identical, one in a sub-folder), abdomen/ with 8, plus clutter."""
    root = tmp_path / "my images"
    for i in range(9):
        write_png(root / "chest" / f"chest {i} (PA).png", i)
    shutil.copyfile(root / "chest" / "chest 3 (PA).png", root / "chest" / "chest 3 (PA) copy.png")
    for i in range(7):
        write_png(root / "abdomen" / f"abd_{i}.png", 100 + i)
    write_png(root / "abdomen" / "old" / "abd_old.png", 200)
    (root / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (root / "chest" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (root / "abdomen" / "notes.txt").write_text("from the PACS")
    return root


def split_of(destination: Path) -> dict[str, str]:
    """target path → split, from the split's own record."""
    return {entry["source"]: entry["path"].split("/", 1)[0]
            for entry in json.loads((destination / PLAN_FILE).read_text())["files"]}


def test_split_is_stratified_complete_and_leaves_sources_alone(source, tmp_path, untouched):
    untouched(source)
    destination = tmp_path / "split"
    result = split_folder(source, destination, settings(val_fraction=0.25))
    assert result.classes == ["abdomen", "chest"]
    placed = split_of(destination)
    # 8 distinct abdomen images, 9 distinct chest images (one file is a copy): 25 % of each to VAL
    assert result.counts["TRAIN"]["abdomen"] == 6 and result.counts["VAL"]["abdomen"] == 2
    pair_split = placed["chest/chest 3 (PA).png"]
    assert result.counts["VAL"]["chest"] == 2 + (pair_split == "VAL")
    assert result.counts["TRAIN"]["chest"] == 7 + (pair_split == "TRAIN")
    assert len(placed) == 18  # every image, nothing else
    assert placed["chest/chest 3 (PA).png"] == placed["chest/chest 3 (PA) copy.png"]  # duplicates together
    assert result.duplicates == [["chest/chest 3 (PA) copy.png", "chest/chest 3 (PA).png"]]
    assert (destination / placed["abdomen/old/abd_old.png"] / "abdomen" / "old" / "abd_old.png").is_file()
    assert result.skipped == ["abdomen/notes.txt"]
    for name, split in placed.items():
        assert (destination / split / name).read_bytes() == (source / name).read_bytes()
    text = result.format()
    assert "class_folders=abdomen,chest" in text and "source files were only read" in text
    # The result is a dataset the rest of the kit can scan.
    index = dataset.scan(settings(data_dir=str(destination), class_folders="chest,abdomen",
                                  class_names="chest,abdomen"))
    assert (len(index.train), len(index.val)) == (sum(result.counts["TRAIN"].values()), sum(result.counts["VAL"].values()))
    assert len(index.train) + len(index.val) == 18


def test_same_seed_same_split_byte_for_byte(source, tmp_path):
    first = split_folder(source, tmp_path / "a", settings(val_fraction=0.2, test_fraction=0.2))
    second = split_folder(source, tmp_path / "b", settings(val_fraction=0.2, test_fraction=0.2))
    assert tree_hashes(tmp_path / "a") == tree_hashes(tmp_path / "b")
    assert first.counts == second.counts and "TEST" in first.counts
    other = split_folder(source, tmp_path / "c", settings(val_fraction=0.2, test_fraction=0.2, seed=7))
    assert split_of(tmp_path / "c") != split_of(tmp_path / "a")
    assert sum(map(sum, (c.values() for c in other.counts.values()))) == 18


def test_test_split_keeps_class_folders_so_labels_are_known(source, tmp_path):
    destination = tmp_path / "split"
    split_folder(source, destination, settings(val_fraction=0.2, test_fraction=0.2))
    index = dataset.scan(settings(data_dir=str(destination), class_folders="chest,abdomen",
                                  class_names="chest,abdomen"))
    assert index.test.labelled and set(index.test.labels) == {0, 1}


def test_rerun_into_the_same_folder_verifies_and_changes_nothing(source, tmp_path, untouched):
    destination = tmp_path / "split"
    split_folder(source, destination, settings())
    untouched(destination)
    again = split_folder(source, destination, settings())
    assert again.already_existed and "nothing was changed" in again.format()


def test_rerun_with_another_seed_is_refused_without_mixing(source, tmp_path, untouched):
    destination = tmp_path / "split"
    split_folder(source, destination, settings())
    untouched(destination)
    with pytest.raises(DataError) as caught:
        split_folder(source, destination, settings(seed=1))
    message = str(caught.value)
    assert "already exists and holds a different split" in message and "Nothing was changed" in message


def test_existing_folder_with_other_files_is_refused(source, tmp_path):
    destination = tmp_path / "split"
    write_png(destination / "TRAIN" / "chest" / "mine.png", 999)
    with pytest.raises(DataError, match="not part of this split: TRAIN/chest/mine.png"):
        split_folder(source, destination, settings())
    assert (destination / "TRAIN" / "chest" / "mine.png").is_file()


def test_hard_links_share_the_source_bytes(source, tmp_path, untouched):
    untouched(source)
    destination = tmp_path / "linked"
    result = split_folder(source, destination, settings(), link=True)
    assert result.linked and "hard-linked" in result.format()
    name, split = next(iter(split_of(destination).items()))
    assert (destination / split / name).stat().st_ino == (source / name).stat().st_ino


def test_same_image_in_two_classes_is_refused(source, tmp_path):
    shutil.copyfile(source / "chest" / "chest 0 (PA).png", source / "abdomen" / "mislabelled.png")
    with pytest.raises(DataError) as caught:
        split_folder(source, tmp_path / "split", settings())
    message = str(caught.value)
    assert "more than one class" in message and "mislabelled.png" in message and "chest 0 (PA).png" in message
    assert not (tmp_path / "split").exists()


def test_empty_class_folder_is_named(source, tmp_path):
    (source / "knee").mkdir()
    (source / "knee" / ".DS_Store").write_bytes(b"junk")
    with pytest.raises(DataError, match="knee holds no images"):
        split_folder(source, tmp_path / "split", settings())


def test_loose_image_and_single_class_and_overlap_are_refused(source, tmp_path):
    write_png(source / "loose.png", 5)
    with pytest.raises(DataError, match="outside any class folder"):
        split_folder(source, tmp_path / "split", settings())
    (source / "loose.png").unlink()
    with pytest.raises(DataError, match="outside the source folder"):
        split_folder(source, source / "split", settings())
    with pytest.raises(DataError, match="at least two"):
        split_folder(_only_one_class(tmp_path), tmp_path / "split", settings())


def _only_one_class(tmp_path: Path) -> Path:
    root = tmp_path / "one class"
    write_png(root / "chest" / "a.png", 1)
    return root


def test_too_few_images_for_the_splits(tmp_path):
    root = tmp_path / "tiny"
    write_png(root / "chest" / "a.png", 1)
    write_png(root / "chest" / "b.png", 2)
    write_png(root / "abdomen" / "c.png", 3)
    write_png(root / "abdomen" / "d.png", 4)
    with pytest.raises(DataError, match="'abdomen' has only 2 distinct image"):
        split_folder(root, tmp_path / "split", settings(test_fraction=0.2))
    assert split_folder(root, tmp_path / "split", settings()).counts["VAL"] == {"abdomen": 1, "chest": 1}


def test_already_split_folder_is_refused(shared_dataset, tmp_path):
    with pytest.raises(DataError, match="already looks split"):
        split_folder(shared_dataset, tmp_path / "split", settings())


def test_splitting_the_shared_training_images(shared_dataset, tmp_path, untouched):
    untouched(shared_dataset)
    result = split_folder(shared_dataset / "TRAIN", tmp_path / "resplit", settings(val_fraction=0.2))
    assert result.counts == {"TRAIN": {"openI_CXR": 26, "openI_abd_xray": 26},
                             "VAL": {"openI_CXR": 7, "openI_abd_xray": 6}}
    assert f"set data_dir={tmp_path / 'resplit'}." in result.format()


def _temporaries(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if ".partial" in p.name]


def test_a_copy_that_differs_from_its_source_is_never_installed(source, tmp_path, monkeypatch):
    from hello_dl import split

    real_place = split._place

    def place_then_damage(src, target, link):
        linked = real_place(src, target, link)
        if target.name == "abd_3.png":  # as if the source changed while it was being copied
            target.write_bytes(target.read_bytes() + b"\x00")
        return linked

    monkeypatch.setattr(split, "_place", place_then_damage)
    with pytest.raises(DataError, match="does not match the sources"):
        split_folder(source, tmp_path / "split", settings())
    assert not (tmp_path / "split").exists() and _temporaries(tmp_path) == []


def test_a_published_split_is_readable_like_any_new_folder(source, tmp_path):
    import os

    umask = os.umask(0o022)
    try:
        destination = tmp_path / "split"
        split_folder(source, destination, settings())
    finally:
        os.umask(umask)
    assert destination.stat().st_mode & 0o777 == 0o755  # not the 0700 of a private temporary folder
    assert (destination / PLAN_FILE).stat().st_mode & 0o777 == 0o644
    assert _temporaries(tmp_path) == []
