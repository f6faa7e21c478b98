#!/usr/bin/env python3
"""Put everything the tutorial downloads onto this computer now, so it later runs offline.

    python scripts/prefetch.py                          # data (verified) + ImageNet weights
    python scripts/prefetch.py --data-source /media/usb/open_i_abd_vs_cxr   # data from a local folder or .zip
    python scripts/prefetch.py --skip-weights           # data only
    python scripts/prefetch.py --skip-data              # weights only

The Docker image runs this while it is built. Data go to ``HELLO_DL_DATA_DIR`` (default
``data/open_i_abd_vs_cxr``); the weights go to the Keras cache (``~/.keras/models`` or
``$KERAS_HOME/models``), where InceptionV3 looks for them.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-source", help="URL, local folder or .zip of the images "
                        "(default: HELLO_DL_DATA_SOURCE or the paper's archive)")
    parser.add_argument("--data-dir", help="where the verified images go (default: HELLO_DL_DATA_DIR)")
    parser.add_argument("--profile", help="settings profile (paper | conference | smoke)")
    parser.add_argument("--skip-data", action="store_true", help="do not fetch the images")
    parser.add_argument("--skip-weights", action="store_true", help="do not fetch the ImageNet weights")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from hello_dl.errors import HelloDLError
    from hello_dl.settings import load_settings

    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(args.profile, data_source=args.data_source, data_dir=args.data_dir)
        if not args.skip_data:
            from hello_dl import fetch

            print(f"Data ready and verified in {fetch.fetch_data(settings)}")
        if not args.skip_weights:
            from hello_dl import weights

            print(f"Pretrained weights ready: {weights.prefetch_weights(settings)}")
    except HelloDLError as exc:
        print(f"prefetch: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
