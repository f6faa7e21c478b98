"""Student and instructor editions: generated from notebooks/, current, and different only where they should be."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

from hello_dl import editions

ROOT = Path(__file__).resolve().parents[1]
SOURCE = sorted((ROOT / "notebooks").glob(editions.NOTEBOOK_PATTERN))


def read(path):
    return nbformat.read(path, as_version=4)


def test_the_committed_editions_are_current():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_editions.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr + "\nRun `make editions` and commit the result."


def test_the_student_edition_has_the_questions_without_the_answers():
    for path in SOURCE:
        source = read(path)
        student = read(ROOT / "editions" / "student" / path.name)
        assert [c.get("id") for c in student.cells] == [c.get("id") for c in source.cells]
        assert [c.source for c in student.cells if c.cell_type == "code"] == \
               [c.source for c in source.cells if c.cell_type == "code"]
        text = "\n".join(c.source for c in student.cells if c.cell_type == "markdown")
        assert "<summary>Answer" not in text and "</details>" not in text
        closing = student.cells[-1].source
        questions = re.findall(r"^\d+\. ", source.cells[-1].source, re.MULTILINE)
        assert re.findall(r"^\d+\. ", closing, re.MULTILINE) == questions and editions.STUDENT_LINE in closing
        assert student.metadata["hello_dl"]["edition"] == "student"
        assert f"/editions/student/{path.name}" in student.cells[0].source  # its badges open this edition


def test_the_instructor_edition_unfolds_every_answer_and_shows_the_timeline():
    guide = (ROOT / "notebooks" / editions.GUIDE).read_text()
    for path in SOURCE:
        source = read(path)
        instructor = read(ROOT / "editions" / "instructor" / path.name)
        folded = len(editions.ANSWER.findall(source.cells[-1].source))
        assert folded >= 2 and instructor.cells[-1].source.count("<details open><summary>Answer") == folded
        note = next(c for c in instructor.cells if c.get("id") == editions.NOTE_CELL_ID)
        assert "Instructor edition" in note.source
        for row in editions.timeline_rows(guide, path.stem[:2]):
            assert row in note.source
    assert editions.timeline_rows(guide, "04"), "the guide's timeline has a row for notebook 04"


def test_a_change_to_the_source_makes_the_editions_stale_until_regenerated(tmp_path):
    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks")
    # nothing generated yet: every lesson (and the glossary they link to) in both editions
    assert len([p for p in editions.stale(tmp_path) if p.suffix == ".ipynb"]) == 2 * len(SOURCE)
    editions.write(tmp_path)
    assert editions.stale(tmp_path) == []
    path = tmp_path / "notebooks" / SOURCE[3].name
    notebook = read(path)
    notebook.cells[-1].source += "\n\n4. A new question?\n   <details><summary>Answer</summary>A new answer.</details>"
    nbformat.write(notebook, path)
    assert editions.stale(tmp_path) == [tmp_path / "editions" / name / path.name for name in ("instructor", "student")]
    own = tmp_path / "editions" / "student" / "my_notes.ipynb"
    own.write_text(nbformat.writes(nbformat.v4.new_notebook()))
    editions.write(tmp_path)
    assert editions.stale(tmp_path) == [] and own.is_file()  # a participant's own file is never touched
    student = read(tmp_path / "editions" / "student" / path.name).cells[-1].source
    assert "4. A new question?" in student and "A new answer" not in student
    (tmp_path / "notebooks" / path.name).unlink()  # a lesson removed: its generated copies go too
    editions.write(tmp_path)
    assert not (tmp_path / "editions" / "student" / path.name).exists() and own.is_file()


def test_files_the_lessons_link_to_travel_with_both_editions(tmp_path):
    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks")
    (tmp_path / "notebooks" / "GLOSSARY.md").write_text("# Glossary\n\n**Epoch**: one pass over the training images.\n")
    path = tmp_path / "notebooks" / SOURCE[0].name
    notebook = read(path)
    notebook.cells[-1].source += "\n\nWords: [the glossary](GLOSSARY.md#epoch)."
    nbformat.write(notebook, path)
    editions.write(tmp_path)
    for name in editions.EDITIONS:
        assert (tmp_path / "editions" / name / "GLOSSARY.md").read_text().startswith("# Glossary")
