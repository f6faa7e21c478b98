"""Augmentation that takes the file-format shortcuts away (training batches only).

In this dataset the chest images are all 512x512 RGB PNGs and the abdominal ones are journal
figures of every size, many upscaled, JPEG-compressed, framed, with arrows and burnt-in letters.
A network can tell the classes apart by *how the file was made* (sharpness, compression
artefacts, aspect ratio, black bars, contrast, colour marks, the chest films' "L" marker) instead
of by anatomy. Each layer here makes one of those cues appear in **both** classes at random, so it
stops predicting the class:

==========================  ================================================================
layer                       the cue it blurs
==========================  ================================================================
:class:`RandomResolution`   sharpness: a random downscale then upscale (resolution and blur)
:class:`RandomJpegQuality`  compression: a random JPEG quality (blockiness, ringing)
:class:`RandomWindow`       display: random gamma and contrast
:class:`RandomGray`         colour: some images turned gray (coloured arrows)
:class:`RandomFrame`        shape: a random crop of another aspect ratio, then padded with black
                            bars (or stretched), so chest images also show bars and distortion
:class:`RandomCornerMarks`  labels: letters such as L, R, A pasted into a corner of any image
:class:`RandomBorder`       edges: black or white bars along some sides (padding, scanned films)
==========================  ================================================================

All of them work on batches of float pixels 0-255 (``(batch, height, width, 3)``, the cached,
already resized images of :mod:`hello_dl.pipeline`), keep the shape, are seeded (the same seed
gives the same draws, in the same order), and pass images through unchanged when called with
``training=False``. Validation and test images are never augmented.

TensorFlow and Keras are imported at the top of this module (the layers are classes); only
training code imports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf


def _uniform(generator: keras.random.SeedGenerator, batch, low: float, high: float) -> tf.Tensor:
    return tf.convert_to_tensor(keras.random.uniform((batch,), minval=low, maxval=high, seed=generator))


def _chosen(generator: keras.random.SeedGenerator, batch, probability: float) -> tf.Tensor:
    """A boolean per image: is it changed this time?"""
    return _uniform(generator, batch, 0.0, 1.0) < probability


def _per_image(function, elements, images: tf.Tensor) -> tf.Tensor:
    """Apply ``function(image, *params)`` to each image (sizes may vary inside, never outside)."""
    spec = tf.TensorSpec(shape=images.shape[1:], dtype=images.dtype)
    return tf.map_fn(lambda args: function(*args), (images, *elements), fn_output_signature=spec)


class _ShortcutLayer(keras.layers.Layer):
    """Shared plumbing: a seed generator, the probability, training-only behaviour, the config.

    Each subclass lists its own knobs and their defaults in ``KNOBS``; they become attributes and
    part of the layer's config.
    """

    KNOBS: dict[str, Any] = {}

    def __init__(self, probability: float = 0.5, seed: int | None = None, **kwargs):
        knobs = {name: kwargs.pop(name, default) for name, default in self.KNOBS.items()}
        super().__init__(**kwargs)
        for name, value in knobs.items():
            setattr(self, name, type(self.KNOBS[name])(value))
        self.probability = float(probability)
        self.seed = seed
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=True):
        if not training or self.probability <= 0:
            return images
        images = tf.convert_to_tensor(images, dtype=tf.float32)
        return self.transform(images, tf.shape(images)[0])

    def transform(self, images: tf.Tensor, batch) -> tf.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "probability": self.probability, "seed": self.seed,
                **{name: getattr(self, name) for name in self.KNOBS}}


@keras.saving.register_keras_serializable(package="hello_dl")
class RandomResolution(_ShortcutLayer):
    """Shrink to ``scale`` (between ``min_scale`` and 1) of the side, then enlarge back: blur and blockiness.

    The chest files are sharp 512-pixel images shrunk to the model's size; many abdominal figures
    were small and get enlarged, so they look soft. Doing both to every class removes the cue.
    """

    KNOBS = {"min_scale": 0.3}

    def transform(self, images, batch):
        scales = _uniform(self.generator, batch, self.min_scale, 1.0)
        methods = _uniform(self.generator, batch, 0.0, 1.0)  # half bilinear, half nearest on the way up
        chosen = _chosen(self.generator, batch, self.probability)
        height, width = images.shape[1], images.shape[2]

        def one(image, scale, method, apply):
            small = tf.maximum(8, tf.cast(tf.round(scale * tf.constant([height, width], tf.float32)), tf.int32))
            shrunk = tf.image.resize(image, small, method="area")
            up = tf.cond(method < 0.5,
                         lambda: tf.image.resize(shrunk, (height, width), method="bilinear"),
                         lambda: tf.image.resize(shrunk, (height, width), method="nearest"))
            return tf.where(apply, tf.clip_by_value(up, 0.0, 255.0), image)

        return _per_image(one, (scales, methods, chosen), images)



@keras.saving.register_keras_serializable(package="hello_dl")
class RandomJpegQuality(_ShortcutLayer):
    """Re-encode as JPEG with a random quality between ``min_quality`` and ``max_quality``."""

    KNOBS = {"min_quality": 20, "max_quality": 95}

    def transform(self, images, batch):
        qualities = _uniform(self.generator, batch, float(self.min_quality), float(self.max_quality) + 0.999)
        chosen = _chosen(self.generator, batch, self.probability)

        def one(image, quality, apply):
            def compress():
                pixels = tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)
                out = tf.image.adjust_jpeg_quality(pixels, tf.cast(quality, tf.int32))
                return tf.cast(tf.reshape(out, tf.shape(image)), tf.float32)
            return tf.cond(apply, compress, lambda: image)

        return _per_image(one, (qualities, chosen), images)



@keras.saving.register_keras_serializable(package="hello_dl")
class RandomWindow(_ShortcutLayer):
    """A random display: gamma in [1/``gamma``, ``gamma``], contrast ×[1-``contrast``, 1+``contrast``].

    With ``clip`` > 0 it first applies a random window: up to ``clip`` of the range is cut off at
    the dark end and, independently, at the bright end, and the rest stretched to black..white
    (what a narrower window on a viewer does).
    """

    KNOBS = {"gamma": 1.6, "contrast": 0.3, "clip": 0.0}

    def transform(self, images, batch):
        log_gamma = np.log(self.gamma)
        gammas = tf.exp(_uniform(self.generator, batch, -log_gamma, log_gamma))
        factors = _uniform(self.generator, batch, 1.0 - self.contrast, 1.0 + self.contrast)
        chosen = _chosen(self.generator, batch, self.probability)
        shape = (-1, 1, 1, 1)
        gammas = tf.reshape(tf.where(chosen, gammas, 1.0), shape)
        factors = tf.reshape(tf.where(chosen, factors, 1.0), shape)
        images = tf.clip_by_value(images, 0.0, 255.0)
        if self.clip > 0:  # drawn after the others, so clip=0 repeats the earlier draws exactly
            lows = tf.reshape(tf.where(chosen, _uniform(self.generator, batch, 0.0, self.clip), 0.0), shape)
            highs = tf.reshape(tf.where(chosen, _uniform(self.generator, batch, 0.0, self.clip), 0.0), shape)
            images = tf.clip_by_value((images / 255.0 - lows) / (1.0 - lows - highs), 0.0, 1.0) * 255.0
        curved = 255.0 * tf.pow(images / 255.0, gammas)
        return tf.clip_by_value(127.5 + factors * (curved - 127.5), 0.0, 255.0)



@keras.saving.register_keras_serializable(package="hello_dl")
class RandomGray(_ShortcutLayer):
    """Turn some images gray: their luminance (ITU-R 601 weights) in all three channels.

    The kit's own layer rather than ``keras.layers.RandomGrayscale``: that one fails inside a
    ``tf.data`` map on Keras 3.8, the oldest Keras the kit supports ("part of a cycle").
    """

    def transform(self, images, batch):
        chosen = tf.reshape(_chosen(self.generator, batch, self.probability), (-1, 1, 1, 1))
        luminance = tf.reduce_sum(images * tf.constant([0.299, 0.587, 0.114], tf.float32), axis=-1, keepdims=True)
        return tf.where(chosen, tf.repeat(luminance, 3, axis=-1), images)


@keras.saving.register_keras_serializable(package="hello_dl")
class RandomFrame(_ShortcutLayer):
    """Crop a window of a random aspect ratio (width/height between 1/``max_aspect`` and ``max_aspect``).

    With ``pad=True`` the window is scaled to fit and padded with black bars, centred, exactly as
    the kit pads a non-square file when ``keep_aspect_ratio`` is on; with ``pad=False`` it is
    stretched to the full size, as the kit stretches a non-square file otherwise. Either way the
    chest images, all square in this dataset, now also come with bars or distortion, so bars and
    distortion no longer mean "abdomen". (Padding only the non-square images would make the bars
    themselves the cue.) ``min_area`` is the smallest share of the image a window keeps. With
    ``pad=True`` and ``stretch_share`` > 0, that share of the framed images is stretched instead of
    padded, so a training set whose files are stretched to a square sees both bars and distortion.
    """

    KNOBS = {"max_aspect": 1.6, "min_area": 0.6, "pad": True, "stretch_share": 0.0}

    def transform(self, images, batch):
        log_aspect = np.log(self.max_aspect)
        aspects = tf.exp(_uniform(self.generator, batch, -log_aspect, log_aspect))
        areas = _uniform(self.generator, batch, self.min_area, 1.0)
        offsets_y = _uniform(self.generator, batch, 0.0, 1.0)
        offsets_x = _uniform(self.generator, batch, 0.0, 1.0)
        chosen = _chosen(self.generator, batch, self.probability)
        height, width = images.shape[1], images.shape[2]
        pad = self.pad
        # Drawn after the others and only when used, so stretch_share=0 repeats the earlier draws exactly.
        stretched = (_chosen(self.generator, batch, self.stretch_share) if pad and self.stretch_share > 0
                     else tf.zeros((batch,), tf.bool))

        def one(image, aspect, area, oy, ox, stretch, apply):
            h_f, w_f = tf.constant(float(height)), tf.constant(float(width))
            # A window of the chosen aspect and area, never larger than the image.
            crop_w = tf.minimum(w_f, tf.sqrt(area * h_f * w_f * aspect))
            crop_h = tf.minimum(h_f, crop_w / aspect)
            crop_w = tf.minimum(w_f, crop_h * aspect)
            ch = tf.maximum(8, tf.cast(tf.round(crop_h), tf.int32))
            cw = tf.maximum(8, tf.cast(tf.round(crop_w), tf.int32))
            top = tf.cast(tf.round(oy * tf.cast(height - ch, tf.float32)), tf.int32)
            left = tf.cast(tf.round(ox * tf.cast(width - cw, tf.float32)), tf.int32)
            window = tf.image.crop_to_bounding_box(image, top, left, ch, cw)

            def stretched_window():
                return tf.image.resize(window, (height, width), method="bilinear", antialias=True)

            def padded_window():
                scale = tf.minimum(h_f / tf.cast(ch, tf.float32), w_f / tf.cast(cw, tf.float32))
                new_h = tf.clip_by_value(tf.cast(tf.round(tf.cast(ch, tf.float32) * scale), tf.int32), 1, height)
                new_w = tf.clip_by_value(tf.cast(tf.round(tf.cast(cw, tf.float32) * scale), tf.int32), 1, width)
                fitted = tf.image.resize(window, (new_h, new_w), method="bilinear", antialias=True)
                return tf.image.pad_to_bounding_box(fitted, (height - new_h) // 2, (width - new_w) // 2,
                                                    height, width)

            if not pad:
                framed = stretched_window()
            elif self.stretch_share > 0:  # only the chosen way is computed for each image
                framed = tf.cond(stretch, stretched_window, padded_window)
            else:
                framed = padded_window()
            framed = tf.ensure_shape(tf.clip_by_value(framed, 0.0, 255.0), image.shape)
            return tf.where(apply, framed, image)

        return _per_image(one, (aspects, areas, offsets_y, offsets_x, stretched, chosen), images)



@keras.saving.register_keras_serializable(package="hello_dl")
class RandomBorder(_ShortcutLayer):
    """Bars of black or white along some edges: each side gets one with probability 1/2, up to ``max_width`` deep.

    Real files come with edges of every kind: black bars where a non-square film was padded, a
    white rim where a film was scanned on a light box, a dark frame round a journal figure. In this
    dataset only the abdominal figures have them, so an edge can say "abdomen"; and a network that
    scales each image to its own mean and spread (the from-scratch recipe) sees a wide bar change
    the whole image's scaling. Bars on images of both classes, black or white, teach it to ignore
    both.
    """

    KNOBS = {"max_width": 0.2}

    def transform(self, images, batch):
        height, width = images.shape[1], images.shape[2]
        depths = [_uniform(self.generator, batch, 0.0, self.max_width) for _ in range(4)]  # top, bottom, left, right
        sides = [_chosen(self.generator, batch, 0.5) for _ in range(4)]
        white = _chosen(self.generator, batch, 0.5)
        chosen = _chosen(self.generator, batch, self.probability)
        depths = [tf.where(side & chosen, depth, 0.0)[:, None] for depth, side in zip(depths, sides)]
        rows = (tf.range(height, dtype=tf.float32)[None, :] + 0.5) / height  # (1, H): 0 at the top, 1 at the bottom
        cols = (tf.range(width, dtype=tf.float32)[None, :] + 0.5) / width
        in_rows = (rows < depths[0]) | (rows > 1.0 - depths[1])  # (batch, H)
        in_cols = (cols < depths[2]) | (cols > 1.0 - depths[3])  # (batch, W)
        bar = in_rows[:, :, None] | in_cols[:, None, :]  # (batch, H, W)
        shade = tf.where(white, 255.0, 0.0)[:, None, None, None]
        return tf.where(bar[..., None], shade, images)


#: Letters drawn by :class:`RandomCornerMarks` (side markers and figure-panel labels).
MARK_TEXTS = ("L", "R", "LT", "RT", "A", "B", "C", "1")


def _glyph_bank(texts=MARK_TEXTS, size: int = 32) -> np.ndarray:
    """Each text drawn white on black with Pillow's built-in font, as ``(n, size, size, 1)`` masks 0-1."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=size - 8)
    bank = np.zeros((len(texts), size, size, 1), dtype=np.float32)
    for index, text in enumerate(texts):
        canvas = Image.new("L", (size * 2, size), 0)
        ImageDraw.Draw(canvas).text((2, 2), text, fill=255, font=font)
        box = canvas.getbbox() or (0, 0, size, size)
        glyph = canvas.crop(box).resize((size, size), Image.Resampling.BILINEAR)
        bank[index, ..., 0] = np.asarray(glyph, dtype=np.float32) / 255.0
    return bank


@keras.saving.register_keras_serializable(package="hello_dl")
class RandomCornerMarks(_ShortcutLayer):
    """Paste a letter (L, R, LT, A, ...) in a random corner, white (or sometimes black), on any image.

    Every chest film here carries an "L" in its top-right corner and many abdominal figures carry
    arrows and panel letters; marks on both classes, anywhere in the corners, stop marks meaning a
    class. The letter's height is ``min_size``..``max_size`` of the image side.
    """

    KNOBS = {"min_size": 0.04, "max_size": 0.10}

    def __init__(self, probability: float = 0.5, seed: int | None = None, **kwargs):
        super().__init__(probability, seed, **kwargs)
        self.bank = tf.constant(_glyph_bank())

    def transform(self, images, batch):
        count = int(self.bank.shape[0])
        picks = _uniform(self.generator, batch, 0.0, count - 1e-3)
        sizes = _uniform(self.generator, batch, self.min_size, self.max_size)
        corners_y = _uniform(self.generator, batch, 0.0, 1.0)
        corners_x = _uniform(self.generator, batch, 0.0, 1.0)
        inset = _uniform(self.generator, batch, 0.02, 0.15)
        shades = _uniform(self.generator, batch, 0.0, 1.0)
        chosen = _chosen(self.generator, batch, self.probability)
        height, width = images.shape[1], images.shape[2]
        bank = self.bank

        def one(image, pick, size, cy, cx, margin, shade, apply):
            side = tf.maximum(4, tf.cast(tf.round(size * height), tf.int32))
            glyph = tf.image.resize(tf.gather(bank, tf.cast(pick, tf.int32)), (side, side), method="bilinear")
            gap_y = tf.cast(tf.round(margin * height), tf.int32)
            gap_x = tf.cast(tf.round(margin * width), tf.int32)
            top = tf.where(cy < 0.5, gap_y, height - side - gap_y)
            left = tf.where(cx < 0.5, gap_x, width - side - gap_x)
            mask = tf.image.pad_to_bounding_box(glyph, tf.maximum(top, 0), tf.maximum(left, 0), height, width)
            value = tf.where(shade < 0.8, 255.0, 0.0)
            marked = image * (1.0 - mask) + value * mask
            return tf.where(apply, marked, image)

        return _per_image(one, (picks, sizes, corners_y, corners_x, inset, shades, chosen), images)


# --- the recipe ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ShortcutAugmentation:
    """How often each shortcut-removing step changes a training image (0 = step off)."""

    resolution: float = 0.5
    jpeg: float = 0.3
    window: float = 0.6
    grayscale: float = 0.3
    frame: float = 0.5
    border: float = 0.3
    marks: float = 0.3
    pad: bool = True  # RandomFrame pads (as keep_aspect_ratio does) or stretches
    frame_stretch_share: float = 0.0  # with pad: this share of the framed images is stretched instead
    window_clip: float = 0.25  # RandomWindow also narrows the window by up to this share at each end
    window_contrast: float = 0.4  # RandomWindow's contrast range: x(1 ± this)

    #: Plain words for each step, in the order they run.
    WORDS = {
        "frame": "random crop of another shape, then black bars or stretching (shape and border)",
        "border": "black or white bars along some edges (padding, scanned-film rims)",
        "marks": "letters pasted into a corner (side marker and burnt-in labels)",
        "resolution": "random lower resolution (sharpness and blur)",
        "jpeg": "random JPEG compression (compression artefacts)",
        "window": "random gamma, contrast and narrower window (display)",
        "grayscale": "random grayscale (colour marks)",
    }

    @classmethod
    def off(cls) -> "ShortcutAugmentation":
        return cls(**{name: 0.0 for name in cls.WORDS})

    def active(self) -> list[str]:
        return [name for name in self.WORDS if getattr(self, name) > 0]

    def describe(self) -> str:
        steps = self.active()
        if not steps:
            return "Shortcut-removing augmentation: off."
        return "Shortcut-removing augmentation (training only): " + "; ".join(
            f"{self.WORDS[name]} {getattr(self, name):.0%}" for name in steps) + "."


def shortcut_layers(config: ShortcutAugmentation, seed: int = 0) -> keras.Sequential:
    """The active steps as one ``keras.Sequential`` (identity when all are off), each seeded from ``seed``."""
    seed = int(seed)
    layers: list = []
    if config.frame > 0:
        layers.append(RandomFrame(pad=config.pad, stretch_share=config.frame_stretch_share, probability=config.frame,
                                  seed=seed + 11, name="random_frame"))
    if config.border > 0:
        layers.append(RandomBorder(probability=config.border, seed=seed + 17, name="random_border"))
    if config.marks > 0:
        layers.append(RandomCornerMarks(probability=config.marks, seed=seed + 12, name="random_corner_marks"))
    if config.resolution > 0:
        layers.append(RandomResolution(probability=config.resolution, seed=seed + 13, name="random_resolution"))
    if config.jpeg > 0:
        layers.append(RandomJpegQuality(probability=config.jpeg, seed=seed + 14, name="random_jpeg_quality"))
    if config.window > 0:
        layers.append(RandomWindow(probability=config.window, clip=config.window_clip,
                                   contrast=config.window_contrast, seed=seed + 15, name="random_window"))
    if config.grayscale > 0:
        layers.append(RandomGray(probability=config.grayscale, seed=seed + 16, name="random_grayscale"))
    if not layers:
        layers.append(keras.layers.Identity(name="no_shortcut_augmentation"))
    return keras.Sequential(layers, name="shortcut_augmentation")


__all__ = [
    "MARK_TEXTS", "RandomBorder", "RandomCornerMarks", "RandomFrame", "RandomJpegQuality", "RandomResolution", "RandomWindow",
    "ShortcutAugmentation", "shortcut_layers",
]
