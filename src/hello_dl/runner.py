"""Run the numbered notebooks headless, in order: what ``hello-dl run`` and ``make run`` do.

The instructor runs this the night before a session: every ``notebooks/NN_*.ipynb`` is executed
top to bottom in a fresh Jupyter kernel (the one JupyterLab uses), with the chosen settings
handed to the kernel as ``HELLO_DL_*`` environment variables, exactly as a participant would
set them. The executed notebooks, every figure they drew and a one-page ``summary.md`` land in
a new folder ``<output_dir>/tutorial-<date>-<time>/`` (made by :func:`hello_dl.runs.create`);
nothing in ``notebooks/`` is changed.
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import nbformat
import zmq
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
from nbclient import NotebookClient

from hello_dl import runs
from hello_dl.errors import HelloDLError
from hello_dl.settings import ENV_PREFIX, Settings, project_root, setting_names

#: The headless run's folder: ``<output_dir>/<FOLDER_PREFIX>-<date>-<time>/``.
FOLDER_PREFIX = "tutorial"

#: Notebooks are picked up by name: two digits, an underscore, anything, ``.ipynb``.
NOTEBOOK_PATTERN = "[0-9][0-9]_*.ipynb"
KERNEL_NAME = "python3"

# Knobs always handed to the kernel: the recipe and the two folders (absolute, because the
# kernel runs inside notebooks/ and relative paths would land in the wrong place).
_ALWAYS_PASSED = ("profile", "data_dir", "output_dir")
# Where a value came from, when it is *not* worth passing on: the kernel derives these again
# from the profile and the participant, so passing them would only hide their real origin.
_DERIVED_SOURCES = ("default", "profile:", "group:", "participant ", "seat ")


class TutorialError(HelloDLError):
    """A notebook of the headless run failed or could not be started; the message says which and where."""


@dataclass
class NotebookResult:
    """How one notebook went: its executed copy, figures, time and (if it failed) where."""

    source: Path
    executed: Path | None = None
    seconds: float = 0.0
    figures: list[Path] = field(default_factory=list)
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


# --- finding the notebooks -------------------------------------------------------------------
def default_notebooks_dir() -> Path:
    return project_root() / "notebooks"


def notebook_paths(notebooks_dir: Path | None = None) -> list[Path]:
    """The lesson notebooks in teaching order (``00_…``, ``01_…``, …)."""
    folder = Path(notebooks_dir) if notebooks_dir is not None else default_notebooks_dir()
    if not folder.is_dir():
        raise TutorialError(f"The notebooks folder {folder} does not exist. Run this from the kit's folder "
                            "(the one with notebooks/ in it) or set HELLO_DL_HOME to it.")
    found = sorted(folder.glob(NOTEBOOK_PATTERN))
    if not found:
        raise TutorialError(f"No numbered notebooks (like 00_hello_world_and_setup.ipynb) in {folder}.")
    return found


# --- the kernel's environment -----------------------------------------------------------------
def _env_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def kernel_environment(settings: Settings, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for the notebook kernel: ``base`` (default: ours) with these settings as ``HELLO_DL_*``.

    Any ``HELLO_DL_<SETTING>`` inherited from the shell is dropped first, so the kernel sees
    exactly the settings this run was started with, not a stale variable.
    """
    knob_keys = {ENV_PREFIX + name.upper() for name in setting_names()}
    env = {k: v for k, v in (os.environ if base is None else base).items() if k not in knob_keys}
    for name, value in settings.knobs().items():
        origin = settings.sources.get(name, "default")
        if name in _ALWAYS_PASSED or not origin.startswith(_DERIVED_SOURCES):
            env[ENV_PREFIX + name.upper()] = _env_text(value)
    return env


# --- writing results ---------------------------------------------------------------------------
def _slug(text: str, length: int = 48) -> str:
    words = re.findall(r"[a-z0-9]+", text.lower())
    return "-".join(words)[:length].strip("-")


def save_figures(notebook: Any, figures_dir: Path, stem: str) -> list[Path]:
    """Write every PNG the notebook displayed to ``figures_dir``, named after the section it is in.

    ``05_training_curves-loss-and-accuracy-epoch-by-epoch-1.png``: the notebook, the heading of the
    markdown section above the cell, and a running number within that section.
    """
    written = []
    section = "start"
    per_section: dict[str, int] = {}
    for cell in notebook.cells:
        if cell.get("cell_type") == "markdown":
            heading = re.search(r"^#{1,4} (.+)$", cell.get("source", ""), re.MULTILINE)
            if heading:
                section = _slug(heading.group(1)) or section
            continue
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "image/png" not in data:
                continue
            per_section[section] = per_section.get(section, 0) + 1
            path = figures_dir / f"{stem}-{section}-{per_section[section]}.png"
            runs.write_atomic(path, base64.b64decode(data["image/png"]))
            written.append(path)
    return written


# --- running one notebook ------------------------------------------------------------------------
def _first_code_line(source: str) -> str:
    for line in source.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            return line.strip()[:100]
    return source.strip().splitlines()[0][:100] if source.strip() else "(empty cell)"


def _error_text(exc: BaseException) -> str:
    ename, evalue = getattr(exc, "ename", ""), getattr(exc, "evalue", "")
    if ename:
        return f"{ename}: {evalue}".strip()
    return f"{type(exc).__name__}: {exc}".strip().splitlines()[0]


def _encryption_options() -> dict[str, str]:
    """Encrypt the local kernel connection when ZeroMQ can (and silence the kernel's plain-text warning)."""
    return {"transport_encryption": "auto"} if zmq.has("curve") else {}


def _quiet_kernel_arguments() -> list[str]:
    """Keep the kernel from copying raw C++ output into cells, unless its spec already does.

    ``scripts/install_kernel.py`` (run by ``make`` and the Docker image) puts the flag in the
    kernel spec; passing it twice makes the kernel refuse to start.
    """
    flag = "--IPKernelApp.capture_fd_output=False"
    try:
        argv = KernelSpecManager().get_kernel_spec(KERNEL_NAME).argv
    except NoSuchKernel:
        return [flag]
    return [] if any(arg.startswith("--IPKernelApp.capture_fd_output") for arg in argv) else [flag]


def run_notebook(path: Path, destination: Path, env: dict[str, str], *, timeout: int | None = None,
                 echo: Callable[[str], None] = print, kernel_log: Path | None = None) -> tuple[Any, NotebookResult]:
    """Execute one notebook in a fresh kernel (cwd = its folder) and save the executed copy.

    TensorFlow's C++ start-up lines (``I0000 ... oneDNN``, ``cuInit`` on a machine without a GPU)
    are written straight to the process's error stream, below anything Python can silence. They
    go to ``kernel_log`` instead of into the executed notebook, where they would look like errors.
    """
    notebook = nbformat.read(path, as_version=4)
    result = NotebookResult(source=path)
    code_cells = [i for i, c in enumerate(notebook.cells) if c.cell_type == "code"]
    current: dict[str, Any] = {"index": None, "started": time.monotonic()}

    def on_cell_start(cell: Any, cell_index: int) -> None:
        current.update(index=cell_index, started=time.monotonic())

    def on_cell_executed(cell: Any, cell_index: int, execute_reply: Any = None) -> None:
        took = time.monotonic() - current["started"]
        # Quiet for quick cells; a line for slow ones so a long training cell shows it is alive.
        if took >= 10:
            position = code_cells.index(cell_index) + 1 if cell_index in code_cells else "?"
            echo(f"      code cell {position}/{len(code_cells)} took {took:.0f} s")

    client = NotebookClient(
        notebook, kernel_name=KERNEL_NAME, timeout=timeout, startup_timeout=120,
        extra_arguments=_quiet_kernel_arguments(),
        resources={"metadata": {"path": str(path.parent)}},
        on_cell_start=on_cell_start, on_cell_executed=on_cell_executed,
    )
    started = time.monotonic()
    if kernel_log is not None:
        kernel_log.parent.mkdir(parents=True, exist_ok=True)
    log_handle = open(kernel_log, "ab") if kernel_log is not None else None
    streams = {"stdout": log_handle, "stderr": log_handle} if log_handle is not None else {}
    try:
        client.execute(env=env, cwd=str(path.parent), **_encryption_options(), **streams)
    except Exception as exc:  # nbclient raises CellExecutionError, DeadKernelError, CellTimeoutError, ...
        index = current["index"]
        if index is None:
            where = "before its first cell (the notebook kernel did not start)"
        else:
            where = (f"cell {index + 1} of {len(notebook.cells)} (counting every cell from the top), "
                     f"which starts with: {_first_code_line(notebook.cells[index].source)}")
        result.error = f"{_error_text(exc)}\n  at {where}"
        if kernel_log is not None:
            result.error += f"\n  (the kernel's own messages are in {kernel_log})"
    finally:
        result.seconds = time.monotonic() - started
        if log_handle is not None:
            log_handle.close()
    runs.write_atomic(destination, nbformat.writes(notebook))
    result.executed = destination
    return notebook, result


# --- metrics for the summary -------------------------------------------------------------------
def _flat_numbers(data: Any, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    if isinstance(data, dict):
        for key, value in data.items():
            out.update(_flat_numbers(value, f"{prefix}{key}."))
    elif isinstance(data, (int, float)) and not isinstance(data, bool):
        out[prefix.rstrip(".")] = float(data)
    return out


def collect_metrics(output_dir: Path, since: float, exclude: Path) -> dict[Path, dict[str, float]]:
    """Numbers from every ``metrics*.json`` the run wrote under ``output_dir`` (newer than ``since``)."""
    found: dict[Path, dict[str, float]] = {}
    if not output_dir.is_dir():
        return found
    for path in sorted(output_dir.rglob("metrics*.json")):
        if exclude in path.parents or path.stat().st_mtime < since:
            continue
        try:
            numbers = _flat_numbers(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
        if numbers:
            found[path] = numbers
    return found


def metric_headlines(path: Path) -> list[str]:
    """The one-line summaries a metrics file carries (each set with its 95 % intervals), if any."""
    try:
        headlines = json.loads(path.read_text()).get("headlines", [])
    except (OSError, ValueError, AttributeError):
        return []
    return [str(line) for line in headlines] if isinstance(headlines, list) else []


def _relative(path: Path, start: Path) -> str:
    return os.path.relpath(path, start).replace(os.sep, "/")


def write_summary(folder: Path, settings: Settings, results: list[NotebookResult],
                  metrics: dict[Path, dict[str, float]], total_seconds: float) -> Path:
    """The one-page ``summary.md``: settings in brief, status and time per notebook, metrics, figure links."""
    failed = [r for r in results if not r.ok]
    lines = [
        "# Hello, World! deep learning: headless tutorial run",
        "",
        f"- Date: {datetime.now():%Y-%m-%d %H:%M}",
        f"- Result: {'FAILED in ' + failed[0].source.name if failed else 'all notebooks ran without error'}",
        f"- Total time: {total_seconds / 60:.1f} min",
        f"- {settings.describe_recipe()}",
        f"- Profile: {settings.profile}; image size {settings.image_size}; weights {settings.weights}; "
        f"epochs {settings.warmup_epochs} frozen + {settings.finetune_epochs} fine-tune; seed {settings.seed}",
        f"- Augmentation {'on' if settings.augment else 'off'}, dropout {settings.dropout}"
        + (f" (experiment group {settings.experiment_group})" if settings.experiment_group else ""),
        f"- Data: {settings.data_dir}",
        "",
        "## Notebooks",
        "",
        "| notebook | status | time | figures |",
        "| --- | --- | --- | --- |",
    ]
    for r in results:
        link = f"[{r.source.name}]({_relative(r.executed, folder)})" if r.executed else r.source.name
        status = "ok" if r.ok else "**failed**"
        lines.append(f"| {link} | {status} | {r.seconds:.0f} s | {len(r.figures)} |")
    for r in failed:
        lines += ["", f"**{r.source.name} stopped:** {r.error}"]
    lines += ["", "## Metrics", ""]
    if metrics:
        for path, numbers in metrics.items():
            lines.append(f"From `{_relative(path, folder)}`:")
            lines.append("")
            headlines = metric_headlines(path)
            if headlines:
                lines += ["Each share with its 95 % interval, each named by its set (training teaches, validation "
                          "chooses the kept epoch, only TEST reports; the paper's TEST has 2 images):", ""]
                lines += [f"- {line}" for line in headlines] + ["", "Every number in the file:", ""]
            lines += [f"- {key}: {value:.4g}" for key, value in numbers.items()]
            lines.append("")
    else:
        lines += ["No metrics file was written (training did not run or did not finish).", ""]
    lines += ["## Figures", ""]
    for r in results:
        if r.figures:
            links = ", ".join(f"[{p.stem[len(r.source.stem) + 1:]}]({_relative(p, folder)})" for p in r.figures)
            lines.append(f"- {r.source.stem}: {links}")
    if not any(r.figures for r in results):
        lines.append("No figures were drawn.")
    path = folder / "summary.md"
    runs.write_atomic(path, "\n".join(lines) + "\n")
    return path


# --- the whole sequence ----------------------------------------------------------------------------
def run_all(settings: Settings, notebooks_dir: Path | None = None, *, timeout: int | None = None,
            echo: Callable[[str], None] | None = None) -> Path:
    """Execute every numbered notebook in order; return the path of the summary page.

    Stops at the first failing notebook with a :class:`TutorialError` naming the notebook and the
    cell; the executed part and the summary are written before it stops, so the failure can be read.
    """
    say = echo or (lambda text: print(text, flush=True))
    notebooks = notebook_paths(notebooks_dir)
    folder = runs.create(settings, prefix=FOLDER_PREFIX)
    figures_dir = folder / runs.FIGURES
    env = kernel_environment(settings)
    say(f"Running {len(notebooks)} notebooks headless (profile {settings.profile}); results go to {folder}")

    started_wall, started = time.time(), time.monotonic()
    results: list[NotebookResult] = []
    for number, path in enumerate(notebooks, start=1):
        say(f"[{number}/{len(notebooks)}] {path.name} ... (elapsed {time.monotonic() - started:.0f} s)")
        executed, result = run_notebook(path, folder / path.name, env, timeout=timeout, echo=say,
                                        kernel_log=folder / "logs" / f"{path.stem}.log")
        result.figures = save_figures(executed, figures_dir, path.stem)
        results.append(result)
        if not result.ok:
            say(f"[{number}/{len(notebooks)}] {path.name} FAILED after {result.seconds:.0f} s")
            break
        say(f"[{number}/{len(notebooks)}] {path.name} done in {result.seconds:.0f} s")

    total = time.monotonic() - started
    metrics = collect_metrics(Path(settings.output_dir), started_wall, exclude=folder)
    summary = write_summary(folder, settings, results, metrics, total)
    failed = [r for r in results if not r.ok]
    if failed:
        r = failed[0]
        raise TutorialError(
            f"Notebook {r.source.name} stopped with an error: {r.error}\n"
            f"The notebook as far as it ran is saved as {r.executed}; open it in JupyterLab to see the "
            f"full message. Summary: {summary}"
        )
    say(f"All {len(results)} notebooks ran in {total / 60:.1f} min. Summary: {summary}")
    return summary


__all__ = [
    "FOLDER_PREFIX", "KERNEL_NAME", "NOTEBOOK_PATTERN", "NotebookResult", "TutorialError", "collect_metrics",
    "default_notebooks_dir", "kernel_environment", "metric_headlines", "notebook_paths", "run_all", "run_notebook", "save_figures",
    "write_summary",
]
