"""The oldest supported TensorFlow/Keras pair, and Colab played as closely as this machine allows.

These run in `make compat` (CI's compatibility stage), which sets HELLO_DL_COMPAT=1 and runs
them with the virtual environment that holds the oldest pair (.ci/requirements-oldest.txt):

* the training notebook (04) headless on that stack;
* the Colab route: a FRESH virtual environment holding only what the platform ships (TensorFlow,
  Keras, numpy, matplotlib, ... at the oldest supported versions, no kit), Colab's marker
  variable set, the kit's wheel (built from this checkout) and the data archive served from
  127.0.0.1; notebooks 00 → 02 run headless there, each in a fresh kernel, and their install cell
  installs the kit and what is missing without touching anything the platform had;
* an out-of-range TensorFlow (an environment whose package metadata says 2.15, which is all the
  check reads: it never imports TensorFlow) gets the plain refusal in the notebook, and nothing
  is installed or replaced.

What cannot be played here: Colab's and Kaggle's real images, GPUs, Google Drive and the
ImageNet weights download (no internet). The smoke profile runs without pretrained weights.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from hello_dl import cloud
from conftest import build_zip

ROOT = Path(__file__).resolve().parents[1]
OLDEST = ROOT / ".ci" / "requirements-oldest.txt"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
#: What Colab and Kaggle have before the kit arrives (pydicom, nbclient, ... are left out on purpose).
PLATFORM_PACKAGES = ["tensorflow", "keras", "numpy", "matplotlib", "pillow", "scikit-learn", "tqdm", "psutil",
                     "requests", "ipykernel"]
KERNEL = "hello-dl-played-platform"
SNAPSHOT = ("import importlib.metadata as m, json, os\n"
            "rows = {}\n"
            "for d in m.distributions():\n"
            "    record = os.path.join(str(getattr(d, '_path', '')), 'RECORD')\n"
            "    rows[d.metadata['Name'].lower()] = [d.version, os.stat(record).st_mtime_ns if os.path.exists(record) else 0]\n"
            "print(json.dumps(rows))\n")

pytestmark = [
    pytest.mark.compat,
    pytest.mark.skipif(os.environ.get("HELLO_DL_COMPAT") != "1",
                       reason="runs in `make compat` (the oldest supported TensorFlow/Keras pair; HELLO_DL_COMPAT=1)"),
]


def fresh_venv(folder: Path, packages: list[str]) -> Path:
    """A new virtual environment with ``packages`` at the oldest supported versions; returns its python."""
    venv.EnvBuilder(with_pip=True).create(folder)
    python = folder / "bin" / "python"
    wheels = os.environ.get("HELLO_DL_COMPAT_WHEELS")
    source = ["--no-index", "--find-links", wheels] if wheels and Path(wheels).is_dir() else []
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *source,
                    "--constraint", str(OLDEST), *packages], check=True)
    return python


def snapshot(python: Path) -> dict[str, list]:
    """Every installed distribution: version and when its RECORD was written (a reinstall rewrites it)."""
    return json.loads(subprocess.run([str(python), "-c", SNAPSHOT], check=True, capture_output=True,
                                     text=True).stdout)


def kit_wheel(destination: Path) -> Path:
    """A wheel of this checkout, built from a clean copy (the checkout gets no build/ folder)."""
    source = destination.parent / "kit-source"
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    (source / "data").mkdir()
    shutil.copy(ROOT / "data" / "MANIFEST.sha256", source / "data")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(destination), str(source)], check=True)
    return next(destination.glob("hello_dl-*.whl"))


def with_install_cell(path: Path, destination: Path) -> Path:
    """The notebook as a participant opens it; until a notebook carries the install cell itself it
    is put in front, as `make badges` does."""
    notebook = nbformat.read(path, as_version=4)
    if not any(cell.get("id") == cloud.INSTALL_CELL_ID for cell in notebook.cells):
        cell = nbformat.v4.new_code_cell(cloud.install_cell(PROJECT["urls"]["Repository"], PROJECT["version"],
                                                            path.stem[:2]))
        cell.id = cloud.INSTALL_CELL_ID
        notebook.cells.insert(1, cell)
    destination.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, destination / path.name)
    return destination / path.name


def run(notebook_path: Path, python: Path, env: dict[str, str], jupyter: Path):
    """Execute a notebook in a fresh kernel of ``python`` (cwd: its folder); return (notebook, error)."""
    spec = jupyter / "kernels" / KERNEL
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "played platform", "language": "python"}))
    notebook = nbformat.read(notebook_path, as_version=4)
    client = NotebookClient(notebook, kernel_name=KERNEL, timeout=900, startup_timeout=120,
                            resources={"metadata": {"path": str(notebook_path.parent)}})
    previous = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = str(jupyter)  # nbclient finds the kernel spec here first
    try:
        client.execute(env=env, cwd=str(notebook_path.parent))
        error = None
    except CellExecutionError as exc:
        error = exc
    finally:
        if previous is None:
            os.environ.pop("JUPYTER_PATH", None)
        else:
            os.environ["JUPYTER_PATH"] = previous
    return notebook, error


def outputs_of(cell) -> str:
    """Everything a cell showed: printed text, rich text (e.g. Keras' model summary), error messages."""
    return "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") + "\n".join(o.get("traceback", []))
                   for o in cell.get("outputs", []))


def kernel_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HELLO_DL_", "COLAB_", "KAGGLE_", "JUPYTER_"))}
    env.update(values)
    return env


def install_cell_of(notebook):
    return next(cell for cell in notebook.cells if cell.get("id") == cloud.INSTALL_CELL_ID)


# --- the training notebook on the oldest pair --------------------------------------------------------
def test_the_training_notebook_runs_headless_on_this_stack(shared_dataset, tmp_path):
    from hello_dl.cloud import platform_versions

    oldest = {line.split("==")[0]: line.split("==")[1] for line in OLDEST.read_text().split() if "==" in line}
    assert platform_versions() == {"tensorflow": oldest["tensorflow"], "keras": oldest["keras"]}, \
        "make compat runs this with the oldest supported pair"
    env = kernel_env(HELLO_DL_PROFILE="smoke", HELLO_DL_HOME=str(ROOT), HELLO_DL_DATA_SOURCE=str(shared_dataset),
                     HELLO_DL_DATA_DIR=str(tmp_path / "data" / "open_i_abd_vs_cxr"),
                     HELLO_DL_OUTPUT_DIR=str(tmp_path / "outputs"))
    lesson = tmp_path / "lesson"
    lesson.mkdir()
    shutil.copy(ROOT / "notebooks" / "04_train.ipynb", lesson)
    executed, error = run(lesson / "04_train.ipynb", Path(sys.executable), env, tmp_path / "jupyter")
    assert error is None, str(error)[-3000:]
    runs = [p for p in (tmp_path / "outputs").iterdir() if p.is_dir() and p.name.endswith("_smoke")]
    assert runs and any((run / "metrics.json").is_file() for run in runs), "04 must leave a finished run"


# --- Colab, played ---------------------------------------------------------------------------------
@pytest.fixture
def served(tmp_path, shared_dataset, http_server):
    """The kit's wheel and the data archive on a web server at 127.0.0.1."""
    folder = tmp_path / "served"
    wheel = kit_wheel(folder)
    archive = build_zip(shared_dataset, folder / "Open_I_abd_vs_CXRs.zip")
    base = http_server(folder)
    return {"kit": f"{base}/{wheel.name}", "data": f"{base}/{archive.name}"}


def test_colab_route_from_a_fresh_platform_environment(tmp_path, served):
    platform = tmp_path / "platform"
    try:
        python = fresh_venv(platform, PLATFORM_PACKAGES)
        before = snapshot(python)
        assert "hello-dl" not in before and "pydicom" not in before  # the kit is not there yet
        content = tmp_path / "content"  # Colab's working folder
        home = content / "hello-dl"
        env = kernel_env(COLAB_RELEASE_TAG="release-colab-played", HELLO_DL_KIT_SOURCE=served["kit"],
                         HELLO_DL_DATA_SOURCE=served["data"], HELLO_DL_HOME=str(home), HELLO_DL_PROFILE="smoke")
        printed = {}
        for name in ("00_hello_world_and_setup", "01_data_and_split", "02_build_model"):
            path = with_install_cell(ROOT / "notebooks" / f"{name}.ipynb", content)
            executed, error = run(path, python, env, tmp_path / "jupyter")
            keep = ROOT / "test-output" / "cloud"  # the executed notebooks, for a person to look at
            keep.mkdir(parents=True, exist_ok=True)
            nbformat.write(executed, keep / f"colab-played-{name}.ipynb")
            assert error is None, f"{name}: {str(error)[-3000:]}"
            printed[name] = outputs_of(install_cell_of(executed))
            printed[name + " (all)"] = "".join(outputs_of(cell) for cell in executed.cells if cell.cell_type == "code")
        after = snapshot(python)
    finally:
        shutil.rmtree(platform, ignore_errors=True)  # ~2 GB

    first = printed["00_hello_world_and_setup"]
    assert "Installing what the kit still needs" in first and "pydicom" in first
    assert f"the platform's own TensorFlow {before['tensorflow'][0]} and Keras {before['keras'][0]}" in first
    assert "Ready on Google Colab" in first
    assert "restart" not in first.lower()  # nothing loaded was replaced, so nobody is sent to restart
    assert "Everything else the kit needs is already here" in printed["01_data_and_split"]
    assert "Total params" in printed["02_build_model (all)"]  # 02 built the model
    changed = {name: (before[name], after.get(name)) for name in before if after.get(name) != before[name]}
    assert not changed, f"the install changed packages the platform had: {changed}"
    assert after["hello-dl"][0] == PROJECT["version"] and "pydicom" in after
    assert (home / "data" / "MANIFEST.sha256").is_file()  # from the installed wheel
    assert (home / "data" / "open_i_abd_vs_cxr" / "TRAIN").is_dir()  # downloaded from 127.0.0.1, verified


def test_an_unsupported_tensorflow_is_refused_plainly_in_the_notebook(tmp_path, served):
    platform = tmp_path / "old-platform"
    python = fresh_venv(platform, ["ipykernel"])
    site = next((platform / "lib").glob("python3*/site-packages"))
    for name in ("tensorflow", "keras"):  # what the metadata of an old image says; the check reads only that
        info = site / f"{name}-2.15.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 2.15.0\n")
        (info / "RECORD").write_text("")
    before = snapshot(python)
    env = kernel_env(COLAB_RELEASE_TAG="release-colab-played", HELLO_DL_KIT_SOURCE=served["kit"],
                     HELLO_DL_HOME=str(tmp_path / "content" / "hello-dl"))
    path = with_install_cell(ROOT / "notebooks" / "00_hello_world_and_setup.ipynb", tmp_path / "content")
    executed, error = run(path, python, env, tmp_path / "jupyter")
    assert error is not None and error.ename == "CloudSetupError", "the notebook must stop at the install cell"
    (ROOT / "test-output" / "cloud").mkdir(parents=True, exist_ok=True)
    nbformat.write(executed, ROOT / "test-output" / "cloud" / "colab-played-refusal.ipynb")
    cell = install_cell_of(executed)
    errors = [o for o in cell.outputs if o.output_type == "error"]
    shown = "\n".join(errors[0].traceback)
    assert "TensorFlow 2.15.0, Keras 2.15.0" in shown and "How to fix it" in shown
    assert "Traceback" not in shown and 'File "' not in shown  # the message only, no traceback
    after = snapshot(python)
    assert {k: v for k, v in after.items() if k != "hello-dl"} == before  # nothing replaced or added
