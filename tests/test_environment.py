"""environment.versions: read from the installed packages' metadata, without importing TensorFlow."""

from __future__ import annotations

import subprocess
import sys

import numpy
import pytest
import PIL
import pydicom

from hello_dl import environment


def test_versions_agree_with_the_packages_themselves():
    found = environment.versions()
    assert found["python"] == ".".join(map(str, sys.version_info[:3]))
    assert (found["numpy"], found["pydicom"], found["pillow"]) == (numpy.__version__, pydicom.__version__,
                                                                   PIL.__version__)
    assert found["tensorflow"].startswith("2.") and found["keras"].startswith("3.")
    assert "not installed" not in found.values()
    assert list(found)[:4] == ["python", "platform", "tensorflow", "keras"]  # the report's order


def test_a_missing_package_is_said_plainly():
    assert environment.installed_version("no-such-package-hello-dl") == "not installed"
    assert environment.installed_version("no-such-package-hello-dl", "numpy") == numpy.__version__


def test_the_version_report_does_not_import_tensorflow():
    code = ("import sys; from hello_dl import environment; found = environment.versions(); "
            "print(found['tensorflow'], 'tensorflow' in sys.modules, 'keras' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    version, tensorflow_loaded, keras_loaded = done.stdout.split()
    assert version.startswith("2.") and tensorflow_loaded == "False" and keras_loaded == "False"


# --- memory handed back to the system (glibc) ----------------------------------------------------------
_CHURN = """
import ctypes, sys
from hello_dl import environment

libc = environment._glibc()
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]

def resident_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20

def used(size):  # a buffer whose pages are really touched, as a tensor's are
    address = libc.malloc(size)
    ctypes.memset(address, 1, size)
    return address

if sys.argv[1] == "fixed":
    assert environment.return_large_buffers_promptly()
libc.free(used(8 * 2**20))  # glibc alone now keeps buffers below 8 MiB in its heap
buffers = [used(512 * 1024) for _ in range(400)]  # 200 MiB of activation-sized buffers
pin = used(4 * 2**20)  # a live buffer above them (no free gap that large below), as a training step leaves
before = resident_mib()
for address in buffers:
    libc.free(address)
print(before - resident_mib())
"""


def _returned_mib(mode: str) -> float:
    done = subprocess.run([sys.executable, "-c", _CHURN, mode], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return float(done.stdout.strip())


def test_large_buffers_go_back_to_the_system_when_freed():
    if environment._glibc() is None:
        pytest.skip("not glibc (macOS, Windows, musl): the kit leaves the C library's own policy alone")
    fixed, default = _returned_mib("fixed"), _returned_mib("default")
    # With the fixed threshold the 200 MiB are returned the moment they are freed; with glibc's
    # own rising threshold they would stay resident (what made a training step's memory creep).
    assert fixed > 150, (fixed, default)
    assert default < fixed - 100, (fixed, default)
