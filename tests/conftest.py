"""Shared test fixtures: the shared dataset, isolated settings, small real files.

Every test gets a clean environment: no HELLO_DL_* variable leaks in from the shell (CI sets
HELLO_DL_DATA_SOURCE; the fixtures below pass it on explicitly where it is wanted).
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")  # figures render to files, never to a window

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATASET = Path(
    os.environ.get("HELLO_DL_DATA_SOURCE")
    or PROJECT_ROOT.parent / "shared" / "datasets" / "open_i_abd_vs_cxr"
)


def _shared_dataset_or_skip() -> Path:
    if not (SHARED_DATASET / "TRAIN").is_dir():
        pytest.skip(f"the shared OpenI dataset is not at {SHARED_DATASET} "
                    "(set HELLO_DL_DATA_SOURCE to a local copy of it)")
    return SHARED_DATASET


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch):
    for key in list(os.environ):
        if key.startswith("HELLO_DL_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("HELLO_DL_HOME", str(PROJECT_ROOT))


@pytest.fixture(scope="session")
def shared_dataset() -> Path:
    """The read-only shared copy of the paper's 77 images (TRAIN/VAL/TEST)."""
    return _shared_dataset_or_skip()


@pytest.fixture(scope="session")
def fetched_dataset(tmp_path_factory) -> Path:
    """The shared dataset fetched (copied and verified) into a temporary data folder, once per run."""
    from hello_dl.fetch import fetch_data
    from hello_dl.settings import load_settings

    source = _shared_dataset_or_skip()
    data_dir = tmp_path_factory.mktemp("data") / "open_i_abd_vs_cxr"
    settings = load_settings("smoke", environ={}, data_source=str(source), data_dir=str(data_dir))
    return fetch_data(settings)


@pytest.fixture
def smoke_settings(tmp_path, fetched_dataset):
    """Factory: smoke-profile settings on the fetched dataset, writing into this test's tmp folder."""
    from hello_dl.settings import load_settings

    def make(**overrides):
        values = {"data_source": str(SHARED_DATASET), "data_dir": str(fetched_dataset),
                  "output_dir": str(tmp_path / "outputs")}
        values.update(overrides)
        return load_settings("smoke", environ={}, **values)

    return make
