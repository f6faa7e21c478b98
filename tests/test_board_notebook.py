"""Notebook 05's board section, run headless (issue 16): an empty board, reference runs only, a full room.

Each case executes the real notebook in a fresh kernel under the smoke profile, as ``hello-dl run``
does, against the shared dataset; the runs are folders written as training writes them
(tests/board_helpers.py), so no model is trained here.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from board_helpers import write_run

from hello_dl import groups, reference, runner, runs
from hello_dl.room import board, records
from hello_dl.settings import load_settings

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "05_training_curves.ipynb"


def _play(tmp_path: Path, shared_dataset: Path, fetched_dataset: Path, *, participant: str = "",
          board_folder: Path | None = None) -> tuple[str, list]:
    """Run notebook 05 headless; returns everything it printed and its executed cells."""
    settings = load_settings("smoke", environ={}, data_source=str(shared_dataset), data_dir=str(fetched_dataset),
                             output_dir=str(tmp_path / "outputs"), participant=participant or None)
    env = runner.kernel_environment(settings)
    if board_folder is not None:
        env[board.BOARD_VARIABLE] = str(board_folder)
    executed, result = runner.run_notebook(NOTEBOOK, tmp_path / "executed" / NOTEBOOK.name, env, timeout=600,
                                           echo=lambda line: None, kernel_log=tmp_path / "kernel.log")
    assert result.ok, result.error
    cells = [c for c in executed.cells if c.cell_type == "code"]
    printed = "".join(o.get("text", "") for c in cells for o in c.outputs)
    return printed, cells


def _board_figure_drawn(cells) -> bool:
    figure = next(c for c in cells if "board.figure()" in c.source)
    return any("image/png" in o.get("data", {}) for o in figure.outputs)


def _references(tmp_path: Path) -> dict[str, Path]:
    settings = load_settings("smoke", environ={}, output_dir=str(tmp_path / "outputs"))
    return {g: write_run(reference.reference_dir(settings, g), group=g, train_loss=0.2, val_loss=0.3)
            for g in groups.GROUPS}


@pytest.mark.slow  # executes notebook 05 (about a minute)
def test_notebook_05_with_an_empty_board(shared_dataset, fetched_dataset, tmp_path):
    write_run(tmp_path / "outputs", participant="")  # a run of nobody's group: it cannot join the board
    printed, cells = _play(tmp_path, shared_dataset, fetched_dataset)
    assert "0 participant run(s) so far: 1A 0, 1B 0, 2A 0, 2B 0" in printed
    assert "belongs to no experiment group" in printed and "No reference runs yet" in printed
    assert "no interval yet" in printed  # the reading says what an empty board cannot show
    assert _board_figure_drawn(cells)


@pytest.mark.slow  # executes notebook 05 (about a minute)
def test_notebook_05_with_reference_runs_only(shared_dataset, fetched_dataset, tmp_path):
    _references(tmp_path)
    write_run(tmp_path / "outputs", group="1B")  # a group card, no seat: its run is still the room's
    printed, cells = _play(tmp_path, shared_dataset, fetched_dataset)
    assert "Reference runs (the instructor's): 1A, 1B, 2A, 2B." in printed
    assert "1 participant run(s) so far: 1A 0, 1B 1, 2A 0, 2B 0" in printed
    assert _board_figure_drawn(cells)


@pytest.mark.slow  # executes notebook 05 (about a minute)
def test_notebook_05_with_a_full_room(shared_dataset, fetched_dataset, tmp_path):
    _references(tmp_path)
    collected = tmp_path / "shared drive"  # HELLO_DL_BOARD: the room's folder everybody writes into
    for seat in range(1, 13):
        if seat != 7:
            record = board.record_of_run(runs.open_run(write_run(tmp_path / "laptops" / str(seat),
                                                                 participant=str(seat), val_loss=0.3 + 0.02 * seat)))
            records.write_record(record, collected)
    write_run(tmp_path / "outputs", participant="7")
    printed, cells = _play(tmp_path, shared_dataset, fetched_dataset, participant="7", board_folder=collected)
    assert "12 participant run(s) so far: 1A 3, 1B 3, 2A 3, 2B 3" in printed
    assert "Your run (seat 7, group 2A" in printed and f"written to {collected / '7.json'}" in printed
    assert "With 3 runs per group" in printed
    assert _board_figure_drawn(cells)
    assert nbformat.read(NOTEBOOK, as_version=4).cells[0].cell_type == "markdown"  # the source stays clean
