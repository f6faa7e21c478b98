"""Every knob of the tutorial in one place, with the paper's values as defaults.

A setting's value comes from, in increasing priority:

1. the default below (the paper's recipe, Lakhani et al. 2018),
2. the chosen profile (``paper``, ``conference`` or ``smoke``); without pretrained weights
   (``weights=none``) the from-scratch recipe of :mod:`hello_dl.recipes` replaces the profile's
   training knobs, whatever the profile,
3. the participant's experiment group and seat (conference mode, see :mod:`hello_dl.groups`):
   the group sets its knobs, the seat its own seed,
4. an environment variable ``HELLO_DL_<SETTING>`` (e.g. ``HELLO_DL_IMAGE_SIZE=150``),
5. a keyword argument to :func:`load_settings` (what notebooks and the command line pass).

``print(settings)`` shows every value and where it came from, so nobody has to guess which
of the five won.
"""

from __future__ import annotations

import difflib
import json
import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

from hello_dl import groups, recipes
from hello_dl.errors import HelloDLError

ENV_PREFIX = "HELLO_DL_"

#: InceptionV3 cannot take inputs smaller than this (pixels per side): the smallest image_size,
#: and the smallest image the loader accepts.
MIN_IMAGE_SIDE = 75

#: The largest image_size the kit accepts: InceptionV3's memory grows with the pixels (at 1024 px
#: a batch of 5 needs over 10 GB to train); 299 is its own size.
MAX_IMAGE_SIDE = 1024


@dataclass(frozen=True)
class Range:
    """The valid values of one number setting, and a few words on what is usual."""

    low: float
    high: float
    low_open: bool = False  # True: ``low`` itself is not allowed
    high_open: bool = False
    usual: str = ""

    def admits(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def describe(self, whole: bool = False) -> str:
        low = f"above {self.low:g}" if self.low_open else f"at least {self.low:g}"
        high = f"below {self.high:g}" if self.high_open else f"at most {self.high:g}"
        kind = "a whole number" if whole else "a finite number"
        return f"{kind} {low} and {high}" + (f"; {self.usual}" if self.usual else "")


#: Every number setting's valid range, checked before anything is created (no run folder, no
#: download, no model). A new number setting must get a line here (a test says so).
RANGES: dict[str, Range] = {
    "seed": Range(0, 2 ** 32 - 1, usual="any whole number; 42 is the kit's"),
    "image_size": Range(MIN_IMAGE_SIDE, MAX_IMAGE_SIDE,
                        usual="InceptionV3 takes no less than 75; 299 is its own size; 150 or 224 train faster"),
    "val_fraction": Range(0, 1, high_open=True, usual="0.15 keeps about one image in seven for validation"),
    "test_fraction": Range(0, 1, high_open=True, usual="0 or about 0.15"),
    "rotation_degrees": Range(0, 180, usual="the paper used 20"),
    "width_shift": Range(0, 1, usual="a fraction of the width; the paper used 0.2"),
    "height_shift": Range(0, 1, usual="a fraction of the height; the paper used 0.2"),
    "shear": Range(0, 1, usual="a fraction of the image size; 0.2 is the kit's"),
    "zoom": Range(0, 1, high_open=True, usual="the paper used 0.2"),
    "dense_units": Range(1, 8192, usual="the paper used 256"),
    "dropout": Range(0, 1, high_open=True, usual="0.5 as in the paper; 0 switches it off"),
    "bn_momentum_from_scratch": Range(0, 1, high_open=True, usual="0.9 in the from-scratch recipe"),
    "batch_size": Range(1, 1024, usual="the paper used 5; lower it if memory runs out"),
    "learning_rate": Range(0, 1, low_open=True, usual="Adam's usual values are 1e-5 to 1e-3; the paper used 1e-4"),
    "finetune_learning_rate": Range(0, 1, low_open=True, usual="usually 1e-5 to 1e-4"),
    "warmup_epochs": Range(0, 1000, usual="the conference profile uses 5"),
    "finetune_epochs": Range(0, 1000, usual="the paper used 20"),
    "early_stopping_patience": Range(0, 1000, usual="0 switches early stopping off; 8 without pretrained weights"),
    "early_stopping_start_epoch": Range(0, 1000, usual="0 watches from the first epoch; 4 without pretrained weights"),
    "steps_per_execution": Range(1, 1000, usual="1 is Keras' default; more batches per step can be faster on a GPU"),
    "threshold": Range(0, 1, low_open=True, high_open=True, usual="0.5 as in the paper"),
}

#: HELLO_DL_* variables that are not settings, and what reads them. Any other HELLO_DL_* name in
#: the environment is refused (a misspelt setting would otherwise be ignored without a word).
#: Adding a variable of your own? Add it here (a test finds every HELLO_DL_ name in the repository).
NON_SETTING_VARIABLES: dict[str, str] = {
    "HELLO_DL_HOME": "the kit's folder; relative data_dir and output_dir hang off it (settings.project_root)",
    "HELLO_DL_DEBUG": "1 shows full Python tracebacks from hello-dl (cli)",
    "HELLO_DL_LAB_IP": "the address JupyterLab listens on (scripts/lab.py)",
    "HELLO_DL_LAB_PORT": "the port JupyterLab listens on (scripts/lab.py)",
    "HELLO_DL_PORT": "the port on this computer for the Docker container (docker/compose.yaml)",
    "HELLO_DL_EXTRA_CA": "a proxy's CA certificate, trusted while building the Docker image (docker/compose.yaml)",
    "HELLO_DL_GPU_MEMORY_MB": "a GPU memory cap per process (environment, the room server)",
    "HELLO_DL_KIT_SOURCE": "where Colab/Kaggle install the kit from (cloud)",
    "HELLO_DL_COMPAT": "1 in CI's compatibility stage (make compat)",
    "HELLO_DL_COMPAT_WHEELS": "the wheels folder of CI's compatibility stage (make compat)",
    "HELLO_DL_BOARD": "the room's results board: a folder or the hub's board address (hello-dl room)",
    "HELLO_DL_TRAINING_MINUTES": "the session's time for training in notebook 04 (lesson.plan_training)",
    "HELLO_DL_EDITION": "which edition of the notebooks make lab opens: student, instructor or source (scripts/lab.py)",
}
#: Whole families of non-setting variables, by prefix: the room server's and CI's own.
NON_SETTING_PREFIXES: dict[str, str] = {
    "HELLO_DL_ROOM_": "the room server (docker/hub, hello-dl room)",
    "HELLO_DL_CI_": "CI's scripts (.ci/)",
}


#: Where a real user downloads the dataset: the archive in the paper's own repository.
DEFAULT_DATA_URL = (
    "https://github.com/paras42/Hello_World_Deep_Learning/raw/"
    "9921a12c905c00a88898121d5dc538e3b524e520/Open_I_abd_vs_CXRs.zip"
)

PROFILES: dict[str, dict[str, Any]] = {
    # The original notebook's recipe: everything trainable from epoch 1, no warm-up.
    "paper": {
        "warmup_epochs": 0,
        "finetune_epochs": 20,
        "finetune_learning_rate": 1e-4,
    },
    # The kit's improved default for a 45-minute session: a frozen warm-up trains the new
    # head on ImageNet features, then a short, gentle fine-tune of the upper base.
    "conference": {
        "warmup_epochs": 5,
        "finetune_epochs": 5,
        "finetune_learning_rate": 1e-5,
        "fine_tune_from": "mixed9",
    },
    # The smallest real run: what CI and the tests execute.
    "smoke": {
        "image_size": 75,
        "warmup_epochs": 1,
        "finetune_epochs": 1,
        "weights": "none",
        "fine_tune_from": "",
    },
}

DEFAULT_PROFILE = "conference"


def project_root() -> Path:
    """The kit's folder: ``HELLO_DL_HOME``, else the checkout this package lives in, else cwd.

    Notebooks run from ``notebooks/`` and ``make`` from the top; both must find the same
    ``data/`` and ``outputs/`` folders, so relative defaults hang off this folder.
    """
    explicit = os.environ.get(ENV_PREFIX + "HOME")
    if explicit:
        return Path(explicit).expanduser().resolve()
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").is_file() and (parent / "notebooks").is_dir():
            return parent
    cwd = Path.cwd().resolve()
    for parent in (cwd, *cwd.parents):
        if (parent / "pyproject.toml").is_file() and (parent / "notebooks").is_dir():
            return parent
    return cwd


@dataclass
class Settings:
    """The tutorial's knobs. Field comments are the documentation shown by ``hello-dl settings``."""

    # --- which recipe -------------------------------------------------------------------
    profile: str = DEFAULT_PROFILE  # paper | conference | smoke
    seed: int = 42  # one seed makes splits, augmentation and training repeatable

    # --- where things are -----------------------------------------------------------------
    data_source: str = DEFAULT_DATA_URL  # URL, local folder or .zip of the OpenI images
    data_dir: Path = Path("data/open_i_abd_vs_cxr")  # where the verified images live
    output_dir: Path = Path("outputs")  # every run gets its own folder in here
    weights: str = "imagenet"  # imagenet | none | path to an InceptionV3 notop .h5 file

    # --- the images -------------------------------------------------------------------------
    image_size: int = 299  # InceptionV3's native input size (pixels per side)
    keep_aspect_ratio: bool = False  # pad instead of stretch (removes the size shortcut)
    normalize_each_image: bool = False  # each image to its own mean 0, spread 1 (contrast cue gone); on when from scratch
    class_folders: tuple[str, ...] = ("openI_CXR", "openI_abd_xray")  # index order: 0, 1
    class_names: tuple[str, ...] = ("chest", "abdomen")  # display names, same order
    train_folder: str = "TRAIN"
    val_folder: str = "VAL"
    test_folder: str = "TEST"

    # --- splitting your own data --------------------------------------------------------------
    val_fraction: float = 0.15
    test_fraction: float = 0.0

    # --- augmentation (training batches only) ---------------------------------------------
    augment: bool = True
    rotation_degrees: float = 20.0
    width_shift: float = 0.2
    height_shift: float = 0.2
    shear: float = 0.2
    zoom: float = 0.2
    horizontal_flip: bool = True
    shortcut_augmentation: bool = False  # also blur file-format cues (hello_dl.augment); on when from scratch

    # --- the model ---------------------------------------------------------------------------
    dense_units: int = 256
    dropout: float = 0.5  # 0 switches dropout off (experiment subgroup B)
    bn_momentum_from_scratch: float = 0.5  # BatchNorm momentum when there are no pretrained weights
    fine_tune_from: str = ""  # unfreeze from this InceptionV3 layer up ("" = the whole base)

    # --- training --------------------------------------------------------------------------
    batch_size: int = 5
    learning_rate: float = 1e-4  # Adam, phase 1 (and the paper's only rate)
    finetune_learning_rate: float = 1e-4  # Adam, phase 2
    warmup_epochs: int = 0  # phase 1: base frozen, new head trained
    finetune_epochs: int = 5  # phase 2: base unfrozen
    early_stopping_patience: int = 0  # 0 = off
    early_stopping_start_epoch: int = 0  # early stopping watches only after this many epochs
    steps_per_execution: int = 1

    # --- evaluation ----------------------------------------------------------------------------
    threshold: float = 0.5  # probability above which a case is called class 1 (abdomen)

    # --- conference mode -------------------------------------------------------------------
    participant: str = ""  # a name or number; picks the experiment group reproducibly
    experiment_group: str = ""  # 1A, 1B, 2A, 2B (1/2: augmentation on/off; A/B: dropout on/off)

    # where each value came from; not a knob
    sources: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    # ------------------------------------------------------------------------------------------
    @property
    def class_index(self) -> dict[str, int]:
        """Folder name → label index (chest = 0, abdomen = 1, as in the paper's notebook)."""
        return {name: index for index, name in enumerate(self.class_folders)}

    @property
    def total_epochs(self) -> int:
        return self.warmup_epochs + self.finetune_epochs

    @property
    def from_scratch(self) -> bool:
        """No pretrained weights: the from-scratch recipe (:mod:`hello_dl.recipes`) applies."""
        return recipes.is_from_scratch(self.weights)

    def describe_recipe(self) -> str:
        """One plain line: transfer learning or from scratch, and what that means for this run."""
        return recipes.describe(self)

    def knobs(self) -> dict[str, Any]:
        """The settings as plain JSON-ready values (paths and tuples made simple)."""
        out = {}
        for f in fields(self):
            if f.name == "sources":
                continue
            value = getattr(self, f.name)
            if isinstance(value, Path):
                value = str(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    def to_json(self) -> str:
        return json.dumps({"settings": self.knobs(), "sources": self.sources}, indent=2)

    def replace(self, **changes: Any) -> "Settings":
        """A copy with some knobs changed (marked as set by argument).

        Changing ``profile``, ``experiment_group`` or ``participant`` rebuilds the settings from the
        profile and the (new) group, so the group's knobs (augment, dropout) follow it; every knob
        that was set explicitly (environment or argument) is kept, and still wins over the group.
        """
        changes = {name: value for name, value in changes.items() if value is not None}
        regroup = ("profile", "experiment_group", "participant")
        if any(name in changes and changes[name] != getattr(self, name) for name in regroup):
            kept = {name: value for name, value in self.knobs().items()
                    if name != "profile" and _explicit(self.sources.get(name, "default"))}
            kept.update({name: value for name, value in changes.items() if name != "profile"})
            rebuilt = load_settings(changes.get("profile", self.profile), environ={}, **kept)
            for name in kept:
                if name not in changes:  # keep "env:HELLO_DL_SEED" rather than "argument"
                    rebuilt.sources[name] = self.sources[name]
            return rebuilt
        return load_settings(base=self, **{k: v for k, v in changes.items() if k != "profile"})

    def __str__(self) -> str:
        rows = [(name, _show(value), self.sources.get(name, "default")) for name, value in self.knobs().items()]
        width_name = max(len(r[0]) for r in rows)
        width_value = min(60, max(len(r[1]) for r in rows))
        lines = [self.describe_recipe(), "",
                 f"{'setting':<{width_name}}  {'value':<{width_value}}  from", "-" * (width_name + width_value + 12)]
        lines += [f"{n:<{width_name}}  {v:<{width_value}}  {s}" for n, v, s in rows]
        return "\n".join(lines)


def _explicit(source: str) -> bool:
    """Was a value set on purpose (environment, argument, or a saved run's), not by a default, profile or group?"""
    return source.startswith(("env:", "argument", "run:"))


def _show(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


_FIELD_TYPES = get_type_hints(Settings)


def setting_names() -> list[str]:
    return [f.name for f in fields(Settings) if f.name != "sources"]


class SettingsError(HelloDLError, ValueError):
    """A setting has a value that cannot be used; the message says which and how to fix it."""


def _convert(name: str, raw: Any, origin: str) -> Any:
    """Turn a raw value (often a string from the environment) into the field's type."""
    kind = _FIELD_TYPES[name]
    hint = f"{name} (from {origin})"
    try:
        if kind is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in {"1", "true", "yes", "on"}:
                return True
            if text in {"0", "false", "no", "off", ""}:
                return False
            raise ValueError(raw)
        if kind is int:
            if isinstance(raw, float) and not raw.is_integer():
                raise ValueError(raw)
            return int(raw)
        if kind is float:
            return float(raw)
        if kind is Path:
            return Path(str(raw)).expanduser()
        if kind == tuple[str, ...]:
            if isinstance(raw, str):
                return tuple(part.strip() for part in raw.split(",") if part.strip())
            return tuple(str(part) for part in raw)
        return str(raw)
    except (TypeError, ValueError):
        expected = {bool: "true/false", int: "a whole number", float: "a number"}.get(kind, str(kind))
        raise SettingsError(f"Setting {hint} is {raw!r}, but it must be {expected}.") from None


def load_settings(profile: str | None = None, *, base: Settings | None = None,
                  environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
    """Build the settings: defaults → profile → experiment group → environment → arguments.

    ``profile`` (or ``HELLO_DL_PROFILE``) picks the recipe; every other keyword overrides one
    knob. With ``base``, start from an existing settings object and apply only ``overrides``.
    """
    env = dict(os.environ if environ is None else environ)
    unknown = sorted(set(overrides) - set(setting_names()))
    if unknown:
        guesses = [f"{name} (did you mean {_nearest(name, setting_names())}?)" if _nearest(name, setting_names())
                   else name for name in unknown]
        raise SettingsError(
            f"Unknown setting(s): {', '.join(guesses)}. Known settings: {', '.join(setting_names())}."
        )
    check_environment(env)

    if base is not None:
        values = base.knobs()
        sources = dict(base.sources)
        for name, raw in overrides.items():
            if raw is None:
                continue
            values[name] = _convert(name, raw, "argument")
            sources[name] = "argument"
        return _finish(values, sources)

    values: dict[str, Any] = {f.name: getattr(Settings(), f.name) for f in fields(Settings) if f.name != "sources"}
    sources: dict[str, str] = {name: "default" for name in values}

    chosen = profile or overrides.get("profile") or env.get(ENV_PREFIX + "PROFILE") or DEFAULT_PROFILE
    chosen = str(chosen).strip().lower()
    if chosen not in PROFILES:
        raise SettingsError(
            f"Unknown profile {chosen!r}. Choose one of: {', '.join(PROFILES)} "
            f"(set HELLO_DL_PROFILE or pass profile=...)."
        )
    values["profile"] = chosen
    sources["profile"] = "argument" if (profile or overrides.get("profile")) else (
        "env:HELLO_DL_PROFILE" if env.get(ENV_PREFIX + "PROFILE") else "default")
    for name, raw in PROFILES[chosen].items():
        values[name] = _convert(name, raw, f"profile {chosen}")
        sources[name] = f"profile:{chosen}"

    # Environment and arguments are read before the group is applied, so an explicit
    # HELLO_DL_AUGMENT or augment=... still wins over the group's choice.
    layered: dict[str, tuple[Any, str]] = {}
    for name in values:
        if name == "profile":
            continue
        key = ENV_PREFIX + name.upper()
        if key in env:
            layered[name] = (_convert(name, env[key], "env:" + key), "env:" + key)
    for name, raw in overrides.items():
        if name == "profile" or raw is None:
            continue
        layered[name] = (_convert(name, raw, "argument"), "argument")

    # Without pretrained weights the profile's two-phase recipe cannot work: swap in the
    # from-scratch one (hello_dl.recipes). Explicit environment values and arguments still win.
    if recipes.is_from_scratch(layered.get("weights", (values["weights"], ""))[0]):
        for name, raw in recipes.from_scratch_values(chosen).items():
            values[name] = _convert(name, raw, recipes.SOURCE)
            sources[name] = recipes.SOURCE

    participant = layered.get("participant", (values["participant"], ""))[0]
    group = layered.get("experiment_group", (values["experiment_group"], ""))[0]
    if participant or group:
        group_name = groups.normalise_group(group) if group else groups.assign_group(participant)
        values["experiment_group"] = group_name
        sources["experiment_group"] = layered.get("experiment_group", (None, f"participant {participant!r}"))[1]
        for name, raw in groups.group_settings(group_name).items():
            values[name] = raw
            sources[name] = f"group:{group_name}"
    if groups.seat_key(participant or "") and "seed" not in layered:
        # Each seat trains its own replicate of its group's recipe; an explicit seed still wins.
        base_seed = values["seed"]
        values["seed"] = groups.seat_seed(participant, base_seed)
        sources["seed"] = f"seat {groups.seat_key(participant)} (from seed {base_seed})"

    for name, (value, origin) in layered.items():
        if name == "experiment_group":
            continue
        values[name] = value
        sources[name] = origin
    return _finish(values, sources)


def _nearest(name: str, candidates: list[str]) -> str | None:
    found = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return found[0] if found else None


def is_known_variable(key: str) -> bool:
    """True for a setting's HELLO_DL_<NAME> and for the kit's other HELLO_DL_* variables (see the lists above)."""
    if not key.startswith(ENV_PREFIX):
        return True
    return (key[len(ENV_PREFIX):].lower() in setting_names() and key == key.upper()) or \
        key in NON_SETTING_VARIABLES or key.startswith(tuple(NON_SETTING_PREFIXES))


def check_environment(env: dict[str, str]) -> None:
    """Refuse HELLO_DL_* variables the kit does not know, suggesting the nearest real name."""
    unknown = sorted(key for key in env if key.startswith(ENV_PREFIX) and not is_known_variable(key))
    if not unknown:
        return
    known = [ENV_PREFIX + name.upper() for name in setting_names()] + list(NON_SETTING_VARIABLES)
    lines = []
    for key in unknown:
        nearest = _nearest(key.upper(), known)
        lines.append(f"{key}: " + (f"did you mean {nearest}?" if nearest else "not a name the kit knows."))
    raise SettingsError(
        "Unknown HELLO_DL_ variable(s) in the environment, so their values would be ignored:\n  "
        + "\n  ".join(lines) + f"\nRename or unset them (e.g. `unset {unknown[0]}`). `hello-dl settings` lists "
        "every setting; HELLO_DL_<SETTING> sets one (for example HELLO_DL_IMAGE_SIZE=150).")


def _finish(values: dict[str, Any], sources: dict[str, str]) -> Settings:
    settings = Settings(**{k: _convert(k, v, sources.get(k, "default")) for k, v in values.items()})
    root = project_root()
    for name in ("data_dir", "output_dir"):
        path = getattr(settings, name)
        if not path.is_absolute():
            setattr(settings, name, root / path)
    settings.sources = sources
    _validate(settings)
    return settings


def _validate(s: Settings) -> None:
    """Every setting in its valid range, or one error listing each that is not (with where it came from)."""
    problems: list[tuple[str, str]] = []  # (setting, what is wrong)
    for name, valid in RANGES.items():
        value = getattr(s, name)
        if not valid.admits(float(value)):
            problems.append((name, f"{name} is {value} (from {s.sources.get(name, 'default')}); it must be "
                                   f"{valid.describe(_FIELD_TYPES[name] is int)}."))
    if len(s.class_folders) != 2 or len(s.class_names) != 2:
        problems.append(("class_folders", "class_folders and class_names each need exactly two entries "
                                          "(a binary classifier)."))
    elif s.class_folders[0] == s.class_folders[1]:
        problems.append(("class_folders", f"class_folders names the same folder twice ({s.class_folders[0]}); "
                                          "give the two class folders."))
    folders = [s.train_folder, s.val_folder, s.test_folder]
    if not all(name.strip() for name in folders) or len(set(folders)) != 3:
        problems.append(("train_folder", f"train_folder, val_folder and test_folder must be three different, "
                                         f"non-empty folder names (they are {', '.join(map(repr, folders))})."))
    if s.total_epochs == 0:
        problems.append(("finetune_epochs", "warmup_epochs and finetune_epochs are both 0: nothing would be "
                                            "trained. Set at least one of them to 1 or more."))
    if s.val_fraction + s.test_fraction >= 1.0:
        problems.append(("val_fraction", f"val_fraction ({s.val_fraction:g}) and test_fraction "
                                         f"({s.test_fraction:g}) add up to 1 or more: nothing is left to train on."))
    if problems:
        details = "\n  ".join(text if "(from " in text else f"{text} (from {s.sources.get(name, 'default')})"
                               for name, text in problems)
        raise SettingsError("Some settings cannot be used:\n  " + details)


def settings_from_json(path: str | Path) -> Settings:
    """Reload the settings a run saved (``settings.json`` in a run folder)."""
    data = json.loads(Path(path).read_text())
    knobs = data.get("settings", data)
    return load_settings(base=Settings(**{k: _convert(k, v, "saved run") for k, v in knobs.items()
                                          if k in setting_names()}))


__all__ = [
    "DEFAULT_DATA_URL", "DEFAULT_PROFILE", "ENV_PREFIX", "MAX_IMAGE_SIDE", "MIN_IMAGE_SIDE", "NON_SETTING_PREFIXES",
    "NON_SETTING_VARIABLES", "PROFILES", "RANGES", "Range", "Settings", "SettingsError", "check_environment",
    "is_known_variable", "load_settings", "project_root", "setting_names", "settings_from_json",
]
