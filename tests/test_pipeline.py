"""The tf.data pipeline on the fetched shared dataset (75x75, smoke profile) and on mixed-format files."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from PIL import Image

from hello_dl import pipeline
from hello_dl.errors import DataError
from hello_dl.images import load_image, resize_image
from hello_dl.settings import load_settings

CHEST, ABDOMEN = "openI_CXR", "openI_abd_xray"


def one_epoch(data):
    images, labels = [], []
    for x, y in data:
        images.append(x.numpy())
        labels.append(y.numpy())
    return np.concatenate(images), np.concatenate(labels)


def image_keys(images: np.ndarray) -> list[bytes]:
    """A key per image that survives reordering (to compare epochs as sets)."""
    return sorted(np.round(img, 4).tobytes() for img in images)


@pytest.fixture
def quiet_settings(smoke_settings):
    """Smoke settings with a fixed seed; augmentation switched as the test asks."""
    from hello_dl.environment import set_seed

    def make(**overrides):
        settings = smoke_settings(**overrides)
        set_seed(settings.seed)
        return settings

    return make


# --- augmentation layers -----------------------------------------------------------------------------------
def test_augmentation_layers_follow_the_settings():
    import keras

    settings = load_settings("smoke", environ={}, shortcut_augmentation=False)  # geometric steps only
    model = pipeline.augmentation_layers(settings)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["RandomRotation", "RandomTranslation", "RandomShear", "RandomZoom", "RandomFlip"]
    rotation, translation, shear, zoom, flip = model.layers
    assert rotation.factor == pytest.approx((-20 / 360, 20 / 360))
    assert (translation.height_factor, translation.width_factor) == (0.2, 0.2)
    assert shear.x_factor == pytest.approx((-0.2, 0.2)) and shear.y_factor == pytest.approx((-0.2, 0.2))
    assert zoom.height_factor == 0.2 and flip.mode == "horizontal"
    assert {layer.fill_mode for layer in model.layers[:4]} == {"constant"}

    images = np.random.default_rng(0).uniform(0, 255, (4, 75, 75, 3)).astype(np.float32)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model(images, training=False)), images)
    changed = keras.ops.convert_to_numpy(model(images, training=True))
    assert changed.shape == images.shape and not np.allclose(changed, images)

    no_flip = pipeline.augmentation_layers(settings.replace(horizontal_flip=False, shear=0.0))
    assert [type(layer).__name__ for layer in no_flip.layers] == ["RandomRotation", "RandomTranslation", "RandomZoom"]
    nothing = pipeline.augmentation_layers(settings.replace(rotation_degrees=0, width_shift=0, height_shift=0,
                                                            shear=0, zoom=0, horizontal_flip=False))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(nothing(images, training=True)), images)


# --- the datasets on the shared data -----------------------------------------------------------------------
def test_build_datasets_shapes_labels_and_class_info(quiet_settings):
    data = pipeline.build_datasets(quiet_settings(batch_size=5))
    assert data.class_info.describe() == f"0 → {CHEST} → chest\n1 → {ABDOMEN} → abdomen"
    assert (data.train_count, data.val_count) == (65, 10)
    assert data.counts == {"train": {"chest": 33, "abdomen": 32}, "val": {"chest": 5, "abdomen": 5}}
    assert (data.train_steps, data.val_steps) == (13, 2)
    assert "0 → openI_CXR → chest" in data.describe() and "augmentation on (training only)" in data.describe()
    for path, label in zip(data.train_files + data.val_files, list(data.train_labels) + list(data.val_labels)):
        assert label == {CHEST: 0, ABDOMEN: 1}[path.parent.name]
    x, y = next(iter(data.train))
    assert x.shape == (5, 75, 75, 3) and x.dtype.name == "float32"
    assert y.shape == (5, 1) and y.dtype.name == "float32"
    # Plain pixel values 0-255: the model's own first layer scales them to [-1, 1].
    assert float(x.numpy().min()) >= 0.0 and float(x.numpy().max()) <= 255.0
    assert float(x.numpy().max()) > 200.0
    assert "0-255 (the model scales them to [-1, 1])" in data.describe()


def test_validation_uses_every_image_unaugmented_in_file_order(quiet_settings):
    settings = quiet_settings()
    data = pipeline.build_datasets(settings)
    images, labels = one_epoch(data.val)
    assert images.shape == (10, 75, 75, 3)  # 10 = 5 + 5: no image dropped
    np.testing.assert_array_equal(labels.ravel(), data.val_labels)
    expected = pipeline.load_images(data.val_files, settings)  # the inference path
    np.testing.assert_array_equal(images, expected)
    again, _ = one_epoch(data.val)
    np.testing.assert_array_equal(again, images)  # and identical every epoch


def test_training_epoch_has_every_image_reshuffled_and_seeded(quiet_settings):
    settings = quiet_settings(augment=False)
    data = pipeline.build_datasets(settings)
    first_images, first_labels = one_epoch(data.train)
    second_images, second_labels = one_epoch(data.train)
    assert first_images.shape[0] == second_images.shape[0] == 65
    assert Counter(first_labels.ravel().tolist()) == {0.0: 33, 1.0: 32}
    # Without augmentation an epoch is exactly the training images, in a new order each epoch.
    expected = pipeline.load_images(data.train_files, settings).astype(np.float32)
    assert image_keys(first_images) == image_keys(expected) == image_keys(second_images)
    assert not np.array_equal(first_images, second_images)  # reshuffled each epoch
    # Same seed, same order.
    rebuilt = pipeline.build_datasets(quiet_settings(augment=False))
    np.testing.assert_array_equal(one_epoch(rebuilt.train)[1], first_labels)


def test_augmentation_only_touches_training_batches(quiet_settings):
    augmented = pipeline.build_datasets(quiet_settings(augment=True))
    plain_settings = quiet_settings(augment=False)
    train_images, _ = one_epoch(augmented.train)
    originals = pipeline.load_images(augmented.train_files, plain_settings).astype(np.float32)
    assert train_images.shape == originals.shape
    assert image_keys(train_images) != image_keys(originals)
    assert float(train_images.min()) >= 0.0 and float(train_images.max()) <= 255.0
    val_images, _ = one_epoch(augmented.val)
    np.testing.assert_array_equal(val_images, pipeline.load_images(augmented.val_files, plain_settings))


def test_keep_aspect_ratio_pads_wide_abdomen_images(quiet_settings, fetched_dataset):
    settings = quiet_settings(keep_aspect_ratio=True)
    path = fetched_dataset / "TEST" / "abd2.png"  # 404 wide, 489 high
    prepared = pipeline.load_images([path], settings)[0]
    assert prepared.shape == (75, 75, 3)
    assert (prepared[:, :3] == 0).all() and (prepared[:, -3:] == 0).all()  # black bars
    stretched = pipeline.load_images([path], quiet_settings(keep_aspect_ratio=False))[0]
    assert not (stretched[:, :3] == 0).all()


def test_load_split_arrays_for_test_and_val(quiet_settings):
    settings = quiet_settings()
    test = pipeline.load_split_arrays(settings, "test")
    assert test.images.shape == (2, 75, 75, 3) and test.images.dtype == np.uint8
    assert test.labels.tolist() == [pipeline.UNKNOWN_LABEL] * 2
    assert [p.name for p in test.files] == ["abd2.png", "chest2.png"]
    val = pipeline.load_split_arrays(settings, "val")
    np.testing.assert_array_equal(val.images, pipeline.load_images(val.files, settings))
    assert val.labels.tolist() == [0] * 5 + [1] * 5  # class folders in settings order, files sorted
    first = val.files[0]
    np.testing.assert_array_equal(val.images[0], resize_image(load_image(first), 75))


# --- mixed formats through the one loader -------------------------------------------------------------
def _mixed_layout(root, dicom_file):
    rng = np.random.default_rng(3)

    def noise(h, w):
        return rng.integers(0, 255, (h, w, 3), dtype=np.uint8)

    for split, count in (("TRAIN", 2), ("VAL", 1)):
        chest, abdomen = root / split / CHEST, root / split / ABDOMEN
        chest.mkdir(parents=True)
        abdomen.mkdir(parents=True)
        for i in range(count):
            Image.fromarray(noise(90, 80)).save(chest / f"rgb {i} (a).png")
            Image.fromarray(noise(100, 100)[..., 0]).save(chest / f"gray_{i}.jpg")
            Image.fromarray(noise(120, 90)).convert("CMYK").save(abdomen / f"cmyk_{i}.jpg")
            Image.fromarray((rng.integers(0, 4096, (110, 100))).astype(np.uint16)).save(abdomen / f"deep_{i}.png")
            rgba = np.dstack([noise(80, 80), np.full((80, 80), 128, np.uint8)])
            Image.fromarray(rgba).save(abdomen / f"alpha_{i}.png")
            Image.fromarray(noise(85, 85)).quantize(8).save(chest / f"palette_{i}.png")
            dicom_file(chest / f"film_{i}.dcm", rng.integers(0, 4096, (96, 96)).astype(np.uint16),
                       bits_stored=12, photometric="MONOCHROME1")
    return root


def test_mixed_formats_build_one_pipeline(tmp_path, dicom_file, untouched):
    from hello_dl.environment import set_seed

    root = _mixed_layout(tmp_path / "mixed", dicom_file)
    untouched(root)
    settings = load_settings("smoke", environ={}, data_dir=str(root), batch_size=4)
    set_seed(settings.seed)
    data = pipeline.build_datasets(settings)
    assert (data.train_count, data.val_count) == (14, 7)
    images, labels = one_epoch(data.val)
    assert images.shape == (7, 75, 75, 3) and labels.shape == (7, 1)
    assert np.isfinite(images).all() and images.min() >= 0 and images.max() <= 255


def test_corrupt_file_in_the_data_names_it(tmp_path, dicom_file):
    root = _mixed_layout(tmp_path / "mixed", dicom_file)
    broken = root / "VAL" / ABDOMEN / "half.png"
    broken.write_bytes((root / "VAL" / ABDOMEN / "deep_0.png").read_bytes()[:300])
    settings = load_settings("smoke", environ={}, data_dir=str(root))
    with pytest.raises(DataError) as caught:
        pipeline.build_datasets(settings)
    assert str(broken) in str(caught.value)


def test_decoded_images_are_cached_and_read_only(tmp_path):
    path = tmp_path / "x.png"
    Image.fromarray(np.full((90, 90, 3), 77, np.uint8)).save(path)
    settings = load_settings("smoke", environ={})
    first = pipeline.load_for_model(path, settings)
    assert pipeline.load_for_model(path, settings) is first
    assert not first.flags.writeable
    Image.fromarray(np.full((90, 90, 3), 200, np.uint8)).save(path)  # the file changes: re-read
    assert pipeline.load_for_model(path, settings)[0, 0, 0] == 200


def test_augmented_epochs_repeat_with_the_same_seed(quiet_settings):
    first = one_epoch(pipeline.build_datasets(quiet_settings(augment=True)).train)
    second = one_epoch(pipeline.build_datasets(quiet_settings(augment=True)).train)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])


# --- what the lessons show: class samples and augmentation examples ------------------------------------
def test_class_samples_are_the_files_at_their_own_size(quiet_settings):
    samples = pipeline.class_samples(quiet_settings(), split="train", per_class=3)
    assert list(samples) == ["chest", "abdomen"] and all(len(v) == 3 for v in samples.values())
    first = samples["chest"][0]
    assert first.file.parent.name == CHEST and first.caption == first.file.name
    np.testing.assert_array_equal(first.image, load_image(first.file))  # not resized: the real size shows
    assert first.image.shape == (512, 512, 3)


def test_augmentation_examples_are_seeded_versions_of_the_model_input(quiet_settings):
    settings = quiet_settings()
    file = pipeline.class_samples(settings, per_class=1)["chest"][0].file
    original, augmented = pipeline.augmentation_examples(file, settings, count=5, seed=3)
    np.testing.assert_array_equal(original, pipeline.load_for_model(file, settings))
    assert augmented.shape == (5, 75, 75, 3) and augmented.dtype == np.uint8
    assert all(not np.array_equal(original, other) for other in augmented)  # really augmented
    again = pipeline.augmentation_examples(load_image(file), settings, count=5, seed=3)  # an array works too
    np.testing.assert_array_equal(again[0], original)
    np.testing.assert_array_equal(again[1], augmented)  # same seed, same versions
    other = pipeline.augmentation_examples(file, settings, count=5, seed=4)[1]
    assert not np.array_equal(other, augmented)
