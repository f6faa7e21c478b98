"""The instructor's reference runs: every conference experiment group trained once, headless.

Notebook 05 shows each participant's curves beside these (Wiggins et al. 2021: the room compares
augmentation on/off × dropout on/off). The instructor makes them the night before with
``hello-dl reference --profile conference``; they live in
``<output_dir>/reference/<profile>/<group>/<run folder>/``, one new run folder per call, and the
newest of each group is the one shown. Only a run's history is needed, so an instructor can hand
out the small ``history.json`` files without the models.

They are also the **catch-up runs**: a participant who skipped notebook 04, or whose laptop is
still training, continues with 05-07 on the reference run of their own group
(:func:`catch_up_run`, called by :meth:`hello_dl.lesson.Lesson.run`), found in the outputs folder
or in the kit's own ``reference-runs/`` folder (what a Docker image or a room copy ships, read
only), and labelled "not your own run" wherever it is shown.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Sequence

from hello_dl import groups, plots, runs
from hello_dl.settings import Settings, project_root
from hello_dl.train import train

REFERENCE_FOLDER = "reference"
COMPARISON_FIGURE = "comparison.png"
#: The kit's own copy of reference runs (``<kit>/reference-runs/<profile>/<group>/<run>/``): shipped in
#: a Docker image or copied into the room, read only; the outputs folder's runs come first.
SHIPPED_FOLDER = "reference-runs"
#: What notebook 05 tells the instructor to run when reference curves are missing.
COMMAND = "hello-dl reference"


def reference_dir(settings: Settings, group: str | None = None) -> Path:
    """``<output_dir>/reference/<profile>[/<group>]``: where the instructor's runs of each group live."""
    folder = Path(settings.output_dir) / REFERENCE_FOLDER / settings.profile
    return folder / group if group else folder


def reference_group_settings(settings: Settings, group: str) -> Settings:
    """``settings`` turned into one experiment group's recipe, writing into that group's reference folder."""
    name = groups.normalise_group(group)
    return settings.replace(experiment_group=name, participant="", output_dir=reference_dir(settings, name))


def reference_runs(settings: Settings) -> dict[str, Path]:
    """The newest reference run of each group made with this profile (groups without one are left out).

    The outputs folder's runs come first; the kit's shipped copy (:data:`SHIPPED_FOLDER`) fills the gaps.
    """
    found = {}
    for group in groups.GROUPS:
        for folder in catch_up_folders(settings, group):
            candidates = sorted(run for run in folder.iterdir() if runs.has_history(run)) if folder.is_dir() else []
            if candidates:
                found[group] = candidates[-1]  # run folders start with their date and time
                break
    return found


def catch_up_folders(settings: Settings, group: str) -> list[Path]:
    """Where a group's catch-up runs may be: the outputs folder's reference runs, then the kit's shipped copy."""
    name = groups.normalise_group(group)
    return [reference_dir(settings, name), project_root() / SHIPPED_FOLDER / settings.profile / name]


def catch_up_run(settings: Settings, group: str) -> Path | None:
    """The newest finished reference run of ``group`` (this profile) to continue with, or None."""
    for folder in catch_up_folders(settings, group):
        finished = sorted(run for run in folder.iterdir() if run.is_dir() and runs.is_finished(run)) \
            if folder.is_dir() else []
        if finished:
            return finished[-1]  # run folders start with their date and time
    return None


def is_reference_run(folder: str | Path, settings: Settings) -> bool:
    """True for a folder inside the reference runs (outputs or shipped): not a participant's own run."""
    folder = Path(folder).resolve()
    roots = [Path(settings.output_dir) / REFERENCE_FOLDER, project_root() / SHIPPED_FOLDER]
    return any(folder.is_relative_to(root.resolve()) for root in roots)


def reference_status(settings: Settings) -> str:
    """One plain sentence for notebook 05: which reference curves exist, or how to make them."""
    found = reference_runs(settings)
    if len(found) == len(groups.GROUPS):
        return f"Reference curves of all four groups ({settings.profile} profile) are shown beside yours."
    how = (f"The instructor makes them before the session with `.venv/bin/{COMMAND} --profile {settings.profile}` "
           "(see notebooks/INSTRUCTOR_GUIDE.md); they appear here on the next run of this notebook.")
    if not found:
        return f"No reference curves of the other groups exist yet for the {settings.profile} profile. {how}"
    missing = ", ".join(g for g in groups.GROUPS if g not in found)
    return f"Reference curves exist for {', '.join(found)}; missing: {missing}. {how}"


def curves_to_compare(run: runs.Run) -> dict[str, dict[str, list]]:
    """Your run's history beside the instructor's reference runs, labelled for ``plots.plot_group_comparison``."""
    group = run.settings.experiment_group
    catch_up = is_reference_run(run.folder, run.settings)
    if catch_up:  # the catch-up run is itself one of the references: shown once, under its true name
        curves = {f"group {group} (reference; not your own run)": run.history}
    else:
        curves = {f"your run ({group})" if group else "your run": run.history}
    for name, folder in reference_runs(run.settings).items():
        if not (catch_up and name == group):
            curves[f"group {name} (reference)"] = runs.load_history(folder)
    return curves


def train_reference_groups(settings: Settings, chosen: Sequence[str] | None = None, *,
                           echo: Callable[[str], None] = print, verbose: int = 2) -> dict[str, Path]:
    """Train every experiment group (or the ``chosen`` ones) with ``settings``' profile; return group → run folder.

    Each group's run goes to :func:`reference_dir` (one new run folder per call, nothing
    overwritten). A comparison figure of all groups with a run is written to
    ``reference_dir(settings)/comparison.png``.
    """
    names = [groups.normalise_group(g) for g in (chosen or groups.GROUPS)]
    made: dict[str, Path] = {}
    started = time.monotonic()
    for number, group in enumerate(names, start=1):
        echo(f"[{number}/{len(names)}] {groups.describe_group(group)} (elapsed {time.monotonic() - started:.0f} s)")
        result = train(reference_group_settings(settings, group), verbose=verbose)
        made[group] = result.run_dir
        echo(f"[{number}/{len(names)}] group {group} done in {result.metrics['timings']['total_seconds']:.0f} s: "
             f"validation accuracy {result.metrics['val_accuracy']:.0%}, run folder {result.run_dir}")
    every = reference_runs(settings)
    if every:
        plots.plot_group_comparison({f"group {g}": runs.load_history(path) for g, path in every.items()},
                                    title=f"Experiment groups, {settings.profile} profile",
                                    save_path=reference_dir(settings) / COMPARISON_FIGURE)
    echo(f"Reference curves for {', '.join(names)} made in {(time.monotonic() - started) / 60:.1f} min "
         f"in {reference_dir(settings)}")
    return made


__all__ = [
    "COMMAND", "COMPARISON_FIGURE", "REFERENCE_FOLDER", "SHIPPED_FOLDER", "catch_up_folders", "catch_up_run",
    "curves_to_compare", "is_reference_run", "reference_dir",
    "reference_group_settings", "reference_runs", "reference_status", "train_reference_groups",
]
