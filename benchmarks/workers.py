"""The measurements. Each function runs in its own fresh Python process (see ``run.py``), takes a
plain dict of parameters and returns a plain dict of numbers, so memory and graph caches never
leak from one measurement into the next. Each function imports what it measures (TensorFlow, the
kit, the paper's recipe) inside itself, on purpose: loading TensorFlow takes seconds and hundreds of
MB, and a measurement must not carry the cost of another's imports.

The kit is measured only through its public functions (``hello_dl.pipeline.build_datasets``,
``hello_dl.train.train``, ``hello_dl.evaluate``, ``hello_dl.explain``, ``hello_dl.model``); the
paper's recipe comes from :mod:`paper_recipe`. Nothing of the kit is re-implemented here.

The kit runs take the pretrained path (``weights`` = a same-layout InceptionV3 file with random
weights, :func:`weights_file`): that is what users run with the ImageNet weights (frozen warm-up,
BatchNorm statistics kept, the feature cache), which cannot be downloaded here. Speed does not
depend on the weight values.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from pathlib import Path

from timing import EpochTimer, Stopwatch, summarize


# --- helpers ---------------------------------------------------------------------------------------
def peak_rss_mb() -> float:
    """This process's resident-memory high-water mark so far (MB); read after each stage, its
    increases show which stage set the peak."""
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6, 1)


@contextlib.contextmanager
def kit_settings(params: dict, **overrides):
    """Settings for the kit: the chosen profile, ``params["weights"]`` (default none), a throw-away output folder.

    The run folders (a saved model is ~90 MB) are deleted afterwards unless ``params`` names an
    ``output_dir``: the benchmark needs their timings, not their files. The profile's own
    (pretrained) recipe is pinned whatever the weights: with weights ``none`` the settings would
    otherwise switch to the from-scratch recipe (hello_dl.recipes).
    """
    from hello_dl import recipes
    from hello_dl.settings import load_settings

    profile = params.get("profile", "conference")
    pretrained = load_settings(profile, environ={}, weights="imagenet").knobs()
    scratch = None if params.get("output_dir") else tempfile.mkdtemp(prefix="hello_dl_bench_out_")
    values = {
        **{name: pretrained[name] for name in recipes.from_scratch_values(profile)},
        "weights": params.get("weights") or "none",
        "image_size": params["image_size"],
        "batch_size": params["batch_size"],
        "data_dir": params["data_dir"],
        "output_dir": params.get("output_dir") or scratch,
        "seed": params.get("seed", 42),
    }
    values.update(params.get("settings", {}))
    values.update(overrides)
    try:
        yield load_settings(profile, environ={}, **values)
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)


def _phase_names(settings) -> tuple[str, ...]:
    names = []
    if settings.warmup_epochs > 0:
        names.append("warmup")
    if settings.finetune_epochs > 0:
        names.append("finetune")
    return tuple(names)


# --- the machine ---------------------------------------------------------------------------------------
def weights_file(params: dict) -> dict:
    """An InceptionV3-without-top weights file with random weights (seeded), in the layout of the
    ImageNet file; written once and kept (``params["path"]``), atomically."""
    import os

    path = Path(params["path"])
    if not path.is_file():
        import keras

        keras.utils.set_random_seed(0)
        size = int(params.get("image_size", 299))
        base = keras.applications.InceptionV3(include_top=False, weights=None, input_shape=(size, size, 3))
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.stem + ".partial.h5")  # Keras picks the format by the suffix
        base.save(partial)
        os.replace(partial, path)
    return {"path": str(path), "bytes": path.stat().st_size}


def matmul_ceiling(params: dict) -> dict:
    """The best fp32 GFLOP/s TensorFlow reaches on a large matrix product: a practical ceiling."""
    import tensorflow as tf

    n = int(params.get("matrix_size", 4096))
    repeats = int(params.get("repeats", 5))
    a = tf.random.normal((n, n), seed=1)
    b = tf.random.normal((n, n), seed=2)
    product = tf.function(lambda x, y: tf.matmul(x, y))
    product(a, b).numpy()  # trace and warm up
    best = 0.0
    for _ in range(int(params.get("trials", 4))):
        start = time.perf_counter()
        for _ in range(repeats):
            result = product(a, b)
        result.numpy()
        seconds = time.perf_counter() - start
        best = max(best, repeats * 2.0 * n**3 / seconds / 1e9)
    return {"matrix_size": n, "gflops": round(best, 1)}


def model_flops(params: dict) -> dict:
    """FLOP per image of a training step: the kit's model frozen and unfrozen, the paper's model."""
    import flops
    import paper_recipe
    from hello_dl import model as kit_model

    with kit_settings(params) as settings:
        model = kit_model.build_model(settings)
    kit_model.freeze_base(model)
    frozen = flops.training_flops(model)
    kit_model.unfreeze_base(model, settings.fine_tune_from or None)
    finetune = flops.training_flops(model)
    kit_model.unfreeze_base(model, None)
    everything = flops.training_flops(model)
    paper = flops.training_flops(paper_recipe.build_model(settings.image_size))
    return {
        "image_size": settings.image_size,
        "fine_tune_from": settings.fine_tune_from,
        "reference_forward_gflop": round(flops.reference_forward_gflop(settings.image_size), 3),
        "kit_warmup": frozen.as_dict(),
        "kit_finetune": finetune.as_dict(),
        "kit_all_trainable": everything.as_dict(),
        "paper": paper.as_dict(),
    }


# --- input pipelines ----------------------------------------------------------------------------------------
def _iterate_epochs(make_epoch, epochs: int) -> list[tuple[float, int]]:
    """Run ``make_epoch()`` (returns images seen) ``epochs`` times; (seconds, images) per epoch."""
    out = []
    for _ in range(epochs):
        with Stopwatch() as clock:
            images = make_epoch()
        out.append((clock.seconds, images))
    return out


def _pipeline_summary(setup_seconds: float, epochs: list[tuple[float, int]]) -> dict:
    steady = epochs[1:] or epochs
    steady_seconds = sorted(s for s, _ in steady)[len(steady) // 2]
    images = epochs[0][1]
    return {
        "setup_seconds": round(setup_seconds, 3),
        "first_epoch_seconds": round(epochs[0][0], 3),
        "epoch_seconds": [round(s, 3) for s, _ in epochs],
        "images_per_epoch": images,
        "steady_images_per_second": round(images / steady_seconds, 2),
        # Everything a first epoch costs: building the pipeline (the kit decodes all images here)
        # and the first pass.
        "first_pass_images_per_second": round(images / (setup_seconds + epochs[0][0]), 2),
    }


def pipeline_kit(params: dict) -> dict:
    """images/s of the kit's training pipeline: decode+resize (once), augment, scale, batch."""
    from hello_dl.pipeline import build_datasets

    with kit_settings(params) as settings, Stopwatch() as setup:
        data = build_datasets(settings)

    def one_epoch() -> int:
        return sum(int(images.shape[0]) for images, _ in data.train)

    return _pipeline_summary(setup.seconds, _iterate_epochs(one_epoch, params["epochs"]))


def pipeline_paper(params: dict) -> dict:
    """images/s of the paper's ImageDataGenerator.flow_from_directory with its augmentation."""
    import paper_recipe

    with Stopwatch() as setup:
        train, _ = paper_recipe.generators(Path(params["data_dir"]), params["image_size"], params["batch_size"])

    def one_epoch() -> int:
        seen = sum(int(train[i][0].shape[0]) for i in range(len(train)))
        train.on_epoch_end()
        return seen

    return _pipeline_summary(setup.seconds, _iterate_epochs(one_epoch, params["epochs"]))


# --- training and end to end ------------------------------------------------------------------------------------------
def _test_files(data_dir: Path) -> list[Path]:
    test = Path(data_dir) / "TEST"
    return sorted(p for p in test.rglob("*") if p.is_file()) if test.is_dir() else []


def _timed_train(settings, timer: EpochTimer, use_feature_cache: bool = True):
    """``hello_dl.train.train(settings)`` with ``timer`` as an extra Keras callback in both phases."""
    from hello_dl import train as kit_train

    return kit_train.train(settings, verbose=0, callbacks=[timer], use_feature_cache=use_feature_cache)


def _apply_switches(switches: dict) -> None:
    """Experiment-only changes that are not settings (``experiments.py``), for this process only."""
    if str(switches.get("jit_compile", "")).lower() in ("1", "true", "yes"):
        import functools

        import keras

        original = keras.Model.compile

        @functools.wraps(original)
        def compile_with_xla(self, *args, **kwargs):
            kwargs["jit_compile"] = True
            return original(self, *args, **kwargs)

        keras.Model.compile = compile_with_xla


def kit_run(params: dict) -> dict:
    """The kit end to end: ``train`` (timed per epoch), then ``evaluate_run`` and the explanations.

    ``params["stages"]`` picks ``train`` alone (scaling) or ``train``, ``evaluate``, ``explain``.
    """
    _apply_switches(params.get("switches", {}))
    with kit_settings(params) as settings:
        return _kit_stages(settings, params)


def _kit_stages(settings, params: dict) -> dict:
    stages = params.get("stages", ["train", "evaluate", "explain"])
    use_cache = bool(params.get("feature_cache", True))
    timer = EpochTimer(images_per_epoch=params["train_images"], phase_names=_phase_names(settings))
    seconds: dict[str, float] = {}
    cpu: dict[str, float] = {}
    memory = {"start": peak_rss_mb()}
    with Stopwatch() as clock:
        result = _timed_train(settings, timer, use_cache)
    seconds["train"], cpu["train"], memory["train"] = clock.seconds, clock.cpu_seconds, peak_rss_mb()
    if "evaluate" in stages:
        from hello_dl import evaluate, runs

        with Stopwatch() as clock:
            evaluate.evaluate_run(runs.open_run(result.run_dir, settings))
        seconds["evaluate"], cpu["evaluate"], memory["evaluate"] = clock.seconds, clock.cpu_seconds, peak_rss_mb()
    if "explain" in stages:
        with Stopwatch() as clock:
            _explain(result, settings)
        seconds["explain"], cpu["explain"], memory["explain"] = clock.seconds, clock.cpu_seconds, peak_rss_mb()
    return {
        "profile": settings.profile,
        "experiment_group": settings.experiment_group,
        "augment": settings.augment,
        "weights": "random file" if params.get("weights") else settings.weights,
        "feature_cache": use_cache,
        "image_size": settings.image_size,
        "warmup_epochs": settings.warmup_epochs,
        "finetune_epochs": settings.finetune_epochs,
        "steps_per_execution": settings.steps_per_execution,
        "switches": params.get("switches", {}),
        "stage_seconds": {k: round(v, 3) for k, v in seconds.items()},
        "stage_cpu_seconds": {k: round(v, 1) for k, v in cpu.items()},
        "peak_rss_mb_after": memory,
        "kit_timings": result.metrics.get("timings", {}),
        # What the kit did in each phase (with the feature cache: where it split, what it stored, how long).
        "kit_phases": result.metrics.get("phases", []),
        "phases": summarize(timer),
    }


def _explain(result, settings) -> None:
    """What the explanation notebook does after training, with the run's best model:
    Grad-CAM on the validation and TEST images, a t-SNE map of the features, the size-shortcut check."""
    from hello_dl import explain

    data_dir = Path(settings.data_dir)
    folders = [data_dir / settings.val_folder, data_dir / settings.test_folder]
    explain.grad_cam_files([f for f in folders if f.is_dir()], result.run)
    explain.tsne_features(result.model, settings)
    explain.shortcut_check(settings, cnn_accuracy=result.metrics.get("val_accuracy"))


def paper_run(params: dict) -> dict:
    """The paper's recipe end to end: generators, all-trainable model, N epochs, TEST predictions."""
    import paper_recipe

    data_dir = Path(params["data_dir"])
    seconds: dict[str, float] = {}
    memory = {"start": peak_rss_mb()}
    with Stopwatch() as clock:
        train, val = paper_recipe.generators(data_dir, params["image_size"], params["batch_size"])
        model = paper_recipe.build_model(params["image_size"])
    seconds["build"], memory["build"] = clock.seconds, peak_rss_mb()
    timer = EpochTimer(images_per_epoch=paper_recipe.steps(train) * params["batch_size"], phase_names=("paper",))
    with Stopwatch() as clock:
        paper_recipe.fit(model, train, val, params["epochs"], callbacks=[timer])
    seconds["train"], memory["train"] = clock.seconds, peak_rss_mb()
    with Stopwatch() as clock:
        test_files = _test_files(data_dir)
        if test_files:
            paper_recipe.predict_files(model, test_files, params["image_size"])
    seconds["predict_test"], memory["predict_test"] = clock.seconds, peak_rss_mb()
    return {
        "image_size": params["image_size"],
        "epochs": params["epochs"],
        "stage_seconds": {k: round(v, 3) for k, v in seconds.items()},
        "peak_rss_mb_after": memory,
        "phases": summarize(timer),
    }


JOBS = {
    "weights_file": weights_file,
    "matmul_ceiling": matmul_ceiling,
    "model_flops": model_flops,
    "pipeline_kit": pipeline_kit,
    "pipeline_paper": pipeline_paper,
    "kit_run": kit_run,
    "paper_run": paper_run,
}
