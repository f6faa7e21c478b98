#!/usr/bin/env python
"""Train the four conference experiment groups headless: the instructor's reference curves.

Usage:  python scripts/reference_curves.py [--profile P] [--groups 1A 2B ...] [--set KEY=VALUE] [--quiet]

The same as `hello-dl reference`; see `hello-dl reference --help`. Notebook 05 shows each
participant's curves beside these; run it the night before with the session's profile. Runs land
in <output_dir>/reference/<profile>/<group>/<run folder>/, plus a comparison figure
<output_dir>/reference/<profile>/comparison.png; notebook 05 uses the newest run of each group.

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

import sys

from hello_dl.cli import main

if __name__ == "__main__":
    sys.exit(main(["reference", *sys.argv[1:]]))
