"""cloud: platform detection, the supported range, the install plan, data/weights/outputs on Colab
and Kaggle (attached datasets, Google Drive), links and the install cell, badges kept current.

The whole route on a played platform (a fresh virtual environment, the kit served from
127.0.0.1, notebooks run headless) is in test_cloud_platform.py.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tomllib
import types
from pathlib import Path

import nbformat
import pytest

from hello_dl import cloud
from hello_dl.cloud import CloudSetupError
from hello_dl.weights import WEIGHTS_FILE_NAME

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
REQUIREMENTS = PYPROJECT["project"]["dependencies"]
REPOSITORY = PYPROJECT["project"]["urls"]["Repository"]
VERSION = PYPROJECT["project"]["version"]
RANGE = cloud.supported_range(REQUIREMENTS)
SETTING_VARIABLES = ("HELLO_DL_HOME", "HELLO_DL_OUTPUT_DIR", "HELLO_DL_DATA_SOURCE", "HELLO_DL_WEIGHTS")


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        name, _, version = line.strip().partition("==")
        if version and not line.startswith("#"):
            found[name.lower().replace("_", "-")] = version
    return found


@pytest.fixture
def cloud_env(monkeypatch):
    """Whatever prepare() writes into os.environ is undone after the test."""
    for key in SETTING_VARIABLES + tuple(cloud.PLATFORM_MARKERS.values()):
        monkeypatch.setenv(key, "x")
        monkeypatch.delenv(key)
    return monkeypatch


# --- where are we --------------------------------------------------------------------------------
def test_platforms_are_told_apart_by_their_marker_variables():
    assert cloud.detect({"COLAB_RELEASE_TAG": "release-colab_20250101-060000_RC00"}) == "colab"
    assert cloud.detect({"KAGGLE_KERNEL_RUN_TYPE": "Interactive", "KAGGLE_URL_BASE": "https://www.kaggle.com"}) == "kaggle"
    assert cloud.detect({"KAGGLE_KERNEL_RUN_TYPE": ""}) is None
    assert cloud.detect({"HOME": "/root", "JUPYTERHUB_USER": "seat-17"}) is None  # laptop, Docker, room server


def test_setup_does_nothing_off_the_cloud(cloud_env, capsys):
    assert cloud.setup("04") is None
    assert capsys.readouterr().out == ""
    assert cloud.main([]) == 0 and "nothing to do" in capsys.readouterr().out


# --- the supported range -------------------------------------------------------------------------
def test_the_range_spans_at_least_three_tensorflow_minor_releases_and_only_keras_3():
    tensorflow = dict(re.findall(r"(>=|<)(\d+\.\d+)", RANGE["tensorflow"]))
    low, high = (tuple(map(int, tensorflow[op].split("."))) for op in (">=", "<"))
    assert high[1] - low[1] >= 3, RANGE
    assert RANGE["keras"].count(">=3.") == 1, "the kit needs Keras 3"


def test_the_oldest_pair_ci_tests_is_the_low_end_of_the_range_and_the_pins_lie_inside():
    oldest = pins(ROOT / ".ci" / "requirements-oldest.txt")
    newest = pins(ROOT / "requirements.txt")
    for name in cloud.PLATFORM_STACK:
        low = re.search(r">=([\d.]+)", RANGE[name]).group(1)
        assert oldest[name].startswith(low + "."), f"{name}: CI's oldest {oldest[name]} is not the range's low end {low}"
        cloud.check_versions({"tensorflow": oldest["tensorflow"], "keras": oldest["keras"]}, RANGE)
        cloud.check_versions({"tensorflow": newest["tensorflow"], "keras": newest["keras"]}, RANGE)


@pytest.mark.parametrize("versions, named", [
    ({"tensorflow": "2.15.0", "keras": "2.15.0"}, "TensorFlow 2.15.0, Keras 2.15.0"),
    ({"tensorflow": "2.99.0", "keras": "3.15.1"}, "TensorFlow 2.99.0"),
    ({"tensorflow": None, "keras": None}, "TensorFlow not installed"),
])
def test_a_stack_outside_the_range_is_refused_plainly_with_the_fix(versions, named):
    with pytest.raises(CloudSetupError) as refused:
        cloud.check_versions(versions, RANGE, platform="colab")
    text = str(refused.value)
    assert named in text and "Google Colab" in text and "Nothing was installed or changed" in text
    assert "Runtime version: Latest" in text  # the platform's own fix first
    assert f'%pip install "tensorflow{RANGE["tensorflow"]}"' in text  # then the manual one
    assert "Traceback" not in text


def test_a_stack_inside_the_range_passes_and_prereleases_count():
    low = re.search(r">=([\d.]+)", RANGE["tensorflow"]).group(1)
    found = cloud.check_versions({"tensorflow": low + ".0", "keras": "3.15.1"}, RANGE)
    assert found == {"tensorflow": low + ".0", "keras": "3.15.1"}


# --- the install plan ----------------------------------------------------------------------------
PLATFORM = {"tensorflow": "2.19.0", "keras": "3.8.0", "numpy": "2.1.3", "matplotlib": "3.10.0",
            "pillow": "11.0.0", "ipykernel": "6.17.1", "pydicom": "2.4.4", "tqdm": "4.67.1"}


def test_the_plan_installs_only_what_is_missing_and_holds_everything_else():
    plan = cloud.plan_install(REQUIREMENTS, dict(PLATFORM), loaded=set())
    names = [re.split(r"[<>=!~ ;]", line)[0] for line in plan.install]
    assert "tensorflow" not in names and "keras" not in names and "numpy" not in names
    assert {"scikit-learn", "nbclient", "psutil"} <= set(names)
    assert "pydicom" in names and plan.upgrades == ["pydicom"]  # 2.4 is too old for the kit, not loaded yet
    assert "tensorflow==2.19.0" in plan.constraints and "numpy==2.1.3" in plan.constraints
    assert not any(line.startswith("pydicom==") for line in plan.constraints)


def test_a_too_old_package_already_loaded_asks_for_a_restart():
    with pytest.raises(CloudSetupError, match="Restart the session"):
        cloud.plan_install(REQUIREMENTS, dict(PLATFORM), loaded={"pydicom"})


def test_tensorflow_is_never_installed_by_the_kit_even_when_missing():
    plan = cloud.plan_install(REQUIREMENTS, {}, loaded=set())
    assert not any(line.startswith(("tensorflow", "keras")) for line in plan.install)


def test_nothing_missing_means_no_pip_at_all(capsys):
    plan = cloud.install_missing(cloud.InstallPlan(), echo=print)
    assert plan.install == [] and "already here" in capsys.readouterr().out


@pytest.mark.parametrize("from_dataset", [True, False])
def test_a_failed_install_is_a_plain_message(monkeypatch, tmp_path, from_dataset):
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # nothing to install from: pip fails, and no network is used
    plan = cloud.InstallPlan(install=["hello-dl-test-no-such-package==1.0"], constraints=[])
    with pytest.raises(CloudSetupError) as failed:
        cloud.install_missing(plan, wheels=tmp_path if from_dataset else None, echo=lambda text: None)
    text = str(failed.value)
    assert "hello-dl-test-no-such-package" in text and "Nothing that was already installed was changed" in text
    assert ("attached dataset" in text) if from_dataset else ("Internet on" in text)


# --- Kaggle: attached datasets ---------------------------------------------------------------------
@pytest.fixture
def kaggle_input(tmp_path, shared_dataset, inception_notop_h5):
    """/kaggle/input as a participant sees it with the kit's datasets attached (copies, read only)."""
    root = tmp_path / "input"
    shutil.copytree(shared_dataset, root / "open-i-abd-vs-cxr" / "Open_I_abd_vs_CXRs")
    (root / "inception-v3-notop").mkdir(parents=True)
    shutil.copyfile(inception_notop_h5, root / "inception-v3-notop" / WEIGHTS_FILE_NAME)
    earlier = root / "hello-dl-04-train" / "hello-dl" / "outputs" / "20260101-120000_smoke"
    earlier.mkdir(parents=True)
    (earlier / "history.json").write_text("{}")
    (root / "hello-dl-kit").mkdir()
    (root / "hello-dl-kit" / "hello_dl-0.1.0-py3-none-any.whl").write_bytes(b"PK")
    return root


def test_attached_datasets_are_found(kaggle_input):
    found = cloud.find_attached(kaggle_input)
    assert found["data"] == kaggle_input / "open-i-abd-vs-cxr" / "Open_I_abd_vs_CXRs"
    assert found["weights"].name == WEIGHTS_FILE_NAME
    assert found["outputs"] == kaggle_input / "hello-dl-04-train" / "hello-dl" / "outputs"
    assert found["kit"] == kaggle_input / "hello-dl-kit"


def test_the_search_is_bounded(tmp_path):
    deep = tmp_path.joinpath(*[f"level{i}" for i in range(cloud.SEARCH_DEPTH + 1)])
    (deep / "TRAIN").mkdir(parents=True)
    (deep / "VAL").mkdir()
    assert "data" not in cloud.find_attached(tmp_path)
    assert cloud.find_attached(tmp_path / "not-there") == {}


def test_kaggle_prepare_uses_the_attached_data_weights_and_results(cloud_env, kaggle_input, tmp_path, untouched):
    untouched(kaggle_input)
    home = tmp_path / "working" / "hello-dl"
    cloud_env.setenv("HELLO_DL_HOME", str(home))
    cloud_env.setenv("HELLO_DL_PROFILE", "smoke")
    cloud_env.setenv("HELLO_DL_WEIGHTS", "imagenet")  # the smoke profile would not use any
    cloud_env.delenv("HELLO_DL_WEIGHTS")
    prepared = cloud.prepare("05", platform="kaggle", kaggle_input=kaggle_input, echo=lambda text: None)
    assert os.environ["HELLO_DL_DATA_SOURCE"] == str(kaggle_input / "open-i-abd-vs-cxr" / "Open_I_abd_vs_CXRs")
    assert os.environ["HELLO_DL_WEIGHTS"].endswith(WEIGHTS_FILE_NAME)
    assert (home / "data" / "MANIFEST.sha256").read_bytes() == (ROOT / "data" / "MANIFEST.sha256").read_bytes()
    assert (home / "data" / "open_i_abd_vs_cxr" / "TRAIN").is_dir()  # fetched and verified into the home
    assert prepared.output_dir == home / "outputs"
    assert (home / "outputs" / "20260101-120000_smoke" / "history.json").is_file()
    assert any("Earlier results copied" in note for note in prepared.notes)
    again = cloud.prepare("05", platform="kaggle", kaggle_input=kaggle_input, echo=lambda text: None)
    assert not any("Earlier results copied" in note for note in again.notes)  # never copied twice


def test_explicit_settings_win_over_what_is_attached(cloud_env, kaggle_input, tmp_path, shared_dataset):
    cloud_env.setenv("HELLO_DL_HOME", str(tmp_path / "home"))
    cloud_env.setenv("HELLO_DL_DATA_SOURCE", str(shared_dataset))
    cloud_env.setenv("HELLO_DL_WEIGHTS", "none")
    cloud.prepare("00", platform="kaggle", kaggle_input=kaggle_input, fetch=False, echo=lambda text: None)
    assert os.environ["HELLO_DL_DATA_SOURCE"] == str(shared_dataset)
    assert os.environ["HELLO_DL_WEIGHTS"] == "none"


# --- Colab: results in Google Drive ---------------------------------------------------------------
@pytest.fixture
def colab_drive(monkeypatch, tmp_path):
    """Colab's drive module as the kit calls it (google.colab exists only on Colab)."""
    calls = []

    def mount(path):
        calls.append(path)
        if "refuse" in calls[0]:
            raise ValueError("mount failed")
        (Path(path) / "MyDrive").mkdir(parents=True)

    drive = types.SimpleNamespace(mount=mount)
    colab = types.ModuleType("google.colab")
    colab.drive = drive
    google = types.ModuleType("google")
    google.colab = colab
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    return calls


def test_colab_keeps_the_results_of_04_to_07_in_drive(cloud_env, colab_drive, tmp_path, monkeypatch):
    monkeypatch.setattr(cloud, "COLAB_DRIVE", tmp_path / "drive")
    cloud_env.setenv("HELLO_DL_HOME", str(tmp_path / "content" / "hello-dl"))
    lines = []
    prepared = cloud.prepare("04", platform="colab", fetch=False, echo=lines.append)
    assert colab_drive == [str(tmp_path / "drive")]
    assert prepared.output_dir == tmp_path / "drive" / "MyDrive" / "hello-dl" / "outputs"
    assert "Google Drive" in lines[0]
    cloud.prepare("05", platform="colab", fetch=False, echo=lines.append)
    assert len(colab_drive) == 1  # mounted already: not asked again


def test_colab_without_drive_keeps_results_locally_and_says_so(cloud_env, colab_drive, tmp_path, monkeypatch):
    monkeypatch.setattr(cloud, "COLAB_DRIVE", tmp_path / "refuse")
    cloud_env.setenv("HELLO_DL_HOME", str(tmp_path / "content" / "hello-dl"))
    prepared = cloud.prepare("06", platform="colab", fetch=False, echo=lambda text: None)
    assert prepared.output_dir == tmp_path / "content" / "hello-dl" / "outputs"
    assert any("next notebook will not see them" in note for note in prepared.notes)


def test_colab_lessons_without_results_do_not_ask_for_drive(cloud_env, colab_drive, tmp_path, monkeypatch):
    monkeypatch.setattr(cloud, "COLAB_DRIVE", tmp_path / "drive")
    cloud_env.setenv("HELLO_DL_HOME", str(tmp_path / "content" / "hello-dl"))
    cloud.prepare("01", platform="colab", fetch=False, echo=lambda text: None)
    assert colab_drive == []


# --- links and the install cell --------------------------------------------------------------------
def test_links_point_at_the_release_of_the_repository():
    links = cloud.notebook_links("https://github.com/someone/hello-dl-fork.git", "1.2.0", "notebooks/04_train.ipynb")
    assert links["colab"] == "https://colab.research.google.com/github/someone/hello-dl-fork/blob/v1.2.0/notebooks/04_train.ipynb"
    assert links["kaggle"] == ("https://kaggle.com/kernels/welcome?src="
                               "https://github.com/someone/hello-dl-fork/blob/v1.2.0/notebooks/04_train.ipynb")
    assert cloud.release_archive(REPOSITORY, "1.2.0").endswith("/archive/refs/tags/v1.2.0.zip")
    with pytest.raises(ValueError, match="https://github.com/OWNER/NAME"):
        cloud.github_repository("https://gitlab.com/someone/hello-dl")


def test_the_install_cell_is_a_thin_lesson_cell():
    from test_notebooks import HARD_CODED_PATH, LOGIC

    source = cloud.install_cell(REPOSITORY, VERSION, "04")
    code = [line for line in source.splitlines() if line.strip() and not line.strip().startswith("#")]
    assert len(code) <= 6 and not LOGIC.search(source) and not HARD_CODED_PATH.search(source)
    assert cloud.release_archive(REPOSITORY, VERSION) in source and 'setup("04")' in source
    assert "--no-deps" in source  # TensorFlow and Keras are never touched by the install


def _stamp_module():
    spec = importlib.util.spec_from_file_location("stamp_badges", ROOT / "scripts" / "stamp_badges.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_fork_restamps_everything_from_its_own_address(tmp_path):
    fork = tmp_path / "fork"
    fork.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, fork / name)
    shutil.copytree(ROOT / "notebooks", fork / "notebooks")
    text = (fork / "pyproject.toml").read_text().replace(REPOSITORY, "https://github.com/radiology-school/hello-dl")
    (fork / "pyproject.toml").write_text(text)
    stamp = _stamp_module()
    ids_before = {p.name: [c.get("id") for c in nbformat.read(p, 4).cells if c.get("id") != cloud.INSTALL_CELL_ID]
                  for p in (fork / "notebooks").glob("0*.ipynb")}  # the notebooks carry their install cells already
    assert stamp.stamp(fork, write=True)
    assert stamp.stamp(fork, write=False) == []  # idempotent
    for path in sorted((fork / "notebooks").glob("0*.ipynb")):
        notebook = nbformat.read(path, 4)
        nbformat.validate(notebook)
        first = next(c for c in notebook.cells if c.cell_type == "markdown")
        assert first.source.startswith("[![Open In Colab]") and "radiology-school/hello-dl/blob/" in first.source
        install = [c for c in notebook.cells if c.get("id") == cloud.INSTALL_CELL_ID]
        assert len(install) == 1 and "radiology-school/hello-dl/archive" in install[0].source
        assert all(c.get("outputs", []) == [] for c in notebook.cells if c.cell_type == "code")
        kept = [c.get("id") for c in notebook.cells if c.get("id") != cloud.INSTALL_CELL_ID]
        assert kept == ids_before[path.name]  # cell ids kept
    readme = (fork / "README.md").read_text()
    assert readme.count("colab.research.google.com/github/radiology-school/hello-dl/blob/") >= 8


def test_the_binder_configuration_installs_the_pinned_kit_with_data_and_weights():
    """repo2docker reads binder/ (it cannot build here: its base images are in an unreachable registry)."""
    binder = ROOT / "binder"
    assert (binder / "runtime.txt").read_text().strip() == "python-3.11"
    lines = [line for line in (binder / "requirements.txt").read_text().splitlines() if not line.startswith("#")]
    assert lines == ["-r ../requirements.txt"] and (binder / ".." / "requirements.txt").resolve().is_file()
    post_build = binder / "postBuild"
    assert os.access(post_build, os.X_OK)
    script = post_build.read_text()
    assert "pip install --no-deps" in script and "hello-dl fetch --weights" in script
    result = subprocess.run(["bash", "-n", str(post_build)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_in_a_notebook_a_refusal_shows_as_its_message_alone():
    error = CloudSetupError("This notebook cannot run here yet: ...\nHow to fix it: ...")
    assert error._render_traceback_() == ["CloudSetupError: This notebook cannot run here yet: ...\nHow to fix it: ..."]


def test_only_the_table_of_notebooks_gets_cloud_links():
    """Other README tables name notebooks too (the rehearsal table): their rows are left as written."""
    stamp = _stamp_module()
    text = ("| notebook | what you do |\n| --- | --- |\n| `04_train` | train the model |\n\n"
            "| notebook | compute here (measured) |\n| --- | --- |\n| `04_train` | 246 s |\n")
    stamped = stamp.stamp_readme(text, REPOSITORY, VERSION)
    first, second = stamped.split("\n\n")
    assert "[Colab](" in first and "[Kaggle](" in first
    assert second == "| notebook | compute here (measured) |\n| --- | --- |\n| `04_train` | 246 s |\n"
    assert stamp.stamp_readme(stamped, REPOSITORY, VERSION) == stamped  # idempotent
