"""Shared test fixtures: the shared dataset, isolated settings, small real files.

Every test gets a clean environment: no HELLO_DL_* variable leaks in from the shell (CI sets
HELLO_DL_DATA_SOURCE; the fixtures below pass it on explicitly where it is wanted).
"""

from __future__ import annotations

import contextlib
import http.server
import os
import shutil
import subprocess
import threading
import zipfile
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")  # figures render to files, never to a window

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATASET = Path(
    os.environ.get("HELLO_DL_DATA_SOURCE")
    or PROJECT_ROOT.parent / "shared" / "datasets" / "open_i_abd_vs_cxr"
)


#: Room to leave per test process: its heaviest test trains a fully trainable InceptionV3 at
#: 75 px with a notebook kernel or a benchmark worker beside it.
MEMORY_PER_TEST_WORKER = 3 * 2**30


def pytest_xdist_auto_num_workers(config):
    """``-n auto`` (``make test``): one test process per usable core, as many as memory allows, at most 4.

    Most of the suite's time is TensorFlow tracing graphs and notebook kernels starting, which use
    one core each, so a second process keeps a 2-core machine busy; more processes than cores only
    make each training slower, and each process can need ``MEMORY_PER_TEST_WORKER`` at its peak.
    """
    from hello_dl.room.sizing import machine_memory  # the room's sizing rule reads memory the same way

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, machine_memory() // MEMORY_PER_TEST_WORKER, 4))


def _shared_dataset_or_skip() -> Path:
    if not (SHARED_DATASET / "TRAIN").is_dir():
        pytest.skip(f"the shared OpenI dataset is not at {SHARED_DATASET} "
                    "(set HELLO_DL_DATA_SOURCE to a local copy of it)")
    return SHARED_DATASET


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch):
    for key in list(os.environ):
        if key.startswith("HELLO_DL_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("HELLO_DL_HOME", str(PROJECT_ROOT))


@pytest.fixture(scope="session")
def shared_dataset() -> Path:
    """The read-only shared copy of the paper's 77 images (TRAIN/VAL/TEST)."""
    return _shared_dataset_or_skip()


@pytest.fixture(scope="session")
def fetched_dataset(tmp_path_factory) -> Path:
    """The shared dataset fetched (copied and verified) into a temporary data folder, once per run."""
    from hello_dl.fetch import fetch_data
    from hello_dl.settings import load_settings

    source = _shared_dataset_or_skip()
    data_dir = tmp_path_factory.mktemp("data") / "open_i_abd_vs_cxr"
    settings = load_settings("smoke", environ={}, data_source=str(source), data_dir=str(data_dir))
    return fetch_data(settings)


@pytest.fixture
def smoke_settings(tmp_path, fetched_dataset):
    """Factory: smoke-profile settings on the fetched dataset, writing into this test's tmp folder."""
    from hello_dl.settings import load_settings

    def make(**overrides):
        values = {"data_source": str(SHARED_DATASET), "data_dir": str(fetched_dataset),
                  "output_dir": str(tmp_path / "outputs")}
        values.update(overrides)
        return load_settings("smoke", environ={}, **values)

    return make


def tree_hashes(folder: Path) -> dict[str, str]:
    """Relative path → sha256 of every file below ``folder`` (to prove sources stay untouched)."""
    import hashlib

    folder = Path(folder)
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def untouched():
    """Call ``untouched(folder)`` to snapshot a folder; the test fails if any file in it changed."""
    snapshots: list[tuple[Path, dict[str, str]]] = []

    def guard(folder):
        snapshots.append((Path(folder), tree_hashes(folder)))
        return folder

    yield guard
    for folder, before in snapshots:
        assert tree_hashes(folder) == before, f"files in {folder} were changed, added or removed"


def write_dicom(path, pixels, *, photometric="MONOCHROME2", bits_stored=None, slope=None, intercept=None,
                window=None, voi_function=None, voi_lut=None, modality="DX"):
    """Write a real, standard-conforming uncompressed DICOM file with pydicom.

    ``pixels`` is a 2-D integer array (signed or not, 8 or 16 bits; or (H, W, 3) uint8 for RGB);
    pydicom's ``set_pixel_data`` derives rows, columns, bits allocated and pixel representation
    from it. ``bits_stored`` defaults to the array's item size; ``window`` is (centre, width);
    ``voi_lut`` is (first_mapped, bits, data).
    """
    import numpy as np
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence
    from pydicom.uid import SecondaryCaptureImageStorage

    pixels = np.asarray(pixels)
    ds = Dataset()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.PatientName = "Test^Phantom"
    ds.Modality = modality
    ds.set_pixel_data(pixels, photometric, bits_stored or pixels.dtype.itemsize * 8)
    if slope is not None or intercept is not None:
        ds.RescaleSlope = slope if slope is not None else 1
        ds.RescaleIntercept = intercept if intercept is not None else 0
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if voi_function:
        ds.VOILUTFunction = voi_function
    if voi_lut is not None:
        first, lut_bits, data = voi_lut
        item = Dataset()
        item.LUTDescriptor = [len(data), first, lut_bits]
        item.add_new(0x00283006, "US", [int(v) for v in data])  # LUT Data; VR is ambiguous, say US
        ds.VOILUTSequence = Sequence([item])
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return Path(path)


def refusal(read, path) -> str:
    """``read(path)`` must refuse the file with a DataError whose message names it; returns the message."""
    from hello_dl.errors import DataError

    with pytest.raises(DataError) as caught:
        read(path)
    message = str(caught.value)
    assert str(path) in message, message
    return message


@pytest.fixture
def dicom_file():
    """Factory fixture: ``dicom_file(path, pixels, **options)`` writes a DICOM file (see write_dicom)."""
    return write_dicom


@pytest.fixture(scope="session")
def inception_notop_h5(tmp_path_factory) -> Path:
    """A real InceptionV3-without-top weights file in Keras' legacy .h5 layout (random weights, ~88 MB).

    Same layers and shapes as the ImageNet file Keras downloads, which cannot be fetched here.
    """
    import keras

    path = tmp_path_factory.mktemp("weights") / "inception_v3_notop_random.h5"
    keras.utils.set_random_seed(0)
    base = keras.applications.InceptionV3(include_top=False, weights=None, input_shape=(75, 75, 3))
    base.save(path)  # .h5 suffix: Keras' legacy HDF5 format, as the published weights files
    return path


#: The shared trained run: the smoke profile with just enough epochs to learn from scratch at 75 px.
#: Batch 13 (5 steps per epoch) keeps BatchNorm's statistics steady; without augmentation the
#: 65 training images are learned in a few epochs. The two-phase knobs are pinned (the smoke
#: profile without weights now trains with the from-scratch recipe, which tests/test_recipes.py
#: trains): the thresholds of the tests that share this run were measured with them.
SMOKE_RUN_OVERRIDES = {"finetune_epochs": 7, "batch_size": 13, "augment": "false", "warmup_epochs": 1,
                       "learning_rate": 1e-4, "finetune_learning_rate": 1e-4, "bn_momentum_from_scratch": 0.5}


def _smoke_run_command(data_dir: Path, output_dir: Path) -> tuple[dict, list[str]]:
    """The shared run's settings values and its ``hello-dl`` command line (without the program name)."""
    values = {"data_dir": str(data_dir), "output_dir": str(output_dir), **SMOKE_RUN_OVERRIDES}
    argv = ["train", "--profile", "smoke"]
    for key, value in values.items():
        argv += ["--set", f"{key}={value}"]
    return values, argv


def _train_smoke_run(data_dir: Path, output_dir: Path):
    """``hello-dl train --profile smoke`` with ``SMOKE_RUN_OVERRIDES`` into ``output_dir``; see ``smoke_run``."""
    import io
    from types import SimpleNamespace

    from hello_dl import cli
    from hello_dl.settings import load_settings

    values, argv = _smoke_run_command(data_dir, output_dir)
    buffer = io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        for key in list(os.environ):
            if key.startswith("HELLO_DL_"):
                patch.delenv(key)
        patch.setenv("HELLO_DL_HOME", str(PROJECT_ROOT))
        with contextlib.redirect_stdout(buffer):
            exit_code = cli.main(argv)
        settings = load_settings("smoke", environ={}, **values)
    runs = sorted(p for p in output_dir.iterdir() if p.is_dir())
    return SimpleNamespace(run_dir=runs[-1] if runs else None, output=buffer.getvalue(), exit_code=exit_code,
                           argv=argv, settings=settings, runs=runs)


def xdist_shared_folder(tmp_path_factory) -> Path | None:
    """The folder all test processes of this ``pytest -n`` session share, or None in a single process.

    pytest-xdist gives each worker the base temporary folder ``<session's>/popen-gwN``; its parent
    is the session's own (new for every run of the suite), so nothing carries over between runs.
    """
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return None
    return tmp_path_factory.getbasetemp().parent


@contextlib.contextmanager
def exclusive(lock_file: Path):
    """Hold an exclusive lock on ``lock_file`` (one test process at a time; released if the holder dies)."""
    import fcntl

    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


#: Text files of a run folder that may name the folders it was trained with.
_RUN_TEXT_SUFFIXES = {".json", ".md", ".csv", ".txt"}


def _relocate_text(text: str, moves: dict[str, str]) -> str:
    for old, new in moves.items():
        text = text.replace(old, new)
    return text


def _adopt_smoke_run(store: Path, data_dir: Path, output_dir: Path):
    """This process's copy of the run another test process trained, as if it had trained it here.

    The run folder is copied (times kept) into this process's own outputs folder, and every path
    of the training process's data and outputs folders, in the run's text files and in what the
    command printed, becomes this process's (the times are kept there too: the card is still
    older than the FINISHED marker). The settings and the command line are this process's own.
    """
    import json
    from types import SimpleNamespace

    from hello_dl.settings import load_settings

    record = json.loads((store / "record.json").read_text())
    moves = {record["output_dir"]: str(output_dir), record["data_dir"]: str(data_dir)}
    shutil.copytree(store / "outputs", output_dir, dirs_exist_ok=True)
    for path in output_dir.rglob("*"):
        if path.is_file() and path.suffix in _RUN_TEXT_SUFFIXES:
            text = path.read_text()
            moved = _relocate_text(text, moves)
            if moved != text:
                stat = path.stat()
                path.write_text(moved)
                os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    values, argv = _smoke_run_command(data_dir, output_dir)
    settings = load_settings("smoke", environ={}, **values)
    runs = sorted(p for p in output_dir.iterdir() if p.is_dir())
    return SimpleNamespace(run_dir=runs[-1] if runs else None, output=_relocate_text(record["output"], moves),
                           exit_code=record["exit_code"], argv=argv, settings=settings, runs=runs)


@pytest.fixture(scope="session")
def smoke_run(fetched_dataset, tmp_path_factory):
    """ONE real training run (``hello-dl train --profile smoke``), shared by every test that needs one.

    Returns a namespace with ``run_dir``, ``output`` (what the command printed), ``exit_code``,
    ``argv`` and ``settings`` (the settings the run used).

    Under ``pytest -n`` it is trained once for the whole session, not once per test process: the
    first process to need it trains it (the others wait on a lock) and leaves a copy of its outputs
    folder, what the command printed and its exit code in the session's shared folder; each other
    process copies that run into its own outputs folder (see ``_adopt_smoke_run``), so every process
    has a private run of its own, with its own data folder, as if it had trained it. A training
    that raises leaves nothing behind, and the next process to need the run trains it itself.
    """
    import hashlib
    import json

    output_dir = tmp_path_factory.mktemp("runs")
    shared = xdist_shared_folder(tmp_path_factory)
    if shared is None:
        return _train_smoke_run(fetched_dataset, output_dir)
    key = hashlib.sha256(json.dumps(SMOKE_RUN_OVERRIDES, sort_keys=True).encode()).hexdigest()[:12]
    store = shared / f"smoke-run-{key}"
    with exclusive(shared / f"smoke-run-{key}.lock"):
        if not (store / "record.json").is_file():
            run = _train_smoke_run(fetched_dataset, output_dir)
            shutil.rmtree(store, ignore_errors=True)
            shutil.copytree(output_dir, store / "outputs")  # copy2: the files' times are kept
            record = {"output": run.output, "exit_code": run.exit_code, "data_dir": str(fetched_dataset),
                      "output_dir": str(output_dir)}
            (store / "record.tmp").write_text(json.dumps(record))
            os.replace(store / "record.tmp", store / "record.json")  # last: the copy is complete
            return run
    return _adopt_smoke_run(store, fetched_dataset, output_dir)


# --- a web server on 127.0.0.1, and archives to serve ---------------------------------------------------
#: The top folder inside the paper's archive.
TOP = "Open_I_abd_vs_CXRs"


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output clean
        pass


@pytest.fixture
def http_server(monkeypatch):
    """Serve a folder on 127.0.0.1 (free port) from a thread; yields a function folder → base URL."""
    for key in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    servers = []

    def serve(folder: Path, handler=QuietHandler) -> str:
        def make_handler(*args, **kwargs):
            return handler(*args, directory=str(folder), **kwargs)

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), make_handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


def build_zip(source: Path, target: Path, extra: dict[str, bytes] | None = None) -> Path:
    """A zip shaped like the original archive: a top folder, plus macOS clutter."""
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(f"{TOP}/", b"")
        for path in sorted(source.rglob("*")):
            if path.is_file() and path.relative_to(source).parts[0] in ("TRAIN", "VAL", "TEST"):
                archive.write(path, f"{TOP}/{path.relative_to(source).as_posix()}")
        archive.writestr(f"{TOP}/.DS_Store", b"\x00\x00\x00\x01Bud1")
        archive.writestr(f"__MACOSX/{TOP}/TRAIN/._openI_1.png", b"\x00\x05\x16\x07")
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return target


def unsafe_zip(path: Path, entry: str) -> Path:
    """A "zip-slip" archive: one harmless image plus ``entry`` (a ``..`` or absolute name, or ``"link"``: a symlink)."""
    import stat

    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{TOP}/TRAIN/openI_CXR/fine.png", b"harmless")
        if entry == "link":
            info = zipfile.ZipInfo(f"{TOP}/TRAIN/openI_CXR/link.png")
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, "/etc/passwd")
        else:
            archive.writestr(zipfile.ZipInfo(entry), b"payload")
    return path


# --- small real file systems: full and read-only disks ---------------------------------------------------
@pytest.fixture
def tmpfs(tmp_path):
    """Factory: ``tmpfs(size="2m", read_only=False, fill=None)`` mounts a small tmpfs and returns its folder.

    A real file system, so a full disk really fails with ENOSPC and a read-only one with EROFS
    (root ignores file modes, so chmod cannot make a folder read-only for CI, which runs as root).
    ``fill(folder)`` runs before a read-only mount is made read-only. Unmounted when the test ends;
    skipped, with the reason, where mounting is not possible (not root, no mount command).
    """
    mounted: list[Path] = []

    def mount(size: str = "2m", *, read_only: bool = False, fill=None) -> Path:
        if os.geteuid() != 0 or shutil.which("mount") is None:
            pytest.skip("mounting a small tmpfs needs root and the mount command (CI runs as root)")
        folder = tmp_path / f"mount{len(mounted)}"
        folder.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(folder)],
                              capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
        mounted.append(folder)
        if fill is not None:
            fill(folder)
        if read_only:
            subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True, capture_output=True, timeout=30)
        return folder

    yield mount
    for folder in reversed(mounted):
        if subprocess.run(["umount", str(folder)], capture_output=True, timeout=30).returncode != 0:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True, timeout=30)  # busy: detach
