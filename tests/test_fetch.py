"""fetch: local folder, local zip and a real HTTP download from 127.0.0.1; checksums; zip-slip; offline."""

from __future__ import annotations

import hashlib
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import TOP, QuietHandler, build_zip, unsafe_zip
from hello_dl import fetch
from hello_dl.errors import ChecksumError, DataError, OfflineError
from hello_dl.settings import load_settings


def settings_for(source, data_dir):
    return load_settings("smoke", environ={}, data_source=str(source), data_dir=str(data_dir))


def leftovers(folder: Path) -> list[str]:
    """Temporary build folders or partial files a fetch may have left behind."""
    return [p.name for p in folder.iterdir() if ".partial" in p.name]


@pytest.fixture(scope="module")
def dataset_zip(shared_dataset, tmp_path_factory) -> Path:
    return build_zip(shared_dataset, tmp_path_factory.mktemp("archive") / f"{TOP}.zip")


@pytest.fixture
def editable_copy(shared_dataset, tmp_path) -> Path:
    """A private copy of the shared dataset that a test may damage."""
    copy = tmp_path / "copy"
    shutil.copytree(shared_dataset, copy)
    return copy


class _TruncatingHandler(QuietHandler):
    """Promises more bytes than it sends, like a connection that drops mid-download."""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/zip")
        self.send_header("Content-Length", "5000000")
        self.end_headers()
        self.wfile.write(b"PK\x03\x04" + b"\x00" * 1000)


class _StallingHandler(QuietHandler):
    """Announces a file, sends a few bytes, then goes silent (for at most 5 s), like a dead connection."""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "5000000")
        self.end_headers()
        self.wfile.write(b"PK\x03\x04")
        self.wfile.flush()
        time.sleep(5)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- the manifest ----------------------------------------------------------------------------------
def test_manifest_lists_the_77_files_and_the_shared_copy_verifies(shared_dataset):
    manifest = fetch.read_manifest()
    assert len(manifest) == 77
    assert sum(name.startswith("TRAIN/") for name in manifest) == 65
    assert sum(name.startswith("VAL/") for name in manifest) == 10
    assert fetch.verify_dataset(shared_dataset) == []


# --- local folder ---------------------------------------------------------------------------------------
def test_fetch_from_a_folder_copies_verifies_and_is_idempotent(shared_dataset, tmp_path, untouched):
    untouched(shared_dataset)
    data_dir = tmp_path / "data" / "open_i"
    result = fetch.fetch_data(settings_for(shared_dataset, data_dir))
    assert result == data_dir
    assert fetch.verify_dataset(data_dir) == []
    assert not (data_dir / "README.md").exists()  # only the image folders are taken
    inode = (data_dir / "TEST" / "abd2.png").stat().st_ino
    assert fetch.fetch_data(settings_for(shared_dataset, data_dir)) == data_dir  # reused, not copied again
    assert (data_dir / "TEST" / "abd2.png").stat().st_ino == inode
    assert leftovers(data_dir.parent) == []


def test_existing_damaged_data_folder_is_refused_and_left_alone(shared_dataset, tmp_path):
    data_dir = fetch.fetch_data(settings_for(shared_dataset, tmp_path / "d"))
    damaged = data_dir / "VAL" / "openI_CXR" / "8_IM-2333-1001.png"
    damaged.write_bytes(damaged.read_bytes()[:-10])
    with pytest.raises(ChecksumError) as caught:
        fetch.fetch_data(settings_for(shared_dataset, data_dir))
    message = str(caught.value)
    assert "VAL/openI_CXR/8_IM-2333-1001.png" in message and "left untouched" in message
    assert damaged.exists() and len(damaged.read_bytes()) > 0


def test_empty_data_folder_is_filled(shared_dataset, tmp_path):
    data_dir = tmp_path / "empty"
    data_dir.mkdir()
    assert fetch.fetch_data(settings_for(shared_dataset, data_dir)) == data_dir
    assert fetch.verify_dataset(data_dir) == []


def test_checksum_mismatch_names_the_file_and_installs_nothing(editable_copy, tmp_path):
    changed = editable_copy / "TRAIN" / "openI_abd_xray" / "openI_9.png"
    changed.write_bytes(changed.read_bytes() + b"\x00")
    data_dir = tmp_path / "data" / "open_i"
    with pytest.raises(ChecksumError) as caught:
        fetch.fetch_data(settings_for(editable_copy, data_dir))
    assert "content differs from the manifest: TRAIN/openI_abd_xray/openI_9.png" in str(caught.value)
    assert not data_dir.exists() and leftovers(data_dir.parent) == []


def test_missing_and_unexpected_files_are_named(editable_copy, tmp_path):
    (editable_copy / "VAL" / "openI_CXR" / "11_IM-0067-1001.png").unlink()
    shutil.copy(editable_copy / "TEST" / "abd2.png", editable_copy / "TRAIN" / "openI_CXR" / "sneaky.png")
    problems = fetch.verify_dataset(editable_copy)
    assert problems == ["missing: VAL/openI_CXR/11_IM-0067-1001.png", "not in the manifest: TRAIN/openI_CXR/sneaky.png"]


def test_optional_web_test_images_are_checked_only_when_present(editable_copy, monkeypatch):
    name = "TEST/Chest_X-ray_of_sarcoidosis_nodules.png"
    assert fetch.OPTIONAL_TEST_IMAGES_MD5[name] == "0dc0f0f20c9b8347e9e336c4dc38e106"  # from the shared README
    web_image = editable_copy / name
    web_image.write_bytes(b"not the original web image")
    assert fetch.verify_dataset(editable_copy) == [f"content differs from the original archive: {name}"]
    # With the md5 that file really has, it is accepted (the table holds the originals' md5s).
    monkeypatch.setitem(fetch.OPTIONAL_TEST_IMAGES_MD5, name, hashlib.md5(web_image.read_bytes()).hexdigest())
    assert fetch.verify_dataset(editable_copy) == []


# --- local zip -------------------------------------------------------------------------------------------
def test_fetch_from_a_zip_with_a_top_folder_and_mac_clutter(dataset_zip, tmp_path, untouched):
    untouched(dataset_zip.parent)
    data_dir = tmp_path / "data" / "open_i"
    assert fetch.fetch_data(settings_for(dataset_zip, data_dir)) == data_dir
    assert fetch.verify_dataset(data_dir) == []
    assert not (data_dir / ".DS_Store").exists() and not (data_dir.parent / "__MACOSX").exists()
    assert leftovers(data_dir.parent) == []


@pytest.mark.parametrize("entry, reason", [
    ("../escaped.png", "outside the folder"),
    (f"{TOP}/TRAIN/../../../escaped.png", "outside the folder"),
    ("/tmp/escaped_absolute.png", "absolute path"),
    ("link", "symbolic link"),
])
def test_zip_slip_archives_are_refused_before_anything_is_written(tmp_path, entry, reason):
    archive_path = unsafe_zip(tmp_path / "evil.zip", entry)
    data_dir = tmp_path / "work" / "data"
    with pytest.raises(DataError) as caught:
        fetch.fetch_data(settings_for(archive_path, data_dir))
    message = str(caught.value)
    assert "unsafe" in message and reason in message and "Nothing was extracted" in message
    assert not data_dir.exists() and leftovers(data_dir.parent) == []
    assert not list(tmp_path.rglob("escaped*")) and not Path("/tmp/escaped_absolute.png").exists()


def test_source_that_is_neither_folder_nor_zip(tmp_path):
    bogus = tmp_path / "images.tar"
    bogus.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="neither a folder nor a zip"):
        fetch.fetch_data(settings_for(bogus, tmp_path / "d"))


def test_missing_local_source_explains_the_manual_route(tmp_path):
    with pytest.raises(DataError) as caught:
        fetch.fetch_data(settings_for(tmp_path / "no such.zip", tmp_path / "d"))
    assert "does not exist" in str(caught.value) and "hello-dl fetch --source" in str(caught.value)


def test_folder_without_train_and_val(tmp_path):
    (tmp_path / "src" / "images").mkdir(parents=True)
    with pytest.raises(DataError, match="No TRAIN/ and VAL/ folders"):
        fetch.fetch_data(settings_for(tmp_path / "src", tmp_path / "d"))


# --- download over HTTP from 127.0.0.1 ---------------------------------------------------------------
def test_real_download_verify_and_extract_over_http(dataset_zip, tmp_path, http_server, capsys):
    base = http_server(dataset_zip.parent)
    data_dir = tmp_path / "data" / "open_i"
    result = fetch.fetch_data(settings_for(f"{base}/{dataset_zip.name}", data_dir))
    assert result == data_dir and fetch.verify_dataset(data_dir) == []
    assert "Downloading" in capsys.readouterr().err  # the tqdm progress bar
    assert leftovers(data_dir.parent) == []


def test_http_error_gives_the_manual_route(tmp_path, http_server):
    base = http_server(tmp_path)
    data_dir = tmp_path / "data"
    with pytest.raises(OfflineError) as caught:
        fetch.fetch_data(settings_for(f"{base}/missing.zip", data_dir))
    message = str(caught.value)
    assert "404" in message and "hello-dl fetch --source" in message
    assert not data_dir.exists() and leftovers(tmp_path) == []


def test_broken_off_download_leaves_nothing_behind(tmp_path, http_server):
    base = http_server(tmp_path, handler=_TruncatingHandler)
    data_dir = tmp_path / "data"
    with pytest.raises(OfflineError) as caught:
        fetch.fetch_data(settings_for(f"{base}/{TOP}.zip", data_dir))
    assert "stopped after" in str(caught.value) or "Could not download" in str(caught.value)
    assert not data_dir.exists() and leftovers(tmp_path) == []


def test_no_network_gives_exact_manual_instructions(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/{TOP}.zip"
    data_dir = tmp_path / "data" / "open_i"
    with pytest.raises(OfflineError) as caught:
        fetch.fetch_data(settings_for(url, data_dir))
    message = str(caught.value)
    assert f"Could not download {url}" in message
    assert f"hello-dl fetch --source /path/to/{TOP}.zip" in message
    assert "HELLO_DL_DATA_SOURCE" in message and str(data_dir) in message
    assert not data_dir.exists()


def test_a_stalled_server_times_out_instead_of_hanging(tmp_path, http_server):
    base = http_server(tmp_path, handler=_StallingHandler)
    target = tmp_path / "archive.zip"
    started = time.monotonic()
    with pytest.raises(OfflineError, match="timed out"):
        fetch.download(f"{base}/{TOP}.zip", target, progress=False, timeout=0.5)
    assert time.monotonic() - started < 4 and not target.exists()


def test_a_full_disk_is_not_reported_as_a_network_problem(dataset_zip, tmp_path, http_server):
    """The download runs in a child process whose file size limit (RLIMIT_FSIZE) makes writes fail mid-way."""
    url = f"{http_server(dataset_zip.parent)}/{dataset_zip.name}"
    target = tmp_path / "archive.zip"
    child = textwrap.dedent(f"""
        import resource, signal, sys
        from pathlib import Path
        from hello_dl import fetch
        from hello_dl.errors import HelloDLError, OfflineError
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write beyond the limit then fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
        try:
            fetch.download({url!r}, Path({str(target)!r}), progress=False)
        except OfflineError as exc:
            sys.exit(f"reported as a network problem: {{exc}}")
        except HelloDLError as exc:
            print(type(exc).__name__, exc)
    """)
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("StorageError") and str(target) in done.stdout
    assert not target.exists()


def test_a_fetch_that_finds_the_folder_made_meanwhile_keeps_it(shared_dataset, tmp_path, monkeypatch):
    """Two fetches at once (e.g. two notebooks): the second to finish keeps the first one's verified folder."""
    data_dir = tmp_path / "data" / "open_i"
    real_publish = fetch.publish_folder

    def publish_after_the_other(ready, destination):
        shutil.copytree(ready, destination)  # the other fetch finished first
        return real_publish(ready, destination)

    monkeypatch.setattr(fetch, "publish_folder", publish_after_the_other)
    assert fetch.fetch_data(settings_for(shared_dataset, data_dir)) == data_dir
    assert fetch.verify_dataset(data_dir) == [] and leftovers(data_dir.parent) == []
