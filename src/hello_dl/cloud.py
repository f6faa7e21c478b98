"""Zero install: the notebooks on Google Colab and Kaggle, on the TensorFlow the platform ships.

Every notebook opens with one install cell that does nothing on a laptop, in Docker or on the
room server. On Colab and Kaggle (recognised by the marker variable each platform sets) it
pip-installs the kit *without its dependencies* from the repository at a pinned release, then
calls :func:`setup`, which

1. checks the platform's own TensorFlow and Keras against the range the kit supports (read from
   the installed kit's metadata, i.e. from ``pyproject.toml``) and, outside it, stops with a plain
   message and the fix; TensorFlow and Keras are never installed, upgraded or replaced, because
   replacing them under a running kernel breaks it until a restart;
2. installs only what is missing (e.g. pydicom), with a constraints file that pins every package
   already on the platform, so nothing there changes under the running kernel;
3. prepares data, weights and outputs (:func:`prepare`, also what the lesson's setup call uses):
   a kit folder on the platform's disk, the data checksum list in it, the images and the
   ImageNet weights (internet exists there), or, on Kaggle, the data, the weights and earlier
   results attached as Kaggle datasets under ``/kaggle/input/`` (no internet switch needed); on
   Colab, whose every notebook gets a fresh machine, the results of 04-07 go to Google Drive
   so that the next notebook finds the trained model.

Everything here runs before the kit's dependencies are installed, so the module imports only
the standard library at the top; kit modules (which need numpy, tqdm, ...) are imported inside
the functions that use them, after the install step.
"""

from __future__ import annotations

import importlib.metadata as metadata
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from hello_dl.errors import HelloDLError

DISTRIBUTION = "hello-dl"
#: The variable each platform sets in every notebook kernel (the one Kaggle's own kagglehub checks).
PLATFORM_MARKERS = {"colab": "COLAB_RELEASE_TAG", "kaggle": "KAGGLE_KERNEL_RUN_TYPE"}
PLATFORM_NAMES = {"colab": "Google Colab", "kaggle": "Kaggle"}
#: Where the install cell takes the kit from instead of the release archive (tests: a local wheel).
KIT_SOURCE_VARIABLE = "HELLO_DL_KIT_SOURCE"
#: The packages that come from the platform and are checked, never installed by the kit.
PLATFORM_STACK = ("tensorflow", "keras")
#: Other names under which the platform's TensorFlow may be installed.
TENSORFLOW_DISTRIBUTIONS = ("tensorflow", "tensorflow-cpu", "tensorflow-gpu", "tensorflow-tpu", "tf-nightly")

COLAB_HOME = Path("/content/hello-dl")
COLAB_DRIVE = Path("/content/drive")
KAGGLE_WORKING = Path("/kaggle/working")
KAGGLE_INPUT = Path("/kaggle/input")
#: Notebooks that make (04) or read (05-07) a training run: on Colab their results go to Drive.
RESULT_NOTEBOOKS = ("04", "05", "06", "07")
#: Attached Kaggle datasets are searched this deep and this wide, so a huge one cannot stall setup.
SEARCH_DEPTH = 5
SEARCH_MAX_FOLDERS = 5000

MANIFEST_NAME = "MANIFEST.sha256"
GPU_TIPS = {
    "colab": "Runtime → Change runtime type → choose a GPU (e.g. T4), then run the notebook again from the top",
    "kaggle": "the notebook's Settings → Accelerator → GPU, then run the notebook again from the top",
}
NEWER_ENVIRONMENT = {
    "colab": "Runtime → Change runtime type → Runtime version: Latest, then run this notebook again from the top",
    "kaggle": "the notebook's Settings → Environment → Always use latest environment, then run this notebook "
              "again from the top",
}


def say(text: str) -> None:
    """Print one progress line now (a notebook shows it while the next step still runs)."""
    print(text, flush=True)


class CloudSetupError(HelloDLError):
    """The platform cannot run the kit as it is; the message says why and what to do."""

    def _render_traceback_(self) -> list[str]:
        """What IPython shows in a notebook instead of a traceback: the message alone."""
        return [f"{type(self).__name__}: {self}"]


# --- where are we? -------------------------------------------------------------------------------
def detect(environ: dict[str, str] | None = None) -> str | None:
    """``"colab"``, ``"kaggle"`` or ``None`` (a laptop, Docker, the room server, CI)."""
    env = os.environ if environ is None else environ
    for platform, marker in PLATFORM_MARKERS.items():
        if env.get(marker):
            return platform
    return None


# --- versions ------------------------------------------------------------------------------------
def _packaging():
    """``packaging`` (a TensorFlow dependency, so on every platform that has TensorFlow), else pip's copy."""
    try:
        from packaging import markers, requirements, specifiers, utils, version
    except ImportError:  # pragma: no cover - only without TensorFlow and without packaging
        from pip._vendor.packaging import markers, requirements, specifiers, utils, version
    return markers, requirements, specifiers, utils, version


def kit_requirements() -> list[str]:
    """The kit's own dependency list (``Requires-Dist``), from the installed package or the checkout."""
    try:
        found = metadata.requires(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        found = None
    if found is not None:
        return list(found)
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    if pyproject.is_file():
        import tomllib

        return list(tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["dependencies"])
    raise CloudSetupError("The kit's package information is missing: reinstall the kit (run the install cell again).")


def supported_range(requirements: list[str] | None = None) -> dict[str, str]:
    """Package → version range the kit supports, for TensorFlow and Keras (e.g. ``">=2.19,<2.22"``)."""
    _, req_lib, _, utils, _ = _packaging()
    out = {}
    for line in requirements if requirements is not None else kit_requirements():
        requirement = req_lib.Requirement(line)
        name = utils.canonicalize_name(requirement.name)
        if name in PLATFORM_STACK:  # lower bound first: ">=2.19,<2.22"
            out[name] = ",".join(sorted(map(str, requirement.specifier), key=lambda s: (s[0] != ">", s)))
    return out


def installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def platform_versions() -> dict[str, str | None]:
    """The TensorFlow and Keras this Python has (read from package metadata; nothing is imported)."""
    tensorflow = next((v for v in map(installed_version, TENSORFLOW_DISTRIBUTIONS) if v), None)
    return {"tensorflow": tensorflow, "keras": installed_version("keras")}


def _within(version_text: str, spec_text: str) -> bool:
    _, _, specifiers, _, version = _packaging()
    try:
        return specifiers.SpecifierSet(spec_text).contains(version.Version(version_text), prereleases=True)
    except version.InvalidVersion:
        return False


def check_versions(versions: dict[str, str | None] | None = None, wanted: dict[str, str] | None = None,
                   platform: str | None = None) -> dict[str, str]:
    """Refuse, with a plain message and the fix, a TensorFlow or Keras outside the supported range.

    Returns the versions found when they are fine. Nothing is installed or changed either way.
    """
    versions = platform_versions() if versions is None else versions
    wanted = supported_range() if wanted is None else wanted
    outside = [name for name in PLATFORM_STACK
               if not versions.get(name) or not _within(str(versions[name]), wanted.get(name, ""))]
    if not outside:
        return {name: str(versions[name]) for name in PLATFORM_STACK}
    where = PLATFORM_NAMES.get(platform or "", "this computer")
    found = ", ".join(f"{_title(n)} {versions.get(n) or 'not installed'}" for n in PLATFORM_STACK)
    needs = " with ".join(f"{_title(n)} {wanted.get(n, '?')}" for n in PLATFORM_STACK)
    pins = " ".join(f'"{n}{wanted.get(n, "")}"' for n in PLATFORM_STACK)
    first = NEWER_ENVIRONMENT.get(platform or "", "use a Python environment with a supported pair")
    raise CloudSetupError(
        f"This notebook cannot run here yet: {where} has {found}, but the kit supports {needs} "
        f"(Keras 3). Nothing was installed or changed.\n"
        f"How to fix it (choose one):\n"
        f"  1. A newer platform version: {first}.\n"
        f"  2. Or install a supported pair into this session: run  %pip install {pins}  in a new cell, then "
        f"restart the session (Colab: Runtime → Restart session; Kaggle: Run → Restart & clear cell outputs) "
        f"and run this notebook again from the top. This downloads about 2.5 GB and takes a few minutes.\n"
        f"  3. Or use the kit on your own computer (make lab), in its Docker image, or on Binder (see the "
        f"kit's README)."
    )


def _title(name: str) -> str:
    return {"tensorflow": "TensorFlow", "keras": "Keras"}.get(name, name)


# --- installing what is missing ------------------------------------------------------------------
@dataclass
class InstallPlan:
    """What :func:`install_missing` will do: ``install`` the requirements listed, with every package
    in ``constraints`` held at its present version."""

    install: list[str] = field(default_factory=list)
    constraints: list[str] = field(default_factory=list)
    upgrades: list[str] = field(default_factory=list)  # installed, but too old for the kit (not loaded yet)


def installed_distributions() -> dict[str, str]:
    """Canonical name → version of every distribution this Python can import (the first one on
    sys.path wins, as for imports). A version pip could not read in a constraints file is left out."""
    *_, utils, version = _packaging()
    out: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        try:
            version.Version(dist.version or "")
        except version.InvalidVersion:
            continue
        if name:
            out.setdefault(utils.canonicalize_name(name), dist.version)
    return out


def _loaded_distributions() -> set[str]:
    """Distributions with a module imported in this process (changing them needs a restart)."""
    *_, utils, _ = _packaging()
    owners = metadata.packages_distributions()
    loaded = {name.split(".", 1)[0] for name in list(sys.modules)}
    return {utils.canonicalize_name(dist) for module in loaded for dist in owners.get(module, ())}


def plan_install(requirements: list[str] | None = None, installed: dict[str, str] | None = None,
                 loaded: set[str] | None = None) -> InstallPlan:
    """Work out the smallest install: the kit's requirements that are missing or too old.

    TensorFlow and Keras are left out (they are checked, never installed). A too-old package that
    this kernel has already imported cannot be replaced without a restart: that is refused plainly.
    """
    markers, req_lib, _, utils, _ = _packaging()
    installed = installed_distributions() if installed is None else installed
    loaded = _loaded_distributions() if loaded is None else loaded
    plan = InstallPlan()
    for line in requirements if requirements is not None else kit_requirements():
        requirement = req_lib.Requirement(line)
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        name = utils.canonicalize_name(requirement.name)
        if name in PLATFORM_STACK or name == DISTRIBUTION:
            continue
        present = installed.get(name)
        if present is None:
            plan.install.append(str(requirement))
        elif not _within(present, str(requirement.specifier)):
            if name in loaded:
                raise CloudSetupError(
                    f"The kit needs {requirement}, but this session has already loaded {name} {present}, which "
                    f"cannot be replaced while it runs. Restart the session (Colab: Runtime → Restart session; "
                    f"Kaggle: Run → Restart & clear cell outputs), then run this notebook again from the top; "
                    f"the install cell then updates {name} before anything loads it.")
            plan.install.append(str(requirement))
            plan.upgrades.append(name)
    plan.constraints = sorted(f"{name}=={version}" for name, version in installed.items()
                              if name not in plan.upgrades and name != DISTRIBUTION)
    return plan


def install_missing(plan: InstallPlan | None = None, *, wheels: Path | None = None, echo=say) -> InstallPlan:
    """pip-install what the plan lists (quietly, with one progress line); hold everything else.

    ``wheels``: a folder of wheels to install from *instead of* the package index (the kit's
    Kaggle dataset, for a notebook without internet).
    """
    plan = plan_install() if plan is None else plan
    if not plan.install:
        echo("Everything else the kit needs is already here.")
        return plan
    names = ", ".join(requirement.split(";")[0].strip() for requirement in plan.install)
    echo(f"Installing what the kit still needs: {names} (about a minute) ...")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="hello-dl-") as folder:
        constraints = Path(folder) / "platform-constraints.txt"
        constraints.write_text("\n".join(plan.constraints) + "\n", encoding="utf-8")
        command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                   "--constraint", str(constraints)]
        if wheels is not None:
            command += ["--no-index", "--find-links", str(wheels)]
        result = subprocess.run(command + plan.install, capture_output=True, text=True)
    if result.returncode != 0:
        detail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-8:])
        raise CloudSetupError(
            f"Installing {names} failed, so the kit cannot run here yet. pip said:\n{detail}\n"
            + (f"The wheels come from the attached dataset {wheels}: add the missing ones to it (see the kit's "
               f"README, Kaggle without internet)." if wheels is not None else
               "If the message is about the network: Colab needs no setting; on Kaggle switch Internet on in the "
               "notebook's Settings (a phone-verified account), or attach the kit's Kaggle dataset (see the "
               "kit's README).")
            + " Then run this cell again. Nothing that was already installed was changed.")
    echo(f"Installed {names} in {time.monotonic() - started:.0f} s; the platform's own packages were kept.")
    return plan


# --- data, weights, outputs ----------------------------------------------------------------------
@dataclass
class Prepared:
    """Where the kit keeps things on this platform (all also in the environment as HELLO_DL_*)."""

    platform: str
    home: Path
    output_dir: Path
    data_source: str
    weights: str
    notes: list[str] = field(default_factory=list)


def _walk(root: Path, depth: int = SEARCH_DEPTH, limit: int = SEARCH_MAX_FOLDERS):
    """Folders below ``root`` (breadth first), at most ``depth`` levels and ``limit`` folders."""
    queue, seen = [(root, 0)], 0
    while queue and seen < limit:
        folder, level = queue.pop(0)
        seen += 1
        yield folder
        if level < depth:
            try:
                children = sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink())
            except OSError:
                continue
            queue += [(child, level + 1) for child in children]


def find_attached(input_root: Path, train_folder: str = "TRAIN", val_folder: str = "VAL") -> dict[str, Path]:
    """What attached Kaggle datasets hold: ``data`` (a folder with TRAIN/ and VAL/, or the paper's
    zip), ``weights`` (the InceptionV3 notop file), ``kit`` (a folder with the kit's wheel) and
    ``outputs`` (results of an earlier notebook, saved as its output: ``hello-dl/outputs``)."""
    from hello_dl.fetch import ARCHIVE_NAME  # local: needs the packages the install step adds
    from hello_dl.weights import WEIGHTS_FILE_NAME

    found: dict[str, Path] = {}
    if not input_root.is_dir():
        return found
    for folder in _walk(input_root):
        if "data" not in found and (folder / train_folder).is_dir() and (folder / val_folder).is_dir():
            found["data"] = folder
        if "data" not in found and (folder / ARCHIVE_NAME).is_file():
            found["data"] = folder / ARCHIVE_NAME
        if "weights" not in found and (folder / WEIGHTS_FILE_NAME).is_file():
            found["weights"] = folder / WEIGHTS_FILE_NAME
        if "kit" not in found and any(folder.glob("hello_dl-*.whl")):
            found["kit"] = folder
        if "outputs" not in found and folder.name == "outputs" and folder.parent.name == "hello-dl":
            found["outputs"] = folder
    return found


def _install_manifest(home: Path) -> None:
    """Put the data checksum list where the kit looks for it (``<home>/data/``), from the package."""
    from hello_dl import runs  # local: needs the packages the install step adds

    target = home / "data" / MANIFEST_NAME
    if target.is_file():
        return
    source = Path(__file__).resolve().parents[2] / "data" / MANIFEST_NAME  # a checkout
    if not source.is_file():
        entries = [f for f in (metadata.files(DISTRIBUTION) or []) if f.name == MANIFEST_NAME]
        source = Path(entries[0].locate()) if entries else source
    if not source.is_file():
        raise CloudSetupError(f"The kit's data checksum list ({MANIFEST_NAME}) is missing from the installed "
                              f"package. Run the install cell again; if that does not help, report it.")
    runs.write_atomic(target, source.read_bytes())


def _mount_drive(echo) -> Path | None:
    """Google Drive's "My Drive" folder, mounting it (the user allows it in a pop-up) if needed."""
    my_drive = COLAB_DRIVE / "MyDrive"
    if my_drive.is_dir():
        return my_drive
    echo("Colab gives every notebook its own fresh computer. To carry your trained model on to the next "
         "notebooks, the kit keeps results in your Google Drive (folder hello-dl/outputs): allow access in "
         "the window that opens.")
    try:
        from google.colab import drive  # exists on Colab only

        drive.mount(str(COLAB_DRIVE))
    except Exception as exc:  # noqa: BLE001 - any refusal or failure: fall back to the local disk
        echo(f"Google Drive was not connected ({exc}).")
        return None
    return my_drive if my_drive.is_dir() else None


def _copy_earlier_results(source: Path, output_dir: Path) -> list[str]:
    """Copy run folders from an attached earlier notebook's output; never overwrite one."""
    copied = []
    for run in sorted(p for p in source.iterdir() if p.is_dir()):
        target = output_dir / run.name
        if not target.exists():
            shutil.copytree(run, target)
            copied.append(run.name)
    return copied


def prepare(notebook: str | None = None, *, platform: str | None = None, keep_results: bool | None = None,
            fetch: bool = True, kaggle_input: Path | None = None, echo=say) -> Prepared:
    """Make data, weights and outputs ready on a cloud platform; set HELLO_DL_* for the session.

    Values set explicitly (HELLO_DL_HOME, HELLO_DL_OUTPUT_DIR, HELLO_DL_DATA_SOURCE,
    HELLO_DL_WEIGHTS) are always kept. ``keep_results`` (default: the notebook is one of
    :data:`RESULT_NOTEBOOKS`) sends Colab's outputs to Google Drive. With ``fetch`` the images
    are downloaded and verified and the ImageNet weights downloaded now, so a problem shows here
    and not in the middle of the lesson.
    """
    platform = platform or detect()
    if platform is None:
        raise CloudSetupError("prepare() is for Colab and Kaggle; on this computer the kit needs no preparation.")
    env = os.environ
    notes: list[str] = []
    keep = (notebook or "")[:2] in RESULT_NOTEBOOKS if keep_results is None else keep_results
    if platform == "kaggle":
        home = Path(env.get("HELLO_DL_HOME") or Path(env.get("KAGGLE_WORKING_DIR") or KAGGLE_WORKING) / "hello-dl")
    else:
        home = Path(env.get("HELLO_DL_HOME") or COLAB_HOME)
    env["HELLO_DL_HOME"] = str(home)
    home.mkdir(parents=True, exist_ok=True)
    _install_manifest(home)

    if "HELLO_DL_OUTPUT_DIR" not in env and platform == "colab" and keep:
        drive = _mount_drive(echo)
        if drive is not None:
            env["HELLO_DL_OUTPUT_DIR"] = str(drive / "hello-dl" / "outputs")
        else:
            notes.append("Results stay on this notebook's computer only: the next notebook will not see them "
                         "(it then offers the catch-up run, or run this notebook's training again).")
    from hello_dl.settings import load_settings  # local: needs the packages the install step adds

    attached = find_attached(kaggle_input or KAGGLE_INPUT) if platform == "kaggle" else {}
    if "data" in attached and "HELLO_DL_DATA_SOURCE" not in env:
        env["HELLO_DL_DATA_SOURCE"] = str(attached["data"])
        notes.append(f"Data from the attached dataset {attached['data']}.")
    if "weights" in attached and "HELLO_DL_WEIGHTS" not in env:
        env["HELLO_DL_WEIGHTS"] = str(attached["weights"])
        notes.append(f"ImageNet weights from the attached dataset {attached['weights']}.")
    settings = load_settings()
    settings.output_dir.mkdir(parents=True, exist_ok=True)
    if "outputs" in attached:
        copied = _copy_earlier_results(attached["outputs"], settings.output_dir)
        if copied:
            notes.append(f"Earlier results copied from {attached['outputs']}: {', '.join(copied)}.")
    if fetch:
        from hello_dl import fetch as fetching  # local: needs the packages the install step adds
        from hello_dl import weights

        fetching.fetch_data(settings, progress=True)
        if weights.uses_pretrained_weights(settings):
            weights.resolve_weights(settings)
    return Prepared(platform=platform, home=home, output_dir=settings.output_dir,
                    data_source=str(settings.data_source), weights=str(settings.weights), notes=notes)


def has_gpu() -> bool:
    """Whether an NVIDIA GPU is attached (looked up without importing TensorFlow)."""
    return Path("/dev/nvidia0").exists() or shutil.which("nvidia-smi") is not None


# --- links and the install cell (stamped into the notebooks by scripts/stamp_badges.py) -------------
COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
KAGGLE_BADGE = "https://kaggle.com/static/images/open-in-kaggle.svg"
BINDER_BADGE = "https://mybinder.org/badge_logo.svg"
INSTALL_CELL_ID = "cloud-install"


def github_repository(repository: str) -> str:
    """``owner/name`` of a GitHub repository address (the platforms open notebooks from GitHub)."""
    prefix = "https://github.com/"
    slug = repository.strip().removesuffix("/").removesuffix(".git")
    parts = slug[len(prefix):].split("/") if slug.startswith(prefix) else []
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"The repository address {repository!r} (pyproject.toml, [project.urls] Repository) must "
                         f"look like https://github.com/OWNER/NAME: Colab and Kaggle open notebooks from GitHub.")
    return "/".join(parts)


def release_tag(version: str) -> str:
    return f"v{version}"


def release_archive(repository: str, version: str) -> str:
    """The kit's source at its release tag, as pip installs it on Colab and Kaggle."""
    return f"https://github.com/{github_repository(repository)}/archive/refs/tags/{release_tag(version)}.zip"


def notebook_links(repository: str, version: str, notebook: str) -> dict[str, str]:
    """"Open in Colab" and "Open in Kaggle" addresses of ``notebook`` (e.g. ``notebooks/00_x.ipynb``)
    at the release tag, so the notebook and the kit it installs always belong together."""
    blob = f"{github_repository(repository)}/blob/{release_tag(version)}/{notebook}"
    return {"colab": f"https://colab.research.google.com/github/{blob}",
            "kaggle": f"https://kaggle.com/kernels/welcome?src=https://github.com/{blob}"}


def binder_link(repository: str, version: str) -> str:
    return f"https://mybinder.org/v2/gh/{github_repository(repository)}/{release_tag(version)}?urlpath=lab/tree/notebooks"


def badge_line(repository: str, version: str, notebook: str) -> str:
    links = notebook_links(repository, version, notebook)
    return (f"[![Open In Colab]({COLAB_BADGE})]({links['colab']}) "
            f"[![Open In Kaggle]({KAGGLE_BADGE})]({links['kaggle']})")


def install_cell(repository: str, version: str, notebook_number: str) -> str:
    """The notebooks' install cell. It must run before the kit can be imported on a cloud platform,
    and do nothing anywhere else; on Kaggle without internet it takes the kit's wheel from an
    attached dataset (Kaggle's working folder is /kaggle/working, so ../input is /kaggle/input).
    pip runs as a shell line rather than as ``%pip``, whose closing "you may need to restart the
    kernel" would send participants to restart for nothing (nothing loaded is replaced)."""
    archive = release_archive(repository, version)
    return "\n".join([
        "# Google Colab and Kaggle only: installs the kit there (about a minute). Anywhere else this does nothing.",
        "import glob, os, sys",
        f'KIT = os.environ.get("{KIT_SOURCE_VARIABLE}") or (sorted(glob.glob("../input/*/hello_dl-*.whl")) or ["{archive}"])[-1]',
        f'if os.environ.get("{PLATFORM_MARKERS["colab"]}") or os.environ.get("{PLATFORM_MARKERS["kaggle"]}"):',
        '    !"{sys.executable}" -m pip install --quiet --no-deps --disable-pip-version-check "{KIT}"',
        "    import hello_dl.cloud",
        f'    hello_dl.cloud.setup("{notebook_number}")',
    ])


# --- the notebook's entry point ------------------------------------------------------------------
def setup(notebook: str | None = None, *, keep_results: bool | None = None, echo=say) -> None:
    """What the install cell calls after ``pip install --no-deps`` of the kit; a no-op off Colab/Kaggle.

    Checks the platform's TensorFlow/Keras (a plain refusal outside the supported range),
    installs what is missing without touching what is there, prepares data, weights and outputs
    (:func:`prepare`, which returns the details) and says so in a few lines. Returns nothing, so
    the notebook cell shows only those lines.
    """
    platform = detect()
    if platform is None:
        return None
    started = time.monotonic()
    found = check_versions(platform=platform)
    attached_kit = find_attached(KAGGLE_INPUT).get("kit") if platform == "kaggle" else None
    install_missing(wheels=attached_kit, echo=echo)
    try:
        prepared = prepare(notebook, platform=platform, keep_results=keep_results, echo=echo)
    except HelloDLError as exc:
        if isinstance(exc, CloudSetupError):
            raise
        raise CloudSetupError(str(exc)) from None
    gpu = "a GPU is attached" if has_gpu() else f"no GPU is attached (to get one: {GPU_TIPS[platform]})"
    echo(f"Ready on {PLATFORM_NAMES[platform]} in {time.monotonic() - started:.0f} s: kit {_kit_version()}, "
         f"the platform's own TensorFlow {found['tensorflow']} and Keras {found['keras']}; {gpu}.")
    echo(f"Results go to {prepared.output_dir}.")
    for note in prepared.notes:
        echo(note)


def _kit_version() -> str:
    from hello_dl import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    """``python -m hello_dl.cloud [NOTEBOOK]``: the same as the install cell's setup call, in a shell."""
    args = sys.argv[1:] if argv is None else argv
    if detect() is None:
        print("Not on Colab or Kaggle: nothing to do (the kit is set up with `make` or Docker here).")
        return 0
    try:
        setup(args[0] if args else None)
    except HelloDLError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = [
    "INSTALL_CELL_ID", "badge_line", "binder_link", "install_cell", "notebook_links", "release_archive",
    "CloudSetupError", "InstallPlan", "KIT_SOURCE_VARIABLE", "PLATFORM_MARKERS", "Prepared", "RESULT_NOTEBOOKS",
    "check_versions", "detect", "find_attached", "has_gpu", "install_missing", "plan_install",
    "platform_versions", "prepare", "setup", "supported_range",
]
