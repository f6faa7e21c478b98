"""The input pipeline: image files → batches the model trains and validates on.

For each split::

    files ─► images.load_image + resize (once, in Python) ─► in-memory uint8 cache
          ─► tf.data: [shuffle with the seed] ─► batch ─► [augment] ─► preprocess to [-1, 1] ─► prefetch
                       (training only)                     (training only)

Why decode in Python and not with ``tf.io.decode_image``: a radiology kit must read 16-bit
PNGs, palette and CMYK files, transparency and DICOM, and it must read them **exactly the
same way** when training and when a participant later asks the model about a new file.
``tf.io`` handles neither DICOM nor CMYK/palette/16-bit the way :mod:`hello_dl.images` does,
and two decoders are how train/inference skew creeps in. So every image, for training,
validation, prediction, Grad-CAM and previews, goes through :func:`hello_dl.images.load_image`
once; the decoded, resized uint8 arrays are kept in memory (the dataset is tiny: 75 images at
299x299 are about 20 MB) and everything after that is built from TensorFlow/Keras utilities:
``tf.data.Dataset.from_tensor_slices``, ``shuffle`` (seeded), ``batch``, ``cache``,
``prefetch``, Keras preprocessing layers for augmentation and
``keras.applications.inception_v3.preprocess_input`` for the scaling.

Rules the original notebooks broke and this module keeps:

* InceptionV3 expects pixels scaled to **[-1, 1]** (its own ``preprocess_input``), not [0, 1].
* **Only training batches are augmented**; validation and test data never are.
* **Every validation image is used every epoch** (no ``drop_remainder``, no fixed step count
  that skips images).
* Labels follow ``settings.class_folders`` order (chest = 0, abdomen = 1), shown by
  ``class_info.describe()``.

Augmentation fills the area uncovered by a rotation/shift/zoom with **black** (constant 0), the
same black used to pad images when ``keep_aspect_ratio`` is on, rather than mirroring anatomy
into the corners. ``settings.shear`` is the Keras 3 ``RandomShear`` factor (a fraction of the
image size); the paper's old ``ImageDataGenerator(shear_range=0.2)`` meant 0.2 *degrees*, i.e.
almost nothing, so this kit's shear is deliberately the stronger, documented choice.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

from hello_dl import dataset as dataset_module
from hello_dl.dataset import ClassInfo
from hello_dl.errors import DataError
from hello_dl.images import load_image, resize_image
from hello_dl.settings import Settings

if TYPE_CHECKING:  # pragma: no cover
    import keras
    import tensorflow as tf

#: Label used in arrays for images whose class is unknown (a flat TEST/ folder).
UNKNOWN_LABEL = -1


# --- decoding (cached) ---------------------------------------------------------------------------
@lru_cache(maxsize=1024)
def _decoded(path: str, mtime_ns: int, size_bytes: int, image_size: int, keep_aspect_ratio: bool) -> np.ndarray:
    # The file's modification time and size are part of the key, so an edited file is re-read.
    array = resize_image(load_image(path), image_size, keep_aspect_ratio)
    array.flags.writeable = False  # shared between callers: nobody may change it in place
    return array


def load_for_model(path: str | Path, settings: Settings) -> np.ndarray:
    """One file as the model sees it before scaling: ``(size, size, 3)`` uint8 (cached, read-only)."""
    path = Path(path)
    try:
        info = os.stat(path)
    except OSError:
        raise DataError(f"Image file not found: {path}. Check the name and folder.") from None
    return _decoded(str(path), info.st_mtime_ns, info.st_size, int(settings.image_size),
                    bool(settings.keep_aspect_ratio))


def load_images(paths: Iterable[str | Path], settings: Settings) -> np.ndarray:
    """Many files as one ``(N, size, size, 3)`` uint8 array; every unreadable file is named at once."""
    paths = [Path(p) for p in paths]
    arrays, problems = [], []
    for path in paths:
        try:
            arrays.append(load_for_model(path, settings))
        except DataError as exc:
            problems.append(str(exc))
    if problems:
        raise DataError(f"{len(problems)} image(s) cannot be used:\n  " + "\n  ".join(problems))
    if not arrays:
        return np.zeros((0, settings.image_size, settings.image_size, 3), dtype=np.uint8)
    return np.stack(arrays)


def clear_cache() -> None:
    """Forget every decoded image (e.g. after changing files in place during a session)."""
    _decoded.cache_clear()


# --- scaling and augmentation -----------------------------------------------------------------------
def preprocess(images):
    """Scale pixel values 0-255 (uint8 or float) to [-1, 1] float32 the way InceptionV3 expects.

    Accepts a NumPy array (returns a new NumPy array; the input is never changed) or a
    TensorFlow tensor (returns a tensor, usable inside ``tf.data``).
    """
    from keras.applications.inception_v3 import preprocess_input

    import tensorflow as tf

    if tf.is_tensor(images):
        return preprocess_input(tf.cast(images, tf.float32))
    return preprocess_input(np.array(images, dtype=np.float32, copy=True))


def augmentation_layers(settings: Settings) -> "keras.Sequential":
    """The training-time augmentation as Keras preprocessing layers, ranges from the settings.

    Rotation ±``rotation_degrees``, shifts ±``width_shift``/``height_shift`` of the size,
    shear ±``shear``, zoom ±``zoom``, and a horizontal flip if ``horizontal_flip``. Each layer
    gets its own seed derived from ``settings.seed``. Expects pixels in 0-255 (before
    :func:`preprocess`). Layers with a range of 0 are left out; with nothing left, the model
    passes images through unchanged.
    """
    import keras

    fill = {"fill_mode": "constant", "fill_value": 0.0}
    seed = int(settings.seed)
    layers: list = []
    if settings.rotation_degrees:
        layers.append(keras.layers.RandomRotation(settings.rotation_degrees / 360.0, seed=seed + 1, **fill))
    if settings.width_shift or settings.height_shift:
        layers.append(keras.layers.RandomTranslation(settings.height_shift, settings.width_shift,
                                                     seed=seed + 2, **fill))
    if settings.shear:
        layers.append(keras.layers.RandomShear(x_factor=settings.shear, y_factor=settings.shear,
                                               seed=seed + 3, **fill))
    if settings.zoom:
        layers.append(keras.layers.RandomZoom(settings.zoom, seed=seed + 4, **fill))
    if settings.horizontal_flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed + 5))
    if not layers:
        layers.append(keras.layers.Identity())
    return keras.Sequential(layers, name="augmentation")


# --- datasets ----------------------------------------------------------------------------------------
@dataclass
class Datasets:
    """Training and validation data ready for ``model.fit`` plus what the notebooks show about them."""

    train: "tf.data.Dataset"  # (images float32 [-1, 1], labels float32 (batch, 1)); shuffled, augmented
    val: "tf.data.Dataset"  # same shapes; never shuffled or augmented, every image every epoch
    class_info: ClassInfo
    train_files: list[Path]
    train_labels: np.ndarray  # int, one per file
    val_files: list[Path]
    val_labels: np.ndarray
    image_size: int
    batch_size: int
    augmented: bool

    @property
    def train_count(self) -> int:
        return len(self.train_files)

    @property
    def val_count(self) -> int:
        return len(self.val_files)

    @property
    def train_steps(self) -> int:
        return math.ceil(self.train_count / self.batch_size)

    @property
    def val_steps(self) -> int:
        return math.ceil(self.val_count / self.batch_size)

    @property
    def counts(self) -> dict[str, dict[str, int]]:
        """``{"train": {"chest": 33, "abdomen": 32}, "val": {...}}``"""
        out = {}
        for role, labels in (("train", self.train_labels), ("val", self.val_labels)):
            out[role] = {name: int(np.sum(labels == index)) for index, name in enumerate(self.class_info.names)}
        return out

    def describe(self) -> str:
        lines = ["Classes (label → folder → name):"]
        lines += [f"  {row}" for row in self.class_info.describe().splitlines()]
        for role in ("train", "val"):
            per_class = ", ".join(f"{n} {name}" for name, n in self.counts[role].items())
            total = self.train_count if role == "train" else self.val_count
            lines.append(f"{role.capitalize():<6}{total} images ({per_class}), "
                         f"{self.train_steps if role == 'train' else self.val_steps} batches of up to {self.batch_size}")
        lines.append(f"Images: {self.image_size}x{self.image_size}, scaled to [-1, 1]; "
                     f"augmentation {'on (training only)' if self.augmented else 'off'}")
        return "\n".join(lines)


def _labels_array(labels: Sequence[int | None]) -> np.ndarray:
    return np.array([UNKNOWN_LABEL if label is None else int(label) for label in labels], dtype=np.int64)


def make_dataset(images_uint8: np.ndarray, labels: np.ndarray, settings: Settings, *, training: bool,
                 augment: bool | None = None) -> "tf.data.Dataset":
    """A batched tf.data pipeline over in-memory uint8 images (see the module notes).

    ``training=True`` shuffles (seeded, reshuffled every epoch) and, if ``augment`` (default:
    ``settings.augment``), augments; ``training=False`` keeps the order and never augments.
    """
    import tensorflow as tf

    augment = settings.augment if augment is None else augment
    targets = np.asarray(labels, dtype=np.float32).reshape(-1, 1)
    data = tf.data.Dataset.from_tensor_slices((images_uint8, targets))
    if not training:
        scaled = data.batch(settings.batch_size).map(lambda x, y: (preprocess(x), y),
                                                    num_parallel_calls=tf.data.AUTOTUNE)
        return scaled.cache().prefetch(tf.data.AUTOTUNE)
    data = data.shuffle(max(1, len(targets)), seed=int(settings.seed), reshuffle_each_iteration=True)
    data = data.batch(settings.batch_size)
    if augment:
        augmenter = augmentation_layers(settings)
        # Sequential on purpose: the layers draw from seeded random state, and parallel calls
        # would take those draws in a different order on every run.
        data = data.map(lambda x, y: (augmenter(tf.cast(x, tf.float32), training=True), y))
    data = data.map(lambda x, y: (preprocess(x), y), num_parallel_calls=tf.data.AUTOTUNE)
    return data.prefetch(tf.data.AUTOTUNE)


def build_datasets(settings: Settings) -> Datasets:
    """Scan ``settings.data_dir`` and build the training and validation pipelines."""
    index = dataset_module.scan(settings)
    train_images = load_images(index.train.files, settings)
    val_images = load_images(index.val.files, settings)
    train_labels = _labels_array(index.train.labels)
    val_labels = _labels_array(index.val.labels)
    return Datasets(
        train=make_dataset(train_images, train_labels, settings, training=True),
        val=make_dataset(val_images, val_labels, settings, training=False),
        class_info=index.class_info,
        train_files=list(index.train.files),
        train_labels=train_labels,
        val_files=list(index.val.files),
        val_labels=val_labels,
        image_size=int(settings.image_size),
        batch_size=int(settings.batch_size),
        augmented=bool(settings.augment),
    )


def prepare_images(paths: Iterable[str | Path], settings: Settings) -> np.ndarray:
    """Files → ``(N, size, size, 3)`` float32 in [-1, 1], ready for ``model.predict``.

    Exactly the validation path (same loader, resize and scaling), so a prediction on a file
    equals the prediction the validation set produced for it.
    """
    return preprocess(load_images(paths, settings))


@dataclass
class SplitArrays:
    """One split in memory: uint8 images (before scaling), labels (-1 = unknown) and file paths."""

    images: np.ndarray
    labels: np.ndarray
    files: list[Path]
    class_info: ClassInfo


def load_split_arrays(settings: Settings, split: str = "val") -> SplitArrays:
    """The images of ``train``, ``val`` or ``test`` as arrays (for t-SNE, Grad-CAM, galleries).

    Images are uint8 ``(N, size, size, 3)``; pass them through :func:`preprocess` before the model.
    """
    index = dataset_module.scan(settings)
    chosen = index.split(split)
    return SplitArrays(load_images(chosen.files, settings), _labels_array(chosen.labels),
                       list(chosen.files), index.class_info)


__all__ = [
    "Datasets", "SplitArrays", "UNKNOWN_LABEL", "augmentation_layers", "build_datasets", "clear_cache",
    "load_for_model", "load_images", "load_split_arrays", "make_dataset", "prepare_images", "preprocess",
]
