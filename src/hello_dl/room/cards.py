"""Seat cards: the only way into the room server.

``make_cards(40, folder)`` deals out one card per seat (``seat-01`` … ``seat-40``) plus one for the
instructor, each with its own random code from :mod:`secrets`, and writes two files:

* ``cards.html``: the printable page for the instructor (eight cards per A4/Letter sheet, cut
  lines, the experiment group of each seat). It holds the codes: keep it private.
* ``seats.json``: what the hub reads. It stores only a salted scrypt hash of each code, never the
  code itself, so a copy of it does not let anybody in.

Both are written with mode 0600 (readable by their owner only), atomically, and an existing set
is never replaced without ``force=True`` (cards already handed out would stop working).
:class:`SeatBook` is the hub's side: it loads ``seats.json`` and checks a seat name and code.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import html
import json
import os
import re
import secrets
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from hello_dl import groups
from hello_dl.errors import HelloDLError
from hello_dl.runs import write_atomic

SEATS_FILE = "seats.json"
CARDS_PAGE = "cards.html"
FORMAT = "hello-dl seat cards"
VERSION = 1

# No 0/O, no 1/I/L: a code read off a card, or aloud, is typed without mix-ups.
ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_GROUPS = 3
GROUP_LENGTH = 4  # 12 characters from 31: about 59 bits, far beyond guessing through a login form
# scrypt with 16 MiB of memory per check (about 0.1 s): a stolen seats.json cannot be brute-forced
# cheaply, and forty participants logging in at once cost the hub a few seconds of CPU in all.
SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$")
MAX_SEATS = 500
PARTICIPANT, INSTRUCTOR = "participant", "instructor"


class CardError(HelloDLError):
    """Seat cards cannot be made or read; the message names the file and the fix."""


# --- codes ---------------------------------------------------------------------------------------
def new_code() -> str:
    """A fresh random code, e.g. ``7KQH-M3TZ-P9WX``."""
    raw = "".join(secrets.choice(ALPHABET) for _ in range(CODE_GROUPS * GROUP_LENGTH))
    return format_code(raw)


def normalise_code(text: str) -> str:
    """What a participant types, made comparable: case, spaces and dashes do not matter."""
    return re.sub(r"[\s-]+", "", str(text)).upper()


def format_code(code: str) -> str:
    plain = normalise_code(code)
    return "-".join(plain[i:i + GROUP_LENGTH] for i in range(0, len(plain), GROUP_LENGTH))


def _scrypt(code: str, salt: bytes, params: dict[str, int]) -> bytes:
    return hashlib.scrypt(normalise_code(code).encode("ascii", "replace"), salt=salt, n=int(params["n"]),
                          r=int(params["r"]), p=int(params["p"]), dklen=int(params["dklen"]),
                          maxmem=256 * 1024 * 1024)


def hash_code(code: str, params: dict[str, int] | None = None) -> dict[str, str]:
    """A salted scrypt hash of ``code`` (hex strings), the only trace of it that is stored."""
    salt = secrets.token_bytes(16)
    return {"salt": salt.hex(), "hash": _scrypt(code, salt, params or SCRYPT).hex()}


def code_matches(record: dict[str, str], code: str, params: dict[str, int] | None = None) -> bool:
    """Does ``code`` match the stored hash? An empty code never does."""
    if not normalise_code(code):
        return False
    digest = _scrypt(code, bytes.fromhex(record["salt"]), params or SCRYPT)
    return hmac.compare_digest(digest, bytes.fromhex(record["hash"]))


# --- seats ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Seat:
    name: str
    role: str = PARTICIPANT
    number: int | None = None  # seat-07 → 7: deals the experiment groups out in turn

    @property
    def group(self) -> str | None:
        return groups.assign_group(self.number) if self.number else None


def participant_of(seat_name: str) -> str:
    """What the kit's HELLO_DL_PARTICIPANT gets for a seat: seat-07 → "7" (groups dealt out in turn),
    any other name unchanged (a group by hash)."""
    tail = str(seat_name).rsplit("-", 1)[-1]
    return str(int(tail)) if tail.isdigit() and int(tail) > 0 else str(seat_name)


def check_name(name: str, what: str) -> str:
    if not NAME_PATTERN.match(name or ""):
        raise CardError(f"{what} {name!r} cannot be used: use 2-32 lower-case letters, digits and dashes, "
                        "starting with a letter (it becomes the login name and part of the container's name).")
    return name


def deal_seats(count: int, prefix: str = "seat", instructor: str = "instructor") -> list[Seat]:
    """``count`` numbered participant seats and one instructor seat."""
    if not 1 <= count <= MAX_SEATS:
        raise CardError(f"--seats {count}: give a number of seats from 1 to {MAX_SEATS}.")
    check_name(prefix, "The seat prefix")
    check_name(instructor, "The instructor's seat name")
    width = max(2, len(str(count)))
    seats = [Seat(f"{prefix}-{n:0{width}d}", PARTICIPANT, n) for n in range(1, count + 1)]
    if instructor in {s.name for s in seats}:
        raise CardError(f"The instructor's seat name {instructor!r} is also a participant's: choose another.")
    return seats + [Seat(instructor, INSTRUCTOR)]


# --- making a set ----------------------------------------------------------------------------------
@dataclass
class CardSet:
    folder: Path
    seats_file: Path
    cards_page: Path
    seats: list[Seat]

    @property
    def participants(self) -> int:
        return sum(s.role == PARTICIPANT for s in self.seats)


@contextlib.contextmanager
def _private_files() -> Iterator[None]:
    # The kit's one writer gives new files the mode the umask allows; 077 makes that 0600.
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


def existing_set(folder: Path) -> list[Path]:
    return [folder / name for name in (SEATS_FILE, CARDS_PAGE) if (folder / name).exists()]


def make_cards(count: int, folder: str | Path, *, prefix: str = "seat", instructor: str = "instructor",
               url: str | None = None, title: str = "Hello, World! Deep learning in medical imaging",
               force: bool = False) -> CardSet:
    """Deal out ``count`` seats (plus the instructor's), write ``cards.html`` and ``seats.json``.

    Returns the set with the file paths; the codes exist only in ``cards.html``.
    """
    folder = Path(folder).expanduser().resolve()
    seats = deal_seats(count, prefix, instructor)
    there = existing_set(folder)
    if there and not force:
        raise CardError(f"{folder} already holds a set of seat cards ({', '.join(p.name for p in there)}). "
                        "Cards already handed out would stop working if it were replaced. To make a new set "
                        "anyway, run the same command with --force (or choose another --folder).")
    codes = {seat.name: new_code() for seat in seats}
    records = []
    for seat in seats:
        records.append({"name": seat.name, "role": seat.role, "number": seat.number, **hash_code(codes[seat.name])})
    book = {
        "format": FORMAT,
        "version": VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "kdf": {"name": "scrypt", **SCRYPT},
        "seats": records,
    }
    page = cards_html(seats, codes, url=url, title=title, created=book["created"])
    with _private_files():
        try:
            folder.mkdir(parents=True, exist_ok=True)
            # The page first, the seats file last: the hub only ever sees a complete set.
            write_atomic(folder / CARDS_PAGE, page, exclusive=not force)
            write_atomic(folder / SEATS_FILE, json.dumps(book, indent=1) + "\n", exclusive=not force)
        except FileExistsError as exc:
            raise CardError(f"{exc.filename or folder} appeared while the cards were being made; nothing was "
                            "replaced. Run the command again (with --force to replace the set).") from None
    return CardSet(folder, folder / SEATS_FILE, folder / CARDS_PAGE, seats)


# --- the printable page ------------------------------------------------------------------------------
CARDS_PER_SHEET = 8  # two columns of four: fits A4 and US Letter
_PAGE_STYLE = """
  body { font-family: "DejaVu Sans", Arial, Helvetica, sans-serif; margin: 0; color: #111; }
  .note { margin: 10mm 10mm 4mm; font-size: 10pt; }
  .sheet { display: grid; grid-template-columns: 1fr 1fr; margin: 0 10mm 10mm; }
  .card { box-sizing: border-box; height: 64mm; padding: 5mm 6mm; border: 1px dashed #777;
          break-inside: avoid; page-break-inside: avoid; overflow: hidden; }
  .card h2 { font-size: 9pt; font-weight: normal; margin: 0 0 2mm; color: #444; }
  .label { font-size: 8pt; color: #555; text-transform: uppercase; letter-spacing: 0.05em; margin-top: 2mm; }
  .seat { font-size: 20pt; font-weight: bold; }
  .code { font-family: "DejaVu Sans Mono", "Courier New", monospace; font-size: 20pt; font-weight: bold;
          letter-spacing: 0.08em; }
  .where, .group { font-size: 9pt; margin-top: 2mm; }
  .card.instructor { border: 2px solid #000; }
  .card.instructor h2 { color: #000; font-weight: bold; }
  @page { margin: 8mm; }
  @media print {
    .note { display: none; }
    .sheet { margin: 0; break-after: page; page-break-after: always; }
    .sheet:last-child { break-after: auto; page-break-after: auto; }
  }
"""


def _card(seat: Seat, code: str, url: str | None, title: str) -> str:
    e = html.escape
    where = (f'Open <b>{e(url)}</b> in your web browser.' if url
             else "Open the address your instructor shows in your web browser.")
    if seat.role == INSTRUCTOR:
        heading = "INSTRUCTOR — hub administrator. Keep this card."
        extra = '<div class="group">Admin page: /hub/admin (see every seat, stop or start servers).</div>'
    else:
        heading = e(title)
        extra = f'<div class="group">{e(groups.describe_group(seat.group))}</div>' if seat.group else ""
    return (f'<div class="card {e(seat.role)}"><h2>{heading}</h2>'
            f'<div class="where">{where} Sign in with:</div>'
            f'<div class="label">Username</div><div class="seat">{e(seat.name)}</div>'
            f'<div class="label">Password (case and dashes do not matter)</div><div class="code">{e(code)}</div>'
            f'{extra}</div>')


def cards_html(seats: list[Seat], codes: dict[str, str], *, url: str | None, title: str, created: str) -> str:
    """The instructor's printable page: one card per seat, the instructor's first, eight to a sheet."""
    ordered = sorted(seats, key=lambda s: s.role != INSTRUCTOR)
    cards = [_card(seat, codes[seat.name], url, title) for seat in ordered]
    sheets = "\n".join('<section class="sheet">' + "".join(cards[i:i + CARDS_PER_SHEET]) + "</section>"
                       for i in range(0, len(cards), CARDS_PER_SHEET))
    participants = sum(s.role == PARTICIPANT for s in seats)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Seat cards ({participants} seats)</title>
<style>{_PAGE_STYLE}</style></head>
<body>
<p class="note">{participants} seat cards and the instructor's, made {html.escape(created)}.
Print this page (this note is not printed), cut along the dashed lines and put one card on each seat.
The codes are only on this page: keep it private, and delete it after the session.</p>
<main>
{sheets}
</main>
</body></html>
"""


# --- the hub's side: reading a set and checking a login ---------------------------------------------------
class SeatBook:
    """The seats of one ``seats.json``: who may log in, who is the instructor, and the code check."""

    def __init__(self, records: dict[str, dict], params: dict[str, int], path: Path | None = None,
                 mode: int | None = None):
        self.records = records
        self.params = params
        self.path = path
        self.mode = mode
        self._decoy_record: dict[str, str] | None = None

    @classmethod
    def load(cls, path: str | Path) -> "SeatBook":
        path = Path(path)
        fix = "Make a set with `hello-dl room cards --seats N` and point the hub at its seats.json."
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CardError(f"There is no seat file at {path}. {fix}") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CardError(f"The seat file {path} cannot be read ({exc}). {fix}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("version") != VERSION:
            raise CardError(f"{path} is not a seat file of this kit (format {FORMAT!r}, version {VERSION}). {fix}")
        kdf = data.get("kdf") or {}
        if kdf.get("name") != "scrypt" or not all(isinstance(kdf.get(k), int) for k in ("n", "r", "p", "dklen")):
            raise CardError(f"{path} names no usable code hash (scrypt). {fix}")
        records: dict[str, dict] = {}
        for entry in data.get("seats") or []:
            try:
                name = check_name(str(entry["name"]), "A seat")
                bytes.fromhex(entry["salt"])
                if len(bytes.fromhex(entry["hash"])) < 16 or entry.get("role") not in (PARTICIPANT, INSTRUCTOR):
                    raise ValueError
            except (KeyError, TypeError, ValueError, CardError):
                raise CardError(f"{path} has a damaged seat entry ({str(entry)[:60]}…). {fix}") from None
            if name in records:
                raise CardError(f"{path} lists the seat {name!r} twice. {fix}")
            records[name] = entry
        if not records:
            raise CardError(f"{path} lists no seats, so nobody could log in. {fix}")
        return cls(records, {k: kdf[k] for k in ("n", "r", "p", "dklen")}, path, mode)

    @property
    def names(self) -> set[str]:
        return set(self.records)

    @property
    def instructors(self) -> set[str]:
        return {name for name, r in self.records.items() if r["role"] == INSTRUCTOR}

    @property
    def readable_by_others(self) -> bool:
        return self.mode is not None and bool(self.mode & 0o077)

    def seat(self, name: str) -> Seat:
        record = self.records[name]
        return Seat(name, record["role"], record.get("number"))

    def check(self, name: str, code: str) -> Seat | None:
        """The seat if ``code`` is that seat's code, else None (unknown seat, wrong or empty code)."""
        name = str(name or "").strip().lower()
        record = self.records.get(name)
        if record is None and self._decoy_record is None:
            self._decoy_record = hash_code(new_code(), self.params)
        # An unknown name costs the same check as a known one, so seat names cannot be probed by timing.
        matches = code_matches(record or self._decoy_record, code, self.params)
        return self.seat(name) if record is not None and matches else None


__all__ = [
    "ALPHABET", "CARDS_PAGE", "CardError", "CardSet", "INSTRUCTOR", "PARTICIPANT", "SEATS_FILE", "Seat",
    "SeatBook", "cards_html", "code_matches", "deal_seats", "existing_set", "format_code", "hash_code",
    "make_cards", "new_code", "normalise_code", "participant_of",
]
