"""Drive JupyterLab in a real headless Chromium, the way a participant uses it.

Helpers for ``test_browser.py``: start JupyterLab (token protected, loopback only, a free port) and
Debian's Chromium as child processes whose ids we keep, so both are always stopped by those ids,
and a small page object that clicks through JupyterLab's own UI: the file browser, the Run menu,
the cell prompts and outputs.

Chromium is started by us (not by Playwright) and Playwright attaches to it over the DevTools
protocol: that way no browser is ever downloaded and we own the browser's process id.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import psutil

CHROMIUM = Path("/usr/bin/chromium")

# Flags for a container: no sandbox (we may be root), no GPU, nothing phoning home, no first-run UI.
# --disable-dev-shm-usage because Docker's default /dev/shm (64 MB) is too small for Chromium.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-quic",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--no-default-browser-check",
    "--hide-scrollbars",
    "--window-size=1280,900",
)

EXECUTED_PROMPT = re.compile(r"^\[\d+\]:$")  # "[3]:" once a code cell has run; "[*]:" while queued or running
TRACEBACK_HEADER = "Traceback (most recent call last)"


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stop_process_tree(process: subprocess.Popen, grace_seconds: float = 10.0) -> None:
    """Stop a process we started, its process group and every descendant it spawned.

    JupyterLab starts each kernel in a session of its own, so killing the process group alone
    would leave kernels behind: the descendants are collected by id before anything is signalled.
    """
    if process.poll() is not None:
        return
    try:
        descendants = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        descendants = []
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGTERM)  # we started it with start_new_session: pgid == pid
    try:
        process.wait(timeout=grace_seconds)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=grace_seconds)
    _, still_running = psutil.wait_procs(descendants, timeout=grace_seconds)
    for leftover in still_running:
        with contextlib.suppress(psutil.NoSuchProcess):
            leftover.kill()
    psutil.wait_procs(still_running, timeout=grace_seconds)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


@dataclass
class JupyterLab:
    """A running JupyterLab server that this test started."""

    process: subprocess.Popen
    port: int
    token: str
    log_path: Path
    root_dir: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def lab_url(self) -> str:
        return f"{self.base_url}/lab?token={self.token}"

    def api(self, path: str, *, with_token: bool = True) -> tuple[int, object]:
        """GET a REST endpoint of the server; returns (HTTP status, decoded JSON or None)."""
        request = urllib.request.Request(self.base_url + path)
        if with_token:
            request.add_header("Authorization", f"token {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as refused:
            return refused.code, None

    def kernel_state(self, notebook_path: str) -> str | None:
        """The execution state ("starting", "busy", "idle") of the kernel behind a notebook."""
        status, sessions = self.api("/api/sessions")
        if status != 200:
            return None
        for session in sessions or []:
            if session.get("path") == notebook_path and session.get("kernel"):
                return session["kernel"].get("execution_state")
        return None

    def log_tail(self) -> str:
        return _tail(self.log_path)


def _wait_until_ready(lab: JupyterLab, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lab.process.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with code {lab.process.returncode} while starting; "
                               f"its log ({lab.log_path}) ends with:\n{lab.log_tail()}")
        with contextlib.suppress(OSError):
            status, _ = lab.api("/api/status")
            if status == 200:
                return
        time.sleep(0.3)
    raise TimeoutError(f"JupyterLab did not answer /api/status within {timeout:.0f} s; "
                       f"its log ({lab.log_path}) ends with:\n{lab.log_tail()}")


def _write_lab_page_config(config_dir: Path) -> None:
    # The "get Jupyter news?" toast would cover part of the notebook in the screenshot. JupyterLab
    # renders a traceback with the same mime type and markup as text printed to stderr (warnings),
    # so telling an error apart needs the output's type from the notebook model: exposeAppInBrowser
    # (JupyterLab's switch for UI tests) makes the app reachable from the page as window.jupyterapp.
    labconfig = config_dir / "labconfig"
    labconfig.mkdir(parents=True, exist_ok=True)
    page_config = {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True},
                   "exposeAppInBrowser": True}
    (labconfig / "page_config.json").write_text(json.dumps(page_config))


@contextlib.contextmanager
def running_jupyterlab(root_dir: Path, work_dir: Path, log_path: Path, extra_env: dict[str, str],
                       startup_timeout: float = 90.0) -> Iterator[JupyterLab]:
    """Start ``jupyter lab`` from this venv on root_dir; always stop it (and its kernels) afterwards.

    Every Jupyter and IPython folder (config, user settings, workspaces, runtime files) points into
    work_dir, so the developer's own JupyterLab setup neither leaks into the test nor gets touched.
    """
    token = secrets.token_hex(24)
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HELLO_DL_", "JUPYTER"))}
    env.update({
        "JUPYTER_TOKEN": token,  # in the environment, not on the command line where `ps` shows it
        "JUPYTER_CONFIG_DIR": str(work_dir / "jupyter-config"),
        "JUPYTER_RUNTIME_DIR": str(work_dir / "jupyter-runtime"),
        "JUPYTERLAB_WORKSPACES_DIR": str(work_dir / "jupyterlab-workspaces"),
        "IPYTHONDIR": str(work_dir / "ipython"),
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra_env)
    command = [
        sys.executable, "-m", "jupyter", "lab",
        "--no-browser", "--ip=127.0.0.1", f"--port={port}", "--port-retries=0",
        f"--ServerApp.root_dir={root_dir}",
        # Offline machine: do not fetch the news feed or look for a newer JupyterLab.
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    _write_lab_page_config(work_dir / "jupyter-config")
    if os.geteuid() == 0:
        command.append("--allow-root")  # CI runs as root in a container
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=root_dir, env=env, stdin=subprocess.DEVNULL,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    lab = JupyterLab(process=process, port=port, token=token, log_path=log_path, root_dir=root_dir)
    try:
        _wait_until_ready(lab, startup_timeout)
        yield lab
    finally:
        stop_process_tree(process)


@contextlib.contextmanager
def running_chromium(user_data_dir: Path, log_path: Path, startup_timeout: float = 30.0):
    """Start Debian's Chromium headless with a fresh profile; yield a Playwright Browser attached to it.

    Chromium picks a free DevTools port itself (port 0, loopback only) and writes it to
    DevToolsActivePort in the profile folder, so there is no port race.
    """
    from playwright.sync_api import sync_playwright

    user_data_dir.mkdir(parents=True, exist_ok=True)
    command = [str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={user_data_dir}",
               "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "about:blank"]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        port = _devtools_port(process, user_data_dir / "DevToolsActivePort", log_path, startup_timeout)
        with sync_playwright() as playwright:
            browser = playwright.chromium.connect_over_cdp(f"http://127.0.0.1:{port}")
            try:
                yield browser
            finally:
                with contextlib.suppress(Exception):
                    browser.close()
    finally:
        stop_process_tree(process)


def _devtools_port(process: subprocess.Popen, port_file: Path, log_path: Path, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Chromium exited with code {process.returncode} while starting; "
                               f"its log ends with:\n{_tail(log_path)}")
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int(port_file.read_text().splitlines()[0])
        time.sleep(0.1)
    raise TimeoutError(f"Chromium did not open its DevTools port within {timeout:.0f} s; "
                       f"its log ends with:\n{_tail(log_path)}")


# The visible notebook (JupyterLab hides, not removes, the panels of background tabs).
NOTEBOOK = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook"

ERROR_OUTPUTS_JS = """
() => {
  const app = window.jupyterapp;
  const notebook = app && app.shell.currentWidget && app.shell.currentWidget.content;
  if (!notebook || !notebook.widgets) { return null; }
  const errors = [];
  notebook.widgets.forEach((cell, index) => {
    if (cell.model.type !== 'code') { return; }
    const outputs = cell.model.outputs;
    for (let i = 0; i < outputs.length; i++) {
      if (outputs.get(i).type === 'error') {
        const shown = cell.outputArea.widgets[i];
        errors.push(`cell ${index}: ` + (shown ? shown.node.textContent : JSON.stringify(outputs.get(i).toJSON())));
      }
    }
  });
  return errors;
}
"""

# How much taller than the notebook panel the notebook's cells are (JupyterLab adds blank room after
# the last cell so it can be scrolled up; that room is left out). Also scrolls back to the top.
NOTEBOOK_OVERFLOW_JS = """
() => {
  const outer = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-WindowedPanel-outer');
  const cells = outer ? outer.querySelectorAll('.jp-Cell') : [];
  if (!cells.length) { return 0; }
  const top = outer.getBoundingClientRect().top - outer.scrollTop;
  const cellsBottom = cells[cells.length - 1].getBoundingClientRect().bottom - top;
  outer.scrollTop = 0;
  return Math.max(0, Math.ceil(cellsBottom + 40 - outer.clientHeight));
}
"""


class LabSession:
    """One browser tab on JupyterLab, used only through what a participant sees and clicks."""

    def __init__(self, page, lab: JupyterLab) -> None:
        self.page = page
        self.lab = lab
        self.notebook_path: str | None = None
        self.kernel_chosen_in_dialog = False

    @property
    def root_dir(self) -> Path:
        """The folder JupyterLab serves (the file browser's top level)."""
        return self.lab.root_dir

    def open_lab(self, timeout: float = 90.0) -> None:
        self.page.goto(self.lab.lab_url, timeout=timeout * 1000)
        self.page.locator(".jp-DirListing-item").first.wait_for(timeout=timeout * 1000)

    def open_from_file_browser(self, file_name: str, timeout: float = 90.0) -> None:
        """Double-click the notebook in the left panel; pick the kernel if JupyterLab asks for one."""
        item = self.page.locator(".jp-DirListing-itemText").get_by_text(file_name, exact=True)
        item.dblclick(timeout=timeout * 1000)
        self.page.locator(f"{NOTEBOOK} .jp-Cell").first.wait_for(timeout=timeout * 1000)
        self.notebook_path = file_name
        self._wait_for_kernel(timeout)

    def _wait_for_kernel(self, timeout: float) -> None:
        select_kernel = self.page.locator(".jp-Dialog").filter(has_text="Select Kernel").locator(".jp-mod-accept")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if select_kernel.count() and select_kernel.first.is_visible():
                select_kernel.first.click()  # "Select": the preferred (project) kernel is preselected
                self.kernel_chosen_in_dialog = True
            elif self.lab.kernel_state(self.notebook_path) == "idle":
                return
            time.sleep(0.3)
        raise TimeoutError(f"the kernel of {self.notebook_path} was not ready within {timeout:.0f} s "
                           f"(state: {self.lab.kernel_state(self.notebook_path)})")

    def run_all_cells(self) -> None:
        """Run menu → Run All Cells, as a participant would."""
        self.page.locator(".lm-MenuBar-itemLabel").get_by_text("Run", exact=True).click()
        self.page.locator("#jp-mainmenu-run .lm-Menu-itemLabel").get_by_text("Run All Cells", exact=True).click()

    def code_cell_prompts(self) -> list[str]:
        return [prompt.strip() for prompt in
                self.page.locator(f"{NOTEBOOK} .jp-CodeCell .jp-InputArea-prompt").all_text_contents()]

    def error_outputs(self) -> list[str]:
        """The tracebacks shown in the notebook: outputs whose type is "error" (not stderr text)."""
        errors = self.page.evaluate(ERROR_OUTPUTS_JS)
        if errors is None:
            raise RuntimeError("cannot read the open notebook from the page (window.jupyterapp is missing; "
                               "is exposeAppInBrowser set in the lab's page_config.json?)")
        # Belt and braces: a rendered traceback the model did not report as an error is one too.
        shown = self.page.locator(f'{NOTEBOOK} .jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')
        tracebacks = [text for text in shown.all_text_contents() if TRACEBACK_HEADER in text]
        return errors + [text for text in tracebacks if not any(text in error for error in errors)]

    def wait_until_finished(self, timeout: float) -> list[str]:
        """Wait until every code cell has an execution count and the kernel is idle; returns the prompts.

        Run All stops at the first error and resets the queued cells to "[ ]", so an error ends the
        wait early (the caller then sees it in error_outputs()).
        """
        deadline = time.monotonic() + timeout
        prompts: list[str] = []
        state = None
        while time.monotonic() < deadline:
            prompts = self.code_cell_prompts()
            state = self.lab.kernel_state(self.notebook_path)
            all_ran = bool(prompts) and all(EXECUTED_PROMPT.match(p) for p in prompts)
            stopped_by_error = "[*]:" not in prompts and bool(self.error_outputs())
            if state == "idle" and (all_ran or stopped_by_error):
                return prompts
            time.sleep(0.5)
        raise TimeoutError(f"{self.notebook_path} did not finish within {timeout:.0f} s: kernel {state}, "
                           f"prompts {prompts}")

    def stdout_outputs(self, containing: str | re.Pattern | None = None):
        """Locator of the printed-text outputs of the visible notebook, optionally those with this text."""
        shown = self.page.locator(f'{NOTEBOOK} .jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stdout"]')
        return shown if containing is None else shown.filter(has_text=containing)

    def stdout_texts(self) -> list[str]:
        return self.stdout_outputs().all_text_contents()

    def first_output_image(self):
        return self.page.locator(f"{NOTEBOOK} .jp-OutputArea-output img").first

    def save_screenshot(self, path: Path, max_height: int = 20000) -> Path:
        """Screenshot of the whole notebook. JupyterLab scrolls inside its own panel, so a page screenshot
        would only show the first screenful: the window is made as tall as the notebook first. Cells
        off screen are laid out with estimated heights until shown, hence a few rounds until it fits."""
        path.parent.mkdir(parents=True, exist_ok=True)
        size = self.page.viewport_size or {"width": 1280, "height": 900}
        height = size["height"]
        for _ in range(4):
            overflow = self.page.evaluate(NOTEBOOK_OVERFLOW_JS)
            if overflow <= 0 or height >= max_height:
                break
            height = min(height + overflow, max_height)
            self.page.set_viewport_size({"width": size["width"], "height": height})
            self.page.wait_for_timeout(500)  # JupyterLab lays out again after a resize
        self.page.screenshot(path=str(path), full_page=True)
        return path
