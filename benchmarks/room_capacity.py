#!/usr/bin/env python
"""How many participants can train at the same time on this machine? (the room server's capacity)

For N = 1, 2, 4, 6, ... participants, starts N headless runs of the training notebook (04) at
once, each in its own process and kernel, with its own output folder, its own experiment group
(participants 1..N are dealt groups in turn, as on the room server) and the thread counts the
room server gives each container (hello_dl.room.sizing). It measures every participant's wall
time (kernel start to the end of the notebook), the peak resident memory of its process tree, and
the CPU seconds it used. A round "holds" when every participant finishes within the budget (10
minutes: the training slot of a 45-minute session). It stops at the first round that does not
hold (or would not fit in memory), then prints the capacity and an extrapolation to larger
servers and GPUs, marked as an estimate.

    .venv/bin/python benchmarks/room_capacity.py                       # conference profile, N = 1, 2, 4, 6, 8, ...
    .venv/bin/python benchmarks/room_capacity.py --participants 6      # one round of 6
    .venv/bin/python benchmarks/room_capacity.py --quick               # smoke profile, 2 participants (~1 min)

It measures whatever the kit's notebook 04 does today (recipe, catch-up path, cached features);
without downloadable ImageNet weights it trains with weights `none` and says so (speed does not
depend on the weight values). Results: a table on stdout and benchmarks/results/room-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
PROJECT_ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import machine  # noqa: E402 - the benchmarks' own helper, beside this file

GIB = 1024**3
# Not measured here (no GPU on the development machine): TensorFlow's context plus InceptionV3
# training activations at 299 px, batch 5, with memory growth. An estimate, said so where printed.
GPU_GIB_PER_TRAINING_ESTIMATE = 2.0
GPU_MINUTES_PER_TRAINING_ESTIMATE = 1.0  # conference profile alone on a T4-class GPU (instructor guide)
GPU_SIZES_GIB = (16, 24, 48, 80)


# --- one participant (a worker process) ----------------------------------------------------------
def worker(job: dict) -> int:
    """Execute the training notebook headless in a fresh kernel; print one JSON line."""
    import nbformat
    from nbclient import NotebookClient

    notebook_path = Path(job["notebook"])
    notebook = nbformat.read(notebook_path, as_version=4)
    started = time.monotonic()
    result = {"participant": job["participant"], "ok": False, "error": None}
    try:
        NotebookClient(notebook, kernel_name="python3", timeout=job["budget"] * 2, startup_timeout=300,
                       resources={"metadata": {"path": str(notebook_path.parent)}}).execute()
        errors = [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", [])
                  if o.get("output_type") == "error"]
        result["ok"] = not errors
        if errors:
            result["error"] = f"{errors[0].get('ename')}: {errors[0].get('evalue')}"
    except Exception as exc:  # noqa: BLE001 - reported as this participant's result
        result["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
    result["seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(result), flush=True)
    return 0


# --- one round of N at once ------------------------------------------------------------------------
def tree_usage(process: psutil.Process, cpu_seen: dict[int, float]) -> int:
    """RSS of the process and all its children now; records each one's CPU seconds."""
    total = 0
    try:
        members = [process] + process.children(recursive=True)
    except psutil.Error:
        return 0
    for member in members:
        try:
            total += member.memory_info().rss
            times = member.cpu_times()
            cpu_seen[member.pid] = times.user + times.system
        except psutil.Error:
            pass
    return total


def one_round(count: int, options, scratch: Path, data_dir: Path, notebook: Path) -> dict:
    from hello_dl.room import sizing

    share = sizing.participant_share(count)
    threads = sizing.thread_environment(share)
    processes = []
    for number in range(1, count + 1):
        out = scratch / f"round{count}" / f"participant{number}"
        out.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **threads, "HELLO_DL_PROFILE": options.profile, "HELLO_DL_PARTICIPANT": str(number),
               "HELLO_DL_DATA_DIR": str(data_dir), "HELLO_DL_OUTPUT_DIR": str(out),
               "HELLO_DL_DATA_SOURCE": str(data_dir), "HELLO_DL_HOME": str(PROJECT_ROOT)}
        if options.weights:
            env["HELLO_DL_WEIGHTS"] = options.weights
        job = json.dumps({"participant": number, "notebook": str(notebook), "budget": options.budget})
        processes.append(subprocess.Popen([sys.executable, __file__, "--worker", job], env=env, cwd=notebook.parent,
                                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True))
    load_before = machine.load_average()
    peaks = [0] * count
    cpu = [dict() for _ in range(count)]
    handles = [psutil.Process(p.pid) for p in processes]
    started = time.monotonic()
    hard_stop = started + options.budget * 2 + 120  # a round that hangs still ends
    while any(p.poll() is None for p in processes) and time.monotonic() < hard_stop:
        for i, handle in enumerate(handles):
            if processes[i].poll() is None:
                peaks[i] = max(peaks[i], tree_usage(handle, cpu[i]))
        time.sleep(0.5)
    results = []
    for i, process in enumerate(processes):
        if process.poll() is None:
            process.kill()
        out, _ = process.communicate(timeout=60)
        line = (out.strip().splitlines() or ["{}"])[-1]
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            entry = {"participant": i + 1, "ok": False, "error": "the worker printed no result"}
        entry.setdefault("seconds", round(time.monotonic() - started, 1))
        entry["peak_gb"] = round(peaks[i] / 1e9, 2)
        entry["cpu_seconds"] = round(sum(cpu[i].values()), 1)
        entry["within_budget"] = bool(entry.get("ok")) and entry["seconds"] <= options.budget
        results.append(entry)
    slowest = max(r["seconds"] for r in results)
    return {
        "participants": count, "results": results, "holds": all(r["within_budget"] for r in results),
        "slowest_s": slowest, "mean_s": round(sum(r["seconds"] for r in results) / count, 1),
        "peak_gb_max": max(r["peak_gb"] for r in results),
        "cpu_seconds_mean": round(sum(r["cpu_seconds"] for r in results) / count, 1),
        "threads": share.threads, "load_before": load_before, "load_after": machine.load_average(),
    }


# --- the whole benchmark ------------------------------------------------------------------------------
def counts_to_try(options) -> list[int]:
    if options.participants:
        return sorted({int(n) for n in options.participants.split(",")})
    return [1, 2, 4] + list(range(6, options.max + 1, 2))


ASSUMED_CORE_USE = 0.9  # share of the cores N >= cores concurrent trainings keep busy on an idle machine


def extrapolate(rounds: list[dict], cores: int, budget: float) -> dict:
    """From the largest round: CPU seconds per training (hardly changed by other load), how well the
    cores were used (only trusted from a round with at least one training per core on an otherwise
    idle machine; else assumed), and memory."""
    best = max(rounds, key=lambda r: r["participants"])
    cpu_per_training = best["cpu_seconds_mean"]
    used = best["participants"] * cpu_per_training / (cores * best["slowest_s"]) if best["slowest_s"] else 0
    idle_before = bool(best["load_before"]) and best["load_before"][0] < 1.0
    trusted = best["participants"] >= cores and idle_before
    core_use = used if trusted else ASSUMED_CORE_USE
    per_core = budget * core_use / cpu_per_training if cpu_per_training else 0
    return {"from_round": best["participants"], "cpu_seconds_per_training": cpu_per_training,
            "core_use": round(core_use, 2), "core_use_measured": trusted, "measured_core_use": round(used, 2),
            "trainings_per_core_in_budget": round(per_core, 2), "memory_gb_per_training": best["peak_gb_max"],
            "this_machine_estimate": math.floor(cores * per_core)}


def report(summary: dict) -> str:
    lines = [f"Room capacity: {summary['profile']} profile, notebook {summary['notebook']}, weights "
             f"{summary['weights']}, budget {summary['budget_s']:.0f} s",
             f"Machine: {summary['machine']}", "",
             "| participants | holds | slowest s | mean s | peak GB each (max) | CPU s each | threads each | load before → after |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in summary["rounds"]:
        lines.append(f"| {r['participants']} | {'yes' if r['holds'] else 'NO'} | {r['slowest_s']:.0f} | {r['mean_s']:.0f} | "
                     f"{r['peak_gb_max']:.2f} | {r['cpu_seconds_mean']:.0f} | {r['threads']} | "
                     f"{'/'.join(map(str, r['load_before'][:1]))} → {'/'.join(map(str, r['load_after'][:1]))} |")
        for e in r["results"]:
            if not e.get("ok"):
                lines.append(f"|   participant {e['participant']} failed: {e.get('error')} | | | | | | | |")
    lines += ["", f"Capacity on this machine: {summary['capacity']} participant(s) training at once, all within "
              f"{summary['budget_s'] / 60:.0f} min (measured)."]
    x = summary["extrapolation"]
    if x:
        lines += [
            "",
            f"ESTIMATE (from the round of {x['from_round']}: {x['cpu_seconds_per_training']:.0f} CPU s per training, "
            f"{x['memory_gb_per_training']:.2f} GB per participant; cores {x['core_use'] * 100:.0f} % busy, "
            f"{'measured' if x['core_use_measured'] else 'assumed: the round was too small or the machine was busy'}):",
            f"  this machine, idle: about {x['this_machine_estimate']} participant(s) within the budget;",
            f"  about {x['trainings_per_core_in_budget']:.1f} trainings per CPU core within the budget; "
            f"e.g. 16 cores ≈ {math.floor(16 * x['trainings_per_core_in_budget'])}, "
            f"32 cores ≈ {math.floor(32 * x['trainings_per_core_in_budget'])}, "
            f"64 cores ≈ {math.floor(64 * x['trainings_per_core_in_budget'])} participants "
            f"(memory: {x['memory_gb_per_training']:.1f} GB each, so 64 GiB holds about "
            f"{math.floor(64 * 0.9 * GIB / 1e9 / max(x['memory_gb_per_training'], 0.1))}).",
            f"  per GPU (NOT measured: no GPU here; ~{GPU_GIB_PER_TRAINING_ESTIMATE:g} GiB of GPU memory per training "
            "with memory growth): by memory " + ", ".join(
                f"{g} GiB ≈ {int((g - 1) // GPU_GIB_PER_TRAINING_ESTIMATE)}" for g in GPU_SIZES_GIB)
            + f" concurrent trainings; by time (~{GPU_MINUTES_PER_TRAINING_ESTIMATE:g} min per training alone, "
            f"time-shared) about {int(summary['budget_s'] / 60 / GPU_MINUTES_PER_TRAINING_ESTIMATE * 0.8)} per GPU "
            "within the budget.",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", help="comma-separated N to run, e.g. 1,6 (default: 1, 2, 4, 6, 8, ... until one fails)")
    parser.add_argument("--max", type=int, default=16, help="largest N to try in the default ramp")
    parser.add_argument("--profile", default="conference")
    parser.add_argument("--budget", type=float, default=600.0, help="seconds every participant must finish within")
    parser.add_argument("--weights", help="HELLO_DL_WEIGHTS for the runs (default: the profile's; none when ImageNet "
                                          "weights cannot be found offline)")
    parser.add_argument("--data-dir", default=os.environ.get("HELLO_DL_DATA_SOURCE"),
                        help="the dataset folder (default: HELLO_DL_DATA_SOURCE)")
    parser.add_argument("--quick", action="store_true", help="smoke profile, 2 participants, 300 s budget")
    parser.add_argument("--output", help="JSON file for the results (default: benchmarks/results/room-<time>.json)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.worker:
        return worker(json.loads(options.worker))
    if options.quick:
        options.profile, options.participants, options.budget = "smoke", options.participants or "2", 300.0

    from hello_dl import fetch, weights
    from hello_dl.errors import HelloDLError
    from hello_dl.settings import load_settings

    notebook = next(iter(sorted((PROJECT_ROOT / "notebooks").glob("04_*.ipynb"))), None)
    if notebook is None:
        raise SystemExit("There is no notebooks/04_*.ipynb to measure.")
    profile_weights = load_settings(options.profile).weights
    if options.weights is None:
        try:  # without downloading: a benchmark must not wait for the network
            weights.resolve_weights(load_settings(options.profile), download=False)
        except HelloDLError:
            options.weights = "none"
    scratch = Path(tempfile.mkdtemp(prefix="hello_dl_room_capacity_"))
    try:
        data_dir = scratch / "data"
        if not options.data_dir:
            raise SystemExit("Give the dataset with --data-dir or HELLO_DL_DATA_SOURCE.")
        fetch.fetch_data(load_settings("smoke", environ={}, data_source=options.data_dir, data_dir=str(data_dir)))
        rounds = []
        memory_total = psutil.virtual_memory().total
        for count in counts_to_try(options):
            if rounds and rounds[-1]["peak_gb_max"] * 1e9 * count > 0.9 * memory_total:
                print(f"   {count} participants would need about {rounds[-1]['peak_gb_max'] * count:.1f} GB: stopping.")
                break
            print(f"== {count} participant(s) at once ({options.profile})", flush=True)
            result = one_round(count, options, scratch, data_dir, notebook)
            rounds.append(result)
            print(f"   slowest {result['slowest_s']:.0f} s, peak {result['peak_gb_max']:.2f} GB each, "
                  f"{'holds' if result['holds'] else 'does NOT hold'}", flush=True)
            shutil.rmtree(scratch / f"round{count}", ignore_errors=True)  # saved models are ~90 MB each
            if not result["holds"] and not options.participants:
                break
        described = machine.describe()
        summary = {
            "profile": options.profile, "notebook": notebook.name, "weights": options.weights or profile_weights,
            "budget_s": options.budget, "machine": machine.one_line(described), "machine_details": described,
            "rounds": rounds, "capacity": max([r["participants"] for r in rounds if r["holds"]], default=0),
            "extrapolation": extrapolate(rounds, psutil.cpu_count() or 1, options.budget) if rounds else {},
        }
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print()
    print(report(summary))
    output = Path(options.output) if options.output else HERE / "results" / f"room-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nResults: {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
