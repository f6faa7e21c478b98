"""The benchmark script: its building blocks on small real models, and a real ``--quick`` run.

The quick run executes every section of ``benchmarks/run.py`` at 75x75 with a few images and
epochs, each measurement in its own process, and checks the JSON it writes: every section present,
every timing and memory figure positive, ratios in a sane range. It keeps the script from rotting;
the numbers themselves are only meaningful in a full run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = PROJECT_ROOT / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import data_views  # noqa: E402
import flops  # noqa: E402
import machine  # noqa: E402
import report  # noqa: E402


# --- FLOP counting on small real models ------------------------------------------------------------------
def _small_convnet(nested: bool):
    import keras

    body = keras.Sequential([
        keras.Input((8, 8, 3)),
        keras.layers.Conv2D(4, 3, padding="same", use_bias=False, name="conv_a"),
        keras.layers.Conv2D(2, 3, padding="same", name="conv_b"),
    ], name="body")
    if nested:
        inputs = keras.Input((8, 8, 3))
        x = body(inputs)
    else:
        inputs, x = body.inputs[0], body.outputs[0]
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(1, name="head")(x)
    return keras.Model(inputs, outputs), body


# Forward FLOP per image: conv_a 2*64*(3*3*3)*4, conv_b 2*64*(3*3*4)*2, head 2*2*1.
CONV_A, CONV_B, HEAD = 2 * 64 * 27 * 4, 2 * 64 * 36 * 2, 2 * 2 * 1


@pytest.mark.parametrize("nested", [False, True])
def test_training_flops_follow_what_is_trainable(nested):
    model, body = _small_convnet(nested)
    everything = flops.training_flops(model)
    assert everything.forward == CONV_A + CONV_B + HEAD
    # Weight gradients everywhere; input gradients everywhere except the first layer (nothing below it).
    assert everything.backward == (CONV_A + CONV_B + HEAD) + (CONV_B + HEAD)
    assert everything.trainable_forward_share == 1.0

    body.get_layer("conv_a").trainable = False
    partly = flops.training_flops(model)
    # conv_b still learns (weight gradients) but needs no input gradient: conv_a below it is frozen.
    assert partly.backward == (CONV_B + HEAD) + HEAD

    body.trainable = False
    head_only = flops.training_flops(model)
    assert head_only.backward == HEAD
    assert head_only.train_step == CONV_A + CONV_B + 2 * HEAD


def test_reference_figure_scales_with_area():
    assert flops.reference_forward_gflop(299) == pytest.approx(11.4)
    assert flops.reference_forward_gflop(150) == pytest.approx(11.4 * (150 / 299) ** 2)


# --- the machine -------------------------------------------------------------------------------------------
def test_peak_estimate_is_the_product_it_states():
    host = machine.describe()
    assert host["cores"] >= 1 and host["clock_ghz"] > 0
    expected = host["cores"] * host["clock_ghz"] * host["fp32_flop_per_cycle_per_core"]
    assert host["fp32_peak_gflops"] == pytest.approx(expected, rel=1e-3)
    assert host["fp32_flop_per_cycle_per_core"] in (4, 8, 16, 32, 64)
    assert "GFLOP/s" in host["peak_formula"]
    assert machine.describe(fma_units=1)["fp32_peak_gflops"] * host["fma_units_per_core"] == pytest.approx(
        host["fp32_peak_gflops"], rel=1e-3)


# --- epoch clock on a real tiny fit -------------------------------------------------------------------------
def test_epoch_timer_separates_phases_and_first_epoch():
    import keras
    import numpy as np

    import timing

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy")
    x = np.random.default_rng(0).random((20, 4)).astype("float32")
    y = (x[:, :1] > 0.5).astype("float32")
    timer = timing.EpochTimer(images_per_epoch=20, phase_names=("warmup", "finetune"))
    model.fit(x, y, batch_size=5, epochs=3, validation_data=(x[:5], y[:5]), callbacks=[timer], verbose=0)
    model.fit(x, y, batch_size=5, initial_epoch=3, epochs=5, callbacks=[timer], verbose=0)

    summary = timing.summarize(timer)
    assert list(summary) == ["warmup", "finetune"]
    warmup, finetune = summary["warmup"], summary["finetune"]
    assert warmup["epochs"] == 3 and finetune["epochs"] == 2
    assert warmup["steps_per_epoch"] == 4
    for phase in (warmup, finetune):
        assert phase["steady_images_per_second"] > 0
        assert phase["steady_seconds_per_step"] > 0
    # With validation, the training part of an epoch is shorter than the whole epoch.
    assert all(t <= total for t, total in zip(warmup["epoch_train_seconds"], warmup["epoch_total_seconds"]))


# --- dataset views ---------------------------------------------------------------------------------------------
def test_views_link_subsets_and_repeats_without_touching_the_source(shared_dataset, tmp_path):
    before = sorted(p.relative_to(shared_dataset) for p in shared_dataset.rglob("*"))
    total = data_views.count_images(shared_dataset)
    assert total == 65

    repeated = data_views.make_view(shared_dataset, tmp_path / "x4", repeat=4)
    assert data_views.count_images(repeated) == 4 * total
    assert data_views.count_images(repeated, "VAL") == data_views.count_images(shared_dataset, "VAL")
    links = [p for p in (repeated / "TRAIN").rglob("*") if p.is_file()]
    assert all(p.is_symlink() and p.resolve().is_relative_to(shared_dataset.resolve()) for p in links)

    subset = data_views.make_view(shared_dataset, tmp_path / "small", train_per_class=3, val_per_class=1)
    assert data_views.count_images(subset) == 6 and data_views.count_images(subset, "VAL") == 2
    # Running it again changes nothing (idempotent), and the shared data is untouched.
    data_views.make_view(shared_dataset, tmp_path / "small", train_per_class=3, val_per_class=1)
    assert data_views.count_images(subset) == 6
    assert sorted(p.relative_to(shared_dataset) for p in shared_dataset.rglob("*")) == before


# --- the whole script, quickly --------------------------------------------------------------------------------
def _positive_numbers(tree, path=""):
    """Every int/float in ``tree`` with its path (booleans excluded)."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _positive_numbers(value, f"{path}.{key}")
    elif isinstance(tree, list):
        for index, value in enumerate(tree):
            yield from _positive_numbers(value, f"{path}[{index}]")
    elif isinstance(tree, (int, float)) and not isinstance(tree, bool):
        yield path, tree


@pytest.mark.slow
def test_quick_run_measures_every_section(shared_dataset, tmp_path):
    output = tmp_path / "quick.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELLO_DL_")}
    env["HELLO_DL_HOME"] = str(PROJECT_ROOT)
    completed = subprocess.run(
        [sys.executable, str(BENCHMARKS / "run.py"), "--quick", "--data-dir", str(shared_dataset),
         "--output", str(output)],
        capture_output=True, text=True, env=env, timeout=900)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    document = json.loads(output.read_text())
    assert output.with_suffix(".md").read_text().startswith("## Benchmark results (quick run")

    assert document["mode"] == "quick"
    assert set(document["sections"]) == set(report.SECTION_BUILDERS)
    assert all(job["ok"] for job in document["jobs"].values())
    for name, job in document["jobs"].items():
        assert job["wall_seconds"] > 0 and job["peak_rss_mb"] > 100, name  # TensorFlow alone is >100 MB

    s = document["sections"]
    for side in ("kit", "paper"):
        assert s["pipeline"][side]["steady_images_per_second"] > 0
        assert s["pipeline"][side]["images_per_epoch"] == 10  # the quick subset: 5 per class
    # Quick runs leave out the kit's paper profile (the same code as the conference run).
    assert s["training"]["phases"]["kit_paper_profile"] is None
    for name in ("kit_warmup", "kit_finetune", "paper"):
        phase = s["training"]["phases"][name]
        assert phase["steady_seconds_per_step"] > 0 and phase["steady_images_per_second"] > 0, name
        assert phase["steps_per_epoch"] == 2, name
    ratios = s["training"]["ratios"]
    for ratio in [ratios["kit_warmup_vs_paper_images_per_second"], ratios["kit_finetune_vs_paper_images_per_second"],
                  ratios["kit_conference_vs_paper_images_per_second"], s["pipeline"]["ratio_steady_images_per_second"],
                  s["end_to_end"]["ratio_conference_vs_paper_recipe"]]:
        assert ratio is not None and 0.01 < ratio < 100

    # Quick runs: the conference profile as group 1A and 2A with the feature cache, 1A without it.
    assert set(s["end_to_end"]["runs"]) == {"kit_conference", "kit_conference_group2", "kit_conference_uncached",
                                            "paper_recipe"}
    for name in ("kit_conference", "kit_conference_group2", "kit_conference_uncached"):
        result = document["jobs"][name]["result"]
        assert result["weights"] == "random file" and result["feature_cache"] is (name != "kit_conference_uncached")
    training = {(r["run"], r["phase"]): r["training"] for r in s["cache"]["phases"]}
    assert training == {
        ("kit_conference", 1): "fixed part every batch", ("kit_conference", 2): "fixed part every batch",
        ("kit_conference_group2", 1): "stored", ("kit_conference_group2", 2): "stored",
        ("kit_conference_uncached", 1): "whole network", ("kit_conference_uncached", 2): "whole network"}
    for row in s["cache"]["phases"]:
        assert row["phase_seconds"] > 0 and row["steady_images_per_second"] > 0, row
        assert (row["stored_seconds"] is None) is (row["run"] == "kit_conference_uncached"), row
        assert set(row["first_epoch_breakdown"]) == {"training_step_tracing", "validation_tracing",
                                                     "first_save_and_logs", "rest"}
    assert 0.01 < s["cache"]["ratios"]["kit_conference_wall_vs_uncached"] < 100
    assert set(s["memory"]) >= {"kit_conference", "kit_conference_group2", "kit_conference_uncached"}
    for row in s["memory"].values():
        assert row["peak_rss_mb"] > 100
    for run in s["end_to_end"]["runs"].values():
        # The run's wall time covers its stages (in quick mode it is timed inside the worker; rounding).
        assert run["wall_seconds"] + 0.01 >= sum(run["stage_seconds"].values()) > 0

    g = s["gflops"]
    assert g["estimated_peak_gflops"] > 0 and g["matmul_ceiling_gflops"] > 0
    counts = g["flop_counts"]
    # Frozen base: no backward through it; fine-tune from mixed9: some; all trainable: about 2x forward.
    assert counts["kit_warmup"]["backward_gflop_per_image"] < counts["kit_finetune"]["backward_gflop_per_image"]
    assert counts["kit_finetune"]["backward_gflop_per_image"] < counts["kit_all_trainable"]["backward_gflop_per_image"]
    assert 1.8 < counts["paper"]["backward_gflop_per_image"] / counts["paper"]["forward_gflop_per_image"] < 2.1
    assert set(g["runs"]) == {"kit_warmup", "kit_finetune", "paper"}
    for run in g["runs"].values():
        assert 0 < run["percent_of_estimated_peak"] < 100

    sizes = [p["image_size"] for p in s["scaling"]["image_size"]]
    counts_ = [p["train_images"] for p in s["scaling"]["train_images"]]
    assert sizes == [75, 99] and counts_ == [10, 20]
    for point in s["scaling"]["image_size"] + s["scaling"]["train_images"]:
        assert point["warmup_epoch_seconds"] > 0 and point["finetune_epoch_seconds"] > 0

    assert document["targets"]["applies"] is False  # targets are judged on full runs at 299 only
    # First-epoch overheads (and their parts) are differences of two timings: noise can make them negative.
    negative = [(p, v) for p, v in _positive_numbers(s) if v < 0 and "overhead" not in p and "breakdown" not in p]
    assert not negative
