"""The room server's deployment files agree with the package: compose (host network only, the
cards read-only, the proxy separate from the hub) and the Zero to JupyterHub values (the files it
ships into the hub pod are exactly what the authenticator needs). The hub itself runs in the load
test (.ci/hub-load-test); Kubernetes cannot run here, so the values file is checked, not deployed."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
HUB = ROOT / "docker" / "hub"


def test_compose_runs_proxy_and_hub_on_the_host_network_only():
    spec = yaml.safe_load((HUB / "compose.yaml").read_text())
    assert "networks" not in spec
    services = spec["services"]
    assert set(services) == {"proxy", "hub", "cards"}
    for name, service in services.items():
        assert service["network_mode"] == "host", name
        assert "ports" not in service and "networks" not in service, name
    assert services["proxy"]["command"] == ["proxy"] and services["hub"]["command"] == ["hub"]
    hub_volumes = services["hub"]["volumes"]
    assert any(v.endswith(":/srv/room:ro") for v in hub_volumes)  # the hub only reads the cards
    assert any(v.endswith(":/var/run/docker.sock") for v in hub_volumes)
    assert "hub-state:/srv/jupyterhub" in hub_volumes and "hub-state:/srv/jupyterhub" in services["proxy"]["volumes"]
    assert services["cards"]["profiles"] == ["cards"]  # never started by `up`


def test_the_hub_config_and_start_script_are_well_formed():
    compile((HUB / "jupyterhub_config.py").read_text(), "jupyterhub_config.py", "exec")
    config = (HUB / "jupyterhub_config.py").read_text()
    for needed in ('network_name = "host"', "cleanup_servers = False", "should_start = False",
                   "allow_named_servers = False", 'pull_policy = "never"', "SeatCardAuthenticator"):
        assert needed in config
    assert "DummyAuthenticator" not in config and "allow_all" not in config
    if shutil.which("bash"):
        subprocess.run(["bash", "-n", str(HUB / "hub-start.sh")], check=True)


def test_z2jh_ships_exactly_what_the_authenticator_imports(tmp_path):
    values_text = (HUB / "z2jh-values.yaml").read_text()
    values = yaml.safe_load(values_text)
    hub = values["hub"]
    assert hub["config"]["JupyterHub"]["authenticator_class"] == "hello_dl.room.auth.SeatCardAuthenticator"
    assert hub["config"]["SeatCardAuthenticator"]["seats_file"] == "/srv/room/seats.json"
    root = Path(hub["extraEnv"]["PYTHONPATH"])
    shipped = {}
    for key, entry in hub["extraFiles"].items():
        relative = Path(entry["mountPath"]).relative_to(root)
        source = ROOT / "src" / relative
        assert source.is_file(), f"{key}: {source} does not exist"
        # The install command at the top of the file passes each of these files with --set-file.
        assert f"--set-file hub.extraFiles.{key}.stringData=src/{relative}" in values_text, key
        shipped[relative] = source
    assert len(re.findall(r"--set-file hub\.extraFiles\.", values_text)) == len(shipped)
    single = values["singleuser"]
    assert single["cmd"] == "hub" and single["storage"]["homeMountPath"] == "/home/learner/hello-dl/notebooks"
    assert values["cull"]["enabled"] is True
    # Only the shipped files on the path (plus the installed JupyterHub): the authenticator imports.
    if importlib.util.find_spec("jupyterhub") is None:
        pytest.skip("importing the shipped authenticator needs JupyterHub, which this environment lacks "
                    "(make venv installs it; the compat environment does not)")
    for relative, source in shipped.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, tmp_path / relative)
    code = ("import sys; sys.path = [p for p in sys.path if 'src' not in p]; sys.path.insert(0, sys.argv[1]);"
            "import hello_dl.room.auth as a, hello_dl.room.cards as c;"
            "assert a.__file__.startswith(sys.argv[1]), a.__file__;"
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules; print(c.participant_of('seat-07'))")
    done = subprocess.run([sys.executable, "-S", "-c", "import site; site.main();" + code, str(tmp_path)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "7"
