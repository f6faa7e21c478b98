#!/usr/bin/env python
"""Start JupyterLab on the tutorial's notebooks (what ``make lab`` runs), always behind a token.

The token is ``JUPYTER_TOKEN`` when that is set, otherwise a fresh random one; the address to
open, token included, is printed before JupyterLab starts. JupyterLab listens on 127.0.0.1
(this computer only) unless ``--ip`` says otherwise, e.g. ``--ip 0.0.0.0`` inside Docker.

    .venv/bin/python scripts/lab.py [--port 8888] [--ip 127.0.0.1] [--no-browser] [--edition student]

Which notebooks: ``--edition student`` (the default, what participants open: the answers to
"Check your understanding" taken out), ``instructor`` (answers unfolded, the timeline note) or
``source`` (``notebooks/``, what the editions are made from); ``HELLO_DL_EDITION`` sets the
default. A copy of the kit that holds only one edition (the Docker image's ``notebooks/`` is the
student edition) opens ``notebooks/``.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = PROJECT_ROOT / "notebooks"
EDITIONS = {"student": PROJECT_ROOT / "editions" / "student", "instructor": PROJECT_ROOT / "editions" / "instructor",
            "source": NOTEBOOKS}


def notebooks_folder(edition: str) -> Path:
    """The folder JupyterLab opens for ``edition``: its generated folder, or notebooks/ where the kit has no editions."""
    folder = EDITIONS[edition]
    return folder if folder.is_dir() else NOTEBOOKS
ALL_INTERFACES = {"0.0.0.0", "::", ""}


def choose_token(environ: dict[str, str]) -> str:
    """The user's JUPYTER_TOKEN, or a new random one: the server never runs without a token."""
    given = environ.get("JUPYTER_TOKEN", "").strip()
    return given or secrets.token_urlsafe(24)


def port_is_free(ip: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((ip or "0.0.0.0", port))
        except OSError:
            return False
    return True


def first_free_port(ip: str, wanted: int, tries: int = 50) -> int:
    for port in range(wanted, wanted + tries):
        if port_is_free(ip, port):
            return port
    raise SystemExit(f"Ports {wanted}-{wanted + tries - 1} are all busy on {ip}; pass a free one with --port.")


def browser_url(ip: str, port: int, token: str) -> str:
    # Listening on every interface still means "open it on this machine" for the person reading this.
    host = "127.0.0.1" if ip in ALL_INTERFACES else ip
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/lab?token={token}"


def lab_command(ip: str, port: int, open_browser: bool, root: Path = NOTEBOOKS) -> list[str]:
    """The JupyterLab command line. The token is passed in the environment, never on the command line,
    where any user of the machine could read it in the process list."""
    command = [
        sys.executable, "-m", "jupyterlab",
        f"--ServerApp.root_dir={root}",
        f"--ServerApp.ip={ip}",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",  # the printed address must be the one actually served
        f"--ServerApp.open_browser={open_browser}",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")  # Docker containers run as root
    return command


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Start JupyterLab on the tutorial notebooks (token protected).")
    parser.add_argument("--ip", default=os.environ.get("HELLO_DL_LAB_IP", "127.0.0.1"),
                        help="address to listen on (default 127.0.0.1: this computer only; 0.0.0.0 in Docker)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("HELLO_DL_LAB_PORT", "8888")),
                        help="port (default 8888; the next free one is used if it is busy)")
    parser.add_argument("--no-browser", action="store_true", help="do not try to open a web browser")
    parser.add_argument("--edition", choices=sorted(EDITIONS), default=os.environ.get("HELLO_DL_EDITION", "student"),
                        help="student (default: what participants open), instructor (with the answers) or source")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    root = notebooks_folder(args.edition)
    if not root.is_dir():
        raise SystemExit(f"The notebooks folder {root} is missing; run this from a full copy of the kit.")
    port = first_free_port(args.ip, args.port)
    if port != args.port:
        print(f"Port {args.port} is busy; using {port} instead.")
    env = dict(os.environ)
    env["JUPYTER_TOKEN"] = choose_token(env)
    # Notebooks find data/ and outputs/ of this checkout even when the package is installed elsewhere.
    env.setdefault("HELLO_DL_HOME", str(PROJECT_ROOT))
    print(f"Starting JupyterLab on the tutorial notebooks ({args.edition} edition: {root}).")
    # In Docker the browser reaches the server through a mapped port (HOST_PORT), not this one.
    public_port = int(os.environ.get("HOST_PORT") or port)
    print(f"Open this address in your web browser (the token in it is the password):\n\n    "
          f"{browser_url(args.ip, public_port, env['JUPYTER_TOKEN'])}\n")
    print("Stop JupyterLab with Ctrl+C (twice).", flush=True)
    command = lab_command(args.ip, port, open_browser=not args.no_browser, root=root)
    os.execve(command[0], command, env)  # JupyterLab takes over this process: Ctrl+C goes straight to it


if __name__ == "__main__":
    main()
