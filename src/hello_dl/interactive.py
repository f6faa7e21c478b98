"""Try it without writing code: the ready cells behind the lessons' "what if" experiments.

* :func:`threshold_explorer` (notebook 06) — move the decision threshold with a slider and watch
  which images change sides and what happens to sensitivity and specificity. The picture at the
  starting threshold is always drawn as an ordinary figure, so a headless run (``hello-dl run``,
  CI) still shows and saves it; the slider appears only where ipywidgets and a live notebook are.
* :func:`padding_experiment` (notebook 07) — one word, ``True``, retrains with
  ``keep_aspect_ratio=True`` (padding instead of stretching: the image-size shortcut gone) and
  compares the two runs, every number with its 95 % interval. Left at ``False`` (as in a
  headless run) nothing is trained: it says how to start it and shows an earlier padded run if
  there is one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hello_dl import evaluate, plots, runs, train
from hello_dl.errors import HelloDLError

#: The slider's range and step (a threshold of exactly 0 or 1 calls every image one class).
THRESHOLD_RANGE = (0.05, 0.95, 0.05)


def widgets_available() -> bool:
    """True inside a notebook kernel that has ipywidgets (the slider can work); False elsewhere."""
    try:
        import ipywidgets  # noqa: F401  (imported here: optional, and only a notebook needs it)
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def threshold_explorer(evaluation: evaluate.Evaluation, threshold: float | None = None) -> Any:
    """The images' scores against a threshold you choose, with sensitivity and specificity (and their intervals).

    ``threshold`` (default: the evaluation's own, the setting ``threshold``) is where the picture
    starts. Returns the figure (no widgets: the headless fallback) or, in a live notebook, the
    slider with its own picture, shown under the starting one.
    """
    start = evaluation if threshold is None else evaluation.at_threshold(float(threshold))
    figure = start.plot_threshold()
    if not widgets_available():
        return figure
    import ipywidgets as widgets  # here: optional, and only a notebook needs it
    from IPython.display import clear_output, display

    low, high, step = THRESHOLD_RANGE
    slider = widgets.FloatSlider(value=start.threshold, min=low, max=high, step=step, description="threshold",
                                 continuous_update=False, readout_format=".2f")
    picture = widgets.Output()

    def redraw(change: dict) -> None:
        with picture:
            clear_output(wait=True)
            display(evaluation.at_threshold(float(change["new"])).plot_threshold())

    slider.observe(redraw, names="value")
    display(figure)
    note = widgets.HTML(f"<b>Move the slider.</b> The picture above stays at {start.threshold:.2f}; the one below "
                        "follows the slider, so you can compare.")
    return widgets.VBox([note, slider, picture])


# --- the padding experiment -------------------------------------------------------------------------------
@dataclass
class PaddingComparison:
    """The stretched run and the padded one, each set's numbers side by side (or only the first, if not trained)."""

    stretched: runs.Run
    padded: runs.Run | None
    evaluations: dict[str, dict[str, evaluate.Evaluation]]  # "stretched"/"padded" → split → evaluation
    trained_now: bool

    def format(self) -> str:
        if self.padded is None:
            return ("Nothing was trained. To try it, change False to True in this cell and run it again: the kit "
                    "trains the same recipe with padding instead of stretching (as long as notebook 04 took), then "
                    "compares both runs here. There is no earlier padded run to show.")
        lines = [f"{'Trained now' if self.trained_now else 'An earlier padded run'}: {self.padded.name} (padded) "
                 f"beside {self.stretched.name} (stretched)."]
        for split in ("val", "test"):
            for kind in ("stretched", "padded"):
                if split in self.evaluations.get(kind, {}):
                    lines.append(f"  {kind:>9}: {self.evaluations[kind][split].headline()}")
        lines.append("Overlapping intervals mean these few images cannot tell the two apart; a padded model that "
                     "holds up did not need the size shortcut, but it may still use others (notebook 07's stress test).")
        return "\n".join(lines)

    def _repr_pretty_(self, printer, cycle) -> None:  # IPython shows format() as the cell's result
        printer.text(self.format())

    def plot(self, **kwargs: Any):
        """Both runs' numbers with their 95 % intervals in one figure (only the stretched run's if none is padded)."""
        rows: dict[str, dict[str, tuple[float, float, float]]] = {}
        for kind, sets in self.evaluations.items():
            for evaluation in sets.values():
                rows[f"{kind}: {evaluation.set_name} ({len(evaluation.files)} images)"] = evaluation.intervals()
        return plots.plot_metric_intervals(
            rows, title="Stretched to a square, or padded: each number with its 95 % interval", **kwargs)


def earlier_padded_run(run: runs.Run) -> runs.Run | None:
    """The newest finished padded run of the same recipe (profile and image size), if one exists.

    One of the same experiment group is preferred; any group will do (e.g. the instructor's own
    padded run, made the night before without a seat).
    """
    mine = run.settings
    candidates = []
    for folder in reversed(runs.list_runs(mine)):
        theirs = runs.run_settings(folder, mine)
        if Path(folder) != Path(run.folder) and theirs.keep_aspect_ratio and \
                (theirs.profile, theirs.image_size) == (mine.profile, mine.image_size):
            candidates.append((theirs.experiment_group != mine.experiment_group, folder))
    return runs.open_run(min(candidates, key=lambda pair: pair[0])[1], mine) if candidates else None


def padding_experiment(run: runs.Run, retrain: bool = False, *, verbose: int = 1) -> PaddingComparison:
    """Compare ``run`` (stretched to a square) with the same recipe padded (``keep_aspect_ratio=True``).

    ``retrain=True`` trains the padded run now (as long as notebook 04 took); ``False`` only looks
    for an earlier padded run of the same recipe. A run that is already padded is refused: the
    experiment starts from a stretched one.
    """
    if run.settings.keep_aspect_ratio:
        raise HelloDLError(f"The run {run.name} is already padded (keep_aspect_ratio=True). Start from a run trained "
                           "with stretching (the default), e.g. notebook 04 with the usual settings.")
    padded = None
    if retrain:
        result = train.train(run.settings.replace(keep_aspect_ratio=True), verbose=verbose)
        padded = runs.open_run(result.run_dir, run.settings)
    else:
        padded = earlier_padded_run(run)
    evaluations = {"stretched": evaluate.evaluate_sets(run.model, run.settings, splits=("val", "test"))}
    if padded is not None:
        evaluations["padded"] = evaluate.evaluate_sets(padded.model, padded.settings, splits=("val", "test"))
    return PaddingComparison(run, padded, evaluations, trained_now=retrain)


__all__ = ["PaddingComparison", "THRESHOLD_RANGE", "earlier_padded_run", "padding_experiment",
           "threshold_explorer", "widgets_available"]
