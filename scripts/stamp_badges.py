"""Stamp the "Open in Colab" / "Open in Kaggle" badges and the install cell into every notebook,
and the same links into the README's table of notebooks.

All of it is generated from two values in pyproject.toml: ``[project.urls] Repository`` (the
kit's repository address, kept only there) and ``[project] version`` (the release tag
``v<version>`` the links and the install cell point at). A fork changes the address there and
runs ``make badges``. ``--check`` changes nothing and exits 1 when a file is out of date (a test
runs it). Notebooks are edited with nbformat: cell ids kept, no outputs.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from hello_dl import cloud  # noqa: E402 - the checkout's package, also without an install

NOTEBOOK_PATTERN = "[0-9][0-9]_*.ipynb"
BADGE_START = "[![Open In Colab]"
BINDER_START = "[![Launch on Binder]"
README_HEADER = "| notebook | what you do |"
README_LINKS_HEADER = "open in the cloud"
README_ROW = re.compile(r"^\| `(?P<stem>\d\d_[^`]+)` \| (?P<what>.*?) \|(?: .* \|)?$")


def project(root: Path = ROOT) -> tuple[str, str]:
    """(repository address, version) from pyproject.toml."""
    data = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    urls = data.get("urls", {})
    if "Repository" not in urls:
        raise SystemExit("pyproject.toml has no [project.urls] Repository: add the kit's GitHub address there.")
    return urls["Repository"], data["version"]


def stamp_notebook(notebook, stem: str, repository: str, version: str) -> bool:
    """Badges as the first line of the first markdown cell, the install cell right after it."""
    changed = False
    first = next(cell for cell in notebook.cells if cell.cell_type == "markdown")
    badges = cloud.badge_line(repository, version, f"notebooks/{stem}.ipynb")
    lines = first.source.split("\n")
    body = lines[1:] if lines[0].startswith(BADGE_START) else lines
    while body and not body[0].strip():
        body = body[1:]
    source = badges + "\n\n" + "\n".join(body)
    if first.source != source:
        first.source, changed = source, True

    wanted = cloud.install_cell(repository, version, stem[:2])
    existing = [cell for cell in notebook.cells if cell.get("id") == cloud.INSTALL_CELL_ID]
    if existing:
        if existing[0].source != wanted:
            existing[0].source, changed = wanted, True
    else:
        cell = nbformat.v4.new_code_cell(wanted)
        cell.id = cloud.INSTALL_CELL_ID
        notebook.cells.insert(notebook.cells.index(first) + 1, cell)
        changed = True
    return changed


def stamp_readme(text: str, repository: str, version: str) -> str:
    """Give the README's table of notebooks a column of Colab and Kaggle links; refresh the Binder link."""
    out = []
    in_notebook_table = False  # only the table of notebooks: other tables name notebooks too
    for line in text.split("\n"):
        if not line.startswith("|"):
            in_notebook_table = False
        if line.startswith(BINDER_START):
            line = f"{BINDER_START}({cloud.BINDER_BADGE})]({cloud.binder_link(repository, version)})"
        elif line.startswith(README_HEADER):
            line = f"{README_HEADER} {README_LINKS_HEADER} |"
            in_notebook_table = True
        elif line.startswith("| --- | --- |") and out and out[-1].startswith(README_HEADER):
            line = "| --- | --- | --- |"
        elif in_notebook_table:
            match = README_ROW.match(line)
            if match:
                links = cloud.notebook_links(repository, version, f"notebooks/{match['stem']}.ipynb")
                line = (f"| `{match['stem']}` | {match['what']} | "
                        f"[Colab]({links['colab']}) · [Kaggle]({links['kaggle']}) |")
        out.append(line)
    return "\n".join(out)


def stamp(root: Path = ROOT, *, write: bool = True) -> list[Path]:
    """Stamp (or with ``write=False`` only check) every notebook and the README; return what was stale."""
    repository, version = project(root)
    stale = []
    for path in sorted((root / "notebooks").glob(NOTEBOOK_PATTERN)):
        notebook = nbformat.read(path, as_version=4)
        if stamp_notebook(notebook, path.stem, repository, version):
            stale.append(path)
            if write:
                nbformat.validate(notebook)
                nbformat.write(notebook, path)
    readme = root / "README.md"
    text = readme.read_text(encoding="utf-8")
    new = stamp_readme(text, repository, version)
    if new != text:
        stale.append(readme)
        if write:
            readme.write_text(new, encoding="utf-8")
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file is out of date")
    args = parser.parse_args(argv)
    try:
        stale = stamp(write=not args.check)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 1
    names = ", ".join(str(p.relative_to(ROOT)) for p in stale)
    if args.check:
        if stale:
            print(f"Out of date (run `make badges`): {names}")
            return 1
        print("Badges, links and install cells are current.")
        return 0
    print(f"Stamped: {names}" if stale else "Everything was current already.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
