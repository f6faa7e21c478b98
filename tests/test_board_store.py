"""The room's board on the hub (issue 16): the store service, over real HTTP on 127.0.0.1.

The service runs as the hub runs it, ``python -m hello_dl.room.store`` in its own process, with a
real Tornado server and JupyterHub's own HubOAuth code. Only the hub's answer to "whose token is
this?" (``GET /hub/api/user``) comes from a small stand-in server here, since a real hub cannot run
in a unit test; the room server's load test (.ci/hub_load.py) runs the store behind the real hub.
"""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from board_helpers import write_run

from hello_dl import groups, runs
from hello_dl.room import board, records
from hello_dl.settings import load_settings

pytest.importorskip("jupyterhub", reason="the store runs inside JupyterHub's image; JupyterHub is not installed")

PREFIX = "/services/room-board/"
ACCESS = "access:services!service=room-board"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class HubStandIn(http.server.BaseHTTPRequestHandler):
    """Answers ``GET /hub/api/user`` as the hub does: the token's owner and scopes, or 403."""

    tokens: dict[str, dict] = {}

    def do_GET(self):  # noqa: N802 - the http.server API
        token = self.headers.get("Authorization", "").partition(" ")[2]
        model = self.tokens.get(token) if self.path.rstrip("/") == "/hub/api/user" else None
        body = json.dumps(model or {"status": 403, "message": "Forbidden"}).encode()
        self.send_response(200 if model else 403)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _user(name: str, *, admin: bool = False, scopes=(ACCESS,)) -> dict:
    return {"kind": "user", "name": name, "admin": admin, "groups": [], "scopes": list(scopes), "session_id": None}


SEATS = [f"seat-{n:02d}" for n in range(1, 21)]


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    HubStandIn.tokens = {f"token-{seat}": _user(seat) for seat in SEATS}
    HubStandIn.tokens["token-instructor"] = _user("instructor", admin=True)
    HubStandIn.tokens["token-no-access"] = _user("seat-50", scopes=("self",))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), HubStandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class Store:
    """The service in its own process; ``start()`` again after ``stop()`` is a restart on the same folder."""

    def __init__(self, hub_url: str, folder: Path, log: Path):
        self.hub_url, self.folder, self.log = hub_url, folder, log
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}{PREFIX}"
        self.process: subprocess.Popen | None = None

    def start(self) -> "Store":
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HELLO_DL_", "JUPYTERHUB_"))}
        env.update({
            "JUPYTERHUB_SERVICE_NAME": "room-board", "JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{self.port}",
            "JUPYTERHUB_SERVICE_PREFIX": PREFIX, "JUPYTERHUB_API_URL": f"{self.hub_url}/hub/api",
            "JUPYTERHUB_API_TOKEN": "the-services-own-token", "JUPYTERHUB_CLIENT_ID": "service-room-board",
            "JUPYTERHUB_OAUTH_CALLBACK_URL": f"{PREFIX}oauth_callback", "JUPYTERHUB_BASE_URL": "/",
            "JUPYTERHUB_HOST": "", "no_proxy": "127.0.0.1",
        })
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "hello_dl.room.store", "--folder", str(self.folder)],
                                            env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the store stopped at start: {self.log.read_text()[-2000:]}")
            try:
                requests.get(self.url + records.RECORDS_PATH, timeout=2)
                return self
            except requests.ConnectionError:
                time.sleep(0.2)
        raise AssertionError(f"the store did not answer within 60 s: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)

    def call(self, method: str, path: str, token: str | None, body=None) -> requests.Response:
        headers = {"Authorization": f"token {token}"} if token else {}
        return requests.request(method, self.url + path, headers=headers, timeout=30, allow_redirects=False,
                                data=None if body is None else json.dumps(body))


@pytest.fixture
def store(hub, tmp_path):
    service = Store(hub, tmp_path / "hub-state" / "room-board", tmp_path / "store.log").start()
    yield service
    service.stop()


@pytest.fixture(scope="module")
def record_of(tmp_path_factory):
    """seat name → its board record, from a finished run folder per seat (seat-NN is participant NN)."""
    folder = tmp_path_factory.mktemp("runs")
    made = {}

    def make(seat: str, **losses) -> dict:
        number = seat.rsplit("-", 1)[-1].lstrip("0") or seat
        if (seat, tuple(sorted(losses.items()))) not in made:
            run = runs.open_run(write_run(folder / seat, participant=number, **losses))
            made[seat, tuple(sorted(losses.items()))] = board.record_of_run(run, seat=seat)
        return json.loads(json.dumps(made[seat, tuple(sorted(losses.items()))]))

    return make


def _put(store: Store, record: dict, token: str, key: str | None = None) -> requests.Response:
    return store.call("PUT", f"{records.RECORDS_PATH}/{key or records.record_key(record)}", token, record)


def test_a_participant_adds_and_replaces_their_own_record_and_reads_everyones(store, record_of):
    first = _put(store, record_of("seat-01", val_loss=0.9), "token-seat-01")
    assert first.status_code == 201, first.text
    assert _put(store, record_of("seat-02"), "token-seat-02").status_code == 201
    replaced = _put(store, record_of("seat-01", val_loss=0.3), "token-seat-01")
    assert replaced.status_code == 201 and replaced.json() == {"stored": "seat-01"}
    answer = store.call("GET", records.RECORDS_PATH, "token-seat-02")
    assert answer.status_code == 200
    pooled = {r["seat"]: r for r in answer.json()["records"]}
    assert sorted(pooled) == ["seat-01", "seat-02"] and answer.json()["skipped"] == []
    assert pooled["seat-01"]["history"]["val_loss"][-1] == pytest.approx(0.3)  # replaced, not added
    assert sorted(p.name for p in store.folder.iterdir()) == ["seat-01.json", "seat-02.json"]


def test_a_record_for_another_seat_is_refused_and_nothing_is_stored(store, record_of):
    theirs = record_of("seat-03")
    refused = _put(store, theirs, "token-seat-04")  # seat-04 sends seat-03's record to seat-03's place
    assert refused.status_code == 403
    assert "seat-04 may add or replace only their own record" in refused.json()["message"]
    disguised = {**theirs, "seat": "seat-04"}
    sneaky = _put(store, disguised, "token-seat-03")  # seat-03 writes into seat-04's place
    assert sneaky.status_code == 403
    mismatch = _put(store, theirs, "token-seat-03", key="seat-05")
    assert mismatch.status_code == 400 and "send it to api/records/seat-03" in mismatch.json()["message"]
    reference = {**theirs, "kind": records.REFERENCE, "seat": ""}
    not_instructor = _put(store, reference, "token-seat-03")
    assert not_instructor.status_code == 403 and "only the instructor" in not_instructor.json()["message"]
    assert not store.folder.exists() or not list(store.folder.iterdir())
    assert _put(store, reference, "token-instructor").status_code == 201  # the hub's admin may
    assert [p.name for p in store.folder.iterdir()] == ["reference-2a.json"]


def test_nobody_without_the_hubs_word_reads_or_writes(store, record_of):
    record = record_of("seat-06")
    for token in (None, "not-a-token", "token-no-access"):
        assert store.call("GET", records.RECORDS_PATH, token).status_code == 403, token
        assert _put(store, record, token).status_code == 403, token
    broken = store.call("PUT", f"{records.RECORDS_PATH}/seat-06", "token-seat-06", body={"format": "something"})
    assert broken.status_code == 400 and "is not a usable board record" in broken.json()["message"]
    # A browser without a hub session is sent to the hub's login, not shown the page.
    page = store.call("GET", "", None)
    assert page.status_code == 302 and "/hub/api/oauth2/authorize" in page.headers["Location"]


def test_twenty_participants_posting_at_once_lose_nothing(store, record_of):
    prepared = {seat: record_of(seat) for seat in SEATS}
    start = threading.Barrier(len(SEATS), timeout=60)

    def post(seat: str) -> int:
        start.wait()  # all twenty leave together
        return _put(store, prepared[seat], f"token-{seat}").status_code

    with ThreadPoolExecutor(len(SEATS)) as pool:
        statuses = list(pool.map(post, SEATS, timeout=120))
    assert statuses == [201] * len(SEATS)
    pooled = store.call("GET", records.RECORDS_PATH, "token-seat-01").json()
    assert sorted(r["seat"] for r in pooled["records"]) == SEATS
    assert sorted(p.name for p in store.folder.iterdir()) == [f"{seat}.json" for seat in SEATS]  # no leftovers


def test_the_board_pools_the_hub_store_into_the_same_figure_as_a_folder(store, record_of, tmp_path):
    folder = tmp_path / "collected"
    for seat in SEATS[:8]:
        record = record_of(seat, train_loss=0.1 * (int(seat[-2:]) % 3), val_loss=0.5)
        assert _put(store, record, f"token-{seat}").status_code == 201
        records.write_record(record, folder)
    settings = load_settings("smoke", environ={}, output_dir=str(tmp_path / "outputs"))
    from_hub = board.pool(settings, where=store.url, token="token-seat-02", own="seat-02")
    from_folder = board.pool(settings, where=folder, own="seat-02")
    assert from_hub.counts == from_folder.counts == {g: 2 for g in groups.GROUPS}
    assert from_hub.values() == from_folder.values()
    drawn = []
    for pooled in (from_hub, from_folder):
        axis = pooled.figure().axes[0]
        drawn.append(sorted((c.get_gid(), tuple(map(tuple, c.get_offsets().round(6)))) for c in axis.collections
                            if c.get_gid()))
    assert drawn[0] == drawn[1] and any(gid == "yours" for gid, _ in drawn[0])


def test_a_participant_shares_through_the_hub_with_a_copy_in_their_own_outputs(store, tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_USER", "seat-07")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "token-seat-07")
    monkeypatch.setenv(board.BOARD_VARIABLE, store.url)
    settings = load_settings("smoke", environ={}, output_dir=str(tmp_path / "outputs"), participant="7")
    run = runs.open_run(write_run(tmp_path / "outputs", participant="7"), settings)
    shown = board.for_lesson(run, settings)
    assert shown.own == "seat-07" and shown.counts["2A"] == 1
    assert "is on the board: sent to the room server's board" in shown.shared
    assert (tmp_path / "outputs" / board.FOLDER / "seat-07.json").is_file()  # the export file, too


def test_a_damaged_file_in_the_store_is_skipped_with_a_note(store, record_of):
    assert _put(store, record_of("seat-08"), "token-seat-08").status_code == 201
    (store.folder / "seat-09.json").write_text('{"format": "hello-dl board record", "ver')
    answer = store.call("GET", records.RECORDS_PATH, "token-seat-08").json()
    assert [r["seat"] for r in answer["records"]] == ["seat-08"]
    assert len(answer["skipped"]) == 1 and "seat-09.json is not a readable board record" in answer["skipped"][0]


def test_the_board_survives_a_restart_of_the_store(store, record_of):
    for seat in SEATS[:3]:
        assert _put(store, record_of(seat), f"token-{seat}").status_code == 201
    store.stop()
    store.start()
    pooled = store.call("GET", records.RECORDS_PATH, "token-seat-01").json()["records"]
    assert sorted(r["seat"] for r in pooled) == SEATS[:3]
