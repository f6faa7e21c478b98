"""filetypes: what counts as an image, a DICOM file or clutter; file checksums equal to sha256sum's."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from hello_dl import filetypes
from hello_dl.filetypes import file_hash, has_dicom_signature, is_dicom_file, is_image_file, is_junk


def png(path):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path)
    return path


def test_clutter_hidden_files_and_mac_folders_are_never_images(tmp_path):
    (tmp_path / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (tmp_path / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (tmp_path / "desktop.ini").write_text("[.ShellClassInfo]")
    png(tmp_path / ".hidden.png")
    png(tmp_path / "._resource_fork.png")
    (tmp_path / "__MACOSX").mkdir()
    png(tmp_path / "__MACOSX" / "a.png")
    (tmp_path / ".ipynb_checkpoints").mkdir()
    png(tmp_path / ".ipynb_checkpoints" / "b.png")
    (tmp_path / "readme.txt").write_text("hi")
    (tmp_path / "noextension").write_text("hi")
    (tmp_path / "folder.png").mkdir()  # a folder is never an image, whatever its name
    good = png(tmp_path / "a.PNG")
    assert sorted(p.name for p in tmp_path.rglob("*") if is_image_file(p)) == [good.name]
    assert is_junk("TRAIN/__MACOSX/x.png") and is_junk("Thumbs.db") and not is_junk("TRAIN/chest/x.png")


def test_dicom_is_found_by_extension_or_by_signature(tmp_path, dicom_file):
    pixels = np.zeros((8, 8), np.uint8)
    named = dicom_file(tmp_path / "film.DCM", pixels)
    bare = dicom_file(tmp_path / "IM000001", pixels)
    uid_named = dicom_file(tmp_path / "1.2.840.113619.2.55.3.320", pixels)  # PACS exports name files by UID
    for path in (named, bare, uid_named):
        assert is_dicom_file(path) and is_image_file(path) and has_dicom_signature(path)
    text = tmp_path / "1.2.3.txt"
    text.write_text("x" * 200)
    assert not is_dicom_file(text) and not is_image_file(text)
    disguised = tmp_path / "really a dicom.png"  # a PNG name means PNG, and load_image says if it is not
    shutil.copyfile(bare, disguised)
    assert not is_dicom_file(disguised) and is_image_file(disguised)
    assert not has_dicom_signature(tmp_path / "missing")


def test_suffix_sets_agree():
    assert filetypes.IMAGE_SUFFIXES == filetypes.PIL_SUFFIXES | filetypes.DICOM_SUFFIXES
    assert not filetypes.PIL_SUFFIXES & filetypes.DICOM_SUFFIXES


@pytest.mark.parametrize("algorithm, tool", [("sha256", "sha256sum"), ("md5", "md5sum")])
def test_file_hash_equals_the_command_line_tools(tmp_path, algorithm, tool):
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed here")
    path = tmp_path / "data with spaces.bin"
    path.write_bytes(np.random.default_rng(1).bytes(3 * 1024 * 1024 + 17))  # several blocks, odd end
    printed = subprocess.run([tool, str(path)], capture_output=True, text=True, check=True).stdout
    assert file_hash(path, algorithm) == printed.split()[0]
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert file_hash(empty) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
