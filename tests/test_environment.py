"""environment.versions: read from the installed packages' metadata, without importing TensorFlow."""

from __future__ import annotations

import subprocess
import sys

import numpy
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
