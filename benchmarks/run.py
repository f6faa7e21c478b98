#!/usr/bin/env python
"""Benchmarks: how fast the kit trains, against the paper's own recipe, and how close to the machine's limit.

    .venv/bin/python benchmarks/run.py            # the full run (about 30 minutes on 2 cores)
    .venv/bin/python benchmarks/run.py --quick    # every section, tiny sizes (1.5-2 minutes)
    make bench BENCH_ARGS="--sections pipeline,training"

Every measurement runs in its own fresh Python process (memory, graph caches and threads never
carry over), one after another so they do not compete for the cores. The results are printed as
a table and written to ``benchmarks/results/<timestamp>.json`` (and ``.md``). See
``benchmarks/README.md`` for what each figure means and how it is measured.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROJECT_ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import machine  # noqa: E402  (needs the sys.path line above when run as a script)
import report  # noqa: E402

SECTIONS = ("pipeline", "training", "cache", "end_to_end", "memory", "gflops", "scaling")

#: The conference profile four ways: experiment group 1 (augmentation on) and 2 (off), each with
#: and without the feature cache (``train(..., use_feature_cache=False)``: the whole network fit).
CONFERENCE_RUNS = list(report.CONFERENCE_RUNS)

#: Which jobs each section needs (the training figures come from the end-to-end runs' epoch clocks).
SECTION_JOBS = {
    "pipeline": ["pipeline_kit", "pipeline_paper"],
    "training": ["kit_conference", "paper_recipe"],
    "cache": CONFERENCE_RUNS,
    "end_to_end": [*CONFERENCE_RUNS, "kit_paper_profile", "paper_recipe"],
    "memory": [*CONFERENCE_RUNS, "kit_paper_profile", "kit_smoke", "paper_recipe"],
    "gflops": ["matmul_ceiling", "model_flops", "kit_conference", "paper_recipe"],
    "scaling": ["kit_conference", "scale_size_a", "scale_size_b", "scale_images_a", "scale_images_b"],
}


@dataclass
class Plan:
    """Sizes and epoch counts: the real ones, or tiny ones for ``--quick``."""

    quick: bool
    image_size: int = 299
    batch_size: int = 5
    pipeline_epochs: int = 4
    paper_epochs: int = 20
    conference_epochs: tuple[int, int] | None = None  # None: the profile's own (5 + 5)
    paper_profile_epochs: int | None = None  # None: the profile's own (20)
    paper_profile: bool = True  # the kit's paper profile end to end
    scaling_epochs: tuple[int, int] = (2, 2)
    scaling_sizes: tuple[int, ...] = (150, 224, 299)
    scaling_repeats: tuple[int, ...] = (1, 2, 4)  # 65, 130, 260 training images
    train_per_class: int | None = None  # None: every image
    val_per_class: int | None = None
    matrix_size: int = 4096
    extra_settings: dict = field(default_factory=dict)

    @classmethod
    def make(cls, quick: bool) -> "Plan":
        if not quick:
            return cls(quick=False)
        # Two epochs per phase is the least that has a steady (second) epoch. The kit's paper
        # profile is left out: it is the conference run's code with other settings, and one more
        # fully trainable graph to trace costs ~40 s of CPU.
        return cls(quick=True, image_size=75, pipeline_epochs=2, paper_epochs=2, conference_epochs=(2, 2),
                   paper_profile=False, scaling_epochs=(2, 2),
                   scaling_sizes=(75, 99), scaling_repeats=(1, 2), train_per_class=5, val_per_class=2,
                   matrix_size=1024)


def weights_path(plan: Plan) -> Path:
    """The random same-layout weights file the kit runs use, kept in the results folder between runs."""
    return HERE / "results" / f"inception_v3_notop_random_{plan.image_size}px.h5"


def _jobs(plan: Plan, data_dir: Path, view_root: Path, sections: list[str],
          weights: Path | None = None) -> dict[str, dict]:
    """Every job the chosen sections need: name -> {"kind", "params"}."""
    base = {"image_size": plan.image_size, "batch_size": plan.batch_size, "data_dir": str(data_dir)}
    train_images = _count_train(data_dir)
    everything = ["train", "evaluate", "explain"]

    def kit(profile: str, epochs, stages, data=data_dir, size=plan.image_size, images=train_images,
            group: str = "", cache: bool = True, pretrained: bool = True) -> dict:
        settings = dict(plan.extra_settings)
        if isinstance(epochs, tuple):
            settings.update(warmup_epochs=epochs[0], finetune_epochs=epochs[1])
        elif epochs is not None:
            settings.update(finetune_epochs=epochs)
        if group:
            settings["experiment_group"] = group
        return {"kind": "kit_run", "params": {
            **base, "profile": profile, "data_dir": str(data), "image_size": size, "train_images": images,
            "stages": stages, "settings": settings, "feature_cache": cache,
            "weights": str(weights) if weights and pretrained else None}}

    jobs = {
        "matmul_ceiling": {"kind": "matmul_ceiling", "params": {"matrix_size": plan.matrix_size}},
        "model_flops": {"kind": "model_flops", "params": {**base, "settings": dict(plan.extra_settings)}},
        "pipeline_kit": {"kind": "pipeline_kit", "params": {**base, "epochs": plan.pipeline_epochs}},
        "pipeline_paper": {"kind": "pipeline_paper", "params": {**base, "epochs": plan.pipeline_epochs}},
        # Group 1A is the conference profile's own recipe (augmentation on, dropout 0.5); 2A turns
        # augmentation off, so with the cache its training needs the frozen layers only once.
        "kit_conference": kit("conference", plan.conference_epochs, everything, group="1A"),
        "kit_conference_group2": kit("conference", plan.conference_epochs, everything, group="2A"),
        "kit_conference_uncached": kit("conference", plan.conference_epochs, everything, group="1A", cache=False),
        "kit_conference_group2_uncached": kit("conference", plan.conference_epochs, everything, group="2A",
                                              cache=False),
        "kit_paper_profile": kit("paper", plan.paper_profile_epochs, everything),
        # The smoke profile as it is (no pretrained weights, 1 + 1 epochs, the whole base in phase 2),
        # at the benchmark's image size: its memory.
        "kit_smoke": kit("smoke", None, everything, pretrained=False),
        "paper_recipe": {"kind": "paper_run", "params": {**base, "epochs": plan.paper_epochs}},
    }
    # Scaling: the image-size axis at the base image count, the image-count axis at the base size;
    # the point both axes share is the conference run itself.
    other_sizes = [s for s in plan.scaling_sizes if s != plan.image_size]
    other_repeats = [r for r in plan.scaling_repeats if r != 1]
    for label, size in zip(("scale_size_a", "scale_size_b"), other_sizes):
        jobs[label] = kit("conference", plan.scaling_epochs, ["train"], size=size)
    for label, repeat in zip(("scale_images_a", "scale_images_b"), other_repeats):
        view = _view(data_dir, view_root / f"repeat{repeat}", repeat=repeat)
        jobs[label] = kit("conference", plan.scaling_epochs, ["train"], data=view, images=_count_train(view))
    if not plan.paper_profile:
        del jobs["kit_paper_profile"]
    if plan.quick:
        # The uncached runs are the cached runs' code with one switch off, and the smoke profile is
        # what the tests run anyway: quick runs keep one uncached run so every table has its rows.
        del jobs["kit_conference_group2_uncached"], jobs["kit_smoke"]
    wanted = {name for section in sections for name in SECTION_JOBS[section]}
    return {name: job for name, job in jobs.items() if name in wanted}


def _count_train(data_dir: Path) -> int:
    from data_views import count_images

    return count_images(data_dir, "TRAIN")


def _view(source: Path, destination: Path, **kwargs) -> Path:
    from data_views import make_view

    return make_view(source, destination, **kwargs)


# --- running one job in its own process ------------------------------------------------------------------
class MemoryPoller(threading.Thread):
    """Samples the resident memory of a process and its children (cross-check for ru_maxrss)."""

    def __init__(self, pid: int, interval: float = 0.2):
        super().__init__(daemon=True)
        self.pid, self.interval, self.peak = pid, interval, 0
        self._halt = threading.Event()  # not _stop: Thread has a method of that name

    def run(self):
        import psutil

        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self._halt.is_set():
            try:
                total = root.memory_info().rss
                for child in root.children(recursive=True):
                    try:
                        total += child.memory_info().rss
                    except psutil.Error:
                        pass
                self.peak = max(self.peak, total)
            except psutil.Error:
                return
            self._halt.wait(self.interval)

    def stop(self):
        self._halt.set()


def run_group(names: list[str], jobs: dict[str, dict], work_dir: Path, timeout: float) -> dict[str, dict]:
    """Run jobs one after another in one fresh interpreter; each gets its result, wall time and peak memory.

    A group of one (the full run) is a measurement in its own process: its wall time is the whole
    process (Python and TensorFlow start-up included) and its peak memory is the process's. In a
    larger group (``--quick`` only, to save start-ups) a job's wall time is measured inside the
    worker and its peak is the process's high-water mark so far (``isolated: false``).
    """
    label = names[0] if len(names) == 1 else f"group-{names[0]}"
    job_file = work_dir / f"{label}.job.json"
    result_file = work_dir / f"{label}.result.json"
    log_file = work_dir / f"{label}.log"
    job_file.write_text(json.dumps({"jobs": {n: jobs[n] for n in names}, "result_path": str(result_file)}))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    env.setdefault("HELLO_DL_HOME", str(PROJECT_ROOT))
    load_before = machine.load_average()
    start = time.perf_counter()
    with open(log_file, "w") as log:
        process = subprocess.Popen([sys.executable, str(HERE / "run.py"), "--worker", str(job_file)],
                                   stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(PROJECT_ROOT))
        poller = MemoryPoller(process.pid)
        poller.start()
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            code = "timeout"
        finally:
            poller.stop()
    wall = time.perf_counter() - start
    done = json.loads(result_file.read_text())["results"] if result_file.exists() else {}
    isolated = len(names) == 1
    out = {}
    for name in names:
        entry = {"kind": jobs[name]["kind"], "params": jobs[name]["params"], "isolated": isolated,
                 "load_before": load_before, "load_after": machine.load_average(), "log": str(log_file)}
        if name in done and (code == 0 or not isolated):
            worker = done[name]
            entry.update(ok=True, **worker)
            entry["wall_seconds"] = round(wall, 2) if isolated else worker["worker_seconds"]
            entry["polled_peak_rss_mb"] = round(poller.peak / 1e6, 1)
            if isolated:
                entry["peak_rss_mb"] = max(worker["peak_rss_mb"], entry["polled_peak_rss_mb"])
        else:
            tail = log_file.read_text(errors="replace").splitlines()[-25:]
            entry.update(ok=False, error=f"exit code {code}", log_tail=tail, wall_seconds=round(wall, 2))
        out[name] = entry
    return out


def worker_main(job_file: Path) -> int:
    """Inside the fresh process: run each job, write its result, time and the peak memory so far."""
    import resource

    spec = json.loads(Path(job_file).read_text())
    target = Path(spec["result_path"])
    results: dict[str, dict] = {}
    import workers  # imported here so the job's own imports (TensorFlow) count to its wall time

    for name, job in spec["jobs"].items():
        started = time.perf_counter()
        before = resource.getrusage(resource.RUSAGE_SELF)
        result = workers.JOBS[job["kind"]](job["params"])
        own = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        results[name] = {
            "result": result,
            "worker_seconds": round(time.perf_counter() - started, 2),
            "cpu_seconds": round(own.ru_utime + own.ru_stime - before.ru_utime - before.ru_stime, 1),
            # ru_maxrss is the kernel's high-water mark of resident memory, in KiB on Linux.
            "peak_rss_mb": round(max(own.ru_maxrss, children.ru_maxrss) * 1024 / 1e6, 1),
        }
        # Written after every job, so a failure later in a group keeps the earlier results.
        temporary = target.with_suffix(".tmp")
        temporary.write_text(json.dumps({"results": results}, indent=2))
        os.replace(temporary, target)
    return 0


# --- the whole run ---------------------------------------------------------------------------------------
def _default_data_dir() -> Path:
    explicit = os.environ.get("HELLO_DL_DATA_SOURCE")
    if explicit and Path(explicit).is_dir():
        return Path(explicit)
    for candidate in (PROJECT_ROOT.parent / "shared" / "datasets" / "open_i_abd_vs_cxr",
                      PROJECT_ROOT / "data" / "open_i_abd_vs_cxr"):
        if (candidate / "TRAIN").is_dir():
            return candidate
    raise SystemExit("No dataset found: set HELLO_DL_DATA_SOURCE to the OpenI folder (with TRAIN/ and VAL/), "
                     "or run `hello-dl fetch` first.")


PRIORITY = ["paper_recipe", "kit_paper_profile", "kit_conference_uncached", "kit_conference",
            "kit_conference_group2_uncached", "kit_conference_group2", "kit_smoke", "scale_images_b",
            "scale_images_a", "scale_size_b", "scale_size_a", "pipeline_paper", "pipeline_kit", "model_flops",
            "matmul_ceiling"]


def _groups(jobs: dict[str, dict], quick: bool, parallel: int) -> list[list[str]]:
    """Full run: one job per process, longest first. Quick: the jobs dealt round-robin into
    ``parallel`` processes (saving a TensorFlow start-up per job; memory is then not per job)."""
    ordered = sorted(jobs, key=lambda n: PRIORITY.index(n) if n in PRIORITY else len(PRIORITY))
    if not quick:
        return [[name] for name in ordered]
    lanes: list[list[str]] = [[] for _ in range(max(1, parallel))]
    for index, name in enumerate(ordered):
        lanes[index % len(lanes)].append(name)
    return [lane for lane in lanes if lane]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few steps: every section, 1.5-2 minutes")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated subset of: {', '.join(SECTIONS)}")
    parser.add_argument("--data-dir", type=Path, help="the OpenI dataset folder (default: HELLO_DL_DATA_SOURCE "
                        "or the shared copy)")
    parser.add_argument("--output", type=Path, help="where to write the JSON (default: benchmarks/results/<time>.json)")
    parser.add_argument("--jobs", type=int, help="measurements run at once (default 1; --quick: 2). Above 1 the "
                        "timings compete for the cores: only for smoke runs")
    parser.add_argument("--fma-units", type=int, help="FMA units per core for the peak estimate (default: 2 "
                        "on AVX-512/AVX2 server cores)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds before one measurement is stopped")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="extra kit setting for every kit run, e.g. --set steps_per_execution=13")
    parser.add_argument("--only", help="comma-separated job names to run (e.g. kit_conference); sections show what they can")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker_main(args.worker)

    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        raise SystemExit(f"Unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}.")
    plan = Plan.make(args.quick)
    for pair in args.set:
        key, _, value = pair.partition("=")
        plan.extra_settings[key.strip()] = value.strip()

    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    output = args.output or HERE / "results" / f"{stamp}{'-quick' if args.quick else ''}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    work_dir = Path(tempfile.mkdtemp(prefix="hello_dl_bench_"))
    source = (args.data_dir or _default_data_dir()).resolve()
    data_dir = source
    if plan.train_per_class or plan.val_per_class:
        data_dir = _view(source, work_dir / "subset", train_per_class=plan.train_per_class,
                         val_per_class=plan.val_per_class)

    weights = weights_path(plan)
    jobs = _jobs(plan, data_dir, work_dir, sections, weights)
    if args.only:
        chosen = {name.strip() for name in args.only.split(",") if name.strip()}
        missing = sorted(chosen - set(jobs))
        if missing:
            raise SystemExit(f"Unknown job(s) {', '.join(missing)}; the chosen sections have: {', '.join(jobs)}.")
        jobs = {name: job for name, job in jobs.items() if name in chosen}
    host = machine.describe(args.fma_units)
    print(f"Machine: {machine.one_line(host)}", flush=True)
    print(f"{len(jobs)} measurement(s), each in its own process; logs in {work_dir}", flush=True)

    results: dict[str, dict] = {}
    parallel = args.jobs or (2 if args.quick else 1)
    groups = _groups(jobs, plan.quick, parallel)

    def one(names: list[str]) -> None:
        print(f"  running {', '.join(names)} ...", flush=True)
        outcome = run_group(names, jobs, work_dir, args.timeout)
        results.update(outcome)
        for name, r in outcome.items():
            status = "ok" if r["ok"] else f"FAILED ({r['error']}, log: {r['log']})"
            print(f"  {name}: {status}, {r['wall_seconds']:.0f} s, peak {r.get('peak_rss_mb', 0):.0f} MB", flush=True)

    started = time.perf_counter()
    if any(job["params"].get("weights") for job in jobs.values()) and not weights.is_file():
        print(f"  writing the random weights file {weights} (once; kept for later runs) ...", flush=True)
        made = run_group(["weights_file"], {"weights_file": {"kind": "weights_file", "params": {
            "path": str(weights), "image_size": plan.image_size}}}, work_dir, args.timeout)["weights_file"]
        if not made["ok"]:
            raise SystemExit(f"Could not write {weights}: {made['error']} (log: {made['log']})")
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        list(pool.map(one, groups))

    document = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        "parallel_jobs": parallel,
        "total_seconds": round(time.perf_counter() - started, 1),
        "machine": host,
        "plan": {k: v for k, v in vars(plan).items()},
        "data_dir": str(source),
        "jobs": results,
    }
    document["sections"] = report.sections(document, sections)
    document["targets"] = report.targets(document)
    table = report.markdown(document)
    print()
    print(table)
    temporary = output.with_suffix(".tmp")
    temporary.write_text(json.dumps(document, indent=2, default=str))
    os.replace(temporary, output)
    markdown_file = output.with_suffix(".md")
    markdown_file.write_text(table + "\n")
    print(f"\nResults: {output}\nTable:   {markdown_file}")
    failed = [name for name, r in results.items() if not r["ok"]]
    if failed:
        print(f"FAILED: {', '.join(failed)} (see the logs named above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
