"""The feature cache: where the network is split, and that training on stored values is the same training.

Real InceptionV3 models at 75 px with a same-layout random weights file (the pretrained path:
BatchNorm keeps its statistics), real training runs on the shared dataset (the runs that compare
cached and uncached training use 12 of its training images and all of its validation images).
"""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

from hello_dl import feature_cache, pipeline, train
from hello_dl import model as model_module
from hello_dl.settings import load_settings

HISTORY_KEYS = ("loss", "accuracy", "auc", "val_loss", "val_accuracy", "val_auc")


@pytest.fixture
def settings_for(shared_dataset, inception_notop_h5, tmp_path):
    """Conference-profile settings at 75 px on the shared data, with the random 'pretrained' weights."""
    def make(**overrides):
        values = {"data_dir": str(shared_dataset), "output_dir": str(tmp_path / "outputs"), "image_size": 75,
                  "weights": str(inception_notop_h5), "warmup_epochs": 2, "finetune_epochs": 2}
        values.update(overrides)
        return load_settings("conference", environ={}, **values)

    return make


@pytest.fixture
def network(settings_for):
    return model_module.build_model(settings_for())


def _images(count: int = 4) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (count, 75, 75, 3)).astype("float32")


def _same_variables(part, network) -> bool:
    ours = {id(v) for v in network.weights}
    return all(id(v) in ours for v in part.weights)


# --- where the network is split --------------------------------------------------------------------------
def test_frozen_base_splits_after_the_pooled_features(network):
    model_module.freeze_base(network)
    split = feature_cache.split_network(network)
    assert split is not None and split.pooled and split.values_per_image == 2048
    # The trained part is the network's own head: its trainable weights are the network's trainable weights.
    assert {id(v) for v in split.trained.trainable_weights} == {id(v) for v in network.trainable_weights}
    assert _same_variables(split.trained, network) and _same_variables(split.fixed, network)
    images = _images()
    together = split.trained(split.fixed(images, training=False), training=False)
    np.testing.assert_allclose(np.asarray(together), np.asarray(network(images, training=False)), atol=1e-6)


def test_partly_unfrozen_base_splits_below_the_first_layer_that_learns(network):
    model_module.unfreeze_base(network, from_layer="mixed9")
    split = feature_cache.split_network(network)
    assert split is not None and not split.pooled
    base = model_module.base_model(network)
    names = [layer.name for layer in base.layers]
    first_learning = next(layer for layer in base.layers if layer.trainable_weights)
    assert names.index(first_learning.name) == names.index("mixed9") + 1  # the cut is mixed9's output
    assert first_learning.name in split.where
    assert split.values_per_image == int(np.prod(base.get_layer("mixed9").output.shape[1:]))
    assert {id(v) for v in split.trained.trainable_weights} == {id(v) for v in network.trainable_weights}
    images = _images()
    together = split.trained(split.fixed(images, training=False), training=False)
    np.testing.assert_allclose(np.asarray(together), np.asarray(network(images, training=False)), atol=1e-5)


def test_no_split_when_the_base_learns_from_its_first_layer(network, settings_for):
    model_module.unfreeze_base(network, from_layer=None)  # the whole base (BatchNorm still frozen)
    assert feature_cache.split_network(network) is None
    scratch = model_module.build_model(settings_for(weights="none", fine_tune_from=""))
    model_module.unfreeze_base(scratch)
    assert feature_cache.split_network(scratch) is None  # from scratch: BatchNorm learns too


def test_dropout_and_learning_batchnorm_are_not_fixed():
    import keras

    assert feature_cache.is_fixed(keras.layers.Conv2D(2, 1, trainable=False))
    assert feature_cache.is_fixed(keras.layers.GlobalAveragePooling2D())
    assert not feature_cache.is_fixed(keras.layers.Dropout(0.5))
    norm = keras.layers.BatchNormalization(center=False, scale=False)  # no weights, but batch statistics
    assert not feature_cache.is_fixed(norm)
    norm.trainable = False
    assert feature_cache.is_fixed(norm)


# --- when the stored values are used ----------------------------------------------------------------------
@pytest.mark.parametrize("augment", [False, True])
def test_training_batches_are_stored_only_without_augmentation(settings_for, augment):
    settings = settings_for(augment=augment)
    data = pipeline.build_datasets(settings)
    network = model_module.build_model(settings)
    model_module.freeze_base(network)
    phase = feature_cache.prepare_phase(network, data, settings, settings.learning_rate)
    assert phase.train_stored is (not augment)
    assert phase.record["validation"] == "stored"
    (values, labels), = phase.val.take(1)
    assert tuple(values.shape) == (settings.batch_size, 2048) and tuple(labels.shape) == (settings.batch_size, 1)
    (values, _), = phase.train.take(1)
    assert tuple(values.shape) == (settings.batch_size, 2048)  # augmented images reach the head as features too
    if augment:
        # The frozen layers run on one batch at a time: tf.data would otherwise run two batches
        # through them at once (its default map_parallelization), competing for the same cores.
        assert phase.train.options().experimental_optimization.map_parallelization is False
    model_module.unfreeze_base(network, from_layer=None)
    assert feature_cache.prepare_phase(network, data, settings, settings.finetune_learning_rate) is None


def test_stored_training_batches_follow_the_image_order_epoch_after_epoch(settings_for):
    settings = settings_for(augment=False)
    data = pipeline.build_datasets(settings)
    index = {file: i for i, file in enumerate(data.train_files)}
    images = pipeline.load_images(data.train_files, settings).astype("float32")
    rows = data.train_batches(np.arange(len(data.train_files), dtype="float32"))

    def order_of_images(epoch) -> list[int]:
        out = []
        for batch, _ in epoch:
            for image in np.asarray(batch):
                out.append(int(np.argmin(np.abs(images - image).reshape(len(images), -1).sum(axis=1))))
        return out

    first = order_of_images(data.train)
    second = [int(i) for batch, _ in rows for i in np.asarray(batch)]
    third = order_of_images(data.train)
    assert sorted(first) == sorted(second) == list(range(len(index)))
    assert first != second != third  # each pass, of either dataset, is the next epoch of one shuffle
    # A fresh build replays the same sequence of epochs, whichever dataset reads each one.
    again = pipeline.build_datasets(settings)
    assert [int(i) for batch, _ in again.train_batches(np.arange(len(index), dtype="float32")) for i in
            np.asarray(batch)] == first
    assert order_of_images(again.train) == second


# --- the same training, with and without the cache -------------------------------------------------------
def _epoch_lines(text: str) -> list[list[str]]:
    """The metric names of each epoch line Keras printed (times and values differ run to run)."""
    return [re.findall(r"(\w+): [-\d.e]+", line) for line in text.splitlines() if re.match(r"\d+/\d+ ", line)]


TRAIN_PER_CLASS = 6  # 12 training images: batches of 5, 5 and 2 (the last one partial) in every epoch


@pytest.fixture(scope="module")
def fewer_training_images(shared_dataset, tmp_path_factory):
    """The shared dataset with its first ``TRAIN_PER_CLASS`` training images of each class and all of VAL
    and TEST: a folder of symbolic links (the shared files are only read).

    Each training step here forwards the whole base at least once (uncached, or augmented); the
    comparison needs several batches per epoch, in a new order every epoch, not all 65 images.
    """
    view = tmp_path_factory.mktemp("fewer_training_images")
    folders = {p.parent for split in ("TRAIN", "VAL", "TEST")
               for p in (shared_dataset / split).rglob("*") if p.is_file()}
    for folder in sorted(folders):
        files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
        if folder.parent == shared_dataset / "TRAIN":
            files = files[:TRAIN_PER_CLASS]
        target = view / folder.relative_to(shared_dataset)
        target.mkdir(parents=True)
        for file in files:
            os.symlink(file, target / file.name)
    return view


@pytest.mark.slow  # four real two-phase training runs at 75 px
@pytest.mark.parametrize("augment", [False, True])
def test_cached_and_uncached_training_give_the_same_history(settings_for, fewer_training_images, augment, capsys):
    settings = settings_for(augment=augment, seed=3, data_dir=str(fewer_training_images))
    cached = train.train(settings, verbose=2)
    cached_output = capsys.readouterr().out
    plain = train.train(settings, verbose=2, use_feature_cache=False)
    plain_output = capsys.readouterr().out

    for key in HISTORY_KEYS:
        np.testing.assert_allclose(cached.history[key], plain.history[key], rtol=1e-4, atol=1e-5, err_msg=key)
    assert cached.history["epoch"] == plain.history["epoch"] == [1, 2, 3, 4]
    assert cached.history["phase"] == plain.history["phase"] == [1, 1, 2, 2]
    assert list(cached.history) == list(plain.history)  # the same columns in the same order
    assert cached.metrics["best_epoch"] == plain.metrics["best_epoch"]
    assert cached.metrics["val_loss"] == pytest.approx(plain.metrics["val_loss"], rel=1e-4, abs=1e-5)

    # The learner sees the same epoch lines (same metrics, same order); only the cache's one sentence is new.
    assert _epoch_lines(cached_output) == _epoch_lines(plain_output) and len(_epoch_lines(plain_output)) == 4
    assert "Frozen layers give an image the same output" in cached_output
    assert "Frozen layers give" not in plain_output

    records = [phase["feature_cache"] for phase in cached.metrics["phases"]]
    assert all(record is not None for record in records)
    assert [record["training"] == "stored" for record in records] == [not augment, not augment]
    base = model_module.base_model(cached.model)
    names = [layer.name for layer in base.layers]
    above_mixed9 = names[names.index("mixed9") + 1]
    assert f"below {above_mixed9!r}" in records[1]["cut"]  # phase 2: the first layer that learns
    assert [phase["feature_cache"] for phase in plain.metrics["phases"]] == [None, None]

    # What is saved is the whole network: it takes images and scores what the run reported.
    images = pipeline.load_split_arrays(settings, "val").images
    probabilities = cached.model.predict(images, verbose=0).ravel()
    assert probabilities.shape == (10,) and cached.metrics["train_images"] == 2 * TRAIN_PER_CLASS
    np.testing.assert_allclose(probabilities, plain.model.predict(images, verbose=0).ravel(), rtol=1e-4, atol=1e-5)
    assert cached.metrics["val_accuracy"] == plain.metrics["val_accuracy"]
