"""One process at a time per output folder (standard library only; shared by flight, ground, scan and training).

Two runs writing one folder (two ``firmware-sim run --out D``, two scans, two decodes, two trainers on one run
folder) check the folder first and write it later: both pass the check and mix their outputs. :func:`hold` takes
an exclusive, non-blocking ``flock`` on ``FOLDER/.edgeae.lock`` for the whole run; a second run is refused at once
with :class:`FolderBusy`, whose message names the folder and the holder (pid, command, start time). The lock is the
kernel's: a run that is killed (even ``kill -9``) releases it, and a lock file left behind by one is simply taken
by the next run. On a clean exit the file is removed, so the folder holds nothing of it.

The lock file is never opened through a symbolic link (a link planted there is refused: the note would be written
into the file it points to). On a file system that cannot lock (``flock`` fails with ENOLCK / EOPNOTSUPP: some
network mounts) a warning says so and the run goes on unlocked; where ``fcntl`` does not exist (Windows)
:func:`hold` does nothing.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".edgeae.lock"
# never through a link; never blocking on a FIFO planted there (opening one read-only waits for a writer)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)}
"""flock errors of a file system that cannot lock (an NFS mount without lockd, some FUSE mounts)."""
log = logging.getLogger(__name__)


def file_in_the_way(out: Path) -> Path | None:
    """The nearest existing ancestor of ``out`` when it is a file, not a folder (``out`` cannot be created: mkdir
    says only "Not a directory"); None otherwise. The one check behind the ``--out`` refusals of flight, ground and
    scan."""
    for parent in out.parents:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


class FolderBusy(OSError):
    """Another process holds the folder (an ``OSError``: the CLIs print it as one line)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


def _holder(path: Path) -> tuple[str, bool]:
    """What the lock file says about the process that holds it ('' when it cannot be read; its first 300 bytes,
    never through a symbolic link) and whether that process may be running here (False when its pid is not: a run
    of another host or PID namespace, or a killed run's note another user's run could not rewrite). Any user may
    write the note: it is only shown, never trusted."""
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
    except OSError:
        return "", True
    try:
        raw = os.read(fd, 300).decode("utf-8", errors="replace").strip()
    except OSError:
        return "", True
    finally:
        os.close(fd)
    note = "".join(c if c.isprintable() else "?" for c in raw)  # one line, no terminal escapes
    pid = re.search(r"\bpid ([0-9]{1,10}),", note)
    if pid is not None:
        try:
            os.kill(int(pid.group(1)), 0)
        except ProcessLookupError:
            return note, False
        except (OSError, OverflowError, ValueError):  # another user's process (alive), or no pid a kernel takes
            pass
    return note, True


def _busy(folder: Path, path: Path) -> str:
    """Who holds ``folder``, from its lock file's note, for a refusal."""
    note, running = _holder(path)
    kind, sep, who = note.partition("; ")  # "training run; pid 12, 'edgeae train ...', since ..."
    if not sep:  # a note without its kind (an older edgeae's)
        kind, who = "", note
    if not running:  # the note's process is not running here: its work is not known for sure
        return f"{folder} is in use by another edgeae run (its lock file names {note!r}, not running on this host)"
    return f"{folder} is in use by another {kind or 'edgeae run'}" + (f" ({who})" if who else "")


def _open(path: Path) -> int:
    """The lock file, opened (created when missing) without following a symbolic link; a link or anything but a
    regular file there is refused (a planted link would have the note written into the file it points to)."""
    try:
        try:
            created = not os.path.lexists(path)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | _NOFOLLOW, 0o666)
            if created:  # any user may lock it read-write (NFS locks only a file opened for writing): not the umask's
                with contextlib.suppress(OSError):
                    os.fchmod(fd, 0o666)
        except PermissionError:  # another user's lock file in a shared folder: flock works on a read-only one too
            if not os.path.lexists(path):
                raise
            fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
    except OSError as exc:
        if exc.errno == errno.ELOOP or os.path.islink(path):
            raise OSError(errno.ELOOP, f"{path} is a symbolic link, not edgeae's lock file: remove it") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EEXIST, f"{path} is not a regular file, not edgeae's lock file: remove it")
    return fd


@contextlib.contextmanager
def hold(folder: Path | str, what: str) -> Iterator[Path | None]:
    """Hold ``folder`` (which must exist) for this process while the block runs; yields the lock file's path, or
    None where the folder could not be locked (no ``flock`` on its file system, or no ``fcntl``).

    Raises :class:`FolderBusy` at once when another process holds it (the message names the holder's work, e.g.
    ``"flight run"``, as its own ``what`` recorded it). Re-entrant holds in one process are not supported (a second
    ``hold`` of the same folder in the same process is refused too, as another run would be). On a file system
    without ``flock`` (some network mounts) a warning says so and the block runs without the lock.
    """
    folder = Path(folder)
    path = folder / LOCK_NAME
    if fcntl is None:  # pragma: no cover - not POSIX
        yield None
        return
    fd = -1
    for _ in range(20):  # a lock file unlinked by its holder between our open and our lock: open the new one
        existed = os.path.lexists(path)
        fd = _open(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            busy = _busy(folder, path)
            raise FolderBusy(busy + ": wait for it to finish or stop it, or choose another folder") from None
        except OSError as exc:
            os.close(fd)
            if exc.errno == errno.EBADF:  # NFS locks only a file opened for writing, and this one is another user's
                note, running = _holder(path)
                gone = "" if running else ", a process not running on this host"
                raise OSError(
                    errno.EACCES,
                    f"{path} is another user's and this file system locks only files opened for writing: it cannot "
                    f"be locked here ({'its note: ' + repr(note) + gone if note else 'no note'}); once that run has "
                    "ended, remove it",
                ) from None
            if exc.errno not in _NO_LOCKS:
                raise
            if not existed:
                with contextlib.suppress(OSError):
                    os.unlink(path)
            log.warning(
                "%s: this file system cannot lock files (%s): nothing stops a second %s from writing there at the "
                "same time", folder, exc.strerror or exc, what,
            )  # fmt: skip
            yield None
            return
        try:
            st, now = os.fstat(fd), os.lstat(path)
            same = (st.st_dev, st.st_ino) == (now.st_dev, now.st_ino)
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
            os.write(fd, f"{what}; pid {os.getpid()}, {command!r}, since {stamp}\n".encode())
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)  # while still held: a process that opened it meanwhile sees another inode and retries
        os.close(fd)
