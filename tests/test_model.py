"""The InceptionV3 classifier: structure, from-scratch vs pretrained BatchNorm, freezing, strategy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

from hello_dl import model as model_lib
from hello_dl.settings import SettingsError, load_settings

PROJECT_ROOT = Path(__file__).resolve().parents[1]
HEAD_PARAMETERS = 2048 * 256 + 256 + 256 + 1  # Dense 256 on 2048 pooled features, then Dense 1


def _settings(**overrides):
    values = {"weights": "none", "image_size": 75}
    values.update(overrides)
    return load_settings("smoke", environ={}, **values)


def _batch(seed: int = 0, count: int = 4) -> np.ndarray:
    """Plain RGB pixel values, as any image file gives them: the model scales them itself."""
    return np.random.default_rng(seed).integers(0, 256, (count, 75, 75, 3)).astype("float32")


@pytest.fixture(scope="module")
def scratch_model():
    return model_lib.build_model(_settings(dropout=0.0, steps_per_execution=2, learning_rate=3e-4))


def test_structure_follows_the_paper(scratch_model):
    import keras

    names = [layer.name for layer in scratch_model.layers]
    # From scratch (weights none) each image is also normalised to its own mean and spread.
    assert names == ["image", model_lib.PIXEL_SCALING_LAYER, model_lib.NORMALIZE_LAYER, model_lib.BASE_NAME,
                     "average_pool", model_lib.FEATURES_LAYER, model_lib.OUTPUT_LAYER]
    assert scratch_model.input_shape == (None, 75, 75, 3)
    assert scratch_model.output_shape == (None, 1)
    features = scratch_model.get_layer(model_lib.FEATURES_LAYER)
    assert features.units == 256 and features.activation is keras.activations.relu
    assert scratch_model.get_layer(model_lib.OUTPUT_LAYER).activation is keras.activations.sigmoid
    assert model_lib.base_model(scratch_model).get_layer(model_lib.LAST_CONV_BLOCK) is not None


def test_the_model_scales_plain_pixels_as_inceptionv3_expects_and_predicts_as_before(scratch_model, tmp_path):
    """Before, callers scaled with preprocess_input and fed [-1, 1]; now the model does it, same numbers."""
    import keras
    from keras.applications.inception_v3 import preprocess_input

    scaling = scratch_model.get_layer(model_lib.PIXEL_SCALING_LAYER)
    assert isinstance(scaling, keras.layers.Rescaling)
    pixels = np.array([[0.0, 51.0, 127.5, 255.0]], dtype="float32")
    assert np.allclose(scaling(pixels), preprocess_input(pixels.copy()), atol=1e-6)
    # The same layers without the scaling, fed the old way, give the same probabilities.
    old_input = keras.Input((75, 75, 3))
    x = old_input
    for layer in scratch_model.layers[2:]:
        x = layer(x, training=False)
    old_way = keras.Model(old_input, x)
    images = _batch(5).astype("uint8")
    before = old_way.predict(preprocess_input(images.astype("float32")), verbose=0)
    path = tmp_path / "model.keras"
    scratch_model.save(path)
    after = keras.models.load_model(path, safe_mode=True).predict(images, verbose=0)  # uint8, 0-255
    assert np.ptp(before) > 0 and np.allclose(after, before, atol=1e-5)
    text = model_lib.describe_input(scratch_model)
    assert "0-255" in text and "into -1" in text and "into 0" in text and "into 1" in text


def test_from_scratch_each_image_is_normalised_so_contrast_alone_changes_nothing(scratch_model):
    """A lower contrast (a flatter display) reaches the network as (nearly) the same input."""
    from hello_dl import stress

    images = _batch(7).astype("uint8")
    flatter = np.stack([stress.lower_contrast(image) for image in images])  # 70 % of the gray range
    normalise = scratch_model.get_layer(model_lib.NORMALIZE_LAYER)
    scaled = scratch_model.get_layer(model_lib.PIXEL_SCALING_LAYER)(images.astype("float32"))
    out = np.asarray(normalise(scaled))
    assert np.allclose(out.mean(axis=(1, 2, 3)), 0, atol=1e-4) and np.allclose(out.std(axis=(1, 2, 3)), 1, atol=1e-2)
    # What the base makes of the images (the pooled features): a random network's probabilities all
    # sit near 0.5, its features do not.
    def change(network):
        import keras

        pooled = keras.Model(network.inputs, network.get_layer("average_pool").output)
        a, b = pooled.predict(images, verbose=0), pooled.predict(flatter, verbose=0)
        return np.abs(a - b).max() / np.abs(a).max()

    assert change(scratch_model) < 0.01  # what is left: the flatter image rounded to whole gray levels
    # Without the layer (what pretrained weights get: ImageNet expects the plain [-1, 1] range)
    # the same flatter images reach the base changed: the layer is what makes the difference.
    plain = model_lib.build_model(_settings(dropout=0.0, normalize_each_image=False))
    assert model_lib.NORMALIZE_LAYER not in [layer.name for layer in plain.layers]
    assert change(plain) > 0.05
    assert "mean 0 and spread 1" in model_lib.describe_input(scratch_model)
    assert "normalize_each_image" not in model_lib.describe_input(plain)


def test_compiled_with_adam_bce_accuracy_auc(scratch_model):
    import keras

    assert isinstance(scratch_model.optimizer, keras.optimizers.Adam)
    assert model_lib.current_learning_rate(scratch_model) == pytest.approx(3e-4)
    assert scratch_model.loss == "binary_crossentropy"
    assert scratch_model.steps_per_execution == 2
    config = json.dumps(scratch_model.get_compile_config())
    assert "accuracy" in config and '"auc"' in config


def test_dropout_layer_follows_setting():
    model = model_lib.build_model(_settings(dropout=0.5, dense_units=32))
    assert model.get_layer("dropout").rate == 0.5
    assert model.get_layer(model_lib.FEATURES_LAYER).units == 32


def test_from_scratch_batchnorm_trains_with_fast_momentum(scratch_model):
    import keras

    base = model_lib.base_model(scratch_model)
    momenta = {layer.momentum for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization)}
    assert momenta == {_settings().bn_momentum_from_scratch}  # the from-scratch recipe's value
    assert not model_lib.keeps_batchnorm_statistics(scratch_model)
    # BatchNorm uses batch statistics when training: training and inference outputs differ.
    x = _batch()
    assert not np.allclose(scratch_model(x, training=True), scratch_model(x, training=False), atol=1e-4)
    assert "from scratch" in model_lib.describe_start(_settings())


def test_freeze_and_unfreeze_recompile_with_the_right_rate(scratch_model):
    import keras

    total = model_lib.trainable_summary(scratch_model).total
    model_lib.freeze_base(scratch_model, learning_rate=1e-3)
    frozen = model_lib.trainable_summary(scratch_model)
    assert frozen.trainable == HEAD_PARAMETERS and frozen.total == total
    assert model_lib.current_learning_rate(scratch_model) == pytest.approx(1e-3)
    assert scratch_model.steps_per_execution == 2  # kept through the recompile

    model_lib.unfreeze_base(scratch_model, from_layer="mixed9", learning_rate=1e-5)
    partial = model_lib.trainable_summary(scratch_model)
    assert HEAD_PARAMETERS < partial.trainable < total
    assert model_lib.current_learning_rate(scratch_model) == pytest.approx(1e-5)
    base = model_lib.base_model(scratch_model)
    first_trainable = next(layer.name for layer in base.layers if layer.trainable and layer.weights)
    assert base.layers.index(base.get_layer(first_trainable)) > base.layers.index(base.get_layer("mixed8"))

    model_lib.unfreeze_base(scratch_model)  # whole base, rate kept
    everything = model_lib.trainable_summary(scratch_model)
    statistics = sum(int(np.prod(v.shape)) for layer in base.layers
                     if isinstance(layer, keras.layers.BatchNormalization)
                     for v in (layer.moving_mean, layer.moving_variance))
    assert everything.trainable == total - statistics
    assert model_lib.current_learning_rate(scratch_model) == pytest.approx(1e-5)
    text = str(everything)
    assert f"{everything.trainable:,}" in text and "frozen" in text


def test_unknown_fine_tune_layer_names_the_choices(scratch_model):
    with pytest.raises(SettingsError, match="mixed10") as caught:
        model_lib.unfreeze_base(scratch_model, from_layer="mixed99")
    assert "fine_tune_from" in str(caught.value)


def test_pretrained_model_keeps_imagenet_statistics_when_fine_tuned(inception_notop_h5, tmp_path):
    import keras

    settings = _settings(weights=str(inception_notop_h5), dropout=0.0)
    model = model_lib.build_model(settings)
    base = model_lib.base_model(model)
    first_convolution = next(layer for layer in base.layers if isinstance(layer, keras.layers.Conv2D))
    with h5py.File(inception_notop_h5, "r") as handle:  # the file's first kernel, read directly
        group = handle["model_weights"]
        first = next(name for name in group.attrs["layer_names"] if len(group[name].attrs["weight_names"]))
        saved_kernel = group[first][group[first].attrs["weight_names"][0]][()]
    assert np.array_equal(first_convolution.kernel.numpy(), saved_kernel)
    assert model_lib.keeps_batchnorm_statistics(model)
    assert not settings.normalize_each_image  # ImageNet weights expect the plain [-1, 1] range
    assert model_lib.NORMALIZE_LAYER not in [layer.name for layer in model.layers]
    assert "ImageNet" in model_lib.describe_start(settings)
    momenta = {layer.momentum for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization)}
    assert momenta == {0.99}  # untouched: its statistics are not relearned

    model_lib.unfreeze_base(model, learning_rate=1e-5)
    batchnorms = [layer for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization)]
    convolutions = [layer for layer in base.layers if isinstance(layer, keras.layers.Conv2D)]
    assert all(layer.trainable for layer in convolutions)
    assert not any(layer.trainable for layer in batchnorms)
    # Inference mode even when Keras trains: the same output with training=True and False.
    x = _batch(1)
    assert np.allclose(model(x, training=True), model(x, training=False), atol=1e-5)

    path = tmp_path / "pretrained.keras"
    model.save(path)
    reloaded = keras.models.load_model(path, safe_mode=True)
    assert model_lib.keeps_batchnorm_statistics(reloaded)
    assert np.allclose(reloaded(x, training=False), model(x, training=False), atol=1e-5)


def test_default_strategy_on_one_device():
    import tensorflow as tf

    chosen = model_lib.strategy()
    assert chosen.num_replicas_in_sync == 1
    assert not isinstance(chosen, tf.distribute.MirroredStrategy)


MULTI_REPLICA_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf

    # Must happen before TensorFlow initialises its devices: split the CPU in two.
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])

    from hello_dl import model as model_lib
    from hello_dl.settings import load_settings

    devices = [device.name for device in tf.config.list_logical_devices("CPU")]
    strategy = model_lib.strategy(devices)
    settings = load_settings("smoke", environ={}, weights="none", image_size=75, batch_size=4)
    model = model_lib.build_model(settings, distribution=strategy)
    model_lib.freeze_base(model)  # only the head's gradients: the step stays quick
    images = np.random.default_rng(0).integers(0, 256, (8, 75, 75, 3)).astype("float32")
    labels = np.array([[0], [1]] * 4, dtype="float32")
    data = tf.data.Dataset.from_tensor_slices((images, labels)).batch(4)
    history = model.fit(data, epochs=1, verbose=0)
    print(json.dumps({
        "strategy": type(strategy).__name__,
        "replicas": strategy.num_replicas_in_sync,
        "model_strategy": type(model.distribute_strategy).__name__,
        "devices": devices,
        "loss": history.history["loss"][-1],
    }))
""")


@pytest.mark.slow
def test_mirrored_strategy_with_two_logical_cpus(tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith("HELLO_DL_")}
    env["HELLO_DL_HOME"] = str(PROJECT_ROOT)
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    completed = subprocess.run([sys.executable, "-c", MULTI_REPLICA_SCRIPT], capture_output=True, text=True,
                               env=env, cwd=tmp_path, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report["strategy"] == "MirroredStrategy"
    assert report["replicas"] == 2
    assert report["model_strategy"] == "MirroredStrategy"
    assert len(report["devices"]) == 2
    assert np.isfinite(report["loss"])
