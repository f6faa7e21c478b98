"""Every figure of the kit, in one consistent style. This module only draws.

Each ``plot_*`` function takes arrays, histories or result objects (never a file or a folder:
the caller loads) and returns a Matplotlib ``Figure`` (a notebook shows it when it is the last
line of a cell). Given ``save_path``, it also writes it to disk atomically (PNG, or any format
Matplotlib knows from the file's extension). Figures are built without ``pyplot``, so nothing is
left open in the background and nothing is shown twice in a notebook.

Colours are fixed per class (chest blue, abdomen vermillion, both readable for colour-blind
viewers), training curves are solid and validation curves dashed, everywhere. Heat and activation
maps use ``inferno``: perceptually uniform (equal steps in value look like equal steps in colour)
and readable with every kind of colour blindness, because its lightness rises steadily from black
to yellow; never ``jet``, whose bright bands invent edges. Every number on a figure says which set
(training, validation, TEST) it comes from, and shares carry their 95 % interval.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import matplotlib
import numpy as np
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
from PIL import Image
from sklearn.metrics import ConfusionMatrixDisplay, RocCurveDisplay, roc_auc_score

from hello_dl.runs import write_atomic

#: One colour per class index (Okabe-Ito palette: safe for colour-blind viewers).
CLASS_COLOURS = ("#0072B2", "#D55E00")
SERIES_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
CORRECT_COLOUR = "#009E73"
WRONG_COLOUR = "#D55E00"
#: Heat (Grad-CAM) and activation maps: perceptually uniform and colour-blind safe, never jet.
HEAT_COLORMAP = "inferno"

STYLE = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.frameon": False,
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "savefig.bbox": "tight",
    "image.cmap": "gray",
}


def save_figure(figure: Figure, path: str | Path) -> Path:
    """Write ``figure`` to ``path`` atomically (:func:`hello_dl.runs.write_atomic`): never a half-written PNG."""
    path = Path(path)
    buffer = io.BytesIO()
    kind = path.suffix.lstrip(".").lower() or "png"
    # zlib's fastest level: a 65-image gallery (9 megapixels) is encoded in 0.5 s instead of
    # 1.9 s at Pillow's default level 6, for a file about 13 % larger. Every run writes about ten
    # figures, and on a room server each second is multiplied by the room (issue 18).
    extra = {"pil_kwargs": {"compress_level": 1}} if kind == "png" else {}
    figure.savefig(buffer, format=kind, **extra)
    return write_atomic(path, buffer.getvalue())


def _styled(function: Callable[..., Any]) -> Callable[..., Any]:
    """Apply the kit's style while the figure is built, and save it if ``save_path`` is given."""

    @functools.wraps(function)
    def wrapper(*args, save_path: str | Path | None = None, **kwargs):
        with matplotlib.rc_context(STYLE):
            figure = function(*args, **kwargs)
            if save_path is not None:
                save_figure(figure, save_path)
        return figure

    return wrapper


def _new_figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def _image_axis(axis, image: np.ndarray, title: str = "", colour: str | None = None) -> None:
    axis.imshow(image, cmap="gray" if image.ndim == 2 else None)
    _bare_axis(axis, title, colour)


def _bare_axis(axis, title: str = "", colour: str | None = None) -> None:
    """An axis for a picture: no ticks, grid or frame; an optional title."""
    axis.set_xticks([])
    axis.set_yticks([])
    axis.grid(False)
    for spine in axis.spines.values():
        spine.set_visible(False)
    if title:
        axis.set_title(title, fontsize=9, color=colour or "black")


# --- data ----------------------------------------------------------------------------------------
@_styled
def plot_sample_grid(samples: Mapping[str, Sequence[Any]], *, per_class: int = 4, title: str | None = None):
    """One row per class with a few of its images, each titled with its size.

    ``samples``: class name → images, each an array (grey or RGB; uint8, or floats in 0..1) or an
    object with ``.image`` and ``.caption`` (as :func:`hello_dl.pipeline.class_samples` returns).
    Sizes are shown on purpose: on the tutorial data they nearly give the class away.
    """
    names = list(samples)
    columns = max(1, min(per_class, max((len(v) for v in samples.values()), default=1)))
    figure = _new_figure(2.2 * columns, 2.4 * len(names))
    axes = np.atleast_2d(figure.subplots(len(names), columns, squeeze=False))
    for row, name in enumerate(names):
        items = list(samples[name])[:columns]
        for column in range(columns):
            axis = axes[row, column]
            if column >= len(items):
                axis.set_visible(False)
                continue
            image = np.asarray(getattr(items[column], "image", items[column]))
            caption = getattr(items[column], "caption", "")
            size = f"{image.shape[1]}x{image.shape[0]} px"
            _image_axis(axis, image, f"{_short(caption)}\n{size}" if caption else size)
        axes[row, 0].set_ylabel(name, fontsize=11, color=CLASS_COLOURS[row % len(CLASS_COLOURS)])
        axes[row, 0].yaxis.label.set_visible(True)
    figure.suptitle(title or "Sample images per class")
    return figure


@_styled
def plot_image_sizes(result: Any, *, title: str | None = None):
    """Width against height of every training image, one colour per class: the size shortcut at a glance.

    ``result``: an object with ``.features`` (N x 3: width, height, aspect ratio), ``.labels`` and
    ``.class_names``, as returned by :func:`hello_dl.explain.shortcut_check`.
    """
    features = np.asarray(result.features, dtype=float).reshape(-1, 3)
    labels = np.asarray(result.labels).astype(int)
    figure = _new_figure(5.2, 4.6)
    axis = figure.subplots()
    largest = float(features[:, :2].max()) if len(features) else 1.0
    axis.plot([0, largest * 1.05], [0, largest * 1.05], ":", color="gray", label="square (width = height)")
    # Classes with fewer distinct sizes are drawn last, on top: a class piled on one size stays visible.
    order = sorted(range(len(result.class_names)),
                   key=lambda k: -len({tuple(row) for row in features[labels == k, :2]}))
    for label in order:
        name, chosen = result.class_names[label], labels == label
        if not chosen.any():
            continue
        sizes = {(int(w), int(h)) for w, h in features[chosen, :2]}
        count = int(chosen.sum())
        axis.scatter(features[chosen, 0], features[chosen, 1], s=40 if len(sizes) > 1 else 90, alpha=0.8,
                     color=CLASS_COLOURS[label % len(CLASS_COLOURS)], edgecolors="black", linewidths=0.5,
                     label=f"{name}: {count} images, {len(sizes)} size{'s' if len(sizes) > 1 else ''}")
        if len(sizes) == 1:
            (width, height), = sizes
            axis.annotate(f"all {count} {name} images:\n{width} x {height}", (width, height), xytext=(-95, 25),
                          textcoords="offset points", fontsize=8, arrowprops={"arrowstyle": "->", "color": "gray"})
    axis.set_xlabel("width (pixels)")
    axis.set_ylabel("height (pixels)")
    axis.set_xlim(0, largest * 1.05)
    axis.set_ylim(0, largest * 1.05)
    axis.set_aspect("equal")
    axis.legend(fontsize=8, loc="lower right")
    axis.set_title(title or "Image sizes per class (training images)")
    return figure


@_styled
def plot_augmentation_preview(original: Any, augmented: Sequence[Any], *, title: str | None = None):
    """One training image and random augmentations of it (what the network sees).

    ``original``: the image as the network gets it (uint8); ``augmented``: versions of it, as
    :func:`hello_dl.pipeline.augmentation_examples` makes them.
    """
    count = len(augmented)
    columns = min(5, count + 1)
    rows = int(np.ceil((count + 1) / columns))
    figure = _new_figure(2.2 * columns, 2.3 * rows)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    _image_axis(axes[0], np.asarray(original), "original")
    for index, axis in enumerate(axes[1:]):
        if index < count:
            _image_axis(axis, np.asarray(augmented[index]), f"augmented {index + 1}")
        else:
            axis.set_visible(False)
    figure.suptitle(title or "Data augmentation: random rotation, shift, shear, zoom and flip (training only)")
    return figure


# --- training ------------------------------------------------------------------------------------------
def _history(source: Any) -> dict[str, list]:
    """A dict of per-epoch lists, from such a dict or a Keras ``History``."""
    if hasattr(source, "history") and isinstance(source.history, Mapping):  # keras History
        return {key: list(value) for key, value in source.history.items()}
    return {key: list(value) for key, value in dict(source).items()}


def _epochs(history: Mapping[str, list]) -> np.ndarray:
    length = len(next((v for k, v in history.items() if k not in {"epoch", "phase"}), []))
    return np.asarray(history.get("epoch") or range(1, length + 1))


def phase_boundaries(history: Mapping[str, list]) -> list[float]:
    """x positions (between epochs) where a new training phase starts."""
    phases = list(history.get("phase") or [])
    epochs = _epochs(history)
    return [float(epochs[i]) - 0.5 for i in range(1, len(phases)) if phases[i] != phases[i - 1]]


@_styled
def plot_training_curves(history: Any, *, title: str | None = None,
                         reference_points: Mapping[str, tuple[float, float]] | None = None):
    """Loss and accuracy per epoch, training (solid) vs validation (dashed), phase change marked.

    ``history``: a dict of per-epoch lists (``run.history``) or a Keras ``History``.
    ``reference_points``: label → (epoch, accuracy), drawn as hollow diamonds on the accuracy panel
    (e.g. the paper's own numbers beside the learner's curves). Training accuracy is measured on
    augmented images with dropout on, validation accuracy on the plain images: the legend says so.
    """
    history = _history(history)
    epochs = _epochs(history)
    figure = _new_figure(10, 3.8)
    axes = figure.subplots(1, 2)
    for axis, metric, label in ((axes[0], "loss", "loss (lower is better)"),
                                (axes[1], "accuracy", "accuracy (higher is better)")):
        if metric in history:
            axis.plot(epochs, history[metric], "-o", color=SERIES_COLOURS[0], markersize=3, label="training")
        if "val_" + metric in history:
            axis.plot(epochs, history["val_" + metric], "--s", color=SERIES_COLOURS[1], markersize=3,
                      label="validation")
        if metric == "accuracy":
            for index, (name, (epoch, value)) in enumerate((reference_points or {}).items()):
                axis.plot([epoch], [value], "D", markersize=8, markerfacecolor="none", markeredgewidth=1.5,
                          color=SERIES_COLOURS[(index + 2) % len(SERIES_COLOURS)], label=name)
        for position in phase_boundaries(history):
            axis.axvline(position, color="gray", linestyle=":", linewidth=1.5)
            axis.annotate("fine-tuning starts", (position, 1.0), xycoords=("data", "axes fraction"),
                          xytext=(3, -12), textcoords="offset points", fontsize=8, color="gray")
        if metric == "loss" and history.get("val_loss"):
            best = int(np.nanargmin(history["val_loss"]))
            axis.plot(epochs[best], history["val_loss"][best], "*", color="black", markersize=12,
                      label=f"best model (epoch {epochs[best]})")
        if metric == "accuracy":
            axis.set_ylim(-0.02, 1.02)
        axis.set_xlabel("epoch")
        axis.set_ylabel(label)
        if len(epochs) <= 25:
            axis.set_xticks(epochs)
        axis.legend()
    figure.suptitle(title or "Training curves")
    return figure


@_styled
def plot_group_comparison(histories: Mapping[str, Any], *, metrics: Sequence[str] = ("val_loss", "val_accuracy"),
                          title: str | None = None):
    """Validation curves of several runs (e.g. experiment groups 1A/1B/2A/2B) on shared axes.

    ``histories``: label → a dict of per-epoch lists or a Keras ``History``.
    """
    figure = _new_figure(5 * len(metrics), 3.8)
    axes = np.atleast_1d(figure.subplots(1, len(metrics)))
    for index, (name, source) in enumerate(histories.items()):
        history = _history(source)
        epochs = _epochs(history)
        for axis, metric in zip(axes, metrics):
            if metric in history:
                axis.plot(epochs, history[metric], "-o", markersize=3, label=name,
                          color=SERIES_COLOURS[index % len(SERIES_COLOURS)])
    for axis, metric in zip(axes, metrics):
        axis.set_xlabel("epoch")
        axis.set_ylabel(metric.replace("val_", "validation "))
        if "accuracy" in metric or "auc" in metric:
            axis.set_ylim(-0.02, 1.02)
        axis.legend()
    figure.suptitle(title or "Experiment groups compared")
    return figure


@_styled
def plot_group_spread(values: Mapping[str, Sequence[float]], *, reference: Mapping[str, Sequence[float]] | None = None,
                      intervals: Mapping[str, tuple[float, float, float]] | None = None,
                      highlight: tuple[str, float] | None = None, labels: Mapping[str, str] | None = None,
                      ylabel: str = "", title: str | None = None):
    """One column per group: a dot per run, the mean with its 95 % interval, reference runs, one run marked.

    ``values``: group → the runs' numbers (every group to show is a key, an empty list for none yet).
    ``reference``: group → numbers drawn as their own series, labelled "reference". ``intervals``:
    group → (mean, low, high), low/high NaN for no interval. ``highlight``: (group, number) of the
    viewer's own run. ``labels``: group → the column's label (default: the group's name). The
    marks carry the gids ``runs``, ``reference`` and ``yours``.
    """
    names = list(values)
    figure = _new_figure(max(6.0, 1.9 * len(names) + 2.0), 5.0)
    axis = figure.subplots()
    axis.axhline(0.0, color="gray", linestyle=":", linewidth=1.2, label="no gap")
    shown = set()

    def once(label: str) -> str:
        # One legend entry per kind of mark, however many columns draw it.
        if label in shown:
            return "_nolegend_"
        shown.add(label)
        return label

    for x, name in enumerate(names):
        found = np.sort(np.asarray(values[name], dtype=float))
        # Runs side by side (a fixed pattern, so the picture does not jump when it is redrawn).
        offsets = ((np.arange(len(found)) % 5) - 2) * 0.05
        if len(found):
            axis.scatter(x + offsets, found, s=36, color=SERIES_COLOURS[0], alpha=0.7, edgecolors="white", linewidths=0.5,
                         zorder=3, label=once("one participant's run"), gid="runs")
        else:
            axis.annotate("no runs yet", (x, 0.0), xytext=(0, 10), textcoords="offset points", ha="center",
                          fontsize=8, color="gray")
        mean, low, high = (intervals or {}).get(name, (np.nan, np.nan, np.nan))
        if np.isfinite(mean):
            axis.plot([x - 0.2, x + 0.2], [mean, mean], color="black", linewidth=2.2, zorder=4,
                      label=once("mean of the group's runs"))
        if np.isfinite(low) and np.isfinite(high):
            axis.errorbar(x + 0.27, mean, yerr=[[mean - low], [high - mean]], color="black", capsize=4,
                          linewidth=1.4, zorder=4, label=once("95 % interval of the mean"))
        for value in np.asarray((reference or {}).get(name, ()), dtype=float):
            axis.scatter(x - 0.32, value, marker="D", s=60, facecolors="white", edgecolors="black", linewidths=1.3,
                         zorder=5, label=once("reference (the instructor's run)"), gid="reference")
    if highlight is not None and highlight[0] in names:
        axis.scatter(names.index(highlight[0]), highlight[1], marker="*", s=320, color="#E69F00", edgecolors="black",
                     linewidths=1.0, zorder=6, label="your run", gid="yours")
    axis.set_xticks(range(len(names)))
    axis.set_xticklabels([(labels or {}).get(name, name) for name in names], fontsize=9)
    axis.set_xlim(-0.6, len(names) - 0.4)
    axis.grid(False, axis="x")
    axis.set_ylabel(ylabel)
    axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    axis.set_title(title or "Groups compared, one dot per run")
    return figure


# --- evaluation ------------------------------------------------------------------------------------
def _interval_text(interval: Any) -> str:
    """ "95% CI 0.80–1.00" from an object with ``.low``/``.high`` or a (low, high) pair ("" for None)."""
    if interval is None:
        return ""
    low, high = (interval.low, interval.high) if hasattr(interval, "low") else tuple(interval)[-2:]
    return f"95% CI {low:.2f}–{high:.2f}"


@_styled
def plot_roc(y_true: Sequence[int], y_score: Sequence[float], *, title: str | None = None,
             positive_name: str = "abdomen", auc_interval: Any = None, set_name: str | None = None):
    """ROC curve with its area (AUC); the diagonal is a coin toss (scikit-learn's RocCurveDisplay).

    ``auc_interval``: the AUC's 95 % interval (an object with ``.low``/``.high``, as
    :func:`hello_dl.stats.auc_interval` returns, or a pair), shown in the legend. ``set_name``
    ("validation", "TEST") goes into the default title with the number of images.
    """
    y_true = np.asarray(y_true).astype(int).ravel()
    y_score = np.asarray(y_score, dtype=float).ravel()
    figure = _new_figure(4.6, 4.4)
    axis = figure.subplots()
    chance = {"color": "gray", "linestyle": ":", "label": "chance (AUC 0.50)"}
    interval = _interval_text(auc_interval)
    if len(np.unique(y_true)) == 2:
        label = f"model (AUC {roc_auc_score(y_true, y_score):.2f}{', ' + interval if interval else ''})"
        RocCurveDisplay.from_predictions(
            y_true, y_score, pos_label=1, ax=axis, plot_chance_level=True, chance_level_kw=chance,
            name="model", curve_kwargs={"color": SERIES_COLOURS[0], "linewidth": 2, "drawstyle": "steps-post",
                                        "label": label})
    else:  # RocCurveDisplay refuses one class; the kit says why instead
        axis.plot([0, 1], [0, 1], **chance)
        axis.text(0.5, 0.4, "ROC needs images of both classes", ha="center")
    axis.set_xlim(-0.01, 1.01)
    axis.set_ylim(-0.01, 1.01)
    axis.set_aspect("equal")
    axis.set_xlabel("false positive rate (1 - specificity)")
    axis.set_ylabel(f"true positive rate (sensitivity for {positive_name})")
    axis.legend(loc="lower right", fontsize=8)
    default = f"ROC curve, {set_name} set ({len(y_true)} images)" if set_name else "ROC curve"
    axis.set_title(title or default)
    return figure


@_styled
def plot_confusion_matrix(matrix: Any, class_names: Sequence[str], *, title: str | None = None,
                          caption: str | None = None):
    """Counts of true class (rows) against predicted class (columns) (scikit-learn's ConfusionMatrixDisplay).

    ``caption``: text under the matrix, e.g. the accuracy, sensitivity and specificity with their intervals.
    """
    matrix = np.asarray(matrix, dtype=int)
    figure = _new_figure(4.4, 4.0)
    axis = figure.subplots()
    display = ConfusionMatrixDisplay(matrix, display_labels=list(class_names))
    display.plot(ax=axis, cmap="Blues", colorbar=False, values_format="d",
                 im_kw={"vmin": 0, "vmax": max(1, int(matrix.max()))}, text_kw={"fontsize": 14})
    axis.grid(False)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(title or f"Confusion matrix ({matrix.sum()} images)")
    if caption:
        figure.supxlabel(caption, fontsize=8, ha="center")
    return figure


@_styled
def plot_metric_intervals(rows: Mapping[str, Mapping[str, tuple[float, float, float]]], *,
                          hollow: Sequence[str] = (), title: str | None = None):
    """Each metric as a dot with its 95 % interval as a bar, one row per set: how sure can we be?

    ``rows``: set label (e.g. "validation (10 images)") → metric name → (value, low, high), as
    :meth:`hello_dl.evaluate.Evaluation.intervals` gives them. Rows named in ``hollow`` (e.g. the
    paper's own numbers) are drawn as hollow diamonds. One panel per metric, all on 0 … 1.
    """
    labels = list(rows)
    metrics = list(dict.fromkeys(name for values in rows.values() for name in values)) or ["accuracy"]
    figure = _new_figure(2.6 * len(metrics) + 1.6, 0.55 * len(labels) + 1.6)
    axes = np.atleast_1d(figure.subplots(1, len(metrics), sharey=True))
    positions = np.arange(len(labels))[::-1]
    for axis, metric in zip(axes, metrics):
        for row, (label, y) in enumerate(zip(labels, positions)):
            if metric not in rows[label]:
                continue
            value, low, high = rows[label][metric]
            colour = SERIES_COLOURS[row % len(SERIES_COLOURS)]
            style = {"marker": "D", "markerfacecolor": "none", "markersize": 7} if label in hollow else \
                {"marker": "o", "markersize": 6}
            axis.plot([low, high], [y, y], "-", color=colour, linewidth=2.5, alpha=0.6, solid_capstyle="butt")
            axis.plot([value], [y], linestyle="none", color=colour, **style)
            axis.annotate(f"{value:.0%}" if metric != "AUC" else f"{value:.2f}", (value, y), xytext=(0, 6),
                          textcoords="offset points", ha="center", fontsize=7)
        if metric == "AUC":
            axis.axvline(0.5, color="gray", linestyle=":", linewidth=1)  # a coin toss
        axis.set_xlim(-0.02, 1.02)
        axis.set_xlabel(metric if metric != "AUC" else "ROC AUC (0.5 = coin toss)")
        axis.set_yticks(positions)
        axis.set_yticklabels(labels)
        axis.set_ylim(-0.7, len(labels) - 0.3)
    figure.suptitle(title or "Each number with its 95 % interval (the bar): the fewer the images, the wider")
    return figure


@_styled
def plot_prediction_gallery(predictions: Sequence[Any], *, columns: int = 5, title: str | None = None):
    """Each image with its predicted class and score; green if right, red if wrong (when the truth is known).

    ``predictions``: objects with ``.image`` (what the model saw), ``.file``, ``.probability`` (the
    network's score for class 1), ``.display_name`` and optionally ``.true_name`` (as
    :func:`hello_dl.evaluate.predict_paths` and ``Evaluation.predictions`` return).
    """
    count = max(1, len(predictions))
    columns = max(1, min(columns, count))
    rows = int(np.ceil(count / columns))
    figure = _new_figure(2.4 * columns, 2.7 * rows)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for axis, prediction in zip(axes, predictions):
        true_name = getattr(prediction, "true_name", None)
        colour = None if not true_name else (CORRECT_COLOUR if true_name == prediction.display_name else WRONG_COLOUR)
        text = f"{prediction.display_name} (score {prediction.probability:.2f})"
        if true_name:
            text += f"\ntrue: {true_name}"
        _image_axis(axis, np.asarray(prediction.image), f"{_short(Path(prediction.file).name)}\n{text}", colour)
    for axis in axes[len(predictions):]:
        axis.set_visible(False)
    figure.suptitle(title or "Predictions (score = the network's output for abdomen, 0 to 1)")
    return figure


# --- explanations --------------------------------------------------------------------------------------
def _stretch(heatmap: np.ndarray, height: int, width: int) -> np.ndarray:
    """A coarse map stretched (bilinear) over an image of ``height`` x ``width`` pixels."""
    small = Image.fromarray(np.asarray(heatmap, dtype=np.float32), mode="F")
    return np.asarray(small.resize((width, height), Image.Resampling.BILINEAR), dtype=np.float32)


def _colour_bar(figure: Figure, axes: Any, label: str, vmax: float = 1.0, cmap: str = HEAT_COLORMAP) -> None:
    bar = figure.colorbar(ScalarMappable(Normalize(0.0, vmax), cmap), ax=axes, shrink=0.8, pad=0.02)
    bar.set_label(label, fontsize=8)
    bar.ax.tick_params(labelsize=7)


@_styled
def plot_gradcam(results: Sequence[Any], *, title: str | None = None, columns: int = 4):
    """Each image with its Grad-CAM map on top, on ONE scale for the whole figure, with a colour bar.

    ``results``: objects with ``.image`` (uint8, what the network saw), ``.raw`` (the block-sized
    map before any scaling; or ``.heatmap`` in 0..1) and ``.caption``, as
    :func:`hello_dl.explain.grad_cam_files` returns them. 1 on the colour bar is the strongest spot
    of any image in the figure, so a faint map really is faint. The overlay is see-through where
    the map is weak, so the radiograph stays readable; the colours are ``inferno`` (colour-blind safe).
    """
    count = max(1, len(results))
    columns = max(1, min(columns, count))
    rows = int(np.ceil(count / columns))
    maps = [np.clip(np.asarray(getattr(r, "raw", None) if getattr(r, "raw", None) is not None else r.heatmap,
                               dtype=np.float32), 0.0, None) for r in results]
    scale = max([float(m.max()) for m in maps] + [0.0]) or 1.0
    figure = _new_figure(2.7 * columns + 0.9, 3.0 * rows)
    axes = figure.subplots(rows, columns, squeeze=False)
    cmap = colormaps[HEAT_COLORMAP]
    for axis, result, heat in zip(axes.ravel(), results, maps):
        image = np.asarray(result.image)
        _image_axis(axis, image, getattr(result, "caption", ""), getattr(result, "caption_colour", None))
        strength = _stretch(heat / scale, image.shape[0], image.shape[1]).clip(0.0, 1.0)
        overlay = cmap(strength)
        overlay[..., 3] = 0.6 * strength  # see-through where the network paid little attention
        axis.imshow(overlay, interpolation="nearest")
    for axis in axes.ravel()[len(results):]:
        axis.set_visible(False)
    _colour_bar(figure, axes, "Grad-CAM strength\n(1 = strongest spot in this figure)")
    figure.suptitle(title or "Where did the network look? (Grad-CAM, last convolutional block; one scale for all)")
    return figure


@_styled
def plot_feature_maps(result: Any, *, title: str | None = None):
    """Feature maps of one radiograph: a row per block (early → middle → late), the image first.

    ``result``: an object with ``.image`` (uint8) and ``.blocks``, each with ``.label`` (e.g.
    "early block: edges"), ``.maps`` (k x h x w activations), ``.channels`` and ``.size`` (as
    :func:`hello_dl.explain.feature_maps` returns). Each row has its own scale (0 = no response,
    1 = the row's strongest), because the blocks' numbers are not comparable; the colour bar says so.
    """
    blocks = list(result.blocks)
    columns = 1 + max([len(block.maps) for block in blocks] + [1])
    figure = _new_figure(1.7 * columns + 0.9, 1.95 * max(1, len(blocks)))
    axes = figure.subplots(max(1, len(blocks)), columns, squeeze=False)
    for row, block in enumerate(blocks):
        _image_axis(axes[row, 0], np.asarray(result.image), "the radiograph" if row == 0 else "")
        axes[row, 0].set_ylabel(block.label, fontsize=9)
        axes[row, 0].yaxis.label.set_visible(True)
        maps = np.asarray(block.maps, dtype=np.float32)
        peak = float(maps.max()) if maps.size and maps.max() > 0 else 1.0
        for column in range(1, columns):
            axis = axes[row, column]
            if column - 1 >= len(maps):
                axis.set_visible(False)
                continue
            axis.imshow(maps[column - 1] / peak, cmap=HEAT_COLORMAP, vmin=0.0, vmax=1.0, interpolation="nearest")
            _bare_axis(axis)
            size = f"{maps.shape[-1]}x{maps.shape[-2]}"
            axis.set_title(f"map {int(block.channels[column - 1])} ({size})", fontsize=7)
    _colour_bar(figure, axes, "response\n(1 = strongest in its row)")
    figure.suptitle(title or "Feature maps: what the early, middle and late blocks respond to")
    return figure


@_styled
def plot_stress_test(result: Any, *, title: str | None = None):
    """Per change that should not matter: how often the answer flipped (with its 95 % interval) and how far the score moved.

    ``result``: an object with ``.changes`` (each with ``.label``, ``.flipped`` — a count/total with
    ``.interval`` — and ``.shifts``, the per-image |score change|), ``.description`` and optionally
    ``.max_flip_rate`` (as :func:`hello_dl.stress.stress_test` returns).
    """
    changes = list(result.changes)
    figure = _new_figure(10, 0.42 * max(1, len(changes)) + 1.8)
    flips_axis, shift_axis = figure.subplots(1, 2, sharey=True)
    positions = np.arange(len(changes))[::-1]
    for y, change in zip(positions, changes):
        flipped = change.flipped
        rate = flipped.count / flipped.total if flipped.total else 0.0
        low, high = flipped.interval
        colour = WRONG_COLOUR if flipped.count else CORRECT_COLOUR
        flips_axis.barh(y, rate, color=colour, alpha=0.75, height=0.6)
        flips_axis.plot([low, high], [y, y], "-", color="black", linewidth=1)
        flips_axis.annotate(f"{flipped.count}/{flipped.total}", (max(rate, high), y), xytext=(4, -3),
                            textcoords="offset points", fontsize=7)
        shifts = np.asarray(change.shifts, dtype=float)
        jitter = np.linspace(-0.18, 0.18, len(shifts)) if len(shifts) > 1 else np.zeros(len(shifts))
        shift_axis.scatter(shifts, y + jitter, s=14, color=SERIES_COLOURS[0], alpha=0.7, edgecolors="none")
        if len(shifts):
            shift_axis.plot([shifts.mean()], [y], "|", color="black", markersize=14, markeredgewidth=2)
    limit = getattr(result, "max_flip_rate", None)
    if limit is not None:
        flips_axis.axvline(limit, color="gray", linestyle=":", linewidth=1.2)
        flips_axis.annotate(f"{limit:.0%} limit", (limit, 1.0), xycoords=("data", "axes fraction"),
                            xytext=(3, -10), textcoords="offset points", fontsize=7, color="gray")
    flips_axis.set_yticks(positions)
    flips_axis.set_yticklabels([change.label for change in changes], fontsize=8)
    flips_axis.set_xlim(0, 1.05)
    flips_axis.set_xlabel("answers that flipped (bar: share; line: 95% interval)")
    shift_axis.set_xlim(-0.02, 1.02)
    shift_axis.set_xlabel("how far the score moved (dots: images; bar: mean)")
    figure.suptitle(title or f"Stress test on {getattr(result, 'description', 'the images')}: changes that "
                    "should not matter")
    return figure


@_styled
def plot_threshold(y_true: Sequence[int], y_score: Sequence[float], threshold: float, *,
                   class_names: Sequence[str] = ("chest", "abdomen"), set_name: str = "validation",
                   summary: str | None = None, title: str | None = None):
    """Every image's score on one line per true class, the threshold as a line: what moving it changes.

    Images right of the threshold are called class 1 (``class_names[1]``). ``summary`` (e.g. the
    sensitivity and specificity at this threshold, with intervals) is written under the picture.
    """
    y_true = np.asarray(y_true).astype(int).ravel()
    y_score = np.asarray(y_score, dtype=float).ravel()
    figure = _new_figure(7.5, 2.9)
    axis = figure.subplots()
    for label, name in enumerate(class_names):
        chosen = y_true == label
        scores = y_score[chosen]
        jitter = np.linspace(-0.12, 0.12, len(scores)) if len(scores) > 1 else np.zeros(len(scores))
        called_right = (scores >= threshold) == (label == 1)
        colours = [CORRECT_COLOUR if ok else WRONG_COLOUR for ok in called_right]
        axis.scatter(scores, label + jitter, s=60, c=colours, edgecolors="black", linewidths=0.5, zorder=3)
    axis.axvline(threshold, color="black", linewidth=1.5)
    axis.annotate(f"threshold {threshold:.2f}", (threshold, 1.0), xycoords=("data", "axes fraction"),
                  xytext=(4, -12), textcoords="offset points", fontsize=8)
    axis.annotate(f"called {class_names[0]}", (0.01, 0.02), xycoords="axes fraction", fontsize=8, color="gray")
    axis.annotate(f"called {class_names[1]}", (0.99, 0.02), xycoords="axes fraction", fontsize=8, color="gray",
                  ha="right")
    axis.set_yticks(range(len(class_names)))
    axis.set_yticklabels([f"true {name}" for name in class_names])
    axis.set_ylim(-0.5, len(class_names) - 0.5)
    axis.set_xlim(-0.02, 1.02)
    axis.set_xlabel(f"score (the network's output for {class_names[1]}); green = right, red = wrong")
    axis.set_title(title or f"{set_name} images and the threshold ({len(y_true)} images)")
    if summary:
        figure.supxlabel(summary, fontsize=8)
    return figure


@_styled
def plot_tsne(result: Any, *, title: str | None = None):
    """t-SNE map of the network's penultimate-layer features: one dot per image, coloured by class.

    ``result``: an object with ``.embedding`` (N x 2), ``.labels``, ``.splits`` and
    ``.class_names`` (as returned by :func:`hello_dl.explain.tsne_features`).
    """
    embedding = np.asarray(result.embedding)
    labels = np.asarray(result.labels)
    splits = np.asarray(result.splits)
    figure = _new_figure(5.6, 4.8)
    axis = figure.subplots()
    markers = {"train": "o", "val": "^", "test": "s"}
    for label, name in enumerate(result.class_names):
        for split in dict.fromkeys(splits.tolist()):
            chosen = (labels == label) & (splits == split)
            if chosen.any():
                axis.scatter(embedding[chosen, 0], embedding[chosen, 1], s=36 if split == "train" else 60,
                             marker=markers.get(split, "o"), color=CLASS_COLOURS[label % len(CLASS_COLOURS)],
                             edgecolors="black" if split != "train" else "none", linewidths=0.6,
                             alpha=0.85, label=f"{name} ({split})")
    axis.set_xticks([])
    axis.set_yticks([])
    axis.set_xlabel("t-SNE 1 (no units: only closeness matters)")
    axis.set_ylabel("t-SNE 2")
    axis.legend(fontsize=8, loc="best")
    axis.set_title(title or "t-SNE of the learned features (penultimate layer)")
    return figure


@_styled
def plot_deep_learning_picture(images: Sequence[np.ndarray], *, class_names: Sequence[str] = ("chest", "abdomen"),
                               title: str | None = None):
    """Deep learning in one picture (the talk's first slide): radiographs in, layers that learn, a score out.

    ``images``: one radiograph per class (arrays, as the caller loaded them). Below, the training
    loop: the score is compared with the label (the loss) and every weight is nudged a little.
    """
    figure = Figure(figsize=(11, 4.6))  # one free-form drawing area: no layout engine
    canvas = figure.add_axes((0, 0, 1, 0.9))
    canvas.set_xlim(0, 11)
    canvas.set_ylim(0, 4.6)
    canvas.set_axis_off()
    for number, image in enumerate(list(images)[:2]):
        inset = canvas.inset_axes((0.15, 2.45 - 2.05 * number, 1.75, 1.75), transform=canvas.transData)
        _image_axis(inset, np.asarray(image), class_names[number], CLASS_COLOURS[number])

    def arrow(start, end, colour="black", **style):
        canvas.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=18, linewidth=1.6,
                                         color=colour, **style))

    arrow((2.05, 2.3), (2.75, 2.3))
    stages = (("edges", 1.0), ("textures,\nshapes", 0.8), ("parts,\nanatomy", 0.6))
    for number, (words, height) in enumerate(stages):
        left = 2.85 + 1.35 * number
        canvas.add_patch(FancyBboxPatch((left, 2.3 - 1.6 * height), 1.0, 3.2 * height, boxstyle="round,pad=0.05",
                                        facecolor=SERIES_COLOURS[5], alpha=0.25 + 0.2 * number, edgecolor="none"))
        canvas.text(left + 0.5, 2.3, words, ha="center", va="center", fontsize=10)
        if number:
            arrow((left - 0.32, 2.3), (left - 0.02, 2.3))
    canvas.text(4.2, 4.35, "layers of filters the network learns itself", ha="center", fontsize=11)
    arrow((6.65, 2.3), (7.35, 2.3))
    canvas.add_patch(FancyBboxPatch((7.45, 1.6), 1.4, 1.4, boxstyle="round,pad=0.05", facecolor="white",
                                    edgecolor="black", linewidth=1.2))
    canvas.text(8.15, 2.3, f"score\n0 = {class_names[0]}\n1 = {class_names[1]}", ha="center", va="center",
                fontsize=10)
    canvas.text(9.05, 2.3, "→ answer:\nabove 0.5,\n" + class_names[1], ha="left", va="center", fontsize=10)
    arrow((8.15, 1.5), (4.2, 0.8), colour=WRONG_COLOUR, connectionstyle="arc3,rad=-0.2")
    canvas.text(6.2, 0.2, "training: compare the score with the label (the loss), nudge every weight a little, repeat",
                ha="center", va="center", fontsize=10, color=WRONG_COLOUR)
    figure.suptitle(title or "Deep learning in one picture: pixels in, a score out, learned from labelled examples")
    return figure


def _short(name: str, length: int = 22) -> str:
    return name if len(name) <= length else name[: length - 9] + "…" + name[-8:]


__all__ = [
    "CLASS_COLOURS", "HEAT_COLORMAP", "STYLE", "phase_boundaries", "plot_augmentation_preview", "plot_deep_learning_picture",
    "plot_confusion_matrix", "plot_feature_maps", "plot_gradcam", "plot_image_sizes", "plot_group_comparison",
    "plot_group_spread", "plot_metric_intervals", "plot_prediction_gallery", "plot_roc", "plot_sample_grid", "plot_stress_test",
    "plot_threshold", "plot_training_curves", "plot_tsne", "save_figure",
]
