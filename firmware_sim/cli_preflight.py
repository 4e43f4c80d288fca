"""What ``firmware-sim run`` (and ``check``) settle before a boot: ``--inject`` parsed and ``--out`` checked, each
refused in one line naming the option before anything is created (exit 2), and SIGTERM made to stop ``run`` as
Ctrl-C does (the installer of every firmware-sim command and every ``edgeae`` command that takes SIGTERM as a stop;
standard library only at import, as ``edgeae``'s main imports it). ``run`` and ``check`` themselves are in
:mod:`.cli`."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _sigterm_as_ctrl_c(
    received: list[str], stop: type[BaseException] = KeyboardInterrupt, signum: int | None = None
) -> Callable[[], object]:
    """SIGTERM (``kill``, a batch system's stop) stops ``run`` as Ctrl-C does: the frame in progress is marked
    interrupted (a rerun takes it again), the summary and report of the frames so far are written, status 130.
    Returns what puts the previous handler back (a no-op off the main thread, where no handler can be set; where a
    handler was set since, such as the console's ``keep_status``, that one stays); ``received`` gets ``"SIGTERM"``
    when it came, and ``stop`` (KeyboardInterrupt or a subclass of it) is raised. A power loss stays what ``--inject
    reboot@frameN`` or ``kill -9`` simulates. A SIGTERM the caller set to be ignored (a supervisor's, a wrapper's
    ``trap '' TERM``, inherited as SIG_IGN) stays ignored (until session 37 firmware-sim put its own handler over
    it: ``bench`` and ``check`` under such a wrapper stopped with 130); an ignored SIGINT (a background shell's)
    changes nothing: SIGTERM still stops the run. Every ``edgeae`` command that takes SIGTERM as a stop installs its
    handler here too (its main, ``scan``, ``ground decode``, ``train``: until session 38 each held its own copy of
    the SIG_IGN check). ``signum`` (default SIGTERM) takes another signal the same way, under its own name:
    ``python -m benchmarks`` installs it for SIGHUP (a closed terminal) and SIGINT (so that a Ctrl-C a library
    swallows is still recorded); a handler not set from Python is left alone too."""
    import signal
    import threading

    sig = signal.Signals(signal.SIGTERM if signum is None else signum)
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    if signal.getsignal(sig) in (signal.SIG_IGN, None):
        return lambda: None

    def stopping(got: int, frame: Any) -> None:
        received.append(sig.name)
        raise stop(sig.name)

    old = signal.signal(sig, stopping)

    def put_back() -> None:
        if signal.getsignal(sig) is stopping:
            signal.signal(sig, old)

    return put_back


def _check_inject(args: argparse.Namespace) -> None:
    """``--inject`` parsed before anything else (``run`` and ``check`` alike), refused in one line naming it: a
    value no run could fly (``seu@frame1:nan``, ``late@frame1:1e300``) is a user error, not a failure mid-run."""
    from .faults import FaultSpecError, parse_faults

    try:
        parse_faults(args.inject or ())
    except FaultSpecError as exc:
        raise FaultSpecError(f"--inject {exc}") from None


def _check_out_folder(out: Path) -> None:
    """Refuse, before the boot, an ``--out`` that is a file, lies below a file, or cannot be created where it is
    (a read-only or virtual file system such as /proc), in one line naming the path and why, as ``edgeae scan``
    does (until session 32 the raw ``[Errno 20] Not a directory``, or ``[Errno 2] No such file or directory`` under
    /proc). A folder that does not exist yet is created to see that it can be, then removed: a refused boot leaves
    nothing behind."""
    import os

    from edgeae.folder_lock import file_in_the_way

    from .mission_sections import MissionError

    if out.exists() and not out.is_dir():
        raise MissionError(f"--out {out} is an existing file; name a folder for the run's output and state")
    blocking = file_in_the_way(out)
    if blocking is not None:
        raise MissionError(f"cannot create the results folder --out {out}: {blocking} is a file, not a folder")
    missing: list[Path] = []
    parent = out
    while not parent.exists():
        if parent.is_symlink():  # a link to nothing
            raise MissionError(f"cannot create the results folder --out {out}: {parent} is a broken symbolic link")
        missing.append(parent)
        if parent.parent == parent:
            break
        parent = parent.parent
    if not missing:
        return
    try:
        out.mkdir(parents=True)
    except OSError as exc:
        why = exc.strerror or str(exc)
        raise MissionError(
            f"cannot create the results folder --out {out}: {parent} does not let a folder be created in it ({why}); "
            "choose a writable folder"
        ) from None
    for made in missing:  # deepest first: only what this check created
        try:
            os.rmdir(made)
        except OSError:
            break


def _frame_types(given: list[str] | None) -> set[str] | None:
    """``check --frame-type`` values as the suffixes a run takes from its frames (``.jpg``; ``jpg`` and ``JPG`` too),
    or None when none was given; an unknown type is a user error naming the known ones."""
    from .frames import FRAME_SUFFIXES
    from .mission_sections import MissionError

    if not given:
        return None
    types = {("" if t.startswith(".") else ".") + t.lower() for t in given}
    unknown = sorted(t for t in types if t not in FRAME_SUFFIXES)
    if unknown:
        raise MissionError(f"--frame-type {', '.join(unknown)}: not a frame type; expected one of {FRAME_SUFFIXES}")
    return types
