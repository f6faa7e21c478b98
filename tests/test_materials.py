"""The instructor's materials build from the repository: offline slides, a one-page glossary, the quiz."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hello_dl import materials
from hello_dl.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]
#: The reveal.js wheel is fetched from PyPI once and kept here (inside the venv), like pip's own cache.
CACHE = Path(sys.prefix) / "share" / "hello-dl" / "wheels"
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def built(tmp_path_factory, fetched_dataset):
    folder = tmp_path_factory.mktemp("materials") / "build"
    settings = load_settings("smoke", environ={}, data_source=str(fetched_dataset), data_dir=str(fetched_dataset),
                             output_dir=str(folder.parent / "outputs"))
    printed: list[str] = []
    made = materials.build(folder, settings, cache=CACHE, echo=printed.append)
    return made, printed


def test_the_slides_hold_every_slide_the_figures_and_the_notes_and_need_no_internet(built):
    made, printed = built
    page = made.slides.read_text(encoding="utf-8")
    talk = (ROOT / "materials" / "talk.md").read_text(encoding="utf-8")
    for title in re.findall(r"^#{1,2} (.+)$", talk, re.MULTILINE):
        assert title.split(" · ")[-1].split(",")[0] in page.replace("&quot;", '"'), title
    assert page.count("<section") >= len(re.findall(r"^---\s*$", talk, re.MULTILINE)) + 1
    assert page.count("data:image/png;base64,") >= 3 and 'alt="one_picture"' in page  # embedded, the picture first
    assert page.count('class="notes"') >= 5  # speaker notes (press S)
    referenced = re.findall(r'<(?:script|link|img)[^>]+(?:src|href)="([^"]+)"', page)
    remote = [url for url in referenced if re.match(r"(https?:)?//", url)]
    assert remote == [], f"the slides would fetch {remote} during the session"
    local = [url for url in referenced if not url.startswith("data:")]
    assert local and all((made.slides.parent / url).is_file() for url in local), local
    reveal = (made.slides.parent / "reveal.js" / "dist" / "reveal.js").read_text(encoding="utf-8")
    assert reveal.startswith("/*!\n * reveal.js 5.") and "Reveal.initialize" in page
    assert any("groups slide has no curves" in line for line in printed)  # no reference runs here: said so


def test_the_figures_are_the_kits_own(built):
    from PIL import Image

    made, _ = built
    assert set(made.figures) == {"one_picture", "sample_grid", "image_sizes"}
    for path in made.figures.values():
        with Image.open(path) as image:
            assert image.format == "PNG" and image.width > 600


def test_the_glossary_is_one_printable_page_with_every_term(built, tmp_path):
    made, _ = built
    page = made.glossary.read_text(encoding="utf-8")
    source = (ROOT / "notebooks" / "GLOSSARY.md").read_text(encoding="utf-8")
    terms = re.findall(r"^\*\*([^*]+)\*\*:", source, re.MULTILINE)
    assert len(terms) >= 12
    for term in terms:
        assert f"<strong>{term}</strong>" in page, term
    assert "size: A4" in page and "column-count: 2" in page
    if not CHROMIUM.exists():
        pytest.skip(f"one page is checked by printing with Chromium, not installed at {CHROMIUM}")
    pdf = tmp_path / "glossary.pdf"
    subprocess.run([str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--no-pdf-header-footer",
                    f"--print-to-pdf={pdf}", made.glossary.as_uri()], check=True, capture_output=True, timeout=120)
    pages = len(re.findall(rb"/Type\s*/Page[^s]", pdf.read_bytes()))
    assert pages == 1, f"the glossary prints on {pages} pages"


def test_the_quiz_sheet_has_no_answers_and_the_key_has_them_all(built):
    made, _ = built
    title, questions = materials.read_quiz((ROOT / "materials" / "quiz.md").read_text(encoding="utf-8"))
    assert 6 <= len(questions) <= 10
    sheet, key = made.quiz.read_text(encoding="utf-8"), made.answer_key.read_text(encoding="utf-8")
    for question in questions:
        assert question.text.split(" ")[2] in sheet and question.why not in sheet
        right = next(option for option in question.options if option.startswith(question.answer))
        assert f"Answer: {right}" in key.replace("&#x27;", "'").replace("&quot;", '"')
    assert "Answer:" not in sheet and "answer key (instructor only)" in key
    assert sheet.count('class="question"') == len(questions) and "before:" in sheet and "after:" in sheet


def test_a_malformed_quiz_question_is_refused_with_what_it_needs():
    text = "# Quiz\n\n## 1. A question?\n- a) yes\n- b) no\nAnswer: c\nWhy: because.\n"
    with pytest.raises(materials.MaterialsError, match="'Answer:' that names one of them"):
        materials.read_quiz(text)


def test_a_rebuild_replaces_the_old_build_whole(built, fetched_dataset):
    made, _ = built
    (made.folder / "stale.txt").write_text("from an old build")
    settings = load_settings("smoke", environ={}, data_source=str(fetched_dataset), data_dir=str(fetched_dataset),
                             output_dir=str(made.folder.parent / "outputs"))
    again = materials.build(made.folder, settings, cache=CACHE, echo=lambda line: None)
    assert again.slides.is_file() and not (made.folder / "stale.txt").exists()
    assert [p.name for p in made.folder.parent.iterdir() if p.name.startswith(".")] == []


def test_make_materials_is_the_one_target(tmp_path):
    text = (ROOT / "Makefile").read_text()
    assert re.search(r"^materials: \$\(STAMP\)\n\t\$\(BIN\)/python scripts/build_materials\.py", text, re.MULTILINE)
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    assert "scripts/build_materials.py" in dockerfile and "COPY --chown=${NB_USER}:${NB_USER} materials/ materials/" in dockerfile
    assert shutil.which("make") is None or subprocess.run(["make", "-n", "materials"], cwd=ROOT, capture_output=True,
                                                           text=True).returncode == 0


def test_the_docker_image_ships_the_student_edition_and_the_materials():
    """The Dockerfile copies the student edition as notebooks/, the instructor edition and the materials'
    sources into materials/, builds them there; .dockerignore keeps the sources in the build context
    (only an old local build stays out). CI's docker-smoke then checks the built image holds them."""
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    assert "COPY --chown=${NB_USER}:${NB_USER} editions/student/ notebooks/" in dockerfile
    assert "COPY editions/student/ /opt/hello-dl/notebooks/" in dockerfile
    assert "COPY --chown=${NB_USER}:${NB_USER} editions/instructor/ materials/instructor-notebooks/" in dockerfile
    assert not re.search(r"^COPY[^\n]* notebooks/ (/opt/hello-dl/)?notebooks/", dockerfile, re.MULTILINE), \
        "the source notebooks (with the answers) must not become the participants' notebooks"
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    for needed in ("editions", "editions/student", "materials", "materials/talk.md", "materials/quiz.md",
                   "notebooks", "notebooks/GLOSSARY.md"):
        assert needed not in ignored and needed + "/" not in ignored, f".dockerignore leaves out {needed}"
    assert "materials/build" in ignored
    smoke = (ROOT / ".ci" / "docker-smoke").read_text()
    assert "materials/build/slides/talk.slides.html" in smoke and "materials/build/quiz-answer-key.html" in smoke
