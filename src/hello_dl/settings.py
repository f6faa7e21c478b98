"""Every knob of the tutorial in one place, with the paper's values as defaults.

A setting's value comes from, in increasing priority:

1. the default below (the paper's recipe, Lakhani et al. 2018),
2. the chosen profile (``paper``, ``conference`` or ``smoke``),
3. the participant's experiment group and seat (conference mode, see :mod:`hello_dl.groups`):
   the group sets its knobs, the seat its own seed,
4. an environment variable ``HELLO_DL_<SETTING>`` (e.g. ``HELLO_DL_IMAGE_SIZE=150``),
5. a keyword argument to :func:`load_settings` (what notebooks and the command line pass).

``print(settings)`` shows every value and where it came from, so nobody has to guess which
of the five won.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

from hello_dl import groups
from hello_dl.errors import HelloDLError

ENV_PREFIX = "HELLO_DL_"

#: InceptionV3 cannot take inputs smaller than this (pixels per side): the smallest image_size,
#: and the smallest image the loader accepts.
MIN_IMAGE_SIDE = 75

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
        lines = [f"{'setting':<{width_name}}  {'value':<{width_value}}  from", "-" * (width_name + width_value + 12)]
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
        raise SettingsError(
            f"Unknown setting(s): {', '.join(unknown)}. Known settings: {', '.join(setting_names())}."
        )

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
    problems = []
    if s.image_size < MIN_IMAGE_SIDE:
        problems.append(f"image_size is {s.image_size}, but InceptionV3 needs at least {MIN_IMAGE_SIDE} pixels "
                        "per side.")
    if s.batch_size < 1:
        problems.append("batch_size must be at least 1.")
    if len(s.class_folders) != 2 or len(s.class_names) != 2:
        problems.append("class_folders and class_names each need exactly two entries (a binary classifier).")
    if not 0.0 <= s.dropout < 1.0:
        problems.append(f"dropout is {s.dropout}; it must be at least 0 and below 1.")
    if not 0.0 < s.threshold < 1.0:
        problems.append(f"threshold is {s.threshold}; it must be between 0 and 1.")
    if s.warmup_epochs < 0 or s.finetune_epochs < 0 or s.total_epochs == 0:
        problems.append("warmup_epochs and finetune_epochs must be >= 0 and not both 0.")
    if not 0.0 <= s.val_fraction < 1.0 or not 0.0 <= s.test_fraction < 1.0 or s.val_fraction + s.test_fraction >= 1.0:
        problems.append("val_fraction and test_fraction must each be in [0, 1) and add up to less than 1.")
    if problems:
        details = "\n  ".join(f"{p} ({s.sources.get(p.split()[0], 'default')})" for p in problems)
        raise SettingsError("Some settings cannot be used:\n  " + details)


def settings_from_json(path: str | Path) -> Settings:
    """Reload the settings a run saved (``settings.json`` in a run folder)."""
    data = json.loads(Path(path).read_text())
    knobs = data.get("settings", data)
    return load_settings(base=Settings(**{k: _convert(k, v, "saved run") for k, v in knobs.items()
                                          if k in setting_names()}))


__all__ = [
    "DEFAULT_DATA_URL", "DEFAULT_PROFILE", "ENV_PREFIX", "MIN_IMAGE_SIDE", "PROFILES", "Settings", "SettingsError",
    "load_settings", "project_root", "setting_names", "settings_from_json",
]
