#!/usr/bin/env python
"""Train candidate from-scratch recipes (weights none) and measure what each one learned.

    .venv/bin/python benchmarks/from_scratch.py --recipe kit_today --recipe scratch_150
    .venv/bin/python benchmarks/from_scratch.py --recipe scratch_150 --set image_size=128 --set epochs=12
    .venv/bin/python benchmarks/from_scratch.py --list
    .venv/bin/python benchmarks/from_scratch.py --run outputs/20260101-093000_conference --output res.jsonl

``--run`` measures a finished run of the kit (e.g. of ``HELLO_DL_WEIGHTS=none make run``) instead of
training: its best model, with the training time from its own metrics.json.

For every recipe, in a fresh process of its own (one after another, never two at once), it prints:
validation accuracy with a 95 % Wilson interval (the 10 validation files as the kit counts them,
one of them a duplicate; the validation set also chose the best epoch, so it is not a test), the
TEST predictions, the stress test (flips per change on the 9 distinct validation + 2 TEST images,
:mod:`hello_dl.stress`), the accuracy on images made to look like other sources, and the training
time: wall seconds, CPU seconds of the process and the load average before and after (the
machine is shared; compare CPU seconds when it is busy).

``kit`` is the kit's own ``train()`` with the conference profile and no weights, as it is now (the
from-scratch recipe of :mod:`hello_dl.recipes`); ``kit_today`` is the same call with the knobs the
conference profile had before that switch (the baseline the issue measured: a frozen warm-up of
the random base at 299 px, then fine-tuning from ``mixed9`` up). The other recipes train every layer from the first epoch with the
kit's model and data functions, and the shortcut-removing layers of :mod:`hello_dl.augment` in
the training pipeline; validation is never augmented; early stopping on validation loss keeps the
best epoch.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

#: Shortcut-removing augmentation presets (probabilities per step; see hello_dl.augment).
SHORTCUTS = {
    "off": {"resolution": 0, "jpeg": 0, "window": 0, "grayscale": 0, "frame": 0, "border": 0, "marks": 0},
    "all": {},  # ShortcutAugmentation's defaults
}

#: Every knob of a candidate recipe, with the defaults a recipe changes.
DEFAULTS = {
    "image_size": 150, "batch_size": 8, "epochs": 25, "learning_rate": 1e-3, "bn_momentum": 0.9,
    "patience": 8, "start_from_epoch": 4, "kit_augment": True, "shortcuts": "all", "keep_aspect_ratio": False,
    "dropout": 0.5, "seed": 42, "frame_pad": None, "stress_train": False,
    "kit_set": "",  # kit recipes only: settings to override, "image_size:112,finetune_epochs:12"
}

#: The conference profile's knobs without weights before the from-scratch switch (kit_today).
BEFORE_THE_SWITCH = {
    "image_size": 299, "batch_size": 5, "warmup_epochs": 5, "finetune_epochs": 5, "fine_tune_from": "mixed9",
    "learning_rate": 1e-4, "finetune_learning_rate": 1e-5, "bn_momentum_from_scratch": 0.5,
    "early_stopping_patience": 0, "early_stopping_start_epoch": 0, "shortcut_augmentation": False,
    "normalize_each_image": False,
}

RECIPES: dict[str, dict] = {
    "kit": {"kit": True},
    "kit_today": {"kit": True, "before_the_switch": True},
    "scratch_150": {},
    "scratch_150_noshortcut": {"shortcuts": "off"},
    "scratch_150_noaug": {"shortcuts": "off", "kit_augment": False},
    # Sized for the conference profile's training time (the CPU seconds of kit_today).
    "s128_e16": {"image_size": 128, "epochs": 16},
    "s112_e20": {"image_size": 112, "epochs": 20},
    "s128_e16_b16": {"image_size": 128, "epochs": 16, "batch_size": 16},
}


# --- the parent: one process per recipe ---------------------------------------------------------------
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", action="append", help="a recipe name (repeatable; --list shows them)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="change one knob of every recipe, e.g. image_size=128 or shortcuts=frame:0.5,marks:0.3")
    parser.add_argument("--name", help="name this variant in the table (default: recipe + changes)")
    parser.add_argument("--data-dir", type=Path, default=None, help="the dataset (default HELLO_DL_DATA_SOURCE)")
    parser.add_argument("--output", type=Path, help="append the results as JSON lines to this file")
    parser.add_argument("--run", type=Path, help="measure this finished run folder of the kit instead of training")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--table", type=Path, help="print Markdown tables of the JSON lines in this file, then stop")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.table:
        print(tables([json.loads(line) for line in args.table.read_text().splitlines() if line.strip()]))
        return 0
    if args.list:
        for name, recipe in RECIPES.items():
            print(f"{name:<28} {json.dumps(recipe)}")
        print(f"\ndefaults: {json.dumps(DEFAULTS)}")
        return 0
    data_dir = (args.data_dir or Path(os.environ.get("HELLO_DL_DATA_SOURCE") or
                                      ROOT.parent / "shared" / "datasets" / "open_i_abd_vs_cxr")).resolve()
    changes = dict(parse_pair(pair) for pair in args.set)
    if args.worker:
        result = worker(json.loads(args.worker), data_dir)
        print("RESULT " + json.dumps(result))
        return 0
    if args.run:
        result = measure_run(args.run, data_dir, args.name)
        print(report(result))
        if args.output:
            with open(args.output, "a") as handle:
                handle.write(json.dumps(result) + "\n")
        return 0
    if not args.recipe:
        parser.error("name at least one --recipe (or --list)")
    exit_code = 0
    for name in args.recipe:
        if name not in RECIPES:
            parser.error(f"unknown recipe {name!r}; --list shows them")
        recipe = {**DEFAULTS, **RECIPES[name], **changes}
        recipe["name"] = args.name or (name + "".join(f" {k}={v}" for k, v in changes.items()))
        result = run_in_child(recipe, data_dir)
        if result is None:
            exit_code = 1
            continue
        print(report(result))
        if args.output:
            with open(args.output, "a") as handle:
                handle.write(json.dumps(result) + "\n")
    return exit_code


def parse_pair(text: str) -> tuple[str, object]:
    key, _, raw = text.partition("=")
    key = key.strip()
    if key not in DEFAULTS:
        raise SystemExit(f"unknown knob {key!r}; knobs: {', '.join(DEFAULTS)}")
    raw = raw.strip()
    if raw.lower() in {"true", "false"}:
        return key, raw.lower() == "true"
    for kind in (int, float):
        try:
            return key, kind(raw)
        except ValueError:
            pass
    return key, raw


def run_in_child(recipe: dict, data_dir: Path) -> dict | None:
    command = [sys.executable, str(Path(__file__).resolve()), "--data-dir", str(data_dir),
               "--worker", json.dumps(recipe)]
    print(f"=== {recipe['name']}", flush=True)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    process = subprocess.run(command, capture_output=True, text=True, env=env)
    lines = process.stdout.splitlines()
    for line in lines:
        if not line.startswith("RESULT "):
            print("  | " + line)
    results = [line[len("RESULT "):] for line in lines if line.startswith("RESULT ")]
    if process.returncode != 0 or not results:
        print(process.stderr[-4000:])
        print(f"!!! {recipe['name']} failed (exit code {process.returncode})")
        return None
    return json.loads(results[-1])


def report(result: dict) -> str:
    val = result["validation"]
    lines = [f"--- {result['name']}",
             f"validation accuracy {val['correct']}/{val['images']} = {val['accuracy']:.0%} "
             f"(95% CI {val['ci'][0]:.0%}-{val['ci'][1]:.0%}); distinct images {val['distinct_correct']}/"
             f"{val['distinct_images']}; AUC {val['auc']}; best epoch {result['best_epoch']} of {result['epochs_run']}",
             "TEST: " + ", ".join(f"{Path(f).name} {p:.3f}" for f, p in result["test"].items()),
             f"training {result['train_wall_s']:.0f} s wall, {result['train_cpu_s']:.0f} s CPU; load "
             f"{result['load_before']} -> {result['load_after']}"
             + (f"; process total {result['total_wall_s']:.0f} s" if "total_wall_s" in result else ""),
             result["stress_text"], result["sources_text"]]
    if result.get("stress_train_text"):
        lines.append("Same stress test on the training images (seen in training, in new formats):")
        lines.append(result["stress_train_text"])
        lines.append(result.get("sources_train_text", ""))
    return "\n".join(lines)


def tables(results: list[dict]) -> str:
    """Markdown: one row per recipe (validation, TEST, time, load), then flips and other sources."""
    def pct(part: dict, key: str = "accuracy") -> str:
        low, high = part.get("ci") or part.get("accuracy_95ci")
        return f"{part[key]:.0%} ({low:.0%}-{high:.0%})"

    rows = ["| recipe | val accuracy (95% CI), 10 files | TEST abd2 / chest2 score | best / run epochs | "
            "train wall s | train CPU s | load (1-min) before -> after |", "|---|---|---|---|---|---|---|"]
    for r in results:
        test = {Path(f).name: p for f, p in r["test"].items()}
        rows.append(f"| {r['name']} | {r['validation']['correct']}/{r['validation']['images']} = {pct(r['validation'])} | "
                    f"{test.get('abd2.png', float('nan')):.2f} / {test.get('chest2.png', float('nan')):.2f} | "
                    f"{r['best_epoch']} / {r['epochs_run']} | {r['train_wall_s']:.0f} | {r['train_cpu_s']:.0f} | "
                    f"{r['load_before'].split()[0]} -> {r['load_after'].split()[0]} |")
    out = ["\n".join(rows)]
    for key, title in (("stress", "flips per change, 11 distinct VAL + TEST images"),
                       ("stress_train", "flips per change, 65 training images")):
        chosen = [r for r in results if key in r]
        if not chosen:
            continue
        names = [c["name"] for c in chosen[0][key]["changes"]]
        head = ["| recipe (" + title + ") | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for r in chosen:
            cells = [f"{c['flips']}/{c['images']}" for c in r[key]["changes"]]
            head.append(f"| {r['name']} | " + " | ".join(cells) + " |")
        out.append("\n".join(head))
    for key, title in (("sources", "accuracy, 11 VAL + TEST images"), ("sources_train", "accuracy, 65 training images")):
        chosen = [r for r in results if key in r]
        if not chosen:
            continue
        names = list(dict.fromkeys(s["name"] for r in chosen for s in r[key]["sources"]))
        head = ["| recipe (" + title + ") | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for r in chosen:
            found = {s["name"]: f"{s['correct']}/{s['images']}" for s in r[key]["sources"]}
            head.append(f"| {r['name']} | " + " | ".join(found.get(name, "-") for name in names) + " |")
        out.append("\n".join(head))
    return "\n\n".join(out)


# --- the worker: one recipe in this process --------------------------------------------------------------
def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def shortcut_config(text: str, pad: bool):
    from hello_dl.augment import ShortcutAugmentation

    if text in SHORTCUTS:
        values = dict(SHORTCUTS[text])
    else:  # "frame:0.5,marks:0.3" → only those steps, at those rates; "all,jpeg:0" → the defaults but
        parts = [p.strip() for p in text.split(",") if p.strip()]
        values = {} if parts and parts[0] == "all" else {k: 0.0 for k in SHORTCUTS["off"]}
        for part in parts[1:] if parts and parts[0] == "all" else parts:
            key, _, rate = part.partition(":")
            values[key.strip()] = float(rate or 0.5)
    return ShortcutAugmentation(**values, pad=pad)


def worker(recipe: dict, data_dir: Path) -> dict:
    started_process = time.perf_counter()
    output_dir = Path(tempfile.mkdtemp(prefix="hello_dl_from_scratch_"))
    try:
        if recipe.get("kit"):
            result = _kit_today(recipe, data_dir, output_dir)
        else:
            result = _candidate(recipe, data_dir, output_dir)
    finally:
        shutil.rmtree(output_dir, ignore_errors=True)  # a saved model is ~90 MB
    result["total_wall_s"] = round(time.perf_counter() - started_process, 1)
    return result


def measure_run(folder: Path, data_dir: Path, name: str | None = None) -> dict:
    """The measurements of a finished kit run: its best model, its own training time and load."""
    from hello_dl import runs

    run = runs.open_run(folder)
    settings = run.settings.replace(data_dir=str(data_dir), data_source=str(data_dir))
    metrics = run.metrics
    timings = metrics.get("timings", {})
    fitting = sum(float(value) for key, value in timings.items() if key.startswith("phase"))
    recipe = {"name": name or f"kit run {Path(folder).name}", "stress_train": True, "run": str(folder),
              "settings": settings.knobs()}
    return _measure(run.model, settings, recipe, {
        "train_wall_s": round(fitting, 1), "train_cpu_s": float("nan"), "kit_total_s": timings.get("total_seconds"),
        "load_before": "see the quiet run's log", "load_after": "see the quiet run's log",
        "best_epoch": metrics.get("best_epoch"), "epochs_run": metrics.get("epochs_run"),
        "history": run.history, "recipe_line": settings.describe_recipe()})


def _settings(recipe: dict, data_dir: Path, output_dir: Path, **extra):
    from hello_dl.settings import load_settings

    return load_settings("conference", environ={}, weights="none", data_source=str(data_dir),
                         data_dir=str(data_dir), output_dir=str(output_dir), seed=int(recipe["seed"]), **extra)


def kit_overrides(text: str) -> dict:
    """``"image_size:112,finetune_epochs:12"`` → settings values (strings; the settings parse them)."""
    pairs = [part.partition(":") for part in text.split(",") if part.strip()]
    return {key.strip(): value.strip() for key, _, value in pairs}


def _kit_today(recipe: dict, data_dir: Path, output_dir: Path) -> dict:
    from hello_dl import train

    settings = _settings(recipe, data_dir, output_dir,
                         **(BEFORE_THE_SWITCH if recipe.get("before_the_switch") else {}),
                         **kit_overrides(str(recipe.get("kit_set") or "")))
    # Time only the fitting (both phases), as for the candidates: wrap the kit's phase function.
    clock = {"wall": 0.0, "cpu": 0.0}
    fit_phase = train._fit_phase

    def timed_phase(*args, **kwargs):
        cpu, wall = cpu_seconds(), time.perf_counter()
        try:
            return fit_phase(*args, **kwargs)
        finally:
            clock["cpu"] += cpu_seconds() - cpu
            clock["wall"] += time.perf_counter() - wall

    train._fit_phase = timed_phase
    load_before, wall_before = load_average(), time.perf_counter()
    outcome = train.train(settings, verbose=2)
    return _measure(outcome.model, settings, recipe, {
        "train_wall_s": round(clock["wall"], 1), "train_cpu_s": round(clock["cpu"], 1),
        "kit_total_s": round(time.perf_counter() - wall_before, 1), "load_before": load_before,
        "load_after": load_average(), "best_epoch": outcome.metrics["best_epoch"],
        "epochs_run": outcome.metrics["epochs_run"], "history": outcome.history})


def _candidate(recipe: dict, data_dir: Path, output_dir: Path) -> dict:
    import keras
    import numpy as np
    import tensorflow as tf

    from hello_dl import augment, dataset, environment, pipeline
    from hello_dl import model as model_module

    settings = _settings(recipe, data_dir, output_dir, image_size=int(recipe["image_size"]),
                         batch_size=int(recipe["batch_size"]), keep_aspect_ratio=bool(recipe["keep_aspect_ratio"]),
                         dropout=float(recipe["dropout"]), bn_momentum_from_scratch=float(recipe["bn_momentum"]),
                         learning_rate=float(recipe["learning_rate"]), warmup_epochs=0,
                         shortcut_augmentation=False,  # kit_layers below: the geometric steps only
                         finetune_epochs=int(recipe["epochs"]), fine_tune_from="")
    environment.set_seed(settings.seed)
    index = dataset.scan(settings)
    train_x = pipeline.load_images(index.train.files, settings)
    train_y = np.asarray(index.train.labels, dtype=np.float32).reshape(-1, 1)
    val_x = pipeline.load_images(index.val.files, settings)
    val_y = np.asarray(index.val.labels, dtype=np.int64)

    pad = recipe["keep_aspect_ratio"] if recipe["frame_pad"] is None else bool(recipe["frame_pad"])
    shortcuts = shortcut_config(str(recipe["shortcuts"]), pad)
    print(shortcuts.describe())
    kit_layers = pipeline.augmentation_layers(settings) if recipe["kit_augment"] else None
    shortcut_layers = augment.shortcut_layers(shortcuts, settings.seed)

    def augment_batch(x, y):
        x = tf.cast(x, tf.float32)
        if kit_layers is not None:
            x = kit_layers(x, training=True)
        return shortcut_layers(x, training=True), y

    train_data = (tf.data.Dataset.from_tensor_slices((train_x, train_y))
                  .shuffle(len(train_y), seed=settings.seed, reshuffle_each_iteration=True)
                  .batch(settings.batch_size)
                  .map(augment_batch)  # sequential: seeded layers draw in a fixed order; 0-255 out
                  .prefetch(tf.data.AUTOTUNE))
    val_data = pipeline.make_dataset(val_x, val_y, settings, training=False)

    network = model_module.build_model(settings)  # weights none: everything trainable, BN momentum set
    print(model_module.trainable_summary(network))
    stopper = keras.callbacks.EarlyStopping(monitor="val_loss", mode="min", patience=int(recipe["patience"]),
                                            start_from_epoch=int(recipe["start_from_epoch"]),
                                            restore_best_weights=True)
    load_before, cpu_before, wall_before = load_average(), cpu_seconds(), time.perf_counter()
    fitted = network.fit(train_data, validation_data=val_data, epochs=int(recipe["epochs"]),
                         callbacks=[stopper], verbose=2, shuffle=False)
    train_wall, train_cpu = time.perf_counter() - wall_before, cpu_seconds() - cpu_before
    history = {k: [float(v) for v in values] for k, values in fitted.history.items()}
    losses = history.get("val_loss", [])
    best_epoch = (int(np.argmin(losses)) + 1) if losses else None
    return _measure(network, settings, recipe, {
        "train_wall_s": round(train_wall, 1), "train_cpu_s": round(train_cpu, 1), "load_before": load_before,
        "load_after": load_average(), "best_epoch": best_epoch, "epochs_run": len(losses), "history": history,
        "shortcuts": shortcuts.describe()})


def _measure(network, settings, recipe: dict, facts: dict) -> dict:
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from hello_dl import dataset, filetypes, pipeline, stats, stress

    index = dataset.scan(settings)
    val_files = list(index.val.files)
    val_labels = np.asarray(index.val.labels, dtype=int)
    val_scores = stress.model_scores(network, pipeline.load_images(val_files, settings))
    correct = (val_scores >= settings.threshold).astype(int) == val_labels
    digests = [filetypes.file_hash(f) for f in val_files]
    first = [digests.index(d) == i for i, d in enumerate(digests)]
    test_files = list(index.test.files)
    test_scores = stress.model_scores(network, pipeline.load_images(test_files, settings)) if test_files else []

    collected = stress.collect_images(settings, ("val", "test"))
    stressed = stress.stress_test(network, settings, collected=collected)
    sources = stress.other_sources_test(network, settings, collected=collected)
    out = {
        "name": recipe["name"], "recipe": recipe, "image_size": settings.image_size,
        "validation": {
            "images": len(val_files), "correct": int(correct.sum()), "accuracy": float(correct.mean()),
            "ci": list(stats.wilson_interval(int(correct.sum()), len(val_files))),
            "distinct_images": int(sum(first)), "distinct_correct": int(correct[np.array(first)].sum()),
            "auc": round(float(roc_auc_score(val_labels, val_scores)), 3),
            "scores": {Path(f).name: round(float(p), 4) for f, p in zip(val_files, val_scores)}},
        "test": {str(f): round(float(p), 4) for f, p in zip(test_files, test_scores)},
        "stress": stressed.as_dict(), "stress_text": stressed.format(),
        "sources": sources.as_dict(), "sources_text": sources.format(),
        **facts,
    }
    if recipe.get("stress_train"):
        seen = stress.collect_images(settings, ("train",))
        seen_result = stress.stress_test(network, settings, collected=seen)
        out["stress_train"], out["stress_train_text"] = seen_result.as_dict(), seen_result.format()
        seen_sources = stress.other_sources_test(network, settings, collected=seen)
        out["sources_train"], out["sources_train_text"] = seen_sources.as_dict(), seen_sources.format()
    return out


if __name__ == "__main__":
    sys.exit(main())
