"""One process at a time per output folder (standard library only; shared by flight, ground, scan and training).

Two runs writing one folder (two ``firmware-sim run --out D``, two scans, two decodes, two trainers on one run
folder) check the folder first and write it later: both pass the check and mix their outputs. :func:`hold` takes
an exclusive, non-blocking ``flock`` on ``FOLDER/.edgeae.lock`` for the whole run; a second run is refused at once
with :class:`FolderBusy`, whose message names the folder and the holder (pid, command, start time). The lock is the
kernel's: a run that is killed (even ``kill -9``) releases it, and a lock file left behind by one is simply taken
by the next run. On a clean exit the file is removed, so the folder holds nothing of it.

Where ``fcntl`` does not exist (Windows) :func:`hold` does nothing.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".edgeae.lock"


class FolderBusy(OSError):
    """Another process holds the folder (an ``OSError``: the CLIs print it as one line)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


def _holder(path: Path) -> str:
    """What the lock file says about the process that holds it ('' when it cannot be read)."""
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()[:300]
    except OSError:
        return ""


@contextlib.contextmanager
def hold(folder: Path | str, what: str) -> Iterator[Path]:
    """Hold ``folder`` (which must exist) for this process while the block runs; yields the lock file's path.

    Raises :class:`FolderBusy` at once when another process holds it (``what`` names the work, e.g. ``"flight
    run"``, in the message). Re-entrant holds in one process are not supported (a second ``hold`` of the same
    folder in the same process is refused too, as another run would be).
    """
    folder = Path(folder)
    path = folder / LOCK_NAME
    if fcntl is None:  # pragma: no cover - not POSIX
        yield path
        return
    fd = -1
    for _ in range(20):  # a lock file unlinked by its holder between our open and our lock: open the new one
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except PermissionError:  # another user's lock file in a shared folder: flock works on a read-only one too
            if not path.exists():
                raise
            fd = os.open(path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            who = _holder(path)
            raise FolderBusy(
                f"{folder} is in use by another {what}" + (f" ({who})" if who else "") + ": wait for it to finish "
                "or stop it, or choose another folder"
            ) from None
        except OSError:
            os.close(fd)
            raise
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
        fd = -1
    if fd < 0:  # pragma: no cover - 20 holders came and went while we tried
        raise FolderBusy(f"{folder} is in use by another {what}: its lock file keeps changing")
    try:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
        command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:200] if sys.argv else "python"
        with contextlib.suppress(OSError):  # a full disk, another user's file: the lock holds without its note
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()}, {command!r}, since {stamp}\n".encode())
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)  # while still held: a process that opened it meanwhile sees another inode and retries
        os.close(fd)
