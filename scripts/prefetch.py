#!/usr/bin/env python3
"""Put everything the tutorial downloads onto this computer now, so it later runs offline.

    python scripts/prefetch.py                          # data (verified) + ImageNet weights
    python scripts/prefetch.py --data-source /media/usb/open_i_abd_vs_cxr   # data from a local folder or .zip
    python scripts/prefetch.py --skip-weights           # data only
    python scripts/prefetch.py --skip-data              # weights only

A thin name for `hello-dl fetch --weights` (this script only translates its options; any other
option, such as --set, goes to `hello-dl fetch` as it is). Data go to ``HELLO_DL_DATA_DIR``
(default ``data/open_i_abd_vs_cxr``); the weights go to the Keras cache (``~/.keras/models`` or
``$KERAS_HOME/models``), where InceptionV3 looks for them.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from hello_dl.cli import main as hello_dl


def fetch_arguments(argv: Sequence[str]) -> list[str] | None:
    """This script's options as `hello-dl fetch` arguments (``None``: both parts skipped, nothing to do)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-source", help="URL, local folder or .zip of the images (hello-dl fetch --source)")
    parser.add_argument("--skip-data", action="store_true", help="do not fetch the images")
    parser.add_argument("--skip-weights", action="store_true", help="do not fetch the ImageNet weights")
    args, rest = parser.parse_known_args(argv)
    if args.skip_data and args.skip_weights:
        return None
    parts = ["fetch", *rest]
    if args.data_source:
        parts += ["--source", args.data_source]
    if not args.skip_weights:
        parts.append("--weights-only" if args.skip_data else "--weights")
    return parts


def main(argv: Sequence[str] | None = None) -> int:
    arguments = fetch_arguments(sys.argv[1:] if argv is None else argv)
    if arguments is None:
        print("prefetch: --skip-data and --skip-weights together leave nothing to fetch.")
        return 0
    return hello_dl(arguments)


if __name__ == "__main__":
    sys.exit(main())
