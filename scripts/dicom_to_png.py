"""Convert a folder of DICOM files into 8-bit PNGs (windowed, MONOCHROME1 inverted).

Usage:  python scripts/dicom_to_png.py SOURCE_FOLDER DESTINATION_FOLDER

The same as `hello-dl dicom-to-png SOURCE DESTINATION`: sub-folders are mirrored, the DICOM
files are only read, and PNG files that already exist are never overwritten.
"""

import sys

from hello_dl.cli import main

if __name__ == "__main__":
    sys.exit(main(["dicom-to-png", *sys.argv[1:]]))
