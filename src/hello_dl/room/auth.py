"""The hub's door: a JupyterHub authenticator that lets in seat cards and nobody else.

Participants type the seat name and the code from their card into the hub's own login form.
The hub checks the code against the salted hashes in ``seats.json`` (made by
``hello-dl room cards``); the instructor's card makes its holder the hub's administrator.
There is no setting under which any password works: ``allow_all`` is refused, an empty or
wrong code never matches, a seat that is not in the file never gets in, and a missing or damaged
seat file lets nobody in (the hub's log says why).

The file is read again whenever it changes, so a new set of cards (``--force``) takes effect
without restarting the hub; sessions of seats that are no longer in the file end at their next
refresh.

This module imports JupyterHub (it runs inside the hub); everything it decides is in
:mod:`hello_dl.room.cards`, which does not.
"""

from __future__ import annotations

import asyncio
import os

from jupyterhub.auth import Authenticator
from traitlets import Unicode, default, validate

from hello_dl.room.cards import CardError, SeatBook


class SeatCardAuthenticator(Authenticator):
    """Log in with a seat card: the seat's name as the username and its code as the password."""

    seats_file = Unicode(
        "/srv/room/seats.json",
        config=True,
        help="The seats.json written by `hello-dl room cards` (hashes of the codes only).",
    )

    @default("any_allow_config")
    def _seats_are_the_allow_config(self):
        return True  # the seat file is the allow list; JupyterHub need not warn that nobody can log in

    @validate("allow_all")
    def _never_allow_all(self, proposal):
        if proposal.value:
            raise ValueError("SeatCardAuthenticator never lets in everybody who can log in: only seats of "
                             f"{self.seats_file} do. Remove `allow_all = True` from the hub's configuration.")
        return False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._book: SeatBook | None = None
        self._stamp: tuple | None = None

    # --- the seat file ---------------------------------------------------------------------------
    def seat_book(self) -> SeatBook | None:
        """The current seats, re-read when the file changed; None (nobody gets in) if it is unusable."""
        try:
            info = os.stat(self.seats_file)
            stamp = (info.st_ino, info.st_mtime_ns, info.st_size)
        except OSError:
            stamp = None
        if stamp != self._stamp or self._book is None:
            self._stamp = stamp
            try:
                self._book = SeatBook.load(self.seats_file)
            except CardError as exc:
                self.log.error("Seat cards: %s Nobody can log in until this is fixed.", exc)
                self._book = None
            else:
                self.log.info("Seat cards: %d seat(s) from %s, instructor(s): %s", len(self._book.names),
                              self.seats_file, ", ".join(sorted(self._book.instructors)) or "none")
                if self._book.readable_by_others:
                    self.log.warning("Seat cards: %s can be read by other users of this computer (mode %o); "
                                     "`chmod 600` it.", self.seats_file, self._book.mode)
        return self._book

    def check_allow_config(self):
        if self.seat_book() is None:
            self.log.warning("Seat cards: no usable seat file at %s yet, so nobody can log in.", self.seats_file)

    # --- the login -----------------------------------------------------------------------------------
    async def authenticate(self, handler, data):
        book = self.seat_book()
        if book is None or not isinstance(data, dict):
            return None
        name = self.normalize_username(str(data.get("username") or "").strip())
        code = str(data.get("password") or "")
        # scrypt takes ~0.1 s on purpose; keep the hub's event loop free for everybody else meanwhile.
        seat = await asyncio.get_running_loop().run_in_executor(None, book.check, name, code)
        if seat is None:
            self.log.warning("Seat cards: failed login for %r", name[:40])
            return None
        return {"name": seat.name, "admin": seat.role == "instructor"}

    def check_allowed(self, username, authentication=None):
        book = self.seat_book()
        return book is not None and username in book.names

    async def refresh_user(self, user, handler=None):
        # A seat that is no longer in the file (a new set of cards) is logged out.
        return self.check_allowed(user.name)

    def is_admin(self, handler, authentication):
        book = self.seat_book()
        return book is not None and authentication["name"] in book.instructors
