"""The notebooks' kernel spec: quiet about C++ start-up lines, readable by every user, idempotent."""

import json
import stat
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "install_kernel.py"


def test_kernel_spec_is_quiet_readable_and_installs_twice_the_same(tmp_path):
    for _ in range(2):  # make reruns it whenever requirements change
        subprocess.run([sys.executable, str(SCRIPT), "--prefix", str(tmp_path)], check=True,
                       capture_output=True)
    spec_file = tmp_path / "share" / "jupyter" / "kernels" / "python3" / "kernel.json"
    spec = json.loads(spec_file.read_text())
    assert spec["display_name"] == "Python 3 (hello-dl)"
    assert spec["argv"].count("--IPKernelApp.capture_fd_output=False") == 1
    # Docker installs as root and runs JupyterLab as another user: the spec must be world-readable.
    assert spec_file.stat().st_mode & stat.S_IROTH
