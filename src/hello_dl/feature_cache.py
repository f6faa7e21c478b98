"""Reuse what the frozen layers compute instead of computing it again every epoch (issue 18).

With pretrained weights, training never changes the lower part of InceptionV3: in phase 1 the
whole base is frozen, in phase 2 everything below ``fine_tune_from`` (``mixed9`` in the
conference profile), and its BatchNorm layers keep their ImageNet statistics (inference mode).
Such a frozen part gives an image the same output every time, so this module splits the network
at the top of it::

    image ─► [fixed part: scaling, frozen layers] ─► values ─► [trained part: the rest] ─► probability

* **Validation images** are never augmented: they go through the fixed part once per phase, and
  every epoch validates the trained part on the stored values.
* **Training images without augmentation** (experiment group 2): the same, so the whole phase
  trains on stored values (phase 1: the 2048 pooled features per image; phase 2: the output of
  the frozen layers below ``fine_tune_from``).
* **Augmented training images** (group 1) are new every epoch: they go through the fixed part on
  every batch, in the input pipeline and in inference mode, so the training step itself only
  covers the layers that learn.

The trained part is a Keras model made of the network's own layers (the weights are shared), so
fitting it trains the network, with the same batches in the same order
(:meth:`hello_dl.pipeline.Datasets.train_batches`), the same dropout draws and a fresh optimizer
of the same kind: the same training as fitting the whole network, within float rounding, only
faster. The best model saved is still the whole network, which takes images
(:class:`hello_dl.train.BestModelKeeper`). Where nothing below the learning layers is
frozen (the ``paper`` profile, training from scratch) nothing can be stored and the network is
fit as it is.
"""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from hello_dl import model as model_module
from hello_dl.settings import Settings

if TYPE_CHECKING:  # pragma: no cover
    import keras  # here, not at the top: TensorFlow takes seconds to load
    import tensorflow as tf  # here, not at the top: TensorFlow takes seconds to load


# --- where the network can be split --------------------------------------------------------------
def is_fixed(layer: "keras.layers.Layer") -> bool:
    """True if the layer gives an input the same output whenever it is called during training.

    That is a layer without trainable weights whose ``call`` ignores ``training`` (convolutions,
    pooling, activations, concatenation, the pixel scaling), or a frozen BatchNorm layer (Keras 3
    runs it in inference mode, with its stored statistics, even inside ``fit``). Dropout, random
    augmentation and BatchNorm that still learns are not fixed; a nested model is fixed if all its
    layers are.
    """
    import keras  # here, not at the top: TensorFlow takes seconds to load

    if isinstance(layer, keras.layers.InputLayer):
        return True
    if layer.trainable_weights:
        return False
    if isinstance(layer, keras.layers.BatchNormalization):
        return not layer.trainable
    if isinstance(layer, keras.Model):
        return all(is_fixed(inner) for inner in layer.layers)
    return "training" not in inspect.signature(layer.call).parameters


def _flat(tensors) -> list:
    import keras  # here, not at the top: TensorFlow takes seconds to load

    return list(keras.tree.flatten(tensors))


@dataclass
class Split:
    """A network cut in two: ``fixed`` (images → values) and ``trained`` (values → probability).

    Both are Keras models made of the network's own layers; ``where`` names the cut in plain words.
    """

    fixed: "keras.Model"
    trained: "keras.Model"
    where: str
    values_per_image: int
    pooled: bool  # cut after the pooled features (the whole base frozen)

    def describe(self) -> str:
        return f"{self.where} ({self.values_per_image:,} values per image)"


def split_network(network: "keras.Model") -> Split | None:
    """Split a :mod:`hello_dl.model` network at the top of its frozen part, or ``None`` if there is none.

    ``None`` when nothing worth storing is frozen (no frozen layer with weights at the bottom of
    the base), or when the network is not laid out as :func:`hello_dl.model.build_model` makes it
    (layers before the base that are not fixed, or no single chain of layers after it).
    """
    import keras  # here, not at the top: TensorFlow takes seconds to load

    base = model_module.base_model(network)
    layers = list(network.layers)
    where_base = layers.index(base)
    before, after = layers[1:where_base], layers[where_base + 1:]
    if not all(is_fixed(layer) for layer in before) or not after or not _is_chain(after):
        return None

    if is_fixed(base):
        # The whole base is frozen: cut after the fixed layers that follow it (the pooling).
        fixed_after = 0
        while fixed_after < len(after) - 1 and is_fixed(after[fixed_after]):
            fixed_after += 1
        cut = after[fixed_after - 1].output if fixed_after else after[0].input
        with network.distribute_strategy.scope():
            fixed = keras.Model(network.inputs, cut, name="fixed_part")
            trained = keras.Model(cut, network.outputs, name="trained_part")
        pooled = fixed_after > 0
        where = (f"the frozen InceptionV3 base and its {after[fixed_after - 1].name!r} layer" if pooled
                 else "the frozen InceptionV3 base")
        return Split(fixed, trained, where, int(np.prod(cut.shape[1:])), pooled=pooled)

    prefix = _fixed_prefix(base)
    if not any(layer.weights for layer in prefix):
        return None  # nothing frozen that costs anything to compute
    frontier = _frontier(base, prefix)
    first_learning = base.layers[len(prefix)].name
    values = sum(int(np.prod(t.shape[1:])) for t in frontier)
    frontier = frontier[0] if len(frontier) == 1 else frontier  # one tensor, not a list of one
    with network.distribute_strategy.scope():
        below = keras.Model(base.inputs, frontier, name="frozen_layers")
        images = keras.Input(shape=network.input_shape[1:], name="image")
        x = images
        for layer in before:
            x = layer(x)
        fixed = keras.Model(images, below(x), name="fixed_part")
        upper = keras.Model(frontier, base.output, name="upper_layers")  # Keras gives it new inputs
        head = keras.Model(after[0].input, network.outputs, name="head")
        trained = keras.Model(upper.input, head(upper.output), name="trained_part")
    return Split(fixed, trained, f"the frozen InceptionV3 layers below {first_learning!r}", values, pooled=False)


def _is_chain(layers: list) -> bool:
    """Each layer takes exactly the previous one's output (the head after the base)."""
    for previous, layer in zip(layers, layers[1:]):
        inputs = _flat(layer.input)
        if len(inputs) != 1 or inputs[0] is not previous.output:
            return False
    return True


def _fixed_prefix(base: "keras.Model") -> list:
    """The longest run of fixed layers at the bottom of the base (its layers are in graph order)."""
    prefix = []
    for layer in base.layers:
        if not is_fixed(layer):
            break
        prefix.append(layer)
    return prefix


def _frontier(base: "keras.Model", prefix: list) -> list:
    """The outputs of ``prefix`` layers that the layers above it read (what must be stored)."""
    produced = {id(tensor): tensor for layer in prefix for tensor in _flat(layer.output)}
    frontier, seen = [], set()
    for layer in base.layers[len(prefix):]:
        for tensor in _flat(layer.input):
            if id(tensor) in produced and id(tensor) not in seen:
                seen.add(id(tensor))
                frontier.append(tensor)
    return frontier


# --- the stored values and the datasets of a phase ----------------------------------------------------
@dataclass
class CachedPhase:
    """What one training phase fits instead of the whole network, and on what."""

    split: Split
    model: "keras.Model"  # split.trained, compiled
    train: "tf.data.Dataset"  # stored values, or augmented images through the fixed part per batch
    val: "tf.data.Dataset"  # stored values of the validation images
    train_stored: bool
    seconds: float  # spent computing the stored values

    @property
    def record(self) -> dict[str, Any]:
        """What ``metrics.json`` keeps about it."""
        return {"cut": self.split.where, "values_per_image": self.split.values_per_image,
                "validation": "stored", "training": "stored" if self.train_stored else "fixed part every batch",
                "seconds": round(self.seconds, 2)}

    def sentence(self, settings: Settings) -> str:
        """One plain line for the learner."""
        if self.train_stored:
            what = "computed once for every image, training and validation (augmentation is off)"
        else:
            what = ("computed once for the validation images; the augmented training images, new in every "
                    "epoch, still go through them on every batch")
        return (f"Frozen layers give an image the same output in every epoch, so the output of "
                f"{self.split.describe()} is {what} ({self.seconds:.0f} s).")


def prepare_phase(network: "keras.Model", data: Any, settings: Settings, learning_rate: float) -> CachedPhase | None:
    """Split the network as it is frozen now and build what the phase fits; ``None``: fit the network itself.

    ``data`` is a :class:`hello_dl.pipeline.Datasets`. Training batches are stored only when they
    are not augmented and the datasets know their training order.
    """
    import tensorflow as tf  # here, not at the top: TensorFlow takes seconds to load

    split = split_network(network)
    if split is None:
        return None
    started = time.perf_counter()
    extract = _extractor(split.fixed)
    val = _stored_dataset(data.val, extract, settings.batch_size)
    store_train = not data.augmented and getattr(data, "train_order", None) is not None
    if store_train:
        images = _images_in_file_order(data, settings)
        train = data.train_batches(_run_in_batches(extract, images, settings.batch_size))
    else:
        # Sequential on purpose, like the augmentation before it: one batch at a time, in order.
        train = data.train.map(lambda x, y: (extract(x), y)).prefetch(1).with_options(_one_batch_at_a_time())
    model_module.compile_model(split.trained, learning_rate, settings.steps_per_execution)
    return CachedPhase(split, split.trained, train, val, store_train, time.perf_counter() - started)


def _extractor(fixed: "keras.Model"):
    """The fixed part as one traced TensorFlow function (any batch size), used for every batch."""
    import tensorflow as tf  # here, not at the top: TensorFlow takes seconds to load

    spec = tf.TensorSpec((None, *fixed.input_shape[1:]), tf.float32)

    @tf.function(input_signature=[spec])
    def extract(images):
        return fixed(images, training=False)

    return extract


def _one_batch_at_a_time() -> "tf.data.Options":
    """Dataset options that keep the fixed part's map sequential.

    tf.data rewrites a stateless map into a parallel one by default (``map_parallelization``),
    and the fixed part is stateless: two batches then went through the frozen layers at once,
    competing for the same cores and the training step. Measured at 299 px on 2 cores (conference
    group 1A, phase 2): epochs of 6.5-11 s, about half of them slow; sequential, every epoch
    6.5-7.3 s (7 epochs 52-53 s against 57-65 s), the same batches in the same order.
    """
    import tensorflow as tf  # here, not at the top: TensorFlow takes seconds to load

    options = tf.data.Options()
    options.experimental_optimization.map_parallelization = False
    return options


def _run_in_batches(extract, images: np.ndarray, batch_size: int):
    """The fixed part's output for every image, in order, batch by batch (as training would batch them)."""
    parts = [extract(np.asarray(images[start:start + batch_size], dtype=np.float32))
             for start in range(0, len(images), batch_size)]
    if isinstance(parts[0], (list, tuple)):
        return [np.concatenate([np.asarray(p[i]) for p in parts]) for i in range(len(parts[0]))]
    return np.concatenate([np.asarray(p) for p in parts])


def _stored_dataset(val: "tf.data.Dataset", extract, batch_size: int) -> "tf.data.Dataset":
    """The validation batches with the fixed part applied once, kept in memory, same batches, same order."""
    import tensorflow as tf  # here, not at the top: TensorFlow takes seconds to load

    values, labels = [], []
    for images, targets in val:
        values.append(extract(images))
        labels.append(targets)
    if isinstance(values[0], (list, tuple)):
        stored = tuple(tf.concat([v[i] for v in values], axis=0) for i in range(len(values[0])))
    else:
        stored = tf.concat(values, axis=0)
    return tf.data.Dataset.from_tensor_slices((stored, tf.concat(labels, axis=0))).batch(batch_size)


def _images_in_file_order(data: Any, settings: Settings) -> np.ndarray:
    from hello_dl import pipeline  # the decoded images are cached there: no file is read again

    return pipeline.load_images(data.train_files, settings)


__all__ = ["CachedPhase", "Split", "is_fixed", "prepare_phase", "split_network"]
