#!/usr/bin/env python
"""A/B measurements of speed knobs on the kit's own training (the "make it fast" experiments).

    .venv/bin/python benchmarks/experiments.py \\
        --variant base: --variant spe13:steps_per_execution=13 --variant noaug:augment=false \\
        --epochs 3,3 --repeats 2

Each variant is ``name:key=value,key=value`` with kit settings (``HELLO_DL_*`` names in lower case)
plus one experiment-only switch that is not a setting: ``jit_compile=true`` (XLA: every
``model.compile`` of the run gets ``jit_compile=True``). Runs
are interleaved (A B A B ...) in fresh processes, so slow phases of a shared machine hit every
variant alike; the table shows the median of the repeats.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run  # noqa: E402

SWITCHES = ("jit_compile",)


def parse_variant(text: str) -> tuple[str, dict, dict]:
    name, _, body = text.partition(":")
    settings, switches = {}, {}
    for pair in filter(None, (p.strip() for p in body.split(","))):
        key, _, value = pair.partition("=")
        (switches if key in SWITCHES else settings)[key.strip()] = value.strip()
    return name, settings, switches


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", action="append", required=True, help="name:key=value,... (repeatable)")
    parser.add_argument("--epochs", default="3,3", help="warm-up,fine-tune epochs (default 3,3)")
    parser.add_argument("--image-size", type=int, default=299)
    parser.add_argument("--profile", default="conference")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--output", type=Path, help="JSON with every run (default: benchmarks/results/experiments-*.json)")
    args = parser.parse_args(argv)

    warmup, finetune = (int(x) for x in args.epochs.split(","))
    data_dir = (args.data_dir or run._default_data_dir()).resolve()
    images = run._count_train(data_dir)
    work_dir = Path(tempfile.mkdtemp(prefix="hello_dl_experiments_"))
    variants = [parse_variant(v) for v in args.variant]

    jobs = {}
    order = []
    for repeat in range(args.repeats):
        for name, settings, switches in variants:
            label = f"{name}#{repeat + 1}"
            jobs[label] = {"kind": "kit_run", "params": {
                "image_size": args.image_size, "batch_size": 5, "data_dir": str(data_dir), "profile": args.profile,
                "train_images": images, "stages": ["train"], "switches": switches,
                "settings": {"warmup_epochs": warmup, "finetune_epochs": finetune, **settings}}}
            order.append(label)

    rows = {}
    for label in order:
        print(f"running {label} ...", flush=True)
        outcome = run.run_group([label], jobs, work_dir, timeout=7200)[label]
        rows[label] = outcome
        if not outcome["ok"]:
            print(f"  FAILED: {outcome['error']}; log {outcome['log']}", flush=True)
            continue
        phases = outcome["result"]["phases"]
        print(f"  wall {outcome['wall_seconds']:.0f} s, peak {outcome['peak_rss_mb']:.0f} MB, "
              + ", ".join(f"{p}: {v.get('steady_seconds_per_step')} s/step, first epoch {v.get('first_epoch_seconds')} s"
                          for p, v in phases.items()), flush=True)

    print()
    header = ["variant", "wall s", "train s", "warmup s/step", "finetune s/step", "warmup 1st epoch s",
              "finetune 1st epoch s", "steady epoch s (w/f)", "peak MB"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name, _, _ in variants:
        done = [rows[f"{name}#{r + 1}"] for r in range(args.repeats) if rows[f"{name}#{r + 1}"]["ok"]]
        if not done:
            print(f"| {name} | failed |")
            continue

        def med(getter):
            values = [v for v in (getter(d) for d in done) if v is not None]
            return round(statistics.median(values), 3) if values else None

        def phase(d, p, key):
            return d["result"]["phases"].get(p, {}).get(key)

        print("| " + " | ".join(str(x) for x in [
            name, med(lambda d: d["wall_seconds"]), med(lambda d: d["result"]["stage_seconds"]["train"]),
            med(lambda d: phase(d, "warmup", "steady_seconds_per_step")),
            med(lambda d: phase(d, "finetune", "steady_seconds_per_step")),
            med(lambda d: phase(d, "warmup", "first_epoch_seconds")),
            med(lambda d: phase(d, "finetune", "first_epoch_seconds")),
            f"{med(lambda d: phase(d, 'warmup', 'steady_epoch_seconds'))}/"
            f"{med(lambda d: phase(d, 'finetune', 'steady_epoch_seconds'))}",
            med(lambda d: d["peak_rss_mb"])]) + " |")

    output = args.output or HERE / "results" / f"experiments-{Path(work_dir).name}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({"variants": args.variant, "epochs": args.epochs, "runs": rows}, indent=2))
    print(f"\nAll runs: {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
