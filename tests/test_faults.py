"""Bad inputs and faults, through the real ``hello-dl`` command (issue 11: nothing broken is ever called finished).

Every case runs the installed command (``.venv/bin/hello-dl``, a child process; a few run
``cli.main`` in this process where a module constant must be changed) and checks four things:

* the exit status (2 for anything the user can fix, 0 where the input is odd but fine),
* a message that names the file or setting and says what to do,
* no Python traceback anywhere in the output,
* every source file byte-identical afterwards (the ``untouched`` fixture hashes them).

Full and read-only disks are real: a small tmpfs, mounted for the test (``tmpfs`` fixture in
conftest; skipped, with the reason, where mounting is impossible). Downloads come from a web
server on 127.0.0.1. No case here trains a model.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import socket
import stat
import struct
import subprocess
import sys
import threading
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import PROJECT_ROOT, TOP, QuietHandler, build_zip, unsafe_zip, write_dicom
from hello_dl import cli, fetch

HELLO_DL = Path(sys.executable).with_name("hello-dl")
CHEST, ABDOMEN = "openI_CXR", "openI_abd_xray"
PYDICOM_SAMPLES = Path(__import__("pydicom").__file__).parent / "data" / "test_files"


# --- running the command --------------------------------------------------------------------------------
@dataclass
class Outcome:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


def command_line(*argv) -> list[str]:
    """The installed ``hello-dl`` (or ``python -m hello_dl.cli`` where it is not installed) with ``argv``."""
    command = [str(HELLO_DL)] if HELLO_DL.is_file() else [sys.executable, "-m", "hello_dl.cli"]
    return command + [str(arg) for arg in argv]


def clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment without HELLO_DL_* from the shell or proxies; unbuffered output."""
    environ = {key: value for key, value in os.environ.items()
               if not key.startswith("HELLO_DL_") and key.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    environ.update({"HELLO_DL_HOME": str(PROJECT_ROOT), "no_proxy": "127.0.0.1,localhost", "PYTHONUNBUFFERED": "1"})
    return {**environ, **extra}


def hello_dl(*argv, env: dict[str, str] | None = None, cwd: Path | None = None, umask: int | None = None,
             timeout: float = 180, preexec_fn=None) -> Outcome:
    """Run the real ``hello-dl`` in a child process with a clean environment (no HELLO_DL_* from the shell)."""
    if umask is not None:
        preexec_fn = lambda: os.umask(umask)  # noqa: E731
    done = subprocess.run(command_line(*argv), capture_output=True, text=True, timeout=timeout,
                          cwd=cwd or PROJECT_ROOT, env=clean_environment(**(env or {})), stdin=subprocess.DEVNULL,
                          preexec_fn=preexec_fn)
    return Outcome(done.returncode, done.stdout, done.stderr)


def hello_dl_here(capsys, *argv) -> Outcome:
    """``cli.main`` in this process (for the few cases that change a module constant first)."""
    capsys.readouterr()
    code = cli.main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return Outcome(code, captured.out, captured.err)


def refused(outcome: Outcome, *names, fix: str, code: int = 2) -> str:
    """The command stopped with a plain message: the exit code, every name and the fix in it, no traceback."""
    assert "Traceback" not in outcome.text, outcome.text
    assert outcome.code == code, outcome.text
    assert ("\n" + outcome.err).count("\nhello-dl: ") == 1, outcome.text  # one message (after any progress bar)
    for name in names:
        assert str(name) in outcome.err, f"{name!r} not named in: {outcome.err}"
    assert fix.lower() in outcome.err.lower(), f"fix {fix!r} not in: {outcome.err}"
    return outcome.err


def accepted(outcome: Outcome) -> str:
    assert "Traceback" not in outcome.text, outcome.text
    assert outcome.code == 0, outcome.text
    return outcome.out


# --- small real inputs ------------------------------------------------------------------------------------
def encoded(array: np.ndarray, fmt: str = "PNG", mode: str | None = None) -> bytes:
    image = Image.fromarray(array)
    if mode:
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def picture(size=(120, 100)) -> np.ndarray:
    """A grey ramp with a bright square (so two pictures of different sizes never share bytes)."""
    height, width = size
    ramp = np.tile(np.linspace(0, 255, width), (height, 1))
    ramp[10:30, 10:30] = 255
    return ramp.astype(np.uint8)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header announces ``width`` x ``height`` (a decompression bomb as it arrives by mail)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


@pytest.fixture
def small_dataset(shared_dataset, tmp_path) -> Path:
    """A private dataset in the paper's layout, made of a few of its real images (TRAIN 3+3, VAL 1+1, TEST 1)."""
    root = tmp_path / "data"
    for split, per_class in (("TRAIN", 3), ("VAL", 1)):
        for folder in (CHEST, ABDOMEN):
            (root / split / folder).mkdir(parents=True)
            for path in sorted((shared_dataset / split / folder).iterdir())[:per_class]:
                shutil.copyfile(path, root / split / folder / path.name)
    (root / "TEST").mkdir()
    shutil.copyfile(shared_dataset / "TEST" / "abd2.png", root / "TEST" / "abd2.png")
    return root


def first_image(root: Path, split: str = "TRAIN", folder: str = CHEST) -> Path:
    return sorted((root / split / folder).iterdir())[0]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def leftovers(folder: Path) -> list[str]:
    """Temporary files or folders (``.partial``) or lock files left in ``folder``."""
    return sorted(p.name for p in folder.iterdir() if ".partial" in p.name or p.name.endswith("-lock"))


# --- corrupt and odd images (hello-dl data-summary reads every image in full) ------------------------------
@pytest.fixture(scope="module")
def huge_png(tmp_path_factory) -> bytes:
    """A real 12000 x 12000 PNG (144 million pixels, 0.6 MB compressed): above Pillow's limit, not damaged."""
    buffer = io.BytesIO()
    Image.new("L", (12000, 12000), 0).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


BAD_IMAGES = {
    # file name: (bytes maker, what the message says, the fix it gives)
    "cut off.png": (lambda big: encoded(picture((300, 300)))[:400], "damaged or incomplete", "export the file again"),
    "cut off.jpg": (lambda big: encoded(picture((300, 300)), "JPEG")[:700], "damaged or incomplete",
                    "export the file again"),
    "empty.png": (lambda big: b"", "not an image Pillow can read", "move it out of the data folder"),
    "notes.png": (lambda big: b"Patient list, do not share\n", "not an image Pillow can read",
                  "move it out of the data folder"),
    "huge.png": (lambda big: big, "too large to load: 12000x12000 = 144 million pixels", "save a smaller copy"),
    "bomb.png": (lambda big: png_header_only(30000, 30000), "too large to load: 900 million pixels",
                 "save a smaller copy"),
    "tiny.png": (lambda big: encoded(picture((40, 40))), "only 40x40 pixels", "use a larger export"),
}


@pytest.mark.parametrize("name", list(BAD_IMAGES))
def test_a_bad_image_is_named_with_what_is_wrong(small_dataset, huge_png, untouched, name):
    make, problem, fix = BAD_IMAGES[name]
    bad = small_dataset / "TRAIN" / CHEST / name
    bad.write_bytes(make(huge_png))
    untouched(small_dataset)
    message = refused(hello_dl("data-summary", "--data-dir", small_dataset), bad, "1 image(s)", fix=fix)
    assert problem in message
    if name == "huge.png":
        assert "damaged" not in message and "89 million" in message  # the limit is said, not "damaged"


ODD_BUT_FINE = {
    "deep 16-bit.png": lambda: encoded(np.linspace(0, 4095, 100 * 120).reshape(100, 120).astype(np.uint16)),
    "print cmyk.jpg": lambda: encoded(picture(), "JPEG", mode="CMYK"),
    "palette.png": lambda: encoded(picture(), mode="P"),
    "really a png.jpg": lambda: encoded(picture()),
}


@pytest.mark.parametrize("name", list(ODD_BUT_FINE))
def test_odd_but_valid_images_are_read(small_dataset, untouched, name):
    (small_dataset / "TRAIN" / CHEST / name).write_bytes(ODD_BUT_FINE[name]())
    untouched(small_dataset)
    out = accepted(hello_dl("data-summary", "--data-dir", small_dataset))
    assert "Images: 7 train / 2 val / 1 test" in out


def test_clutter_is_ignored_and_other_files_are_listed(small_dataset, untouched):
    (small_dataset / "TRAIN" / CHEST / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (small_dataset / "TRAIN" / CHEST / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (small_dataset / "TRAIN" / ABDOMEN / "notes.txt").write_text("seen by Dr A\n")
    untouched(small_dataset)
    out = accepted(hello_dl("data-summary", "--data-dir", small_dataset))
    assert "Images: 6 train / 2 val / 1 test" in out
    assert f"Not images, ignored (1): TRAIN/{ABDOMEN}/notes.txt" in out and "DS_Store" not in out


def test_a_dicom_file_in_the_data_folder_counts_as_an_image(small_dataset, untouched):
    write_dicom(small_dataset / "TRAIN" / ABDOMEN / "IM0001", (picture() * 16).astype(np.uint16),
                photometric="MONOCHROME1", bits_stored=12)
    untouched(small_dataset)
    out = accepted(hello_dl("data-summary", "--data-dir", small_dataset))
    assert "Images: 7 train" in out and "DICOM MONOCHROME1 12-bit" in out


# --- DICOM variants (hello-dl dicom-to-png) ---------------------------------------------------------------
def _good_dicom_bytes(tmp_path: Path) -> bytes:
    return write_dicom(tmp_path / "model.dcm", (picture() * 16).astype(np.uint16), bits_stored=12).read_bytes()


def _report_dicom(path: Path) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"  # Basic Text SR: a report, no pixels
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    ds.Modality = "SR"
    ds.save_as(path, enforce_file_format=True)


BAD_DICOMS = {
    # file name: (writer(path, good_bytes), what the message says, the fix it gives)
    "garbage.dcm": (lambda path, good: path.write_bytes(b"\x00" * 128 + b"DICM" + b"not a data element " * 20),
                    "cannot be parsed as DICOM", "export it again"),
    "half.dcm": (lambda path, good: path.write_bytes(good[: len(good) // 2]), "damaged or incomplete image data",
                 "export it again"),
    "header only.dcm": (lambda path, good: path.write_bytes(good[:300]), "the image data is missing",
                        "export it again"),
    "report.dcm": (lambda path, good: _report_dicom(path), "a DICOM file without an image", "leave it out"),
    "letter.dcm": (lambda path, good: path.write_text("Dear colleague,\n" * 20), "is not a DICOM file",
                   "give it the right extension"),
    "MR_truncated.dcm": (lambda path, good: shutil.copyfile(PYDICOM_SAMPLES / "MR_truncated.dcm", path),
                         "damaged", "export it again"),
}


@pytest.mark.parametrize("name", list(BAD_DICOMS))
def test_a_bad_dicom_is_named_and_the_good_ones_are_still_converted(tmp_path, untouched, name):
    source = tmp_path / "dicoms"
    source.mkdir()
    good = _good_dicom_bytes(tmp_path)
    (source / "good.dcm").write_bytes(good)
    write, problem, fix = BAD_DICOMS[name]
    write(source / name, good)
    untouched(source)
    message = refused(hello_dl("dicom-to-png", source, tmp_path / "png"), source / name, fix=fix)
    assert problem in message and "1 PNG file(s) were written" in message
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == ["good.png"]


def test_a_compressed_dicom_without_its_decoder_says_what_to_install(tmp_path, untouched):
    from pydicom.pixels import get_decoder
    import pydicom

    sample = PYDICOM_SAMPLES / "MR_small_jpeg_ls_lossless.dcm"
    if not sample.is_file():
        pytest.skip(f"{sample.name} is not in this pydicom wheel")
    if get_decoder(pydicom.dcmread(sample).file_meta.TransferSyntaxUID).is_available:
        pytest.skip("a JPEG-LS decoder is installed here, so the missing-decoder message cannot be shown")
    source = tmp_path / "dicoms"
    source.mkdir()
    shutil.copyfile(sample, source / sample.name)
    untouched(source)
    message = refused(hello_dl("dicom-to-png", source, tmp_path / "png"), source / sample.name,
                      fix="pip install pylibjpeg pylibjpeg-libjpeg")
    assert "JPEG-LS" in message


def test_multi_frame_and_uid_named_dicoms_are_converted(tmp_path, untouched):
    source = tmp_path / "dicoms"
    (source / "series").mkdir(parents=True)
    shutil.copyfile(PYDICOM_SAMPLES / "SC_rgb_rle_2frame.dcm", source / "series" / "two frames.dcm")
    write_dicom(source / "1.2.840.5.11", (picture() * 16).astype(np.uint16), bits_stored=12)
    untouched(source)
    out = accepted(hello_dl("dicom-to-png", source, tmp_path / "png"))
    assert "3 PNG file(s)" in out
    assert sorted(p.relative_to(tmp_path / "png").as_posix() for p in (tmp_path / "png").rglob("*.png")) == [
        "1.2.840.5.11.png", "series/two frames_frame000.png", "series/two frames_frame001.png"]


def test_dicom_to_png_rerun_skips_what_is_there_and_overwrites_nothing(tmp_path, untouched):
    from hello_dl import dicom

    source = tmp_path / "dicoms"
    source.mkdir()
    for index in range(3):
        write_dicom(source / f"IM{index}.dcm", (picture((100 + index, 120)) * 16).astype(np.uint16), bits_stored=12)
    untouched(source)
    accepted(hello_dl("dicom-to-png", source, tmp_path / "png"))
    untouched(tmp_path / "png")
    rerun = accepted(hello_dl("dicom-to-png", source, tmp_path / "png"))  # nothing written, nothing changed
    assert "0 PNG file(s) were written" in rerun and "3 skipped because a PNG of that name was already there" in rerun
    again = dicom.convert_folder(source, tmp_path / "png")
    assert again == [] and len(again.skipped) == 3
    assert "0 PNG file(s) were written" in again.format(tmp_path / "png") and "3 skipped" in again.format("x")


def test_dicom_to_png_refuses_to_write_into_its_source_and_a_missing_folder(tmp_path, untouched):
    source = tmp_path / "dicoms"
    source.mkdir()
    write_dicom(source / "IM0.dcm", (picture() * 16).astype(np.uint16), bits_stored=12)
    untouched(source)
    refused(hello_dl("dicom-to-png", source, source), source, fix="different folder")
    refused(hello_dl("dicom-to-png", tmp_path / "nowhere", tmp_path / "png"), tmp_path / "nowhere",
            fix="Give the folder that holds the .dcm files")


# --- archives and downloads (hello-dl fetch) ------------------------------------------------------------------
@pytest.fixture(scope="module")
def dataset_zip(shared_dataset, tmp_path_factory) -> Path:
    return build_zip(shared_dataset, tmp_path_factory.mktemp("archive") / f"{TOP}.zip")


@pytest.mark.parametrize("entry, reason", [("../escaped.png", "outside the folder ('..')"),
                                           ("/tmp/h11_escaped.png", "absolute path"),
                                           ("link", "symbolic link")])
def test_an_unsafe_archive_is_refused_before_anything_is_written(tmp_path, untouched, entry, reason):
    archive = unsafe_zip(tmp_path / "evil.zip", entry)
    untouched(archive.parent)
    data_dir = tmp_path / "work" / "data"
    message = refused(hello_dl("fetch", "--source", archive, "--data-dir", data_dir), archive, entry.lstrip("/")
                      if entry != "link" else "link.png", fix="Get the archive again")
    assert reason in message and "Nothing was extracted" in message
    assert not data_dir.exists() and leftovers(data_dir.parent) == []
    assert not list(tmp_path.rglob("escaped*")) and not Path("/tmp/h11_escaped.png").exists()


def test_an_archive_with_a_changed_image_is_refused_naming_it(shared_dataset, tmp_path, untouched):
    changed = f"TRAIN/{ABDOMEN}/openI_9.png"
    archive = tmp_path / "changed.zip"
    with zipfile.ZipFile(archive, "w") as out:
        for path in sorted(shared_dataset.rglob("*.png")):
            relative = path.relative_to(shared_dataset).as_posix()
            out.writestr(f"{TOP}/{relative}", path.read_bytes() + (b"\x00" if relative == changed else b""))
    untouched(archive.parent)
    data_dir = tmp_path / "data"
    message = refused(hello_dl("fetch", "--source", archive, "--data-dir", data_dir), changed,
                      fix="Get a fresh copy")
    assert "Nothing was installed" in message and not data_dir.exists() and leftovers(tmp_path) == []


def test_an_archive_with_a_damaged_entry_is_named(shared_dataset, tmp_path, untouched):
    archive = tmp_path / "damaged.zip"
    build_zip(shared_dataset, archive)
    data = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as zf:
        victim = next(info for info in zf.infolist() if info.filename.endswith(".png"))
    # Inside the stored bytes of the first image (past its local header): the CRC no longer matches.
    start = victim.header_offset + 30 + len(victim.filename.encode()) + 100
    data[start:start + 16] = b"\xff" * 16
    archive.write_bytes(bytes(data))
    untouched(archive.parent)
    refused(hello_dl("fetch", "--source", archive, "--data-dir", tmp_path / "data"), archive, victim.filename,
            fix="Download or copy it again")
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("kind", ["not a zip", "missing", "no TRAIN/VAL"])
def test_a_wrong_local_source_says_what_to_give(tmp_path, untouched, kind):
    if kind == "not a zip":
        source = tmp_path / "src" / "images.tar"
        source.parent.mkdir()
        source.write_bytes(b"ustar and so on")
        fix = "Give the path of Open_I_abd_vs_CXRs.zip"
    elif kind == "missing":
        source = tmp_path / "src" / "no such.zip"
        source.parent.mkdir()
        fix = "hello-dl fetch --source /path/to/"
    else:
        source = tmp_path / "src"
        (source / "images").mkdir(parents=True)
        fix = "Point HELLO_DL_DATA_SOURCE"
    untouched(tmp_path / "src")
    message = refused(hello_dl("fetch", "--source", source, "--data-dir", tmp_path / "data"), fix=fix)
    assert (str(source) in message) or kind == "no TRAIN/VAL"
    assert not (tmp_path / "data").exists()


class _LyingLengthHandler(QuietHandler):
    """Promises more bytes than it sends, like a connection that drops mid-download."""

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.send_response(200)
        self.send_header("Content-Length", "5000000")
        self.end_headers()
        self.wfile.write(b"PK\x03\x04" + b"\x00" * 1000)


@pytest.mark.parametrize("failure, problem", [("404", "answered 404"), ("refused", "Could not download"),
                                              ("cut off", "stopped after")])
def test_a_failed_download_gives_the_manual_route_and_leaves_nothing(tmp_path, http_server, failure, problem):
    if failure == "404":
        url = f"{http_server(tmp_path)}/{TOP}.zip"
    elif failure == "refused":
        url = f"http://127.0.0.1:{closed_port()}/{TOP}.zip"
    else:
        url = f"{http_server(tmp_path, handler=_LyingLengthHandler)}/{TOP}.zip"
    data_dir = tmp_path / "data" / "open_i"
    message = refused(hello_dl("fetch", "--source", url, "--data-dir", data_dir), url, data_dir,
                      fix=f"hello-dl fetch --source /path/to/{TOP}.zip")
    assert problem in message and "HELLO_DL_DATA_SOURCE" in message
    assert not data_dir.exists() and leftovers(data_dir.parent) == []


def test_a_good_download_is_verified_and_a_rerun_reuses_it(dataset_zip, tmp_path, http_server, untouched):
    untouched(dataset_zip.parent)
    url = f"{http_server(dataset_zip.parent)}/{dataset_zip.name}"
    data_dir = tmp_path / "data" / "open_i"
    assert f"Data ready and verified in {data_dir}" in accepted(hello_dl("fetch", "--source", url,
                                                                         "--data-dir", data_dir))
    untouched(data_dir)
    assert f"Data ready and verified in {data_dir}" in accepted(hello_dl("fetch", "--source", url,
                                                                         "--data-dir", data_dir))
    assert leftovers(data_dir.parent) == []


def test_an_existing_damaged_data_folder_is_left_untouched(shared_dataset, tmp_path, untouched):
    data_dir = tmp_path / "data"
    shutil.copytree(shared_dataset, data_dir)
    damaged = data_dir / "VAL" / CHEST / "8_IM-2333-1001.png"
    damaged.write_bytes(damaged.read_bytes()[:-10])
    untouched(data_dir)
    refused(hello_dl("fetch", "--source", shared_dataset, "--data-dir", data_dir), data_dir,
            "VAL/openI_CXR/8_IM-2333-1001.png", fix="Move or delete it")


def test_a_data_folder_that_is_a_file_is_left_alone(shared_dataset, tmp_path, untouched):
    data_dir = tmp_path / "data"
    data_dir.write_text("my notes\n")
    untouched(tmp_path)
    refused(hello_dl("fetch", "--source", shared_dataset, "--data-dir", data_dir), data_dir,
            "it is a file, not a folder", fix="set HELLO_DL_DATA_DIR to a new folder")


class _SlowCountingHandler(QuietHandler):
    """Serves files slowly (a conference Wi-Fi) and counts the downloads."""

    downloads: list[str] = []

    def do_GET(self):  # noqa: N802 (http.server's naming)
        type(self).downloads.append(self.path)
        super().do_GET()

    def copyfile(self, source, destination):
        for _ in range(200):  # bounded: the archive is about 14 MB
            block = source.read(256 * 1024)
            if not block:
                break
            destination.write(block)
            time.sleep(0.08)


def test_three_fetches_at_once_download_once_and_all_get_the_verified_folder(dataset_zip, tmp_path, http_server):
    _SlowCountingHandler.downloads = []
    url = f"{http_server(dataset_zip.parent, handler=_SlowCountingHandler)}/{dataset_zip.name}"
    data_dir = tmp_path / "data" / "open_i"
    command = command_line("fetch", "--source", url, "--data-dir", data_dir)
    children = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 env=clean_environment(), stdin=subprocess.DEVNULL) for _ in range(3)]
    outcomes = []
    for child in children:
        out, err = child.communicate(timeout=240)
        outcomes.append(Outcome(child.returncode, out, err))
    for outcome in outcomes:
        assert f"Data ready and verified in {data_dir}" in accepted(outcome)
    assert _SlowCountingHandler.downloads == [f"/{dataset_zip.name}"]  # the late ones reused the first one's
    assert any("Another fetch into" in outcome.err and "waiting" in outcome.err for outcome in outcomes)
    assert fetch.verify_dataset(data_dir) == [] and leftovers(data_dir.parent) == []


def test_a_fetch_waits_only_so_long_for_another_one(shared_dataset, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(fetch, "LOCK_WAIT_SECONDS", 0.6)
    data_dir = tmp_path / "data"
    with fetch.fetch_lock(data_dir):  # another fetch is busy with this folder
        started = time.monotonic()
        outcome = hello_dl_here(capsys, "fetch", "--source", shared_dataset, "--data-dir", data_dir)
        waited = time.monotonic() - started
    message = refused(outcome, data_dir, fetch.lock_path(data_dir), f"pid {os.getpid()}", fix="Let it finish")
    assert "still running after 1 s" in message and 0.5 < waited < 10
    assert not data_dir.exists() and leftovers(tmp_path) == []


# --- folders and labels (hello-dl data-summary) --------------------------------------------------------------
def test_the_same_image_in_two_classes_is_refused_naming_both(small_dataset, untouched):
    original = first_image(small_dataset)
    copy = small_dataset / "TRAIN" / ABDOMEN / "which one am I.png"
    shutil.copyfile(original, copy)
    untouched(small_dataset)
    message = refused(hello_dl("data-summary", "--data-dir", small_dataset), original, copy,
                      fix="Delete or move the wrong copy")
    assert "in two classes" in message and "(chest)" in message and "(abdomen)" in message


def test_a_train_image_copied_into_val_is_a_loud_warning(small_dataset, untouched):
    original = first_image(small_dataset)
    leak = small_dataset / "VAL" / CHEST / "leak.png"
    shutil.copyfile(original, leak)
    untouched(small_dataset)
    out = accepted(hello_dl("data-summary", "--data-dir", small_dataset))
    assert f"across TRAIN and VAL: TRAIN/{CHEST}/{original.name}  =  VAL/{CHEST}/leak.png" in out
    assert "WARNING: 1 image(s) are in more than one split (TRAIN and VAL)" in out and "hello-dl split" in out


def test_the_papers_own_val_duplicate_is_reported_as_before(shared_dataset, untouched):
    untouched(shared_dataset)
    out = accepted(hello_dl("data-summary", "--data-dir", shared_dataset))
    assert "within VAL: VAL/openI_abd_xray/PMC2584007_1752-1947-2-335-2 (1).png" in out
    assert "Images: 65 train / 10 val (9 distinct) / 2 test" in out and "WARNING" not in out


LAYOUT_PROBLEMS = {
    # how the layout is broken: (change(root) -> the path to name, what the message says, the fix)
    "no VAL": (lambda root: shutil.rmtree(root / "VAL") or root / "VAL", "The VAL folder is missing", "hello-dl split"),
    "lowercase train": (lambda root: (root / "TRAIN").rename(root / "train") and root / "TRAIN",
                        "There is a folder named 'train'", "rename it to 'TRAIN'"),
    "extra class": (lambda root: (root / "TRAIN" / "openI_knee").mkdir() or root / "TRAIN" / "openI_knee",
                    "is not one of the class folders", "rename it to one of those"),
    "loose image": (lambda root: shutil.copyfile(first_image(root), root / "TRAIN" / "loose.png"),
                    "outside any class folder", "Move it into"),
    "empty class": (lambda root: [p.unlink() for p in (root / "VAL" / ABDOMEN).iterdir()] and root / "VAL" / ABDOMEN,
                    "holds no images", "Put the abdomen images there"),
    "no data": (lambda root: shutil.rmtree(root) or root, "does not exist", "Run `hello-dl fetch`"),
}


@pytest.mark.parametrize("problem", list(LAYOUT_PROBLEMS))
def test_a_wrong_folder_layout_says_how_to_fix_it(small_dataset, tmp_path, untouched, problem):
    change, says, fix = LAYOUT_PROBLEMS[problem]
    named = change(small_dataset)
    untouched(tmp_path)
    message = refused(hello_dl("data-summary", "--data-dir", small_dataset), named, fix=fix)
    assert says in message


# --- splitting your own folders (hello-dl split) ----------------------------------------------------------------
@pytest.fixture
def own_images(shared_dataset, tmp_path) -> Path:
    """A user's folder: chest/ and abdomen/ with 6 real images each (only read by the split)."""
    source = tmp_path / "my images"
    for folder, name in ((CHEST, "chest"), (ABDOMEN, "abdomen")):
        (source / name).mkdir(parents=True)
        for path in sorted((shared_dataset / "TRAIN" / folder).iterdir())[:6]:
            shutil.copyfile(path, source / name / path.name)
    return source


def test_split_refuses_an_image_in_two_classes_naming_both(own_images, tmp_path, untouched):
    original = first_image(own_images, "", "chest")
    copy = own_images / "abdomen" / "copy.png"
    shutil.copyfile(original, copy)
    untouched(own_images)
    message = refused(hello_dl("split", own_images, tmp_path / "split"), original, copy, fix="delete or move")
    assert "more than one class" in message and not (tmp_path / "split").exists()


@pytest.mark.parametrize("problem", ["already split", "one class", "destination inside"])
def test_split_refuses_a_source_or_destination_that_cannot_work(own_images, shared_dataset, tmp_path, untouched,
                                                               problem):
    if problem == "one class":
        shutil.rmtree(own_images / "abdomen")
    untouched(own_images)
    if problem == "already split":
        untouched(shared_dataset)
        source, destination, says, fix = shared_dataset, tmp_path / "s", "already looks split", "not an already split"
    elif problem == "one class":
        source, destination, says, fix = own_images, tmp_path / "s", "needs one sub-folder per class", "at least two"
    else:
        source, destination, says, fix = own_images, own_images / "chest" / "out", "overlap", "outside the source"
    message = refused(hello_dl("split", source, destination), source, fix=fix)
    assert says in message and not destination.exists()


def test_split_into_a_different_existing_split_changes_nothing(own_images, tmp_path, untouched):
    destination = tmp_path / "split"
    accepted(hello_dl("split", own_images, destination))
    (destination / "TRAIN" / "chest" / "mine.txt").write_text("keep me\n")
    untouched(own_images)
    untouched(destination)
    message = refused(hello_dl("split", own_images, destination, "--set", "seed=7"), destination,
                      fix="Choose a new destination folder")
    assert "holds a different split" in message and "not part of this split: TRAIN/chest/mine.txt" in message


def test_split_rerun_is_idempotent(own_images, tmp_path, untouched):
    destination = tmp_path / "split"
    accepted(hello_dl("split", own_images, destination))
    untouched(own_images)
    untouched(destination)
    assert "already holds exactly this split" in accepted(hello_dl("split", own_images, destination))


def test_split_with_a_relative_destination_gives_advice_that_works_from_anywhere(own_images, tmp_path, untouched):
    elsewhere = tmp_path / "my work"
    elsewhere.mkdir()
    untouched(own_images)
    out = accepted(hello_dl("split", own_images, "rel_split", cwd=elsewhere))
    where = elsewhere / "rel_split"
    assert f"set data_dir={where} and class_folders=abdomen,chest" in out
    assert (where / "split.json").is_file() and not (PROJECT_ROOT / "rel_split").exists()
    # The advice, taken literally from the kit's own folder, finds the split.
    summary = accepted(hello_dl("data-summary", "--set", f"data_dir={where}", "--set", "class_folders=abdomen,chest",
                                "--set", "class_names=abdomen,chest", cwd=PROJECT_ROOT))
    assert "Images: " in summary and str(where) in summary


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_split_folders_and_files_get_the_mode_the_umask_gives(own_images, tmp_path, umask):
    destination = tmp_path / f"split-{umask:o}"
    accepted(hello_dl("split", own_images, destination, umask=umask))
    folders = [destination, *(p for p in destination.rglob("*") if p.is_dir())]
    files = [p for p in destination.rglob("*") if p.is_file()]
    assert {stat.S_IMODE(p.stat().st_mode) for p in folders} == {0o777 & ~umask}
    assert {stat.S_IMODE(p.stat().st_mode) for p in files} == {0o666 & ~umask}


# --- settings (hello-dl settings) ------------------------------------------------------------------------------
@pytest.mark.parametrize("argv, env, names, fix", [
    (["--set", "image_size=50"], {}, ["image_size is 50"], "at least 75 and at most 1024"),
    (["--set", "dropout=1.5"], {}, ["dropout is 1.5"], "at least 0 and below 1"),
    (["--set", "batch_size=abc"], {}, ["batch_size", "'abc'"], "must be a whole number"),
    (["--set", "augment=maybe"], {}, ["augment", "'maybe'"], "true/false"),
    (["--set", "image_size"], {}, ["'image_size'"], "KEY=VALUE"),
    (["--set", "nonsense=1"], {}, ["nonsense"], "Known settings"),
    ([], {"HELLO_DL_PROFILE": "bogus"}, ["'bogus'"], "Choose one of: paper, conference, smoke"),
    ([], {"HELLO_DL_THRESHOLD": "2"}, ["threshold is 2.0", "env:HELLO_DL_THRESHOLD"], "above 0 and below 1"),
])
def test_a_bad_setting_is_named_with_its_valid_values(argv, env, names, fix):
    refused(hello_dl("settings", *argv, env=env), *names, fix=fix)


def test_an_unknown_command_is_a_usage_message_not_a_traceback():
    outcome = hello_dl("trian")
    assert outcome.code == 2 and "invalid choice: 'trian'" in outcome.err and "Traceback" not in outcome.text


# --- weights files (hello-dl fetch --weights-only, with weights=<file>) --------------------------------------------
def _keras_h5(path: Path, layers: dict[str, tuple[int, ...] | None]) -> Path:
    """An HDF5 file in Keras' legacy weights layout: ``layers`` maps a layer name to its first kernel's shape."""
    import h5py

    with h5py.File(path, "w") as handle:
        handle.attrs["layer_names"] = [name.encode() for name in layers]
        for name, shape in layers.items():
            group = handle.create_group(name)
            group.attrs["weight_names"] = [f"{name}/kernel:0".encode()] if shape else []
            if shape:
                group.create_dataset(f"{name}/kernel:0", data=np.zeros(shape, np.float32))
    return path


BAD_WEIGHTS = {
    # file: (writer(path), what the message says)
    "text.h5": (lambda path: path.write_text("<html>Sign in to continue</html>\n"), "is not an HDF5 .h5 file"),
    "cut off.h5": (lambda path: path.write_bytes(
        _keras_h5(path, {"conv2d": (3, 3, 3, 32), "dense": (512, 512)}).read_bytes()[:3000]), "damaged"),
    "no layers.h5": (lambda path: __import__("h5py").File(path, "w").close(), "holds no Keras layer weights"),
    "with top.h5": (lambda path: _keras_h5(path, {"conv2d": (3, 3, 3, 32), "predictions": (2048, 1000)}),
                    "WITH the ImageNet classification top"),
    "other network.h5": (lambda path: _keras_h5(path, {"conv1": (7, 7, 3, 64), "fc": (512, 10)}),
                         "does not fit InceptionV3 without its top"),
}


@pytest.mark.parametrize("name", list(BAD_WEIGHTS))
def test_a_bad_weights_file_is_named_with_the_way_out(tmp_path, untouched, name):
    write, problem = BAD_WEIGHTS[name]
    path = tmp_path / "weights" / name
    path.parent.mkdir()
    write(path)
    untouched(path.parent)
    message = refused(hello_dl("fetch", "--weights-only", "--set", f"weights={path}"), path,
                      fix="HELLO_DL_WEIGHTS=none")
    assert problem in message


def test_a_missing_weights_file_is_named(tmp_path):
    path = tmp_path / "inception_v3_notop.h5"
    message = refused(hello_dl("fetch", "--weights-only", "--set", f"weights={path}"), path,
                      fix="HELLO_DL_WEIGHTS=imagenet")
    assert "does not exist" in message


# --- read-only and full disks (a real tmpfs) --------------------------------------------------------------------------
def test_fetch_into_a_read_only_folder_is_a_plain_message(shared_dataset, tmpfs, untouched):
    read_only = tmpfs("1m", read_only=True)
    untouched(shared_dataset)
    message = refused(hello_dl("fetch", "--source", shared_dataset, "--data-dir", read_only / "data"), read_only,
                      fix="Choose a folder you may write to")
    assert "Read-only file system" in message


def test_fetch_onto_a_full_disk_says_so_and_leaves_nothing(shared_dataset, tmpfs, untouched):
    small = tmpfs("4m")  # the dataset needs about 14 MB
    untouched(shared_dataset)
    message = refused(hello_dl("fetch", "--source", shared_dataset, "--data-dir", small / "data"), small,
                      fix="Free some space there")
    assert "No space left" in message and "Nothing half-written was kept" in message
    assert list(small.iterdir()) == []


def test_a_full_disk_during_a_download_is_not_called_a_network_problem(dataset_zip, tmpfs, http_server):
    small = tmpfs("4m")
    url = f"{http_server(dataset_zip.parent)}/{dataset_zip.name}"
    message = refused(hello_dl("fetch", "--source", url, "--data-dir", small / "data"), small,
                      fix="Free some space there")
    message = message[message.index("hello-dl: "):]  # after the progress bar
    assert "No space left" in message and "MB free)" in message and "download" not in message.lower()
    assert list(small.iterdir()) == []


def test_split_into_a_read_only_folder_is_a_plain_message(own_images, tmpfs, untouched):
    read_only = tmpfs("1m", read_only=True)
    untouched(own_images)
    message = refused(hello_dl("split", own_images, read_only / "split"), read_only, fix="Choose a folder")
    assert "Read-only file system" in message


def test_split_onto_a_full_disk_says_so_and_leaves_nothing(own_images, tmpfs, untouched):
    small = tmpfs("600k")  # 12 images of about 100-300 kB each do not fit
    untouched(own_images)
    message = refused(hello_dl("split", own_images, small / "split"), small, fix="Free some space there")
    assert "No space left" in message
    assert list(small.iterdir()) == []


def test_dicom_to_png_onto_a_full_disk_says_so(tmp_path, tmpfs, untouched):
    source = tmp_path / "dicoms"
    source.mkdir()
    noise = np.random.default_rng(0).integers(0, 4096, (600, 600), dtype=np.uint16)  # PNGs that do not compress
    for index in range(4):
        write_dicom(source / f"IM{index}.dcm", noise, bits_stored=12)
    untouched(source)
    small = tmpfs("500k")
    message = refused(hello_dl("dicom-to-png", source, small / "png"), small / "png", fix="Free some space there")
    assert "No space left" in message
    assert not [p for p in small.rglob("*") if ".partial" in p.name]


# --- permission denied (file modes obeyed: root's power to ignore them dropped for the command) ----------------------
#: Linux capabilities that let root read and write past file modes (linux/capability.h).
_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH, _PR_CAPBSET_DROP = 1, 2, 24


@pytest.fixture
def obeying_file_modes():
    """Run ``hello-dl`` as root but without the capabilities to ignore file modes, as a normal user is.

    (CI runs as root, for whom chmod means nothing; switching to another user fails where Python
    lives in root's home.) Skipped, with the reason, where the capabilities cannot be dropped.
    """
    import ctypes

    if os.geteuid() != 0:
        pytest.skip("dropping root's capabilities needs root (CI runs as root); as a normal user modes apply anyway")
    libc = ctypes.CDLL(None, use_errno=True)

    def drop_override():
        for capability in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
            if libc.prctl(_PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")

    def run(*argv) -> Outcome:
        return hello_dl(*argv, preexec_fn=drop_override)

    try:
        probe = run("settings")
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot drop root's file-mode capabilities here: {exc}")
    if probe.code != 0:
        pytest.skip(f"the kit does not run without root's file-mode capabilities here: {probe.err.strip()[:200]}")
    return run


def test_an_image_one_may_not_read_is_not_called_damaged(obeying_file_modes, small_dataset):
    secret = first_image(small_dataset)
    secret.chmod(0o000)
    try:
        message = refused(obeying_file_modes("data-summary", "--data-dir", small_dataset), secret,
                          fix="Ask whoever owns it")
    finally:
        secret.chmod(0o644)
    assert "permission denied" in message and "damaged" not in message


def test_fetch_into_a_folder_one_may_not_write_to_is_a_plain_message(obeying_file_modes, shared_dataset, tmp_path,
                                                                     untouched):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    theirs.chmod(0o555)  # one may look, not write
    untouched(shared_dataset)
    try:
        message = refused(obeying_file_modes("fetch", "--source", shared_dataset, "--data-dir", theirs / "data"),
                          theirs, fix="Choose a folder you may write to")
    finally:
        theirs.chmod(0o755)
    assert "Permission denied" in message and not (theirs / "data").exists()


def test_split_from_a_folder_with_an_unreadable_image_names_it(obeying_file_modes, own_images, tmp_path):
    secret = first_image(own_images, "", "chest")
    secret.chmod(0o000)
    try:
        message = refused(obeying_file_modes("split", own_images, tmp_path / "split"), secret,
                          fix="ask whoever owns it for access")
    finally:
        secret.chmod(0o644)
    assert "Permission denied" in message and not (tmp_path / "split").exists()


# --- every setting checked before anything is created ---------------------------------------------------------
@pytest.mark.parametrize("setting, value, says", [
    ("image_size", "100000", "at most 1024"),
    ("learning_rate", "-1", "above 0"),
    ("learning_rate", "nan", "a finite number above 0"),
    ("finetune_learning_rate", "0", "above 0"),
    ("rotation_degrees", "inf", "a finite number at least 0 and at most 180"),
    ("finetune_epochs", "1000000", "at most 1000"),
    ("steps_per_execution", "0", "a whole number at least 1"),
    ("dense_units", "0", "a whole number at least 1"),
    ("batch_size", "0", "at least 1"),
    ("zoom", "1", "below 1"),
    ("width_shift", "2", "at most 1"),
    ("seed", "-1", "at least 0"),
])
def test_a_setting_out_of_its_range_is_refused_before_anything_is_made(tmp_path, setting, value, says):
    outputs = tmp_path / "outputs"
    message = refused(hello_dl("train", "--profile", "smoke", "--set", f"{setting}={value}",
                               "--set", f"output_dir={outputs}", timeout=60), f"{setting} is ", "(from argument)",
                      fix=says)
    assert not outputs.exists()  # no half-made run folder
    assert "TensorFlow" not in message


def test_a_setting_from_the_environment_is_named_with_its_variable():
    refused(hello_dl("settings", env={"HELLO_DL_LEARNING_RATE": "nan"}), "learning_rate is nan",
            "env:HELLO_DL_LEARNING_RATE", fix="above 0")


def test_a_misspelt_variable_is_an_error_that_suggests_the_real_name(tmp_path):
    message = refused(hello_dl("train", "--set", f"output_dir={tmp_path / 'outputs'}",
                               env={"HELLO_DL_IMAGESIZE": "150"}), "HELLO_DL_IMAGESIZE",
                      fix="did you mean HELLO_DL_IMAGE_SIZE?")
    assert "unset HELLO_DL_IMAGESIZE" in message and not (tmp_path / "outputs").exists()
    refused(hello_dl("settings", "--set", "imagesize=150"), "imagesize", fix="did you mean image_size?")


def test_the_kits_other_variables_are_not_settings_and_are_accepted():
    from hello_dl.settings import NON_SETTING_PREFIXES, NON_SETTING_VARIABLES

    env = {name: "1" for name in NON_SETTING_VARIABLES if name != "HELLO_DL_HOME"}
    env.update({prefix + "ANYTHING": "x" for prefix in NON_SETTING_PREFIXES})
    env["HELLO_DL_DEBUG"] = "0"
    assert "image_size" in accepted(hello_dl("settings", env=env))


def test_every_hello_dl_variable_in_the_repository_is_a_setting_or_listed():
    """A new HELLO_DL_* variable anywhere in the kit must be a setting or go into settings.NON_SETTING_VARIABLES."""
    import re

    from hello_dl.settings import NON_SETTING_PREFIXES, is_known_variable

    listed = subprocess.run(["git", "ls-files"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    if listed.returncode != 0:
        pytest.skip(f"not a git checkout: {listed.stderr.strip()}")
    found: dict[str, str] = {}
    for name in listed.stdout.splitlines():
        path = PROJECT_ROOT / name
        if name.startswith("tests/") or path.suffix in (".png", ".jpg", ".h5", ".zip") or not path.is_file():
            continue  # (the tests spell names wrongly on purpose)
        for variable in re.findall(r"HELLO_DL_[A-Z0-9_]*[A-Z0-9]", path.read_text(errors="ignore")):
            found.setdefault(variable, name)
    assert len(found) > 10
    unknown = {variable: where for variable, where in found.items()
               if not is_known_variable(variable) and variable + "_" not in NON_SETTING_PREFIXES}
    assert not unknown, f"add these to settings.NON_SETTING_VARIABLES (or make them settings): {unknown}"


def test_every_number_setting_has_a_range():
    from dataclasses import fields

    from hello_dl.settings import RANGES, Settings

    numbers = {f.name for f in fields(Settings) if f.type in ("int", "float", int, float)}
    assert numbers == set(RANGES)


# --- the console: no traceback for the user's mistakes or the computer's state; one line for a bug ---------------
def test_an_os_error_the_kit_did_not_foresee_is_still_a_plain_message(monkeypatch, capsys, tmp_path):
    import errno

    from hello_dl import dataset

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out" / "x.json"))

    monkeypatch.setattr(dataset, "summarize", full_disk)
    message = refused(hello_dl_here(capsys, "data-summary"), tmp_path / "out", fix="Free some space there")
    assert "No space left" in message


def test_a_bug_is_one_line_and_the_traceback_only_on_request(monkeypatch, capsys):
    from hello_dl import dataset

    def bug(*args, **kwargs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(dataset, "summarize", bug)
    outcome = hello_dl_here(capsys, "data-summary")
    assert outcome.code == 1 and "Traceback" not in outcome.text
    assert "this is a bug in the kit" in outcome.err and "ZeroDivisionError" in outcome.err
    assert "--debug" in outcome.err and "HELLO_DL_DEBUG=1" in outcome.err
    with pytest.raises(ZeroDivisionError):
        cli.main(["data-summary", "--debug"])
    monkeypatch.setenv("HELLO_DL_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        cli.main(["data-summary"])


def test_a_closed_output_pipe_ends_quietly():
    child = subprocess.Popen(command_line("settings"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=clean_environment(), stdin=subprocess.DEVNULL)
    child.stdout.close()  # like `hello-dl settings | head -0`: nobody reads what it prints
    err = child.stderr.read().decode()
    assert child.wait(timeout=60) == 141 and "Traceback" not in err and "Exception ignored" not in err


@pytest.mark.slow  # imports TensorFlow twice (about 10 s each)
def test_tensorflows_c_plus_plus_start_up_lines_are_not_shown():
    from hello_dl.cli import _NATIVE_LOG_LINE

    def native(text: str) -> list[str]:
        return [line for line in text.splitlines() if _NATIVE_LOG_LINE.match(line.encode())]

    raw = subprocess.run([sys.executable, "-c", "import tensorflow as tf; tf.config.list_physical_devices()"],
                         capture_output=True, text=True, timeout=300,
                         env={k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"})
    outcome = hello_dl("env", timeout=300)
    assert "Running on the" in accepted(outcome)
    assert native(outcome.err) == [] and "cuInit" not in outcome.err, outcome.err
    if not native(raw.stderr):
        pytest.skip("TensorFlow printed no C++ start-up lines on this computer, so there was nothing to hide")


# --- run folders: only finished, readable runs are ever used -----------------------------------------------------------
@pytest.fixture
def outputs_with_a_run(smoke_run, tmp_path) -> tuple[Path, Path, list[str]]:
    """A private outputs folder holding a copy of the shared trained run; returns (outputs, run, --set args)."""
    if smoke_run.run_dir is None or smoke_run.exit_code != 0:
        pytest.fail(f"the shared training run failed: {smoke_run.output}")
    outputs = tmp_path / "outputs"
    run = outputs / smoke_run.run_dir.name
    shutil.copytree(smoke_run.run_dir, run, ignore=shutil.ignore_patterns("figures"))
    sets = ["--profile", "smoke", "--set", f"data_dir={smoke_run.settings.data_dir}", "--set", f"output_dir={outputs}"]
    return outputs, run, sets


@pytest.mark.slow
def test_a_damaged_settings_file_is_named(outputs_with_a_run, fetched_dataset):
    outputs, run, sets = outputs_with_a_run
    (run / "settings.json").write_text('{"settings": {"image_size": 75,')  # cut off
    for argv in (["evaluate", run], ["predict", fetched_dataset / "TEST" / "abd2.png"]):
        message = refused(hello_dl(*argv, *sets), run / "settings.json", fix="train again")
        assert "damaged" in message


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["cut off", "not a model"])
def test_a_damaged_model_file_is_called_damaged(outputs_with_a_run, fetched_dataset, untouched, damage):
    outputs, run, sets = outputs_with_a_run
    model = run / "best_model.keras"
    model.write_bytes(model.read_bytes()[:5000] if damage == "cut off" else b"<html>Moved</html>")
    untouched(fetched_dataset)
    message = refused(hello_dl("predict", fetched_dataset / "TEST" / "abd2.png", "--run", run, *sets, timeout=300),
                      model, fix="Train again")
    assert "damaged" in message and "File not found" not in message


@pytest.mark.slow
def test_an_unfinished_newer_run_is_never_the_latest(outputs_with_a_run, fetched_dataset):
    outputs, run, sets = outputs_with_a_run
    image = fetched_dataset / "TEST" / "abd2.png"
    before = accepted(hello_dl("predict", image, *sets, timeout=300))
    newer = outputs / "29991231-235959_smoke"  # sorts and dates after the finished one
    shutil.copytree(run, newer)
    (newer / "FINISHED").unlink()
    (newer / "best_model.keras").write_bytes(b"half a model")  # if it were used, predict would fail
    os.utime(newer / "settings.json", (time.time() + 3600, time.time() + 3600))
    assert accepted(hello_dl("predict", image, *sets, timeout=300)) == before


@pytest.mark.slow
def test_a_model_that_answers_nan_is_refused(outputs_with_a_run, fetched_dataset):
    import keras

    outputs, run, sets = outputs_with_a_run
    model = keras.models.load_model(run / "best_model.keras", safe_mode=True, compile=False)
    dense = model.get_layer("predictions") if any(layer.name == "predictions" for layer in model.layers) \
        else [layer for layer in model.layers if layer.weights][-1]
    dense.set_weights([np.full_like(w, np.nan) for w in dense.get_weights()])
    model.save(run / "best_model.keras")
    image = fetched_dataset / "TEST" / "abd2.png"
    message = refused(hello_dl("predict", image, *sets, timeout=300), run, image, fix="Train again")
    assert "no usable answer (NaN" in message
    message = refused(hello_dl("evaluate", run, *sets, timeout=300), run, fix="Train again")
    assert "no usable answer (NaN" in message


def test_evaluate_and_predict_without_a_run_say_what_to_do_first(tmp_path, fetched_dataset):
    sets = ["--profile", "smoke", "--set", f"output_dir={tmp_path / 'outputs'}"]
    refused(hello_dl("predict", fetched_dataset / "TEST" / "abd2.png", *sets), tmp_path / "outputs",
            fix="Run notebook 04_train first")
    refused(hello_dl("evaluate", tmp_path / "no run", *sets), tmp_path / "no run", fix="Use a folder printed by")


def test_runs_made_at_the_same_moment_get_their_own_folders(tmp_path):
    from datetime import datetime

    from hello_dl import runs
    from hello_dl.settings import load_settings

    settings = load_settings("smoke", environ={}, output_dir=str(tmp_path / "outputs"))
    moment = datetime(2026, 1, 1, 9, 30, 0)
    made: list[Path] = []
    threads = [threading.Thread(target=lambda: made.append(runs.create(settings, now=moment))) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(made) == 6 and len(set(made)) == 6
    assert all((folder / "settings.json").is_file() and not runs.is_finished(folder) for folder in made)
    assert runs.list_runs(settings) == []  # none of them finished


# --- training under faults (real training, smoke profile at 75 px, phase 1 only) -------------------------------------
def _train_sets(data_dir: Path, outputs: Path, *extra: str) -> list[str]:
    return ["--profile", "smoke", "--set", "warmup_epochs=1", "--set", "finetune_epochs=0",
            "--set", f"data_dir={data_dir}", "--set", f"output_dir={outputs}", *extra]


def _partial_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".partial" in p.name]


@pytest.fixture
def leaky_dataset(fetched_dataset, tmp_path) -> Path:
    """The paper's dataset with one TRAIN image copied into VAL (a leak the kit must warn about)."""
    data = tmp_path / "leaky"
    shutil.copytree(fetched_dataset, data)
    shutil.copyfile(first_image(data), data / "VAL" / CHEST / "copied from train.png")
    return data


@pytest.mark.slow
def test_an_image_in_two_classes_stops_training_before_a_run_folder_exists(fetched_dataset, tmp_path, untouched):
    data = tmp_path / "conflict"
    shutil.copytree(fetched_dataset, data)
    original = first_image(data)
    copy = data / "TRAIN" / ABDOMEN / "also abdomen.png"
    shutil.copyfile(original, copy)
    untouched(data)
    outputs = tmp_path / "outputs"
    message = refused(hello_dl("train", *_train_sets(data, outputs), timeout=600), original, copy,
                      fix="Delete or move the wrong copy")
    assert "in two classes" in message and not outputs.exists()


@pytest.mark.slow
def test_training_on_a_leak_warns_loudly_and_says_so_in_the_metrics(leaky_dataset, tmp_path):
    outputs = tmp_path / "outputs"
    out = accepted(hello_dl("train", *_train_sets(leaky_dataset, outputs), timeout=900))
    assert "WARNING: 1 image(s) are in more than one split (TRAIN and VAL)" in out
    (run,) = [p for p in outputs.iterdir() if p.is_dir()]
    metrics = __import__("json").loads((run / "metrics.json").read_text())
    assert metrics["images_shared_between_splits"] == 1 and "copied from train.png" in metrics["warnings"][0]
    assert (run / "FINISHED").is_file()


@pytest.mark.slow
def test_a_loss_that_becomes_nan_stops_training_at_once_and_is_never_finished(fetched_dataset, tmp_path, capsys,
                                                                             monkeypatch, untouched):
    """A run that diverges, made to diverge for sure: after the first batch the output layer's weights become NaN.

    (A learning rate high enough to diverge is refused by the settings now, and NaN weights deep in
    InceptionV3 do not reliably reach the loss: the fused convolution kernels clip NaN at the ReLUs.)
    The real ``hello-dl train`` runs in this process, so the poison can be handed to Keras.
    """
    import keras

    from hello_dl import train

    class Diverge(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 0:
                output = self.model.layers[-1]
                output.set_weights([np.full_like(w, np.nan) for w in output.get_weights()])

    real = train.callbacks_for_phase
    monkeypatch.setattr(train, "callbacks_for_phase",
                        lambda *args, **kwargs: [*real(*args, **kwargs), Diverge()])
    untouched(fetched_dataset)
    outputs = tmp_path / "outputs"
    outcome = hello_dl_here(capsys, "train", *_train_sets(fetched_dataset, outputs, "--set", "warmup_epochs=3"))
    # The message names the rate this run trained with and where it came from (the smoke profile has
    # no pretrained weights, so the from-scratch recipe sets it).
    from hello_dl.settings import load_settings

    trained_with = load_settings("smoke", environ={})
    named = (f"learning_rate is {trained_with.learning_rate:g} "
             f"(from {trained_with.sources.get('learning_rate', 'default')})")
    message = refused(outcome, "epoch 1, batch 2 of phase 1", named, fix="--set learning_rate=1e-5")
    assert "loss became nan" in message and "not marked finished" in message
    assert "Epoch 2/" not in outcome.out  # stopped at once, not after the planned epochs
    (run,) = [p for p in outputs.iterdir() if p.is_dir()]
    assert str(run) in message and not (run / "FINISHED").exists() and _partial_files(run) == []
    refused(hello_dl("predict", fetched_dataset / "TEST" / "abd2.png", "--profile", "smoke",
                     "--set", f"output_dir={outputs}"), fix="Run notebook 04_train first")


@pytest.mark.slow
def test_training_into_a_read_only_folder_is_a_plain_message(leaky_dataset, tmpfs):
    read_only = tmpfs("1m", read_only=True)
    outcome = hello_dl("train", *_train_sets(leaky_dataset, read_only / "outputs"), timeout=600)
    message = refused(outcome, read_only, fix="Choose a folder you may write to")
    assert "Read-only file system" in message
    assert "WARNING: 1 image(s) are in more than one split" in outcome.out  # said before anything was written


@pytest.mark.slow
def test_a_full_disk_while_training_leaves_no_partial_file_and_the_earlier_run_stays_the_latest(
        outputs_with_a_run, fetched_dataset, tmpfs):
    _, old_run, _ = outputs_with_a_run
    size_kb = sum(p.stat().st_size for p in old_run.rglob("*") if p.is_file()) // 1024 + 24 * 1024
    disk = tmpfs(f"{size_kb}k", fill=lambda folder: shutil.copytree(old_run, folder / old_run.name))
    image = fetched_dataset / "TEST" / "abd2.png"
    predict = ["predict", image, "--profile", "smoke", "--set", f"output_dir={disk}"]
    before = accepted(hello_dl(*predict, timeout=300))
    outcome = hello_dl("train", *_train_sets(fetched_dataset, disk), timeout=900)
    message = refused(outcome, disk, fix="Free some space there")
    assert "No space left" in message and "MB free" in message
    assert _partial_files(disk) == []
    new_runs = [p for p in disk.iterdir() if p.is_dir() and p.name != old_run.name]
    assert len(new_runs) == 1 and not (new_runs[0] / "FINISHED").exists()
    assert accepted(hello_dl(*predict, timeout=300)) == before  # the earlier run answers, as before


@pytest.mark.slow
def test_interrupted_training_is_never_finished_and_leaves_no_partial_file(fetched_dataset, tmp_path):
    import queue
    import signal

    from hello_dl import runs
    from hello_dl.settings import load_settings

    outputs = tmp_path / "outputs"
    command = command_line("train", *_train_sets(fetched_dataset, outputs, "--set", "warmup_epochs=50"))
    # Ctrl-C as a terminal delivers it: the child starts with SIGINT at its default, even when this
    # test runs under a shell that ignores it (a background job: such a child never sees the signal).
    command = [sys.executable, "-c", "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
               "os.execv(sys.argv[1], sys.argv[1:])", *command]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=clean_environment(), stdin=subprocess.DEVNULL)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in child.stdout], daemon=True).start()
    deadline, seen = time.monotonic() + 600, ""
    try:
        while "Phase 1" not in seen and time.monotonic() < deadline:  # training has begun
            with contextlib.suppress(queue.Empty):
                seen += lines.get(timeout=1)
        assert "Phase 1" in seen, seen
        time.sleep(3)
        child.send_signal(signal.SIGINT)
        err = child.communicate(timeout=300)[1]
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 130 and "interrupted" in err and "Traceback" not in err, err
    (run,) = [p for p in outputs.iterdir() if p.is_dir()]
    assert not (run / "FINISHED").exists() and _partial_files(run) == []
    assert runs.list_runs(load_settings("smoke", environ={}, output_dir=str(outputs))) == []
