"""A one-page model card for every run: what the model is for, what it learned from, how sure we can be.

``model_card.md`` is written into the run folder when training finishes, before the FINISHED
marker (which stays the last file written). It follows the spirit of Model Cards (Mitchell et al.
2019) and of the CLAIM checklist for AI in medical imaging (Mongan et al. 2020), cut down to what a
resident can read on one page:

* intended use (teaching only, not for clinical use) and what goes in and comes out;
* the data: where it came from, how many images per set and class, and its known quirks (the
  duplicate in the validation set, journal figures among the abdominal images, the image-size
  shortcut);
* the split, the recipe and the weights;
* the metrics of every set with 95 % intervals, each set named with its role;
* the stress test's result, and the limitations.

:func:`show` returns the card of a run in a form a notebook displays as formatted text.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping

from hello_dl import __version__, runs
from hello_dl.dataset import DatasetSummary
from hello_dl.settings import DEFAULT_DATA_URL, Settings
from hello_dl.stats import SMALL_SET_SENTENCE

#: The card's file in a run folder.
MODEL_CARD = runs.MODEL_CARD

#: The sections every card has, in this order (the tests check them).
SECTIONS = ("Intended use", "Data", "Split", "Recipe and weights", "Results", "Stress test", "Limitations")

#: The paper's class folders: the dataset quirks below are known facts about those images only.
PAPER_CLASS_FOLDERS = ("openI_CXR", "openI_abd_xray")


def _data_source(settings: Settings) -> str:
    if settings.data_source == DEFAULT_DATA_URL:
        return ("the 75 Open-i radiographs (plus TEST images) published with Lakhani et al. 2018, from the paper's "
                "repository, checked file by file against the kit's checksum list")
    return f"`{settings.data_source}`"


def _counts(summary: DatasetSummary, role: str) -> str:
    per_class = ", ".join(f"{count} {name}" if name != "unlabelled" else "no class folders: the file names give "
                          "the class" for name, count in summary.counts[role].items() if count)
    distinct = summary.distinct[role]
    extra = f"; {distinct} distinct" if distinct != summary.total(role) else ""
    return f"{summary.total(role)} ({per_class}{extra})" if summary.total(role) else "none"


def _quirks(settings: Settings, summary: DatasetSummary, shortcut: Any) -> list[str]:
    quirks = []
    for group in summary.duplicates:
        quirks.append(f"identical files ({summary.duplicate_kind(group)}): {', '.join(group)}; each such picture "
                      "counts more than once in that set's numbers")
    for role, name in summary.stats:
        sizes = summary.stats[(role, name)].sizes
        if role == "train" and len(sizes) == 1:
            (width, height), = sizes
            quirks.append(f"every training {name} image is {width} x {height} pixels, the other class comes in "
                          "many sizes")
    if shortcut is not None:
        quirks.append(f"image size alone (no pixel looked at) classifies {shortcut.accuracy:.0%} of the training "
                      "images correctly (a depth-2 decision tree, cross-validated): a shortcut the network can "
                      "take instead of anatomy")
    if tuple(settings.class_folders) == PAPER_CLASS_FOLDERS:
        quirks.append("several abdominal images are figures from journal articles (arrows, letters, scale bars, "
                      "cropped); no chest image is; the chest films carry an L side marker")
    return quirks


def _recipe(settings: Settings, metrics: Mapping[str, Any]) -> list[str]:
    weights = {"imagenet": "ImageNet (pretrained on 1.2 million everyday photographs; transfer learning)",
               "none": "none: every weight started at random (trained from scratch)"}.get(
        settings.weights, f"the file `{settings.weights}`")
    lines = [settings.describe_recipe(),  # one plain line: transfer learning or from scratch (hello_dl.recipes)
             f"InceptionV3 base with a new head (global average pooling, Dense {settings.dense_units}, dropout "
             f"{settings.dropout:g}, one sigmoid unit); starting weights: {weights}.",
             f"Images {settings.image_size} x {settings.image_size} pixels, "
             f"{'padded to a square (aspect ratio kept)' if settings.keep_aspect_ratio else 'stretched to a square'}; "
             f"augmentation {'on (training images only)' if settings.augment else 'off'}.",
             f"Training: profile `{settings.profile}`"
             + (f", experiment group {settings.experiment_group}" if settings.experiment_group else "")
             + f"; {settings.warmup_epochs} epoch(s) with the base frozen (Adam, learning rate "
             f"{settings.learning_rate:g}), then {settings.finetune_epochs} fine-tuning "
             f"(learning rate {settings.finetune_learning_rate:g}); batch size {settings.batch_size}; binary "
             f"cross-entropy; seed {settings.seed}."]
    if metrics.get("best_epoch") is not None:
        lines.append(f"Kept: the model of epoch {metrics['best_epoch']} of {metrics.get('epochs_run', '?')}, the "
                     "one with the lowest validation loss (so the validation set helped choose it).")
    if metrics.get("from_scratch"):
        lines.append("No pretrained weights: the network learned everything from these few images, so expect "
                     "less than with ImageNet weights and more reliance on shortcuts.")
    return ["\n".join(f"- {line}" for line in lines)]


def _results(evaluations: Mapping[str, Any]) -> list[str]:
    if not evaluations:
        return ["No set could be evaluated."]
    example = next(iter(evaluations.values()))
    positive, negative = example.class_names[1], example.class_names[0]
    table = [f"| set | images | accuracy | sensitivity ({positive}) | specificity ({negative}) | ROC AUC |",
             "| --- | --- | --- | --- | --- | --- |"]
    for evaluation in evaluations.values():
        auc = "n/a" if evaluation.auc_estimate is None else str(evaluation.auc_estimate)
        distinct = f" ({evaluation.distinct_images} distinct)" if evaluation.distinct_images != len(
            evaluation.files) else ""
        labels = " (labels from file names)" if evaluation.labels_from == "file names" else ""
        table.append(f"| {evaluation.set_name}{labels} | {len(evaluation.files)}{distinct} | {evaluation.correct} | "
                     f"{evaluation.sensitivity} | {evaluation.specificity} | {auc} |")
    return ["\n".join(table),
            "Roles: the training images taught the network; the validation images chose the kept epoch, so "
              "they flatter it; only a test set that played no part in either reports, and the paper's TEST "
              "folder has two images: far too few to report anything firm.",
            "The paper (Lakhani et al. 2018), for comparison: 89 % training and 100 % validation accuracy after "
            "5 epochs, without intervals.",
            SMALL_SET_SENTENCE]


def build_model_card(run_dir: str | Path, settings: Settings, metrics: Mapping[str, Any],
                     evaluations: Mapping[str, Any], summary: DatasetSummary, *, shortcut: Any = None,
                     stress: Any = None, now: datetime | None = None) -> str:
    """The card's Markdown text.

    ``evaluations``: split → :class:`hello_dl.evaluate.Evaluation`; ``summary``: the dataset
    summary; ``shortcut``: :func:`hello_dl.explain.shortcut_check`'s result; ``stress``: the
    stress test's result (anything with ``summary_line()``), or None if it was not run.
    """
    run_dir = Path(run_dir)
    stamp = (now or datetime.now()).strftime("%Y-%m-%d %H:%M")
    stress_line = (stress.summary_line() if stress is not None else
                   "Not run for this card. Notebook 07 runs it on the validation and TEST images.")
    sections = {
        "Intended use": [
            "**Teaching only, not for clinical use.** A lesson's model: it shows what a small deep-learning "
            "model learns and how it can mislead. Never use it for patients, triage or research conclusions.",
            f"In: one frontal radiograph (PNG, JPEG or DICOM), resized to {settings.image_size} x "
            f"{settings.image_size}. Out: a score from 0 to 1 for \"{settings.class_names[1]}\" (not a calibrated "
            f"probability) and a class: {settings.class_names[1]} at a score of {settings.threshold:g} or more, "
            f"else {settings.class_names[0]}.",
        ],
        "Data": [f"Source: {_data_source(settings)}.",
                 f"Training {_counts(summary, 'train')}; validation {_counts(summary, 'val')}; TEST "
                 f"{_counts(summary, 'test')}.",
                 "\n".join(["Known quirks:", *[f"- {quirk}" for quirk in _quirks(settings, summary, shortcut)]])],
        "Split": ["The folders as given (TRAIN / VAL / TEST): the paper's fixed split, not redrawn; no image is in "
                  "two sets" + (" (but see the quirks above)." if summary.leaks else ".")],
        "Recipe and weights": _recipe(settings, metrics),
        "Results": ["95 % intervals: Wilson for the shares, a seeded bootstrap for the AUC.", *_results(evaluations)],
        "Stress test": [stress_line],
        "Limitations": ["\n".join([
            "- Tiny and from one public collection of teaching and journal images: nothing here says how it would "
            "do on any hospital's films, other patients, other machines or portable studies.",
            "- The easy task hides shortcuts (image size and shape, journal-figure marks, side markers); a right "
            "answer does not show the anatomy was used. Grad-CAM and feature maps show where, not why.",
            "- The score ranks images but is not a probability you can quote to a patient; what a positive answer "
            "means depends on how common the class is (PPV, notebook 06).",
            "- One run with one seed: another seed, group or computer gives other numbers.",
        ])],
    }
    lines = [f"# Model card: {run_dir.name}", ""]
    for title in SECTIONS:  # each entry of a section is a paragraph (or a list, or a table) of its own
        lines += [f"## {title}", "", "\n\n".join(sections[title]), ""]
    lines.append(f"*Written {stamp} by hello-dl {__version__}, in the spirit of Model Cards (Mitchell et al. 2019) "
                 "and CLAIM (Mongan et al. 2020).*")
    return "\n".join(lines) + "\n"


def write_model_card(run_dir: str | Path, settings: Settings, metrics: Mapping[str, Any],
                     evaluations: Mapping[str, Any], summary: DatasetSummary, **kwargs: Any) -> Path:
    """Write ``model_card.md`` into the run folder (atomically); returns its path."""
    text = build_model_card(run_dir, settings, metrics, evaluations, summary, **kwargs)
    return runs.write_atomic(Path(run_dir) / MODEL_CARD, text)


@dataclass
class ModelCard:
    """A run's card: ``text`` (Markdown) and where it is; a notebook shows it formatted."""

    path: Path
    text: str

    def _repr_markdown_(self) -> str:
        return self.text

    def __str__(self) -> str:
        return self.text


def show(run: runs.Run) -> ModelCard:
    """The model card of a run, to show at the end of a lesson.

    A run from before the kit wrote cards gets a card that says so (and how to get a real one), so
    the lesson goes on.
    """
    path = Path(run.folder) / MODEL_CARD
    if not path.is_file():
        return ModelCard(path, f"# Model card: {Path(run.folder).name}\n\nThis run has no {MODEL_CARD}: it was "
                               "trained before the kit wrote model cards. Train again in notebook 04 to get one.\n")
    return ModelCard(path, path.read_text(encoding="utf-8"))


__all__ = ["MODEL_CARD", "ModelCard", "SECTIONS", "build_model_card", "show", "write_model_card"]
