"""Use a trained model: predictions for any image files, and metrics on labelled data.

* :func:`predict_paths` — one file, a list, or folders (PNG, JPEG, DICOM) → file, probability,
  predicted class and display name, with a run's best model (:func:`predict_files` with any model).
* :func:`evaluate_model` — accuracy, ROC curve and AUC, confusion matrix and the
  classification report (scikit-learn) on the validation set or any labelled split.
* :func:`evaluate_run` — recompute all of that for a saved run and write the numbers
  (``evaluation.json``) and the figures (``figures/``).

Images go through the same loader and resize as in training (``hello_dl.pipeline``), and a saved
run is always read with its own image size and class names (``hello_dl.runs``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, roc_auc_score

from hello_dl import pipeline, plots, runs
from hello_dl.dataset import images_under, scan
from hello_dl.errors import DataError
from hello_dl.filetypes import is_image_file
from hello_dl.settings import Settings

if TYPE_CHECKING:  # pragma: no cover
    import keras  # here, not at the top: TensorFlow takes seconds to load

#: Up to this many images are predicted in one batch (``predict_on_batch``) instead of ``model.predict``.
DIRECT_CALL_LIMIT = 32


class BrokenModelError(DataError):
    """The model answers NaN or infinity instead of a probability: its weights are broken."""


def check_finite(probabilities: np.ndarray, files: Sequence[Path], where: str = "The model") -> np.ndarray:
    """Refuse outputs that are not numbers: a model whose training diverged answers NaN for every image."""
    bad = ~np.isfinite(np.asarray(probabilities, dtype=np.float64))
    if bad.any():
        named = [str(f) for f, b in zip(files, bad) if b][:3]
        raise BrokenModelError(
            f"{where} gives no usable answer (NaN or infinity instead of a probability) for {int(bad.sum())} of "
            f"{len(bad)} image(s){' (' + ', '.join(named) + ')' if named else ''}. Its weights are broken, "
            f"most likely because its training diverged (a learning rate far too high makes the loss NaN). "
            f"Train again with a smaller learning rate (the paper's 1e-4 is safe), or use another run (--run).")
    return probabilities


def _predict(model: "keras.Model", images: np.ndarray, batch_size: int) -> np.ndarray:
    import keras  # here, not at the top: TensorFlow takes seconds to load

    if len(images) == 0:
        return np.zeros((0,), dtype=np.float32)
    if len(images) <= DIRECT_CALL_LIMIT:
        # One batch, but through Keras' compiled predict step, not an eager model call: measured
        # at 299 px (benchmarks), eager InceptionV3 holds +1.4 GB for 10 images and +4.6 GB for 32
        # (the conference run then peaked above 3 GB); predict_on_batch +0.2 / +0.5 GB, same speed.
        return keras.ops.convert_to_numpy(model.predict_on_batch(images)).reshape(-1)
    return np.asarray(model.predict(images, batch_size=max(1, batch_size), verbose=0)).reshape(-1)


# --- predictions ------------------------------------------------------------------------------------
@dataclass
class Prediction:
    file: Path
    probability: float  # probability of class 1 (abdomen)
    predicted_class: int
    display_name: str
    true_class: int | None = None
    true_name: str | None = None
    image: np.ndarray | None = field(default=None, repr=False, compare=False)  # what the model saw (uint8)

    @property
    def correct(self) -> bool | None:
        return None if self.true_class is None else self.true_class == self.predicted_class

    def __str__(self) -> str:
        return f"{self.file}\t{self.probability:.4f}\t{self.display_name}"


def classify(probabilities: Sequence[float], settings: Settings) -> np.ndarray:
    """Class 1 when the probability reaches ``settings.threshold`` (0.5 by default), else class 0."""
    return (np.asarray(probabilities, dtype=float) >= settings.threshold).astype(int)


def find_images(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given, folders expanded to the images inside them (recursively, sorted)."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            images, _ = images_under(path)
            if not images:
                raise DataError(f"The folder {path} holds no PNG, JPEG or DICOM images.")
            found.extend(images)
        elif path.is_file():
            if not is_image_file(path):
                raise DataError(f"{path} is not a PNG, JPEG or DICOM image. Give image files or folders.")
            found.append(path)
        else:
            raise DataError(f"{path} does not exist. Check the name and folder.")
    return found


def predict_paths(paths: Iterable[str | Path], run: runs.Run) -> list[Prediction]:
    """Predict every image file (or every image in a folder) with a run's best model and settings."""
    return predict_files(run.model, paths, run.settings, where=f"The model of the run {run.folder}")


def predict_files(model: "keras.Model", paths: Iterable[str | Path], settings: Settings, *,
                  where: str = "The model") -> list[Prediction]:
    """Predict image files or folders with a model in memory (``settings`` must match it).

    A model that answers NaN or infinity is refused (:class:`BrokenModelError`, ``where`` names it).
    """
    files = find_images(paths)
    _check_input_size(model, settings)
    images = pipeline.load_images(files, settings)
    probabilities = check_finite(_predict(model, images, settings.batch_size), files, where)
    classes = classify(probabilities, settings)
    return [Prediction(file, float(p), int(c), settings.class_names[int(c)], image=image)
            for file, p, c, image in zip(files, probabilities, classes, images)]


def _check_input_size(model: "keras.Model", settings: Settings) -> None:
    expected = model.input_shape[1]
    if expected is not None and expected != settings.image_size:
        raise DataError(f"This model was trained on {expected}x{expected} images but image_size is "
                        f"{settings.image_size}. Set image_size={expected} (or pass the model's run folder).")


# --- metrics ------------------------------------------------------------------------------------------
@dataclass
class Evaluation:
    """Metrics of a model on one labelled split; ``as_dict()`` for JSON, ``format()`` for people."""

    split: str
    files: list[Path]
    y_true: np.ndarray
    y_prob: np.ndarray
    threshold: float
    class_names: tuple[str, ...]
    loss: float
    accuracy: float
    auc: float | None
    confusion: np.ndarray
    report: str
    report_dict: dict = field(repr=False)
    images: np.ndarray | None = field(default=None, repr=False)  # uint8, what the model saw, same order

    @property
    def y_pred(self) -> np.ndarray:
        return (self.y_prob >= self.threshold).astype(int)

    @property
    def predictions(self) -> list[Prediction]:
        images = self.images if self.images is not None else [None] * len(self.files)
        return [Prediction(f, float(p), int(c), self.class_names[int(c)], int(t), self.class_names[int(t)], image)
                for f, p, c, t, image in zip(self.files, self.y_prob, self.y_pred, self.y_true, images)]

    def as_dict(self) -> dict[str, Any]:
        return {
            "split": self.split,
            "images": len(self.files),
            "threshold": self.threshold,
            "loss": self.loss,
            "accuracy": self.accuracy,
            "auc": self.auc,
            "confusion_matrix": self.confusion.tolist(),
            "confusion_matrix_layout": f"rows = true class, columns = predicted class, order {list(self.class_names)}",
            "classification_report": self.report_dict,
            "predictions": [{"file": str(p.file), "probability": p.probability, "predicted": p.display_name,
                             "true": p.true_name} for p in self.predictions],
        }

    def format(self) -> str:
        auc = "n/a (needs both classes)" if self.auc is None else f"{self.auc:.3f}"
        return (f"{self.split} set: {len(self.files)} images, threshold {self.threshold}\n"
                f"accuracy {self.accuracy:.1%}, ROC AUC {auc}, loss {self.loss:.4f}\n"
                f"confusion matrix (rows true, columns predicted; {', '.join(self.class_names)}):\n"
                f"{self.confusion}\n\n{self.report}")


def evaluate_model(model: "keras.Model", settings: Settings, split: str = "val", *,
                   datasets: Any = None, where: str = "The model") -> Evaluation:
    """Accuracy, ROC AUC, confusion matrix and report of ``model`` on a labelled split.

    A model that answers NaN or infinity is refused (:class:`BrokenModelError`, ``where`` names it).
    """
    _check_input_size(model, settings)
    if datasets is not None and split == "val":
        images = pipeline.load_images(datasets.val_files, settings)
        labels, files = np.asarray(datasets.val_labels), list(datasets.val_files)
    else:
        arrays = pipeline.load_split_arrays(settings, split)
        images, labels, files = arrays.images, arrays.labels, arrays.files
    known = labels != pipeline.UNKNOWN_LABEL
    if not known.any():
        raise DataError(f"The {split} images of {settings.data_dir} have no labels (they are not in class "
                        f"folders), so there is nothing to score. Use a labelled split such as val.")
    images, labels = images[known], labels[known].astype(int)
    files = [f for f, k in zip(files, known) if k]
    probabilities = check_finite(_predict(model, images, settings.batch_size), files, where)
    evaluation = score(labels, probabilities, settings, split=split, files=files)
    evaluation.images = images
    return evaluation


def score(y_true: Sequence[int], y_prob: Sequence[float], settings: Settings, *, split: str = "val",
          files: Sequence[Path] | None = None) -> Evaluation:
    """Metrics from labels and predicted probabilities (scikit-learn; loss as Keras computes it)."""
    import keras  # here, not at the top: TensorFlow takes seconds to load

    y_true = np.asarray(y_true).astype(int).ravel()
    y_prob = np.asarray(y_prob, dtype=np.float32).ravel()
    y_pred = classify(y_prob, settings)
    labels = list(range(len(settings.class_names)))
    loss = float(np.mean(keras.ops.convert_to_numpy(
        keras.losses.binary_crossentropy(y_true.reshape(-1, 1).astype("float32"), y_prob.reshape(-1, 1)))))
    report_args = dict(labels=labels, target_names=list(settings.class_names), zero_division=0)
    return Evaluation(
        split=split,
        files=[Path(f) for f in (files if files is not None else [""] * len(y_true))],
        y_true=y_true,
        y_prob=y_prob,
        threshold=settings.threshold,
        class_names=tuple(settings.class_names),
        loss=loss,
        accuracy=float(accuracy_score(y_true, y_pred)),
        auc=float(roc_auc_score(y_true, y_prob)) if len(np.unique(y_true)) == 2 else None,
        confusion=confusion_matrix(y_true, y_pred, labels=labels),
        report=classification_report(y_true, y_pred, digits=3, **report_args),
        report_dict=classification_report(y_true, y_pred, output_dict=True, **report_args),
    )


def save_evaluation(evaluation: Evaluation, run_dir: str | Path) -> dict[str, Any]:
    """Write ``evaluation.json`` (or ``evaluation_<split>.json``) and the figures into a run folder."""
    run_dir = Path(run_dir)
    figures = run_dir / runs.FIGURES
    suffix = "" if evaluation.split == "val" else f"_{evaluation.split}"
    positive = evaluation.class_names[-1]
    plots.plot_roc(evaluation.y_true, evaluation.y_prob, positive_name=positive,
                   title=f"ROC curve ({evaluation.split})", save_path=figures / f"roc{suffix}.png")
    plots.plot_confusion_matrix(evaluation.confusion, evaluation.class_names,
                                title=f"Confusion matrix ({evaluation.split}, threshold {evaluation.threshold})",
                                save_path=figures / f"confusion_matrix{suffix}.png")
    plots.plot_prediction_gallery(evaluation.predictions, title=f"Predictions on the {evaluation.split} images "
                                  f"(p = probability of {positive})",
                                  save_path=figures / f"predictions{suffix}.png")
    data = evaluation.as_dict()
    runs.write_json(run_dir / f"{Path(runs.EVALUATION).stem}{suffix}.json", data)
    return data


def evaluate_run(run: runs.Run) -> dict[str, Any]:
    """Recompute the metrics and figures of a saved run on its validation set (and a labelled TEST set).

    Returns the headline numbers (what ``hello-dl evaluate`` prints).
    """
    settings, model = run.settings, run.model  # the model first: a folder without one is named at once
    summary: dict[str, Any] = {"run": str(run.folder)}
    test = scan(settings).test
    splits = ["val"] + (["test"] if len(test) and all(label is not None for label in test.labels) else [])
    for split in splits:
        evaluation = evaluate_model(model, settings, split, where=f"The model of the run {run.folder}")
        save_evaluation(evaluation, run.folder)
        prefix = "" if split == "val" else "test_"
        summary.update({f"{prefix}images": len(evaluation.files), f"{prefix}accuracy": round(evaluation.accuracy, 4),
                        f"{prefix}auc": None if evaluation.auc is None else round(evaluation.auc, 4),
                        f"{prefix}loss": round(evaluation.loss, 4),
                        f"{prefix}confusion_matrix": evaluation.confusion.tolist()})
    if runs.has_history(run.folder):
        plots.plot_training_curves(run.history, title=f"Training curves: {run.name}",
                                   save_path=run.figures / "training_curves.png")
    summary["threshold"] = settings.threshold
    summary["figures"] = str(run.figures)
    return summary


__all__ = [
    "BrokenModelError", "Evaluation", "Prediction", "check_finite", "classify", "evaluate_model", "evaluate_run",
    "find_images", "predict_files", "predict_paths", "save_evaluation", "score",
]
