"""Conference experiment groups (Wiggins et al. 2021), assigned reproducibly.

Each participant lands in one of four groups: 1 or 2 decides augmentation (on/off),
A or B decides dropout (on/off). The instructor never has to edit code: participants set
``HELLO_DL_PARTICIPANT`` (or ``participant=...``) and always get the same group on any machine.

* A **number** (seat or badge number) deals the groups out in turn: 1 → 1A, 2 → 1B, 3 → 2A,
  4 → 2B, 5 → 1A, ... so a room numbered 1..N gets four groups of equal size (±1).
* A **name** goes through a hash: reproducible, and roughly balanced over many people.
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


def group_settings(group: str) -> dict[str, object]:
    """The knobs a group changes."""
    name = normalise_group(group)
    return {"augment": name[0] == "1", "dropout": 0.5 if name[1] == "A" else 0.0}


def describe_group(group: str) -> str:
    name = normalise_group(group)
    return f"Group {name}: {GROUP_MEANING[name[0]]}, {GROUP_MEANING[name[1]]}."
