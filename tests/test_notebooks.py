"""The lesson notebooks: stored clean, built to the same pattern, thin, and runnable headless in order.

The execution test runs every notebook, in order, each in its own fresh kernel, under the smoke
profile against the shared dataset (fetched into a temporary data folder), exactly as
``hello-dl run`` does, and fails on the first cell error.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest

from hello_dl import evaluate, modelcard, runner, runs
from hello_dl.settings import load_settings

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob(runner.NOTEBOOK_PATTERN))

EXPECTED_SEQUENCE = [
    "00_hello_world_and_setup", "01_data_and_split", "02_build_model", "03_augmentation",
    "04_train", "05_training_curves", "06_inference_and_evaluation", "07_explain",
]
# The opening every notebook shares, in this order (headings of markdown cells).
OPENING = ["What you will do (and how long it takes)", "Setup"]
CLOSING = "Check your understanding"
# The setup code cells allowed before the lesson starts: the optional cloud install cell (does
# nothing off Colab/Kaggle), then the one lesson.start cell.
INSTALL_CELL_ID = "cloud-install"
START_CELL_ID = "lesson-start"


def read(path: Path):
    return nbformat.read(path, as_version=4)


def headings(notebook) -> list[str]:
    found = []
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            found += [m.group(1).strip() for m in re.finditer(r"^#{1,3} (.+)$", cell.source, re.MULTILINE)]
    return found


def code_sources(notebook) -> list[str]:
    return [cell.source for cell in notebook.cells if cell.cell_type == "code"]


def test_the_whole_sequence_is_there():
    assert [p.stem for p in NOTEBOOKS] == EXPECTED_SEQUENCE


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(path):
    notebook = read(path)
    nbformat.validate(notebook)
    for number, cell in enumerate(notebook.cells, start=1):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name} cell {number} has outputs: clear them before committing"
            assert cell.execution_count is None, f"{path.name} cell {number} has an execution count"
    assert notebook.metadata["kernelspec"]["name"] == runner.KERNEL_NAME


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_has_the_standard_opening_and_closing(path):
    notebook = read(path)
    titles = headings(notebook)
    assert titles[0].startswith(path.stem[:2] + " · "), f"{path.name} must start with its number and title"
    positions = [titles.index(h) if h in titles else -1 for h in OPENING]
    assert -1 not in positions, f"{path.name} lacks opening section(s): {[h for h, p in zip(OPENING, positions) if p < 0]}"
    assert positions == sorted(positions), f"{path.name}: the opening sections are out of order"
    # "How long it takes" is stated in the first cell.
    assert re.search(r"\*\*Time:\*\* about \d+", notebook.cells[0].source)
    last = notebook.cells[-1]
    assert last.cell_type == "markdown" and last.source.startswith(f"## {CLOSING}")
    questions = re.findall(r"^\d+\. ", last.source, re.MULTILINE)
    assert 2 <= len(questions) <= 4, f"{path.name} should end with 2-4 questions, has {len(questions)}"
    # Every lesson links to at least one source for deeper reading.
    prose = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "markdown")
    assert re.search(r"\]\(https://", prose), f"{path.name} has no link for deeper reading"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_opens_with_at_most_two_setup_cells_the_last_one_lesson_start(path):
    """What you will do → (the optional cloud install cell) → one lesson.start cell; nothing else first."""
    notebook = read(path)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    ids = [cell.get("id") for cell in code]
    assert START_CELL_ID in ids, f"{path.name} has no {START_CELL_ID!r} cell"
    setup = code[:ids.index(START_CELL_ID) + 1]
    assert len(setup) <= 2 and [c.get("id") for c in setup[:-1]] in ([], [INSTALL_CELL_ID]), \
        f"{path.name}: only the install cell may come before lesson.start, found {[c.get('id') for c in setup]}"
    start = setup[-1].source
    number = path.stem[:2]
    assert f'lesson = hello_dl.lesson.start("{number}"' in start and "settings, data_dir = lesson.settings" in start
    # The first cell says what the lesson does and how long it takes; the setup comes right after it.
    assert notebook.cells.index(setup[0]) <= 3


def test_the_seat_is_typed_in_one_place_only():
    """A participant types one thing in the whole session: SEAT in notebook 00, nowhere else."""
    typed = {}
    for path in NOTEBOOKS:
        for source in code_sources(read(path)):
            for name in ("SEAT", "PARTICIPANT", "GROUP"):
                if re.search(rf"^{name} = ", source, re.MULTILINE):
                    typed.setdefault(path.stem, []).append(name)
    assert typed == {"00_hello_world_and_setup": ["SEAT"]}
    start = next(c.source for c in read(NOTEBOOKS[0]).cells if c.get("id") == START_CELL_ID)
    assert start.startswith('SEAT = ""') and "seat=SEAT" in start


def test_lessons_after_04_take_their_run_through_the_catch_up_path():
    """05-07 get their run with lesson.run(): the participant's own, or the labelled catch-up run."""
    for path in NOTEBOOKS[5:]:
        sources = code_sources(read(path))
        assert "run = lesson.run()" in sources, path.name
        assert not any("runs.latest(" in source for source in sources), path.name


def test_the_badges_and_install_cells_are_current(tmp_path):
    """`scripts/stamp_badges.py --check` passes on the committed notebooks and README (the openings included),
    and it does fail when a notebook's install cell is not the one the repository's address makes."""
    import subprocess
    import sys

    script = NOTEBOOKS_DIR.parent / "scripts" / "stamp_badges.py"
    checked = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "current" in checked.stdout

    copy = tmp_path / "kit"
    (copy / "scripts").mkdir(parents=True)
    for name in ("pyproject.toml", "README.md", "scripts/stamp_badges.py"):
        (copy / name).write_bytes((NOTEBOOKS_DIR.parent / name).read_bytes())
    (copy / "notebooks").mkdir()
    for path in NOTEBOOKS:
        (copy / "notebooks" / path.name).write_bytes(path.read_bytes())
    stale = read(copy / "notebooks" / NOTEBOOKS[4].name)
    next(c for c in stale.cells if c.get("id") == INSTALL_CELL_ID).source += "\n# edited by hand"
    nbformat.write(stale, copy / "notebooks" / NOTEBOOKS[4].name)
    env = {"PYTHONPATH": str(NOTEBOOKS_DIR.parent / "src"), "PATH": "/usr/bin:/bin"}
    refused = subprocess.run([sys.executable, str(copy / "scripts" / "stamp_badges.py"), "--check"],
                             capture_output=True, text=True, timeout=120, env=env)
    assert refused.returncode == 1 and NOTEBOOKS[4].name in refused.stdout


# Absolute paths of any operating system, or a home folder: none belongs in a lesson.
HARD_CODED_PATH = re.compile(r"""["'](/[A-Za-z]|~/|[A-Za-z]:\\|\\\\)""")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_notebook_hard_codes_a_path(path):
    for source in code_sources(read(path)):
        assert not HARD_CODED_PATH.search(source), f"{path.name} hard-codes a path in:\n{source}"
        assert "/work/" not in source and "/home/" not in source and "/Users/" not in source


# Logic belongs in the package: no loops, functions, classes or hand-made plotting in a lesson.
LOGIC = re.compile(r"^\s*(for |while |def |class |async |with |try:)|\bfor \w+ in\b|lambda |plt\.|\.imshow\(|"
                   r"import matplotlib", re.MULTILINE)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_are_thin_lessons(path):
    for source in code_sources(read(path)):
        assert not LOGIC.search(source), f"{path.name} has logic that belongs in the package:\n{source}"
        lines = [line for line in source.splitlines() if line.strip() and not line.strip().startswith("#")]
        assert len(lines) <= 6, f"{path.name} has a long code cell ({len(lines)} lines):\n{source}"


@pytest.mark.slow
def test_every_notebook_runs_in_order_under_the_smoke_profile(shared_dataset, tmp_path):
    # A conference participant: the group travels to every kernel through HELLO_DL_PARTICIPANT.
    settings = load_settings("smoke", environ={}, data_source=str(shared_dataset),
                             data_dir=str(tmp_path / "data" / "open_i_abd_vs_cxr"),
                             output_dir=str(tmp_path / "outputs"), participant="ada")
    group = settings.experiment_group
    progress: list[str] = []
    summary = runner.run_all(settings, NOTEBOOKS_DIR, echo=progress.append)  # raises on any cell error

    folder = summary.parent
    assert sorted(p.name for p in folder.glob("*.ipynb")) == [p.name for p in NOTEBOOKS]
    for path in NOTEBOOKS:
        executed = read(folder / path.name)
        errors = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs
                  if o.output_type == "error"]
        assert not errors, f"{path.name}: {errors[0].ename}: {errors[0].evalue}"
        assert all(c.execution_count for c in executed.cells if c.cell_type == "code" and c.source.strip())
    # The lessons that are about pictures show them, and the runner saved them.
    figures = {p.name.split("-", 1)[0] for p in (folder / "figures").glob("*.png")}
    assert figures >= {"01_data_and_split", "03_augmentation", "05_training_curves",
                       "06_inference_and_evaluation", "07_explain"}
    printed = {path.stem: "".join(o.get("text", "") for c in read(folder / path.name).cells
                                  if c.cell_type == "code" for o in c.outputs) for path in NOTEBOOKS}
    for path in NOTEBOOKS:  # every lesson opened with its one setup call, showing the seat and the data
        assert f"Notebook {path.stem[:2]} is ready." in printed[path.stem]
        assert f"Group {group}:" in printed[path.stem] and "Data: 77 images" in printed[path.stem]
    assert f"Experiment group: {group}" in printed["03_augmentation"]
    assert f"Experiment group: {group}" in printed["04_train"]
    assert "Training the smoke recipe here takes about" in printed["04_train"]  # the estimate before training
    assert "Your run: " in printed["05_training_curves"] and f"_smoke_{group}" in printed["05_training_curves"]
    assert "Not your own run" not in "".join(printed.values())
    # Issue 12's sections did what they say (the cells are found by their ids).
    shown = {path.stem[:2]: {c.get("id"): _shown(c) for c in read(folder / path.name).cells if c.cell_type == "code"}
             for path in NOTEBOOKS}
    assert "95% CI" in shown["06"]["cell-18"][0] and "image/png" in shown["06"]["cell-18"][1]  # numbers, figure
    assert "image/png" in shown["06"]["threshold-code"][1]  # the slider's headless fallback: the picture
    assert "PPV" in shown["06"]["ppv-code"][0] and "2.0%" in shown["06"]["ppv-code"][0]
    card_shown = shown["06"]["card-code"][0]
    assert all(f"## {section}" in card_shown for section in modelcard.SECTIONS)
    assert "Teaching only, not for clinical use" in card_shown
    (card,) = (tmp_path / "outputs").glob(f"*_smoke_{group}/{runs.MODEL_CARD}")
    assert card.read_text().strip() == card_shown.strip()  # the card shown is the run's own file
    metrics = json.loads((card.parent / runs.METRICS).read_text())
    assert metrics["val_accuracy_ci95_low"] <= metrics["val_accuracy"] <= metrics["val_accuracy_ci95_high"]
    assert (card.parent / runs.FIGURES / evaluate.INTERVALS_FIGURE).is_file()
    assert "image/png" in shown["07"]["featuremaps-code"][1] and "early" in shown["07"]["featuremaps-code"][0]
    assert "image/png" in shown["07"]["stress-code"][1] and "flipped" in shown["07"]["stress-code"][0]
    assert "Not run for this card" not in card_shown  # training ran the stress test for the card
    assert "Nothing was trained" in shown["07"]["padding-code"][0]  # TRY_PADDING stays False headless
    text = summary.read_text()
    assert "all notebooks ran without error" in text
    assert re.search(r"accuracy\S*: [0-9.]+", text), "the summary should report the training run's metrics"
    # The sources stay clean after a run.
    assert all(not c.get("outputs") for p in NOTEBOOKS for c in read(p).cells if c.cell_type == "code")


def _shown(cell) -> tuple[str, set[str]]:
    """What an executed code cell printed or showed as text, and the kinds of its rich outputs."""
    text, kinds = [], set()
    for output in cell.outputs:
        text.append(output.get("text", ""))
        data = output.get("data", {})
        kinds.update(data)
        text.append(data.get("text/markdown", "") or data.get("text/plain", ""))
    return "".join(text), kinds


def test_a_later_notebook_without_a_trained_model_says_which_notebook_to_run(shared_dataset, tmp_path):
    """Run on its own before any training, 05 (like 06 and 07, through the same call) must stop with a
    plain pointer to notebook 04."""
    name = "05_training_curves"
    lesson = tmp_path / "lesson"
    lesson.mkdir()
    (lesson / f"{name}.ipynb").write_bytes((NOTEBOOKS_DIR / f"{name}.ipynb").read_bytes())
    settings = load_settings("smoke", environ={}, data_source=str(shared_dataset),
                             data_dir=str(tmp_path / "data"), output_dir=str(tmp_path / "outputs"))
    with pytest.raises(runner.TutorialError) as caught:
        runner.run_all(settings, lesson, echo=lambda line: None)
    message = str(caught.value)
    assert "No trained model found" in message and "04_train" in message


# --- package helpers the lessons call (added for the notebooks) -------------------------------------
def test_demo_dicom_reads_back_as_the_png_and_is_reproducible(shared_dataset, tmp_path):
    import hashlib

    import numpy as np

    from hello_dl import dicom
    from hello_dl.images import load_image

    png = shared_dataset / "TEST" / "chest2.png"
    before = hashlib.sha256(png.read_bytes()).hexdigest()
    grey = np.rint(load_image(png).mean(axis=2))
    for photometric in ("MONOCHROME1", "MONOCHROME2"):
        path = dicom.image_to_dicom(png, tmp_path / photometric / "chest2.dcm", photometric=photometric)
        image = dicom.read_dicom(path)
        assert (image.photometric, image.bits_stored, image.voi_source) == (photometric, 12, "window")
        assert np.abs(image.display.astype(int) - grey).max() <= 1
        # what training and inference load from the DICOM is the PNG's picture (grey in three channels)
        assert np.abs(load_image(path).astype(int) - load_image(png).astype(int)).max() <= 1
    first = (tmp_path / "MONOCHROME1" / "chest2.dcm").read_bytes()
    again = dicom.image_to_dicom(png, tmp_path / "again" / "chest2.dcm")
    assert again.read_bytes() == first  # same picture, same file (UIDs derived from the pixels)
    assert dicom.image_to_dicom(png, again) == again and again.read_bytes() == first  # never rewritten
    assert hashlib.sha256(png.read_bytes()).hexdigest() == before


def test_practice_folder_for_splitting_copies_the_dataset_by_class(fetched_dataset, tmp_path):
    from hello_dl import split
    from hello_dl.dataset import images_under

    settings = load_settings("smoke", environ={}, data_dir=str(fetched_dataset))
    source = split.example_source(settings, tmp_path / "my_images")
    assert sorted(p.name for p in source.iterdir()) == ["abdomen", "chest"]
    assert len(images_under(source / "chest")[0]) == 38 and len(images_under(source / "abdomen")[0]) == 37
    result = split.split_folder(source, tmp_path / "my_split", settings)
    assert sum(result.counts["VAL"].values()) > 0 and len(result.duplicates) == 1
    assert split.example_source(settings, source) == source  # a rerun reuses it


def test_image_size_figure_shows_both_classes(fetched_dataset, tmp_path):
    from PIL import Image

    from hello_dl import explain, plots

    settings = load_settings("smoke", environ={}, data_dir=str(fetched_dataset))
    sizes = explain.shortcut_check(settings)
    figure = plots.plot_image_sizes(sizes, save_path=tmp_path / "sizes.png")
    labels = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert "chest: 33 images, 1 size" in labels and any(label.startswith("abdomen: 32 images") for label in labels)
    assert Image.open(tmp_path / "sizes.png").size[0] > 300
