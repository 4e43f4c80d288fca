"""The console of a command line, for ``firmware-sim`` and ``edgeae`` alike (standard library only, so the flight
runtime can import it): a stdout whose failure is reported as such (:class:`GuardedStdout`, :func:`stdout_failure`),
a console that cannot encode a character written with an escape (:func:`escape_unencodable`), and the status of a
command kept once it is decided (:func:`keep_status`, :func:`ignore_signals_at_exit`)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from typing import Any


class StdoutError(Exception):
    """A write to stdout failed (its reader stopped, a full disk behind ``>``): reported as such, not as a bare
    errno that reads like a failed output file."""


class GuardedStdout:
    """``sys.stdout`` while a command runs: a failed write or flush raises :class:`StdoutError`."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def write(self, text: str) -> int:
        try:
            return int(self._inner.write(text))
        except OSError as exc:
            raise StdoutError(exc) from exc

    def flush(self) -> None:
        try:
            self._inner.flush()
        except OSError as exc:
            raise StdoutError(exc) from exc

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def stdout_failure(exc: StdoutError) -> str:
    """What failed, for the command's one error line: ``stdout closed (the program reading it stopped)`` or
    ``cannot write to stdout: WHY``."""
    cause = exc.__cause__
    if isinstance(cause, BrokenPipeError):
        return "stdout closed (the program reading it stopped)"
    return f"cannot write to stdout: {getattr(cause, 'strerror', None) or cause}"


def silence_stdout(stream: Any) -> None:
    """Point descriptor 1 at /dev/null: no second error when Python flushes stdout at exit."""
    with contextlib.suppress(OSError, ValueError, AttributeError):  # a replaced stdout (tests) has no descriptor
        os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())


def escape_unencodable() -> None:
    """stdout and stderr write a character their encoding lacks as an escape (``\\u03b2``) instead of failing: a
    console in ASCII or Latin-1 (``PYTHONIOENCODING=ascii``, such a locale without UTF-8 mode) printed a traceback
    for ``--help`` (β) and failed commands whose text holds λ or × after their work was done (until session 37).
    Only a strict stream is changed; ``surrogateescape`` (Python's choice for a C locale) stays."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)  # a stream without it (a test's) is left as it is
        if reconfigure is not None and getattr(stream, "errors", None) == "strict":
            with contextlib.suppress(ValueError, OSError):
                reconfigure(errors="backslashreplace")


def _ignore_signals() -> None:
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError, OSError):
            if signal.getsignal(sig) is not None:  # None: set outside Python, left alone
                signal.signal(sig, signal.SIG_IGN)


def ignore_signals_at_exit() -> None:
    """For a console entry point, called as it starts: once the interpreter runs its exit functions, SIGINT and
    SIGTERM are ignored. Python puts SIG_DFL back for every signal with a Python handler as it finalises (after the
    exit functions), so a Ctrl-C landing there ended a finished command with a silent 130 (SIGTERM: 143); an ignored
    signal stays ignored. Registered first, so it runs after the exit functions a command registers later (a Ray
    shutdown, multiprocessing's joins), which :func:`keep_status`'s handler still lets a signal cut short."""
    import atexit

    atexit.register(_ignore_signals)


def keep_status(code: int) -> Callable[[], None]:
    """From now on a SIGINT or SIGTERM ends the process at once with ``code``, the status already decided (its
    stdout and stderr flushed as far as they can be): until session 37 a Ctrl-C or ``kill`` that landed after a
    command's work, while its handlers were put back or the interpreter shut down, gave 130 with no line, or 143.
    Returns what puts the previous handlers back (a command run in-process, by a test or a library, keeps its own
    Ctrl-C); the console entry points leave it in place to the end. A signal set to be ignored stays ignored; off
    the main thread nothing changes."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    leaving: list[int] = []

    def leave(signum: int, frame: Any) -> None:
        if not leaving:  # a second signal while a flush blocks (a stalled reader) leaves at once
            leaving.append(signum)
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
        os._exit(code)

    old: dict[int, Any] = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(sig)
        if handler not in (signal.SIG_IGN, None):
            old[sig] = signal.signal(sig, leave)

    def put_back() -> None:
        for sig, handler in old.items():
            if signal.getsignal(sig) is leave:
                signal.signal(sig, handler)

    return put_back
