#!/usr/bin/env python3
"""Turn one service of a compose file into the `docker run` arguments that start it.

CI's Docker engine is Debian's docker.io, which has no `docker compose`; so that the load test
runs the room server exactly as docker/hub/compose.yaml describes it (image, command, entry point,
host network, volumes, environment, restart policy, user), this reads that file and prints the
arguments, one per line, for `docker run --detach`. It knows the part of the compose format the
room's file uses (${VAR:-default} interpolation, YAML anchors and merge keys, short volume syntax,
named volumes prefixed with the project name) and refuses anything else, so the file cannot
silently grow something CI would not exercise.

    compose_run.py docker/hub/compose.yaml hub --name CONTAINER   # arguments after `docker run --detach`
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

import yaml

KNOWN = {"image", "build", "command", "entrypoint", "network_mode", "restart", "environment", "volumes",
         "depends_on", "profiles", "user"}
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate(text: str) -> str:
    def value(match: re.Match) -> str:
        name, default = match.group(1), match.group(2)
        given = os.environ.get(name, "")
        return given if given else (default or "")
    return VARIABLE.sub(value, str(text))


def run_arguments(compose_file: Path, service_name: str, container: str) -> list[str]:
    spec = yaml.safe_load(compose_file.read_text())
    project = spec.get("name") or compose_file.parent.name
    service = spec["services"][service_name]
    unknown = set(service) - KNOWN
    if unknown:
        raise SystemExit(f"{compose_file}: service {service_name} uses {sorted(unknown)}, which "
                         f"{Path(__file__).name} does not translate; teach it, or CI would not test them.")
    named_volumes = set(spec.get("volumes") or {})
    args = ["--name", container]
    if service.get("network_mode"):
        args += ["--network", service["network_mode"]]
    if service.get("restart"):
        args += ["--restart", service["restart"]]
    if service.get("user"):
        args += ["--user", interpolate(service["user"])]
    for key, raw in (service.get("environment") or {}).items():
        args += ["--env", f"{key}={interpolate(raw if raw is not None else '')}"]
    for volume in service.get("volumes") or []:
        source, target, *mode = interpolate(volume).split(":")
        if source in named_volumes:
            source = f"{project}_{source}"
        elif not source.startswith("/"):
            source = str((compose_file.parent / source).resolve())
        args += ["--volume", ":".join([source, target, *mode])]
    entrypoint = service.get("entrypoint")
    if entrypoint:
        args += ["--entrypoint", entrypoint[0]]
    args.append(interpolate(service["image"]))
    if entrypoint:
        args += [interpolate(a) for a in entrypoint[1:]]
    args += [interpolate(a) for a in (service.get("command") or [])]
    return args


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("compose_file", type=Path)
    parser.add_argument("service")
    parser.add_argument("--name", required=True, help="the container's name")
    options = parser.parse_args()
    print("\n".join(run_arguments(options.compose_file, options.service, options.name)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
