"""`hello-dl train`, `evaluate` and `predict` through hello_dl.cli.main, on the smoke profile."""

from __future__ import annotations

import json
import shutil

import pytest

from hello_dl import cli

pytestmark = pytest.mark.slow  # uses the shared trained run


def _sets(smoke_run) -> list[str]:
    return smoke_run.argv[1:]  # --profile smoke and every --set the training run used


def test_train_prints_the_run_folder_and_writes_metrics(smoke_run):
    assert smoke_run.exit_code == 0, smoke_run.output
    assert len(smoke_run.runs) == 1
    assert f"Run folder: {smoke_run.run_dir}" in smoke_run.output.splitlines()
    assert "from scratch" in smoke_run.output and "Phase 1" in smoke_run.output and "Phase 2" in smoke_run.output
    metrics = json.loads((smoke_run.run_dir / "metrics.json").read_text())
    for key in ("val_loss", "val_accuracy", "val_auc", "timings", "best_epoch"):
        assert key in metrics
    assert metrics["timings"]["total_seconds"] > 0


def test_evaluate_recomputes_a_saved_run(smoke_run, tmp_path, capsys):
    run_copy = tmp_path / smoke_run.run_dir.name
    shutil.copytree(smoke_run.run_dir, run_copy, ignore=shutil.ignore_patterns("figures", "evaluation.json"))
    assert cli.main(["evaluate", str(run_copy), *_sets(smoke_run)]) == 0
    lines = capsys.readouterr().out.splitlines()
    metrics = json.loads((smoke_run.run_dir / "metrics.json").read_text())
    accuracy = next(line for line in lines if line.startswith("accuracy: "))
    assert float(accuracy.split(": ")[1]) == pytest.approx(metrics["val_accuracy"], abs=1e-4)
    assert any(line.startswith("auc: ") for line in lines)
    assert (run_copy / "evaluation.json").is_file() and (run_copy / "figures" / "roc.png").is_file()


def test_predict_uses_the_latest_run_and_prints_one_line_per_image(smoke_run, capsys):
    test_folder = smoke_run.settings.data_dir / "TEST"
    assert cli.main(["predict", str(test_folder), *_sets(smoke_run)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    for line, name in zip(lines, ("abd2.png", "chest2.png")):
        file, probability, display = line.split("\t")
        assert file.endswith(name) and 0.0 <= float(probability) <= 1.0 and display in ("chest", "abdomen")

    assert cli.main(["predict", str(test_folder / "chest2.png"), "--run", str(smoke_run.run_dir),
                     *_sets(smoke_run)]) == 0
    single = capsys.readouterr().out.strip().splitlines()
    assert single == [lines[1]]


def test_predict_errors_are_plain_messages(smoke_run, tmp_path, capsys):
    assert cli.main(["predict", str(tmp_path / "missing.png"), "--run", str(smoke_run.run_dir),
                     *_sets(smoke_run)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli.main(["evaluate", str(tmp_path), *_sets(smoke_run)]) == 2
    assert "not a finished run folder" in capsys.readouterr().err
