"""The ``edgeae`` command line: parse, call one library function, write the result.

Each subcommand lives in its own module under ``edgeae.cli`` and exposes
``register(subparsers) -> argparse.ArgumentParser`` and ``run(args) -> int``, and optionally
``needs(args) -> {module: extra}``: the optional packages it will import, checked before any work starts.
Command modules keep heavy imports inside ``run`` so that ``edgeae --help`` stays fast. Third-party
warnings and logs are captured unless ``-v`` is given (``edgeae.logs``).
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import BrokenExecutor

from edgeae._version import __version__
from edgeae.cli_conventions import DASH_REFUSED as DASH_REFUSED
from edgeae.cli_conventions import VERBOSE_HELP as VERBOSE_HELP
from edgeae.cli_conventions import CommandParser, dash_given
from edgeae.firmware_sim.cli_console import GuardedStdout as _GuardedStdout
from edgeae.firmware_sim.cli_console import StdoutError as StdoutError
from edgeae.firmware_sim.cli_console import (
    console_keeps_going,
    err_line,
    escape_unencodable,
    ignore_signals_at_exit,
    keep_status,
    silence_stdout,
    stdout_failure,
)
from edgeae.printable import printable

# name -> module (a plain dict: easy to read and grep)
COMMANDS: dict[str, str] = {
    "demo": "edgeae.cli.demo",
    "reconstruct": "edgeae.cli.reconstruct",
    "train": "edgeae.cli.train",
    "zoo": "edgeae.cli.zoo",
    "score": "edgeae.cli.score",
    "evaluate": "edgeae.cli.evaluate",
    "export": "edgeae.cli.export",
    "downlink": "edgeae.cli.downlink",
    "ground": "edgeae.cli.ground",
    "scan": "edgeae.cli.scan",
    "links": "edgeae.cli.links",
}


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 2, no traceback."""


class DataError(CLIError):
    """An input whose content cannot be used (a packet file that holds no packet): one line, exit status 1, as an
    image that cannot be read (README's table: a data error, not a usage error)."""


def seed_arg(limit: int = 2**32 - 1) -> Callable[[str], int]:
    """argparse type: a whole-number seed in 0..``limit`` (refused while parsing, not by a library after the
    scoring; the default limit is scikit-learn's ``random_state`` range)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole-number seed, got {text!r}") from None
        if not 0 <= value <= limit:
            raise argparse.ArgumentTypeError(f"a seed is 0 to {limit}, got {value}")
        return value

    return parse


def _whole_at_least(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"must be at least {least}, got {value}")
    return value


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1 (a count, a stride, a thread count)."""
    return _whole_at_least(text, 1)


def non_negative_int(text: str) -> int:
    """argparse type: a whole number >= 0 (an overlap, a number of steps)."""
    return _whole_at_least(text, 0)


def positive_seconds(text: str) -> float:
    """argparse type: a finite number of seconds > 0 (a time-out)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds above 0, got {text}")
    return value


_MADE_FOLDERS: list[os.PathLike[str]] = []  # folders check_writable made, removed again if the command fails


def _remove_made_folders() -> None:
    """After a failed command: remove the folders ``check_writable`` made that are still empty (deepest first),
    so that a refusal after the check leaves nothing behind."""
    import contextlib
    from pathlib import Path

    # the deepest first over every check's folders (one command may check several outputs in sibling folders)
    for folder in sorted({Path(f) for f in _MADE_FOLDERS}, key=lambda f: len(f.parts), reverse=True):
        with contextlib.suppress(OSError):  # not empty (the command wrote something) or gone: leave it
            os.rmdir(folder)
    _MADE_FOLDERS.clear()


def check_writable(path: str | os.PathLike[str], flag: str) -> None:
    """Refuse, before any work, an output file whose folder cannot be made or written (a read-only disk, a
    permission, a file where a folder should be): a file is created and removed in that folder to find out.
    The folders it makes are removed again if the command then fails with an error and they are still empty."""
    import tempfile
    from pathlib import Path

    folder = Path(path).parent
    made = [f for f in (folder, *folder.parents) if not f.exists()]
    try:
        for f in reversed(made):  # the outermost first, each recorded as it is made
            f.mkdir(exist_ok=True)
            _MADE_FOLDERS.append(f)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".edgeae-write-check-"):
            pass
    except OSError as exc:
        raise CLIError(f"{flag} {path}: cannot write in {folder} ({exc.strerror or exc})") from None


def udp_port(text: str) -> int:
    """argparse type: a UDP port, 0-65535 (0: the system picks a free one where listening)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a UDP port is 0-65535, got {value}")
    return value


def add_views_argument(p: argparse.ArgumentParser, help_text: str) -> None:
    """``--views 1..VIEWS``: VAE latents of each patch's first N rotations and flips (``edgeae score`` and
    ``edgeae evaluate``; :mod:`edgeae.anomaly.views`)."""
    from edgeae.anomaly.views import VIEWS

    p.add_argument(
        "--views", type=int, choices=range(1, VIEWS + 1), default=1, metavar=f"{{1..{VIEWS}}}", help=help_text
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgeae",
        description="Machine learning for spacecraft and ground stations: sparse-pixel reconstruction, "
        "patch anomaly detection, export to flight runtimes, CCSDS downlink and ground decoding.",
    )
    parser.add_argument("--version", action="version", version=f"edgeae {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help=VERBOSE_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=CommandParser)
    for module_name in COMMANDS.values():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue  # command not available in this build
        p = module.register(sub)
        p.set_defaults(_run=module.run, _needs=getattr(module, "needs", None))
    return parser


def _err(line: str) -> None:
    """One error line on stderr, a file name's bytes that are not UTF-8 written as ``\\xff`` (as the pages and the
    console do), not as the ``\\udcff`` Python's stderr would print."""
    err_line(printable(line))  # a stderr that cannot take it (2>&1 | tee, stopped) leaves the status as it is


def label(args: argparse.Namespace) -> str:
    """``edgeae COMMAND`` or, for a command with actions, ``edgeae COMMAND ACTION`` (``edgeae downlink send``): the
    prefix of its error and "interrupted" lines, the one argparse writes too (until session 37 a command's own lines
    said ``edgeae downlink: error:`` where argparse said ``edgeae downlink send: error:``)."""
    action = getattr(args, f"{args.command}_command", None)
    return f"edgeae {args.command}" + (f" {action}" if isinstance(action, str) else "")


def main(argv: Sequence[str] | None = None) -> int:
    """The command line (``argv``: the arguments; None: this process's own, the console entry point, which keeps
    the status once decided until the process ends: :func:`edgeae.firmware_sim.cli_console.keep_status`)."""
    escape_unencodable()  # before argparse prints any help (β, λ): an ASCII console writes escapes, no traceback
    if argv is None:  # this process's command line: the status stays once the interpreter ends
        ignore_signals_at_exit()
    parser = build_parser()
    args = parser.parse_args(argv)
    args._argv = list(sys.argv[1:] if argv is None else argv)  # which flags were given (train --resume checks)
    from edgeae import logs

    args._sigterm = []  # "SIGTERM" once it came (the "interrupted" line names it)
    restore = _sigterm_as_interrupt(args.command or "", args._sigterm)  # from the start to the result
    keep: Callable[[], object] = lambda: None  # noqa: E731
    code: int | None = None
    try:
        with logs.session(args.verbose):  # third-party warnings and logs hidden unless -v
            code = _dispatch(parser, args)
            keep = keep_status(code)  # from here a signal ends the process with this status, not 130 or 143
        return code
    except KeyboardInterrupt:  # the instant between the result and keep_status, or a cleanup after an error
        if code is None:
            how = f" ({args._sigterm[0]})" if args._sigterm else ""
            _err(f"\n{label(args)}: interrupted{how}")
            return 130
        return code
    finally:
        if argv is not None:  # called in-process (a test, a script): its own handlers back
            keep()
            restore()


def _dispatch(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    dash = dash_given(parser, args)
    if dash:
        _err(f"{label(args)}: error: {dash} -: {DASH_REFUSED}")
        return 2
    try:
        return _run_command(args)
    finally:
        _MADE_FOLDERS.clear()


def _run_command(args: argparse.Namespace) -> int:
    """Run the command; on any error exit, the empty folders ``check_writable`` made are removed again."""
    try:
        code = _run_guarded(args)
    except BaseException:
        _remove_made_folders()
        raise
    if code != 0:
        _remove_made_folders()
    return code


# commands that handle SIGTERM themselves (train: exit 143 on purpose, from its start: edgeae.cli.train_cae)
SIGTERM_OWN = ("scan", "ground", "train")


def _sigterm_as_interrupt(command: str, got: list[str]) -> Callable[[], object]:
    """SIGTERM (``kill``, a batch system's stop) interrupts the command as Ctrl-C does (its cleanup runs, the
    "interrupted (SIGTERM)" line, exit 130), but for the commands that handle it themselves; returns what puts the
    previous handler back (not over one set since: keep_status's). A SIGTERM the caller set to be ignored stays
    ignored: the installer shared with firmware-sim and the commands of :data:`SIGTERM_OWN`
    (:func:`edgeae.firmware_sim.cli_preflight._sigterm_as_ctrl_c`) holds that check."""
    if command in SIGTERM_OWN:
        return lambda: None
    from edgeae.firmware_sim import cli_preflight

    return cli_preflight._sigterm_as_ctrl_c(got)


def _run_guarded(args: argparse.Namespace) -> int:
    """The command's status; a stdout that failed is said in one line after it, and the status stays the command's
    own when not 0 (``ground decode`` interrupted with its stdout closed by the same Ctrl-C: 130; until session 37
    always 1); 1 where the command would have ended with 0."""
    inner = sys.stdout
    guard = _GuardedStdout(inner) if inner is not None and not isinstance(inner, _GuardedStdout) else None
    if guard is not None:
        sys.stdout = guard
    try:
        code = _status(args)
    finally:
        if guard is not None and sys.stdout is guard:
            sys.stdout = inner
    if guard is None or guard.failure is None:
        return code
    _err(f"{label(args)}: error: {stdout_failure(guard.failure)}; its console output is cut short")
    silence_stdout(inner)
    return code or 1


def _status(args: argparse.Namespace) -> int:
    from edgeae._headers import ImageMissingError, ImageReadError

    got: list[str] = getattr(args, "_sigterm", [])  # main's SIGTERM handler records into it
    name = label(args)
    try:
        if getattr(args, "_needs", None):
            from edgeae._optional import check_extras

            check_extras(name, args._needs(args))
        code = int(args._run(args) or 0)
        with console_keeps_going():  # its last lines: a stdout that cannot take them is reported with the status
            sys.stdout.flush()
        return code
    except KeyboardInterrupt:  # Ctrl-C: a message, not a traceback (a scan keeps what it finished)
        again = " (run the same command again to resume)" if args.command == "scan" else ""
        how = f" ({got[0]})" if got else ""
        _err(f"\n{name}: interrupted{how}{again}")
        return 130
    except StdoutError as exc:  # stdout closed (| head, | true) or full (> /dev/full): the files it wrote stay
        if isinstance(sys.stdout, _GuardedStdout) and sys.stdout.failure is not None:
            return 0  # said with the status by _run_guarded
        _err(f"{name}: error: {stdout_failure(exc)}; its console output is cut short")
        silence_stdout(sys.stdout)
        return 1
    except BrokenExecutor as exc:  # a worker process died (killed, out of memory): no traceback, a way on
        again = "; run the same command again to resume" if args.command == "scan" else ""
        _err(f"{name}: error: a worker process died ({exc}){again}")
        return 1
    except BrokenPipeError as exc:  # a pipe other than stdout (a stdout written past the guard: silenced too)
        _err(f"{name}: error: a pipe it wrote to was closed ({exc})")
        silence_stdout(sys.stdout)
        return 1
    except ImageReadError as exc:  # an input that cannot be read (corrupt, truncated, not an image): a data error
        _err(f"{name}: error: {exc}")
        if isinstance(exc, ImageMissingError):  # a wrong path: a usage error, refused before any work
            return 2
        return 2 if args.command == "train" else 1  # train: 2 for bad data (docs/training.md, its own statuses)
    except DataError as exc:  # an input that holds nothing usable: a data error, as an unreadable image
        _err(f"{name}: error: {exc}")
        return 1
    except (CLIError, OSError, ValueError, ImportError) as exc:  # OSError: a missing file, a folder as a file, ...
        from edgeae._optional import base_missing

        _err(f"{name}: error: {base_missing(exc) or exc}")
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
