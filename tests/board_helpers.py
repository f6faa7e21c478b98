"""Run folders and records for the board tests, written as the kit writes them (runs.create, write_json).

A finished run folder here holds what training leaves for the board: settings.json (from
runs.create), history.json, metrics.json, evaluation.json and the FINISHED marker. The numbers are
chosen per run, so a test knows each run's gap between training and validation.
"""

from __future__ import annotations

from pathlib import Path

from hello_dl import runs
from hello_dl.settings import load_settings

CLASSES = ("chest", "abdomen")


def write_run(output_dir: Path, *, participant: str = "", group: str = "", train_loss: float = 0.2,
              val_loss: float = 0.4, correct: int = 9, epochs: int = 3, finished: bool = True,
              profile: str = "smoke") -> Path:
    """A run folder of ``participant`` (or a group card) whose last epoch has the given losses."""
    settings = load_settings(profile, environ={}, output_dir=str(output_dir), participant=participant or None,
                             experiment_group=group or None)
    folder = runs.create(settings)
    history = {
        "epoch": list(range(1, epochs + 1)),
        "phase": [1] * (epochs - 1) + [2],
        "loss": [train_loss + 0.1 * (epochs - e) for e in range(1, epochs + 1)],
        "accuracy": [0.6 + 0.1 * e for e in range(1, epochs + 1)],
        "val_loss": [val_loss + 0.05 * (epochs - e) for e in range(1, epochs + 1)],
        "val_accuracy": [correct / 10] * epochs,
    }
    runs.write_json(folder / runs.HISTORY_JSON, history)
    truth = [0] * 5 + [1] * 5
    scores = [0.1 + 0.05 * i for i in range(5)] + [0.6 + 0.05 * i for i in range(5)]
    wrong = 10 - correct
    scores = [1 - s if i < wrong else s for i, s in enumerate(scores)]  # the first `wrong` images misread
    predictions = [{"file": f"VAL/{CLASSES[t]}_{i}.png", "probability": s, "true": CLASSES[t],
                    "predicted": CLASSES[int(s >= 0.5)]} for i, (t, s) in enumerate(zip(truth, scores))]
    runs.write_json(folder / runs.EVALUATION, {"split": "val", "images": 10, "predictions": predictions})
    runs.write_json(folder / runs.METRICS, {
        "val_loss": val_loss, "val_accuracy": correct / 10, "val_auc": None, "best_epoch": epochs,
        "epochs_run": epochs, "train_images": 65, "val_images": 10, "experiment_group": settings.experiment_group,
        "seed": settings.seed, "profile": settings.profile})
    if finished:
        runs.mark_finished(folder)
    return folder
