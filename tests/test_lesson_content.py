"""What the lessons teach (issue 12): the glossary and its links, honest answers, the corrections.

The notebooks' execution (and the figures, intervals and model card it produces) is checked in
test_notebooks.py; here the stored notebooks and the glossary page are read as text.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import numpy as np
import pytest

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
GLOSSARY = NOTEBOOKS_DIR / "GLOSSARY.md"

#: The terms issue 12 asks every lesson to explain (glossary anchors).
TERMS = ["batch-and-batch-size", "learning-rate", "adam", "binary-cross-entropy", "convolution", "pooling",
         "feature-map", "sigmoid", "auc", "overfitting-and-underfitting", "hyperparameter"]


def prose(path: Path) -> str:
    return "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown")


def code(path: Path) -> str:
    return "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")


def answers(path: Path) -> list[str]:
    return re.findall(r"<details><summary>Answer</summary>(.*?)</details>", prose(path), re.DOTALL)


ENTRY = re.compile(r'^<a id="([^"]+)"></a>\n\*\*([^*]+)\*\*: (.+?)(?=\n\n|\Z)', re.MULTILINE | re.DOTALL)


def slug(heading: str) -> str:
    """The anchor GitHub and most Markdown viewers give a heading."""
    return re.sub(r"[^a-z0-9 -]", "", heading.strip().lower()).replace(" ", "-")


def glossary_entries() -> dict[str, str]:
    """anchor -> text of every entry: ``<a id="slug"></a>`` on the line above ``**Term**: two sentences. (0N)``.

    (The printable page of the materials reads the same ``**Term**:`` paragraphs.)
    """
    entries = {}
    for anchor, heading, body in ENTRY.findall(GLOSSARY.read_text()):
        assert anchor == slug(heading), f"{heading!r}: anchor {anchor!r} != {slug(heading)!r}"
        assert anchor not in entries, f"{heading!r} twice"
        entries[anchor] = " ".join(body.split())
    return entries


def test_the_glossary_explains_every_term_in_two_plain_sentences():
    entries = glossary_entries()
    assert set(TERMS) <= set(entries), sorted(set(TERMS) - set(entries))
    for anchor, body in entries.items():
        text = re.sub(r"\(\d\d\)$", "", body).strip()  # the notebook where it first appears
        sentences = [s for s in re.split(r"(?<=[.!?])\s+", text) if s]
        assert 2 <= len(sentences) <= 3, f"{anchor}: {len(sentences)} sentences"
        assert re.search(r"\(0[0-7]\)$", body), f"{anchor}: say in which notebook it first appears"
    text = GLOSSARY.read_text()
    headings = re.findall(r"^\*\*([^*]+)\*\*:", text, re.MULTILINE)
    assert len(headings) == len(entries) == text.count('<a id="')  # every entry has its anchor line
    assert headings == sorted(headings, key=str.lower)  # alphabetical, so things can be looked up in it


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_notebook_links_to_the_glossary_and_every_link_resolves(path):
    text = prose(path)
    links = re.findall(r"\]\(GLOSSARY\.md(#[^)]*)?\)", text)
    assert links, f"{path.name} never links to the glossary"
    anchors = set(glossary_entries())
    for fragment in links:
        assert not fragment or fragment[1:] in anchors, f"{path.name}: GLOSSARY.md{fragment} does not exist"


def test_each_term_is_explained_where_the_lessons_use_it():
    """Every term of the issue is linked to its glossary entry from the lesson text, with words around it."""
    linked = {}
    for path in NOTEBOOKS:
        for match in re.finditer(r"\]\(GLOSSARY\.md#([a-z0-9-]+)\)", prose(path)):
            linked.setdefault(match.group(1), path.stem[:2])
    missing = [term for term in TERMS if term not in linked]
    assert not missing, f"never linked from a lesson: {missing}"
    # The training words are explained in 04 (where training happens), the network's words in 02.
    assert {linked[t] for t in ("batch-and-batch-size", "adam", "binary-cross-entropy", "hyperparameter")} == {"04"}
    assert {linked[t] for t in ("convolution", "pooling", "feature-map", "sigmoid")} == {"02"}


# Claims that the validation set measures (tests) the model on new images; no answer may make them.
VALIDATION_AS_TEST = [
    r"\btest(s|ed|ing)?\b",  # lower case: "validation ... tests"; the TEST folder is written in capitals
    r"first real measurement",
    r"measures? how well",
    r"best guess for how the model does",
    r"how (well )?(it|the (network|model)) does on new images",
]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_answer_claims_the_validation_set_tests_the_model(path):
    for answer in answers(path):
        for sentence in re.split(r"(?<=[.;!?])\s+", answer):
            if "validation" not in sentence.lower():
                continue
            claim = re.sub(r"\bnot (a|the) test\b|\ba (real |separate )?test (image|set)s?\b", "", sentence)
            for pattern in VALIDATION_AS_TEST:
                assert not re.search(pattern, claim), f"{path.name}: {sentence!r} matches {pattern!r}"
    assert "first real measurement" not in prose(path)


def test_the_three_roles_are_taught_where_the_sets_appear():
    first = prose(NOTEBOOKS[0])
    assert all(word in first for word in ("**training** images teach", "**validation** images choose",
                                          "**test** images report", "only **2**"))
    for number in ("00", "04"):
        (path,) = [p for p in NOTEBOOKS if p.stem.startswith(number)]
        assert any(re.search(r"\bchoose|\bchose|\bchoosing", a) for a in answers(path)), number
        assert any("not a test" in a or "TEST" in a for a in answers(path)), number


def test_the_papers_references_are_the_papers():
    evaluation = prose(next(p for p in NOTEBOOKS if p.stem.startswith("06")))
    assert "Figures 10 and 11" in evaluation and "Figure 5" not in evaluation  # test inference, not the code
    augmentation = prose(next(p for p in NOTEBOOKS if p.stem.startswith("03")))
    assert "Figure 5" in augmentation  # the augmentation code
    assert "radians" in augmentation and "fraction" in augmentation and "Keras 2.1" in augmentation
    assert "L side marker is mirrored" in augmentation
    assert "learn what stays the same: the anatomy" not in augmentation
    explain = prose(next(p for p in NOTEBOOKS if p.stem.startswith("07")))
    assert "Figure 13" not in explain  # a figure number nobody checked is not cited


def test_the_lessons_call_the_sigmoid_output_a_score():
    for path in NOTEBOOKS:
        text = prose(path)
        for claim in re.findall(r"[^.]*\bprobability\b[^.]*\.", text):
            assert re.search(r"not (a )?calibrated|calibrat|not read|not a probability", claim), \
                f"{path.name} calls the output a probability without the caveat: {claim.strip()!r}"


def test_surprising_results_get_a_when_it_looks_wrong_prompt():
    for number in ("05", "06", "07"):
        (path,) = [p for p in NOTEBOOKS if p.stem.startswith(number)]
        assert "**When the result looks wrong**" in prose(path), number


def test_the_experiments_have_ready_cells_that_need_no_code():
    evaluation = code(next(p for p in NOTEBOOKS if p.stem.startswith("06")))
    assert "THRESHOLD = 0.5" in evaluation and "interactive.threshold_explorer(validation, THRESHOLD)" in evaluation
    assert "modelcard.show(run)" in evaluation and "evaluate.predictive_values(" in evaluation
    explain = code(next(p for p in NOTEBOOKS if p.stem.startswith("07")))
    assert "TRY_PADDING = False" in explain and "retrain=TRY_PADDING" in explain  # off in a headless run
    assert "explain.feature_maps_file(" in explain and "plots.plot_feature_maps(" in explain


def test_the_windowing_demo_shows_what_it_claims(tmp_path):
    """The phantom has lung detail only the lung window shows, and soft tissue only the soft-tissue window separates."""
    import pydicom

    from hello_dl import dicom

    path = dicom.ct_phantom(tmp_path / "phantom.dcm")
    assert dicom.ct_phantom(path) == path and path.read_bytes() == dicom.ct_phantom(tmp_path / "b.dcm").read_bytes()
    ct = pydicom.dcmread(path)
    assert ct.Modality == "CT" and (ct.RescaleSlope, ct.RescaleIntercept) == (1, -1024)
    hounsfield = pydicom.pixels.apply_modality_lut(ct.pixel_array, ct)
    expected = dicom.phantom_hounsfield()
    np.testing.assert_allclose(hounsfield, expected)
    lung = dicom.window_to_unit(hounsfield, centre=-600, width=1500)
    soft = dicom.window_to_unit(hounsfield, centre=40, width=400)
    in_lung = (expected > -1000) & (expected < -300)  # lung, bulla, ground glass, fine vessels
    tissue = (expected > -200) & (expected < 300)  # fat, muscle, heart, vessels
    assert in_lung.sum() > 5000 and tissue.sum() > 5000
    assert lung[in_lung].std() > 0.05 and soft[in_lung].max() == 0.0  # lung detail: only in the lung window
    assert soft[tissue].std() > 2 * lung[tissue].std()  # fat vs muscle: far clearer in the soft-tissue window
    image = dicom.read_dicom(path)
    assert image.window == (40.0, 400.0) and image.display.shape == (256, 256)
