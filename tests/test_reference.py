"""The instructor's reference runs (hello_dl.reference, `hello-dl reference`) and the thin scripts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hello_dl import cli, reference, runs
from hello_dl.settings import load_settings

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def test_a_groups_reference_settings_are_that_groups_recipe(tmp_path):
    yours = load_settings("smoke", environ={}, output_dir=str(tmp_path), experiment_group="1A", image_size=80)
    chosen = reference.reference_group_settings(yours, "2b")
    assert (chosen.experiment_group, chosen.augment, chosen.dropout) == ("2B", False, 0.0)
    assert chosen.sources["augment"] == chosen.sources["dropout"] == "group:2B"
    assert chosen.output_dir == tmp_path / "reference" / "smoke" / "2B" and chosen.image_size == 80


def _script(name: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("HELLO_DL_")}
    environment.update({"HELLO_DL_HOME": str(PROJECT_ROOT), **(env or {})})
    return subprocess.run([sys.executable, str(PROJECT_ROOT / "scripts" / name), *args], capture_output=True,
                          text=True, env=environment, timeout=300)


def test_the_scripts_are_the_commands_they_name():
    for name, command in (("reference_curves.py", "reference"), ("fetch_data.py", "fetch")):
        done = _script(name, "--help")
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"usage: hello-dl {command} "), (name, done.stdout[:200])
    assert "--groups" in _script("reference_curves.py", "--help").stdout


def test_prefetch_script_only_translates_its_options_for_hello_dl_fetch():
    sys.path.insert(0, str(PROJECT_ROOT / "scripts"))
    try:
        import prefetch
    finally:
        sys.path.pop(0)
    assert prefetch.fetch_arguments([]) == ["fetch", "--weights"]
    assert prefetch.fetch_arguments(["--data-source", "a.zip", "--data-dir", "d", "--skip-weights"]) == \
        ["fetch", "--data-dir", "d", "--source", "a.zip"]
    assert prefetch.fetch_arguments(["--skip-data", "--profile", "smoke", "--set", "weights=x.h5"]) == \
        ["fetch", "--profile", "smoke", "--set", "weights=x.h5", "--weights-only"]
    assert prefetch.fetch_arguments(["--skip-data", "--skip-weights"]) is None


def test_prefetch_script_fetches_the_data_and_the_weights(shared_dataset, inception_notop_h5, tmp_path, untouched):
    untouched(shared_dataset)
    done = _script("prefetch.py", "--data-source", str(shared_dataset), "--data-dir", str(tmp_path / "data"),
                   "--set", f"weights={inception_notop_h5}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"Data ready and verified in {tmp_path / 'data'}" in done.stdout
    assert f"Pretrained weights ready: {inception_notop_h5}" in done.stdout
    missing = _script("prefetch.py", "--skip-data", "--set", f"weights={tmp_path / 'no.h5'}")
    assert missing.returncode == 2 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr


@pytest.mark.slow
def test_hello_dl_reference_trains_a_group_where_notebook_05_finds_it(shared_dataset, tmp_path, monkeypatch,
                                                                      capsys):
    monkeypatch.setenv("HELLO_DL_DATA_SOURCE", str(shared_dataset))
    monkeypatch.setenv("HELLO_DL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HELLO_DL_OUTPUT_DIR", str(tmp_path / "outputs"))
    # One group, and one epoch (the smoke profile trains from scratch: one phase), to keep the test
    # short; the path is the same for four.
    code = cli.main(["reference", "--profile", "smoke", "--groups", "2b", "--set", "finetune_epochs=1", "--quiet"])
    printed = capsys.readouterr().out
    assert code == 0, printed[-2000:]

    settings = load_settings("smoke", environ={}, data_dir=str(tmp_path / "data"),
                             output_dir=str(tmp_path / "outputs"))
    found = reference.reference_runs(settings)
    assert list(found) == ["2B"]
    folder = found["2B"]
    assert folder.parent == tmp_path / "outputs" / "reference" / "smoke" / "2B" and runs.is_finished(folder)
    saved = json.loads((folder / runs.SETTINGS).read_text())
    assert saved["settings"]["experiment_group"] == "2B" and saved["settings"]["augment"] is False
    assert saved["settings"]["dropout"] == 0.0 and saved["sources"]["augment"] == "group:2B"
    assert len(runs.load_history(folder)["val_loss"]) == 1
    assert (reference.reference_dir(settings) / reference.COMPARISON_FIGURE).is_file()
    assert f"group 2B: {folder}" in printed

    status = reference.reference_status(settings)
    assert "exist for 2B" in status and "missing: 1A, 1B, 2A" in status and "hello-dl reference" in status
    # Notebook 05 compares "your run" with the references; when the reference run stands in for yours
    # (the catch-up path) it is shown once, under its true name.
    yours = runs.open_run(folder, settings)
    curves = reference.curves_to_compare(yours)
    assert list(curves) == ["group 2B (reference; not your own run)"]
    assert curves["group 2B (reference; not your own run)"] == runs.load_history(folder)
    # Another profile has its own reference folder: nothing is mixed up.
    conference = load_settings("conference", environ={}, output_dir=str(tmp_path / "outputs"))
    assert reference.reference_runs(conference) == {}
    assert "No reference curves" in reference.reference_status(conference)
