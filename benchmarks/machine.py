"""What machine are the numbers from, and what could it do at best?

The fp32 peak is an *estimate* built from four facts, each taken from the operating system
where it can be, and each reported next to the result so a reader can redo the sum:

    peak = cores x clock x fp32 lanes per vector x 2 (an FMA is a multiply and an add) x FMA units

* cores: the CPUs this process may run on (``os.sched_getaffinity``), which is what TensorFlow uses.
* clock: ``CPU max MHz`` from ``lscpu`` when the kernel exposes it, else ``cpu MHz`` from
  ``/proc/cpuinfo`` (in a VM that is the nominal clock; turbo is invisible there).
* lanes: 16 fp32 with ``avx512f``, 8 with ``avx``/``avx2``, 4 with SSE only.
* FMA units per core cannot be read from the OS. Xeon Scalable parts with AVX-512 have two 512-bit
  FMA units per core (ports 0 and 5), except some low-end models; we assume 2 for AVX-512, 2 for
  AVX2-with-FMA desktop/server cores, 1 otherwise, and say so. A measured large matrix product
  (``matmul_ceiling`` in the workers) is the empirical check: if it beats the one-unit peak, the
  machine has at least two units (or a turbo clock above the one we read).
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from pathlib import Path


def _lscpu() -> dict[str, str]:
    if not shutil.which("lscpu"):
        return {}
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    out = {}
    for line in text.splitlines():
        if ":" in line:
            key, value = line.split(":", 1)
            out[key.strip()] = value.strip()
    return out


def _cpuinfo_first(field: str) -> str | None:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    match = re.search(rf"^{re.escape(field)}\s*:\s*(.+)$", text, flags=re.MULTILINE)
    return match.group(1).strip() if match else None


def _memory_gib() -> float | None:
    try:
        import psutil

        return round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:  # pragma: no cover - psutil is a project dependency
        return None


def describe(fma_units: int | None = None) -> dict:
    """The machine in numbers: model, cores, RAM, clock, vector width and the peak estimate."""
    info = _lscpu()
    flags = set((info.get("Flags") or _cpuinfo_first("flags") or "").split())
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)

    if info.get("CPU max MHz"):
        mhz, clock_source = float(info["CPU max MHz"]), "lscpu 'CPU max MHz'"
    elif _cpuinfo_first("cpu MHz"):
        mhz, clock_source = float(_cpuinfo_first("cpu MHz")), "/proc/cpuinfo 'cpu MHz' (nominal; turbo not visible)"
    else:
        mhz, clock_source = 2000.0, "unknown clock: assumed 2.0 GHz"

    if "avx512f" in flags:
        lanes, isa = 16, "AVX-512 (512-bit vectors, 16 fp32 lanes)"
    elif "avx2" in flags or "avx" in flags:
        lanes, isa = 8, "AVX/AVX2 (256-bit vectors, 8 fp32 lanes)"
    else:
        lanes, isa = 4, "SSE (128-bit vectors, 4 fp32 lanes)"
    has_fma = "fma" in flags or "avx512f" in flags
    flop_per_lane = 2 if has_fma else 1
    if fma_units is None:
        fma_units = 2 if (lanes >= 8 and has_fma) else 1
        units_source = "assumed (not readable from the OS): 2 FMA units per core for AVX-512/AVX2+FMA server cores"
    else:
        units_source = "given on the command line (--fma-units)"

    per_cycle_per_core = lanes * flop_per_lane * fma_units
    peak = cores * mhz * 1e6 * per_cycle_per_core / 1e9
    return {
        "model": info.get("Model name") or _cpuinfo_first("model name") or platform.processor(),
        "cores": cores,
        "threads_per_core": info.get("Thread(s) per core"),
        "hypervisor": info.get("Hypervisor vendor"),
        "memory_gib": _memory_gib(),
        "clock_ghz": round(mhz / 1000, 3),
        "clock_source": clock_source,
        "isa": isa,
        "fma": has_fma,
        "fma_units_per_core": fma_units,
        "fma_units_source": units_source,
        "fp32_flop_per_cycle_per_core": per_cycle_per_core,
        "fp32_peak_gflops": round(peak, 1),
        "peak_formula": (f"{cores} cores x {mhz / 1000:.2f} GHz x {lanes} lanes x {flop_per_lane} "
                         f"(FMA) x {fma_units} FMA units = {peak:.1f} GFLOP/s"),
        "platform": platform.platform(terse=True),
        "python": platform.python_version(),
    }


def load_average() -> list[float]:
    """1, 5 and 15 minute load: other work on the machine slows every measurement down."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not on Linux/macOS
        return []


def one_line(machine: dict) -> str:
    return (f"{machine['model']}, {machine['cores']} cores at {machine['clock_ghz']} GHz, {machine['isa']}, "
            f"{machine['memory_gib']} GiB RAM; estimated fp32 peak {machine['fp32_peak_gflops']} GFLOP/s")
