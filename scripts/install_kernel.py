"""Register the notebooks' Jupyter kernel ("Python 3 (hello-dl)") inside this environment.

Used by `make` and the Docker image. The kernel is told not to copy the process's raw error
stream into notebooks: TensorFlow writes C++ start-up lines there ("cuInit failed" on every
machine without a GPU) that look like errors to a newcomer and are nothing they can act on.
Python's own warnings and errors still appear in the notebook as usual.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

KERNEL_NAME = "python3"
DISPLAY_NAME = "Python 3 (hello-dl)"
QUIET_FLAG = "--IPKernelApp.capture_fd_output=False"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefix", default=sys.prefix,
                        help="environment prefix to install into (default: this Python's environment)")
    prefix = Path(parser.parse_args(argv).prefix)
    subprocess.run([sys.executable, "-m", "ipykernel", "install", "--prefix", str(prefix),
                    "--name", KERNEL_NAME, "--display-name", DISPLAY_NAME],
                   check=True, stdout=subprocess.DEVNULL)
    spec_file = prefix / "share" / "jupyter" / "kernels" / KERNEL_NAME / "kernel.json"
    spec = json.loads(spec_file.read_text())
    if QUIET_FLAG not in spec["argv"]:
        spec["argv"].append(QUIET_FLAG)
        handle, temp = tempfile.mkstemp(dir=spec_file.parent, suffix=".json")
        with os.fdopen(handle, "w") as out:
            json.dump(spec, out, indent=1)
        # mkstemp makes the file private; every user of the environment must be able to read it
        # (the Docker image installs as root and runs JupyterLab as an unprivileged user).
        os.chmod(temp, spec_file.stat().st_mode & 0o777)
        os.replace(temp, spec_file)
    print(f"Jupyter kernel {DISPLAY_NAME!r} installed in {spec_file.parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
