"""Student and instructor editions of the lessons, generated from the one source in ``notebooks/``.

The lessons are written once, in ``notebooks/``, with the answers of "Check your understanding"
inline, folded in ``<details><summary>Answer</summary>…</details>``. From them (as fastbook's
clean copies are made from its full chapters) this module writes two editions:

* ``editions/student/``: the answers taken out (a line asks to talk them through instead), so a
  participant has to think before reading; what participants open (``make lab``, the Docker
  image and with it the room server, the Colab/Kaggle badges of this edition).
* ``editions/instructor/``: the answers unfolded, and at the top of each notebook a note with its
  part of the session's timeline, read from ``notebooks/INSTRUCTOR_GUIDE.md``.

Code cells, their ids and every other cell stay exactly as in the source; markdown files the
lessons link to (e.g. a glossary) are copied beside them. ``scripts/make_editions.py`` (``make
editions``) writes them; ``--check`` (a test runs it) fails when a committed edition is out of
date. The headless runner (``make run``) executes the source notebooks, which carry the same
code; the instructor reads the instructor edition.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path

import nbformat

from hello_dl import runs
from hello_dl.settings import project_root

EDITIONS = ("student", "instructor")
EDITIONS_FOLDER = "editions"
NOTEBOOK_PATTERN = "[0-9][0-9]_*.ipynb"
GUIDE = "INSTRUCTOR_GUIDE.md"
NOTE_CELL_ID = "instructor-note"

#: One folded answer, with the blank space before it on its line.
ANSWER = re.compile(r"[ \t]*<details>\s*<summary>\s*Answer\s*</summary>.*?</details>", re.DOTALL)
STUDENT_LINE = ("*Talk the answers through with your neighbour; the instructor goes through them at the end of "
                "the session.*")
#: Markdown links to a file beside the notebooks: ``[text](GLOSSARY.md)`` or ``(GLOSSARY.md#batch)``.
LOCAL_LINK = re.compile(r"\]\((?!https?:|mailto:|#)([^)#\s]+\.md)(?:#[^)]*)?\)")


@dataclass
class Edition:
    name: str
    folder: Path
    notebooks: list[Path]
    extra_files: list[Path]


def source_folder(root: Path | None = None) -> Path:
    return (root or project_root()) / "notebooks"


def edition_folder(name: str, root: Path | None = None) -> Path:
    if name not in EDITIONS:
        raise ValueError(f"Unknown edition {name!r}: choose one of {', '.join(EDITIONS)}.")
    return (root or project_root()) / EDITIONS_FOLDER / name


def timeline_rows(guide_text: str, number: str) -> list[str]:
    """The rows of the guide's session table (``| time | mode | what | notebook |``) that concern ``number``."""
    rows, in_table = [], False
    for line in guide_text.splitlines():
        if line.startswith("| time | mode |"):
            in_table = True
            continue
        if in_table and not line.startswith("|"):
            break
        if in_table and not line.startswith("| ---"):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            if len(cells) >= 4 and f"`{number}`" in cells[3]:
                rows.append(f"- minute {cells[0]}, {cells[1]}: {cells[2]}")
    return rows


def student_source(text: str) -> str:
    """A markdown cell without its folded answers (and, where there were some, the line that replaces them)."""
    if not ANSWER.search(text):
        return text
    stripped = ANSWER.sub("", text)
    stripped = re.sub(r"[ \t]+\n", "\n", stripped)
    stripped = re.sub(r"\n{3,}", "\n\n", stripped)
    lines = stripped.rstrip("\n").split("\n")
    # The line goes after the last question, before a closing "**Next:**" pointer if there is one.
    at = next((i for i in range(len(lines) - 1, -1, -1) if lines[i].startswith("**Next:**")), len(lines))
    lines[at:at] = [STUDENT_LINE, ""] if at < len(lines) else ["", STUDENT_LINE]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines))


def instructor_source(text: str) -> str:
    """A markdown cell with its answers unfolded."""
    return ANSWER.sub(lambda m: m.group(0).replace("<details>", "<details open>", 1), text)


def _retarget_badges(text: str, name: str) -> str:
    """The Colab/Kaggle badges of an edition open that edition (the source's open notebooks/)."""
    return re.sub(r"(github\.com/[^/\s)]+/[^/\s)]+/blob/[^/\s)]+/)notebooks/", rf"\1{EDITIONS_FOLDER}/{name}/", text)


def make_notebook(source, name: str, source_name: str, guide_text: str):
    """The ``name`` edition of the source notebook ``source_name`` (a new object; the source is not changed)."""
    notebook = copy.deepcopy(source)
    notebook.metadata["hello_dl"] = {"edition": name, "generated_from": f"notebooks/{source_name}",
                                     "do_not_edit": "edit notebooks/ and run `make editions`"}
    for cell in notebook.cells:
        if cell.cell_type != "markdown":
            continue
        text = _retarget_badges(cell.source, name)
        cell.source = student_source(text) if name == "student" else instructor_source(text)
    if name == "instructor":
        rows = timeline_rows(guide_text, source_name[:2]) or ["- (this notebook has no row of its own in the timeline)"]
        note = nbformat.v4.new_markdown_cell(
            "> **Instructor edition.** Participants have the student edition, without the answers.\n"
            f"> This notebook in the session (`notebooks/{GUIDE}`):\n>\n"
            + "\n".join(f"> {row}" for row in rows))
        note.id = NOTE_CELL_ID
        first_markdown = next(i for i, c in enumerate(notebook.cells) if c.cell_type == "markdown")
        notebook.cells.insert(first_markdown + 1, note)
    nbformat.validate(notebook)
    return notebook


def linked_files(notebook, folder: Path) -> list[Path]:
    """Markdown files beside the notebooks that the lesson links to (copied into each edition)."""
    found = set()
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            for target in LOCAL_LINK.findall(cell.source):
                path = folder / target
                if path.is_file():
                    found.add(path)
    return sorted(found)


def render(root: Path | None = None) -> dict[Path, str]:
    """Every file of both editions: path → text (nothing written)."""
    root = root or project_root()
    source = source_folder(root)
    guide_path = source / GUIDE
    guide_text = guide_path.read_text(encoding="utf-8") if guide_path.is_file() else ""
    files: dict[Path, str] = {}
    for path in sorted(source.glob(NOTEBOOK_PATTERN)):
        notebook = nbformat.read(path, as_version=4)
        extras = linked_files(notebook, source)
        for name in EDITIONS:
            made = make_notebook(notebook, name, path.name, guide_text)
            files[edition_folder(name, root) / path.name] = nbformat.writes(made) + "\n"
            for extra in extras:
                files[edition_folder(name, root) / extra.name] = extra.read_text(encoding="utf-8")
    return files


def _orphans(wanted: dict[Path, str], root: Path | None) -> list[Path]:
    """Generated lesson notebooks of an edition whose source notebook is gone (participants' own files are not)."""
    found = []
    for name in EDITIONS:
        folder = edition_folder(name, root)
        for path in sorted(folder.glob(NOTEBOOK_PATTERN)) if folder.is_dir() else []:
            if path not in wanted and "hello_dl" in nbformat.read(path, as_version=4).metadata:
                found.append(path)
    return found


def stale(root: Path | None = None) -> list[Path]:
    """Files of the editions that are missing, differ from what the source makes, or lost their source."""
    wanted = render(root)
    out = [path for path, text in wanted.items()
           if not path.is_file() or path.read_text(encoding="utf-8") != text]
    return sorted(out + _orphans(wanted, root))


def write(root: Path | None = None) -> list[Path]:
    """Write both editions (atomically, file by file); remove generated notebooks whose source is gone.

    Anything else in an edition's folder (a participant's own notebook, say) is left alone.
    """
    wanted = render(root)
    changed = []
    for path, text in wanted.items():
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            runs.write_atomic(path, text)
            changed.append(path)
    for path in _orphans(wanted, root):
        path.unlink()
        changed.append(path)
    return changed


__all__ = ["EDITIONS", "EDITIONS_FOLDER", "edition_folder", "instructor_source", "linked_files", "make_notebook",
           "render", "source_folder", "stale", "student_source", "timeline_rows", "write"]
