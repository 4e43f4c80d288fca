"""How ``firmware-sim`` ends a command: its status and the one line of an error, an interrupt, a stdout that failed
or memory that ran out, never a traceback (:func:`_dispatch`; the parser and ``main`` are in :mod:`.cli`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from edgeae.cli_conventions import DASH_REFUSED, dash_given
from edgeae.memory_probe import SOURCE_NAMES, tightest  # standard library only: the MemoryError line imports nothing

from .cli_console import GuardedStdout, StdoutError, console_keeps_going, silence_stdout, stdout_failure
from .cli_outputs import say
from .faults import FaultSpecError
from .mission import MissionError

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a Ctrl-C
EXIT_STDOUT = 1  # stdout closed or full, the command otherwise done: edgeae's status for it (README), one line


def _how(received: Sequence[str]) -> str:
    return f" ({received[0]})" if received else ""


def _dispatch(parser: argparse.ArgumentParser, args: argparse.Namespace, received: Sequence[str] = ()) -> int:
    if not getattr(args, "_fn", None):
        parser.print_help()
        return 2
    dash = dash_given(parser, args)
    if dash:
        say(f"firmware-sim {args.command}: error: {dash} -: {DASH_REFUSED}", err=True)
        return 2
    inner = sys.stdout
    guard = GuardedStdout(inner) if inner is not None and not isinstance(inner, GuardedStdout) else None
    if guard is not None:
        sys.stdout = guard
    try:
        code = _status(args, received)
    finally:
        if guard is not None and sys.stdout is guard:
            sys.stdout = inner
    if guard is None or guard.failure is None:
        return code
    # | head, | tee that a Ctrl-C stopped too, > /dev/full: one line, and a status of the command's own (130, 4, 3,
    # 2, check's 1) stays; 1 only where the command would have ended with 0 (until session 37 always 1)
    say(
        f"firmware-sim {args.command}: error: {stdout_failure(guard.failure)}; its console output is cut short",
        err=True,
    )
    silence_stdout(inner)
    return code or EXIT_STDOUT


def _status(args: argparse.Namespace, received: Sequence[str]) -> int:
    """The command's own status, or that of the error that stopped it (one line each)."""
    try:
        code = int(args._fn(args))
        with console_keeps_going():  # its last lines: a stdout that cannot take them is reported with the status
            sys.stdout.flush()
        return code
    except StdoutError as exc:  # a guarded stdout kept the failure: said by _dispatch with the status
        if isinstance(sys.stdout, GuardedStdout) and sys.stdout.failure is not None:
            return 0
        say(f"firmware-sim {args.command}: error: {stdout_failure(exc)}; its console output is cut short", err=True)
        silence_stdout(sys.stdout)
        return EXIT_STDOUT
    except BrokenPipeError as exc:  # a pipe other than stdout
        say(f"firmware-sim {args.command}: error: a pipe it wrote to was closed ({exc})", err=True)
        silence_stdout(sys.stdout)
        return EXIT_STDOUT
    except (MissionError, FaultSpecError, OSError, ValueError, ImportError) as exc:
        say(f"firmware-sim {args.command}: error: {exc}", err=True)
        return 2
    except MemoryError as exc:  # an allocation no check foresaw: one line naming what the board gives, no traceback
        say(f"firmware-sim {args.command}: error: out of memory{_why(exc)}{_room_left()}", err=True)
        return 2
    except KeyboardInterrupt:  # check, bench, or run before its frame loop (loading models): nothing to keep
        say(f"firmware-sim {args.command}: interrupted{_how(received)}", err=True)
        return EXIT_INTERRUPTED


def _why(exc: BaseException) -> str:
    """`` (TEXT)`` of an error whose text says more than its type; '' for a bare ``MemoryError()``."""
    text = str(exc).strip()
    return f" ({text})" if text and text != type(exc).__name__ else ""


def _room_left() -> str:
    """``; this process can get N MiB (SOURCE) more``, read while memory is short: nothing imported (until review
    r9 of session 36 the handler imported numpy-heavy modules, whose import failed too: a double traceback, exit
    1), and any failure of the probe leaves the line without it."""
    try:
        found = tightest()
        if found is None:
            return ""
        return f"; this process can get {found[0] / 1048576:,.1f} MiB ({SOURCE_NAMES.get(found[1], found[1])}) more"
    except Exception:  # the error line itself must be printed whatever the probe does
        return ""
