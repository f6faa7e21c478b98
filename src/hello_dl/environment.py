"""What is this machine? Versions, GPU or CPU, said in plain words, and one seed for everything."""

from __future__ import annotations

import ctypes
import ctypes.util
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

    limit_gpu_memory()  # the kit's first look at the GPU: share it before anything runs on it
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
    lines.append(gpu_memory_sentence())
    return "\n".join(lines)


# --- sharing one GPU between many kernels -----------------------------------------------------
# TensorFlow's default is to reserve nearly all of a GPU's memory for the first process that
# touches it, so a second kernel (05 while 04's kernel is still open, or forty participants of a
# room server on one GPU) fails with "out of memory". Importing hello_dl already sets
# TF_FORCE_GPU_ALLOW_GROWTH (see __init__.py); limit_gpu_memory() makes the same choice through
# TensorFlow's API and can also cap each process, e.g. HELLO_DL_GPU_MEMORY_MB=2048.

GPU_MEMORY_ENV = "HELLO_DL_GPU_MEMORY_MB"
_gpu_memory_policy: dict[str, object] = {}  # what limit_gpu_memory() put in place, for the report


def gpu_memory_cap(environ: dict[str, str] | None = None) -> int | None:
    """The per-process cap in MiB from ``HELLO_DL_GPU_MEMORY_MB``, or None (grow as needed)."""
    raw = (os.environ if environ is None else environ).get(GPU_MEMORY_ENV, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < 256:
        from hello_dl.errors import HelloDLError

        raise HelloDLError(f"{GPU_MEMORY_ENV}={raw!r} is not a usable GPU memory cap: give a whole number of "
                           f"MiB, at least 256 (for example {GPU_MEMORY_ENV}=2048), or leave it unset so "
                           "each process takes GPU memory as it needs it.")
    return int(raw)


def apply_gpu_memory_policy(config, devices: list, cap_mb: int | None) -> dict[str, object]:
    """Turn on memory growth (or a cap of ``cap_mb`` MiB) for every GPU in ``devices``.

    ``config`` is ``tf.config``; passed in so the choice itself can be tested without a GPU.
    Returns what is in effect: ``{"mode": "none" | "growth" | "cap" | "too late", ...}``.
    """
    if not devices:
        return {"mode": "none"}
    try:
        for device in devices:
            if cap_mb is None:
                config.experimental.set_memory_growth(device, True)
            else:
                config.set_logical_device_configuration(
                    device, [config.LogicalDeviceConfiguration(memory_limit=cap_mb)])
    except RuntimeError as exc:
        # TensorFlow refuses once the GPU is in use; whatever was chosen then stays in force.
        growth = os.environ.get("TF_FORCE_GPU_ALLOW_GROWTH", "").lower() == "true"
        return {"mode": "too late", "growth_from_env": growth, "detail": str(exc), "devices": len(devices)}
    if cap_mb is None:
        return {"mode": "growth", "devices": len(devices)}
    return {"mode": "cap", "cap_mb": cap_mb, "devices": len(devices)}


def limit_gpu_memory(cap_mb: int | None = None) -> dict[str, object]:
    """Let this process share its GPU with other kernels; call it before TensorFlow uses the GPU.

    Memory growth by default (the process takes GPU memory as it needs it and leaves the rest
    to others); a hard cap of ``cap_mb`` MiB per GPU (or ``HELLO_DL_GPU_MEMORY_MB``) for rooms
    that want fixed shares. Safe to call any number of times; the first call decides. On a
    machine without a GPU it does nothing.
    """
    if _gpu_memory_policy:
        return dict(_gpu_memory_policy)
    cap = cap_mb if cap_mb is not None else gpu_memory_cap()
    import tensorflow as tf

    _gpu_memory_policy.update(apply_gpu_memory_policy(tf.config, tf.config.list_physical_devices("GPU"), cap))
    return dict(_gpu_memory_policy)


def _gpu_totals_mib() -> list[tuple[int, int]]:
    """(total, used) MiB per GPU from nvidia-smi, or [] where it is missing or says nothing."""
    import shutil
    import subprocess

    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.total,memory.used", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
        return [tuple(int(v) for v in line.split(",")) for line in out.splitlines() if line.strip()]
    except (OSError, subprocess.SubprocessError, ValueError):
        return []


def gpu_memory_sentence() -> str:
    """How much GPU memory this process may use, in one plain sentence (shown by ``hello-dl env``)."""
    policy = limit_gpu_memory()
    mode = policy["mode"]
    if mode == "none":
        return "GPU memory: none here (no GPU); training uses the computer's main memory (RAM)."
    totals = _gpu_totals_mib()
    size = ""
    if totals:
        total, used = totals[0]
        size = f" The GPU has {total / 1024:.1f} GiB, {max(total - used, 0) / 1024:.1f} GiB of it free right now."
    if mode == "cap":
        return (f"GPU memory: this process may use at most {policy['cap_mb']} MiB per GPU "
                f"({GPU_MEMORY_ENV}); other kernels share the rest.{size}")
    if mode == "growth" or policy.get("growth_from_env"):
        return ("GPU memory: this process takes only what it needs, as it needs it (memory growth), so "
                f"other kernels can share the GPU.{size}")
    return ("GPU memory: TensorFlow was already using the GPU before the kit could share it, so this process "
            f"may hold nearly all of it. Restart the kernel and run the setup cell first.{size}")


#: Buffers of at least this many bytes get pages of their own from the system (glibc's mmap
#: threshold), which go back to it the moment the buffer is freed.
LARGE_BUFFER_BYTES = 256 * 1024


def return_large_buffers_promptly() -> bool:
    """Give every buffer of :data:`LARGE_BUFFER_BYTES` or more its own pages, returned when it is freed.

    glibc raises its mmap threshold as large buffers come and go (up to 32 MB), after which
    TensorFlow's activations and gradients live in the shared heap, where freed gaps are kept
    and the resident memory of a training step creeps up step after step. A fixed threshold
    keeps them out of it: measured at 299 px with the whole base training (the smoke profile,
    ``benchmarks``), the step's peak fell from 2.49 to 2.29 GiB, no slower. Returns False where
    there is no glibc (macOS, Windows, musl): nothing to do there.
    """
    libc = _glibc()
    if libc is None:
        return False
    set_option = libc.mallopt
    set_option.argtypes, set_option.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(set_option(_M_MMAP_THRESHOLD, LARGE_BUFFER_BYTES))


_M_MMAP_THRESHOLD = -3  # glibc's malloc.h


def _glibc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim, libc.mallopt  # noqa: B018  (glibc has both; other C libraries may not)
    except (OSError, AttributeError):
        return None
    return libc


def release_free_memory() -> bool:
    """Hand memory that is free inside this process back to the system (glibc's ``malloc_trim``).

    Between training phases and after saving a model, the C library keeps the freed buffers of
    the finished step (activations, a copy of the weights) for reuse, so the process's resident
    memory stays at its high-water mark and the next phase starts above it (issue 18: every
    participant's gigabytes are multiplied by the room). Returns False where there is no glibc
    (macOS, Windows, musl): nothing to do there.
    """
    libc = _glibc()
    if libc is None:
        return False
    trim = libc.malloc_trim
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    trim(0)
    return True
