"""The baseline: the paper's own recipe (Lakhani et al. 2018), as it runs on today's Keras.

This is what a participant would otherwise run, so it is reproduced on purpose, flaws included,
and used only by the benchmark (never by the kit):

* input: ``ImageDataGenerator(rescale=1/255, rotation 20, width/height shift 0.2, shear 0.2,
  zoom 0.2, horizontal flip).flow_from_directory`` decoding every PNG from disk on every epoch
  (Keras 3 still ships it as ``tf.keras.preprocessing.image.ImageDataGenerator``; with the
  default ``workers=1`` a ``PyDataset`` is read in the training thread, nothing overlaps);
  validation generator with the rescale only, ``validation_steps = 10 // 5``;
* model: InceptionV3 without its top, GlobalAveragePooling2D, Dense 256 ReLU, Dropout 0.5,
  Dense 1 sigmoid, Adam(1e-4), binary cross-entropy, every layer trainable from epoch 1;
* ``steps_per_epoch = images // batch``, the paper's 20 epochs for the end-to-end figure.
"""

from __future__ import annotations

from pathlib import Path

PAPER_AUGMENTATION = {
    "rotation_range": 20,
    "width_shift_range": 0.2,
    "height_shift_range": 0.2,
    "shear_range": 0.2,
    "zoom_range": 0.2,
    "horizontal_flip": True,
}


def generators(data_dir: Path, image_size: int, batch_size: int, seed: int = 42):
    """(training generator with augmentation, validation generator with rescale only)."""
    import tensorflow as tf

    ImageDataGenerator = tf.keras.preprocessing.image.ImageDataGenerator
    common = {"target_size": (image_size, image_size), "batch_size": batch_size, "class_mode": "binary"}
    train = ImageDataGenerator(rescale=1.0 / 255, **PAPER_AUGMENTATION).flow_from_directory(
        str(Path(data_dir) / "TRAIN"), shuffle=True, seed=seed, **common)
    val = ImageDataGenerator(rescale=1.0 / 255).flow_from_directory(
        str(Path(data_dir) / "VAL"), shuffle=False, **common)
    return train, val


def build_model(image_size: int, weights: str | None = None):
    """InceptionV3 (no top) + GAP + Dense 256 + Dropout 0.5 + sigmoid, all trainable, Adam 1e-4."""
    import keras

    base = keras.applications.InceptionV3(include_top=False, weights=weights,
                                          input_shape=(image_size, image_size, 3))
    features = keras.layers.GlobalAveragePooling2D()(base.output)
    hidden = keras.layers.Dense(256, activation="relu")(features)
    hidden = keras.layers.Dropout(0.5)(hidden)
    output = keras.layers.Dense(1, activation="sigmoid")(hidden)
    model = keras.Model(base.input, output, name="paper_inception_v3")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-4, beta_1=0.9, beta_2=0.999, epsilon=1e-8),
                  loss="binary_crossentropy", metrics=["accuracy"])
    return model


def steps(generator) -> int:
    """The paper's step count: whole batches only (``samples // batch_size``), at least one."""
    return max(1, generator.samples // generator.batch_size)


def fit(model, train, val, epochs: int, callbacks=()):
    return model.fit(train, steps_per_epoch=steps(train), epochs=epochs, validation_data=val,
                     validation_steps=steps(val), callbacks=list(callbacks), verbose=0)


def predict_files(model, paths, image_size: int):
    """The paper's test step: load each file, resize, 1/255, predict; returns probabilities."""
    import numpy as np
    import tensorflow as tf

    image = tf.keras.preprocessing.image
    batch = np.stack([image.img_to_array(image.load_img(str(p), target_size=(image_size, image_size))) / 255.0
                      for p in paths])
    return model.predict(batch, verbose=0).ravel()
