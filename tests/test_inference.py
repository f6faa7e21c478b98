"""The memo of model answers: each image goes through one set of weights once, and the answers are the network's."""

from __future__ import annotations

import numpy as np
import pytest

from hello_dl import inference
from hello_dl import model as model_lib
from hello_dl.settings import load_settings

SIZE = 75


@pytest.fixture(scope="module")
def network():
    # A real kit classifier at a small size, random weights (no download needed).
    return model_lib.build_model(load_settings("smoke", environ={}, weights="none", image_size=SIZE,
                                               dense_units=16))


@pytest.fixture
def images():
    return np.random.default_rng(3).integers(0, 256, (6, SIZE, SIZE, 3)).astype(np.uint8)


@pytest.fixture
def passes(monkeypatch):
    """Counts the forward passes (and the images in them) that really reach the network."""
    seen: list[int] = []
    real_run = inference._run

    def counting_run(model, extractor, batch):
        seen.append(len(batch))
        return real_run(model, extractor, batch)

    inference.forget()
    monkeypatch.setattr(inference, "_run", counting_run)
    yield seen
    inference.forget()


def _features_directly(network, images):
    import keras

    layer = network.get_layer(model_lib.FEATURES_LAYER)
    return np.asarray(keras.Model(network.inputs, layer.output).predict(images, verbose=0))


def test_answers_are_the_networks_own(network, images, passes):
    expected_scores = np.asarray(network.predict(images, verbose=0)).reshape(-1)
    expected_features = _features_directly(network, images)
    np.testing.assert_allclose(inference.scores(network, images), expected_scores, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(inference.features(network, images), expected_features, rtol=1e-4, atol=1e-5)
    assert passes == [6]  # the features came with the scores' forward pass
    # More images than one forward pass takes: several passes, the last one padded; the same answers.
    many = np.concatenate([images] * 6) + np.arange(36, dtype=np.uint8)[:, None, None, None]
    assert len(many) % inference.BATCH_IMAGES != 0
    np.testing.assert_allclose(inference.scores(network, many),
                               np.asarray(network.predict(many, verbose=0)).reshape(-1), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(inference.features(network, many), _features_directly(network, many),
                               rtol=1e-4, atol=1e-5)


def test_only_what_is_new_runs_again(network, images, passes):
    first = inference.scores(network, images)
    np.testing.assert_array_equal(inference.scores(network, images[::-1]), first[::-1])
    assert passes == [6]  # the same images in another order: nothing ran
    changed = images.copy()
    changed[2, 0, 0, 0] ^= 1  # one pixel of one image
    inference.scores(network, changed)
    assert passes == [6, 1]
    twice = np.stack([images[0], changed[4], changed[4]])  # a picture that appears twice runs once
    inference.forget()
    inference.scores(network, twice)
    assert passes == [6, 1, 2]


def test_new_weights_are_a_new_model_and_a_reloaded_file_is_not(network, images, passes, tmp_path):
    import keras

    before = inference.scores(network, images)
    path = tmp_path / "model.keras"
    network.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True, compile=False)
    assert inference.weights_key(reloaded) == inference.weights_key(network)
    np.testing.assert_array_equal(inference.scores(reloaded, images), before)
    assert passes == [6]
    dense = reloaded.get_layer(model_lib.FEATURES_LAYER)
    kernel = dense.kernel
    kernel.assign(kernel.numpy() * 1.5)  # "trained one step further"
    after = inference.scores(reloaded, images)
    assert passes == [6, 6]
    assert not np.allclose(after, before)
    np.testing.assert_allclose(after, np.asarray(reloaded.predict(images, verbose=0)).reshape(-1),
                               rtol=1e-4, atol=1e-6)


def test_only_the_newest_models_are_remembered(network, images, passes, monkeypatch):
    monkeypatch.setattr(inference, "MODELS_KEPT", 1)
    inference.scores(network, images)
    other = model_lib.build_model(load_settings("smoke", environ={}, weights="none", image_size=SIZE,
                                                dense_units=8, seed=5))
    inference.scores(other, images)
    inference.scores(network, images)  # forgotten when the other model came
    assert passes == [6, 6, 6]


def test_a_model_without_a_features_layer_gives_scores_only(images, passes):
    import keras

    inputs = keras.Input((SIZE, SIZE, 3))
    outputs = keras.layers.Dense(1, activation="sigmoid")(keras.layers.GlobalAveragePooling2D()(inputs))
    plain = keras.Model(inputs, outputs)
    np.testing.assert_allclose(inference.scores(plain, images),
                               np.asarray(plain.predict(images.astype("float32"), verbose=0)).reshape(-1),
                               rtol=1e-5)
    with pytest.raises(ValueError, match="no layer named"):
        inference.features(plain, images)
    assert inference.scores(plain, images[:0]).shape == (0,)
