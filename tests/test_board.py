"""The room's results board (issue 16): records of runs, pooled from a folder, drawn per group.

Run folders are written as the kit writes them (tests/board_helpers.py), records go through the
real folder board, and the figure is checked for what a participant must see in it: every run,
each group's mean and interval, the reference series, and their own run.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from board_helpers import write_run

from hello_dl import groups, runs, stats
from hello_dl.room import board, records
from hello_dl.settings import load_settings

# Four groups' gaps (validation loss − training loss at the last epoch) for seats 1..12:
# seat n is in group GROUPS[(n - 1) % 4], so each group gets three runs.
LOSSES = {1: (0.2, 0.3), 2: (0.1, 0.5), 3: (0.3, 0.35), 4: (0.05, 0.6)}


def _seat_losses(seat: int) -> tuple[float, float]:
    train, val = LOSSES[(seat - 1) % 4 + 1]
    return train, val + 0.01 * seat


@pytest.fixture
def room(tmp_path):
    """Twelve finished participant runs (three per group) and the instructor's four reference runs."""
    outputs = tmp_path / "outputs"
    folders = {}
    for seat in range(1, 13):
        train, val = _seat_losses(seat)
        folders[seat] = write_run(outputs / f"laptop-{seat}", participant=str(seat), train_loss=train, val_loss=val)
    references = {g: write_run(tmp_path / "reference" / g, group=g, train_loss=0.2, val_loss=0.25) for g in groups.GROUPS}
    return folders, references


def _settings(folder, **extra):
    return load_settings("smoke", environ={}, output_dir=str(folder), **extra)


# --- a run's record -------------------------------------------------------------------------------------
def test_a_finished_runs_record_holds_seat_group_seed_curves_and_metrics_with_intervals(tmp_path):
    folder = write_run(tmp_path, participant="7", train_loss=0.2, val_loss=0.5, correct=9)
    record = board.record_of_run(runs.open_run(folder))
    settings = _settings(tmp_path, participant="7")
    assert (record["kind"], record["seat"], record["group"]) == ("participant", "7", "2A")
    assert record["seed"] == settings.seed == groups.seat_seed("7", 42)  # the seat's own seed
    assert record["history"]["val_loss"][-1] == pytest.approx(0.5) and len(record["history"]["loss"]) == 3
    accuracy = record["metrics"]["val_accuracy"]
    assert (accuracy["count"], accuracy["total"]) == (9, 10)
    assert (accuracy["ci95_low"], accuracy["ci95_high"]) == pytest.approx(stats.wilson_interval(9, 10))
    auc = record["metrics"]["val_auc"]
    assert auc["ci95_low"] <= auc["value"] <= auc["ci95_high"] and auc["method"]
    assert record["recipe"]["image_size"] == 75 and record["recipe"]["dropout"] == 0.5
    assert records.gap(record) == pytest.approx(0.3)
    assert len(json.dumps(record)) < 4000  # one small file
    assert records.parse(json.dumps(record), "a test") == record


def test_on_the_room_server_the_record_is_the_hub_users(tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_USER", "seat-07")
    record = board.record_of_run(runs.open_run(write_run(tmp_path, participant="7")))
    assert record["seat"] == "seat-07" and records.record_key(record) == "seat-07"


def test_an_unfinished_run_or_one_without_a_group_is_not_recorded_and_says_why(tmp_path):
    unfinished = runs.open_run(write_run(tmp_path / "a", participant="3", finished=False))
    with pytest.raises(board.BoardError, match="has not finished.*notebook 04 run to the end"):
        board.record_of_run(unfinished)
    without_group = runs.open_run(write_run(tmp_path / "b"))
    with pytest.raises(board.BoardError, match="no experiment group.*PARTICIPANT"):
        board.record_of_run(without_group)
    key, said = board.share(without_group, _settings(tmp_path / "b"))
    assert key is None and "no experiment group" in said and not (tmp_path / "b" / board.FOLDER).exists()


def test_the_instructors_reference_run_is_never_shared_as_a_participants_own(tmp_path):
    reference = write_run(tmp_path / "reference" / "1B", group="1B")
    key, said = board.share(runs.open_run(reference), _settings(tmp_path), references={"1B": reference})
    assert key is None and "reference run, not your own" in said
    assert not (tmp_path / board.FOLDER).exists()


# --- pooling a folder -----------------------------------------------------------------------------------------
def test_the_board_pools_every_record_of_a_folder_into_one_figure(room, tmp_path):
    folders, references = room
    collected = tmp_path / "collected"  # the instructor's folder of the files handed in
    for seat, folder in folders.items():
        key, said = board.share(runs.open_run(folder), _settings(folder.parent), where=collected)
        assert key == str(seat) and str(collected / f"{seat}.json") in said
    pooled = board.pool(_settings(tmp_path), references=references, where=collected, own="7")
    assert pooled.counts == {"1A": 3, "1B": 3, "2A": 3, "2B": 3}
    assert [len(pooled.references(g)) for g in groups.GROUPS] == [1, 1, 1, 1]
    expected = {g: sorted(_seat_losses(s)[1] - _seat_losses(s)[0] for s in folders if groups.assign_group(s) == g)
                for g in groups.GROUPS}
    for group, values in pooled.values().items():
        assert sorted(values) == pytest.approx(expected[group]), group
    assert "12 participant run(s) so far: 1A 3, 1B 3, 2A 3, 2B 3" in pooled.summary()
    assert "Your run (seat 7, group 2A" in pooled.summary()

    figure = pooled.figure()
    axis = figure.axes[0]
    marks = {gid: [c for c in axis.collections if c.get_gid() == gid] for gid in ("runs", "reference", "yours")}
    assert sum(len(c.get_offsets()) for c in marks["runs"]) == 12  # every run is a dot
    assert sum(len(c.get_offsets()) for c in marks["reference"]) == 4
    assert list(marks["yours"][0].get_offsets()[0]) == pytest.approx([2, _seat_losses(7)[1] - _seat_losses(7)[0]])
    labels = [t.get_text() for t in axis.get_xticklabels()]
    assert [label.splitlines()[0] for label in labels] == list(groups.GROUPS)
    assert all(label.endswith("3 runs") for label in labels)
    legend = [t.get_text() for t in axis.get_legend().get_texts()]
    assert "reference (the instructor's run)" in legend and "95 % interval of the mean" in legend


def test_each_groups_mean_and_interval_are_those_of_its_runs(room, tmp_path):
    folders, _ = room
    for folder in folders.values():
        board.share(runs.open_run(folder), _settings(folder.parent), where=tmp_path / "c")
    values = board.pool(_settings(tmp_path), where=tmp_path / "c").values()["1B"]
    estimate = board.mean_interval(values)
    sample = np.asarray(values)
    from scipy import stats as scipy_stats

    low, high = scipy_stats.t.interval(0.95, len(sample) - 1, loc=sample.mean(), scale=scipy_stats.sem(sample))
    assert (estimate.value, estimate.low, estimate.high) == pytest.approx((sample.mean(), low, high))
    one = board.mean_interval([0.3])
    assert one.value == 0.3 and math.isnan(one.low) and board.mean_interval([]) is None


def test_an_empty_room_with_reference_runs_still_shows_all_four_groups(room, tmp_path):
    _, references = room
    empty = board.pool(_settings(tmp_path), references=references, where=tmp_path / "nobody-yet")
    assert empty.counts == {g: 0 for g in groups.GROUPS}
    axis = empty.figure().axes[0]
    assert sum(len(c.get_offsets()) for c in axis.collections if c.get_gid() == "reference") == 4
    assert not [c for c in axis.collections if c.get_gid() in ("runs", "yours")]  # nobody's runs yet
    assert [t.get_text().splitlines()[-1] for t in axis.get_xticklabels()] == ["0 runs"] * 4
    assert "no group has two runs of its own, so there is no interval yet" in empty.reading()
    assert "Reference runs (the instructor's): 1A, 1B, 2A, 2B." in empty.summary()


def test_a_damaged_record_file_is_skipped_with_a_note_not_a_crash(room, tmp_path):
    folders, _ = room
    collected = tmp_path / "collected"
    for folder in list(folders.values())[:3]:
        board.share(runs.open_run(folder), _settings(folder.parent), where=collected)
    good = json.loads((collected / "1.json").read_text())
    (collected / "truncated.json").write_text((collected / "2.json").read_text()[:300])
    (collected / "empty.json").write_text("")
    (collected / "nan.json").write_text(json.dumps({**good, "seat": "99"}).replace("0.31", "NaN", 1))
    (collected / "other.json").write_text(json.dumps({"cells": [], "nbformat": 4}))
    (collected / "huge.json").write_bytes(b" " * (records.MAX_BYTES + 1))
    (collected / "wrong-group.json").write_text(json.dumps({**good, "seat": "98", "group": "3C"}))
    (collected / ".1.json.abc.partial").write_text("{")  # a write in progress is not even looked at
    pooled = board.pool(_settings(tmp_path), where=collected)
    assert pooled.counts == {"1A": 1, "1B": 1, "2A": 1, "2B": 0}
    notes = "\n".join(pooled.notes)
    for name in ("truncated.json", "empty.json", "nan.json", "other.json", "huge.json", "wrong-group.json"):
        assert str(collected / name) in notes, name
    assert len(pooled.notes) == 6 and notes.count("Skipped") == 6
    assert "3C" in notes and "NaN" in notes and "export it again" in notes.lower()
    assert str(collected / "truncated.json") in pooled.summary()  # the participant and instructor see it


def test_a_seat_that_exported_twice_counts_once_with_its_newest_run(tmp_path):
    first = write_run(tmp_path / "one", participant="5", train_loss=0.2, val_loss=0.9)
    again = write_run(tmp_path / "two", participant="5", train_loss=0.2, val_loss=0.3)
    collected = tmp_path / "collected"
    older = board.record_of_run(runs.open_run(first))
    newer = {**board.record_of_run(runs.open_run(again)), "created": "2999-01-01T00:00:00Z"}
    (collected / "copy-from-usb").mkdir(parents=True)
    records.write_record(newer, collected)
    (collected / "5 (1).json").write_text(json.dumps(older))  # the same seat, a copy of an older export
    pooled = board.pool(_settings(tmp_path), where=collected)
    assert pooled.counts["1A"] == 1 and pooled.values()["1A"] == [pytest.approx(0.1)]


def test_runs_of_different_recipes_are_pooled_but_the_board_says_so(tmp_path):
    collected = tmp_path / "collected"
    for seat, size in (("1", 75), ("5", 150)):
        record = board.record_of_run(runs.open_run(write_run(tmp_path / seat, participant=seat)))
        record["recipe"]["image_size"] = size
        records.write_record(record, collected)
    summary = board.pool(_settings(tmp_path), where=collected).summary()
    assert "Not every run used the same recipe (image size 150, 75)" in summary


def test_the_board_folder_is_in_the_outputs_unless_hello_dl_board_names_another(tmp_path, monkeypatch):
    settings = _settings(tmp_path / "outputs")
    assert board.locate(settings) == board.FolderBoard(tmp_path / "outputs" / "board")
    monkeypatch.setenv(board.BOARD_VARIABLE, str(tmp_path / "shared drive"))
    assert board.locate(settings) == board.FolderBoard(tmp_path / "shared drive")
    monkeypatch.setenv(board.BOARD_VARIABLE, "http://127.0.0.1:9/services/room-board")
    with pytest.raises(board.BoardError, match="needs a hub token"):
        board.locate(settings)
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "abc")
    hub = board.locate(settings)
    assert isinstance(hub, board.HubBoard) and hub.url.endswith("/room-board/") and "abc" not in repr(hub)
    assert board.local_folder(settings) == tmp_path / "outputs" / "board"  # the copy's place on a hub


def test_a_board_that_does_not_answer_says_so_plainly(tmp_path):
    settings = _settings(tmp_path)
    with pytest.raises(board.BoardError, match="does not answer.*Run the cell again"):
        board.pool(settings, where="http://127.0.0.1:9/services/room-board/", token="t")


# --- the instructor's view ---------------------------------------------------------------------------------------
def test_the_instructors_view_writes_a_figure_and_a_page_that_reloads_itself(room, tmp_path):
    folders, references = room
    for folder in folders.values():
        board.share(runs.open_run(folder), _settings(folder.parent), where=tmp_path / "c")
    said = []
    shown = board.watch(_settings(tmp_path), tmp_path / "view", references=references, where=tmp_path / "c",
                        every=0.05, rounds=2, echo=said.append)
    assert shown.counts["2B"] == 3 and len([line for line in said if "12 run(s)" in line]) == 2
    png, page = tmp_path / "view" / board.VIEW_FIGURE, (tmp_path / "view" / board.VIEW_PAGE).read_text()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert 'http-equiv="refresh"' in page and board.VIEW_FIGURE in page and "What this shows" in page
    assert "<td>2B</td>" in page and "Group 2B: augmentation OFF, dropout OFF." in page


# --- the command line -----------------------------------------------------------------------------------------------
def test_hello_dl_room_export_writes_one_small_file_and_a_rerun_replaces_it(tmp_path, monkeypatch, capsys):
    from hello_dl import cli

    outputs = tmp_path / "outputs"
    monkeypatch.setenv("HELLO_DL_OUTPUT_DIR", str(outputs))
    assert cli.main(["room", "export"]) == 2
    assert "Run notebook 04_train first" in capsys.readouterr().err
    write_run(outputs, participant="12")
    for _ in range(2):
        assert cli.main(["room", "export", "--profile", "smoke", "--set", "participant=12"]) == 0
        printed = capsys.readouterr().out
        assert f"written to {outputs / board.FOLDER / '12.json'}" in printed and "Hand this file to the instructor" in printed
    assert [p.name for p in (outputs / board.FOLDER).iterdir()] == ["12.json"]
    assert records.read_folder(outputs / board.FOLDER).records["12"]["group"] == "2B"
    shared = tmp_path / "shared drive"
    assert cli.main(["room", "export", "--to", str(shared)]) == 0
    assert (shared / "12.json").is_file()


def test_hello_dl_room_board_shows_the_collected_folder(room, tmp_path, monkeypatch, capsys):
    from hello_dl import cli

    folders, _ = room
    collected = tmp_path / "collected"
    for folder in folders.values():
        board.share(runs.open_run(folder), _settings(folder.parent), where=collected)
    (collected / "broken.json").write_text("{")
    monkeypatch.setenv("HELLO_DL_OUTPUT_DIR", str(tmp_path / "instructor"))
    assert cli.main(["room", "board", "--folder", str(collected), "--out", str(tmp_path / "view")]) == 0
    printed = capsys.readouterr().out
    assert "12 run(s): 1A 3, 1B 3, 2A 3, 2B 3" in printed and f"Skipped {collected / 'broken.json'}" in printed
    assert (tmp_path / "view" / board.VIEW_FIGURE).is_file() and "Open " in printed
    assert cli.main(["room", "board", "--hub", "http://127.0.0.1:9/services/room-board/"]) == 2
    assert "needs a hub token" in capsys.readouterr().err
