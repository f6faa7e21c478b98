"""Looking inside the classifier (beyond the paper).

* :func:`grad_cam` — which regions of a radiograph drove a prediction: gradients of the
  prediction with respect to InceptionV3's last convolutional block (``mixed10``), averaged per
  channel, weigh that block's feature maps (Selvaraju et al., Grad-CAM, 2017).
* :func:`feature_maps` — what the network computes from one radiograph at an early, a middle and a
  late block (the RadioGraphics primer, Chartrand et al. 2017): early maps answer to edges and fine
  lines, middle ones to textures, late ones to larger parts of the picture.
* :func:`tsne_features` — a 2-D t-SNE map of the penultimate layer (the Dense 256 "features"):
  if the network learned the task, the two classes form two clusters (the RadioGraphics primer's
  figure 13).
* :func:`shortcut_check` — can image *size* alone (width, height, aspect ratio, no pixel at all)
  tell chest from abdomen? On this dataset it nearly can, and a network may learn that shortcut
  instead of anatomy. A tiny scikit-learn classifier answers the question honestly.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np
from matplotlib import colormaps
from sklearn.manifold import TSNE
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.tree import DecisionTreeClassifier

from hello_dl import evaluate, inference, pipeline, runs
from hello_dl import model as model_module
from hello_dl.dataset import scan
from hello_dl.images import image_info
from hello_dl.settings import Settings

if TYPE_CHECKING:  # pragma: no cover
    import keras  # here, not at the top: TensorFlow takes seconds to load

#: Above this cross-validated accuracy, image size alone "predicts the class" (and we warn).
SHORTCUT_WARNING_ACCURACY = 0.8


# --- Grad-CAM --------------------------------------------------------------------------------------
# model -> {block name: traced Grad-CAM step}. Built once per model and block: tracing the step
# costs about 2 s, then each image about 0.2 s (299 px, 2-core CPU), against about 1 s an image
# run eagerly; the model's weights are read live, so a model trained further gets its current maps.
_cam_steps: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _cam_parts(model: "keras.Model", layer_name: str):
    """(layers before the base, base → [chosen block, base output], layers after the base) of a hello_dl model.

    The layers before the base are the model's own input scaling (0-255 → [-1, 1]).
    """
    import keras  # here, not at the top: TensorFlow takes seconds to load

    base = model_module.base_model(model)
    try:
        block = base.get_layer(layer_name)
    except ValueError:
        raise ValueError(f"InceptionV3 has no layer named {layer_name!r} (the last block is "
                         f"{model_module.LAST_CONV_BLOCK!r}).") from None
    inner = keras.Model(base.inputs, [block.output, base.output])
    layers = list(model.layers)
    return _before_base(model, base), inner, layers[layers.index(base) + 1:]


def _cam_step(model: "keras.Model", layer_name: str):
    """The model's traced Grad-CAM step for ``layer_name``, built on first use."""
    steps = _cam_steps.setdefault(model, {})
    if layer_name not in steps:
        steps[layer_name] = _traced_cam_step(_cam_parts(model, layer_name))
    return steps[layer_name]


def _traced_cam_step(parts):
    """One image batch → (block output, pre-sigmoid score, its gradient at the block), as one traced graph.

    In a graph, only the gradient path from the score down to the block is computed, and each
    activation is freed as soon as nothing needs it; run eagerly, the tape kept every activation
    of the whole forward pass (about 0.2 GB more at 299 px).
    """
    import tensorflow as tf  # here, not at the top: TensorFlow takes seconds to load

    before, inner, head = parts
    last = head[-1]

    @tf.function(reduce_retracing=True)
    def step(batch):
        with tf.GradientTape() as tape:
            tape.watch(batch)  # a frozen base has no watched weights: without this its ops would not be recorded
            scaled = batch
            for layer in before:
                scaled = layer(scaled, training=False)
            block_output, features = inner(scaled, training=False)
            for layer in head[:-1]:
                features = layer(features, training=False)
            logit = tf.matmul(features, last.kernel) + last.bias  # the output layer without its sigmoid
        return block_output, logit, tape.gradient(logit, block_output)

    return step


def _before_base(model: "keras.Model", base: "keras.Model") -> list:
    """The layers between the model's input and its InceptionV3 base: its own pixel scaling (0-255 → [-1, 1])."""
    import keras  # here, not at the top: TensorFlow takes seconds to load

    layers = list(model.layers)
    return [layer for layer in layers[:layers.index(base)] if not isinstance(layer, keras.layers.InputLayer)]


def grad_cam(model: "keras.Model", image: np.ndarray, *, layer_name: str = model_module.LAST_CONV_BLOCK,
             target_class: int | None = None, raw: bool = False) -> tuple[np.ndarray, float]:
    """Grad-CAM heatmap of one image, scaled to [0, 1] (``raw=True``: unscaled), and the model's score for class 1.

    ``image`` is a model input: ``(size, size, 3)``, 0-255 (e.g. from
    :func:`hello_dl.pipeline.load_for_model`). The heatmap has the block's own resolution
    (8x8 for 299-pixel images); :func:`heatmap_overlay` stretches it over the image.
    ``target_class`` defaults to the predicted class: for class 0 (chest) the map shows what
    argued *against* abdomen. Gradients are taken of the pre-sigmoid score, which does not
    saturate when the model is very sure.
    """
    import tensorflow as tf  # here, not at the top: TensorFlow takes seconds to load

    batch = tf.convert_to_tensor(np.asarray(image, dtype=np.float32).reshape((1,) + tuple(np.shape(image)[-3:])))
    block_output, logit, gradients = _cam_step(model, layer_name)(batch)
    probability = float(tf.sigmoid(logit)[0, 0])
    if target_class is None:
        target_class = int(probability >= 0.5)
    if target_class == 0:
        gradients = -gradients
    channel_weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(block_output * channel_weights, axis=-1))[0].numpy()
    return (cam.astype(np.float32) if raw else _unit(cam)), probability


def _unit(cam: np.ndarray) -> np.ndarray:
    """A map scaled to its own peak (0..1); all zeros stay zeros."""
    peak = float(cam.max())
    return (cam / peak if peak > 0 else np.zeros_like(cam)).astype(np.float32)


def resize_heatmap(heatmap: np.ndarray, height: int, width: int) -> np.ndarray:
    """Stretch a heatmap to an image's size (bilinear), kept in [0, 1]."""
    import tensorflow as tf  # here, not at the top: TensorFlow takes seconds to load

    resized = tf.image.resize(np.asarray(heatmap, dtype=np.float32)[..., None], (height, width), method="bilinear")
    return np.clip(resized.numpy()[..., 0], 0.0, 1.0)


#: Grad-CAM colours: perceptually uniform and colour-blind safe (the figures' own, see hello_dl.plots).
CAM_COLORMAP = "inferno"


def heatmap_overlay(image: np.ndarray, heatmap: np.ndarray, *, alpha: float = 0.4,
                    colormap: str = CAM_COLORMAP) -> np.ndarray:
    """The image (uint8 RGB) with the heatmap in colour on top, same size as the image."""
    image = np.asarray(image)
    full = resize_heatmap(heatmap, image.shape[0], image.shape[1])
    coloured = colormaps[colormap](full)[..., :3] * 255.0
    blended = (1.0 - alpha) * image.astype(np.float32) + alpha * coloured
    return blended.clip(0, 255).astype(np.uint8)


@dataclass
class GradCamResult:
    file: Path | None
    image: np.ndarray  # uint8, as the network sees it (resized)
    heatmap: np.ndarray  # [0, 1], the block's resolution, scaled to this image's own peak
    overlay: np.ndarray  # uint8, same size as image
    probability: float  # the score for class 1 (not a calibrated probability)
    predicted_name: str
    raw: np.ndarray | None = None  # the map before scaling: figures put several images on one scale
    true_name: str | None = None  # from the class folder or the file name, when known

    @property
    def caption(self) -> str:
        name = f"{Path(self.file).name[:22]}\n" if self.file else ""
        truth = f"\ntrue: {self.true_name}" if self.true_name else ""
        return f"{name}{self.predicted_name} (score {self.probability:.2f}){truth}"

    @property
    def caption_colour(self) -> str | None:
        """Green when the prediction matches the known truth, vermillion when not (None if unknown)."""
        if not self.true_name:
            return None
        return "#009E73" if self.true_name == self.predicted_name else "#D55E00"


def grad_cam_files(paths: Iterable[str | Path], run: runs.Run, *,
                   layer_name: str = model_module.LAST_CONV_BLOCK) -> list[GradCamResult]:
    """Grad-CAM for image files or folders with a run's best model and settings.

    Each result knows its true class when the file's class folder or its name says it (the paper's
    TEST files are named ``chest2.png`` and ``abd2.png``), so a figure can show it beside the answer.
    """
    model, settings = run.model, run.settings
    files = evaluate.find_images(paths)
    _cam_step(model, layer_name)  # a wrong block name stops here, before any file is read
    results = []
    for file in files:
        image = np.asarray(pipeline.load_for_model(file, settings))
        cam, probability = grad_cam(model, image, layer_name=layer_name, raw=True)
        heatmap = _unit(cam)
        label = int(evaluate.classify([probability], settings)[0])
        truth = evaluate.true_class(file, settings)
        results.append(GradCamResult(Path(file), image, heatmap, heatmap_overlay(image, heatmap), probability,
                                     settings.class_names[label], raw=cam,
                                     true_name=None if truth is None else settings.class_names[truth]))
    return results


# --- feature maps -------------------------------------------------------------------------------------
#: The three blocks the lesson looks into: (stage, how the layer is found, what its maps tend to show).
#: The early layer is found by position (the third activation: InceptionV3's layer names carry a
#: counter that depends on what else was built before), the later ones by their fixed names.
FEATURE_BLOCKS = (
    ("early", 3, "edges and fine lines"),
    ("middle", "mixed2", "textures and simple shapes"),
    ("late", "mixed7", "larger parts of the picture"),
)


@dataclass
class BlockMaps:
    stage: str  # early / middle / late
    layer: str  # the InceptionV3 layer's name
    shows: str  # what its maps tend to respond to, in plain words
    maps: np.ndarray  # (k, h, w): the k most active feature maps of this image, strongest first
    channels: list[int]  # which of the block's feature maps these are
    total_channels: int

    @property
    def size(self) -> tuple[int, int]:
        return int(self.maps.shape[-1]), int(self.maps.shape[-2])

    @property
    def label(self) -> str:
        return f"{self.stage} block\n{self.size[0]}x{self.size[1]} x {self.total_channels}\n({self.shows})"


@dataclass
class FeatureMapResult:
    file: Path | None
    image: np.ndarray  # uint8, as the network sees it
    blocks: list[BlockMaps]

    def format(self) -> str:
        name = Path(self.file).name if self.file else "the image"
        lines = [f"Feature maps of {name} ({self.image.shape[1]}x{self.image.shape[0]} pixels in):"]
        lines += [f"  {b.stage:<6} block {b.layer:<12} {b.size[0]:>3}x{b.size[1]:<3} pixels, {b.total_channels:>4} "
                  f"maps ({b.shows}); shown: the {len(b.channels)} most active" for b in self.blocks]
        return "\n".join(lines)


def _feature_layers(model: "keras.Model") -> list[tuple[str, Any, str]]:
    import keras  # here, not at the top: TensorFlow takes seconds to load

    base = model_module.base_model(model)
    activations = [layer for layer in base.layers if isinstance(layer, keras.layers.Activation)]
    found = []
    for stage, where, shows in FEATURE_BLOCKS:
        layer = activations[where - 1] if isinstance(where, int) else base.get_layer(where)
        found.append((stage, layer, shows))
    return found


def feature_maps(model: "keras.Model", image: np.ndarray, *, per_block: int = 6,
                 file: str | Path | None = None) -> FeatureMapResult:
    """The ``per_block`` most active feature maps of an early, a middle and a late block for one image.

    ``image`` is a model input (``(size, size, 3)``, 0-255). Maps are the block's activations
    (after its ReLU, so 0 = no response), picked by their mean response to this image.
    """
    import keras  # here, not at the top: TensorFlow takes seconds to load

    base = model_module.base_model(model)
    chosen = _feature_layers(model)
    extractor = keras.Model(base.inputs, [layer.output for _, layer, _ in chosen])
    batch = np.asarray(image, dtype=np.float32)[None]
    for layer in _before_base(model, base):
        batch = keras.ops.convert_to_numpy(layer(batch))
    outputs = extractor.predict_on_batch(batch)
    blocks = []
    for (stage, layer, shows), output in zip(chosen, outputs):
        maps = np.moveaxis(np.asarray(output)[0], -1, 0)  # (channels, h, w)
        order = np.argsort(-maps.mean(axis=(1, 2)), kind="stable")[:per_block]
        blocks.append(BlockMaps(stage, layer.name, shows, maps[order], [int(c) for c in order], int(maps.shape[0])))
    return FeatureMapResult(None if file is None else Path(file), np.asarray(image), blocks)


def feature_maps_file(path: str | Path, run: runs.Run, *, per_block: int = 6) -> FeatureMapResult:
    """:func:`feature_maps` for one image file, with a run's best model and its own image size."""
    file = evaluate.find_images([path])[0]  # a folder: its first image
    image = np.asarray(pipeline.load_for_model(file, run.settings))
    return feature_maps(run.model, image, per_block=per_block, file=file)


# --- t-SNE --------------------------------------------------------------------------------------------
def penultimate_features(model: "keras.Model", images: np.ndarray) -> np.ndarray:
    """The Dense 256 ("features") activations for model inputs (0-255 images).

    Through :mod:`hello_dl.inference`: images the evaluation already ran through these weights
    are not run again.
    """
    return inference.features(model, images)


@dataclass
class TsneResult:
    embedding: np.ndarray  # (N, 2)
    labels: np.ndarray  # class index per image
    splits: np.ndarray  # "train" / "val" per image
    files: list[Path]
    class_names: tuple[str, ...]
    features: np.ndarray = field(repr=False)  # (N, 256)


def tsne_features(model: "keras.Model", settings: Settings, splits: Sequence[str] = ("train", "val"), *,
                  perplexity: float | None = None) -> TsneResult:
    """t-SNE (scikit-learn, seeded) of the penultimate features of the labelled images of ``splits``."""
    images, labels, roles, files = [], [], [], []
    for split in splits:
        arrays = pipeline.load_split_arrays(settings, split)
        known = arrays.labels != pipeline.UNKNOWN_LABEL
        images.append(arrays.images[known])
        labels.append(arrays.labels[known])
        roles += [split] * int(known.sum())
        files += [f for f, k in zip(arrays.files, known) if k]
    stacked = np.concatenate(images)
    features = penultimate_features(model, stacked)
    count = len(features)
    # t-SNE needs perplexity < number of points; ~a third of them suits a few dozen images.
    perplexity = perplexity or float(max(2.0, min(30.0, (count - 1) / 3.0)))
    # The exact method is quick for a few hundred points (here well under a second, where
    # scikit-learn's default Barnes-Hut approximation took over ten on two cores).
    method = "exact" if count <= 500 else "barnes_hut"
    embedding = TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto", method=method,
                     random_state=int(settings.seed)).fit_transform(features.astype(np.float64))
    return TsneResult(embedding, np.concatenate(labels).astype(int), np.asarray(roles), files,
                      tuple(settings.class_names), features)


# --- the size shortcut -------------------------------------------------------------------------------
def image_size_features(files: Sequence[str | Path]) -> np.ndarray:
    """Width, height and aspect ratio (width / height) of each file, read from the file itself."""
    rows = []
    for file in files:
        width, height, _ = image_info(file)
        rows.append((width, height, width / height))
    return np.asarray(rows, dtype=np.float64).reshape(-1, 3)


@dataclass
class ShortcutResult:
    accuracy: float  # cross-validated on the training images
    accuracy_std: float
    folds: int
    train_images: int
    majority_accuracy: float  # always answering the commoner class
    val_accuracy: float | None  # the size-only rule fitted on TRAIN, scored on VAL
    cnn_accuracy: float | None  # the network's validation accuracy, for comparison
    class_names: tuple[str, ...]
    features: np.ndarray = field(repr=False)
    labels: np.ndarray = field(repr=False)

    @property
    def size_predicts_class(self) -> bool:
        return self.accuracy >= SHORTCUT_WARNING_ACCURACY and self.accuracy > self.majority_accuracy + 0.1

    @property
    def warning(self) -> str:
        if not self.size_predicts_class:
            return ("Image size alone does not predict the class well here, so the network cannot "
                    "rely on that shortcut.")
        return (f"WARNING: the image size alone (width, height and their ratio, without looking at a "
                f"single pixel) gets {self.accuracy:.0%} of the training images right. A network can "
                f"learn this shortcut instead of the anatomy, and it would fail on images of other sizes. "
                f"Check the Grad-CAM maps, and try keep_aspect_ratio=True (pads instead of stretching).")

    def format(self) -> str:
        lines = [f"Size-only classifier (a depth-2 decision tree on width, height, aspect ratio), "
                 f"{self.folds}-fold cross-validation on {self.train_images} training images:",
                 f"  accuracy {self.accuracy:.1%} (± {self.accuracy_std:.1%}); always guessing the commoner "
                 f"class: {self.majority_accuracy:.1%}"]
        if self.val_accuracy is not None:
            lines.append(f"  the same rule on the validation images: {self.val_accuracy:.1%}")
        if self.cnn_accuracy is not None:
            lines.append(f"  the network (CNN) on the validation images: {self.cnn_accuracy:.1%}")
        lines.append(self.warning)
        return "\n".join(lines)


def shortcut_check(settings: Settings, cnn_accuracy: float | None = None, *, folds: int = 5) -> ShortcutResult:
    """Cross-validate a tiny size-only classifier on TRAIN; compare with the CNN's accuracy (if given).

    ``cnn_accuracy`` is the network's validation accuracy, e.g. ``run.metrics["val_accuracy"]``.
    """
    index = scan(settings)
    features = image_size_features(index.train.files)
    labels = np.asarray(index.train.labels, dtype=int)
    smallest_class = int(np.bincount(labels).min())
    folds = max(2, min(folds, smallest_class))

    def tree() -> DecisionTreeClassifier:
        return DecisionTreeClassifier(max_depth=2, random_state=int(settings.seed))

    scores = cross_val_score(tree(), features, labels,
                             cv=StratifiedKFold(n_splits=folds, shuffle=True, random_state=int(settings.seed)))
    val_accuracy = None
    val_labels = [label for label in index.val.labels if label is not None]
    if val_labels:
        val_files = [f for f, label in zip(index.val.files, index.val.labels) if label is not None]
        val_accuracy = float(tree().fit(features, labels).score(image_size_features(val_files), val_labels))
    return ShortcutResult(
        accuracy=float(scores.mean()), accuracy_std=float(scores.std()), folds=folds, train_images=len(labels),
        majority_accuracy=float(np.bincount(labels).max() / len(labels)), val_accuracy=val_accuracy,
        cnn_accuracy=cnn_accuracy, class_names=tuple(settings.class_names), features=features, labels=labels)


__all__ = [
    "BlockMaps", "CAM_COLORMAP", "FEATURE_BLOCKS", "FeatureMapResult", "GradCamResult", "SHORTCUT_WARNING_ACCURACY",
    "ShortcutResult", "TsneResult", "feature_maps", "feature_maps_file", "grad_cam", "grad_cam_files",
    "heatmap_overlay", "image_size_features", "penultimate_features", "resize_heatmap", "shortcut_check",
    "tsne_features",
]
