#!/usr/bin/env python
"""Write the student and instructor editions of the notebooks (``make editions``), or ``--check`` them.

The one source is ``notebooks/``; ``editions/student/`` (answers taken out) and
``editions/instructor/`` (answers unfolded, the timeline note) are generated from it by
:mod:`hello_dl.editions`. ``--check`` changes nothing and exits 1 when an edition is out of date.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from hello_dl import editions  # noqa: E402 - the checkout's package, also without an install


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if an edition is out of date")
    args = parser.parse_args(argv)
    if args.check:
        stale = editions.stale(ROOT)
        if stale:
            names = ", ".join(str(p.relative_to(ROOT)) for p in stale)
            print(f"Out of date (run `make editions`): {names}")
            return 1
        print("The student and instructor editions are current.")
        return 0
    changed = editions.write(ROOT)
    print(f"Written: {len(changed)} file(s) in {editions.EDITIONS_FOLDER}/" if changed else "The editions were current.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
