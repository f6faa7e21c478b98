"""What is this machine? Versions, GPU or CPU, said in plain words, and one seed for everything."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata

from hello_dl.groups import describe_group
from hello_dl.settings import Settings


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and the backend in one call (Keras' own helper), so reruns repeat."""
    import keras  # here, not at the top: importing Keras loads TensorFlow (~8 s)

    keras.utils.set_random_seed(int(seed))


def gpus() -> list[str]:
    """Names of the GPUs TensorFlow can use (empty on a laptop or in CI)."""
    import tensorflow as tf  # here, not at the top: ~8 s to import

    return [d.name for d in tf.config.list_physical_devices("GPU")]


def device_sentence() -> str:
    """One plain sentence a non-coder understands: where will the training run?"""
    found = gpus()
    if not found:
        return ("Running on the CPU: no GPU was found. Everything works, training is just slower "
                "(a few minutes for the conference profile).")
    if len(found) == 1:
        return "Running on the GPU: 1 GPU found, training will be fast."
    return f"Running on {len(found)} GPUs: training is spread over all of them (MirroredStrategy)."


#: Report label → the installed distributions that provide it, first found wins (the CUDA and the CPU
#: builds of TensorFlow are published under different names).
REPORTED_PACKAGES = {
    "tensorflow": ("tensorflow", "tensorflow-cpu"),
    "keras": ("keras",),
    "numpy": ("numpy",),
    "pydicom": ("pydicom",),
    "scikit-learn": ("scikit-learn",),
    "matplotlib": ("matplotlib",),
    "pillow": ("pillow",),
}


def installed_version(*distributions: str) -> str:
    """The installed version of the first of ``distributions`` found, or ``not installed``."""
    for name in distributions:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return "not installed"


def versions() -> dict[str, str]:
    """Python, the platform and the versions of the kit's main packages (read from their metadata,
    so nothing, TensorFlow included, has to be imported)."""
    out = {"python": sys.version.split()[0], "platform": platform.platform(terse=True)}
    out.update({label: installed_version(*names) for label, names in REPORTED_PACKAGES.items()})
    return out


def report(settings: Settings) -> str:
    """The environment report shown by ``hello-dl env`` and the first notebook."""
    import tensorflow as tf  # here, not at the top: ~8 s to import

    lines = ["Environment", "-----------"]
    lines += [f"{name:<12} {value}" for name, value in versions().items()]
    lines.append(f"{'cpu cores':<12} {os.cpu_count()}")
    build = tf.sysconfig.get_build_info()
    if build.get("is_cuda_build"):
        lines.append(f"{'cuda build':<12} CUDA {build.get('cuda_version', '?')}, cuDNN {build.get('cudnn_version', '?')}")
    lines.append(f"{'profile':<12} {settings.profile}")
    lines.append(f"{'seed':<12} {settings.seed}")
    lines.append(f"{'weights':<12} {settings.weights}")
    if settings.experiment_group:
        lines.append(f"{'group':<12} {describe_group(settings.experiment_group)}")
    lines.append("")
    lines.append(device_sentence())
    return "\n".join(lines)
