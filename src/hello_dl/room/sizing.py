"""Each participant's share of the room server: the stated rule for CPU and memory limits.

The rule (the hub applies it to every participant's container):

* **Memory**: keep ``max(2 GiB, 10 % of RAM)`` for the hub, the proxy and the system; split the
  rest evenly over the seats (in a conference everybody trains at the same time), at most 8 GiB
  each (more than any notebook of the kit uses). A container that goes past its limit loses its
  kernel, never the machine or a neighbour's work.
* **CPU**: ``2 × cores / seats``, at least 1 core and at most all of them. A participant may
  use up to twice their fair share while neighbours sit idle; when everybody trains at once the
  kernel's scheduler shares the cores evenly between the containers. TensorFlow and the maths
  libraries get as many threads as the limit has cores (more threads than cores only thrash).

A share below what the conference training needs (about 2.5 GiB: the measured peak of 2.1 GB plus
the Jupyter server and kernel) comes with a plain warning and the number of seats the machine
can hold.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field

from hello_dl.errors import HelloDLError

GIB = 1024**3
MIB = 1024**2
TRAINING_NEED_BYTES = int(2.5 * GIB)  # conference training peak (README benchmarks) + Jupyter overhead
MEMORY_CAP_BYTES = 8 * GIB
MIN_RESERVE_BYTES = 2 * GIB
RESERVE_FRACTION = 0.10
CPU_BURST = 2.0  # a participant may use up to twice their fair share of the cores


class SizingError(HelloDLError):
    """A limit given by hand cannot be used."""


@dataclass(frozen=True)
class Share:
    seats: int
    cores: int
    memory_total: int
    cpu_limit: float
    mem_limit: int  # bytes
    threads: int
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        lines = [
            f"{self.seats} container(s) (participants and instructor) on {self.cores} core(s) and "
            f"{self.memory_total / GIB:.1f} GiB of memory:",
            f"  each participant's container: up to {self.cpu_limit:g} core(s), {self.mem_limit / GIB:.2f} GiB of "
            f"memory, {self.threads} TensorFlow thread(s)",
        ]
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


def machine_memory() -> int:
    """Total memory of this machine in bytes (MemTotal; the hub sees the host's with host networking)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def parse_bytes(text: str, what: str = "HELLO_DL_ROOM_MEM_LIMIT") -> int:
    """``4G``, ``2.5G``, ``512M`` or a number of bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*", str(text), re.IGNORECASE)
    if not match:
        raise SizingError(f"{what}={text!r} is not a size: write it like 4G, 2.5G or 512M.")
    factor = {"": 1, "K": 1024, "M": MIB, "G": GIB, "T": 1024 * GIB}[match.group(2).upper()]
    value = int(float(match.group(1)) * factor)
    if value < 256 * MIB:
        raise SizingError(f"{what}={text!r} is too small: a Jupyter server alone needs about 256 MiB.")
    return value


def participant_share(seats: int, cores: int | None = None, memory_total: int | None = None, *,
                      cpu_limit: float | None = None, mem_limit: int | None = None) -> Share:
    """Apply the rule above; ``cpu_limit``/``mem_limit`` replace the computed value when given."""
    if seats < 1:
        raise SizingError("A room needs at least one seat.")
    cores = cores or os.cpu_count() or 1
    memory_total = memory_total or machine_memory()
    notes: list[str] = []

    reserve = max(MIN_RESERVE_BYTES, int(RESERVE_FRACTION * memory_total))
    computed_mem = min(MEMORY_CAP_BYTES, max(0, memory_total - reserve) // seats)
    memory = mem_limit if mem_limit is not None else computed_mem
    memory = max(256 * MIB, memory // (64 * MIB) * (64 * MIB))
    if mem_limit is not None and mem_limit * seats > memory_total - reserve:
        notes.append(f"{seats} × {mem_limit / GIB:.2f} GiB is more than this machine can give at once "
                     f"({(memory_total - reserve) / GIB:.1f} GiB after the hub's reserve): if everybody trains "
                     "at the same time, the machine runs out of memory.")
    if memory < TRAINING_NEED_BYTES:
        fits = max(0, (memory_total - reserve) // TRAINING_NEED_BYTES)
        notes.append(f"{memory / GIB:.2f} GiB per participant is below the ~{TRAINING_NEED_BYTES / GIB:.1f} GiB the "
                     f"conference training needs: this machine holds about {fits} participant(s) training at once. "
                     "Use fewer seats per machine, more memory, or several machines (docker/hub/README.md).")

    if cpu_limit is not None:
        if not 0.1 <= cpu_limit <= cores:
            raise SizingError(f"HELLO_DL_ROOM_CPU_LIMIT={cpu_limit:g} must be between 0.1 and the {cores} core(s) "
                              "of this machine.")
        cpus = float(cpu_limit)
    else:
        cpus = min(float(cores), max(1.0, round(CPU_BURST * cores / seats, 2)))
    if seats > cores:
        notes.append(f"{seats} seats share {cores} core(s): when everybody trains at once each gets about "
                     f"{cores / seats:.2f} core(s); benchmarks/room_capacity.py measures what that means for the "
                     "10-minute training slot.")
    return Share(seats, cores, memory_total, cpus, int(memory), max(1, math.ceil(cpus)), notes)


def thread_environment(share: Share) -> dict[str, str]:
    """Environment that keeps TensorFlow and the maths libraries to the container's cores."""
    n = str(share.threads)
    return {"TF_NUM_INTRAOP_THREADS": n, "TF_NUM_INTEROP_THREADS": "2" if share.threads > 1 else "1",
            "OMP_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n, "MKL_NUM_THREADS": n}


__all__ = ["GIB", "Share", "SizingError", "TRAINING_NEED_BYTES", "machine_memory", "parse_bytes",
           "participant_share", "thread_environment"]
