"""The console of a command line, for ``firmware-sim`` and ``edgeae`` alike (standard library only, so the flight
runtime can import it): a stdout whose failure is reported as such and never replaces a status of the command's own
(:class:`GuardedStdout`, :func:`stdout_failure`, :func:`status_line`), a stderr that cannot fail a command
(:func:`err_line`), a console that cannot encode a character written with an escape (:func:`escape_unencodable`),
signals held over a short step (:func:`signals_held`), and the status of a command kept once it is decided
(:func:`keep_status`, :func:`ignore_signals_at_exit`)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any


class StdoutError(Exception):
    """A write to stdout failed (its reader stopped, a full disk behind ``>``): reported as such, not as a bare
    errno that reads like a failed output file."""


class GuardedStdout:
    """``sys.stdout`` while a command runs: a failed write or flush raises :class:`StdoutError`, and the first
    failure is kept (:attr:`failure`: the command's dispatcher says it in one line once the command has its status,
    which stays the command's own when not 0). Inside :meth:`keep_going` a failure raises nothing and the rest is
    written nowhere: what follows the console lines (WARNINGs on stderr, the line and status of an interrupted run)
    is not cut short by them (until session 37 Ctrl-C on ``firmware-sim run ... | tee log``, which stops tee too,
    exited 1, "stdout closed", without its "state kept" line)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.failure: StdoutError | None = None
        self._going = 0

    def _error(self, exc: BaseException | None = None) -> StdoutError:
        """The error to raise for a failed write (``exc``; None: an earlier one), the first kept in :attr:`failure`."""
        if self.failure is None:
            self.failure = _stdout_error(exc)
        return _stdout_error(self.failure.__cause__)

    def write(self, text: str) -> int:
        error = self._error() if self.failure is not None else None
        if error is None:
            try:
                return int(self._inner.write(text))
            except OSError as exc:
                error = self._error(exc)
        if self._going:
            return len(text)
        raise error

    def flush(self) -> None:
        error = self._error() if self.failure is not None else None
        if error is None:
            try:
                self._inner.flush()
                return
            except OSError as exc:
                error = self._error(exc)
        if not self._going:
            raise error

    @contextlib.contextmanager
    def keep_going(self) -> Iterator[None]:
        """A failure in the block is kept, not raised; what is written after it goes nowhere."""
        self._going += 1
        try:
            yield
        finally:
            self._going -= 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _stdout_error(cause: BaseException | None) -> StdoutError:
    error = StdoutError(cause)
    error.__cause__ = cause
    return error


def console_keeps_going() -> contextlib.AbstractContextManager[None]:
    """:meth:`GuardedStdout.keep_going` of ``sys.stdout`` while a command runs; else nothing changes."""
    out = sys.stdout
    return out.keep_going() if isinstance(out, GuardedStdout) else contextlib.nullcontext()


def status_line(text: str) -> None:
    """A command's closing line (what it did, what to do next) on stdout, where its console has it; on stderr when
    stdout cannot take it (closed by the same Ctrl-C, a full disk): the line is not lost with the console output,
    and stdout's failure does not replace the command's status (:class:`GuardedStdout`)."""
    out = sys.stdout
    if not isinstance(out, GuardedStdout):
        print(text)
        return
    with out.keep_going():
        print(text, file=out)
        out.flush()
    if out.failure is not None:
        err_line(text)


def err_line(text: str) -> None:
    """One line on stderr. A stderr that cannot take it (``2>&1 | tee log`` and a Ctrl-C that stopped tee too) is
    pointed at /dev/null: nothing is left to say it on, and the command's status, the one thing that can still
    reach its caller, is not replaced by a traceback or Python's 120 at exit."""
    try:
        print(text, file=sys.stderr)
    except (OSError, ValueError):  # ValueError: a closed file
        silence_stdout(sys.stderr)


def stdout_failure(exc: StdoutError) -> str:
    """What failed, for the command's one error line: ``stdout closed (the program reading it stopped)`` or
    ``cannot write to stdout: WHY``."""
    cause = exc.__cause__
    if isinstance(cause, BrokenPipeError):
        return "stdout closed (the program reading it stopped)"
    return f"cannot write to stdout: {getattr(cause, 'strerror', None) or cause}"


def silence_stdout(stream: Any) -> None:
    """Point the stream's descriptor (1, or stderr's 2) at /dev/null: no second error when Python flushes it at
    exit."""
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


@contextlib.contextmanager
def signals_held(got: list[str]) -> Iterator[None]:
    """SIGINT and SIGTERM are recorded in ``got`` (``"SIGINT"``, ``"SIGTERM"``) while the block runs, not raised: a
    short step that must not stop halfway (a run's console summary, after its files) ends first and the caller acts
    on them. A second one raises ``KeyboardInterrupt`` at once (``"SIGTERM"`` in its text for that signal): a stdout
    whose reader stalled cannot hold the process. The handlers are put back when the block ends; an ignored signal
    stays ignored; off the main thread nothing changes."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    mine: list[str] = []

    def hold(signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        mine.append(name)
        got.append(name)
        if len(mine) > 1:
            raise KeyboardInterrupt("SIGTERM" if name == "SIGTERM" else "")

    old: dict[signal.Signals, Any] = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(sig)
        if handler not in (signal.SIG_IGN, None):  # None: set outside Python, left alone
            old[sig] = signal.signal(sig, hold)
    try:
        yield
    finally:
        for sig, handler in old.items():
            if signal.getsignal(sig) is hold:
                signal.signal(sig, handler)
