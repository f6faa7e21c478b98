#!/usr/bin/env python
"""Train the four conference experiment groups headless: the instructor's reference curves.

Notebook 05 shows each participant's training curves beside these. Run it the night before,
with the profile the session will use (default: HELLO_DL_PROFILE, else conference):

    .venv/bin/python scripts/reference_curves.py                      # all four groups
    .venv/bin/python scripts/reference_curves.py --profile smoke      # a quick check (about 2 minutes)
    .venv/bin/python scripts/reference_curves.py --groups 1A 2B --set image_size=224

Runs land in <output_dir>/reference/<profile>/<group>/<run folder>/ (history, best model, figures,
metrics), plus a comparison figure <output_dir>/reference/<profile>/comparison.png. Running it
again adds new runs; notebook 05 always uses the newest of each group.

How long it takes (four groups; each group is one full training run of the profile):
  smoke (75 px, 1 + 1 epochs, no pretrained weights): measured 1.5-2.5 min per group (9.3 min for all
    four) on a 2-core CPU that other jobs were using at the same time; about 1 min of CPU time per group.
  conference (299 px, 5 frozen + 5 fine-tune epochs from mixed9): estimated 3-4 min per group on a
    2-core CPU, so 12-16 min; under 1 min per group on one GPU.
  paper (299 px, 20 epochs, everything trainable): estimated about 8 min per group on a 2-core CPU,
    so about 35 min; 1-2 min per group on one GPU.
The estimates come from timings on this 2-core machine at 299 px, batch 5, 65 images: an epoch takes
about 11 s with the base frozen and 22 s fully trainable, plus about 45 s of one-off graph tracing
when the base is first unfrozen, plus loading and evaluation.
"""

from __future__ import annotations

import argparse
import sys
import time

from hello_dl.errors import HelloDLError
from hello_dl.groups import GROUPS
from hello_dl.settings import load_settings


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train the four experiment groups for notebook 05's reference curves.")
    parser.add_argument("--profile", help="paper | conference | smoke (default: HELLO_DL_PROFILE or conference)")
    parser.add_argument("--groups", nargs="+", default=list(GROUPS), metavar="GROUP",
                        help="which groups to train (default: all of 1A 1B 2A 2B)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one setting, e.g. --set image_size=224 (repeatable)")
    parser.add_argument("--quiet", action="store_true", help="no per-epoch lines from Keras")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from hello_dl import fetch, tutorial

    try:
        overrides = dict(pair.split("=", 1) for pair in args.set)
    except ValueError:
        print("reference_curves: --set expects KEY=VALUE, e.g. --set image_size=224", file=sys.stderr)
        return 2
    started = time.monotonic()
    try:
        settings = load_settings(args.profile, **{k.strip(): v for k, v in overrides.items()})
        fetch.fetch_data(settings)
        runs = tutorial.train_reference_groups(settings, args.groups, verbose=0 if args.quiet else 2)
    except HelloDLError as exc:
        print(f"reference_curves: {exc}", file=sys.stderr)
        return 2
    print(f"\nDone in {(time.monotonic() - started) / 60:.1f} min. Notebook 05 now shows:")
    for group, run_dir in runs.items():
        print(f"  group {group}: {run_dir}")
    print(f"Comparison figure: {tutorial.reference_dir(settings) / 'comparison.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
