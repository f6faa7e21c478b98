"""The room-capacity benchmark's quick mode, end to end, so the harness never rots.

It runs two participants' training notebook (04) at once under the smoke profile, each in its own
kernel and output folder, and must report measured times, memory and CPU for both. Whether the
round "holds" depends on how busy the machine is, so only the measurement itself is checked here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quick_round_measures_two_participants(shared_dataset, tmp_path):
    output = tmp_path / "room.json"
    done = subprocess.run([sys.executable, str(PROJECT_ROOT / "benchmarks" / "room_capacity.py"), "--quick",
                           "--data-dir", str(shared_dataset), "--output", str(output)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    summary = json.loads(output.read_text())
    assert summary["profile"] == "smoke" and summary["weights"] == "none"
    (round_,) = summary["rounds"]
    assert round_["participants"] == 2
    for entry in round_["results"]:
        assert entry["ok"], entry
        assert 0 < entry["seconds"] < 900 and entry["peak_gb"] > 0.2 and entry["cpu_seconds"] > 1
    assert {e["participant"] for e in round_["results"]} == {1, 2}
    assert summary["capacity"] in (0, 2)
    assert summary["extrapolation"]["cpu_seconds_per_training"] > 0
    assert "Capacity on this machine" in done.stdout and "ESTIMATE" in done.stdout
    assert "NOT measured" in done.stdout  # the GPU figures say they are estimates
    assert not list(Path("/tmp").glob("hello_dl_room_capacity_*/round2"))  # its run folders are deleted
