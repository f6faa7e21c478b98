"""Seat cards: real card sets written to disk, read back the way the hub reads them."""

from __future__ import annotations

import json
import re
import shutil
import stat
import subprocess

import pytest

from hello_dl.cli import main
from hello_dl.room import cards
from hello_dl.room.cards import CardError, SeatBook


def codes_on_page(page: str) -> dict[str, str]:
    """Seat name → code, read off the printable page as a person would."""
    found = re.findall(r'<div class="seat">([^<]+)</div>.*?<div class="code">([^<]+)</div>', page)
    return dict(found)


@pytest.fixture
def card_set(tmp_path):
    made = cards.make_cards(3, tmp_path / "room", url="https://10.0.0.5:8000")
    return made, codes_on_page(made.cards_page.read_text())


def test_a_set_has_a_card_per_seat_and_the_instructors(card_set):
    made, codes = card_set
    assert sorted(codes) == ["instructor", "seat-01", "seat-02", "seat-03"]
    assert made.participants == 3
    page = made.cards_page.read_text()
    assert page.count('class="card participant"') == 3 and page.count('class="card instructor"') == 1
    assert "https://10.0.0.5:8000" in page
    # Seats are dealt into the experiment groups in turn.
    for group in ("Group 1A", "Group 1B", "Group 2A"):
        assert group in page
    for code in codes.values():
        assert re.fullmatch(r"[23456789A-HJKMNP-Z]{4}-[23456789A-HJKMNP-Z]{4}-[23456789A-HJKMNP-Z]{4}", code)


def test_only_hashes_are_stored_and_both_files_are_private(card_set):
    made, codes = card_set
    stored = made.seats_file.read_text()
    for code in codes.values():
        assert code not in stored and cards.normalise_code(code) not in stored
    book = json.loads(stored)
    assert book["kdf"]["name"] == "scrypt" and {s["name"] for s in book["seats"]} == set(codes)
    for path in (made.seats_file, made.cards_page):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not list(made.folder.glob(".*partial"))  # nothing half-written left behind


def test_each_code_opens_its_own_seat_only(card_set):
    made, codes = card_set
    book = SeatBook.load(made.seats_file)
    assert book.names == set(codes) and book.instructors == {"instructor"}
    for name, code in codes.items():
        seat = book.check(name, code)
        assert seat is not None and seat.name == name
        assert book.check(name.upper(), code.lower().replace("-", " ")) is not None  # as people type it
        others = [n for n in codes if n != name]
        assert all(book.check(other, code) is None for other in others)
    assert book.check("seat-01", codes["seat-01"]).role == "participant"
    assert book.check("instructor", codes["instructor"]).role == "instructor"


@pytest.mark.parametrize("name, code", [("seat-01", ""), ("seat-01", "   "), ("seat-01", "AAAA-AAAA-AAAA"),
                                        ("seat-99", None), ("", None), ("admin", None)])
def test_nobody_else_gets_in(card_set, name, code):
    made, codes = card_set
    book = SeatBook.load(made.seats_file)
    typed = code if code is not None else codes["seat-02"]
    assert book.check(name, typed) is None


def test_an_existing_set_is_never_replaced_without_force(card_set):
    made, codes = card_set
    before = {p.name: p.read_bytes() for p in (made.seats_file, made.cards_page)}
    with pytest.raises(CardError, match="--force"):
        cards.make_cards(5, made.folder)
    assert {p.name: p.read_bytes() for p in (made.seats_file, made.cards_page)} == before

    again = cards.make_cards(2, made.folder, force=True)
    new_codes = codes_on_page(again.cards_page.read_text())
    book = SeatBook.load(again.seats_file)
    assert book.names == {"seat-01", "seat-02", "instructor"}
    assert book.check("seat-01", codes["seat-01"]) is None  # the old cards stop working
    assert book.check("seat-01", new_codes["seat-01"]) is not None
    assert stat.S_IMODE(again.seats_file.stat().st_mode) == 0o600


def test_codes_are_random_and_from_the_unambiguous_alphabet():
    many = {cards.new_code() for _ in range(2000)}
    assert len(many) == 2000
    letters = set("".join(many).replace("-", ""))
    assert letters <= set(cards.ALPHABET) and not letters & set("01OIL")


@pytest.mark.parametrize("kwargs, message", [
    ({"count": 0}, "from 1 to 500"),
    ({"count": 501}, "from 1 to 500"),
    ({"count": 3, "prefix": "Seat 1"}, "seat prefix"),
    ({"count": 3, "instructor": "seat-02"}, "also a participant"),
    ({"count": 3, "instructor": "x"}, "instructor's seat name"),
])
def test_bad_requests_are_plain_errors(tmp_path, kwargs, message):
    with pytest.raises(CardError, match=message):
        cards.make_cards(folder=tmp_path / "room", **kwargs)
    assert not (tmp_path / "room").exists()


@pytest.fixture(scope="module")
def forty(tmp_path_factory):
    return cards.make_cards(40, tmp_path_factory.mktemp("forty") / "room")


def test_forty_seats_number_with_two_digits(forty):
    made = forty
    names = [s.name for s in made.seats]
    assert names[0] == "seat-01" and names[39] == "seat-40" and names[40] == "instructor"
    assert len(codes_on_page(made.cards_page.read_text())) == 41


@pytest.mark.parametrize("content, message", [
    (None, "no seat file"),
    ("{not json", "cannot be read"),
    (json.dumps({"format": "other"}), "not a seat file"),
    ("DUPLICATE", "twice"),
    ("EMPTY", "no seats"),
    ("DAMAGED", "damaged seat entry"),
    ("NO_KDF", "no usable code hash"),
])
def test_a_bad_seat_file_is_named_with_the_fix(card_set, tmp_path, content, message):
    made, _ = card_set
    book = json.loads(made.seats_file.read_text())
    if content == "DUPLICATE":
        book["seats"].append(book["seats"][0])
    elif content == "EMPTY":
        book["seats"] = []
    elif content == "DAMAGED":
        book["seats"][1]["hash"] = "not hex"
    elif content == "NO_KDF":
        book["kdf"] = {"name": "md5"}
    bad = tmp_path / "bad" / "seats.json"
    bad.parent.mkdir()
    if content is not None:
        bad.write_text(content if not content.isupper() else json.dumps(book))
    with pytest.raises(CardError, match=message) as caught:
        SeatBook.load(bad)
    assert str(bad) in str(caught.value) and "hello-dl room cards" in str(caught.value)


def test_a_seat_file_others_can_read_is_noticed(card_set):
    made, _ = card_set
    assert not SeatBook.load(made.seats_file).readable_by_others
    made.seats_file.chmod(0o644)
    assert SeatBook.load(made.seats_file).readable_by_others


def test_the_command_line(tmp_path, capsys):
    folder = tmp_path / "cards"
    assert main(["room", "cards", "--seats", "2", "--folder", str(folder), "--url", "http://127.0.0.1:8000"]) == 0
    out = capsys.readouterr().out
    assert "2 seat card(s)" in out and str(folder / "cards.html") in out and str(folder / "seats.json") in out
    assert main(["room", "cards", "--seats", "2", "--folder", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hello-dl: ") and "--force" in err and "Traceback" not in err
    assert main(["room", "cards", "--seats", "4", "--folder", str(folder), "--force"]) == 0
    assert len(SeatBook.load(folder / "seats.json").names) == 5
    assert main(["room", "plan", "--seats", "6"]) == 0
    assert "7 container(s)" in capsys.readouterr().out


@pytest.mark.skipif(not (shutil.which("chromium") or shutil.which("chromium-browser")),
                    reason="Debian's chromium is not installed (.ci/run installs it); the print layout is checked with it")
def test_the_page_prints_eight_cards_to_a_sheet(forty, tmp_path):
    made = forty
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    pdf = tmp_path / "cards.pdf"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-pdf-header-footer",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--print-to-pdf={pdf}",
                    made.cards_page.as_uri()], check=True, capture_output=True, timeout=120)
    pages = len(re.findall(rb"/Type\s*/Page(?!s)", pdf.read_bytes()))
    assert pages == 6  # 41 cards, 8 per sheet


def test_the_seat_number_deals_the_same_group_as_the_card_shows(forty):
    from hello_dl import groups

    for seat in forty.seats:
        participant = cards.participant_of(seat.name)
        if seat.role == "participant":
            assert participant == str(seat.number)
            assert groups.assign_group(participant) == seat.group  # what the hub passes = what the card says
        else:
            assert participant == seat.name and seat.group is None
