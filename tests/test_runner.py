"""The headless notebook runner (runner.run_all) and the JupyterLab launcher (scripts/lab.py).

Real kernels run tiny notebooks the tests write into a temporary folder; the lesson notebooks
themselves are executed in test_notebooks.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import pytest
from PIL import Image

from hello_dl import runner
from hello_dl.settings import load_settings

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def write_notebook(path: Path, *sources: str) -> Path:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_markdown_cell(f"# {path.stem}")]
    notebook.cells += [nbformat.v4.new_code_cell(source) for source in sources]
    nbformat.write(notebook, path)
    return path


@pytest.fixture
def tiny_lessons(tmp_path):
    """Two lessons: one reads the settings the runner handed over and draws a figure, one 'trains'."""
    folder = tmp_path / "lessons"
    folder.mkdir()
    write_notebook(
        folder / "00_first.ipynb",
        "import os\nfrom hello_dl.settings import load_settings\nsettings = load_settings()",
        "print('profile', settings.profile, 'size', settings.image_size, 'from', settings.sources['image_size'])\n"
        "print('cwd', os.getcwd())",
        "import matplotlib.pyplot as plt\nfig, ax = plt.subplots()\nax.plot([0, 1], [1, 0])\nplt.show()",
    )
    write_notebook(
        folder / "01_second.ipynb",
        "import json\nfrom hello_dl.settings import load_settings\nsettings = load_settings()\n"
        "run = settings.output_dir / 'run-x'\nrun.mkdir(parents=True, exist_ok=True)\n"
        "(run / 'metrics.json').write_text(json.dumps({'val_accuracy': settings.image_size / 100}))",
    )
    (folder / "notes.ipynb").write_text("not a numbered lesson, never run")
    return folder


def test_notebooks_are_found_in_number_order(tiny_lessons):
    write_notebook(tiny_lessons / "10_last.ipynb", "pass")
    names = [p.name for p in runner.notebook_paths(tiny_lessons)]
    assert names == ["00_first.ipynb", "01_second.ipynb", "10_last.ipynb"]


def test_missing_or_empty_notebook_folder_is_a_clear_error(tmp_path):
    with pytest.raises(runner.TutorialError, match="does not exist"):
        runner.notebook_paths(tmp_path / "nowhere")
    with pytest.raises(runner.TutorialError, match="No numbered notebooks"):
        runner.notebook_paths(tmp_path)


def test_kernel_gets_exactly_the_chosen_settings(tmp_path):
    settings = load_settings("smoke", environ={"HELLO_DL_IMAGE_SIZE": "99"}, participant="ada",
                             output_dir=str(tmp_path / "out"))
    stale = {"HELLO_DL_IMAGE_SIZE": "500", "HELLO_DL_DROPOUT": "0.9", "HELLO_DL_HOME": "/kit", "PATH": "/bin"}
    env = runner.kernel_environment(settings, base=stale)
    assert env["HELLO_DL_PROFILE"] == "smoke"
    assert env["HELLO_DL_IMAGE_SIZE"] == "99"
    assert env["HELLO_DL_PARTICIPANT"] == "ada"
    assert env["HELLO_DL_OUTPUT_DIR"] == str(tmp_path / "out")
    assert Path(env["HELLO_DL_DATA_DIR"]).is_absolute()
    assert "HELLO_DL_DROPOUT" not in env  # a stale shell variable must not leak into the kernel
    assert env["HELLO_DL_HOME"] == "/kit" and env["PATH"] == "/bin"  # non-knob variables pass through
    # The kernel rebuilds the same settings (the group from the participant, not a frozen copy).
    again = load_settings(environ=env)
    assert again.knobs() == settings.knobs()
    assert again.sources["dropout"].startswith("group:")


def test_run_all_writes_executed_notebooks_figures_and_summary(tiny_lessons, tmp_path):
    settings = load_settings("smoke", environ={}, output_dir=str(tmp_path / "out"), image_size=80)
    lines: list[str] = []
    summary = runner.run_all(settings, tiny_lessons, echo=lines.append)

    folder = summary.parent
    assert summary.name == "summary.md" and folder.parent == tmp_path / "out"
    assert folder.name.startswith("tutorial-")
    # progress: each notebook announced and finished, in order
    announced = [line for line in lines if line.startswith("[")]
    assert announced[0].startswith("[1/2] 00_first.ipynb") and "done in" in announced[1]
    assert announced[2].startswith("[2/2] 01_second.ipynb") and "done in" in announced[3]

    executed = nbformat.read(folder / "00_first.ipynb", as_version=4)
    printed = "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs)
    assert "profile smoke size 80 from env:HELLO_DL_IMAGE_SIZE" in printed
    assert f"cwd {tiny_lessons}" in printed  # the kernel runs inside the notebooks folder
    assert (folder / "01_second.ipynb").is_file()
    assert not (folder / "notes.ipynb").exists()
    # the sources are untouched: still without outputs
    assert all(not c.get("outputs") for c in nbformat.read(tiny_lessons / "00_first.ipynb", 4).cells
               if c.cell_type == "code")

    figures = sorted((folder / "figures").glob("*.png"))
    assert [f.name for f in figures] == ["00_first-00-first-1.png"]  # named after the section heading
    assert Image.open(figures[0]).size[0] > 100

    text = summary.read_text()
    assert "all notebooks ran without error" in text
    assert "| [00_first.ipynb](00_first.ipynb) | ok |" in text
    assert "| [01_second.ipynb](01_second.ipynb) | ok |" in text
    assert "val_accuracy: 0.8" in text  # the metrics file the second notebook wrote, read back
    assert "[00-first-1](figures/00_first-00-first-1.png)" in text

    # a second run gets its own folder; nothing of the first is overwritten
    second = runner.run_all(settings, tiny_lessons, echo=lines.append)
    assert second.parent != folder and summary.read_text() == text


def test_summary_shows_each_sets_headline_with_its_interval(tmp_path):
    metrics_file = tmp_path / "outputs" / "run" / "metrics.json"
    metrics_file.parent.mkdir(parents=True)
    headlines = ["validation set (10 images, 9 distinct): accuracy 9/10 (90%, 95% CI 60%–98%)",
                 "TEST set (2 images): accuracy 2/2 (100%, 95% CI 34%–100%)"]
    metrics_file.write_text(json.dumps({"val_accuracy": 0.9, "val_accuracy_ci95_low": 0.596, "headlines": headlines}))
    settings = load_settings("smoke", environ={}, output_dir=str(tmp_path / "outputs"))
    folder = tmp_path / "outputs" / "tutorial-x"
    folder.mkdir()
    metrics = runner.collect_metrics(tmp_path / "outputs", 0.0, exclude=folder)
    text = runner.write_summary(folder, settings, [], metrics, 1.0).read_text()
    section = text.split("## Metrics", 1)[1].split("## Figures", 1)[0]
    assert f"- {headlines[0]}" in section and f"- {headlines[1]}" in section
    assert section.index("95% CI 60%") < section.index("- val_accuracy: 0.9")  # intervals first, then every number
    assert "validation chooses" in section and "val_accuracy_ci95_low: 0.596" in section
    assert runner.metric_headlines(tmp_path / "missing.json") == []


def test_a_failing_cell_stops_the_run_and_names_notebook_and_cell(tiny_lessons, tmp_path):
    write_notebook(tiny_lessons / "01_second.ipynb",
                   "x = 1", "print('before the error')", "# a comment first\nvalue = 1 / 0", "print('never')")
    write_notebook(tiny_lessons / "02_third.ipynb", "print('must not run')")
    settings = load_settings("smoke", environ={}, output_dir=str(tmp_path / "out"))
    lines: list[str] = []
    with pytest.raises(runner.TutorialError) as caught:
        runner.run_all(settings, tiny_lessons, echo=lines.append)

    message = str(caught.value)
    assert "01_second.ipynb" in message
    assert "ZeroDivisionError" in message
    assert "cell 4 of 5" in message and "value = 1 / 0" in message
    assert any("01_second.ipynb FAILED" in line for line in lines)

    folder = next((tmp_path / "out").glob("tutorial-*"))
    assert not (folder / "02_third.ipynb").exists()  # the run stopped at the failure
    partial = nbformat.read(folder / "01_second.ipynb", as_version=4)
    outputs = [o for c in partial.cells if c.cell_type == "code" for o in c.outputs]
    assert any("before the error" in o.get("text", "") for o in outputs)
    assert any(o.get("ename") == "ZeroDivisionError" for o in outputs)
    summary = (folder / "summary.md").read_text()
    assert "FAILED in 01_second.ipynb" in summary and "**failed**" in summary


# --- scripts/lab.py ----------------------------------------------------------------------------
def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except urllib.error.URLError:  # not listening yet
        return 0


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_lab_always_requires_a_token_and_prints_it(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "JUPYTER_TOKEN"}
    env["JUPYTER_RUNTIME_DIR"] = str(tmp_path / "runtime")  # keep the server's files out of $HOME
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, str(PROJECT_ROOT / "scripts" / "lab.py"), "--no-browser", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    try:
        url = None
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            found = re.search(r"(http://127\.0\.0\.1:\d+/lab\?token=\S+)", line)
            url = found.group(1) if found else None
        assert url, "lab.py printed no address with a token"
        token = url.split("token=", 1)[1]
        assert len(token) >= 24
        base = f"http://127.0.0.1:{port}"
        while time.monotonic() < deadline and _get(f"{base}/api/status?token={token}") != 200:
            time.sleep(0.5)
        assert _get(f"{base}/api/status?token={token}") == 200
        assert _get(f"{base}/api/status") == 403  # no token, no access
        assert _get(f"{base}/api/status?token=wrong") == 403
        with urllib.request.urlopen(f"{base}/api/contents?token={token}", timeout=5) as response:
            root = json.loads(response.read())
        names = {item["name"] for item in root["content"]}  # the student edition, what participants open
        assert names == {p.name for p in (PROJECT_ROOT / "editions" / "student").iterdir() if not p.name.startswith(".")}
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_lab_uses_the_users_token_when_set():
    sys.path.insert(0, str(PROJECT_ROOT / "scripts"))
    try:
        import lab
    finally:
        sys.path.pop(0)
    assert lab.choose_token({"JUPYTER_TOKEN": "my-secret"}) == "my-secret"
    generated = lab.choose_token({"JUPYTER_TOKEN": "  "})
    assert len(generated) >= 24 and generated != lab.choose_token({})
    assert lab.browser_url("0.0.0.0", 8888, "t") == "http://127.0.0.1:8888/lab?token=t"
    command = lab.lab_command("127.0.0.1", 8888, open_browser=False)
    assert "--ServerApp.ip=127.0.0.1" in command and not any("token" in part.lower() for part in command)
