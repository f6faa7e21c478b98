#!/usr/bin/env python3
"""The room server under load, driven like a room of participants (run by .ci/hub-load-test).

Every simulated participant, all at the same time: opens the hub's login form and signs in with
their seat card, starts their server, and runs notebooks 00 → 05 through the Jupyter server's
REST API and kernel websocket (every code cell in order; an error output fails the run). Meanwhile:

* the hub is restarted while everybody is working: no server is lost or replaced, nobody's work
  is interrupted (the proxy runs on its own), and logins keep working afterwards;
* one participant's container is killed in the middle of training (04): the others keep going,
  and that participant starts their server again, finds their saved work, and continues (04, 05);
* nobody can read or write anybody else's files: through the API with one participant's token and
  browser session against every other server, and at the volume level (each container mounts its
  own two volumes only);
* every server listens on 127.0.0.1 only, runs as the unprivileged user, has the sizing rule's
  CPU and memory limits, and ends with a complete, finished run folder in its own volume.
* the room's results board (the hub's room-board service, issue 16) ends with every participant's
  run on it, put there by their own notebook 05 with their own hub token; the instructor's
  reference record, posted before the hub's restart, is still there after it; a participant's
  token cannot replace another seat's record, and nobody unsigned can read the board.

All traffic goes to 127.0.0.1. Every wait is bounded in time; threads are joined with a limit.
Prints per participant the time to a ready server and to the end of 05.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import requests
import websocket

KIT_HOME = "/home/learner/hello-dl"
RETRY_STATUSES = {502, 503, 504, 599}


class Failure(Exception):
    """The room did not behave; the message says what and for whom."""


def log(message: str) -> None:
    print(f"   [{time.strftime('%H:%M:%S')}] {message}", flush=True)


def until(deadline: float, what: str) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise Failure(f"timed out: {what}")
    return left


# --- one participant ---------------------------------------------------------------------------
@dataclass
class Timing:
    started: float = 0.0
    ready: float | None = None
    finished: float | None = None
    notebooks: dict[str, float] = field(default_factory=dict)
    recovered: float | None = None


class Participant:
    def __init__(self, base: str, name: str, code: str, docker: "Docker"):
        self.base, self.name, self.code, self.docker = base, name, code, docker
        self.browser = requests.Session()  # cookies, as a web browser keeps them
        self.token: str | None = None
        self.timing = Timing()
        self.done_notebooks: list[str] = []
        self.error: str | None = None

    # -- the hub ---------------------------------------------------------------------------------
    def login(self, code: str | None = None) -> requests.Response:
        """The hub's own login form: fetch it (with its _xsrf field), post the card."""
        form = self.browser.get(f"{self.base}/hub/login", timeout=60)
        form.raise_for_status()
        match = re.search(r'name="_xsrf"\s+value="([^"]+)"', form.text)
        if not match:
            raise Failure(f"{self.name}: the login page has no _xsrf field")
        return self.browser.post(f"{self.base}/hub/login?next=%2Fhub%2Fhome",
                                 data={"_xsrf": match.group(1), "username": self.name,
                                       "password": self.code if code is None else code},
                                 allow_redirects=False, timeout=120)

    def sign_in(self) -> None:
        answer = self.login()
        if answer.status_code != 302:
            raise Failure(f"{self.name}: the login form answered {answer.status_code}, not a redirect")
        home = self.browser.get(f"{self.base}/hub/home", timeout=60)  # sets the signed-in _xsrf cookie
        home.raise_for_status()
        xsrf = self.browser.cookies.get("_xsrf", path="/hub/") or self.browser.cookies.get("_xsrf")
        made = self.browser.post(f"{self.base}/hub/api/users/{self.name}/tokens", json={"note": "load test"},
                                 headers={"X-XSRFToken": xsrf or ""}, timeout=60)
        if made.status_code != 201:
            raise Failure(f"{self.name}: signed in, but could not get an API token ({made.status_code} {made.text[:200]})")
        self.token = made.json()["token"]

    def api(self, method: str, path: str, *, token: str | None = None, deadline: float | None = None,
            expect: tuple[int, ...] = (200,), **kwargs) -> requests.Response:
        """A hub or server API call with this participant's token; retried (bounded) while the hub
        restarts (connection refused, 502/503)."""
        deadline = deadline or time.monotonic() + 180
        headers = {"Authorization": f"token {token or self.token}"}
        while True:
            try:
                answer = requests.request(method, f"{self.base}{path}", headers=headers, timeout=120, **kwargs)
            except requests.ConnectionError:
                answer = None
            if answer is not None and answer.status_code not in RETRY_STATUSES:
                if answer.status_code not in expect:
                    raise Failure(f"{self.name}: {method} {path} answered {answer.status_code}: {answer.text[:300]}")
                return answer
            until(deadline, f"{self.name}: {method} {path} kept failing "
                            f"({answer.status_code if answer is not None else 'no connection'})")
            time.sleep(2)

    def server_state(self) -> dict:
        return self.api("GET", f"/hub/api/users/{self.name}").json().get("servers", {}).get("", {})

    def start_server(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        self.api("POST", f"/hub/api/users/{self.name}/server", expect=(201, 202), deadline=deadline)
        while not self.server_state().get("ready"):
            until(deadline, f"{self.name}: the server did not become ready")
            time.sleep(2)

    def wait_stopped(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.server_state().get("ready"):
            until(deadline, f"{self.name}: the hub still thinks the killed server runs")
            time.sleep(2)

    def browser_opens_lab(self) -> None:
        """As a web browser does: /user/<seat>/lab through the hub's OAuth redirects, with cookies."""
        page = self.browser.get(f"{self.base}/user/{self.name}/lab", timeout=120)
        if page.status_code != 200 or "jupyter" not in page.text.lower():
            raise Failure(f"{self.name}: the browser route to JupyterLab answered {page.status_code} at {page.url}")

    # -- the server's files --------------------------------------------------------------------------
    def contents(self, path: str = "", **kwargs) -> requests.Response:
        return self.api("GET", f"/user/{self.name}/api/contents/{path}", **kwargs)

    def save_text(self, path: str, text: str) -> None:
        self.api("PUT", f"/user/{self.name}/api/contents/{path}", expect=(200, 201),
                 json={"type": "file", "format": "text", "content": text})

    def notebooks(self, last: int) -> list[str]:
        listing = self.contents().json()["content"]
        names = sorted(item["name"] for item in listing if item["name"].endswith(".ipynb"))
        chosen = [n for n in names if re.match(r"\d\d_", n) and int(n[:2]) <= last]
        if [int(n[:2]) for n in chosen] != list(range(last + 1)):
            raise Failure(f"{self.name}: expected notebooks 00..{last:02d} in the server, found {names}")
        return chosen


# --- running a notebook through the kernel websocket ----------------------------------------------------
class Kernel:
    def __init__(self, who: Participant, notebook: str, deadline: float):
        self.who = who
        spec = who.contents(notebook, params={"content": "1"}).json()["content"]
        self.cells = [c for c in spec["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()]
        kernel_name = spec.get("metadata", {}).get("kernelspec", {}).get("name", "python3")
        session = who.api("POST", f"/user/{who.name}/api/sessions", expect=(201,), json={
            "path": notebook, "name": notebook, "type": "notebook", "kernel": {"name": kernel_name}}).json()
        self.session_id = session["id"]
        self.ws = websocket.create_connection(
            f"{who.base.replace('http', 'ws', 1)}/user/{who.name}/api/kernels/{session['kernel']['id']}/channels"
            f"?session_id={uuid.uuid4().hex}", header=[f"Authorization: token {who.token}"], timeout=60)
        self.client_session = uuid.uuid4().hex
        self.request("kernel_info_request", {}, deadline)

    def send(self, msg_type: str, content: dict) -> str:
        msg_id = uuid.uuid4().hex
        self.ws.send(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": msg_type, "session": self.client_session,
                       "username": self.who.name, "version": "5.3", "date": ""},
            "parent_header": {}, "metadata": {}, "content": content, "channel": "shell", "buffers": []}))
        return msg_id

    def request(self, msg_type: str, content: dict, deadline: float, on_output=None) -> tuple[dict, list]:
        """Send one shell request; wait (bounded) for its reply and for the kernel to go idle."""
        msg_id = self.send(msg_type, content)
        reply, idle, outputs = None, msg_type != "execute_request", []
        while reply is None or not idle:
            self.ws.settimeout(min(30.0, until(deadline, f"{self.who.name}: a cell did not finish")))
            try:
                message = json.loads(self.ws.recv())
            except websocket.WebSocketTimeoutException:
                continue
            if message.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = message["header"]["msg_type"]
            if message.get("channel") == "shell" and kind.endswith("_reply"):
                reply = message["content"]
            elif kind == "status" and message["content"].get("execution_state") == "idle":
                idle = True
            elif kind in ("stream", "error", "execute_result", "display_data"):
                outputs.append(message["content"] | {"output_type": kind})
                if on_output and kind == "stream":
                    on_output(message["content"].get("text", ""))
        return reply, outputs

    def run_all(self, notebook: str, deadline: float, on_output=None) -> None:
        for number, cell in enumerate(self.cells, 1):
            reply, outputs = self.request("execute_request", {
                "code": "".join(cell["source"]), "silent": False, "store_history": True,
                "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}, deadline, on_output)
            errors = [o for o in outputs if o["output_type"] == "error"]
            if reply.get("status") != "ok" or errors:
                what = errors[0] if errors else reply
                raise Failure(f"{self.who.name}: {notebook} code cell {number} failed: "
                              f"{what.get('ename')}: {str(what.get('evalue'))[:300]}")

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            self.who.api("DELETE", f"/user/{self.who.name}/api/sessions/{self.session_id}", expect=(204, 404))


# --- the Docker side ------------------------------------------------------------------------------------
class Docker:
    def __init__(self, docker: str, prefix: str, kit_image: str):
        self.docker, self.prefix, self.kit_image = docker, prefix, kit_image

    def run(self, *args: str, timeout: float = 120, check: bool = True) -> str:
        done = subprocess.run([self.docker, *args], capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise Failure(f"docker {' '.join(args[:3])} failed: {done.stderr.strip()[:300]}")
        return done.stdout.strip()

    def container(self, seat: str) -> str:
        return f"{self.prefix}-{seat}"

    def inspect(self, seat: str) -> dict:
        return json.loads(self.run("inspect", self.container(seat)))[0]

    def running(self, seat: str) -> bool:
        out = self.run("inspect", "--format", "{{.State.Running}}", self.container(seat), check=False)
        return out == "true"

    def volume_runs(self, seat: str) -> list[dict]:
        """The run folders in the seat's outputs volume, read by a throw-away container of the kit's image."""
        script = ("import json, pathlib\n"
                  "root = pathlib.Path('/o')\n"
                  "print(json.dumps([{'name': d.name, 'files': sorted(p.name for p in d.iterdir())}\n"
                  "                  for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith('.')]))\n")
        out = self.run("run", "--rm", "--network", "none", "--entrypoint", "python",
                       "-v", f"{self.prefix}-{seat}-outputs:/o:ro", self.kit_image, "-c", script)
        return json.loads(out)


# --- the room -----------------------------------------------------------------------------------------------
class Room:
    def __init__(self, options):
        self.options = options
        self.base = f"http://127.0.0.1:{options.port}"
        self.docker = Docker(options.docker, options.prefix, options.kit_image)
        codes = json.loads(Path(options.codes).read_text())
        self.instructor = Participant(self.base, options.instructor, codes.pop(options.instructor), self.docker)
        self.people = [Participant(self.base, name, code, self.docker) for name, code in sorted(codes.items())]
        self.victim = self.people[0]
        self.deadline = time.monotonic() + options.budget
        self.after_01 = threading.Semaphore(0)
        self.hub_restarted = threading.Event()
        self.training_started = threading.Event()
        self.victim_killed = threading.Event()
        self.findings: list[str] = []

    # -- one participant's session ---------------------------------------------------------------------
    def session(self, who: Participant) -> None:
        try:
            who.timing.started = time.monotonic()
            who.sign_in()
            who.start_server(self.options.start_timeout)
            who.timing.ready = time.monotonic()
            log(f"{who.name}: server ready after {who.timing.ready - who.timing.started:.0f}s")
            who.browser_opens_lab()
            who.save_text(f"mine-{who.name}.txt", f"written by {who.name}\n")
            for notebook in who.notebooks(self.options.last):
                self.run_notebook(who, notebook)
            who.timing.finished = time.monotonic()
            log(f"{who.name}: finished 00-{self.options.last:02d} after {who.timing.finished - who.timing.started:.0f}s")
        except Exception as exc:  # noqa: BLE001 - reported per participant, the others go on
            who.error = f"{type(exc).__name__}: {exc}"
            log(f"{who.name}: FAILED: {who.error}")
            if not isinstance(exc, Failure):
                traceback.print_exc()

    def run_notebook(self, who: Participant, notebook: str) -> None:
        started = time.monotonic()
        is_victim_training = who is self.victim and notebook.startswith("04") and not self.victim_killed.is_set()

        def watch(text: str) -> None:
            if is_victim_training and "Epoch" in text:
                self.training_started.set()

        if is_victim_training:
            # The kill comes after the hub's restart, so the two events never overlap.
            self.hub_restarted.wait(timeout=max(1.0, self.deadline - time.monotonic()))
        kernel = Kernel(who, notebook, self.deadline)
        try:
            kernel.run_all(notebook, self.deadline, watch)
        except (websocket.WebSocketException, OSError, Failure) as exc:
            if not (is_victim_training and self.victim_killed.wait(timeout=60)):
                raise
            log(f"{who.name}: the container died in {notebook} as planned ({type(exc).__name__}); starting again")
            self.recover(who, notebook)
            return
        finally:
            try:
                kernel.close()
            except (Failure, requests.RequestException, OSError, websocket.WebSocketException):
                pass  # a dead server has no session to close
        who.timing.notebooks[notebook] = time.monotonic() - started
        who.done_notebooks.append(notebook)
        log(f"{who.name}: {notebook} done in {who.timing.notebooks[notebook]:.0f}s")
        if notebook.startswith("01"):
            self.after_01.release()

    def recover(self, who: Participant, notebook: str) -> None:
        killed_at = time.monotonic()
        who.wait_stopped(180)
        who.start_server(self.options.start_timeout)
        saved = who.contents(f"mine-{who.name}.txt", params={"content": "1"}).json()["content"]
        if saved != f"written by {who.name}\n":
            raise Failure(f"{who.name}: the file saved before the kill came back as {saved!r}")
        who.timing.recovered = time.monotonic() - killed_at
        log(f"{who.name}: server back after {who.timing.recovered:.0f}s, saved work intact; running {notebook} again")
        self.run_notebook(who, notebook)

    # -- the events ---------------------------------------------------------------------------------------
    def restart_hub(self) -> None:
        # When everybody is past 01 (or 40 % of the budget has gone): mid-session for all.
        latest = time.monotonic() + 0.4 * self.options.budget
        waiting = len(self.people)
        while waiting and time.monotonic() < latest:
            if self.after_01.acquire(timeout=5):
                waiting -= 1
            elif all(p.error or p.timing.finished for p in self.people):
                raise Failure("every participant stopped before the hub could be restarted mid-session")
        before = {p.name: self.docker.inspect(p.name)["Id"] for p in self.people if self.docker.running(p.name)}
        log(f"restarting the hub ({len(before)} servers running, in notebooks "
            f"{', '.join(p.done_notebooks[-1][:2] if p.done_notebooks else '--' for p in self.people)})")
        started = time.monotonic()
        self.docker.run("restart", "--time", "10", self.options.hub_container, timeout=120)
        deadline = time.monotonic() + 180
        while True:
            try:
                if requests.get(f"{self.base}/hub/api/", timeout=10).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            until(deadline, "the hub did not come back after its restart")
            time.sleep(1)
        back = time.monotonic() - started
        users = {u["name"]: u for u in self.instructor.api("GET", "/hub/api/users").json()}
        for name, container_id in before.items():
            if not users.get(name, {}).get("servers", {}).get("", {}).get("ready"):
                raise Failure(f"after the hub's restart, {name}'s server is not listed as ready")
            if self.docker.inspect(name)["Id"] != container_id:
                raise Failure(f"after the hub's restart, {name}'s server runs in a different container")
        fresh = Participant(self.base, self.instructor.name, self.instructor.code, self.docker)
        if fresh.login().status_code != 302:
            raise Failure("after the hub's restart, the instructor's card no longer logs in")
        self.findings.append(f"hub restarted mid-session: back in {back:.0f}s, all {len(before)} servers kept "
                             "(same containers), logins work")
        log(self.findings[-1])
        self.hub_restarted.set()

    def kill_victim(self) -> None:
        while not self.training_started.wait(timeout=5):
            if self.victim.error or self.victim.timing.finished or time.monotonic() > self.deadline:
                raise Failure(f"{self.victim.name} never started training in 04")
        self.hub_restarted.wait(timeout=max(1.0, self.deadline - time.monotonic()))
        time.sleep(3)  # well inside the first epoch
        others = [p.name for p in self.people if p is not self.victim and self.docker.running(p.name)]
        self.docker.run("kill", self.docker.container(self.victim.name))
        self.victim_killed.set()
        log(f"killed {self.victim.name}'s container during training")
        time.sleep(5)
        stopped = [name for name in others if not self.docker.running(name)]
        if stopped:
            raise Failure(f"killing {self.victim.name}'s container also stopped {stopped}")
        self.findings.append(f"{self.victim.name}'s container killed during training: the other {len(others)} kept running")

    # -- the checks ----------------------------------------------------------------------------------------------
    def check_the_door(self) -> None:
        wrong = Participant(self.base, self.people[1].name, "", self.docker)
        for code in ("", "AAAA-AAAA-AAAA", self.people[0].code):
            answer = wrong.login(code)
            signed_in = wrong.browser.get(f"{self.base}/hub/api/user", timeout=30).status_code == 200
            if answer.status_code == 302 or signed_in:
                raise Failure(f"{wrong.name} got in with the code {code!r} ({answer.status_code})")
        stranger = requests.get(f"{self.base}/hub/api/users", timeout=30)
        if stranger.status_code not in (401, 403):
            raise Failure(f"/hub/api/users without credentials answered {stranger.status_code}")
        self.findings.append("the login form refuses an empty code, a wrong code and another seat's code; "
                             "the API refuses anonymous requests")

    def check_isolation(self) -> None:
        """With A's token and browser session against every other server B: no read, no write."""
        for a in self.people:
            for b in self.people:
                if a is b:
                    continue
                for method, path, body in (("GET", f"/user/{b.name}/api/contents/mine-{b.name}.txt", None),
                                           ("PUT", f"/user/{b.name}/api/contents/from-{a.name}.txt",
                                            {"type": "file", "format": "text", "content": "intrusion"}),
                                           ("GET", f"/hub/api/users/{b.name}", None),
                                           ("DELETE", f"/hub/api/users/{b.name}/server", None)):
                    answer = requests.request(method, f"{self.base}{path}", json=body, timeout=60,
                                              headers={"Authorization": f"token {a.token}"})
                    if answer.status_code < 400:
                        raise Failure(f"{a.name}'s token could {method} {path} ({answer.status_code})")
                page = a.browser.get(f"{self.base}/user/{b.name}/api/contents/mine-{b.name}.txt", timeout=60)
                if page.status_code < 400 and f"written by {b.name}" in page.text:
                    raise Failure(f"{a.name}'s browser session read {b.name}'s file")
                if b.contents(f"from-{a.name}.txt", expect=(200, 404)).status_code != 404:
                    raise Failure(f"{a.name} managed to write into {b.name}'s notebooks")
        names = {p.name for p in self.people}
        for p in self.people:
            mounts = {m.get("Name") for m in self.docker.inspect(p.name)["Mounts"] if m["Type"] == "volume"}
            wanted = {f"{self.options.prefix}-{p.name}-notebooks", f"{self.options.prefix}-{p.name}-outputs"}
            if mounts != wanted:
                raise Failure(f"{p.name}'s container mounts {sorted(mounts)}, not exactly its own {sorted(wanted)}")
            binds = [m for m in self.docker.inspect(p.name)["Mounts"] if m["Type"] == "bind"]
            if binds:
                raise Failure(f"{p.name}'s container has host folders mounted: {binds}")
            seen = self.docker.run("exec", self.docker.container(p.name), "ls", f"{KIT_HOME}/notebooks").split()
            foreign = [f for f in seen if f.startswith(("mine-", "from-")) and f != f"mine-{p.name}.txt"]
            if foreign or f"mine-{p.name}.txt" not in seen:
                raise Failure(f"{p.name}'s notebooks volume holds {foreign or 'not its own file'}")
        self.findings.append(f"isolation: {len(names) * (len(names) - 1)} ordered pairs refused read/write through "
                             "the API (token and browser session); each container mounts only its own two volumes")

    def check_containers(self) -> None:
        listening = {c.laddr.port: c.laddr.ip for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN}
        for p in self.people:
            info = self.docker.inspect(p.name)
            user = self.docker.run("exec", self.docker.container(p.name), "id", "-u")
            if user == "0":
                raise Failure(f"{p.name}'s server runs as root")
            if info["HostConfig"]["NetworkMode"] != "host":
                raise Failure(f"{p.name}'s container is on the {info['HostConfig']['NetworkMode']} network, not host")
            url = p.server_state().get("url", "")
            env = dict(line.split("=", 1) for line in info["Config"]["Env"])
            port = int(re.search(r":(\d+)/", env["JUPYTERHUB_SERVICE_URL"]).group(1))
            if listening.get(port) != "127.0.0.1":
                raise Failure(f"{p.name}'s server (port {port}) listens on {listening.get(port)}, not 127.0.0.1 only")
            quota, period, memory = (info["HostConfig"].get(k) for k in ("CpuQuota", "CpuPeriod", "Memory"))
            if not quota or not memory:
                raise Failure(f"{p.name}'s container has no CPU or memory limit ({quota}, {memory})")
            cpu = self.docker.run("exec", self.docker.container(p.name), "sh", "-c",
                                  "awk '/^usage_usec/ {print $2 / 1e6}' /sys/fs/cgroup/cpu.stat 2>/dev/null || "
                                  "awk '{print $1 / 1e9}' /sys/fs/cgroup/cpuacct/cpuacct.usage", check=False)
            log(f"{p.name}: CPU used by this container so far: {cpu or '?'} s")
            log(f"{p.name}: uid {user}, {url}, port {port} on 127.0.0.1, limits {quota / period:g} CPU "
                f"{memory / 2**30:.2f} GiB, threads {env.get('TF_NUM_INTRAOP_THREADS')}, group of participant "
                f"{env.get('HELLO_DL_PARTICIPANT')}")
        proxy_ip = listening.get(self.options.port)
        if proxy_ip != "127.0.0.1":
            raise Failure(f"the proxy listens on {proxy_ip}, not on 127.0.0.1 as configured for CI")
        self.findings.append("every server: unprivileged user, host network, 127.0.0.1 only, CPU and memory limits")

    # -- the room's results board (issue 16) -------------------------------------------------------------
    BOARD = "/services/room-board/api/records"

    def reference_record(self) -> dict:
        """A reference run's record as `hello-dl room export --reference` sends it (3 epochs, group 1A)."""
        from hello_dl.room import records  # the kit's .venv runs this script

        curves = {"epoch": [1, 2, 3], "phase": [1, 1, 2], "loss": [0.6, 0.4, 0.3], "accuracy": [0.7, 0.8, 0.9],
                  "val_loss": [0.6, 0.5, 0.45], "val_accuracy": [0.7, 0.8, 0.8]}
        return records.validate({"format": records.FORMAT, "version": records.VERSION, "kind": records.REFERENCE,
                                 "seat": "", "group": "1A", "seed": 42, "profile": "smoke", "run": "load-test",
                                 "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "recipe": {},
                                 "history": curves, "metrics": {"val_images": 10}}, "the load test's record")

    def wait_for_the_board(self, timeout: float = 120) -> None:
        """The hub answers before it has started its services and given the proxy their routes: until
        then /services/room-board/ lands on the hub itself. Wait (bounded) for the board's own answer."""
        started = time.monotonic()
        deadline = started + timeout
        while True:
            answer = self.instructor.api("GET", self.BOARD, expect=(200, 403, 404, 405), deadline=deadline)
            try:
                if answer.status_code == 200 and "records" in answer.json():
                    break
            except ValueError:
                pass  # the hub's own HTML page: no route to the board yet
            until(deadline, f"the room's board did not answer through the proxy (last: {answer.status_code})")
            time.sleep(2)
        log(f"the room's board answers through the proxy ({time.monotonic() - started:.0f}s)")

    def board_before_the_restart(self) -> None:
        self.wait_for_the_board()
        answer = self.instructor.api("PUT", f"{self.BOARD}/reference-1a", json=self.reference_record(),
                                     expect=(201,))
        log(f"the instructor put a reference record on the board ({answer.json()})")

    def check_board(self) -> None:
        board = self.instructor.api("GET", self.BOARD).json()
        seats = {r["seat"]: r for r in board["records"] if r["kind"] == "participant"}
        missing = sorted({p.name for p in self.people} - set(seats))
        if missing:
            raise Failure(f"the room's board lacks the runs of {missing} (it has {sorted(seats)})")
        if not any(r["kind"] == "reference" and r["run"] == "load-test" for r in board["records"]):
            raise Failure("the reference record put on the board before the hub's restart is gone")
        if board["skipped"]:
            raise Failure(f"the board skipped records: {board['skipped']}")
        by_group: dict[str, set] = {}
        for seat, record in seats.items():
            by_group.setdefault(record["group"], set()).add(record["seed"])
        if sum(len(seeds) for seeds in by_group.values()) != len(seats):
            raise Failure(f"two seats of one group trained with the same seed: {by_group}")
        a, b = self.people[0], self.people[1]
        forged = {**seats[b.name], "seat": b.name}
        answer = requests.put(f"{self.base}{self.BOARD}/{b.name}", json=forged, timeout=60,
                              headers={"Authorization": f"token {a.token}"})
        if answer.status_code != 403:
            raise Failure(f"{a.name}'s token replaced {b.name}'s record on the board ({answer.status_code})")
        if requests.get(f"{self.base}{self.BOARD}", timeout=60).status_code < 400:
            raise Failure("the board answered a request without any token")
        self.findings.append(f"the room's board holds every participant's run ({len(seats)}, one seed each, from "
                             "their own notebook 05), the instructor's reference record survived the hub's restart, "
                             "and a participant cannot replace another seat's record")

    def check_run_folders(self) -> None:
        wanted = {"settings.json", "history.json", "metrics.json"}
        finished_marker = self.options.finished_marker
        for p in self.people:
            runs = self.docker.volume_runs(p.name)
            complete = [r for r in runs if wanted <= set(r["files"]) and any(f.endswith(".keras") for f in r["files"])
                        and (not finished_marker or finished_marker in r["files"])]
            if not complete:
                raise Failure(f"{p.name}'s outputs volume has no complete run folder: {runs}")
            extra = ""
            if p is self.victim and len(runs) > len(complete):
                extra = f" (+{len(runs) - len(complete)} interrupted by the kill, not taken for finished)"
            log(f"{p.name}: complete run folder {complete[-1]['name']}{extra}")
        self.findings.append(f"every participant has a complete run folder in their own outputs volume"
                             f"{' (with ' + finished_marker + ')' if finished_marker else ''}")

    # -- all of it ---------------------------------------------------------------------------------------------
    def run(self) -> int:
        self.instructor.sign_in()
        if self.instructor.api("GET", "/hub/api/user").json().get("admin") is not True:
            raise Failure("the instructor's card does not make its holder the hub's admin")
        self.check_the_door()
        self.board_before_the_restart()
        threads = [threading.Thread(target=self.session, args=(p,), name=p.name, daemon=True) for p in self.people]
        for thread in threads:
            thread.start()
        events_error = None
        try:
            self.restart_hub()
            self.kill_victim()
        except Exception as exc:  # noqa: BLE001 - reported with the participants' results
            events_error = f"{type(exc).__name__}: {exc}"
            log(f"FAILED: {events_error}")
        for thread in threads:
            thread.join(timeout=max(1.0, self.deadline - time.monotonic()))
        stuck = [t.name for t in threads if t.is_alive()]
        self.report()
        problems = [f"{p.name}: {p.error}" for p in self.people if p.error]
        problems += [f"{name}: still running when the time budget ran out" for name in stuck]
        if events_error:
            problems.append(events_error)
        if not problems:
            for check in (self.check_isolation, self.check_containers, self.check_run_folders, self.check_board):
                try:
                    check()
                except Failure as exc:
                    problems.append(str(exc))
        for finding in self.findings:
            print(f"   ok: {finding}")
        for problem in problems:
            print(f"   PROBLEM: {problem}")
        return 1 if problems else 0

    def report(self) -> None:
        print(f"   {'seat':<10} {'ready':>7} {'finish':>7}  per notebook (s)", flush=True)
        for p in self.people:
            t = p.timing
            ready = f"{t.ready - t.started:.0f}s" if t.ready else "-"
            finish = f"{t.finished - t.started:.0f}s" if t.finished else "-"
            per = " ".join(f"{n[:2]}:{s:.0f}" for n, s in t.notebooks.items())
            extra = f"  (killed in 04; server back in {t.recovered:.0f}s)" if t.recovered else ""
            print(f"   {p.name:<10} {ready:>7} {finish:>7}  {per}{extra}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="the proxy's port on 127.0.0.1")
    parser.add_argument("--codes", required=True, help="JSON file: seat name → code (read off the cards page)")
    parser.add_argument("--instructor", default="instructor")
    parser.add_argument("--hub-container", required=True)
    parser.add_argument("--prefix", default="hello-dl-room")
    parser.add_argument("--kit-image", required=True)
    parser.add_argument("--docker", default="docker")
    parser.add_argument("--last", type=int, default=5, help="run notebooks 00 up to this number")
    parser.add_argument("--budget", type=float, default=900, help="seconds for everything")
    parser.add_argument("--start-timeout", type=float, default=300)
    parser.add_argument("--finished-marker", default="", help="file a finished run folder must contain")
    options = parser.parse_args()
    try:
        return Room(options).run()
    except Failure as exc:
        print(f"   PROBLEM: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
