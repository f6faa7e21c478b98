"""Where the pretrained InceptionV3 weights come from, and clear words when they are not there.

``settings.weights`` (or ``HELLO_DL_WEIGHTS``) is one of:

* ``imagenet`` (the default): the ImageNet weights without the classification top. The file is
  looked for in the Keras cache first (``~/.keras/models/`` or ``$KERAS_HOME/models/``), then
  downloaded with Keras' own ``keras.utils.get_file`` and checked against the same checksum
  Keras uses for it.
* ``none``: no pretrained weights; the network learns from scratch (the only choice offline).
* a path to an InceptionV3 "notop" ``.h5`` file copied by hand (e.g. on a machine without
  internet).

Whatever the source, the file is checked before use, so a damaged or wrong file stops with a
message that names it and says what to do, instead of an h5py traceback.
"""

from __future__ import annotations

import os
from pathlib import Path

from hello_dl import filetypes
from hello_dl.errors import WeightsError
from hello_dl.runs import staging_folder
from hello_dl.settings import Settings

#: The file Keras itself downloads for ``InceptionV3(weights="imagenet", include_top=False)``.
WEIGHTS_FILE_NAME = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
#: Where Keras downloads it from; a module constant so tests can point it at a local server.
WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/" + WEIGHTS_FILE_NAME
#: The MD5 checksum Keras verifies for this file (keras/src/applications/inception_v3.py).
WEIGHTS_FILE_HASH = "bcbd6486424b2319ff4ef7d526e38f63"

#: InceptionV3 without its top has 94 convolutions, each followed by a BatchNorm layer.
EXPECTED_LAYERS_WITH_WEIGHTS = 188
#: The first convolution sees 3 colour channels and has 32 filters of 3x3.
EXPECTED_FIRST_KERNEL_SHAPE = (3, 3, 3, 32)

PREFETCH_COMMANDS = "hello-dl fetch --weights-only   (or: python scripts/prefetch.py)"


def weights_choice(settings: Settings) -> str:
    """``"imagenet"``, ``"none"`` or ``"file"``: which kind of weights the settings ask for."""
    value = str(settings.weights).strip()
    if value.lower() in {"imagenet", "none", ""}:
        return value.lower() or "none"
    return "file"


def uses_pretrained_weights(settings: Settings) -> bool:
    return weights_choice(settings) != "none"


def keras_cache_dir() -> Path:
    """Keras' cache folder, read now (Keras itself reads ``KERAS_HOME`` once, at import)."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras").expanduser()


def cached_weights_path() -> Path:
    """Where Keras keeps (and we look for) the ImageNet notop file."""
    return keras_cache_dir() / "models" / WEIGHTS_FILE_NAME


def resolve_weights(settings: Settings, *, download: bool = True) -> str | None:
    """The path of a checked weights file for ``settings.weights``, or ``None`` for ``none``.

    For ``imagenet`` the Keras cache is used when it holds a good copy; otherwise the file is
    downloaded (unless ``download=False``), which needs the internet once.
    """
    choice = weights_choice(settings)
    if choice == "none":
        return None
    if choice == "file":
        path = Path(str(settings.weights).strip()).expanduser()
        if not path.is_file():
            raise WeightsError(
                f"The weights file {path} does not exist (setting 'weights', "
                f"from {settings.sources.get('weights', 'default')}). Check the path, or set "
                "HELLO_DL_WEIGHTS=imagenet to use the standard ImageNet weights, or "
                "HELLO_DL_WEIGHTS=none to train from scratch.")
        check_weights_file(path)
        return str(path)

    cached = cached_weights_path()
    if cached.is_file() and filetypes.file_hash(cached, "md5") == WEIGHTS_FILE_HASH:
        check_weights_file(cached)
        return str(cached)
    if not download:
        raise WeightsError(_missing_message(cached, reason="downloading was not allowed here"))
    return str(download_weights())


def download_weights(url: str | None = None, file_hash: str | None = None) -> Path:
    """Download the ImageNet notop file into the Keras cache with ``keras.utils.get_file``.

    The download lands in a temporary folder inside the cache and only a file that passes the
    checksum and the structure check replaces the cached one, so an interrupted or failed
    download never leaves a broken file behind (nor removes the one that was there).
    ``url`` and ``file_hash`` default to the module constants (read at call time, so tests can
    point them at a local server).
    """
    import keras  # here, not at the top: importing Keras loads TensorFlow (~8 s)

    url = url or WEIGHTS_URL
    file_hash = file_hash or WEIGHTS_FILE_HASH
    target = cached_weights_path()
    with staging_folder(target) as staging:
        try:
            downloaded = Path(keras.utils.get_file(WEIGHTS_FILE_NAME, url, cache_subdir=str(staging),
                                                   file_hash=file_hash, cache_dir=str(keras_cache_dir())))
        except ValueError as exc:  # get_file's "hash does not match" after a download
            raise WeightsError(
                f"The weights file downloaded from {url} is damaged or incomplete (its checksum does "
                f"not match). Try again later, or copy a good {WEIGHTS_FILE_NAME} to {target}. "
                "To go on without pretrained weights, set HELLO_DL_WEIGHTS=none.") from exc
        except Exception as exc:  # get_file wraps every network failure in a plain Exception
            text = str(exc)
            reason = text.split(" -- ")[-1] if " -- " in text else text
            if target.is_file():
                raise WeightsError(
                    f"The weights file {target} is damaged or incomplete (its checksum does not match), "
                    f"and a fresh copy could not be downloaded ({reason}). Replace it with a good copy "
                    f"(on a computer with internet run: {PREFETCH_COMMANDS}), or set "
                    "HELLO_DL_WEIGHTS=none to train without pretrained weights.") from None
            raise WeightsError(_missing_message(target, reason=reason)) from None
        check_weights_file(downloaded)
        # A rename on the same disk; unlike publish_folder it replaces the damaged cached copy, if any.
        os.replace(downloaded, target)
    return target


def prefetch_weights(settings: Settings) -> Path:
    """Make sure the ImageNet weights are on this computer (for later offline use); return the file.

    A ``weights`` setting that names a file is checked instead; ``none`` still fetches the
    ImageNet file, since prefetching is asked for explicitly.
    """
    if weights_choice(settings) == "file":
        return Path(resolve_weights(settings))
    return Path(resolve_weights(settings.replace(weights="imagenet")))


def check_weights_file(path: str | Path) -> None:
    """Refuse a file that is not an InceptionV3 notop weights file, with a message, not a traceback."""
    import h5py  # here: ~0.5 s to import, needed only when a weights file is checked

    path = Path(path)
    fix = (f"Replace it with a good copy of {WEIGHTS_FILE_NAME} (on a computer with internet run: "
           f"{PREFETCH_COMMANDS}), or set HELLO_DL_WEIGHTS=none to train without pretrained weights.")
    if not h5py.is_hdf5(str(path)):
        raise WeightsError(f"The weights file {path} is damaged or is not a weights file at all "
                           f"(it is not an HDF5 .h5 file). {fix}")
    try:
        with h5py.File(path, "r") as handle:
            group = handle["model_weights"] if "layer_names" not in handle.attrs and "model_weights" in handle \
                else handle
            if "layer_names" not in group.attrs:
                raise WeightsError(f"The file {path} is an HDF5 file but holds no Keras layer weights. {fix}")
            layers = [_text(name) for name in group.attrs["layer_names"]]
            with_weights = [name for name in layers if len(group[name].attrs.get("weight_names", [])) > 0]
            if "predictions" in with_weights:
                raise WeightsError(
                    f"The file {path} holds InceptionV3 weights WITH the ImageNet classification top; "
                    f"this kit needs the version without it ({WEIGHTS_FILE_NAME}). {fix}")
            first_shape = None
            if with_weights:
                first = group[with_weights[0]]
                first_shape = tuple(first[_text(first.attrs["weight_names"][0])].shape)
    except WeightsError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise WeightsError(f"The weights file {path} could not be read ({exc}); it is probably damaged "
                           f"or incomplete. {fix}") from None
    if len(with_weights) != EXPECTED_LAYERS_WITH_WEIGHTS or first_shape != EXPECTED_FIRST_KERNEL_SHAPE:
        raise WeightsError(
            f"The weights file {path} does not fit InceptionV3 without its top: it has "
            f"{len(with_weights)} layers with weights (InceptionV3 has {EXPECTED_LAYERS_WITH_WEIGHTS}) and "
            f"its first kernel is {first_shape} (expected {EXPECTED_FIRST_KERNEL_SHAPE}). It was made "
            f"for a different network. {fix}")


def _missing_message(target: Path, *, reason: str) -> str:
    return (
        f"The pretrained ImageNet weights ({WEIGHTS_FILE_NAME}, about 84 MB) are not on this computer "
        f"and could not be downloaded ({reason}).\n"
        f"  - Put the file here: {target}\n"
        f"    (or anywhere, then set HELLO_DL_WEIGHTS=/path/to/{WEIGHTS_FILE_NAME}).\n"
        f"  - To get it, on a computer with internet run: {PREFETCH_COMMANDS},\n"
        f"    then copy {WEIGHTS_FILE_NAME} from that computer's ~/.keras/models/ folder.\n"
        f"    Direct link: {WEIGHTS_URL}\n"
        "  - Or go on without pretrained weights: set HELLO_DL_WEIGHTS=none (the network then learns "
        "from scratch, which is slower and less accurate)."
    )


def _text(value: object) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


__all__ = [
    "WEIGHTS_FILE_HASH", "WEIGHTS_FILE_NAME", "WEIGHTS_URL", "cached_weights_path", "check_weights_file",
    "download_weights", "keras_cache_dir", "prefetch_weights", "resolve_weights", "uses_pretrained_weights",
    "weights_choice",
]
