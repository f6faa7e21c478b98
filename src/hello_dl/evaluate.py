"""Use a trained model: predictions for any image files, and metrics on labelled data.

* :func:`predict_paths` — one file, a list, or folders (PNG, JPEG, DICOM) → file, probability,
  predicted class and display name, with a run's best model (:func:`predict_files` with any model).
* :func:`evaluate_model` — accuracy, sensitivity, specificity and ROC AUC, each with its 95 %
  interval (:mod:`hello_dl.stats`), the confusion matrix and the classification report
  (scikit-learn) on one labelled set: training, validation or TEST.
* :func:`evaluate_run` — recompute all of that for a saved run and write the numbers
  (``evaluation.json``) and the figures (``figures/``).
* :func:`predictive_values` — what the sensitivity and specificity would mean at a realistic
  prevalence (the PPV).

The three sets have three jobs, and every number says which set it comes from: the **training**
images teach the network, the **validation** images choose (the epoch that is kept, and any
setting a person tunes), and only a **test** set that played no part in either reports how the
model does on new images. The paper's TEST folder holds two images, so the kit can report very
little; the intervals say how little. The network's output is called a *score*: a number from
0 to 1 for "abdomen" that ranks images well but is not a calibrated probability.

Images go through the same loader and resize as in training (``hello_dl.pipeline``), and a saved
run is always read with its own image size and class names (``hello_dl.runs``).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import numpy as np
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, roc_auc_score

from hello_dl import inference, pipeline, plots, runs
from hello_dl.dataset import images_under, scan
from hello_dl.errors import DataError
from hello_dl.filetypes import file_hash, is_image_file
from hello_dl.settings import Settings
from hello_dl.stats import SMALL_SET_SENTENCE, Estimate, Proportion, auc_interval
from hello_dl.stats import predictive_values as _predictive_values

if TYPE_CHECKING:  # pragma: no cover
    import keras  # here, not at the top: TensorFlow takes seconds to load

#: The name each split goes by in text and figure titles.
SET_NAMES = {"train": "training", "val": "validation", "test": "TEST"}

#: What each set is for, in one line (printed with its numbers).
SET_ROLES = {
    "train": "the network learned from these images, so its numbers here are the most flattering",
    "val": "these images chose the kept epoch, so they are not a test: expect them to flatter the model",
    "test": "held back from training and from every choice: the only set that reports",
}

#: The paper's own result (Lakhani et al. 2018): after 5 epochs, 89 % training and 100 %
#: validation accuracy, on the same 65 training and 10 validation images.
PAPER_RESULT = {"epochs": 5, "train_accuracy": 0.89, "train_images": 65, "val_accuracy": 1.0, "val_images": 10}


def paper_points() -> dict[str, tuple[float, float]]:
    """The paper's accuracies as (epoch, accuracy) points, to draw beside a learner's training curves."""
    epoch = PAPER_RESULT["epochs"]
    return {f"the paper, epoch {epoch}: {set_name(split)} {PAPER_RESULT[f'{split}_accuracy']:.0%}":
            (epoch, PAPER_RESULT[f"{split}_accuracy"]) for split in ("train", "val")}


def set_name(split: str) -> str:
    """"training", "validation" or "TEST" for a split key (anything else is returned as it is)."""
    return SET_NAMES.get(split, split)


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


def _predict(model: "keras.Model", images: np.ndarray) -> np.ndarray:
    # Through hello_dl.inference: an image already answered by these same weights (the set
    # evaluated after training, the run reopened by a later lesson) is not run again.
    return inference.scores(model, images)


# --- predictions ------------------------------------------------------------------------------------
@dataclass
class Prediction:
    file: Path
    probability: float  # the score for class 1 (abdomen): the sigmoid output, not a calibrated probability
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
    """Class 1 when the score reaches ``settings.threshold`` (0.5 by default), else class 0."""
    return (np.asarray(probabilities, dtype=float) >= settings.threshold).astype(int)


def label_from_name(path: str | Path, settings: Settings) -> int | None:
    """The class a file's *name* states (``abd2.png`` → 1, ``chest2.png`` → 0), or None if it names none or both.

    The paper's TEST folder is flat: no class folders, but the file names say the class. A word of
    the name (letters only, at least three) matches a class when it begins that class's display name
    or folder name, or one of them begins with it ("abd" → "abdomen"); words that fit both classes
    (such as "openi") say nothing.
    """
    words = [word for word in re.findall(r"[a-z]+", Path(path).stem.lower()) if len(word) >= 3]
    keys = [{*re.findall(r"[a-z]+", name.lower()), *re.findall(r"[a-z]+", folder.lower())}
            for name, folder in zip(settings.class_names, settings.class_folders)]
    shared = set.intersection(*keys) if keys else set()

    def fits(word: str, key: str) -> bool:
        return key not in shared and len(key) >= 3 and (key.startswith(word) or word.startswith(key))

    matches = {index for index, class_keys in enumerate(keys)
               for word in words for key in class_keys if fits(word, key)}
    return matches.pop() if len(matches) == 1 else None


def true_class(file: str | Path, settings: Settings) -> int | None:
    """The class of a file from its class folder (e.g. ``VAL/openI_CXR/``), else from its name, else None."""
    folder = Path(file).parent.name
    if folder in settings.class_folders:
        return settings.class_folders.index(folder)
    return label_from_name(file, settings)


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
    probabilities = check_finite(_predict(model, images), files, where)
    classes = classify(probabilities, settings)
    truths = [true_class(file, settings) for file in files]  # shown beside the answer when a folder or name says it
    return [Prediction(file, float(p), int(c), settings.class_names[int(c)], true_class=truth,
                       true_name=None if truth is None else settings.class_names[truth], image=image)
            for file, p, c, truth, image in zip(files, probabilities, classes, truths, images)]


def _check_input_size(model: "keras.Model", settings: Settings) -> None:
    expected = model.input_shape[1]
    if expected is not None and expected != settings.image_size:
        raise DataError(f"This model was trained on {expected}x{expected} images but image_size is "
                        f"{settings.image_size}. Set image_size={expected} (or pass the model's run folder).")


# --- metrics ------------------------------------------------------------------------------------------
@dataclass
class Evaluation:
    """Metrics of a model on one labelled set; ``as_dict()`` for JSON, ``format()`` for people.

    Every share comes with its 95 % Wilson interval (``correct``, ``sensitivity``,
    ``specificity``) and the AUC with a seeded bootstrap interval (``auc_estimate``). Class 1
    (abdomen) is the "positive" class: sensitivity is the share of abdominal images called
    abdomen, specificity the share of chest images called chest.
    """

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
    seed: int = 0  # seeds the AUC bootstrap (the run's settings.seed)
    labels_from: str = "class folders"  # or "file names" (the paper's flat TEST folder)

    @property
    def y_pred(self) -> np.ndarray:
        return (self.y_prob >= self.threshold).astype(int)

    @property
    def set_name(self) -> str:
        return set_name(self.split)

    @property
    def predictions(self) -> list[Prediction]:
        images = self.images if self.images is not None else [None] * len(self.files)
        return [Prediction(f, float(p), int(c), self.class_names[int(c)], int(t), self.class_names[int(t)], image)
                for f, p, c, t, image in zip(self.files, self.y_prob, self.y_pred, self.y_true, images)]

    # --- shares with their intervals --------------------------------------------------------------
    @property
    def correct(self) -> Proportion:
        """How many images were classified correctly, with the 95 % interval of the accuracy."""
        return Proportion(int((self.y_pred == self.y_true).sum()), int(len(self.y_true)))

    @property
    def sensitivity(self) -> Proportion:
        """Class-1 (abdomen) images called class 1."""
        positive = self.y_true == 1
        return Proportion(int((self.y_pred[positive] == 1).sum()), int(positive.sum()))

    @property
    def specificity(self) -> Proportion:
        """Class-0 (chest) images called class 0."""
        negative = self.y_true == 0
        return Proportion(int((self.y_pred[negative] == 0).sum()), int(negative.sum()))

    @functools.cached_property
    def auc_estimate(self) -> Estimate | None:
        """The AUC with its 95 % interval (seeded bootstrap; ``None`` unless both classes are there)."""
        return auc_interval(self.y_true, self.y_prob, seed=self.seed)

    @functools.cached_property
    def distinct_images(self) -> int:
        """How many different pictures the files hold (a byte-identical copy counts once)."""
        readable = [f for f in self.files if f.is_file()]
        return len({file_hash(f) for f in readable}) + (len(self.files) - len(readable))

    def intervals(self) -> dict[str, tuple[float, float, float]]:
        """Metric name → (value, low, high), for the figures; a metric without images is left out."""
        rows = {}
        for name, share in (("accuracy", self.correct), ("sensitivity", self.sensitivity),
                            ("specificity", self.specificity)):
            if share.total:
                rows[name] = (share.rate, *share.interval)
        if self.auc_estimate is not None:
            rows["AUC"] = (self.auc_estimate.value, self.auc_estimate.low, self.auc_estimate.high)
        return rows

    def metrics(self, prefix: str | None = None) -> dict[str, Any]:
        """Flat numbers for a metrics file: ``<prefix>accuracy``, ``<prefix>accuracy_ci95_low`` ... (prefix: ``val_``)."""
        prefix = f"{self.split}_" if prefix is None else prefix
        out: dict[str, Any] = {f"{prefix}images": len(self.files), f"{prefix}distinct_images": self.distinct_images}
        for name, share in (("accuracy", self.correct), ("sensitivity", self.sensitivity),
                            ("specificity", self.specificity)):
            out[f"{prefix}{name}"] = share.rate if share.total else None
            out[f"{prefix}{name}_ci95_low"], out[f"{prefix}{name}_ci95_high"] = (
                share.interval if share.total else (None, None))
        estimate = self.auc_estimate
        out[f"{prefix}auc"] = None if estimate is None else estimate.value
        out[f"{prefix}auc_ci95_low"] = None if estimate is None else estimate.low
        out[f"{prefix}auc_ci95_high"] = None if estimate is None else estimate.high
        out[f"{prefix}auc_ci95_method"] = None if estimate is None else estimate.method
        out[f"{prefix}loss"] = self.loss
        return out

    def headline(self) -> str:
        """One line: the set, its size and every metric with its interval."""
        auc = "n/a (needs both classes)" if self.auc_estimate is None else str(self.auc_estimate)
        distinct = f", {self.distinct_images} distinct" if self.distinct_images != len(self.files) else ""
        return (f"{self.set_name} set ({len(self.files)} images{distinct}): accuracy {self.correct}; "
                f"sensitivity {self.sensitivity}; specificity {self.specificity}; AUC {auc}")

    def caption(self) -> str:
        """Two short lines for under a figure: the shares with their intervals."""
        positive, negative = self.class_names[1], self.class_names[0]
        return (f"accuracy {self.correct}\n"
                f"sensitivity ({positive}) {self.sensitivity} · specificity ({negative}) {self.specificity}")

    def as_dict(self) -> dict[str, Any]:
        estimate = self.auc_estimate
        return {
            "split": self.split,
            "set": self.set_name,
            "role": SET_ROLES.get(self.split, ""),
            "images": len(self.files),
            "distinct_images": self.distinct_images,
            "labels_from": self.labels_from,
            "threshold": self.threshold,
            "loss": self.loss,
            "accuracy": self.accuracy,
            "auc": self.auc,
            "intervals_95": {
                "accuracy": self.correct.as_dict(),
                f"sensitivity ({self.class_names[1]} called {self.class_names[1]})": self.sensitivity.as_dict(),
                f"specificity ({self.class_names[0]} called {self.class_names[0]})": self.specificity.as_dict(),
                "auc": None if estimate is None else estimate.as_dict(),
            },
            "headline": self.headline(),
            "confusion_matrix": self.confusion.tolist(),
            "confusion_matrix_layout": f"rows = true class, columns = predicted class, order {list(self.class_names)}",
            "classification_report": self.report_dict,
            "probability": (f"each prediction's 'probability' is the network's score for {self.class_names[-1]} "
                            "(0 to 1): it ranks images, but it is not a calibrated probability"),
            "predictions": [{"file": str(p.file), "probability": p.probability, "predicted": p.display_name,
                             "true": p.true_name} for p in self.predictions],
        }

    def format(self) -> str:
        estimate = self.auc_estimate
        auc = "n/a (needs images of both classes)" if estimate is None else f"{estimate}  [{estimate.method}]"
        distinct = f" ({self.distinct_images} distinct)" if self.distinct_images != len(self.files) else ""
        positive, negative = self.class_names[1], self.class_names[0]
        lines = [f"{self.set_name} set: {len(self.files)} images{distinct}, threshold {self.threshold:g}"
                 + (f", labels from the {self.labels_from}" if self.labels_from != "class folders" else ""),
                 f"  ({SET_ROLES.get(self.split, '')})" if self.split in SET_ROLES else "",
                 f"accuracy     {self.correct}",
                 f"sensitivity  {self.sensitivity}  ({positive} images called {positive})",
                 f"specificity  {self.specificity}  ({negative} images called {negative})",
                 f"ROC AUC      {auc}",
                 f"loss         {self.loss:.4f} (binary cross-entropy)",
                 f"confusion matrix (rows true, columns predicted; {', '.join(self.class_names)}):",
                 f"{self.confusion}"]
        if estimate is not None and estimate.note:
            lines.append(f"Note: {estimate.note}.")
        if len(self.files) < 100:
            lines.append(SMALL_SET_SENTENCE)
        return "\n".join(line for line in lines if line)

    # --- the set's figures, each titled with the set it comes from --------------------------------
    def plot_roc(self, **kwargs: Any):
        """The ROC curve with the AUC's 95 % interval (``save_path=`` to save it)."""
        return plots.plot_roc(self.y_true, self.y_prob, positive_name=self.class_names[-1], set_name=self.set_name,
                              auc_interval=self.auc_estimate, **kwargs)

    def plot_confusion_matrix(self, **kwargs: Any):
        """The confusion matrix with accuracy, sensitivity and specificity and their intervals underneath."""
        title = f"Confusion matrix, {self.set_name} set ({len(self.files)} images, threshold {self.threshold:g})"
        return plots.plot_confusion_matrix(self.confusion, self.class_names, title=title, caption=self.caption(),
                                           **kwargs)

    def plot_predictions(self, **kwargs: Any):
        """Every image with its answer, its score and its true class (green right, vermillion wrong)."""
        labels = " (true class from the file names)" if self.labels_from == "file names" else ""
        title = f"Predictions on the {self.set_name} images{labels}; score = the network's output for " \
                f"{self.class_names[-1]}"
        return plots.plot_prediction_gallery(self.predictions, title=title, **kwargs)

    def plot_threshold(self, **kwargs: Any):
        """Every score against the threshold, with what the threshold gives (and its intervals) underneath."""
        return plots.plot_threshold(self.y_true, self.y_prob, self.threshold, class_names=self.class_names,
                                    set_name=self.set_name, summary=self.caption(), **kwargs)

    def at_threshold(self, threshold: float) -> "Evaluation":
        """The same scores judged at another threshold (the ROC AUC does not change; the rest does)."""
        return _evaluation(self.y_true, self.y_prob, threshold, self.class_names, split=self.split,
                           files=self.files, images=self.images, seed=self.seed, labels_from=self.labels_from,
                           loss=self.loss)


def evaluate_model(model: "keras.Model", settings: Settings, split: str = "val", *,
                   datasets: Any = None, where: str = "The model") -> Evaluation:
    """Accuracy, sensitivity, specificity and ROC AUC (with 95 % intervals) of ``model`` on a labelled set.

    ``split`` is ``"train"``, ``"val"`` or ``"test"``. A flat TEST folder (the paper's) has no class
    folders; its labels are then read from the file names (:func:`label_from_name`) and the
    evaluation says so (``labels_from``). A model that answers NaN or infinity is refused
    (:class:`BrokenModelError`, ``where`` names it).
    """
    _check_input_size(model, settings)
    if datasets is not None and split == "val":
        images = pipeline.load_images(datasets.val_files, settings)
        labels, files = np.asarray(datasets.val_labels), list(datasets.val_files)
    else:
        arrays = pipeline.load_split_arrays(settings, split)
        images, labels, files = arrays.images, arrays.labels, arrays.files
    labels, labels_from = _labels_or_names(np.asarray(labels), files, settings)
    known = labels != pipeline.UNKNOWN_LABEL
    if not known.any():
        raise DataError(f"The {split} images of {settings.data_dir} have no labels (they are not in class "
                        f"folders, and their file names do not name a class), so there is nothing to score. "
                        f"Use a labelled split such as val.")
    images, labels = images[known], labels[known].astype(int)
    files = [f for f, k in zip(files, known) if k]
    probabilities = check_finite(_predict(model, images), files, where)
    evaluation = score(labels, probabilities, settings, split=split, files=files)
    evaluation.images = images
    evaluation.labels_from = labels_from
    return evaluation


def _labels_or_names(labels: np.ndarray, files: Sequence[Path], settings: Settings) -> tuple[np.ndarray, str]:
    """The folder labels, or for a split without any, the labels the file names state."""
    if (labels != pipeline.UNKNOWN_LABEL).any():
        return labels, "class folders"
    named = [label_from_name(f, settings) for f in files]
    return np.array([pipeline.UNKNOWN_LABEL if n is None else n for n in named], dtype=np.int64), "file names"


def has_labelled_test_set(settings: Settings) -> bool:
    """True if the TEST folder has images whose class is known (from class folders or from their names)."""
    test = scan(settings).test
    if not len(test):
        return False
    return any(label is not None for label in test.labels) or any(
        label_from_name(f, settings) is not None for f in test.files)


def score(y_true: Sequence[int], y_prob: Sequence[float], settings: Settings, *, split: str = "val",
          files: Sequence[Path] | None = None) -> Evaluation:
    """Metrics from labels and scores (scikit-learn; loss as Keras computes it; intervals seeded by ``settings.seed``)."""
    return _evaluation(y_true, y_prob, settings.threshold, tuple(settings.class_names), split=split, files=files,
                       seed=int(settings.seed))


def _evaluation(y_true: Sequence[int], y_prob: Sequence[float], threshold: float, class_names: tuple[str, ...], *,
                split: str, files: Sequence[Path] | None, seed: int, images: np.ndarray | None = None,
                labels_from: str = "class folders", loss: float | None = None) -> Evaluation:
    import keras  # here, not at the top: TensorFlow takes seconds to load

    y_true = np.asarray(y_true).astype(int).ravel()
    y_prob = np.asarray(y_prob, dtype=np.float32).ravel()
    y_pred = (y_prob >= threshold).astype(int)
    labels = list(range(len(class_names)))
    if loss is None:
        loss = float(np.mean(keras.ops.convert_to_numpy(
            keras.losses.binary_crossentropy(y_true.reshape(-1, 1).astype("float32"), y_prob.reshape(-1, 1)))))
    report_args = dict(labels=labels, target_names=list(class_names), zero_division=0)
    return Evaluation(
        split=split,
        files=[Path(f) for f in (files if files is not None else [""] * len(y_true))],
        y_true=y_true,
        y_prob=y_prob,
        threshold=float(threshold),
        class_names=tuple(class_names),
        loss=loss,
        accuracy=float(accuracy_score(y_true, y_pred)),
        auc=float(roc_auc_score(y_true, y_prob)) if len(np.unique(y_true)) == 2 else None,
        confusion=confusion_matrix(y_true, y_pred, labels=labels),
        report=classification_report(y_true, y_pred, digits=3, **report_args),
        report_dict=classification_report(y_true, y_pred, output_dict=True, **report_args),
        images=images,
        seed=seed,
        labels_from=labels_from,
    )


# --- what the numbers mean in a worklist --------------------------------------------------------------
@dataclass
class PredictiveValues:
    """PPV and NPV at several prevalences, from a set's sensitivity and specificity (and their lower ends)."""

    set_name: str
    positive_name: str
    sensitivity: Proportion
    specificity: Proportion
    rows: list[dict[str, float]]

    def format(self) -> str:
        lines = [f"From the {self.set_name} set: sensitivity {self.sensitivity}, specificity {self.specificity}.",
                 f"PPV = the share of '{self.positive_name}' answers that really are {self.positive_name}.",
                 "",
                 f"{'prevalence':>12}  {'PPV (observed)':>15}  {'PPV (lower ends of both intervals)':>36}",
                 ]
        for row in self.rows:
            lines.append(f"{row['prevalence']:>12.1%}  {_share(row['ppv']):>15}  {_share(row['ppv_pessimistic']):>36}")
        lines += ["", "The observed numbers come from a handful of images; at the lower ends of their intervals "
                  "(still quite possible) a rare finding's positive answers are mostly false alarms."]
        return "\n".join(lines)

    def _repr_pretty_(self, printer, cycle) -> None:  # IPython shows format() as the cell's result
        printer.text(self.format())


def _share(value: float) -> str:
    return "n/a (no such answers)" if value != value else f"{value:.1%}"  # NaN: the model never says it


def predictive_values(evaluation: Evaluation, prevalences: Sequence[float] = (0.5, 0.1, 0.02)) -> PredictiveValues:
    """What the set's sensitivity and specificity would give as PPV/NPV at each prevalence of class 1."""
    sensitivity, specificity = evaluation.sensitivity, evaluation.specificity
    rows = []
    for prevalence in prevalences:
        ppv, npv = _predictive_values(sensitivity.rate, specificity.rate, prevalence)
        worst_ppv, worst_npv = _predictive_values(sensitivity.low, specificity.low, prevalence)
        rows.append({"prevalence": float(prevalence), "ppv": ppv, "npv": npv, "ppv_pessimistic": worst_ppv,
                     "npv_pessimistic": worst_npv})
    return PredictiveValues(evaluation.set_name, evaluation.class_names[-1], sensitivity, specificity, rows)


def save_evaluation(evaluation: Evaluation, run_dir: str | Path) -> dict[str, Any]:
    """Write ``evaluation.json`` (or ``evaluation_<split>.json``) and the set's figures into a run folder."""
    run_dir = Path(run_dir)
    figures = run_dir / runs.FIGURES
    suffix = "" if evaluation.split == "val" else f"_{evaluation.split}"
    drawn = {figures / f"roc{suffix}.png": evaluation.plot_roc,
             figures / f"confusion_matrix{suffix}.png": evaluation.plot_confusion_matrix,
             figures / f"predictions{suffix}.png": evaluation.plot_predictions}
    data = evaluation.as_dict()
    written = run_dir / f"{Path(runs.EVALUATION).stem}{suffix}.json"
    # The same evaluation already on disk (the JSON is written last, after its figures): the
    # figures show exactly these numbers, so drawing them again (about 1.5 s a set) changes nothing.
    if _file_text(written) == runs.json_text(data) and all(path.is_file() for path in drawn):
        return data
    for path, draw in drawn.items():
        draw(save_path=path)
    runs.write_json(written, data)
    return data


def _file_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


# --- every set of a run at once ------------------------------------------------------------------------
#: The figure that puts every set's numbers and intervals side by side (and the paper's).
INTERVALS_FIGURE = "metrics_with_intervals.png"


def evaluate_sets(model: "keras.Model", settings: Settings, *, known: Mapping[str, Evaluation] | None = None,
                  datasets: Any = None, splits: Sequence[str] = ("train", "val", "test"),
                  where: str = "The model") -> dict[str, Evaluation]:
    """Evaluate each of ``splits`` that has labelled images (TEST only if its labels are known).

    ``known`` holds evaluations already made (e.g. the validation set right after training), which
    are reused rather than computed again; ``where`` names the model if it answers NaN.
    """
    done: dict[str, Evaluation] = dict(known or {})
    for split in splits:
        if split in done:
            continue
        if split == "test" and not has_labelled_test_set(settings):
            continue
        done[split] = evaluate_model(model, settings, split, datasets=datasets, where=where)
    return {split: done[split] for split in splits if split in done}


def _paper_rows() -> dict[str, dict[str, tuple[float, float, float]]]:
    """The paper's own accuracies as interval rows (its counts follow from its shares and set sizes)."""
    rows = {}
    for split, key in (("train", "train"), ("val", "val")):
        total = PAPER_RESULT[f"{key}_images"]
        share = Proportion(round(PAPER_RESULT[f"{key}_accuracy"] * total), total)
        rows[f"the paper, {set_name(split)} ({total} images, epoch {PAPER_RESULT['epochs']})"] = {
            "accuracy": (share.rate, *share.interval)}
    return rows


def interval_rows(evaluations: Mapping[str, Evaluation], *, with_paper: bool = True
                  ) -> dict[str, dict[str, tuple[float, float, float]]]:
    """Rows for :func:`hello_dl.plots.plot_metric_intervals`: each set (and the paper's numbers, drawn hollow)."""
    rows = {f"{e.set_name} ({len(e.files)} images)": e.intervals() for e in evaluations.values()}
    return {**rows, **(_paper_rows() if with_paper else {})}


def plot_sets(evaluations: Mapping[str, Evaluation], *, with_paper: bool = True, title: str | None = None,
              save_path: str | Path | None = None):
    """Every set's accuracy, sensitivity, specificity and AUC with 95 % intervals in one figure."""
    paper = list(_paper_rows()) if with_paper else []
    return plots.plot_metric_intervals(interval_rows(evaluations, with_paper=with_paper), hollow=paper,
                                       title=title, save_path=save_path)


def sets_metrics(evaluations: Mapping[str, Evaluation]) -> dict[str, Any]:
    """Flat numbers for ``metrics.json`` (``train_accuracy``, ``val_accuracy_ci95_low`` …) and one headline per set."""
    out: dict[str, Any] = {}
    for evaluation in evaluations.values():
        out.update(evaluation.metrics())
    out["headlines"] = [evaluation.headline() for evaluation in evaluations.values()]
    out["test_labels_from"] = evaluations["test"].labels_from if "test" in evaluations else None
    return out


def evaluate_run(run: runs.Run) -> dict[str, Any]:
    """Recompute the metrics and figures of a saved run on its training, validation and (labelled) TEST images.

    Returns the headline numbers (what ``hello-dl evaluate`` prints); the validation numbers keep
    their plain names (``accuracy``, ``auc`` ...), the others are prefixed (``test_accuracy``).
    """
    settings, model = run.settings, run.model  # the model first: a folder without one is named at once
    summary: dict[str, Any] = {"run": str(run.folder)}
    evaluations = evaluate_sets(model, settings, where=f"The model of the run {run.folder}")
    for split, evaluation in evaluations.items():
        save_evaluation(evaluation, run.folder)
        prefix = "" if split == "val" else f"{split}_"
        accuracy, estimate = evaluation.correct, evaluation.auc_estimate
        summary.update({f"{prefix}images": len(evaluation.files), f"{prefix}accuracy": round(evaluation.accuracy, 4),
                        f"{prefix}accuracy_95ci": [round(v, 4) for v in accuracy.interval],
                        f"{prefix}auc": None if evaluation.auc is None else round(evaluation.auc, 4),
                        f"{prefix}auc_95ci": None if estimate is None else [round(estimate.low, 4),
                                                                            round(estimate.high, 4)],
                        f"{prefix}loss": round(evaluation.loss, 4),
                        f"{prefix}confusion_matrix": evaluation.confusion.tolist()})
    plot_sets(evaluations, save_path=run.figures / INTERVALS_FIGURE)
    if runs.has_history(run.folder):
        plots.plot_training_curves(run.history, title=f"Training curves: {run.name}",
                                   save_path=run.figures / "training_curves.png")
    summary["headlines"] = [evaluation.headline() for evaluation in evaluations.values()]
    summary["threshold"] = settings.threshold
    summary["figures"] = str(run.figures)
    return summary


__all__ = [
    "INTERVALS_FIGURE", "PAPER_RESULT", "SET_NAMES", "SET_ROLES", "BrokenModelError", "Evaluation", "Prediction",
    "PredictiveValues", "check_finite", "classify", "evaluate_model", "evaluate_run", "evaluate_sets", "find_images",
    "has_labelled_test_set", "interval_rows", "label_from_name", "paper_points", "plot_sets", "predict_files", "predict_paths",
    "predictive_values", "save_evaluation", "score", "set_name", "sets_metrics", "true_class",
]
