"""Get the tutorial's images onto this computer, safely, and prove they are the right ones.

``fetch_data(settings)`` accepts three kinds of ``settings.data_source``:

* a **URL** (the default: the paper's ``Open_I_abd_vs_CXRs.zip``), downloaded with a progress
  bar into a temporary file next to the data folder;
* a local **.zip** (the same archive, copied by hand onto an offline computer);
* a local **folder** (an unzipped copy, e.g. the course's shared copy).

Whatever the source, the images are first assembled in a temporary folder beside
``settings.data_dir``, every file is checked against ``data/MANIFEST.sha256``, and only then is
the folder renamed into place in one step. An interrupted or failed fetch therefore never
leaves a half-filled data folder, and a data folder that already passes the check is reused
as it is (running fetch twice is harmless).

Several fetches into the same data folder at once (a room of notebooks started together, or
``make run`` beside a notebook) take turns: the first holds a lock file beside the folder
(``.<folder name>.fetch-lock``) while it works; the others wait for it, for at most
:data:`LOCK_WAIT_SECONDS`, and then find and reuse its verified folder instead of fetching again.

Archives are extracted entry by entry; an entry with an absolute path, a ``..`` component or
a symbolic link is refused before anything is written ("zip-slip").
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import stat
import sys
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath
from typing import Iterator

try:
    import fcntl  # POSIX file locks (Linux, macOS: every place the kit runs)
except ImportError:  # pragma: no cover - Windows: no lock; the staged rename still keeps the folder whole
    fcntl = None

from hello_dl.errors import ChecksumError, DataError, OfflineError
from hello_dl.filetypes import file_hash, is_image_file, is_junk
from hello_dl.runs import publish_folder, staging_folder, storage_error
from hello_dl.settings import DEFAULT_DATA_URL, Settings, project_root

ARCHIVE_NAME = "Open_I_abd_vs_CXRs.zip"
REPOSITORY_URL = "https://github.com/paras42/Hello_World_Deep_Learning"

#: Web images that the original archive's TEST/ folder also holds. Not part of the paper's
#: data and missing from some copies: accepted (by md5) when present, never required.
OPTIONAL_TEST_IMAGES_MD5 = {
    "TEST/1200px-Normal_posteroanterior_(PA)_chest_radiograph_(X-ray).jpg": "f9974918c95489f126446822388797d8",
    "TEST/29ceb12b28ac68ae17f4943fae69154f.png": "5a179e8f7d7d2870c4907b66aad03f1a",
    "TEST/Chest_X-ray_of_sarcoidosis_nodules.png": "0dc0f0f20c9b8347e9e336c4dc38e106",
    "TEST/Plain-abdominal-x-ray-showing-the-foreign-body-in-the-right-upper-quadrant-of-abdomen.png":
        "6a014ec444de6f7b834bd41dafe09415",
}

#: Refuse archives that would unpack to more than this (the real one is about 5 MiB).
MAX_EXTRACTED_BYTES = 2 * 1024 ** 3
DOWNLOAD_TIMEOUT_SECONDS = 30
_CHUNK = 1 << 16
#: How long a fetch waits for another fetch into the same folder to finish (a slow download).
LOCK_WAIT_SECONDS = 15 * 60
_LOCK_POLL_SECONDS = 0.2
#: What a broken connection raises during a download (URLError, timeouts, resets and SSL errors are all
#: OSErrors; the target file's own errors are turned into StorageError before they get that far).
_NETWORK_ERRORS = (http.client.HTTPException, OSError)


# --- the manifest --------------------------------------------------------------------------------
def manifest_path() -> Path:
    """``data/MANIFEST.sha256`` of the kit (next to the package in a checkout)."""
    candidates = [Path(__file__).resolve().parents[2] / "data" / "MANIFEST.sha256",
                  project_root() / "data" / "MANIFEST.sha256"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise DataError(f"The checksum list data/MANIFEST.sha256 is missing (looked in {candidates[0].parent}). "
                    f"It ships with the kit: restore it with `git checkout data/MANIFEST.sha256`.")


def read_manifest(path: str | Path | None = None) -> dict[str, str]:
    """Relative path → sha256, from a ``sha256sum``-style file."""
    path = Path(path) if path is not None else manifest_path()
    entries = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        digest, _, name = line.partition("  ")
        if len(digest) != 64 or not name:
            raise DataError(f"{path}, line {number} is not '<sha256>  <path>': {line!r}.")
        entries[name.lstrip("*")] = digest.lower()
    return entries


def verify_dataset(folder: str | Path, manifest: dict[str, str] | None = None) -> list[str]:
    """Check ``folder`` against the manifest; return the problems (an empty list means verified).

    Problems are: a listed file missing, a file whose content differs (named), and an image
    inside TRAIN/VAL/TEST that is not listed (it would silently join the training data). The
    four optional web TEST images are accepted when their md5 matches.
    """
    folder = Path(folder)
    manifest = read_manifest() if manifest is None else manifest
    problems = []
    for relative, expected in sorted(manifest.items()):
        path = folder / relative
        if not path.is_file():
            problems.append(f"missing: {relative}")
        elif file_hash(path, "sha256") != expected:
            problems.append(f"content differs from the manifest: {relative}")
    for split in {name.split("/", 1)[0] for name in manifest}:
        if not (folder / split).is_dir():
            continue
        for path in sorted((folder / split).rglob("*")):
            relative = path.relative_to(folder).as_posix()
            if relative in manifest or not path.is_file() or is_junk(path.relative_to(folder)):
                continue
            if relative in OPTIONAL_TEST_IMAGES_MD5:
                if file_hash(path, "md5") != OPTIONAL_TEST_IMAGES_MD5[relative]:
                    problems.append(f"content differs from the original archive: {relative}")
            elif is_image_file(path):
                problems.append(f"not in the manifest: {relative}")
    return problems


def _raise_if_problems(problems: list[str], where: Path, source: str) -> None:
    if not problems:
        return
    shown = "\n  ".join(problems[:20]) + ("\n  ..." if len(problems) > 20 else "")
    raise ChecksumError(
        f"The images from {source} do not match the kit's checksum list (data/MANIFEST.sha256); "
        f"{len(problems)} problem(s) in {where}:\n  {shown}\n"
        f"Get a fresh copy of {ARCHIVE_NAME} (from {REPOSITORY_URL}) and run `hello-dl fetch` again. "
        f"Nothing was installed into the data folder."
    )


# --- sources ------------------------------------------------------------------------------------
def is_url(source: str) -> bool:
    return source.split("://", 1)[0].lower() in ("http", "https", "file") and "://" in source


def offline_help(data_dir: Path, url: str = DEFAULT_DATA_URL) -> str:
    return (
        f"To supply the images by hand:\n"
        f"  1. On a computer with internet, download {ARCHIVE_NAME} from\n"
        f"     {url}\n"
        f"     (or from {REPOSITORY_URL}, file {ARCHIVE_NAME}).\n"
        f"  2. Copy the zip (or the folder unzipped from it) onto this computer, e.g. with a USB stick.\n"
        f"  3. Run:  hello-dl fetch --source /path/to/{ARCHIVE_NAME}\n"
        f"     or set HELLO_DL_DATA_SOURCE=/path/to/{ARCHIVE_NAME} (a folder works too) and run the notebook again.\n"
        f"The images are checked against data/MANIFEST.sha256 and placed in {data_dir}."
    )


def download(url: str, target: Path, *, progress: bool = True, timeout: float = DOWNLOAD_TIMEOUT_SECONDS) -> Path:
    """Stream ``url`` into the new file ``target`` with a progress bar; on any failure ``target`` is removed.

    :func:`fetch_data` downloads into its staging folder, so a download is never seen half done.
    Raises :class:`OfflineError` if the server cannot be reached, answers with an error, stalls
    for ``timeout`` seconds or breaks off (fewer bytes than it announced); a full disk is a
    :class:`~hello_dl.runs.StorageError` instead.
    """
    # Not keras.utils.get_file: it has no timeout (a stalled server hangs a notebook) and Keras loads TensorFlow.
    from tqdm import tqdm  # here: ~0.2 s to import, and most fetches find the data already there

    request = urllib.request.Request(url, headers={"User-Agent": "hello-dl"})
    try:
        out = open(target, "xb", buffering=0)  # unbuffered: a full disk fails in _write_all, not at close
    except OSError as exc:
        raise storage_error(exc, target) from None
    try:
        with out, urllib.request.urlopen(request, timeout=timeout) as response:
            expected = int(response.headers.get("Content-Length") or 0) or None
            received = 0
            with tqdm(total=expected, unit="B", unit_scale=True, unit_divisor=1024, disable=not progress,
                      desc=f"Downloading {target.name}") as bar:
                while block := response.read(_CHUNK):
                    # If the disk fills: the rest of the download, and as much again to unpack it.
                    _write_all(out, block, target, None if expected is None else 2 * expected - received)
                    received += len(block)
                    bar.update(len(block))
            if expected is not None and received != expected:
                raise OfflineError(f"The download of {url} stopped after {received} of {expected} bytes.")
        return target
    except BaseException as exc:
        target.unlink(missing_ok=True)
        if isinstance(exc, urllib.error.HTTPError):
            raise OfflineError(f"The server answered {exc.code} ({exc.reason}) for {url}.") from None
        if isinstance(exc, _NETWORK_ERRORS):
            raise OfflineError(f"Could not download {url}: {getattr(exc, 'reason', exc)}.") from None
        raise


def _write_all(out, block: bytes, target: Path, needed: int | None) -> None:
    """Write one downloaded block; a full disk is said as such (with ``needed`` bytes), never as a network problem."""
    view = memoryview(block)
    try:
        while view:
            view = view[out.write(view):]
    except OSError as exc:
        raise storage_error(exc, target, needed or len(view)) from None


def _unsafe_reason(info: zipfile.ZipInfo) -> str | None:
    name = info.filename
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "it has an absolute path"
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if ".." in parts:
        return "it points outside the folder ('..')"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "it is a symbolic link"
    return None


def safe_extract(archive: Path, destination: Path) -> list[Path]:
    """Extract ``archive`` into ``destination`` after checking every entry (see the module notes).

    ``__MACOSX`` resource forks and OS clutter are skipped. Returns the extracted files.
    """
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"{archive} is not a readable zip archive ({exc}). Download or copy it again.") from None
    with zf:
        entries = zf.infolist()
        for info in entries:
            reason = _unsafe_reason(info)
            if reason:
                raise DataError(
                    f"Refusing to extract {archive}: the entry {info.filename!r} is unsafe because {reason}. "
                    f"Nothing was extracted. Get the archive again from {REPOSITORY_URL}."
                )
        if sum(info.file_size for info in entries) > MAX_EXTRACTED_BYTES:
            raise DataError(f"Refusing to extract {archive}: it would unpack to more than "
                            f"{MAX_EXTRACTED_BYTES // 1024 ** 3} GiB, far more than the tutorial's images.")
        root = destination.resolve()
        extracted = []
        for info in entries:
            relative = PurePosixPath(info.filename.replace("\\", "/"))
            if info.is_dir() or is_junk(Path(*relative.parts)):
                continue
            target = (root / Path(*relative.parts)).resolve()
            if root not in target.parents:  # belt and braces after the checks above
                raise DataError(f"Refusing to extract {info.filename!r} from {archive}: outside the target folder.")
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with zf.open(info) as src, open(target, "xb") as dst:
                    shutil.copyfileobj(src, dst, _CHUNK)
            except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as exc:
                raise DataError(f"{archive} is damaged: {info.filename} cannot be extracted ({exc}). "
                                f"Download or copy it again.") from None
            extracted.append(target)
    return extracted


def find_dataset_root(folder: Path, settings: Settings) -> Path:
    """The folder holding TRAIN/ and VAL/ (the archive wraps them in ``Open_I_abd_vs_CXRs/``)."""
    wanted = (settings.train_folder, settings.val_folder)
    candidates = [folder] + sorted(p for p in folder.rglob("*") if p.is_dir() and not is_junk(p.relative_to(folder)))
    for candidate in candidates:
        if all((candidate / name).is_dir() for name in wanted):
            return candidate
    raise DataError(
        f"No {wanted[0]}/ and {wanted[1]}/ folders were found in the data source. Point "
        f"HELLO_DL_DATA_SOURCE (or --source) at {ARCHIVE_NAME} or the folder unzipped from it."
    )


def _copy_dataset_folder(source: Path, destination: Path, settings: Settings) -> None:
    """Copy the split folders (only those) of a local dataset folder, skipping clutter."""
    root = find_dataset_root(source, settings)
    for split in (settings.train_folder, settings.val_folder, settings.test_folder):
        if not (root / split).is_dir():
            continue
        for path in sorted((root / split).rglob("*")):
            relative = path.relative_to(root)
            if path.is_dir() or is_junk(relative):
                continue
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)  # reads the source only; never moves it


# --- the whole fetch ---------------------------------------------------------------------------
def _check_existing(data_dir: Path, manifest: dict[str, str]) -> bool:
    """True if ``data_dir`` already holds the verified dataset; False if it is not there (or empty).

    A folder that holds anything else is refused, untouched, with what to do.
    """
    if not data_dir.exists():
        return False
    if data_dir.is_dir() and not any(data_dir.iterdir()):
        data_dir.rmdir()  # an empty folder (e.g. made by hand) is simply filled
        return False
    problems = verify_dataset(data_dir, manifest) if data_dir.is_dir() else ["it is a file, not a folder"]
    if not problems:
        return True
    shown = "\n  ".join(problems[:10])
    raise ChecksumError(
        f"The data folder {data_dir} already exists but does not match the checksum list:\n  {shown}\n"
        f"It was left untouched. Move or delete it, then run `hello-dl fetch` again "
        f"(or set HELLO_DL_DATA_DIR to a new folder)."
    )


def _assemble(source: str, staging: Path, settings: Settings, data_dir: Path, progress: bool) -> Path:
    """Download, unzip or copy ``source`` into ``staging``; return the folder holding TRAIN/ and VAL/."""
    if is_url(source) and not source.lower().startswith("file://"):
        archive = staging / ARCHIVE_NAME
        try:
            download(source, archive, progress=progress)
        except OfflineError as exc:
            raise OfflineError(f"{exc}\n{offline_help(data_dir, source)}") from None
        safe_extract(archive, staging / "unpacked")
        return find_dataset_root(staging / "unpacked", settings)
    local = Path(urllib.request.url2pathname(source[7:]) if source.lower().startswith("file://") else source)
    local = local.expanduser()
    if local.is_dir():
        _copy_dataset_folder(local, staging / "copied", settings)
        return staging / "copied"
    if local.is_file() and zipfile.is_zipfile(local):
        safe_extract(local, staging / "unpacked")
        return find_dataset_root(staging / "unpacked", settings)
    if local.exists():
        raise DataError(f"The data source {local} is neither a folder nor a zip archive. "
                        f"Give the path of {ARCHIVE_NAME} or of the folder unzipped from it.")
    raise DataError(f"The data source {local} does not exist.\n{offline_help(data_dir)}")


def lock_path(data_dir: str | Path) -> Path:
    """The lock file a fetch into ``data_dir`` holds while it works (hidden, beside the folder)."""
    data_dir = Path(data_dir)
    return data_dir.parent / f".{data_dir.name}.fetch-lock"


@contextlib.contextmanager
def fetch_lock(data_dir: str | Path, *, wait_seconds: float | None = None,
               progress: bool = True) -> Iterator[Path]:
    """Hold the fetch lock of ``data_dir`` for the block; wait (bounded) while another fetch holds it.

    The lock is an ``flock`` on the lock file, so a fetch that dies (Ctrl+C, a killed kernel)
    releases it at once; the file is removed by whoever held the lock last. Waiting longer than
    ``wait_seconds`` (default :data:`LOCK_WAIT_SECONDS`) raises :class:`DataError`.
    """
    path = lock_path(data_dir)
    wait = LOCK_WAIT_SECONDS if wait_seconds is None else wait_seconds
    if fcntl is None:
        yield path
        return
    deadline = time.monotonic() + wait
    told = False
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(path, "a+")
        except OSError as exc:
            raise storage_error(exc, path) from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            if time.monotonic() >= deadline:
                raise DataError(
                    f"Another fetch into {data_dir} ({_holder(path)}) was still running after {wait:.0f} s. "
                    f"Let it finish (or stop it), then run `hello-dl fetch` again; if none is running, "
                    f"delete {path}.") from None
            if progress and not told:
                print(f"Another fetch into {data_dir} is running ({_holder(path)}); waiting for it "
                      f"(at most {wait / 60:.0f} min)...", file=sys.stderr)
                told = True
            time.sleep(_LOCK_POLL_SECONDS)
            continue
        # The holder before us may have removed the file after we opened it: then this lock guards
        # nothing that others can see; start again on the file that is there now.
        try:
            same = os.path.samestat(os.fstat(handle.fileno()), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        handle.close()
    try:
        with contextlib.suppress(OSError):
            handle.truncate(0)
            handle.write(f"pid {os.getpid()}\n")
            handle.flush()
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)  # while still locked: a waiter then sees the file is gone and starts again
        handle.close()


def _holder(path: Path) -> str:
    try:
        return path.read_text().strip() or "a process"
    except OSError:
        return "a process"


def fetch_data(settings: Settings, *, progress: bool = True) -> Path:
    """Make ``settings.data_dir`` hold the verified dataset; return that folder.

    Reuses an existing folder that passes the check. Refuses (without touching it) an existing
    folder that does not, and says what to do. Fetches into the same folder take turns (see
    :func:`fetch_lock`): a later one waits and then reuses the first one's verified folder.
    """
    data_dir = Path(settings.data_dir)
    manifest = read_manifest()
    if _check_existing(data_dir, manifest):  # the everyday case: needs no lock, works on a read-only disk
        return data_dir
    source = str(settings.data_source).strip()
    with fetch_lock(data_dir, progress=progress):
        if _check_existing(data_dir, manifest):  # made by the fetch we waited for
            return data_dir
        with staging_folder(data_dir) as staging:
            root = _assemble(source, staging, settings, data_dir, progress)
            _raise_if_problems(verify_dataset(root, manifest), root, source)
            try:
                return publish_folder(root, data_dir)
            except FileExistsError:  # made meanwhile by a fetch that took no lock (e.g. another computer)
                if _check_existing(data_dir, manifest):
                    return data_dir
                return publish_folder(root, data_dir)


__all__ = [
    "ARCHIVE_NAME", "LOCK_WAIT_SECONDS", "OPTIONAL_TEST_IMAGES_MD5", "download", "fetch_data", "fetch_lock",
    "find_dataset_root", "is_url", "lock_path", "manifest_path", "offline_help", "read_manifest", "safe_extract",
    "verify_dataset",
]
