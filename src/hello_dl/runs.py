"""The run folder's owner, and the kit's one way of writing files safely.

This first part is the writer every module uses (run folders, figures, executed notebooks,
fetched data, splits, DICOM exports, downloaded weights):

* :func:`write_atomic` writes text, bytes or JSON to a temporary file in the target's own
  folder, flushes it to disk (``fsync``) and renames it over the target in one step. A reader
  never sees half a file; a crash or a full disk leaves the old file (or none), never a
  truncated one. ``exclusive=True`` never replaces a file that is already there.
* :func:`staging_folder` / :func:`publish_folder` do the same for a whole folder: assemble it in
  a temporary folder beside the destination, then rename it into place at once.

A full disk or a folder the user may not write to ends in a :class:`~hello_dl.errors.HelloDLError`
that names the folder and the fix, never in a raw ``OSError`` traceback.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from hello_dl.errors import HelloDLError


class StorageError(HelloDLError):
    """A file or folder could not be written: disk full, read-only, no permission."""


def _plain(value: Any) -> Any:
    """JSON fallback for NumPy scalars and arrays, paths and anything else printable."""
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def json_text(data: Any) -> str:
    """The kit's JSON layout: indented, NumPy values made plain, a final newline."""
    return json.dumps(data, indent=2, default=_plain) + "\n"


def _users_folder(path: Path) -> Path:
    """The folder to name for a write to ``path``: above any temporary staging folder (it is gone by then)."""
    folder = Path(path).parent
    for depth, part in enumerate(folder.parts):
        if part.startswith(".") and ".partial-" in part:
            return Path(*folder.parts[:depth])
    return folder


def storage_error(exc: OSError, path: Path, needed_bytes: int | None = None) -> HelloDLError:
    """A plain-words error for an OS failure while writing ``path`` (or the original error's text)."""
    folder = _users_folder(Path(path))
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        need = f" (about {needed_bytes / 1e6:.1f} MB more were needed)" if needed_bytes else ""
        return StorageError(f"No space left on the disk that holds {folder}{need}. Free some space there, or "
                            f"choose a folder on a disk with room, and run again. Nothing half-written was kept.")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return StorageError(f"The folder {folder} cannot be written to ({exc.strerror}). Choose a folder you "
                            f"may write to (HELLO_DL_OUTPUT_DIR for runs, HELLO_DL_DATA_DIR for the data, or "
                            f"the folder given on the command line), or ask whoever owns {folder} to make it "
                            f"writable.")
    return StorageError(f"Could not write {path}: {exc.strerror or exc}.")


def _fsync_folder(folder: Path) -> None:
    # Makes the rename itself survive a power cut; not every file system allows it, and that is fine.
    with contextlib.suppress(OSError):
        handle = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)


def write_atomic(path: str | Path, data: str | bytes | Any, *, exclusive: bool = False) -> Path:
    """Write ``data`` to ``path`` all at once: ``str`` as UTF-8 text, ``bytes`` as is, anything else as JSON.

    With ``exclusive=True`` an existing ``path`` is left as it is and :class:`FileExistsError`
    is raised (a file that appeared meanwhile is never replaced either).
    """
    path = Path(path)
    payload = data if isinstance(data, bytes) else (data if isinstance(data, str) else json_text(data)).encode("utf-8")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    except OSError as exc:
        raise storage_error(exc, path, len(payload)) from None
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(payload)
            out.flush()
            os.fsync(out.fileno())
        # mkstemp makes the file private (0600); give it the mode any new file of this user gets.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        if exclusive:
            os.link(temporary, path)  # refuses an existing target, atomically
        else:
            os.replace(temporary, path)
    except FileExistsError:
        raise
    except OSError as exc:
        raise storage_error(exc, path, len(payload)) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
    _fsync_folder(path.parent)
    return path


def write_json(path: str | Path, data: Any) -> Path:
    """:func:`write_atomic` for JSON (kept as its own name because most run files are JSON)."""
    return write_atomic(path, json_text(data))


@contextlib.contextmanager
def staging_folder(destination: str | Path) -> Iterator[Path]:
    """A new temporary folder beside ``destination`` (same disk), removed when the block ends.

    Build the result inside it, then move it into place with :func:`publish_folder`; whatever
    happens in between, nothing is left behind and ``destination`` is never half-filled.
    """
    destination = Path(destination)
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.partial-", dir=destination.parent))
        # mkdtemp makes the folder private (0700); once published it needs the mode any new folder gets.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, 0o777 & ~umask)
    except OSError as exc:
        raise storage_error(exc, destination) from None
    try:
        yield staging
    except OSError as exc:
        # Only a failure to write inside the staging folder is a storage problem (full disk,
        # permissions); anything else, such as an unreadable source file, keeps its own message.
        # (A copy names its source first: the name to report is the one inside the staging folder.)
        written = [Path(name) for name in (exc.filename, getattr(exc, "filename2", None)) if name]
        inside = [name for name in written if name.resolve().is_relative_to(staging.resolve())]
        if inside:
            raise storage_error(exc, inside[0]) from None
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def publish_folder(ready: str | Path, destination: str | Path) -> Path:
    """Rename the finished folder ``ready`` to ``destination`` in one step (both on the same disk).

    An existing ``destination`` is never replaced: :class:`FileExistsError` is raised instead.
    """
    ready, destination = Path(ready), Path(destination)
    if destination.exists():
        raise FileExistsError(errno.EEXIST, "already exists", str(destination))
    try:
        os.rename(ready, destination)
    except OSError as exc:
        if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
            raise FileExistsError(errno.EEXIST, "already exists", str(destination)) from None
        raise storage_error(exc, destination) from None
    _fsync_folder(destination.parent)
    return destination


__all__ = ["StorageError", "json_text", "publish_folder", "staging_folder", "storage_error", "write_atomic",
           "write_json"]
