#!/usr/bin/env python
"""Rehearse the 45-minute session: play a participant through notebooks 00 → 07 and time it.

Not a test: a measurement to run when the machine is quiet (it records the load average). It

1. makes the instructor's reference run for the participant's group (the night before; not part
   of the session's time, but what the catch-up path needs),
2. plays a participant (seat 1, group 1A) through every notebook headless, each in its own fresh
   kernel, as `hello-dl run` does, and times each notebook's cells (compute);
   with ``--catch-up`` it plays the participant of a slow laptop: notebook 04's training runs in
   the background while they go on with 05-07 on the catch-up run, as the instructor guide says;
3. estimates each notebook's reading time from its words (READING_WORDS_PER_MINUTE) plus a few
   seconds per code cell to click, run and look at the result (SECONDS_PER_CELL),
4. prints a table against the instructor guide's timeline and the notebooks' "Time:" lines, with
   the session's total on this CPU (measured) and on a GPU (an estimate: no GPU here), and writes
   it as JSON into benchmarks/results/.

    .venv/bin/python benchmarks/rehearsal.py [--profile conference] [--catch-up] [--quick]
                                             [--work DIR [--reference-only]]

``--quick`` uses the smoke profile: the table's shape, not its numbers. ``--work DIR`` keeps the
rehearsal's folder (default: a new temporary one); a reference run already in it is reused, so the
night before (``--reference-only``, alongside other work) and the timed session (alone, on a quiet
machine) can be run apart.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import machine  # noqa: E402 - benchmarks/machine.py, beside this script

from hello_dl import lesson, reference, runner  # noqa: E402
from hello_dl.settings import load_settings  # noqa: E402

#: Reading speed for this audience (physicians reading plain-language explanations of new, technical
#: matter): 200 words a minute, below the ~240 words a minute adults read non-fiction silently
#: (Brysbaert 2019, https://doi.org/10.1016/j.jml.2019.104047).
READING_WORDS_PER_MINUTE = 200
#: Per code cell: find it, press Shift+Enter, look at what it shows.
SECONDS_PER_CELL = 10
#: GPU estimate (no GPU here): training takes this long (the guide's "about a minute"), and the rest
#: of a notebook's compute shrinks by this factor, except starting the kernel and TensorFlow.
GPU_TRAINING_SECONDS = 60
GPU_SPEED_UP = 5
KERNEL_START_SECONDS = 12
GUIDE = ROOT / "notebooks" / "INSTRUCTOR_GUIDE.md"
SEAT = "1"  # group 1A
SESSION_MINUTES = 45


def words(text: str) -> int:
    text = re.sub(r"\]\([^)]*\)", "]", text)  # link targets are not read
    text = re.sub(r"<[^>]+>", " ", text)
    return len(re.findall(r"[A-Za-z0-9][A-Za-z0-9'’.-]*", text))


#: Read in the session? Not the troubleshooting notes (read when something goes wrong), not the
#: folded answers (discussed at the end), not a section marked "(after the session)", not badges.
SKIPPED_SECTIONS = re.compile(r"^#{1,3} (Troubleshooting|.*\(after the session\))", re.MULTILINE)
FOLDED = re.compile(r"<details>.*?</details>", re.DOTALL)
BADGES = re.compile(r"^\[!\[Open In Colab\].*$", re.MULTILINE)


def session_cells(notebook) -> list:
    """The cells a participant reads or runs during the session (the install cell does nothing off the cloud)."""
    out, skipping = [], False
    for cell in notebook.cells:
        heading = re.search(r"^#{1,3} .+$", cell.source, re.MULTILINE) if cell.cell_type == "markdown" else None
        if heading:
            skipping = bool(SKIPPED_SECTIONS.match(heading.group(0)))
        if not skipping and cell.get("id") != "cloud-install":
            out.append(cell)
    return out


def reading_minutes(path: Path) -> tuple[float, int, int]:
    """(minutes to read and click through, words read, code cells run) of a notebook in the session.

    In 04 only what comes before training starts: the rest is read while it trains, during the
    talk block about the same things (the guide's timeline).
    """
    chosen = session_cells(nbformat.read(path, as_version=4))
    starts = [i for i, cell in enumerate(chosen) if cell.cell_type == "code" and "train.train(" in cell.source]
    chosen = chosen[:starts[0] + 1] if starts else chosen
    counted = sum(words(BADGES.sub("", FOLDED.sub("", cell.source))) for cell in chosen if cell.cell_type == "markdown")
    cells = sum(1 for cell in chosen if cell.cell_type == "code")
    return counted / READING_WORDS_PER_MINUTE + cells * SECONDS_PER_CELL / 60, counted, cells


def header_minutes(path: Path) -> float | None:
    """The "**Time:** about N minutes" of the notebook's first cell (the first number)."""
    first = nbformat.read(path, as_version=4).cells[0].source
    found = re.search(r"\*\*Time:\*\* about (\d+)", first)
    return float(found.group(1)) if found else None


def guide_timeline(text: str) -> list[dict]:
    """The rows of the guide's session table: start, end, mode, notebooks."""
    rows = []
    for line in text.splitlines():
        match = re.match(r"^\| (\d+)-(\d+) \| ([^|]+)\|([^|]*)\|([^|]*)\|", line)
        if match:
            rows.append({"start": int(match[1]), "end": int(match[2]), "mode": match[3].strip(),
                         "notebooks": re.findall(r"`(\d\d)`", match[5]) if "projector" not in match[5] else []})
    return rows


def guide_hands_on(rows: list[dict]) -> dict[str, float]:
    """Minutes of hands-on time the guide gives each notebook (shared rows split evenly)."""
    out: dict[str, float] = {}
    for row in rows:
        if row["mode"].startswith("hands-on") and row["notebooks"]:
            for number in row["notebooks"]:
                out[number] = out.get(number, 0) + (row["end"] - row["start"]) / len(row["notebooks"])
    return out


def talk_minutes(rows: list[dict]) -> float:
    total = 0.0
    for row in rows:
        found = re.search(r"talk \((\d+) min\)", row["mode"])
        if found:
            total += float(found.group(1))
    return total


def play(settings, notebooks: list[Path], folder: Path, catch_up: bool, echo) -> dict[str, float]:
    """Run the notebooks headless as the participant; return notebook → seconds of compute."""
    env = runner.kernel_environment(settings)
    seconds: dict[str, float] = {}
    background: dict[str, threading.Thread] = {}

    def run(path: Path) -> None:
        _, result = runner.run_notebook(path, folder / path.name, env, echo=lambda line: None,
                                        kernel_log=folder / "logs" / f"{path.stem}.log")
        if not result.ok:
            raise SystemExit(f"{path.name} failed: {result.error}")
        seconds[path.stem[:2]] = result.seconds
        echo(f"  {path.name}: {result.seconds:.0f} s of compute")

    for path in notebooks:
        if catch_up and path.stem.startswith("04"):
            thread = threading.Thread(target=run, args=(path,), daemon=True)
            thread.start()  # the participant starts training, then goes on with 05
            background["04"] = thread
            time.sleep(5)
            continue
        run(path)
    for thread in background.values():
        thread.join()
    return seconds


def gpu_estimate(number: str, cpu_seconds: float, trains: bool) -> float:
    if trains:
        return GPU_TRAINING_SECONDS + KERNEL_START_SECONDS
    return KERNEL_START_SECONDS + max(0.0, cpu_seconds - KERNEL_START_SECONDS) / GPU_SPEED_UP


#: The first line of the printed table (the README carries the table under this line).
TABLE_HEADER = ("| notebook | compute here (measured) | reading + clicking (est.) | hands-on here | GPU hands-on (est.) "
                "| header \"Time:\" | guide's hands-on slot |")


def table(notebooks, compute, reading, headers, slots, catch_up: bool, talk_after_04: float) -> tuple[list[str], dict]:
    lines = [TABLE_HEADER, "| --- | --- | --- | --- | --- | --- | --- |"]
    totals = {"cpu": 0.0, "gpu": 0.0}
    for path in notebooks:
        number = path.stem[:2]
        trains = number == "04"
        cpu = compute[number] / 60
        # Training runs while the instructor talks (the guide's talk block after 04): a participant waits
        # only for what is left after it; with the catch-up path not at all.
        waited = cpu if not trains else (0.0 if catch_up else max(0.0, cpu - talk_after_04))
        here = reading[number] + waited
        gpu_compute = gpu_estimate(number, compute[number], trains) / 60
        gpu = reading[number] + (max(0.0, gpu_compute - talk_after_04) if trains else gpu_compute)
        totals["cpu"] += here
        totals["gpu"] += gpu
        slot = slots.get(number)
        lines.append(f"| `{path.stem}` | {compute[number]:.0f} s{' (in the background)' if trains and catch_up else ''} "
                     f"| {reading[number]:.1f} min | {here:.1f} min | {gpu:.1f} min | "
                     f"{headers[number]:.0f} min | {slot:.1f} min |" if slot is not None else
                     f"| `{path.stem}` | {compute[number]:.0f} s | {reading[number]:.1f} min | {here:.1f} min | "
                     f"{gpu:.1f} min | {headers[number]:.0f} min | none |")
    return lines, totals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="conference")
    parser.add_argument("--catch-up", action="store_true", help="04 trains in the background while 05-07 run")
    parser.add_argument("--quick", action="store_true", help="smoke profile: checks the script, not the session")
    parser.add_argument("--data-source", default=None, help="the dataset (default: HELLO_DL_DATA_SOURCE)")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--work", type=Path, default=None,
                        help="the rehearsal's folder, kept (default: a new temporary folder); its reference run is reused")
    parser.add_argument("--reference-only", action="store_true",
                        help="make the night before's reference run into --work, then stop")
    args = parser.parse_args(argv)
    if args.reference_only and args.work is None:
        parser.error("--reference-only needs --work DIR (where the timed rehearsal then finds the run)")
    profile = "smoke" if args.quick else args.profile
    work = args.work.resolve() if args.work else Path(tempfile.mkdtemp(prefix="rehearsal-"))
    played_before = work / "played"
    if played_before.exists():
        parser.error(f"{work} holds an earlier rehearsal (played/): give a new --work folder, or remove that one")
    overrides = {"output_dir": str(work / "outputs"), "data_dir": str(work / "data")}
    if args.data_source:
        overrides["data_source"] = args.data_source
    base = load_settings(profile, **overrides, **({} if args.quick else {"weights": "none"}))
    participant = base.replace(participant=SEAT)
    group = participant.experiment_group
    print(f"Rehearsal, {profile} profile, seat {SEAT} (group {group}), in {work}")

    from hello_dl import fetch

    fetch.fetch_data(base)
    made = reference.catch_up_run(base, group)
    if made is None:
        print(f"The night before: the instructor's reference run for group {group} (the catch-up run) ...")
        made = reference.train_reference_groups(base, [group], echo=lambda line: None, verbose=0)[group]
    else:
        print(f"The night before: the instructor's reference run for group {group} is there already (reused).")
    night_before = json.loads((made / "metrics.json").read_text())["timings"]["total_seconds"]
    print(f"  made in {night_before:.0f} s: {made.name}")
    if args.reference_only:
        return 0

    started = datetime.now()
    load_before = machine.load_average()
    print(f"Load average before the session: {load_before}")

    notebooks = runner.notebook_paths(ROOT / "notebooks")
    folder = work / "played"
    folder.mkdir()
    print("The session: the participant runs every notebook" + (" (04 trains in the background)" if args.catch_up
                                                                 else "") + " ...")
    compute = play(participant, notebooks, folder, args.catch_up, print)
    load_after = machine.load_average()

    executed_04 = nbformat.read(folder / notebooks[4].name, as_version=4)
    estimate_text = "".join(o.get("text", "") for c in executed_04.cells if c.get("id") == "plan"
                            for o in c.get("outputs", []))
    estimate = re.search(r"takes about (under a minute|\d+ minutes?)", estimate_text)

    reading, counted = {}, {}
    for path in notebooks:
        minutes, number_of_words, cells = reading_minutes(path)
        reading[path.stem[:2]], counted[path.stem[:2]] = minutes, (number_of_words, cells)
    headers = {path.stem[:2]: header_minutes(path) or 0.0 for path in notebooks}
    rows = guide_timeline(GUIDE.read_text(encoding="utf-8"))
    slots, talk = guide_hands_on(rows), talk_minutes(rows)
    start_04 = next(i for i, row in enumerate(rows) if row["notebooks"] == ["04"])
    talk_after_04 = rows[start_04 + 1]["end"] - rows[start_04 + 1]["start"]
    lines, totals = table(notebooks, compute, reading, headers, slots, args.catch_up, talk_after_04)
    cpu_total, gpu_total = totals["cpu"] + talk, totals["gpu"] + talk
    where = machine.one_line(machine.describe())
    print()
    print(f"Measured {started:%Y-%m-%d %H:%M} on {where}; load average {load_before} before, {load_after} after; "
          f"{profile} profile{' with weights none (speed does not depend on the weights)' if not args.quick else ''}.")
    print(f"Reading speed {READING_WORDS_PER_MINUTE} words a minute plus {SECONDS_PER_CELL} s per code cell.")
    print()
    print("\n".join(lines))
    print()
    print(f"Talk blocks (the guide): {talk:.0f} min. Session total: {cpu_total:.1f} min on this CPU"
          f"{' with the catch-up path' if args.catch_up else ''} (measured compute), {gpu_total:.1f} min on a GPU "
          f"(an estimate: training {GPU_TRAINING_SECONDS} s, other compute / {GPU_SPEED_UP}); the session has "
          f"{SESSION_MINUTES} min.")
    print(f"Header times add up to {sum(headers.values()):.0f} min of hands-on; the guide gives "
          f"{sum(slots.values()):.0f} min hands-on + {talk:.0f} min talk = {sum(slots.values()) + talk:.0f} min.")
    if estimate:
        print(f"Notebook 04 said before training: {estimate.group(0)}; its notebook took {compute['04']:.0f} s "
              f"({compute['04'] / 60:.1f} min), training slot {lesson.TRAINING_SLOT_MINUTES:.0f} min.")
    document = {"date": started.isoformat(timespec="minutes"), "machine": where, "profile": profile,
                "catch_up": args.catch_up, "load_before": load_before, "load_after": load_after,
                "reading_words_per_minute": READING_WORDS_PER_MINUTE, "seconds_per_cell": SECONDS_PER_CELL,
                "compute_seconds": compute, "reading_minutes": reading, "words_and_cells": counted,
                "header_minutes": headers, "guide_hands_on_minutes": slots, "talk_minutes": talk,
                "session_minutes_cpu": cpu_total, "session_minutes_gpu_estimate": gpu_total,
                "reference_run_seconds": night_before, "estimate_04": estimate.group(0) if estimate else None,
                "table": lines}
    args.results.mkdir(parents=True, exist_ok=True)
    out = args.results / f"rehearsal-{started:%Y%m%d-%H%M%S}{'-quick' if args.quick else ''}.json"
    out.write_text(json.dumps(document, indent=2) + "\n")
    print(f"Written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
