"""The ready cells of the lessons' experiments: the threshold slider (06) and the padding retrain (07)."""

from __future__ import annotations

import dataclasses
import shutil

import pytest
from matplotlib.figure import Figure

from hello_dl import evaluate, interactive, runs
from hello_dl.errors import HelloDLError
from hello_dl.settings import load_settings


def test_threshold_explorer_without_a_notebook_is_the_picture_at_the_chosen_threshold():
    settings = load_settings("smoke", environ={})
    validation = evaluate.score([0, 0, 0, 1, 1, 1], [0.1, 0.6, 0.2, 0.9, 0.4, 0.8], settings)
    assert not interactive.widgets_available()  # plain Python: no kernel, so no slider
    figure = interactive.threshold_explorer(validation, 0.7)
    assert isinstance(figure, Figure)
    axis = figure.axes[0]
    assert any(list(line.get_xdata()) == [0.7, 0.7] for line in axis.lines)
    assert "sensitivity (abdomen) 2/3" in figure.get_supxlabel()  # 0.9 and 0.8 pass 0.7, 0.4 does not
    default = interactive.threshold_explorer(validation)
    assert any(list(line.get_xdata()) == [0.5, 0.5] for line in default.axes[0].lines)


@pytest.mark.slow
def test_padding_experiment_left_off_trains_nothing(smoke_run, tmp_path):
    folder = tmp_path / "outputs"
    shutil.copytree(smoke_run.run_dir, folder / smoke_run.run_dir.name)
    settings = smoke_run.settings.replace(output_dir=str(folder))
    run = runs.latest(settings)
    comparison = interactive.padding_experiment(run, retrain=False)
    assert comparison.padded is None and "Nothing was trained" in comparison.format()
    assert runs.list_runs(settings) == [run.folder]  # no new run
    assert isinstance(comparison.plot(), Figure)


@pytest.mark.slow  # one real smoke training run (one epoch per phase)
def test_padding_experiment_retrains_padded_and_compares_both(smoke_run, tmp_path):
    folder = tmp_path / "outputs"
    shutil.copytree(smoke_run.run_dir, folder / smoke_run.run_dir.name)
    settings = smoke_run.settings.replace(output_dir=str(folder))
    run = runs.latest(settings)
    # The padded run retrains the stretched run's recipe. Nothing below depends on how long it trains,
    # so the stretched run's settings ask for one fine-tuning epoch instead of the shared run's seven
    # (everything else, the warm-up epoch included, is the run's own).
    run = dataclasses.replace(run, settings=run.settings.replace(finetune_epochs=1))
    comparison = interactive.padding_experiment(run, retrain=True, verbose=0)
    assert comparison.trained_now and comparison.padded.settings.keep_aspect_ratio
    assert not run.settings.keep_aspect_ratio and comparison.padded.folder != run.folder
    # The same recipe as the stretched run, only padded.
    assert comparison.padded.settings.replace(keep_aspect_ratio=False).knobs() == run.settings.knobs()
    text = comparison.format()
    assert "Trained now" in text and "stretched: validation set" in text and "padded: TEST set" in text
    rows = [t.get_text() for t in comparison.plot().axes[0].get_yticklabels()]
    assert rows == ["stretched: validation (10 images)", "stretched: TEST (2 images)",
                    "padded: validation (10 images)", "padded: TEST (2 images)"]
    # Next time, left at False, the earlier padded run is found and shown.
    again = interactive.padding_experiment(run, retrain=False)
    assert again.padded.folder == comparison.padded.folder and "An earlier padded run" in again.format()
    with pytest.raises(HelloDLError, match="already padded"):
        interactive.padding_experiment(comparison.padded)
