"""A participant's first minutes, end to end: JupyterLab in a real headless Chromium.

Headless execution (test_notebooks.py) proves the code runs; this proves a participant can open
JupyterLab, find the notebook in the file browser, run it from the Run menu and see the results.
JupyterLab serves a temporary copy of notebooks/, so no output ever lands in the committed notebooks;
data and results go to temporary folders. Screenshots and logs are kept in test-output/browser/,
also when a test fails.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import nbformat
import pytest
from PIL import Image

from browser_lab import CHROMIUM, EXECUTED_PROMPT, LabSession, running_chromium, running_jupyterlab

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PROJECT_ROOT = Path(__file__).resolve().parents[1]
BROWSER_OUTPUT = PROJECT_ROOT / "test-output" / "browser"
HELLO_NOTEBOOK = "00_hello_world_and_setup.ipynb"
DATA_NOTEBOOK = "01_data_and_split.ipynb"


def running_in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def expected_device_sentence() -> re.Pattern:
    # The CI machines have no GPU; on a GPU machine the report names the GPU(s) instead.
    if Path("/dev/nvidia0").exists():
        return re.compile(r"Running on (the GPU|\d+ GPUs)")
    return re.compile(r"Running on the CPU")


@pytest.fixture
def chromium() -> Path:
    if not CHROMIUM.exists():
        message = (f"Debian's Chromium is not installed at {CHROMIUM} "
                   "(apt-get install chromium fonts-dejavu-core; .ci/run does this)")
        if running_in_ci():
            pytest.fail(message)  # in CI a missing browser is a broken setup, not a reason to skip
        pytest.skip(message)
    return CHROMIUM


@pytest.fixture
def lab(chromium, shared_dataset, tmp_path, request):
    """JupyterLab on a copy of notebooks/ (smoke profile, temporary data and outputs), in a fresh Chromium tab."""
    notebooks = tmp_path / "notebooks"
    shutil.copytree(PROJECT_ROOT / "notebooks", notebooks)
    environment = {
        "HELLO_DL_PROFILE": "smoke",
        "HELLO_DL_DATA_SOURCE": str(shared_dataset),
        "HELLO_DL_DATA_DIR": str(tmp_path / "data" / "open_i_abd_vs_cxr"),
        "HELLO_DL_OUTPUT_DIR": str(tmp_path / "outputs"),
        "HELLO_DL_HOME": str(PROJECT_ROOT),
    }
    logs = BROWSER_OUTPUT / request.node.name
    with running_jupyterlab(notebooks, tmp_path, logs / "jupyterlab.log", environment) as server:
        # Jupyter never without a token: the same request without it is refused.
        assert server.api("/api/status", with_token=False)[0] == 403
        with running_chromium(tmp_path / "chromium-profile", logs / "chromium.log") as browser:
            context = browser.contexts[0]
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(60_000)
            session = LabSession(page, server)
            session.open_lab()
            yield session


def run_from_file_browser(lab: LabSession, notebook: str, screenshot: Path, timeout: float) -> list[str]:
    """Open a notebook from the left panel and run all its cells; the screenshot is saved even on failure."""
    try:
        lab.open_from_file_browser(notebook)
        lab.run_all_cells()
        return lab.wait_until_finished(timeout=timeout)
    finally:
        lab.save_screenshot(screenshot)


def run_cleanly(lab, notebook: str, name: str) -> Path:
    """Run ``notebook`` from the file browser: no error, every code cell run; returns its screenshot."""
    screenshot = BROWSER_OUTPUT / f"{name}.png"
    screenshot.unlink(missing_ok=True)
    prompts = run_from_file_browser(lab, notebook, screenshot, timeout=180)
    assert lab.error_outputs() == []
    assert prompts and all(EXECUTED_PROMPT.match(p) for p in prompts), f"code cells left unrun: {prompts}"
    return screenshot


@pytest.mark.timeout(300)
def test_participant_runs_the_hello_world_notebook_in_jupyterlab(lab):
    screenshot = run_cleanly(lab, HELLO_NOTEBOOK, "00_hello_world_and_setup")
    printed = [text.strip() for text in lab.stdout_texts()]
    assert "Hello, World!" in printed
    report = next((text for text in printed if text.startswith("Environment")), "")
    for line in (r"python\s+3\.", r"tensorflow\s+2\.", r"keras\s+3\.", r"profile\s+smoke",
                 expected_device_sentence().pattern):
        assert re.search(line, report), f"the environment report lacks {line!r}:\n{report}"
    # Shown on screen, not just present in the page.
    assert lab.stdout_outputs(re.compile(r"^\s*Hello, World!\s*$")).first.is_visible()
    assert lab.stdout_outputs(expected_device_sentence()).first.is_visible()
    # The screenshot shows the whole executed notebook, not just the first screenful.
    with Image.open(screenshot) as image:
        assert image.width >= 1200 and image.height > 1500, image.size


@pytest.mark.timeout(300)
def test_participant_sees_the_first_figure_of_the_data_notebook(lab):
    screenshot = run_cleanly(lab, DATA_NOTEBOOK, "01_data_and_split")
    figure = lab.first_output_image()
    figure.scroll_into_view_if_needed()
    assert figure.is_visible()
    assert figure.evaluate("img => img.complete && img.naturalWidth > 0 && img.naturalHeight > 0")
    box = figure.bounding_box()
    assert box and box["width"] > 200 and box["height"] > 100, f"the figure is drawn too small: {box}"
    assert screenshot.stat().st_size > 0


@pytest.mark.timeout(300)
def test_a_cell_error_is_caught_and_a_warning_is_not(lab):
    """The checks above can fail: a traceback is reported, text on stderr (a warning) is not, and a
    notebook without a kernel in its metadata gets one through JupyterLab's "Select Kernel" dialog."""
    broken = nbformat.v4.new_notebook()  # no kernelspec: JupyterLab asks which kernel to use
    broken.cells = [
        nbformat.v4.new_code_cell('print("before")'),
        nbformat.v4.new_code_cell('import warnings\nwarnings.warn("only a warning")'),
        nbformat.v4.new_code_cell("1 / 0"),
        nbformat.v4.new_code_cell('print("never printed")'),
    ]
    nbformat.write(broken, lab.root_dir / "zz_broken.ipynb")
    lab.open_lab()  # reload, so the file browser lists the new notebook

    prompts = run_from_file_browser(lab, "zz_broken.ipynb", BROWSER_OUTPUT / "self_check_cell_error.png", timeout=60)

    assert lab.kernel_chosen_in_dialog
    assert prompts == ["[1]:", "[2]:", "[3]:", "[ ]:"]  # Run All stopped at the error
    errors = lab.error_outputs()
    assert len(errors) == 1 and "ZeroDivisionError" in errors[0], errors
    stderr = lab.page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')
    assert any("only a warning" in text for text in stderr.all_text_contents())
    assert not any("only a warning" in text for text in errors)
    assert "never printed" not in " ".join(lab.stdout_texts())
