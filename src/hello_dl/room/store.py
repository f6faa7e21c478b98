"""The room's board on the room server: a JupyterHub service that keeps one run record per seat.

The hub starts it (``python -m hello_dl.room.store``, see ``docker/hub/jupyterhub_config.py``) and
the proxy serves it at ``/services/room-board/``. Everybody who talks to it is identified by the
hub: a participant's notebook sends its container's hub token (``JUPYTERHUB_API_TOKEN``), a
browser signs in through the hub (OAuth). Then:

* ``GET  api/records``        every record of the room (and a note for any file that was skipped);
* ``PUT  api/records/<seat>`` add or replace *your own* record: the key, the record's seat and the
  signed-in user must be one and the same, so nobody can write anybody else's;
  ``reference-<group>`` records are accepted from the hub's administrators only (the instructor);
* ``GET  ``                   a small page for the instructor: runs per group, every run's gap.

Records are files, one per key, in ``--folder`` (the hub's state volume), each written atomically
(:func:`hello_dl.room.records.write_record`): many participants posting at once lose nothing, a
reader never sees half a record, and the board survives a restart of the hub. Writes need a
token (a notebook or ``hello-dl room export``), never a browser's cookie, so no other web page can
make a signed-in browser post a record.

This module imports JupyterHub and Tornado (it runs in the hub's image, which has no NumPy);
what a record is lives in :mod:`hello_dl.room.records`.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import urlparse

from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
from jupyterhub.utils import url_path_join
from tornado import httpserver, web
from tornado.log import app_log

from hello_dl import groups
from hello_dl.room import records

#: The service's name in the hub's configuration, and so its address: /services/room-board/.
SERVICE_NAME = "room-board"
FOLDER_VARIABLE = "HELLO_DL_ROOM_BOARD_DIR"
PAGE_REFRESH_SECONDS = 30


class RecordFolder:
    """The store's records: one file per key in ``folder``."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def put(self, record: dict[str, Any]) -> Path:
        return records.write_record(record, self.folder)

    def collect(self) -> records.Collected:
        return records.read_folder(self.folder)


class _BoardHandler(HubOAuthenticated, web.RequestHandler):
    """Who is asking, decided by the hub: a token (notebooks, the command line) or the hub's login (browsers)."""

    def initialize(self, store: RecordFolder):
        self.store = store

    async def prepare(self):
        # Ask the hub without blocking everybody else meanwhile (the answer is cached per token).
        await self.hub_auth.get_user(self, sync=False)


class RecordsHandler(_BoardHandler):
    def _who(self) -> dict[str, Any]:
        user = self.current_user
        if not user:
            raise web.HTTPError(403, "Sign in to the room's hub with your seat card first (the board is only for "
                                     "the room).")
        return user

    def get(self):
        self._who()
        found = self.store.collect()
        self.finish({"records": list(found.records.values()), "skipped": found.notes})

    def put(self, key: str):
        user = self._who()
        name = user["name"]
        if not getattr(self, "_token_authenticated", False):
            raise web.HTTPError(403, "Records are sent with a hub token (notebook 05 or `hello-dl room export` does "
                                     "it), not from a browser page.")
        try:
            record = records.parse(self.request.body, f"the record sent by {name}")
        except records.RecordError as exc:
            raise web.HTTPError(400, str(exc)) from None
        if records.record_key(record) != key:
            raise web.HTTPError(400, f"The record's own key is {records.record_key(record)!r}, but it was sent "
                                     f"to {key!r}: send it to api/records/{records.record_key(record)}.")
        if record["kind"] == records.REFERENCE:
            if not user.get("admin"):
                raise web.HTTPError(403, f"{name} may not add reference runs: only the instructor (the hub's "
                                         "administrator) may.")
        elif key != name or record["seat"] != name:
            raise web.HTTPError(403, f"{name} may add or replace only their own record (api/records/{name}), "
                                     f"not the one of {record['seat'] or key!r}.")
        self.store.put(record)
        app_log.info("room board: %s stored %s (group %s)", name, key, record["group"])
        self.set_status(201)
        self.finish({"stored": key})

    def write_error(self, status_code: int, **kwargs):
        # A plain sentence for the notebook or command line to show, not Tornado's HTML page.
        problem = kwargs.get("exc_info", (None, None))[1]
        message = getattr(problem, "log_message", None) or self._reason
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"status": status_code, "message": message}))


class PageHandler(_BoardHandler):
    """The instructor's glance at the board, in the browser (the figure itself: ``hello-dl room board``)."""

    @web.authenticated
    def get(self):
        found = self.store.collect()
        self.finish(status_page(list(found.records.values()), found.notes, self.current_user["name"]))


def status_page(pool: list[dict[str, Any]], notes: list[str], viewer: str) -> str:
    """Runs per group and each run's gap, as a page that reloads itself."""
    e = html.escape
    participants = [r for r in pool if r["kind"] == records.PARTICIPANT]
    rows = []
    for group in groups.GROUPS:
        mine = sorted((r for r in participants if r["group"] == group), key=lambda r: r["seat"])
        gaps = ", ".join(f"{e(r['seat'] or r['run'])} {records.gap(r):+.2f}" for r in mine) or "none yet"
        reference = [f"{records.gap(r):+.2f}" for r in pool if r["kind"] == records.REFERENCE and r["group"] == group]
        rows.append(f"<tr><td>{group}</td><td>{e(groups.describe_group(group))}</td><td>{len(mine)}</td>"
                    f"<td>{', '.join(reference) or '-'}</td><td>{gaps}</td></tr>")
    skipped = "".join(f"<li>{e(note)}</li>" for note in notes)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="{PAGE_REFRESH_SECONDS}">
<title>The room's board</title>
<style>body {{ font-family: "DejaVu Sans", Arial, sans-serif; margin: 2em; }} td, th {{ padding: 0.2em 1em;
text-align: left; vertical-align: top; }}</style></head>
<body><h1>The room's board: {len(participants)} run(s)</h1>
<p>Signed in as {e(viewer)}. This page reloads every {PAGE_REFRESH_SECONDS} s. The gap is validation loss minus
training loss at each run's last epoch. The figure (every run, mean and 95 % interval per group): notebook 05,
or <code>hello-dl room board</code> on the instructor's computer.</p>
<table><tr><th>group</th><th>recipe</th><th>runs</th><th>reference gap</th><th>each run's gap</th></tr>
{''.join(rows)}</table>
{'<p>Skipped:</p><ul>' + skipped + '</ul>' if skipped else ''}
</body></html>
"""


def make_app(folder: str | Path, prefix: str) -> web.Application:
    """The service's web application, under ``prefix`` (JupyterHub's JUPYTERHUB_SERVICE_PREFIX)."""
    store = RecordFolder(folder)
    prefix = prefix if prefix.endswith("/") else prefix + "/"
    return web.Application([
        (url_path_join(prefix, "oauth_callback"), HubOAuthCallbackHandler),
        (url_path_join(prefix, records.RECORDS_PATH), RecordsHandler, {"store": store}),
        (url_path_join(prefix, records.RECORDS_PATH, r"([^/]+)"), RecordsHandler, {"store": store}),
        (prefix, PageHandler, {"store": store}),
        (prefix.rstrip("/") or "/", web.RedirectHandler, {"url": prefix}),
    ], cookie_secret=os.urandom(32))  # OAuth state only: after a restart the browser simply signs in again


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hello_dl.room.store", description=__doc__.splitlines()[0])
    parser.add_argument("--folder", default=os.environ.get(FOLDER_VARIABLE, "/srv/jupyterhub/room-board"),
                        help=f"where the records are kept (default: {FOLDER_VARIABLE} or the hub's state volume)")
    options = parser.parse_args(argv)
    address = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:8082"))
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", f"/services/{SERVICE_NAME}/")
    app = make_app(options.folder, prefix)

    async def serve() -> None:
        server = httpserver.HTTPServer(app, max_body_size=2 * records.MAX_BYTES)
        server.listen(address.port or 80, address.hostname or "127.0.0.1")
        print(f"room board: serving {prefix} on {address.hostname}:{address.port}, records in {options.folder}",
              file=sys.stderr, flush=True)
        await asyncio.Event().wait()  # until the hub stops the service

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
