"""Download (or copy) the tutorial's images and check every file against data/MANIFEST.sha256.

Usage:  python scripts/fetch_data.py [--source URL_OR_ZIP_OR_FOLDER] [--data-dir FOLDER]

The same as `hello-dl fetch`; see `hello-dl fetch --help`.
"""

import sys

from hello_dl.cli import main

if __name__ == "__main__":
    sys.exit(main(["fetch", *sys.argv[1:]]))
