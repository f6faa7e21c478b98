"""The instructor's materials, built from the repository (``make materials``): slides, glossary, quiz.

From ``materials/talk.md``, ``materials/quiz.md`` and the lessons' ``notebooks/GLOSSARY.md``:

* ``slides/talk.slides.html``: the 15 minutes of talk as reveal.js slides (``jupyter nbconvert
  --to slides`` on a notebook made from the Markdown), with the kit's own figures, "deep learning in
  one picture" first (drawn by :func:`hello_dl.plots.plot_deep_learning_picture`), embedded in the
  page. Nothing is fetched while the slides are shown: reveal.js sits beside them in
  ``slides/reveal.js/`` (taken, at build time, from a pinned and hash-checked wheel on PyPI that
  ships it), and the template loads no other script (no CDN, no MathJax, no RequireJS). Press S
  for the speaker notes.
* ``glossary.html``: the glossary on one printable page (A4, two columns).
* ``quiz.html``: the pre/post quiz for participants (questions only, a box for "before" and one
  for "after"), and ``quiz-answer-key.html``, for the instructor only.
* ``figures/``: the figures, as PNG files, for any other use.

Everything is written into a new folder beside the destination and moved into place at once.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import mistune
import nbformat

from hello_dl import dataset, plots, reference, runs
from hello_dl.errors import HelloDLError
from hello_dl.images import load_image
from hello_dl.settings import Settings, load_settings, project_root

#: The wheel reveal.js is taken from (it ships reveal.js 5.2 as plain files), pinned by hash.
REVEAL_WHEEL = "sphinx_revealjs-3.2.1-py3-none-any.whl"
REVEAL_REQUIREMENT = "sphinx-revealjs==3.2.1"
REVEAL_SHA256 = "805bed3ca459346e0f01967d5ed1c40d6b7b917de1541e1e4566c8341fe7017b"
REVEAL_PREFIX = "sphinx_revealjs/_static/revealjs/"
REVEAL_PARTS = ("LICENSE", "dist/reveal.css", "dist/reveal.js", "dist/reset.css", "dist/theme/simple.css",
                "plugin/notes/notes.js")
REVEAL_FOLDER = "reveal.js"
TEMPLATE_NAME = "hello_reveal"

FIGURE_PLACEHOLDER = re.compile(r"^\{figure:([a-z_]+)\}\s*$", re.MULTILINE)
SLIDE_BREAK = re.compile(r"^---\s*$", re.MULTILINE)
COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)

PAGE_STYLE = """
@page { size: A4; margin: 12mm; }
body { font-family: "DejaVu Sans", Arial, sans-serif; color: #111; max-width: 190mm; margin: 0 auto; }
h1 { font-size: 15pt; margin: 0 0 4pt 0; }
p { margin: 0 0 4pt 0; }
.intro { font-size: 8.5pt; color: #444; }
.columns { column-count: 2; column-gap: 8mm; font-size: 8.3pt; line-height: 1.28; }
.columns p { break-inside: avoid; }
.question { break-inside: avoid; margin-bottom: 9pt; font-size: 10pt; }
.question ol { list-style: none; padding-left: 1em; margin: 2pt 0; }
.boxes { font-size: 9pt; color: #333; }
.key { color: #7a1020; }
"""


class MaterialsError(HelloDLError):
    """The materials cannot be built (a source missing, reveal.js not obtainable); the message says what to do."""


@dataclass
class Materials:
    folder: Path
    slides: Path
    glossary: Path
    quiz: Path
    answer_key: Path
    figures: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


# --- figures -------------------------------------------------------------------------------------------
def draw_figures(settings: Settings, folder: Path) -> tuple[dict[str, Path], list[str]]:
    """The kit's own figures for the slides, as PNG files in ``folder``; and notes on any left out."""
    index = dataset.scan(settings)
    train = index.split("train")
    first = {}
    for path, label in zip(train.files, train.labels):
        first.setdefault(label, path)
    images = [load_image(first[label]) for label in sorted(first)]
    made = {"one_picture": plots.plot_deep_learning_picture(images, class_names=settings.class_names,
                                                             save_path=folder / "one_picture.png")}
    samples: dict[str, list] = {name: [] for name in settings.class_names}
    for path, label in zip(train.files, train.labels):
        if len(samples[settings.class_names[label]]) < 4:
            samples[settings.class_names[label]].append(load_image(path))
    made["sample_grid"] = plots.plot_sample_grid(samples, per_class=4, title="Training images, four per class",
                                                 save_path=folder / "sample_grid.png")
    from hello_dl import explain  # here: scikit-learn and the model's helpers are needed only for this figure

    made["image_sizes"] = plots.plot_image_sizes(explain.shortcut_check(settings), save_path=folder / "image_sizes.png")
    notes = []
    every = reference.reference_runs(settings)
    if every:
        made["groups"] = plots.plot_group_comparison(
            {f"group {g}": runs.load_history(path) for g, path in every.items()},
            title=f"The four groups, the instructor's reference runs ({settings.profile} profile)",
            save_path=folder / "groups.png")
    else:
        notes.append(f"No reference runs for the {settings.profile} profile yet: the groups slide has no curves "
                     f"(make them with `{reference.COMMAND} --profile {settings.profile}`, then build again).")
    return {name: folder / f"{name}.png" for name in made}, notes


# --- slides ----------------------------------------------------------------------------------------------
def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def talk_notebook(text: str, figures: dict[str, Path]):
    """The talk's Markdown as a notebook of slides (and speaker notes), figures embedded."""
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["title"] = "Hello, World! Deep learning in medical imaging"
    for number, block in enumerate(SLIDE_BREAK.split(COMMENT.sub("", text))):
        body, _, notes = block.partition("\nNotes:")
        body = FIGURE_PLACEHOLDER.sub(
            lambda m: f'<img src="{_data_uri(figures[m.group(1)])}" alt="{m.group(1)}" style="max-height: 430px">'
            if m.group(1) in figures else "*(figure not available: see the build notes)*", body.strip())
        slide = nbformat.v4.new_markdown_cell(body)
        slide.metadata["slideshow"] = {"slide_type": "slide"}
        slide.id = f"slide-{number:02d}"
        notebook.cells.append(slide)
        if notes.strip():
            note = nbformat.v4.new_markdown_cell(notes.strip())
            note.metadata["slideshow"] = {"slide_type": "notes"}
            note.id = f"notes-{number:02d}"
            notebook.cells.append(note)
    nbformat.validate(notebook)
    return notebook


def template_folder() -> Path:
    return project_root() / "materials" / "templates"


def reveal_wheel(cache: Path, *, echo: Callable[[str], None] = print) -> Path:
    """The pinned wheel that ships reveal.js, from ``cache`` or downloaded there once (hash checked)."""
    wheel = cache / REVEAL_WHEEL
    if not (wheel.is_file() and hashlib.sha256(wheel.read_bytes()).hexdigest() == REVEAL_SHA256):
        cache.mkdir(parents=True, exist_ok=True)
        pins = cache / "reveal-requirements.txt"
        runs.write_atomic(pins, f"{REVEAL_REQUIREMENT} --hash=sha256:{REVEAL_SHA256}\n")
        echo(f"Fetching reveal.js once ({REVEAL_REQUIREMENT} from PyPI, hash checked) into {cache} ...")
        result = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary",
                                 ":all:", "--require-hashes", "-r", str(pins), "-d", str(cache)],
                                capture_output=True, text=True)
        if result.returncode != 0 or not wheel.is_file():
            raise MaterialsError(f"reveal.js could not be fetched ({REVEAL_REQUIREMENT} from PyPI): "
                                 f"{(result.stderr or result.stdout).strip()[-400:]}\nBuild the materials once on a "
                                 f"computer with internet, or put {REVEAL_WHEEL} into {cache}.")
    return wheel


def install_reveal(wheel: Path, folder: Path) -> Path:
    """Copy the reveal.js files the slides use out of ``wheel`` into ``folder/reveal.js/``."""
    target = folder / REVEAL_FOLDER
    with zipfile.ZipFile(wheel) as archive:
        for part in REVEAL_PARTS:
            runs.write_atomic(target / part, archive.read(REVEAL_PREFIX + part))
    return target


def build_slides(text: str, figures: dict[str, Path], folder: Path, wheel: Path) -> Path:
    from nbconvert import SlidesExporter  # here: only the slides need nbconvert

    exporter = SlidesExporter(template_name=TEMPLATE_NAME, extra_template_basedirs=[str(template_folder())],
                              reveal_url_prefix=REVEAL_FOLDER, reveal_theme="simple", reveal_number="c/t",
                              exclude_input_prompt=True)
    body, _ = exporter.from_notebook_node(talk_notebook(text, figures))
    install_reveal(wheel, folder)
    return runs.write_atomic(folder / "talk.slides.html", body)


# --- glossary and quiz -----------------------------------------------------------------------------------
def _page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{html.escape(title)}</title>\n'
            f"<style>{PAGE_STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n")


def glossary_page(text: str) -> str:
    """The glossary as one printable page: the title and first paragraph, then the terms in two columns."""
    text = COMMENT.sub("", text).strip()
    title, _, rest = text.partition("\n")
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", rest) if p.strip()]
    intro = paragraphs[0] if paragraphs and not paragraphs[0].startswith("**") else ""
    terms = [p for p in paragraphs if p is not intro]
    body = (f"<h1>{html.escape(title.lstrip('# ').strip())}</h1>\n"
            + (f'<p class="intro">{mistune.html(intro).strip()[3:-4]}</p>\n' if intro else "")
            + '<div class="columns">\n' + "\n".join(mistune.html(term).strip() for term in terms) + "\n</div>")
    return _page("Glossary", body)


@dataclass
class Question:
    text: str
    options: list[str]
    answer: str
    why: str


def read_quiz(text: str) -> tuple[str, list[Question]]:
    """The quiz's title and questions (``## N. question``, ``- a) option``, ``Answer:``, ``Why:``)."""
    text = COMMENT.sub("", text)
    title = next((line[2:].strip() for line in text.splitlines() if line.startswith("# ")), "Quiz")
    questions = []
    for block in re.split(r"^## ", text, flags=re.MULTILINE)[1:]:
        lines = [line.strip() for line in block.strip().splitlines() if line.strip()]
        options = [line[2:] for line in lines if re.match(r"- [a-z]\) ", line)]
        answer = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("Answer:")), "")
        why = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("Why:")), "")
        if not options or answer not in [option[0] for option in options] or not why:
            raise MaterialsError(f"Quiz question {lines[0]!r} needs options '- a) ...', an 'Answer:' that names one "
                                 "of them, and a 'Why:' line (materials/quiz.md).")
        questions.append(Question(re.sub(r"^\d+\.\s*", "", lines[0]), options, answer, why))
    if not 6 <= len(questions) <= 10:
        raise MaterialsError(f"materials/quiz.md has {len(questions)} questions; the quiz needs 6 to 10.")
    return title, questions


def quiz_pages(text: str) -> tuple[str, str]:
    """(participants' sheet without answers, the instructor's answer key)."""
    title, questions = read_quiz(text)
    sheet, key = [f"<h1>{html.escape(title)}</h1>",
                  '<p class="intro">Answer before the session (circle a letter under "before") and again at the end '
                  '(under "after"). It is not marked: it shows what the session taught.</p>'], \
        [f"<h1>{html.escape(title)}: answer key (instructor only)</h1>"]
    for number, question in enumerate(questions, start=1):
        options = "".join(f"<li>{html.escape(option)}</li>" for option in question.options)
        letters = " ".join(option[0] for option in question.options)
        sheet.append(f'<div class="question"><p><b>{number}. {html.escape(question.text)}</b></p><ol>{options}</ol>'
                     f'<p class="boxes">before: {letters} &nbsp;&nbsp;&nbsp; after: {letters}</p></div>')
        right = next(option for option in question.options if option.startswith(question.answer))
        key.append(f'<div class="question"><p><b>{number}. {html.escape(question.text)}</b></p>'
                   f'<p class="key">Answer: {html.escape(right)}</p><p>{html.escape(question.why)}</p></div>')
    return _page(title, "\n".join(sheet)), _page(f"{title}: answer key", "\n".join(key))


# --- everything --------------------------------------------------------------------------------------------
def default_destination() -> Path:
    return project_root() / "materials" / "build"


def build(destination: Path | None = None, settings: Settings | None = None, *, cache: Path | None = None,
          echo: Callable[[str], None] = print) -> Materials:
    """Build slides, glossary, quiz and figures into ``destination`` (default ``materials/build``), all at once."""
    root = project_root()
    destination = Path(destination or default_destination())
    settings = settings or load_settings()
    sources = {name: root / path for name, path in (("talk", "materials/talk.md"), ("quiz", "materials/quiz.md"),
                                                   ("glossary", "notebooks/GLOSSARY.md"))}
    missing = [str(path) for path in sources.values() if not path.is_file()]
    if missing:
        raise MaterialsError(f"Missing source(s) of the materials: {', '.join(missing)}. Run this from a full copy "
                             "of the kit.")
    wheel = reveal_wheel(Path(cache or Path(sys.prefix) / "share" / "hello-dl" / "wheels"), echo=echo)
    from hello_dl import fetch  # the figures use the tutorial's images: verified first

    fetch.fetch_data(settings)
    with runs.staging_folder(destination) as staging:
        figures, notes = draw_figures(settings, staging / "figures")
        build_slides(sources["talk"].read_text(encoding="utf-8"), figures, staging / "slides", wheel)
        runs.write_atomic(staging / "glossary.html", glossary_page(sources["glossary"].read_text(encoding="utf-8")))
        sheet, key = quiz_pages(sources["quiz"].read_text(encoding="utf-8"))
        runs.write_atomic(staging / "quiz.html", sheet)
        runs.write_atomic(staging / "quiz-answer-key.html", key)
        if destination.exists():  # a rebuild replaces the old build as a whole (it is generated, nothing else)
            old = destination.with_name(f".{destination.name}.old")
            destination.rename(old)
            runs.publish_folder(staging, destination)
            shutil.rmtree(old, ignore_errors=True)
        else:
            runs.publish_folder(staging, destination)
    made = Materials(folder=destination, slides=destination / "slides" / "talk.slides.html",
                     glossary=destination / "glossary.html", quiz=destination / "quiz.html",
                     answer_key=destination / "quiz-answer-key.html",
                     figures={name: destination / "figures" / path.name for name, path in figures.items()},
                     notes=notes)
    for note in notes:
        echo(note)
    echo(f"Materials in {destination}: slides/talk.slides.html (offline; press S for the speaker notes), "
         "glossary.html and quiz.html (print them), quiz-answer-key.html (for you only), figures/.")
    return made


__all__ = ["Materials", "MaterialsError", "build", "draw_figures", "glossary_page", "quiz_pages", "read_quiz",
           "reveal_wheel", "talk_notebook"]
