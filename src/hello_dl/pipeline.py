"""The input pipeline: image files → batches the model trains and validates on.

For each split::

    files ─► images.load_image + resize (once, in Python) ─► in-memory uint8 cache
          ─► tf.data: [shuffle with the seed] ─► batch ─► [augment] ─► float32, still 0-255 ─► prefetch
                       (training only)                     (training only)

Training batches are drawn through one seeded shuffle of the image *indices*
(:attr:`Datasets.train_order`). Anything else stored per training image (the feature cache of
:mod:`hello_dl.feature_cache`) is batched through the same shuffle with
:meth:`Datasets.train_batches`, so whichever of them is read next gets the next epoch's order:
training on stored features visits the images in exactly the order training on the images would.

The scaling to [-1, 1] that InceptionV3 expects is **not** done here: it is the first layer of the
model itself (:mod:`hello_dl.model`), so a saved model takes plain 0-255 RGB images and nobody
can feed it wrongly scaled pixels.

Why decode in Python and not with ``tf.io.decode_image``: a radiology kit must read 16-bit
PNGs, palette and CMYK files, transparency and DICOM, and it must read them **exactly the
same way** when training and when a participant later asks the model about a new file.
``tf.io`` handles neither DICOM nor CMYK/palette/16-bit the way :mod:`hello_dl.images` does,
and two decoders are how train/inference skew creeps in. So every image, for training,
validation, prediction, Grad-CAM and previews, goes through :func:`hello_dl.images.load_image`
once; the decoded, resized uint8 arrays are kept in memory (the dataset is tiny: 75 images at
299x299 are about 20 MB) and everything after that is built from TensorFlow/Keras utilities:
``tf.data.Dataset.from_tensor_slices``, ``shuffle`` (seeded), ``batch``, ``cache``,
``prefetch``, and Keras preprocessing layers for augmentation.

Rules the original notebooks broke and this module keeps:

* **Only training batches are augmented**; validation and test data never are.
* **Every validation image is used every epoch** (no ``drop_remainder``, no fixed step count
  that skips images).
* Labels follow ``settings.class_folders`` order (chest = 0, abdomen = 1), shown by
  ``class_info.describe()``.

Augmentation fills the area uncovered by a rotation/shift/zoom with **black** (constant 0), the
same black used to pad images when ``keep_aspect_ratio`` is on, rather than mirroring anatomy
into the corners. ``settings.shear`` is the Keras 3 ``RandomShear`` factor (a fraction of the
image size); the paper's ``ImageDataGenerator(shear_range=0.2)`` was a shear *angle*: 0.2
radians (about 11 degrees, a slant close to this kit's 0.2 fraction) in the Keras 2.1 of the
paper's time, 0.2 degrees (almost nothing) from Keras 2.2 on. Notebook 03 explains it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

from hello_dl import dataset as dataset_module
from hello_dl.dataset import ClassInfo
from hello_dl.errors import DataError
from hello_dl.images import load_image, resize_image
from hello_dl.settings import Settings

#: Class samples are shown at their own size, so even images too small for the model are drawn.
ANY_SIZE = 0

if TYPE_CHECKING:  # pragma: no cover
    import keras  # here, not at the top: TensorFlow takes seconds to load
    import tensorflow as tf  # here, not at the top: TensorFlow takes seconds to load

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
    """One file as the model takes it: ``(size, size, 3)`` uint8 RGB, 0-255 (cached, read-only).

    The resize stays here, in the one loader, rather than in a model layer: padding that keeps the
    aspect ratio and Pillow's antialiased resize are then identical for training and inference,
    and every batch has the model's fixed shape.
    """
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


# --- augmentation ------------------------------------------------------------------------------------
def augmentation_layers(settings: Settings) -> "keras.Sequential":
    """The training-time augmentation as Keras preprocessing layers, ranges from the settings.

    Rotation ±``rotation_degrees``, shifts ±``width_shift``/``height_shift`` of the size,
    shear ±``shear``, zoom ±``zoom``, and a horizontal flip if ``horizontal_flip``. Each layer
    gets its own seed derived from ``settings.seed``. Works on pixels in 0-255. Layers with a
    range of 0 are left out; with nothing left, the model passes images through unchanged.
    With ``shortcut_augmentation`` (on in the from-scratch recipe, :mod:`hello_dl.recipes`) the
    shortcut-removing steps of :mod:`hello_dl.augment` follow, so the preview shows them too.
    """
    import keras  # here, not at the top: TensorFlow takes seconds to load

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
    if settings.shortcut_augmentation:
        from hello_dl import augment  # here, not at the top: it imports TensorFlow

        # Files stretched to a square (the default) get framed images with bars half the time and
        # stretched the other half, so neither bars nor distortion says which class; padded files, bars.
        framing = augment.ShortcutAugmentation(pad=True, frame_stretch_share=0.0 if settings.keep_aspect_ratio else 0.5)
        layers.append(augment.shortcut_layers(framing, seed))
    if not layers:
        layers.append(keras.layers.Identity())
    return keras.Sequential(layers, name="augmentation")


# --- datasets ----------------------------------------------------------------------------------------
@dataclass
class Datasets:
    """Training and validation data ready for ``model.fit`` plus what the notebooks show about them."""

    train: "tf.data.Dataset"  # (images float32 0-255, labels float32 (batch, 1)); shuffled, augmented
    val: "tf.data.Dataset"  # same shapes; never shuffled or augmented, every image every epoch
    class_info: ClassInfo
    train_files: list[Path]
    train_labels: np.ndarray  # int, one per file
    val_files: list[Path]
    val_labels: np.ndarray
    image_size: int
    batch_size: int
    augmented: bool
    #: Identical images found in more than one split (see hello_dl.dataset: DatasetIndex.leaks).
    leaks: list[list[str]] = field(default_factory=list)
    #: The seeded shuffle of training-image indices that ``train`` is batched through (None when
    #: a caller built ``train`` some other way: then nothing can be batched in its order).
    train_order: "tf.data.Dataset | None" = None

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

    def train_batches(self, values) -> "tf.data.Dataset":
        """``(values[batch], labels[batch])`` batches in the order of ``train``'s batches, epoch by epoch.

        ``values`` holds one row (or a list of arrays with one row each) per training image, in
        ``train_files`` order. Both datasets draw on the one shuffle of :attr:`train_order`, which
        moves on to the next epoch's order whenever either of them starts a pass.
        """
        if self.train_order is None:
            raise ValueError("These datasets were not built by hello_dl.pipeline.build_datasets; "
                             "their training order is unknown.")
        return _batches_in_order(self.train_order, values, self.train_labels, self.batch_size)

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
        lines.append(f"Images: {self.image_size}x{self.image_size} RGB, 0-255 (the model scales them to [-1, 1]); "
                     f"augmentation {'on (training only)' if self.augmented else 'off'}")
        return "\n".join(lines)


def _labels_array(labels: Sequence[int | None]) -> np.ndarray:
    return np.array([UNKNOWN_LABEL if label is None else int(label) for label in labels], dtype=np.int64)


def training_order(count: int, settings: Settings) -> "tf.data.Dataset":
    """The indices ``0 .. count-1``, shuffled with the seed and reshuffled on every pass (an epoch)."""
    import tensorflow as tf  # here, not at the top: TensorFlow takes seconds to load

    return tf.data.Dataset.range(count).shuffle(max(1, count), seed=int(settings.seed),
                                                reshuffle_each_iteration=True)


def _batches_in_order(order: "tf.data.Dataset", values, labels: np.ndarray, batch_size: int) -> "tf.data.Dataset":
    """Batches of ``values`` (an array, or a list of arrays) and float32 ``(n, 1)`` labels, following ``order``."""
    import tensorflow as tf  # here, not at the top: TensorFlow takes seconds to load

    # Constants made once, outside the dataset function, so they are captured rather than copied
    # into its graph.
    stored = [tf.constant(v) for v in values] if isinstance(values, (list, tuple)) else tf.constant(values)
    targets = tf.constant(np.asarray(labels, dtype=np.float32).reshape(-1, 1))

    def gather(indices):
        picked = [tf.gather(v, indices) for v in stored] if isinstance(stored, list) else tf.gather(stored, indices)
        return picked, tf.gather(targets, indices)

    return order.batch(batch_size).map(gather)


def make_dataset(images_uint8: np.ndarray, labels: np.ndarray, settings: Settings, *, training: bool,
                 augment: bool | None = None, order: "tf.data.Dataset | None" = None) -> "tf.data.Dataset":
    """A batched tf.data pipeline over in-memory uint8 images (see the module notes).

    ``training=True`` shuffles (seeded, reshuffled every epoch; through ``order`` if given, see
    :func:`training_order`) and, if ``augment`` (default: ``settings.augment``), augments;
    ``training=False`` keeps the order and never augments. Images come out as float32 in 0-255
    (the model scales them itself).
    """
    import tensorflow as tf  # here, not at the top: TensorFlow takes seconds to load

    def as_float(x, y):
        return tf.cast(x, tf.float32), y

    augment = settings.augment if augment is None else augment
    targets = np.asarray(labels, dtype=np.float32).reshape(-1, 1)
    if not training:
        data = tf.data.Dataset.from_tensor_slices((images_uint8, targets))
        return data.batch(settings.batch_size).map(as_float, num_parallel_calls=tf.data.AUTOTUNE).cache() \
            .prefetch(tf.data.AUTOTUNE)
    order = training_order(len(targets), settings) if order is None else order
    data = _batches_in_order(order, images_uint8, targets, settings.batch_size)
    if augment:
        augmenter = augmentation_layers(settings)
        # Sequential on purpose: the layers draw from seeded random state, and parallel calls
        # would take those draws in a different order on every run.
        data = data.map(lambda x, y: (augmenter(tf.cast(x, tf.float32), training=True), y))
    else:
        data = data.map(as_float, num_parallel_calls=tf.data.AUTOTUNE)
    return data.prefetch(tf.data.AUTOTUNE)


def build_datasets(settings: Settings) -> Datasets:
    """Scan ``settings.data_dir`` and build the training and validation pipelines."""
    index = dataset_module.scan(settings)
    train_images = load_images(index.train.files, settings)
    val_images = load_images(index.val.files, settings)
    train_labels = _labels_array(index.train.labels)
    val_labels = _labels_array(index.val.labels)
    order = training_order(len(train_labels), settings)
    return Datasets(
        train=make_dataset(train_images, train_labels, settings, training=True, order=order),
        val=make_dataset(val_images, val_labels, settings, training=False),
        class_info=index.class_info,
        train_files=list(index.train.files),
        train_labels=train_labels,
        val_files=list(index.val.files),
        val_labels=val_labels,
        image_size=int(settings.image_size),
        batch_size=int(settings.batch_size),
        augmented=bool(settings.augment),
        leaks=list(index.leaks),
        train_order=order,
    )


@dataclass
class SplitArrays:
    """One split in memory: uint8 images as the model takes them, labels (-1 = unknown) and file paths."""

    images: np.ndarray
    labels: np.ndarray
    files: list[Path]
    class_info: ClassInfo


def load_split_arrays(settings: Settings, split: str = "val") -> SplitArrays:
    """The images of ``train``, ``val`` or ``test`` as arrays (for t-SNE, Grad-CAM, galleries).

    Images are uint8 ``(N, size, size, 3)``, 0-255: the model takes them as they are.
    """
    index = dataset_module.scan(settings)
    chosen = index.split(split)
    return SplitArrays(load_images(chosen.files, settings), _labels_array(chosen.labels),
                       list(chosen.files), index.class_info)


# --- what the lessons show about the data ------------------------------------------------------------
@dataclass
class Sample:
    """One image file and its picture at its own size (for :func:`hello_dl.plots.plot_sample_grid`)."""

    file: Path
    image: np.ndarray  # (height, width, 3) uint8, not resized

    @property
    def caption(self) -> str:
        return self.file.name


def class_samples(settings: Settings, split: str = "train", per_class: int = 4) -> dict[str, list[Sample]]:
    """The first ``per_class`` images of each class in a split, loaded at their own size."""
    chosen = dataset_module.scan(settings).split(split)
    out: dict[str, list[Sample]] = {name: [] for name in settings.class_names}
    for path, label in zip(chosen.files, chosen.labels):
        if label is not None and len(out[settings.class_names[label]]) < per_class:
            out[settings.class_names[label]].append(Sample(Path(path), load_image(path, min_side=ANY_SIZE)))
    return out


def augmentation_examples(image: str | Path | np.ndarray, settings: Settings, *, count: int = 8,
                          seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One training image as the network gets it, and ``count`` random augmentations of it (uint8).

    ``image`` is a file or an image array of any size (resized like every training image).
    ``seed`` (default: ``settings.seed``) picks which random versions come out.
    """
    import tensorflow as tf  # here, not at the top: TensorFlow takes seconds to load

    if isinstance(image, (str, Path)):
        original = np.asarray(load_for_model(image, settings))
    else:
        original = resize_image(np.asarray(image, dtype=np.uint8), settings.image_size, settings.keep_aspect_ratio)
    augmenter = augmentation_layers(settings if seed is None else settings.replace(seed=seed))
    batch = tf.repeat(tf.convert_to_tensor(original[None], dtype=tf.float32), count, axis=0)
    augmented = np.asarray(augmenter(batch, training=True)).clip(0, 255).astype(np.uint8)
    return original, augmented


__all__ = [
    "ANY_SIZE", "Datasets", "Sample", "SplitArrays", "UNKNOWN_LABEL", "augmentation_examples", "augmentation_layers",
    "build_datasets", "class_samples", "clear_cache", "load_for_model", "load_images", "load_split_arrays",
    "make_dataset", "training_order",
]
