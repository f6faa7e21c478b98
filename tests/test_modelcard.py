"""The model card: one page per run, written before FINISHED, with every set's numbers and intervals."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import pytest

from hello_dl import evaluate, modelcard, runs
from hello_dl.dataset import summarize
from hello_dl.settings import load_settings


@pytest.fixture(scope="module")
def card_parts(fetched_dataset):
    settings = load_settings("smoke", environ={}, data_dir=str(fetched_dataset))
    evaluations = {
        "train": evaluate.score([0] * 33 + [1] * 32, [0.2] * 33 + [0.9] * 30 + [0.1] * 2, settings, split="train"),
        "val": evaluate.score([0] * 5 + [1] * 5, [0.1, 0.2, 0.3, 0.1, 0.2, 0.8, 0.9, 0.7, 0.6, 0.95], settings),
        "test": evaluate.score([1, 0], [0.7, 0.4], settings, split="test"),
    }
    evaluations["test"].labels_from = "file names"
    metrics = {"best_epoch": 2, "epochs_run": 2, "from_scratch": True}
    return settings, evaluations, metrics, summarize(settings)


def test_card_has_every_section_in_order_and_fits_a_page(card_parts, tmp_path):
    settings, evaluations, metrics, summary = card_parts
    text = modelcard.build_model_card(tmp_path / "20250101-090000_smoke", settings, metrics, evaluations, summary)
    titles = re.findall(r"^## (.+)$", text, re.MULTILINE)
    assert titles == list(modelcard.SECTIONS)
    assert text.startswith("# Model card: 20250101-090000_smoke")
    assert "**Teaching only, not for clinical use.**" in text
    assert len(text.splitlines()) <= 70 and len(text.split()) <= 900  # one page a resident can read


def test_card_names_the_data_quirks_and_every_set_with_its_interval(card_parts, tmp_path):
    settings, evaluations, metrics, summary = card_parts
    shortcut = SimpleNamespace(accuracy=0.92)
    text = modelcard.build_model_card(tmp_path / "run", settings, metrics, evaluations, summary, shortcut=shortcut)
    data = text.split("## Data", 1)[1].split("## Split", 1)[0]
    assert "Training 65 (33 chest, 32 abdomen)" in data and "validation 10 (5 chest, 5 abdomen; 9 distinct)" in data
    assert "identical files (within VAL)" in data and "(1).png" in data  # the duplicate, by name
    assert "512 x 512" in data and "92%" in data and "journal" in data  # size shortcut and journal figures
    results = text.split("## Results", 1)[1].split("## Stress test", 1)[0]
    rows = [line for line in results.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [row.split(" | ")[0] for row in rows] == ["| training", "| validation", "| TEST (labels from file names)"]
    for row, evaluation in zip(rows, evaluations.values()):
        assert str(evaluation.correct) in row and str(evaluation.sensitivity) in row
        assert str(evaluation.specificity) in row and str(evaluation.auc_estimate) in row
        assert row.count("95% CI") == 4
    assert "89 % training and 100 % validation" in results  # the paper's own numbers beside
    assert "chose the kept epoch" in results and "two images" in results  # roles: validation chooses, TEST reports
    assert "from scratch" in text.split("## Recipe and weights", 1)[1].split("## Results")[0]


def test_card_carries_the_stress_test_result(card_parts, tmp_path):
    settings, evaluations, metrics, summary = card_parts
    without = modelcard.build_model_card(tmp_path / "run", settings, metrics, evaluations, summary)
    assert "Not run for this card" in without.split("## Stress test", 1)[1]
    stress = SimpleNamespace(summary_line=lambda: "Stress test on 11 images: the worst change flipped 2 of 11.")
    text = modelcard.build_model_card(tmp_path / "run", settings, metrics, evaluations, summary, stress=stress)
    assert "the worst change flipped 2 of 11" in text.split("## Stress test", 1)[1].split("## Limitations")[0]


def test_show_reads_the_card_and_names_a_run_without_one(card_parts, tmp_path):
    settings, evaluations, metrics, summary = card_parts
    folder = tmp_path / "run"
    path = modelcard.write_model_card(folder, settings, metrics, evaluations, summary)
    assert path == folder / runs.MODEL_CARD and not list(folder.glob(".*partial*"))
    card = modelcard.show(SimpleNamespace(folder=folder))
    assert card._repr_markdown_() == path.read_text() and str(card).startswith("# Model card: run")
    older = modelcard.show(SimpleNamespace(folder=tmp_path))  # a run from before cards: the lesson goes on
    assert "has no model_card.md" in older.text and "notebook 04" in older.text


@pytest.mark.slow
def test_a_finished_run_has_a_complete_card_written_before_its_marker(smoke_run):
    folder = smoke_run.run_dir
    card = folder / runs.MODEL_CARD
    assert card.is_file()
    assert card.stat().st_mtime_ns <= (folder / runs.FINISHED).stat().st_mtime_ns  # FINISHED stays last
    text = card.read_text()
    assert re.findall(r"^## (.+)$", text, re.MULTILINE) == list(modelcard.SECTIONS)
    assert "| training |" in text and "| validation |" in text and "| TEST (labels from file names) |" in text
    metrics = json.loads((folder / runs.METRICS).read_text())
    for split in ("train", "val", "test"):
        assert f"{split}_accuracy_ci95_low" in metrics and f"{split}_auc_ci95_high" in metrics, split
        low, value, high = (metrics[f"{split}_accuracy{end}"] for end in ("_ci95_low", "", "_ci95_high"))
        assert 0.0 <= low <= value <= high <= 1.0
    assert f"{metrics['val_accuracy']:.0%}" in text and len(metrics["headlines"]) == 3
    # The stress test ran on the run's own validation and TEST images; the card and metrics.json say what it found.
    stress_section = text.split("## Stress test", 1)[1].split("## Limitations", 1)[0]
    assert "Not run for this card" not in stress_section and metrics["stress_test"]["summary"] in stress_section
    assert 0.0 <= metrics["stress_test"]["worst_flip_rate"] <= 1.0
