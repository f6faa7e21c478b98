"""The classifier: Keras' InceptionV3 without its top, plus a small new head.

    image (size x size x 3, plain RGB pixel values 0-255)
      -> "scale_pixels_to_minus1_1": x / 127.5 - 1, InceptionV3's own input range (a Rescaling layer)
      -> (from scratch only) "normalize_each_image": each image to its own mean 0 and spread 1
      -> InceptionV3 base (ImageNet weights, or none)
      -> global average pooling -> Dense 256 ReLU ("features") -> Dropout 0.5 -> Dense 1 sigmoid

The scaling is a layer of the model, as in the Keras transfer-learning guide, so a saved
``best_model.keras`` takes plain 0-255 images: nobody using it can forget the scaling, or scale to
[0, 1] as the paper's notebook did. (The resize is not a layer: see ``pipeline.load_for_model``.)

The output is the probability of class 1 (abdomen). With pretrained weights the base is called
with ``training=False``, as in the Keras transfer-learning guide, and its BatchNorm layers stay
frozen when the base is unfrozen, so they keep the ImageNet statistics during fine-tuning.
Both are needed in Keras 3: ``fit`` passes ``training=True`` down into a nested model and that
overrides the recorded ``training=False`` (keras-team/keras#20285, after which the guide itself
recommends keeping BatchNorm frozen); a frozen BatchNorm layer always runs in inference mode.
Without pretrained weights there are no statistics worth keeping, so the base trains normally,
BatchNorm included, with a faster momentum.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from hello_dl import environment
from hello_dl import weights as weights_module
from hello_dl.errors import WeightsError
from hello_dl.runs import PIXEL_SCALING_LAYER, pixel_scaling_layer
from hello_dl.settings import Settings, SettingsError

if TYPE_CHECKING:  # pragma: no cover
    import keras  # here, not at the top: TensorFlow takes seconds to load
    import tensorflow as tf  # here, not at the top: TensorFlow takes seconds to load

BASE_NAME = "inception_v3"
FEATURES_LAYER = "features"  # the penultimate Dense layer (t-SNE uses its output)
OUTPUT_LAYER = "probability"
LAST_CONV_BLOCK = "mixed10"  # InceptionV3's last convolutional block (Grad-CAM looks here)
NORMALIZE_LAYER = "normalize_each_image"  # from scratch: each image to its own mean and spread


def strategy(devices: Sequence[str] | None = None) -> "tf.distribute.Strategy":
    """How to spread training: MirroredStrategy over several GPUs, else the default strategy.

    ``devices`` defaults to the visible GPUs; tests pass logical CPU devices to exercise the
    multi-replica path on a machine without GPUs.
    """
    import tensorflow as tf  # here, not at the top: TensorFlow takes seconds to load

    if devices is None:
        # Listing logical devices starts the GPU: share its memory first (a no-op without one).
        environment.limit_gpu_memory()
        devices = [device.name for device in tf.config.list_logical_devices("GPU")]
    if len(devices) > 1:
        return tf.distribute.MirroredStrategy(devices=list(devices))
    return tf.distribute.get_strategy()


def build_model(settings: Settings, distribution: "tf.distribute.Strategy | None" = None,
                verbose: bool = False) -> "keras.Model":
    """Build and compile the classifier described by ``settings`` (base trainable, phase-2 ready).

    Training code freezes or unfreezes the base afterwards with :func:`freeze_base` /
    :func:`unfreeze_base`. ``distribution`` defaults to :func:`strategy`.
    """
    import keras  # here, not at the top: TensorFlow takes seconds to load

    weights_path = weights_module.resolve_weights(settings)
    pretrained = weights_path is not None
    distribution = distribution or strategy()
    size = settings.image_size
    with distribution.scope():
        base = _inception_base(size, weights_path)
        if not pretrained:
            set_batchnorm_momentum(base, settings.bn_momentum_from_scratch)
        inputs = keras.Input(shape=(size, size, 3), name="image")
        x = pixel_scaling_layer()(inputs)
        if settings.normalize_each_image:
            x = each_image_normalized(x)
        # Pretrained: BatchNorm must keep its ImageNet statistics, even once the base is unfrozen.
        x = base(x, training=False) if pretrained else base(x)
        x = keras.layers.GlobalAveragePooling2D(name="average_pool")(x)
        x = keras.layers.Dense(settings.dense_units, activation="relu", name=FEATURES_LAYER)(x)
        if settings.dropout > 0:
            x = keras.layers.Dropout(settings.dropout, name="dropout")(x)
        outputs = keras.layers.Dense(1, activation="sigmoid", name=OUTPUT_LAYER)(x)
        model = keras.Model(inputs, outputs, name="chest_vs_abdomen")
    compile_model(model, settings.learning_rate, settings.steps_per_execution)
    if verbose:
        print(describe_start(settings))
    return model


def each_image_normalized(x: "keras.KerasTensor") -> "keras.KerasTensor":
    """Each image minus its own mean, divided by its own spread (all pixels and channels together).

    Why: the stress test found networks trained from scratch answering differently when only the
    contrast changed, a cue of how a file was made, not of anatomy. After this layer a lower
    contrast or a brighter display gives (nearly) the same input. Keras' own LayerNormalization
    over height, width and channels, with nothing to learn, is exactly that, and a saved model
    loads anywhere in safe mode. ImageNet weights expect the plain [-1, 1] range, so the
    pretrained recipe never uses it.
    """
    import keras  # here, not at the top: TensorFlow takes seconds to load

    return keras.layers.LayerNormalization(axis=[1, 2, 3], center=False, scale=False,
                                           name=NORMALIZE_LAYER)(x)


def describe_start(settings: Settings) -> str:
    """One plain sentence about where the network starts from."""
    if weights_module.uses_pretrained_weights(settings):
        return ("Starting from ImageNet-pretrained InceptionV3 weights (transfer learning); "
                "BatchNorm keeps its ImageNet statistics.")
    return ("Training from scratch: no pretrained weights (weights=none), so every layer starts random, "
            f"BatchNorm learns its statistics (momentum {settings.bn_momentum_from_scratch}), "
            "and more epochs are needed than with ImageNet weights.")


def describe_input(model: "keras.Model") -> str:
    """In plain words, what the model takes and what its scaling layer makes of it (computed by the layer)."""
    layer = model.get_layer(PIXEL_SCALING_LAYER)
    black, grey, white = np.asarray(layer(np.array([[0.0, 127.5, 255.0]], dtype="float32")))[0]
    size = model.input_shape[1]
    return (f"The model takes {size}x{size} colour images with plain pixel values 0-255. Its first layer, "
            f"{PIXEL_SCALING_LAYER!r}, turns black (0) into {black:g}, mid-grey (127.5) into {grey:g} and white "
            f"(255) into {white:g}: the range InceptionV3 was trained with."
            + (f" Then {NORMALIZE_LAYER!r} shifts and stretches each image to its own mean 0 and spread 1, so a "
               "flatter or brighter display reaches the network as the same input."
               if NORMALIZE_LAYER in {layer.name for layer in model.layers} else ""))


def _inception_base(size: int, weights_path: str | None) -> "keras.Model":
    import keras  # here, not at the top: TensorFlow takes seconds to load

    try:
        return keras.applications.InceptionV3(include_top=False, weights=weights_path,
                                              input_shape=(size, size, 3))
    except (ValueError, OSError, KeyError) as exc:
        # check_weights_file catches most bad files; anything it misses still must not end in
        # an h5py traceback.
        raise WeightsError(
            f"The weights file {weights_path} does not fit InceptionV3 without its top ({exc}). "
            f"Use a good copy of {weights_module.WEIGHTS_FILE_NAME}, or set HELLO_DL_WEIGHTS=none "
            "to train without pretrained weights.") from None


def set_batchnorm_momentum(base: "keras.Model", momentum: float) -> None:
    """Keras' default momentum (0.99) is far too slow for a short run from scratch.

    Measured on this dataset at 150 px: with 0.99 the moving statistics had not caught up after
    10 epochs and every validation image got the same prediction; with 0.5 validation reached 100%.
    """
    import keras  # here, not at the top: TensorFlow takes seconds to load

    for layer in base.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = float(momentum)


def compile_model(model: "keras.Model", learning_rate: float, steps_per_execution: int = 1) -> None:
    """Adam + binary cross-entropy, with accuracy and ROC AUC, under the model's strategy."""
    import keras  # here, not at the top: TensorFlow takes seconds to load

    with model.distribute_strategy.scope():
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate=float(learning_rate)),
            loss="binary_crossentropy",
            metrics=["accuracy", keras.metrics.AUC(name="auc")],
            steps_per_execution=int(steps_per_execution),
        )


def base_model(model: "keras.Model") -> "keras.Model":
    try:
        return model.get_layer(BASE_NAME)
    except ValueError:
        raise SettingsError(f"This model has no {BASE_NAME!r} base; it was not built by hello_dl.model.") from None


def keeps_batchnorm_statistics(model: "keras.Model") -> bool:
    """True for a pretrained model: its base was called with ``training=False`` when built.

    Read from the model's saved configuration, so it also holds for a reloaded model.
    """
    for layer in model.get_config().get("layers", []):
        if layer.get("name") == BASE_NAME:
            nodes = layer.get("inbound_nodes") or [{}]
            return (nodes[0].get("kwargs") or {}).get("training") is False
    return False


def current_learning_rate(model: "keras.Model") -> float:
    import keras  # here, not at the top: TensorFlow takes seconds to load

    return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))


def _set_trainable(base: "keras.Model", value: bool) -> None:
    # Setting base.trainable alone is not enough: Keras skips the assignment (and so the
    # propagation to the layers) when the flag already has that value, which leaves layers
    # frozen by an earlier partial unfreeze still frozen.
    for layer in base.layers:
        layer.trainable = value
    base.trainable = value


def freeze_base(model: "keras.Model", learning_rate: float | None = None) -> "keras.Model":
    """Freeze the whole InceptionV3 base (only the new head learns), then recompile.

    ``learning_rate`` defaults to the rate the model was compiled with.
    """
    rate = current_learning_rate(model) if learning_rate is None else learning_rate
    _set_trainable(base_model(model), False)
    compile_model(model, rate, model.steps_per_execution)
    return model


def unfreeze_base(model: "keras.Model", from_layer: str | None = None,
                  learning_rate: float | None = None) -> "keras.Model":
    """Unfreeze the base (all of it, or from the layer named ``from_layer`` up), then recompile.

    Recompiling is what makes the change count: Keras fixes the list of trained weights at
    compile time. ``learning_rate`` defaults to the current rate; fine-tuning usually wants a
    lower one. In a pretrained model the BatchNorm layers stay frozen (inference mode), so the
    ImageNet statistics survive fine-tuning on a few dozen images.
    """
    import keras  # here, not at the top: TensorFlow takes seconds to load

    rate = current_learning_rate(model) if learning_rate is None else learning_rate
    base = base_model(model)
    _set_trainable(base, True)
    if keeps_batchnorm_statistics(model):
        for layer in base.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False
    if from_layer:
        names = [layer.name for layer in base.layers]
        if from_layer not in names:
            blocks = ", ".join(name for name in names if name.startswith("mixed") and "_" not in name)
            raise SettingsError(
                f"fine_tune_from is {from_layer!r}, but InceptionV3 has no layer of that name. "
                f"Use one of its blocks ({blocks}), or an empty value to fine-tune the whole base.")
        for layer in base.layers[:names.index(from_layer)]:
            layer.trainable = False
    compile_model(model, rate, model.steps_per_execution)
    return model


@dataclass(frozen=True)
class ParameterCounts:
    trainable: int
    frozen: int

    @property
    def total(self) -> int:
        return self.trainable + self.frozen

    def __str__(self) -> str:
        share = 100.0 * self.trainable / self.total if self.total else 0.0
        return (f"Trainable parameters: {self.trainable:,} ({share:.1f}% of {self.total:,}); "
                f"frozen: {self.frozen:,} (not changed by training; includes BatchNorm statistics).")


def trainable_summary(model: "keras.Model") -> ParameterCounts:
    """Trainable vs frozen parameter counts; ``print()`` it for one readable sentence."""
    def count(variables) -> int:
        return int(sum(int(np.prod(v.shape)) for v in variables))

    return ParameterCounts(trainable=count(model.trainable_weights), frozen=count(model.non_trainable_weights))


__all__ = [
    "BASE_NAME", "FEATURES_LAYER", "LAST_CONV_BLOCK", "NORMALIZE_LAYER", "OUTPUT_LAYER", "PIXEL_SCALING_LAYER", "ParameterCounts",
    "base_model", "build_model", "compile_model", "describe_input", "describe_start", "each_image_normalized", "freeze_base", "keeps_batchnorm_statistics",
    "set_batchnorm_momentum", "strategy",
    "trainable_summary", "unfreeze_base",
]
