"""The one atomic writer and the staged folder (hello_dl.runs)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from hello_dl import runs
from hello_dl.errors import HelloDLError


def test_write_atomic_writes_text_bytes_and_json_and_leaves_no_temporary(tmp_path):
    runs.write_atomic(tmp_path / "a.txt", "héllo\n")
    runs.write_atomic(tmp_path / "b.bin", b"\x00\x01")
    runs.write_json(tmp_path / "c.json", {"x": np.float32(0.5), "n": np.int64(3), "arr": np.arange(2)})
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "héllo\n"
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert json.loads((tmp_path / "c.json").read_text()) == {"x": 0.5, "n": 3, "arr": [0, 1]}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.bin", "c.json"]


def test_new_files_get_the_users_usual_mode_not_a_private_one(tmp_path):
    old = os.umask(0o022)
    try:
        path = runs.write_atomic(tmp_path / "shared.txt", "x")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_exclusive_never_replaces_an_existing_file(tmp_path):
    target = tmp_path / "keep.txt"
    target.write_text("original")
    with pytest.raises(FileExistsError):
        runs.write_atomic(target, "new", exclusive=True)
    assert target.read_text() == "original"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into read-only folders")
def test_a_read_only_folder_gives_a_plain_message(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(HelloDLError, match="cannot be written to") as caught:
            runs.write_atomic(folder / "x.json", {})
        assert str(folder) in str(caught.value)
    finally:
        folder.chmod(0o700)


def test_staging_folder_is_removed_whatever_happens_and_publish_is_all_or_nothing(tmp_path):
    destination = tmp_path / "result"
    with runs.staging_folder(destination) as staging:
        (staging / "part").mkdir()
        (staging / "part" / "f.txt").write_text("done")
        runs.publish_folder(staging / "part", destination)
    assert (destination / "f.txt").read_text() == "done"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result"]

    with pytest.raises(RuntimeError):
        with runs.staging_folder(tmp_path / "other") as staging:
            (staging / "half.txt").write_text("half")
            raise RuntimeError("interrupted")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result"]

    with runs.staging_folder(destination) as staging:
        with pytest.raises(FileExistsError):
            runs.publish_folder(staging, destination)
    assert (destination / "f.txt").read_text() == "done"


def test_staging_folder_blames_itself_only_for_failures_inside_it(tmp_path):
    import errno

    with pytest.raises(runs.StorageError, match="No space left"):
        with runs.staging_folder(tmp_path / "out") as staging:
            raise OSError(errno.ENOSPC, "No space left on device", str(staging / "big.bin"))
    with pytest.raises(PermissionError) as caught:
        with runs.staging_folder(tmp_path / "out") as staging:
            raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "source.png"))
    assert caught.value.filename == str(tmp_path / "source.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == []
