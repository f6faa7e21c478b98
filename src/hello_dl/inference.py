"""The model's answers for model-ready images, each image run through the network once per set of weights.

After training, the same images go through the same best model again and again: the
evaluation of each set, the stress test's originals, the t-SNE map's features, then the same
once more when the evaluation lesson opens the saved run. On a 2-core CPU each InceptionV3
forward pass at 299 px costs about 0.1 s, and a participant's session repeated about 150 of
them. So every forward pass here returns both of what the lessons ask of an image (the score
for class 1 and the 256 "features" of the penultimate layer) and remembers them, keyed by

* the model's **weights** (a hash of every weight's bytes, with the layer layout): a model
  reloaded from its file gives the same key, a model trained one step further does not;
* the **image's bytes** (a hash of the model-ready array): a changed image (the stress test's
  variants, an augmented copy) is a new image.

Nothing is remembered across processes, and only for the last few models (:data:`MODELS_KEPT`),
so a notebook that trains again starts afresh. Inference is deterministic (BatchNorm and
Dropout in inference mode), so an answer from memory is the answer the network would give.
"""

from __future__ import annotations

import hashlib
import weakref
from collections import OrderedDict
from typing import TYPE_CHECKING

import numpy as np

from hello_dl import model as model_module

if TYPE_CHECKING:
    import keras

#: Images per forward pass. Every pass has this shape (the last one padded with copies of its last
#: image), so the compiled predict step is traced once per model, not once per set size: a new
#: shape costs about 3 s of tracing at 299 px on a 2-core CPU, more than computing the padding.
#: ``predict_on_batch`` at this size holds about 0.15 GB at 299 px (an eager call would hold 1.4 GB
#: for 10 images, ``model.predict`` on many images more than 0.25 GB).
BATCH_IMAGES = 8

#: Answers are remembered for this many distinct sets of weights (the newest ones).
MODELS_KEPT = 3

# weights key -> {image key -> (score, features or None)}
_answers: "OrderedDict[str, dict[bytes, tuple[float, np.ndarray | None]]]" = OrderedDict()
# model object -> the model with a second output (the features layer), built once per model object
_two_output: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def weights_key(model: "keras.Model") -> str:
    """A hash of the model's layer layout and every weight's bytes (0.1 s for InceptionV3's 90 MB).

    Read one variable at a time, so no second copy of all the weights is ever held.
    """
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr((model.name, [layer.name for layer in model.layers], model.input_shape)).encode())
    for variable in model.weights:
        value = np.ascontiguousarray(variable.numpy())
        digest.update(f"{variable.path}:{value.dtype}:{value.shape};".encode())
        digest.update(value.data)
    return digest.hexdigest()


def image_key(image: np.ndarray) -> bytes:
    """A hash of one model-ready image's dtype, shape and pixels."""
    image = np.ascontiguousarray(image)
    digest = hashlib.blake2b(f"{image.dtype}:{image.shape};".encode(), digest_size=16)
    digest.update(image.data)
    return digest.digest()


def scores(model: "keras.Model", images: np.ndarray) -> np.ndarray:
    """The model's output (the score for class 1) for each image of ``(N, size, size, 3)``, shape ``(N,)``."""
    return _answer(model, images, want_features=False)[0]


def features(model: "keras.Model", images: np.ndarray) -> np.ndarray:
    """The penultimate ("features", Dense 256) activations of each image, shape ``(N, 256)``."""
    return _answer(model, images, want_features=True)[1]


def forget() -> None:
    """Drop every remembered answer (the tests use it to count forward passes)."""
    _answers.clear()


def _answer(model: "keras.Model", images: np.ndarray, *, want_features: bool):
    images = np.asarray(images)
    extractor = _extractor(model)
    if want_features and extractor is None:
        raise ValueError(f"The model {model.name!r} has no layer named {model_module.FEATURES_LAYER!r}, "
                         "so it has no penultimate features to show. Use a model built by hello_dl.model.")
    if len(images) == 0:
        width = extractor.outputs[0].shape[-1] if extractor is not None else 0
        return np.zeros((0,), dtype=np.float32), np.zeros((0, width), dtype=np.float32)
    memory = _memory_for(weights_key(model))
    keys = [image_key(image) for image in images]
    missing = [i for i, key in enumerate(keys) if key not in memory]
    if missing:
        # One forward pass per distinct missing image (a set may hold the same picture twice).
        first = list(dict.fromkeys(keys[i] for i in missing))
        where = {key: i for i, key in reversed(list(enumerate(keys)))}
        batch = images[[where[key] for key in first]]
        new_scores, new_features = _run(model, extractor, batch)
        for n, key in enumerate(first):
            memory[key] = (float(new_scores[n]), None if new_features is None else new_features[n])
    out_scores = np.array([memory[key][0] for key in keys], dtype=np.float32)
    out_features = (np.stack([memory[key][1] for key in keys]).astype(np.float32)
                    if want_features else None)
    return out_scores, out_features


def _memory_for(key: str) -> dict:
    if key in _answers:
        _answers.move_to_end(key)
    else:
        _answers[key] = {}
        while len(_answers) > MODELS_KEPT:
            _answers.popitem(last=False)
    return _answers[key]


def _extractor(model: "keras.Model"):
    """The model with the features layer as a first output, or None if it has no such layer."""
    import keras  # here, not at the top: TensorFlow takes seconds to load

    if model in _two_output:
        return _two_output[model]
    try:
        layer = model.get_layer(model_module.FEATURES_LAYER)
    except ValueError:
        extractor = None
    else:
        # Same layers, same weights (no copy): one forward pass gives both outputs.
        extractor = keras.Model(model.inputs, [layer.output, model.outputs[0]], name=f"{model.name}_answers")
    _two_output[model] = extractor
    return extractor


def _run(model, extractor, images: np.ndarray):
    """Forward passes of :data:`BATCH_IMAGES` images over ``images``: (scores ``(N,)``, features ``(N, 256)`` or None)."""
    import keras  # here, not at the top: TensorFlow takes seconds to load

    network = extractor if extractor is not None else model
    score_parts, feature_parts = [], []
    for start in range(0, len(images), BATCH_IMAGES):
        part = images[start:start + BATCH_IMAGES]
        count = len(part)
        if count < BATCH_IMAGES:  # in inference each image is answered on its own: padding changes nothing
            part = np.concatenate([part, np.repeat(part[-1:], BATCH_IMAGES - count, axis=0)])
        outputs = network.predict_on_batch(part)
        feature_values, score_values = outputs if extractor is not None else (None, outputs)
        score_parts.append(np.asarray(keras.ops.convert_to_numpy(score_values)).reshape(BATCH_IMAGES, -1)[:count, 0])
        if feature_values is not None:
            feature_parts.append(np.asarray(keras.ops.convert_to_numpy(feature_values), dtype=np.float32)[:count])
    return np.concatenate(score_parts), (np.concatenate(feature_parts) if extractor is not None else None)


__all__ = ["BATCH_IMAGES", "MODELS_KEPT", "features", "forget", "image_key", "scores", "weights_key"]
