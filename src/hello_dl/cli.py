"""The ``hello-dl`` command: thin wrappers over the package, one subcommand per step.

Every subcommand accepts ``--profile`` and ``--set KEY=VALUE`` (repeatable), the same knobs
as the ``HELLO_DL_*`` environment variables, so a step run from the shell and the same step
run from a notebook use the same settings.

No user mistake or everyday OS problem ends in a Python traceback: the kit's own errors and
OS errors (a full disk, a read-only or forbidden folder) are printed as one plain message, exit
status 2. Anything else is a bug in the kit: a short line says so; ``--debug`` (or
``HELLO_DL_DEBUG=1``) shows the whole traceback. TensorFlow's C++ start-up lines ("failed call
to cuInit" on every computer without a GPU) are kept off the screen, as the notebooks' kernel
does; ``--debug`` shows them too.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import re
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Callable, Iterator, Sequence

from hello_dl import dataset, dicom, environment, fetch, groups, runs, split, weights
from hello_dl.errors import HelloDLError
from hello_dl.settings import Settings, load_settings


class UserError(HelloDLError):
    """A command-line usage problem the user can fix."""


def _parse_sets(pairs: Sequence[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise UserError(f"--set expects KEY=VALUE, got {pair!r} (for example --set image_size=150).")
        key, value = pair.split("=", 1)
        out[key.strip().lower().replace("-", "_")] = value
    return out


def _settings(args: argparse.Namespace, **extra: object) -> Settings:
    overrides = _parse_sets(args.set or [])
    overrides.update({k: v for k, v in extra.items() if v is not None})
    return load_settings(args.profile, **overrides)


# --- subcommands ---------------------------------------------------------------------------
def cmd_env(args: argparse.Namespace) -> int:
    print(environment.report(_settings(args)))
    return 0


def cmd_settings(args: argparse.Namespace) -> int:
    settings = _settings(args)
    print(settings.to_json() if args.json else settings)
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    settings = _settings(args, data_source=args.source, data_dir=args.data_dir)
    if not args.weights_only:
        folder = fetch.fetch_data(settings)
        print(f"Data ready and verified in {folder}")
    if args.weights or args.weights_only:
        path = weights.prefetch_weights(settings)
        print(f"Pretrained weights ready: {path}")
    return 0


def cmd_data_summary(args: argparse.Namespace) -> int:
    settings = _settings(args, data_dir=args.data_dir)
    print(dataset.summarize(settings).format())
    return 0


def cmd_split(args: argparse.Namespace) -> int:
    result = split.split_folder(Path(args.source), Path(args.destination), _settings(args))
    print(result.format())
    return 0


def cmd_dicom_to_png(args: argparse.Namespace) -> int:
    written = dicom.convert_folder(Path(args.source), Path(args.destination))
    for path in written:
        print(path)
    print(written.format(args.destination))
    return 0


# The commands below import their module when they run: training, evaluation and the notebook
# runner load TensorFlow/Keras, scikit-learn or Jupyter (seconds), which `hello-dl settings` and
# the data commands should not wait for.
def cmd_train(args: argparse.Namespace) -> int:
    settings = _settings(args)  # first: a wrong setting is said at once, not after TensorFlow has loaded
    from hello_dl import train  # loads TensorFlow (see above)

    result = train.train(settings)
    print(f"Run folder: {result.run_dir}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    run = runs.open_run(args.run, _settings(args))  # first: a wrong setting or folder is said at once
    from hello_dl import evaluate  # loads scikit-learn and Matplotlib (see above)

    metrics = evaluate.evaluate_run(run)
    for key, value in metrics.items():
        print(f"{key}: {value}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    settings = _settings(args)  # first: a wrong setting, or no finished run, is said at once
    run = runs.open_run(args.run, settings) if args.run else runs.latest(settings)
    from hello_dl import evaluate  # loads scikit-learn and Matplotlib (see above)

    for prediction in evaluate.predict_paths([Path(p) for p in args.paths], run):
        print(prediction)
    return 0


def cmd_group(args: argparse.Namespace) -> int:
    name = groups.assign_group(args.participant)
    print(f"Participant {args.participant!r} → {groups.describe_group(name)}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    settings = _settings(args)  # first: a wrong setting is said at once
    from hello_dl import runner  # loads Jupyter (see above)

    summary = runner.run_all(settings)
    print(f"Executed notebooks, figures and summary in {summary.parent}")
    print(f"Summary: {summary}")
    return 0


def cmd_reference(args: argparse.Namespace) -> int:
    started = time.monotonic()
    settings = _settings(args)  # first: a wrong setting is said at once
    from hello_dl import reference  # loads TensorFlow (see above)

    fetch.fetch_data(settings)
    made = reference.train_reference_groups(settings, args.groups, verbose=0 if args.quiet else 2)
    print(f"\nDone in {(time.monotonic() - started) / 60:.1f} min. Notebook 05 now shows:")
    for group, run_dir in made.items():
        print(f"  group {group}: {run_dir}")
    print(f"Comparison figure: {reference.reference_dir(settings) / reference.COMPARISON_FIGURE}")
    return 0


# --- the room server (issue 15): seat cards and each participant's share of the machine ----------
def cmd_room_cards(args: argparse.Namespace) -> int:
    from hello_dl.room import cards
    from hello_dl.settings import project_root

    folder = Path(args.folder) if args.folder else project_root() / "room"
    made = cards.make_cards(args.seats, folder, prefix=args.prefix, instructor=args.instructor,
                            url=args.url, force=args.force)
    print(f"{made.participants} seat card(s) and the instructor's card ({args.instructor}) in {made.folder}:")
    print(f"  print      {made.cards_page}  (holds the codes: keep it private, delete it after the session)")
    print(f"  the hub    {made.seats_file}  (hashes of the codes only; mode 0600)")
    return 0


def cmd_room_plan(args: argparse.Namespace) -> int:
    from hello_dl.room import sizing

    # Every seat gets a container, the instructor's too.
    print(sizing.participant_share(args.seats + 1).describe())
    return 0


def add_room_commands(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:
    room = sub.add_parser("room", help="The room server (JupyterHub): seat cards, each participant's share.",
                          description="The room server (JupyterHub, one container per participant); "
                                      "see docker/hub/README.md.")
    room_sub = room.add_subparsers(dest="room_command", required=True, metavar="ROOM_COMMAND")
    p = room_sub.add_parser("cards", help="Make a printable seat card per seat and the hub's seats.json.",
                            description="Make one card per seat (seat name + random code) as a printable page, "
                                        "and the seats.json the hub reads (hashes only, mode 0600).")
    p.add_argument("--seats", type=int, required=True, help="number of participant seats (1-500)")
    p.add_argument("--folder", help="where to write cards.html and seats.json (default: room/ in the kit's folder)")
    p.add_argument("--url", help="the address participants open, printed on every card (e.g. https://10.0.0.5)")
    p.add_argument("--prefix", default="seat", help="seat names are PREFIX-01, PREFIX-02, ... (default: seat)")
    p.add_argument("--instructor", default="instructor", help="the instructor's (hub admin's) seat name")
    p.add_argument("--force", action="store_true", help="replace an existing set (its cards stop working)")
    p.set_defaults(func=cmd_room_cards)
    p = room_sub.add_parser("plan", help="Show each participant's CPU and memory share on this machine.",
                            description="Apply the room server's sizing rule to this machine.")
    p.add_argument("--seats", type=int, required=True, help="number of participant seats (the instructor's is added)")
    p.set_defaults(func=cmd_room_plan)
    return room_sub


# --- the room's results board (issue 16): every participant's run, pooled per group ------------
def _token(args: argparse.Namespace) -> str | None:
    if not args.token_file:
        return None
    try:
        return Path(args.token_file).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise UserError(f"Cannot read the token file {args.token_file} ({exc.strerror}). Make a token on the hub's "
                        "token page (/hub/token) and save it in a file only you can read.") from None


def cmd_room_export(args: argparse.Namespace) -> int:
    from hello_dl.room import board

    settings = _settings(args)
    if args.reference:
        from hello_dl import reference  # loads TensorFlow (reference imports train)

        found = reference.reference_runs(settings)
        if not found:
            raise UserError(f"No reference runs in {reference.reference_dir(settings)}: make them first with "
                            f"`hello-dl reference --profile {settings.profile}`.")
        for line in board.share_references(settings, found, where=args.to, token=_token(args)):
            print(line)
        return 0
    run = runs.open_run(args.run, settings) if args.run else runs.latest(settings)
    key, said = board.share(run, settings, where=args.to, token=_token(args))
    if key is None:
        raise UserError(said)
    print(said)
    if isinstance(board.locate(settings, args.to, _token(args)), board.FolderBoard):
        print("Hand this file to the instructor (USB stick, shared drive or e-mail): it holds your run's curves and "
              "numbers, no images and no model.")
    return 0


def cmd_room_board(args: argparse.Namespace) -> int:
    from hello_dl import reference  # loads TensorFlow (reference imports train)
    from hello_dl.room import board

    settings = _settings(args)
    out = Path(args.out) if args.out else Path(settings.output_dir) / "board-view"
    shown = board.watch(settings, out, references=reference.reference_runs(settings), where=args.hub or args.folder,
                        token=_token(args), measure=args.measure, every=args.every, minutes=args.minutes)
    if shown is not None and not args.every:
        print(shown.summary(args.measure))
    print(f"Open {out / board.VIEW_PAGE} in a web browser" + (" (it reloads itself)." if args.every else "."))
    return 0


def add_board_commands(room_sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = room_sub.add_parser("export", parents=[common], help="Put your run on the room's board (a small file).",
                            description="Write your newest finished run's record (seat, group, seed, curves, final "
                                        "numbers) into the board folder, or send it to the room server's board.")
    p.add_argument("--run", help="run folder (default: your newest finished run)")
    p.add_argument("--to", help="a folder (e.g. a shared drive) or the hub board's address "
                                "(default: HELLO_DL_BOARD, else <outputs>/board)")
    p.add_argument("--reference", action="store_true",
                   help="the instructor's reference runs instead (on the room server: as the hub's admin)")
    p.add_argument("--token-file", help="a file with a hub token (default: JUPYTERHUB_API_TOKEN)")
    p.set_defaults(func=cmd_room_export)
    p = room_sub.add_parser("board", parents=[common], help="The instructor's live view of the room's board.",
                            description="Pool every run on the board (a folder of collected files, or the room "
                                        "server's board) and write board.png and board.html; with --every, again "
                                        "and again, so a browser shows the room live.")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--folder", help="the folder of collected record files (default: HELLO_DL_BOARD or "
                                        "<outputs>/board)")
    where.add_argument("--hub", help="the room server's board, e.g. https://room.example.org/services/room-board/")
    p.add_argument("--token-file", help="a file with a hub token (default: JUPYTERHUB_API_TOKEN)")
    p.add_argument("--out", help="where to write board.png and board.html (default: <outputs>/board-view)")
    p.add_argument("--every", type=float, default=0, help="refresh every this many seconds (default: once)")
    p.add_argument("--minutes", type=float, default=90, help="with --every: stop after this long (default: 90)")
    p.add_argument("--measure", choices=["loss", "accuracy"], default="loss",
                   help="the gap shown: validation minus training loss (default) or training minus validation "
                        "accuracy")
    p.set_defaults(func=cmd_room_board)


# --- the parser ------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--profile", help="paper | conference | smoke (default: HELLO_DL_PROFILE or conference)")
    common.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="override one setting, e.g. --set image_size=150 (repeatable)")
    common.add_argument("--debug", action="store_true",
                        help="show full Python tracebacks and TensorFlow's own log lines (or HELLO_DL_DEBUG=1)")

    parser = argparse.ArgumentParser(prog="hello-dl", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Callable[[argparse.Namespace], int], help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help_text, description=help_text)
        p.set_defaults(func=func)
        return p

    add("env", cmd_env, "Report versions and whether training runs on a GPU or the CPU.")
    p = add("settings", cmd_settings, "Show every setting and where its value came from.")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p = add("fetch", cmd_fetch, "Download (or copy) the dataset and verify every file; optionally the weights.")
    p.add_argument("--source", help="URL, local folder or .zip (default: HELLO_DL_DATA_SOURCE or the paper's archive)")
    p.add_argument("--data-dir", help="where to put the verified images (default: HELLO_DL_DATA_DIR)")
    p.add_argument("--weights", action="store_true", help="also prefetch the ImageNet weights for offline use")
    p.add_argument("--weights-only", action="store_true", help="only prefetch the ImageNet weights")
    p = add("data-summary", cmd_data_summary, "Counts, image sizes, class mapping and duplicates of the dataset.")
    p.add_argument("--data-dir", help="dataset folder (default: HELLO_DL_DATA_DIR)")
    p = add("split", cmd_split, "Split a folder of <class>/ images into TRAIN/VAL/TEST (copies; sources untouched).")
    p.add_argument("source", help="folder with one sub-folder of images per class")
    p.add_argument("destination", help="new folder to create TRAIN/VAL/TEST in")
    p = add("dicom-to-png", cmd_dicom_to_png, "Convert a folder of DICOM files into 8-bit PNGs (windowed).")
    p.add_argument("source", help="folder with DICOM files (searched recursively)")
    p.add_argument("destination", help="folder for the PNG files (created; existing files are never overwritten)")
    add("train", cmd_train, "Train the classifier with the current settings; prints the run folder.")
    p = add("evaluate", cmd_evaluate, "Recompute metrics and figures of a saved run.")
    p.add_argument("run", help="run folder (printed by hello-dl train)")
    p = add("predict", cmd_predict, "Predict chest vs abdomen for image files or folders (PNG, JPEG, DICOM).")
    p.add_argument("paths", nargs="+", help="image files or folders")
    p.add_argument("--run", help="run folder whose best model to use (default: the latest run)")
    p = add("group", cmd_group, "Show the experiment group a participant name or number is assigned.")
    p.add_argument("participant")
    add("run", cmd_run, "Run the whole tutorial headless: every notebook in order, then a summary page.")
    p = add("reference", cmd_reference, "Train the conference experiment groups headless: the instructor's "
            "reference curves for notebook 05 (one full training run per group).")
    p.add_argument("--groups", nargs="+", default=list(groups.GROUPS), metavar="GROUP",
                   help=f"which groups to train (default: all of {' '.join(groups.GROUPS)})")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines from Keras")
    add_board_commands(add_room_commands(sub), common)
    return parser


# --- the console: plain messages, no tracebacks, no C++ chatter -------------------------------------
#: A line of TensorFlow's C++ logging (absl/glog layout), e.g. "E0000 00:00:1796163523.176184  17245
#: cuda_platform.cc:52] failed call to cuInit: ...", and the notice absl prints before its first one.
_NATIVE_LOG_LINE = re.compile(rb"^(?:[IWEF]\d{4} [\d:.]+ +\d+ [^ \]]+:\d+\] "
                              rb"|WARNING: All log messages before absl::InitializeLog\(\) is called)")
#: The start of a line that may still become one of those (held back until its end arrives).
_NATIVE_LOG_START = re.compile(rb"^(?:[IWEF]\d{0,4}(?: |$)|W(?:A(?:R(?:N(?:I(?:N(?:G(?::.*)?)?)?)?)?)?)?$)")


@contextlib.contextmanager
def native_logs_hidden() -> Iterator[None]:
    """Keep TensorFlow's C++ log lines off the screen; every other byte written to stderr passes.

    TensorFlow writes those lines straight to file descriptor 2, below Python, before its own
    log settings apply (TF_CPP_MIN_LOG_LEVEL does not reach them). So stderr is pointed at a pipe
    for the duration, and a thread copies it to the real stderr line by line, leaving them out.
    A line without its end yet (a progress bar's) is passed on at once unless it may become one.
    """
    sys.stderr.flush()
    try:
        real = os.dup(2)
        read_end, write_end = os.pipe()
    except OSError:  # no stderr to filter (a closed descriptor): nothing to hide either
        yield
        return
    os.dup2(write_end, 2)
    os.close(write_end)

    def copy() -> None:
        pending = b""
        with contextlib.suppress(OSError):
            while chunk := os.read(read_end, 65536):
                *lines, pending = (pending + chunk).split(b"\n")
                out = b"".join(line + b"\n" for line in lines if not _NATIVE_LOG_LINE.match(line))
                if pending and not _NATIVE_LOG_START.match(pending):
                    out, pending = out + pending, b""
                if out:
                    os.write(real, out)
            if pending and not _NATIVE_LOG_LINE.match(pending):
                os.write(real, pending)
        os.close(read_end)

    copier = threading.Thread(target=copy, name="hello-dl stderr", daemon=True)
    copier.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(real, 2)  # closes the pipe's last writer (unless a child process still holds it)
        copier.join(timeout=5)
        os.close(real)


def debug_requested(args: argparse.Namespace | None = None) -> bool:
    flag = os.environ.get("HELLO_DL_DEBUG", "").strip().lower() in {"1", "true", "yes", "on"}
    return flag or bool(getattr(args, "debug", False))


#: OS errors that are the computer's state, not a bug: said in plain words, exit status 2.
_EVERYDAY_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT,
                    errno.EISDIR, errno.ENOTDIR, errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.EIO,
                    errno.ENAMETOOLONG, errno.EBUSY, errno.ETXTBSY, errno.EEXIST, errno.ENOTEMPTY}


def os_error_message(exc: OSError) -> str:
    """An OS error that escaped the kit's own checks, in words a newcomer can act on."""
    name = exc.filename or getattr(exc, "filename2", None)
    if name and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):  # always a write
        return str(runs.storage_error(exc, Path(name)))
    what = exc.strerror or str(exc)
    where = f" ({name})" if name else ""
    advice = {errno.ENOENT: "Check the path, and that the earlier step that makes it has run.",
              errno.EACCES: "You may not read or write it: ask whoever owns it for access, or use a file or "
                            "folder of your own.",
              errno.EIO: "The disk or network drive reported an error: check it, then run again.",
              errno.ENOMEM: "Close other programs or notebooks, or lower batch_size or image_size."}
    advice[errno.EPERM] = advice[errno.EACCES]
    return f"{what}{where}. {advice.get(exc.errno, 'Check the file or folder named, then run again.')}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = debug_requested(args)
    with contextlib.nullcontext() if debug else native_logs_hidden():
        try:
            code = args.func(args)
            sys.stdout.flush()  # a closed output pipe is found here, inside the handlers below, not at exit
            return code
        except HelloDLError as exc:
            if debug:
                traceback.print_exc()
            print(f"hello-dl: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("hello-dl: interrupted; whatever was finished is kept.", file=sys.stderr)
            return 130
        except BrokenPipeError:  # the reader of our output went away (e.g. `| head`): nothing to say
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 141
        except OSError as exc:
            if debug or exc.errno not in _EVERYDAY_ERRNOS:
                raise
            print(f"hello-dl: {os_error_message(exc)}", file=sys.stderr)
            return 2
        except Exception as exc:  # noqa: BLE001 - a bug: one plain line, the traceback only on request
            if debug:
                raise
            if type(exc).__name__ == "ResourceExhaustedError":  # TensorFlow's out-of-memory, not a bug
                print("hello-dl: TensorFlow ran out of memory. Lower batch_size (e.g. --set batch_size=2) or "
                      "image_size (e.g. --set image_size=224), close other notebooks' kernels, and run again.",
                      file=sys.stderr)
                return 2
            print(f"hello-dl: this is a bug in the kit, not something you did ({type(exc).__name__}: {exc}). "
                  f"Run the same command again with --debug (or HELLO_DL_DEBUG=1) to see the details, and "
                  f"please report them.", file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main())
