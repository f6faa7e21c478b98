"""Which training recipe a run uses: transfer learning from ImageNet, or training from scratch.

With pretrained weights (``weights=imagenet`` or a weights file) the profile's own recipe runs:
a frozen warm-up of the new head, then fine-tuning, with BatchNorm keeping its ImageNet
statistics (:mod:`hello_dl.train`, :mod:`hello_dl.model`).

Without pretrained weights (``weights=none``, the only choice offline and what the tests and CI
use) that recipe wastes its time: a frozen *random* base teaches the head nothing, and a network
that is mostly random can only learn how the files were made (size, blur, borders, burnt-in
letters), not the anatomy. So :mod:`hello_dl.settings` swaps in the recipe below, whatever the
profile, after the profile and before the experiment group, the environment and arguments
(an explicit ``HELLO_DL_IMAGE_SIZE=150`` still wins):

* no frozen warm-up: every layer trains from the first epoch, at a higher learning rate;
* BatchNorm learns its statistics with a momentum suited to a few dozen images per epoch;
* an image size, epoch count and batch size sized for the profile's time budget on a 2-core CPU;
* early stopping on validation loss (the checkpoint keeps the best epoch);
* the shortcut-removing steps of :mod:`hello_dl.augment` added to the training augmentation;
* each image normalised to its own mean and spread inside the model, so its contrast is no cue.

The sizes were measured with ``benchmarks/from_scratch.py``; the figures are in
``docs/from_scratch.md``. This module imports nothing of the kit (settings imports it).
"""

from __future__ import annotations

from typing import Any

#: Shared by every profile when there are no pretrained weights.
FROM_SCRATCH_COMMON: dict[str, Any] = {
    "warmup_epochs": 0,  # a frozen random base teaches the head nothing
    "fine_tune_from": "",  # every layer trainable from the first epoch
    "learning_rate": 1e-3,
    "finetune_learning_rate": 1e-3,
    "bn_momentum_from_scratch": 0.9,
    "early_stopping_patience": 8,
    "early_stopping_start_epoch": 4,  # the first epochs' validation loss jumps while BatchNorm settles
    "shortcut_augmentation": True,
    # Each image scaled to its own mean and spread inside the model: a flatter or brighter display
    # (another viewer, another scanner) then reaches the network as the same input.
    "normalize_each_image": True,
}

#: Per profile: what fits its time budget. Conference: with 12 epochs at 128 px `make run` takes no
#: longer than the two-phase recipe at 299 px (measured 4 min 41 s against 4 min 53 s; the training
#: step 148 s against 126 s, the later notebooks quicker; 16 epochs took 198 s of training). Paper:
#: 150 px for up to 25 epochs, well under its own 20 fully trainable epochs at 299 px. Smoke:
#: seconds, for the tests.
FROM_SCRATCH_SIZES: dict[str, dict[str, Any]] = {
    "paper": {"image_size": 150, "finetune_epochs": 25, "batch_size": 8},
    "conference": {"image_size": 128, "finetune_epochs": 12, "batch_size": 16},
    "smoke": {"image_size": 75, "finetune_epochs": 2, "batch_size": 16},
}

#: How a setting's source reads when this module set it.
SOURCE = "recipe:from-scratch"


def is_from_scratch(weights: Any) -> bool:
    """True when ``weights`` means no pretrained weights (``none`` or empty)."""
    return str(weights).strip().lower() in {"none", ""}


def from_scratch_values(profile: str) -> dict[str, Any]:
    """The knobs the from-scratch recipe sets for ``profile`` (common part + the profile's sizes)."""
    return {**FROM_SCRATCH_COMMON, **FROM_SCRATCH_SIZES.get(profile, FROM_SCRATCH_SIZES["conference"])}


def describe(settings: Any) -> str:
    """One plain line: which recipe these settings train with (for the settings printout, summary, card)."""
    if is_from_scratch(settings.weights):
        augmentation = ("shortcut-removing augmentation on" if settings.augment and settings.shortcut_augmentation
                        else "augmentation off" if not settings.augment else "shortcut-removing augmentation off")
        stopping = (f"early stopping on validation loss after {settings.early_stopping_patience} epochs without "
                    "improvement" if settings.early_stopping_patience > 0 else "no early stopping")
        return (f"Recipe: from scratch, because there are no pretrained weights: every layer trains from the first "
                f"epoch (no frozen warm-up), {settings.image_size} px, up to {settings.total_epochs} epochs in batches "
                f"of {settings.batch_size}, BatchNorm momentum {settings.bn_momentum_from_scratch:g}, {stopping} "
                f"(best epoch kept), {augmentation}"
                + (", each image normalised to its own mean and spread" if settings.normalize_each_image else "")
                + ".")
    where = f"the base from layer {settings.fine_tune_from} up" if settings.fine_tune_from else "the whole base"
    phases = []
    if settings.warmup_epochs:
        phases.append(f"{settings.warmup_epochs} warm-up epoch(s) with the base frozen")
    if settings.finetune_epochs:
        phases.append(f"{settings.finetune_epochs} fine-tuning epoch(s) of {where}")
    return ("Recipe: transfer learning from pretrained weights: " + ", then ".join(phases)
            + f", {settings.image_size} px; BatchNorm keeps its pretrained statistics.")


__all__ = ["FROM_SCRATCH_COMMON", "FROM_SCRATCH_SIZES", "SOURCE", "describe", "from_scratch_values",
           "is_from_scratch"]
