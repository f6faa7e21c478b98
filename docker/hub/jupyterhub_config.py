"""JupyterHub for a teaching room: seat-card login, one container per participant from the kit's image.

Everything runs on the host's network (no Docker bridge networks):

    participants ──► proxy  :8000 (HELLO_DL_ROOM_PORT; HTTPS with a certificate)  own container
                       ├──► hub   127.0.0.1:8081   login form, admin page, services  this file
                       └──► seat-NN's server 127.0.0.1:<free port>                   one container each

The proxy runs on its own (`hello-dl-hub proxy`), so restarting the hub never interrupts a
participant; the hub keeps its state (users, servers, cookie secret) in /srv/jupyterhub, a named
volume, and leaves the servers running when it stops (cleanup_servers = False).

Settings come from the environment; docker/hub/compose.yaml lists them with their defaults.
"""

from __future__ import annotations

import os
import sys

from dockerspawner import DockerSpawner
from jupyterhub.utils import random_port

from hello_dl.room import sizing
from hello_dl.room.auth import SeatCardAuthenticator
from hello_dl.room.cards import NAME_PATTERN, CardError, SeatBook, participant_of

c = get_config()  # noqa: F821 - provided by JupyterHub when it loads this file


def env(name: str, default: str = "") -> str:
    return os.environ.get(f"HELLO_DL_ROOM_{name}", default).strip() or default


STATE = env("STATE", "/srv/jupyterhub")
SEATS_FILE = env("SEATS", "/srv/room/seats.json")
IMAGE = env("IMAGE", "hello-dl:cpu")
PREFIX = env("PREFIX", "hello-dl-room")  # container and volume names: hello-dl-room-seat-07[-notebooks]
KIT_HOME = "/home/learner/hello-dl"  # the kit's folder in its image (HELLO_DL_HOME there)
HUB_PORT = int(env("HUB_PORT", "8081"))

# --- the door: seat cards, nobody else ----------------------------------------------------------
c.JupyterHub.authenticator_class = SeatCardAuthenticator
c.SeatCardAuthenticator.seats_file = SEATS_FILE
c.Authenticator.username_pattern = NAME_PATTERN.pattern  # no other user name, not even through the API
try:
    c.Authenticator.admin_users = SeatBook.load(SEATS_FILE).instructors  # the instructor's card
except CardError as problem:
    print(f"hello-dl room: {problem} The hub starts, but nobody can log in until the file is there.",
          file=sys.stderr)
c.JupyterHub.template_vars = {
    "announcement_login": "Type the username (seat name) and the password (code) printed on your seat card.",
}

# --- the hub, the proxy, and restarts that lose nothing ------------------------------------------------
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = HUB_PORT
c.JupyterHub.bind_url = f"http://{env('IP', '0.0.0.0')}:{env('PORT', '8000')}"
if env("URL"):
    c.JupyterHub.public_url = env("URL")
c.ConfigurableHTTPProxy.should_start = False  # `hello-dl-hub proxy` runs it; token: CONFIGPROXY_AUTH_TOKEN
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{env('PROXY_API_PORT', '8001')}"
c.JupyterHub.cleanup_servers = False  # a stopping hub leaves every participant's server running
c.JupyterHub.db_url = f"sqlite:///{STATE}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = f"{STATE}/jupyterhub_cookie_secret"  # logins survive a restart
c.JupyterHub.allow_named_servers = False  # one server per seat
c.JupyterHub.log_level = env("LOG_LEVEL", "INFO")


# --- one container per participant -------------------------------------------------------------------
class RoomSpawner(DockerSpawner):
    """DockerSpawner on the host's network: each server listens on its own free port of 127.0.0.1,
    which only the proxy (and the hub) on this machine can reach."""

    async def start(self):
        self.port = random_port()  # a new container at every start (remove=True), so a new port is fine
        return await super().start()

    async def get_ip_and_port(self):
        return "127.0.0.1", self.port


def seat_count(spawner=None) -> int:
    authenticator = getattr(spawner, "authenticator", None)
    if authenticator is not None:  # it keeps the current seat file loaded
        book = authenticator.seat_book()
        return len(book.names) if book else 1
    try:
        return len(SeatBook.load(SEATS_FILE).names)
    except CardError:
        return 1


def share(spawner=None) -> sizing.Share:
    """The stated sizing rule (hello_dl.room.sizing), over every seat of the current card set."""
    cpu = env("CPU_LIMIT")
    memory = env("MEM_LIMIT")
    return sizing.participant_share(seat_count(spawner), cpu_limit=float(cpu) if cpu else None,
                                    mem_limit=sizing.parse_bytes(memory) if memory else None)


c.JupyterHub.spawner_class = RoomSpawner
c.DockerSpawner.image = IMAGE
c.DockerSpawner.pull_policy = "never"  # offline: the image is built (or `docker load`ed) beforehand
c.DockerSpawner.network_name = "host"
c.DockerSpawner.use_internal_ip = True  # no published ports: on the host network there is nothing to publish
c.DockerSpawner.ip = "127.0.0.1"
c.DockerSpawner.prefix = PREFIX
# Seat names are already safe for Docker (username_pattern below), so containers and volumes carry
# them as they are: hello-dl-room-seat-07, hello-dl-room-seat-07-notebooks.
c.DockerSpawner.name_template = "{prefix}-{raw_username}"
c.DockerSpawner.remove = True  # the container goes when the server stops; the volumes stay
c.DockerSpawner.volumes = {
    f"{PREFIX}-{{raw_username}}-notebooks": f"{KIT_HOME}/notebooks",
    f"{PREFIX}-{{raw_username}}-outputs": f"{KIT_HOME}/outputs",
}
c.DockerSpawner.cmd = ["hub"]  # docker/start.sh: fill an empty notebooks volume, then jupyterhub-singleuser
c.Spawner.notebook_dir = f"{KIT_HOME}/notebooks"
c.Spawner.default_url = "/lab"
c.DockerSpawner.cpu_limit = lambda spawner: share(spawner).cpu_limit
c.DockerSpawner.mem_limit = lambda spawner: share(spawner).mem_limit
c.Spawner.environment = {
    "HELLO_DL_PROFILE": env("PROFILE", "conference"),
    "HELLO_DL_PARTICIPANT": lambda spawner: participant_of(spawner.user.name),  # groups dealt out by seat
    **{name: (lambda spawner, name=name: sizing.thread_environment(share(spawner))[name])
       for name in sizing.thread_environment(share())},
}
if env("GPU_MEMORY_MB"):
    c.Spawner.environment["HELLO_DL_GPU_MEMORY_MB"] = env("GPU_MEMORY_MB")
if env("GPU", "0") == "1":
    # Every participant's container sees the GPU(s); memory growth (the kit and the image turn it
    # on) lets their kernels share them. Needs the NVIDIA Container Toolkit on this machine.
    import docker.types

    c.DockerSpawner.extra_host_config = {
        "device_requests": [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])],
    }
# Many servers start at once on a small machine: give them time before calling a start failed.
c.Spawner.start_timeout = int(env("START_TIMEOUT", "300"))
c.Spawner.http_timeout = int(env("HTTP_TIMEOUT", "240"))

# --- services: what the hub runs beside the participants' servers --------------------------------------
# Each entry is a JupyterHub service and the role that gives it exactly the scopes it needs.
# More services (the room's results board, below) are appended to ROOM_SERVICES the same way; a
# service that listens gets "url": "http://127.0.0.1:<port>" and is reached at /services/<name>/.
IDLE_MINUTES = int(env("IDLE_MINUTES", "60"))
ROOM_SERVICES = [
    {
        "service": {
            "name": "idle-culler",
            "command": [sys.executable, "-m", "jupyterhub_idle_culler", f"--timeout={IDLE_MINUTES * 60}",
                        "--cull-every=300", "--concurrency=5"],
        },
        "role": {
            "name": "idle-culler",
            "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
        },
    },
]

# The room's results board (issue 16, hello_dl.room.store): one run record per seat, kept in the hub's
# state volume (it survives restarts). It needs no scopes of its own: the hub names whoever calls it.
# Every participant may use it (the user role), also with the token their notebooks get from the hub
# (server_token_scopes), and their containers learn its address through HELLO_DL_BOARD.
BOARD_SERVICE = "room-board"
BOARD_URL = f"http://127.0.0.1:{int(env('BOARD_PORT', '8082'))}"
BOARD_ACCESS = f"access:services!service={BOARD_SERVICE}"
ROOM_SERVICES.append({
    "service": {
        "name": BOARD_SERVICE,
        "url": BOARD_URL,
        "command": [sys.executable, "-m", "hello_dl.room.store", "--folder", f"{STATE}/room-board"],
        "oauth_no_confirm": True,  # the instructor's browser opens the board's page without a consent page
    },
    "role": None,
})
c.Spawner.server_token_scopes = ["users:activity!user", "access:servers!server", BOARD_ACCESS]
c.Spawner.environment["HELLO_DL_BOARD"] = f"{BOARD_URL}/services/{BOARD_SERVICE}/"

c.JupyterHub.services = [entry["service"] for entry in ROOM_SERVICES]
c.JupyterHub.load_roles = [{**entry["role"], "services": [entry["service"]["name"]]}
                           for entry in ROOM_SERVICES if entry["role"]]
c.JupyterHub.load_roles.append({"name": "user", "scopes": ["self", BOARD_ACCESS]})
