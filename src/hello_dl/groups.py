"""Conference experiment groups (Wiggins et al. 2021), assigned reproducibly.

Each participant lands in one of four groups: 1 or 2 decides augmentation (on/off),
A or B decides dropout (on/off). The instructor never has to edit code: participants set
``HELLO_DL_PARTICIPANT`` (or ``participant=...``) and always get the same group on any machine.

* A **number** (seat or badge number) deals the groups out in turn: 1 → 1A, 2 → 1B, 3 → 2A,
  4 → 2B, 5 → 1A, ... so a room numbered 1..N gets four groups of equal size (±1).
* A **name** goes through a hash: reproducible, and roughly balanced over many people.

The seat also gives each participant a training seed of their own (:func:`seat_seed`), so the
members of a group train independent replicates of the same recipe instead of one identical run:
the room's board can then show how much runs of one recipe differ, beside how much the groups do.
"""

from __future__ import annotations

import hashlib

from hello_dl.errors import HelloDLError


class GroupError(HelloDLError, ValueError):
    """An experiment group name that is not one of the four."""

GROUPS = ("1A", "1B", "2A", "2B")

GROUP_MEANING = {
    "1": "augmentation ON",
    "2": "augmentation OFF",
    "A": "dropout ON (0.5)",
    "B": "dropout OFF",
}


def normalise_group(group: str) -> str:
    """Accept '1a', ' 2B ' and the like; refuse anything that is not one of the four groups."""
    name = str(group).strip().upper()
    if name not in GROUPS:
        raise GroupError(f"Experiment group {group!r} is not one of {', '.join(GROUPS)}: "
                         "use the group card you were given (for example 1A), or leave it empty.")
    return name


def assign_group(participant: str | int) -> str:
    """The same participant name or number always gives the same group."""
    text = str(participant).strip()
    if text.isdigit() and int(text) > 0:
        return GROUPS[(int(text) - 1) % len(GROUPS)]
    key = text.lower().encode("utf-8")
    digest = hashlib.sha256(key).digest()
    return GROUPS[digest[0] % len(GROUPS)]


def seat_key(participant: str | int) -> str:
    """A seat as one spelling: " 07" and 7 are seat 7, a name is compared in lower case."""
    text = str(participant).strip()
    return str(int(text)) if text.isdigit() else text.lower()


def seat_seed(participant: str | int, base_seed: int) -> int:
    """The training seed of one seat: the same for that seat on every machine, different between seats.

    Derived from ``base_seed`` (the profile's seed) and the seat by a hash, so seat 7 repeats its
    run exactly while seat 3, in the same group, trains an independent replicate.
    """
    key = f"hello-dl seat seed|{int(base_seed)}|{seat_key(participant)}"
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") % (2**31 - 1)  # TensorFlow and NumPy take any int32 >= 0


def group_settings(group: str) -> dict[str, object]:
    """The knobs a group changes."""
    name = normalise_group(group)
    return {"augment": name[0] == "1", "dropout": 0.5 if name[1] == "A" else 0.0}


def describe_group(group: str) -> str:
    name = normalise_group(group)
    return f"Group {name}: {GROUP_MEANING[name[0]]}, {GROUP_MEANING[name[1]]}."
