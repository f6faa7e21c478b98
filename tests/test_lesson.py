"""The one setup call of every lesson, the seat typed once, the catch-up path and the training estimate."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import nbformat
import pytest

from hello_dl import groups, lesson, reference, runs
from hello_dl.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


@pytest.fixture
def room(tmp_path, fetched_dataset):
    """The environment of a participant's kernel: smoke profile, the fetched data, their own outputs folder."""
    return {"HELLO_DL_PROFILE": "smoke", "HELLO_DL_DATA_SOURCE": str(fetched_dataset),
            "HELLO_DL_DATA_DIR": str(fetched_dataset), "HELLO_DL_OUTPUT_DIR": str(tmp_path / "outputs"),
            "HELLO_DL_HOME": str(ROOT)}


def settings_of(env):
    return load_settings(environ=env)


# --- the seat ---------------------------------------------------------------------------------------
def test_a_seat_typed_once_is_remembered_in_the_outputs_folder(room):
    settings = settings_of(room)
    assert lesson.current_seat(settings, environ=room) is None
    seat = lesson.remember_seat(" 17 ", settings)
    path = lesson.seat_file(settings)
    assert path == settings.output_dir / "seat.json"
    saved = json.loads(path.read_text())
    assert saved["seat"] == "17" and datetime.fromisoformat(saved["saved_at"])
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # written atomically, nothing left over
    again = lesson.current_seat(settings, environ=room)
    assert again == seat and again.group == groups.assign_group("17") == "1A" and not again.is_group_card
    assert again.overrides() == {"participant": "17"}


def test_a_group_card_is_a_seat_too(room):
    settings = settings_of(room)
    lesson.remember_seat("2b", settings)
    seat = lesson.current_seat(settings, environ=room)
    assert seat.is_group_card and seat.group == "2B" and seat.overrides() == {"experiment_group": "2B"}
    assert "group card 2B" in seat.describe()


def test_the_instructors_variable_wins_over_the_typed_seat(room):
    settings = settings_of(room)
    lesson.remember_seat("17", settings)
    for name, value, group in (("HELLO_DL_PARTICIPANT", "6", "1B"), ("HELLO_DL_EXPERIMENT_GROUP", "2a", "2A")):
        env = {**room, name: value}
        seat = lesson.current_seat(settings, environ=env)
        assert seat.source == f"env:{name}" and seat.group == group and seat.overrides() == {}


def test_a_seat_is_kept_for_one_session_only(room):
    settings = settings_of(room)
    typed = datetime(2026, 3, 1, 9, 0)
    lesson.remember_seat("5", settings, now=typed)
    assert lesson.current_seat(settings, environ=room, now=typed + timedelta(hours=2)).text == "5"
    later = typed + timedelta(hours=lesson.SEAT_MEMORY_HOURS, minutes=1)
    assert lesson.current_seat(settings, environ=room, now=later) is None  # the next session on this laptop


def test_a_damaged_seat_file_is_as_good_as_none_and_an_empty_seat_is_refused(room):
    settings = settings_of(room)
    path = lesson.seat_file(settings)
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    assert lesson.current_seat(settings, environ=room) is None
    for bad in ("", "   ", "x" * 41):
        with pytest.raises(lesson.SeatError, match="seat"):
            lesson.remember_seat(bad, settings)
    assert lesson.forget_seat(settings) and not path.exists() and not lesson.forget_seat(settings)


# --- lesson.start -------------------------------------------------------------------------------------
def test_start_does_what_the_six_cells_did_and_says_it_in_a_few_lines(room):
    printed: list[str] = []
    opened = lesson.start("00", seat="7", echo=printed.append, environ=room)
    assert opened.settings.profile == "smoke" and opened.settings.experiment_group == "2A"  # 7 → 2A, dealt in turn
    assert opened.settings.sources["participant"] == "argument" and opened.settings.participant == "7"
    assert opened.data_dir == Path(room["HELLO_DL_DATA_DIR"]) and (opened.data_dir / "TRAIN").is_dir()
    text = "\n".join(printed)
    assert printed[0] == "Notebook 00 is ready." and len(printed) <= 6
    assert "seat 7 → Group 2A" in text and "Data: 77 images" in text and f"seed {opened.settings.seed}" in text
    assert "print(settings)" in text and "Running on the CPU" in text
    assert "setting  " not in text  # not the whole settings table: it says where to see it

    # A later notebook: nothing typed, the same seat and group, and where to change it.
    printed.clear()
    later = lesson.start("04", echo=printed.append, environ=room)
    assert later.settings.experiment_group == "2A" and later.seat.text == "7"
    assert "typed in notebook 00" in printed[1] and "SEAT" in printed[1]

    # The instructor's variable wins, for everybody, and the lesson says who set it.
    printed.clear()
    instructed = lesson.start("05", echo=printed.append, environ={**room, "HELLO_DL_EXPERIMENT_GROUP": "1B"})
    assert instructed.settings.experiment_group == "1B" and "set for you by the instructor" in printed[1]


def test_start_without_a_seat_says_where_to_type_it(room):
    printed: list[str] = []
    opened = lesson.start("03", echo=printed.append, environ=room)
    assert opened.seat is None and opened.settings.experiment_group == ""
    assert "Seat: none yet" in printed[1] and "notebook 00" in printed[1]


# --- figures of a catch-up run ----------------------------------------------------------------------------
def test_every_figure_of_a_catch_up_lesson_carries_the_label():
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        _check_labels(shell)
    finally:
        InteractiveShell.clear_instance()


def _check_labels(shell):
    from IPython.core.pylabtools import select_figure_formats

    from hello_dl import plots

    select_figure_formats(shell, {"png"})  # what %matplotlib inline sets up in a notebook kernel
    history = {"epoch": [1, 2], "loss": [0.7, 0.5], "val_loss": [0.6, 0.55], "accuracy": [0.5, 0.7],
               "val_accuracy": [0.6, 0.7], "phase": [1, 2]}
    assert lesson.label_figures("Not your own run: group 1A", shell)
    figure = plots.plot_training_curves(history)
    data, _ = shell.display_formatter.format(figure)
    assert "image/png" in data and figure.get_suptitle().startswith("Not your own run: group 1A\nTraining curves")
    shell.display_formatter.format(figure)
    assert figure.get_suptitle().count("Not your own run") == 1  # shown twice, labelled once
    roc = plots.plot_roc([0, 1, 1, 0], [0.2, 0.8, 0.6, 0.4])
    shell.display_formatter.format(roc)
    assert roc.get_suptitle() == "Not your own run: group 1A"  # a figure without a suptitle gets one
    assert lesson.label_figures(None, shell)
    plain = plots.plot_training_curves(history)
    shell.display_formatter.format(plain)
    assert plain.get_suptitle() == "Training curves"
    assert not lesson.label_figures("anything", shell=object())  # outside a notebook: nothing to label


# --- the catch-up path ----------------------------------------------------------------------------------
def _finished_run(settings, history):
    """A finished run folder as train writes it (settings.json, history.json, FINISHED; no model needed here)."""
    folder = runs.create(settings)
    runs.write_json(folder / runs.HISTORY_JSON, history)
    runs.mark_finished(folder)
    return folder


HISTORY = {"epoch": [1, 2], "loss": [0.7, 0.4], "val_loss": [0.6, 0.5], "accuracy": [0.5, 0.8],
           "val_accuracy": [0.6, 0.7], "phase": [1, 2]}


def test_without_a_run_of_your_own_the_lesson_takes_your_groups_reference_run(room):
    printed: list[str] = []
    lesson.remember_seat("3", settings_of(room))  # seat 3 → group 2A
    opened = lesson.start("05", echo=printed.append, environ=room)
    with pytest.raises(runs.MissingStepError, match="04_train") as missing:
        opened.run()
    assert "catch-up run" in str(missing.value) and reference.COMMAND in str(missing.value)

    other = _finished_run(reference.reference_group_settings(opened.settings, "1A"), HISTORY)
    mine = _finished_run(reference.reference_group_settings(opened.settings, "2A"), HISTORY)
    unfinished = runs.create(reference.reference_group_settings(opened.settings, "2A"))  # still training: never
    assert unfinished.name > mine.name
    catch_up = opened.run()
    assert catch_up.folder == mine and not catch_up.own and catch_up.folder != other
    assert catch_up.label.startswith(lesson.NOT_YOUR_OWN_RUN) and "group 2A" in catch_up.label
    assert printed[-1].startswith("Not your own run") and "run this notebook again" in printed[-1]
    curves = reference.curves_to_compare(catch_up)
    assert list(curves) == ["group 2A (reference; not your own run)", "group 1A (reference)"]

    # Once 04 has finished, the participant's own run is taken, and said to be theirs.
    own = _finished_run(opened.settings, HISTORY)
    yours = opened.run()
    assert yours.own and yours.folder == own and printed[-1].startswith("Your run:")
    assert list(reference.curves_to_compare(yours))[0] == "your run (2A)"


def test_catch_up_runs_shipped_with_the_kit_are_found_read_only(room, tmp_path, monkeypatch):
    """A Docker image or a room copy ships reference runs in <kit>/reference-runs/, beside outputs/."""
    kit = tmp_path / "kit"
    settings = settings_of({**room, "HELLO_DL_EXPERIMENT_GROUP": "1B"})
    shipped = kit / reference.SHIPPED_FOLDER / "smoke" / "1B"
    made = _finished_run(reference.reference_group_settings(settings, "1B"), HISTORY)
    shipped.mkdir(parents=True)
    shutil.copytree(made, shipped / made.name)
    shutil.rmtree(settings.output_dir / reference.REFERENCE_FOLDER)
    monkeypatch.setenv("HELLO_DL_HOME", str(kit))
    assert reference.catch_up_run(settings, "1B") == shipped / made.name
    assert reference.is_reference_run(shipped / made.name, settings)
    assert reference.reference_runs(settings) == {"1B": shipped / made.name}


def test_a_participant_without_a_group_catches_up_on_the_group_their_recipe_matches(room):
    settings = settings_of(room)  # smoke: augmentation on, dropout 0.5 → the recipe of group 1A
    assert lesson.catch_up_group(settings) == "1A"
    assert lesson.catch_up_group(settings.replace(augment=False, dropout=0.0)) == "2B"
    assert lesson.catch_up_group(settings.replace(experiment_group="1b")) == "1B"


# --- how long training takes here --------------------------------------------------------------------------
def test_the_training_estimate_grows_with_the_work_and_picks_a_recipe_that_fits():
    settings = load_settings("conference", environ={})
    estimate = lesson.estimate_training_seconds
    base = estimate(settings, 0.3)
    assert estimate(settings, 0.6) == pytest.approx(2 * base)
    assert estimate(settings.replace(finetune_epochs=10), 0.3) > base
    assert estimate(settings.replace(image_size=150), 0.3, timed_size=299) < base / 2
    assert estimate(settings.replace(fine_tune_from=""), 0.3) > base  # everything trainable costs more

    fast = lesson.plan_training(settings, slot_minutes=60, seconds_per_batch=0.3)
    assert fast.fits and not fast.smaller and fast.settings is settings and "That fits" in fast.format()
    slow = lesson.plan_training(settings, slot_minutes=base / 60 * 0.7, seconds_per_batch=0.3)
    assert slow.smaller and slow.fits and slow.settings.image_size < settings.image_size
    assert slow.settings.profile == "conference" and "smaller recipe" in slow.format()
    kept = lesson.plan_training(settings, slot_minutes=base / 60 * 0.7, seconds_per_batch=0.3, full_recipe=True)
    assert kept.settings is settings and not kept.fits
    hopeless = lesson.plan_training(settings, slot_minutes=0.1, seconds_per_batch=0.3)
    assert not hopeless.fits and "notebook 05" in hopeless.format()


def test_a_smaller_recipe_from_scratch_never_brings_back_a_frozen_warm_up():
    settings = load_settings("conference", environ={"HELLO_DL_WEIGHTS": "none"})
    assert settings.from_scratch and settings.warmup_epochs == 0
    base = lesson.estimate_training_seconds(settings, 0.3)
    for share in (0.9, 0.5, 0.01):
        plan = lesson.plan_training(settings, slot_minutes=base / 60 * share, seconds_per_batch=0.3)
        assert plan.settings.warmup_epochs == 0 and plan.settings.fine_tune_from == ""
        assert plan.settings.image_size <= settings.image_size
    assert lesson.plan_training(settings, slot_minutes=base / 60 * 0.9, seconds_per_batch=0.3).smaller


def test_the_training_slot_comes_from_the_guide_or_the_instructor():
    assert lesson.training_slot_seconds(environ={}) == lesson.TRAINING_SLOT_MINUTES * 60
    assert lesson.training_slot_seconds(environ={"HELLO_DL_TRAINING_MINUTES": "9"}) == 540
    with pytest.raises(lesson.HelloDLError, match="HELLO_DL_TRAINING_MINUTES"):
        lesson.training_slot_seconds(environ={"HELLO_DL_TRAINING_MINUTES": "soon"})


def test_a_few_timed_steps_of_the_real_network():
    settings = load_settings("smoke", environ={})
    seconds = lesson.time_forward_pass(settings, repeats=1)
    assert 0 < seconds < 120


# --- a participant who skips 04 -----------------------------------------------------------------------------
@pytest.mark.slow
def test_a_participant_who_skips_04_does_05_to_07_on_the_catch_up_run(fetched_dataset, tmp_path):
    """The instructor made the reference runs (`hello-dl reference`); a participant opens 05-07 without 04."""
    from hello_dl import runner

    settings = load_settings("smoke", environ={}, data_source=str(fetched_dataset), data_dir=str(fetched_dataset),
                             output_dir=str(tmp_path / "outputs"))
    made = reference.train_reference_groups(settings, ["2B"], echo=lambda line: None, verbose=0)
    lessons = tmp_path / "lessons"
    lessons.mkdir()
    for path in sorted(NOTEBOOKS.glob("0[567]_*.ipynb")):
        shutil.copy(path, lessons / path.name)
    participant = settings.replace(participant="4")  # seat 4 → group 2B
    summary = runner.run_all(participant, lessons, echo=lambda line: None)  # raises on any cell error

    folder = summary.parent
    printed = {}
    for path in sorted(folder.glob("*.ipynb")):
        cells = nbformat.read(path, as_version=4).cells
        printed[path.stem] = "".join(o.get("text", "") for c in cells if c.cell_type == "code" for o in c.outputs)
    assert sorted(printed) == ["05_training_curves", "06_inference_and_evaluation", "07_explain"]
    for name, text in printed.items():
        assert "Not your own run: the instructor's run for group 2B" in text, name
        assert made["2B"].name in text, name
    assert runs.list_runs(participant) == []  # nothing was trained for the participant
    figures = list((folder / "figures").glob("*.png"))
    assert {p.name.split("-", 1)[0] for p in figures} == set(printed)


# --- the session's time ---------------------------------------------------------------------------------------
def _rehearsal():
    """benchmarks/rehearsal.py, imported as a module (its helpers read the guide and the notebooks)."""
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import rehearsal
    finally:
        sys.path.pop(0)
    return rehearsal


def test_the_header_times_and_the_guide_agree_and_fit_45_minutes():
    """Each notebook's "Time:" line is its hands-on time in the guide's timeline; talk + hands-on = 45 min."""
    rehearsal = _rehearsal()
    rows = rehearsal.guide_timeline((NOTEBOOKS / "INSTRUCTOR_GUIDE.md").read_text(encoding="utf-8"))
    assert rows[0]["start"] == 0 and rows[-1]["end"] == 45
    assert all(a["end"] == b["start"] for a, b in zip(rows, rows[1:])), "the timeline has gaps or overlaps"
    slots, talk = rehearsal.guide_hands_on(rows), rehearsal.talk_minutes(rows)
    headers = {path.stem[:2]: rehearsal.header_minutes(path) for path in sorted(NOTEBOOKS.glob("0*.ipynb"))}
    assert talk == 15 and sum(slots.values()) + talk == 45
    assert headers == {number: pytest.approx(minutes) for number, minutes in slots.items()}
    # Training runs while the instructor talks after 04; the slot the kit plans for lies between that
    # talk alone and 04's own minutes plus that talk.
    start_04 = next(row for row in rows if row["notebooks"] == ["04"])
    after = rows[rows.index(start_04) + 1]
    assert after["mode"].startswith("talk")
    talk_after = after["end"] - after["start"]
    assert talk_after <= lesson.TRAINING_SLOT_MINUTES <= talk_after + start_04["end"] - start_04["start"]
    # Reading what the session reads (not the troubleshooting notes, the folded answers or the
    # sections marked "after the session") fits the hands-on time at the stated reading speed.
    reading = sum(rehearsal.reading_minutes(path)[0] for path in sorted(NOTEBOOKS.glob("0*.ipynb")))
    assert reading <= sum(slots.values())


def test_on_a_cloud_platform_start_prepares_the_kit_folder_first(monkeypatch, tmp_path, fetched_dataset):
    """On Colab (marker variable set) the setup call runs cloud.prepare: the kit's folder, the checksum list."""
    kit = tmp_path / "content" / "hello-dl"
    monkeypatch.setenv("COLAB_RELEASE_TAG", "release-for-the-test")
    monkeypatch.setenv("HELLO_DL_HOME", str(kit))
    monkeypatch.setenv("HELLO_DL_PROFILE", "smoke")
    monkeypatch.setenv("HELLO_DL_DATA_SOURCE", str(fetched_dataset))
    printed: list[str] = []
    opened = lesson.start("01", echo=printed.append)  # 01 keeps no results: Google Drive is not asked for
    assert opened.platform == "colab" and (kit / "data" / "MANIFEST.sha256").is_file()
    assert opened.data_dir == kit / "data" / "open_i_abd_vs_cxr" and (opened.data_dir / "TRAIN").is_dir()
    assert opened.settings.output_dir == kit / "outputs" and printed[0] == "Notebook 01 is ready."


def test_the_readme_carries_the_measured_rehearsal_table_with_its_date_machine_and_load():
    """The table benchmarks/rehearsal.py prints is in the README, dated, with the machine and the load average;
    its "Time:" and slot columns are today's headers and guide (a new timeline means a new measurement)."""
    import re

    rehearsal = _rehearsal()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert rehearsal.TABLE_HEADER in readme
    section = readme[readme.index("**The 45 minutes, rehearsed**"):readme.index(rehearsal.TABLE_HEADER)]
    assert re.search(r"Measured 20\d\d-\d\d-\d\d \d\d:\d\d", section) and "2 cores" in section
    assert re.search(r"load average [0-9.]+ before and [0-9.]+ after", section)
    assert f"{rehearsal.READING_WORDS_PER_MINUTE} words a minute" in section
    rows = readme[readme.index(rehearsal.TABLE_HEADER):].split("\n\n", 1)[0].splitlines()[2:]
    slots = rehearsal.guide_hands_on(rehearsal.guide_timeline((NOTEBOOKS / "INSTRUCTOR_GUIDE.md").read_text("utf-8")))
    notebooks = sorted(NOTEBOOKS.glob("0*.ipynb"))
    assert [row.split("|")[1].strip(" `") for row in rows] == [path.stem for path in notebooks]
    for row, path in zip(rows, notebooks):
        cells = [cell.strip() for cell in row.split("|")[1:-1]]
        assert cells[5] == f"{rehearsal.header_minutes(path):.0f} min", path.stem
        assert cells[6] == f"{slots[path.stem[:2]]:.1f} min", path.stem
