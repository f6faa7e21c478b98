"""The hub's door, through JupyterHub's own authentication path (get_authenticated_user), and
each participant's share of the machine."""

from __future__ import annotations

import asyncio
import re

import pytest

pytest.importorskip("jupyterhub", reason="the hub's authenticator runs inside JupyterHub's image; "
                    "JupyterHub is not installed in this environment (make venv installs it)")

from hello_dl.room import cards, sizing  # noqa: E402
from hello_dl.room.auth import SeatCardAuthenticator  # noqa: E402

GIB = sizing.GIB


def login(auth, username, password):
    return asyncio.run(auth.get_authenticated_user(None, {"username": username, "password": password}))


@pytest.fixture
def room(tmp_path):
    made = cards.make_cards(2, tmp_path / "room")
    codes = dict(re.findall(r'<div class="seat">([^<]+)</div>.*?<div class="code">([^<]+)</div>',
                            made.cards_page.read_text()))
    return made, codes, SeatCardAuthenticator(seats_file=str(made.seats_file))


def test_a_card_logs_its_seat_in_and_the_instructor_becomes_admin(room):
    _, codes, auth = room
    assert login(auth, "seat-01", codes["seat-01"])["name"] == "seat-01"
    assert login(auth, "seat-01", codes["seat-01"])["admin"] is False
    assert login(auth, " Seat-02 ", codes["seat-02"].lower())["name"] == "seat-02"
    instructor = login(auth, "instructor", codes["instructor"])
    assert instructor["name"] == "instructor" and instructor["admin"] is True


@pytest.mark.parametrize("username, which", [("seat-01", "seat-02"), ("seat-01", ""), ("seat-03", "seat-01"),
                                             ("admin", "instructor"), ("", "seat-01")])
def test_no_other_login_works(room, username, which):
    _, codes, auth = room
    assert login(auth, username, codes.get(which, "")) is None
    assert auth.check_allowed(username) == (username in codes)  # only seats of the file, and only with their code


def test_any_password_mode_is_refused(room):
    made, _, _ = room
    with pytest.raises(ValueError, match="never lets in everybody"):
        SeatCardAuthenticator(seats_file=str(made.seats_file), allow_all=True)
    assert SeatCardAuthenticator(seats_file=str(made.seats_file)).allow_all is False


def test_without_a_seat_file_nobody_gets_in(tmp_path, room):
    _, codes, _ = room
    auth = SeatCardAuthenticator(seats_file=str(tmp_path / "missing" / "seats.json"))
    assert login(auth, "seat-01", codes["seat-01"]) is None
    assert not auth.check_allowed("seat-01")


def test_a_new_set_takes_effect_without_a_restart(room):
    made, codes, auth = room
    assert login(auth, "seat-02", codes["seat-02"]) is not None
    cards.make_cards(1, made.folder, force=True)
    assert login(auth, "seat-01", codes["seat-01"]) is None  # the old card
    assert not auth.check_allowed("seat-02")

    class User:
        name = "seat-02"
    assert asyncio.run(auth.refresh_user(User())) is False  # a dropped seat is logged out


def test_the_sizing_rule_on_this_kind_of_machine():
    share = sizing.participant_share(7, cores=2, memory_total=24 * GIB)
    assert share.cpu_limit == 1.0 and share.threads == 1
    # 24 GiB less the 2.4 GiB reserve, over 7 containers, rounded down to 64 MiB
    assert share.mem_limit == int((24 * GIB - int(0.1 * 24 * GIB)) // 7) // (64 * 2**20) * (64 * 2**20)
    assert share.mem_limit >= sizing.TRAINING_NEED_BYTES
    assert any("share 2 core(s)" in note for note in share.notes)


def test_the_sizing_rule_on_a_big_server():
    share = sizing.participant_share(40, cores=64, memory_total=256 * GIB)
    assert share.cpu_limit == 3.2 and share.threads == 4
    assert 5.7 * GIB < share.mem_limit <= 5.76 * GIB
    assert share.notes == []
    assert sizing.thread_environment(share)["TF_NUM_INTRAOP_THREADS"] == "4"
    assert sizing.participant_share(2, cores=64, memory_total=512 * GIB).mem_limit == 8 * GIB  # capped


def test_too_many_seats_for_the_memory_says_how_many_fit():
    share = sizing.participant_share(41, cores=2, memory_total=24 * GIB)
    assert share.mem_limit < sizing.TRAINING_NEED_BYTES
    assert any("holds about 8 participant(s)" in note for note in share.notes)


def test_limits_given_by_hand(monkeypatch):
    share = sizing.participant_share(4, cores=8, memory_total=16 * GIB, cpu_limit=1.5, mem_limit=6 * GIB)
    assert share.cpu_limit == 1.5 and share.threads == 2 and share.mem_limit == 6 * GIB
    assert any("more than this machine can give" in note for note in share.notes)
    with pytest.raises(sizing.SizingError, match="between 0.1 and the 8 core"):
        sizing.participant_share(4, cores=8, memory_total=16 * GIB, cpu_limit=9)
    assert sizing.parse_bytes("2.5G") == int(2.5 * GIB) and sizing.parse_bytes("512M") == 512 * 2**20
    for bad in ("lots", "1M", "-2G"):
        with pytest.raises(sizing.SizingError):
            sizing.parse_bytes(bad)
