#!/usr/bin/env python
"""Build the instructor's materials (``make materials``): slides, printable glossary, pre/post quiz.

    .venv/bin/python scripts/build_materials.py [--out materials/build] [--cache DIR]

See :mod:`hello_dl.materials` for what is made from which source.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hello_dl import materials
from hello_dl.errors import HelloDLError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="folder to build into (default: materials/build)")
    parser.add_argument("--cache", type=Path, help="where the reveal.js wheel is kept (default: inside the venv)")
    args = parser.parse_args(argv)
    try:
        materials.build(args.out, cache=args.cache)
    except HelloDLError as exc:
        print(f"build_materials: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
