"""Atomic file writes, shared by ground, flight, training and export (standard library only).

A file written through :func:`atomic_path` (or :func:`write_bytes` / :func:`write_text`) appears complete or not at
all: the data goes to a temporary file in the same folder (``.NAME.tmp-PID``, NAME cut short and hashed where that
would pass the folder's name limit: :func:`temp_name`), is flushed to disk, then renamed over the target; on any
error or interruption (a full disk, Ctrl-C) the temporary file is removed and the target keeps what it held before.
``OSError`` messages name the target file (numpy's ``tofile`` and ``json`` writers do not), and a ``torch.save`` that
fails mid-write (its ``RuntimeError``, e.g. ``unexpected pos``, hides the errno) becomes a :class:`WriteFailed`
(an ``OSError``): ``cannot write PATH: no space left on device``. A writer killed outright (``kill -9``, a power
loss) leaves its ``.NAME.tmp-PID``: :func:`remove_stale_temps` removes those of dead processes. A symlink is followed
(the file it points to is replaced, the link stays). The process's own stdout/stderr (``/dev/stdout``: a pipe, a
terminal, or the file a shell redirected it to) is written through the stream, and a device or FIFO is appended to:
never truncated, never renamed over. A regular file is replaced wherever it is (``/dev/shm`` included).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import stat
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO


class WriteFailed(OSError):
    """A write that failed, its message the whole line (``cannot write PATH: no space left on device``), without the
    ``[Errno N]`` prefix ``OSError`` adds: an ``OSError``, so every command reports it in one line (exit 2)."""

    def __str__(self) -> str:
        return str(self.strerror) if self.strerror else super().__str__()


# torch.save's C++ writer reports a failed write (a full disk, a quota) as a RuntimeError without the errno
_TORCH_WRITE_FAILED = ("inline_container", "PytorchStreamWriter", "unexpected pos", "file write failed")
_NEARLY_FULL = 1 << 20  # bytes free at most on a file system a write just failed on for "no space left on device"
# the temporary file of :func:`temp_name` (``.NAME.tmp-PID``, NAME possibly cut short and hashed)
_TEMP = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<pid>\d+)$")


def name_max(folder: Path) -> int:
    """The longest file name (bytes) ``folder``, or the nearest folder above it that exists, allows: its
    ``NAME_MAX``, else 255 (every common file system's limit)."""
    for up in (folder, *folder.parents):
        try:
            return int(os.pathconf(up, "PC_NAME_MAX"))
        except FileNotFoundError:
            continue
        except (OSError, ValueError, AttributeError):  # no pathconf (Windows), or the folder cannot say
            break
    return 255


def temp_name(path: Path) -> Path:
    """The temporary file :func:`atomic_path` writes for ``path`` (hidden, per process): ``.NAME.tmp-PID``, or,
    where that would pass the folder's ``NAME_MAX`` (a legal name of ~245-255 bytes), ``NAME`` cut short and
    followed by a hash of the whole name (unique per target and process still)."""
    suffix = f".tmp-{os.getpid()}"
    name = f".{path.name}{suffix}"
    limit = name_max(path.parent)
    if len(os.fsencode(name)) <= limit:
        return path.with_name(name)
    import hashlib

    tag = "~" + hashlib.sha256(os.fsencode(path.name)).hexdigest()[:16] + suffix
    stem = path.name
    while stem and len(os.fsencode(f".{stem}{tag}")) > limit:
        stem = stem[:-1]
    return path.with_name(f".{stem}{tag}")


def process_gone(pid: int) -> bool:
    """Whether no process ``pid`` runs now (this process counts as gone: what it writes it removes on every error,
    so a temporary file under its own number was left by an earlier process that had the same number)."""
    if pid == os.getpid() or pid <= 0:  # (kill(0) would signal this process group)
        return True
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except (ProcessLookupError, OverflowError):
        return True
    except OSError:  # EPERM: it runs, under another user
        return False
    return False


def remove_files(folder: str | os.PathLike[str], wanted: Callable[[str], bool]) -> list[str]:
    """Remove the regular files of ``folder`` whose name ``wanted`` accepts (one ``scandir``; links and folders are
    left); returns the names removed, in directory order. Best effort: an unreadable folder or a file that cannot be
    removed is left as it is."""
    removed: list[str] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not wanted(entry.name) or not entry.is_file(follow_symlinks=False):
            continue
        try:
            os.unlink(entry.path)
        except OSError:
            continue
        removed.append(entry.name)
    return removed


def remove_stale_temps(folder: str | os.PathLike[str]) -> list[str]:
    """Remove the temporary files (``.NAME.tmp-PID``, :func:`temp_name`) that a ``kill -9`` or power loss left in
    ``folder`` mid-write, those of processes no longer running (a live writer's are kept; this process's count as
    left by an earlier one under the same number, a container's pid 1: call it where this process writes nothing
    else into ``folder`` meanwhile). Returns the names removed, sorted (:func:`remove_files`)."""

    def stale(name: str) -> bool:
        m = _TEMP.match(name)
        return m is not None and process_gone(int(m["pid"]))

    return sorted(remove_files(folder, stale))


def _torch_write_failed(target: Path, exc: RuntimeError) -> WriteFailed | None:
    """The :class:`WriteFailed` of a ``torch.save`` into a temporary file for ``target`` that failed mid-write
    (None for any other ``RuntimeError``): no space left on device when the file system is (nearly) full now, while
    the partial file still holds its space, else torch's own first line."""
    text = str(exc).strip()
    if not any(mark in text for mark in _TORCH_WRITE_FAILED):
        return None
    try:
        free: int | None = shutil.disk_usage(target.parent).free
    except OSError:
        free = None
    if free is not None and free < _NEARLY_FULL:
        return WriteFailed(errno.ENOSPC, f"cannot write {target}: no space left on device")
    first = text.splitlines()[0] if text else type(exc).__name__
    return WriteFailed(errno.EIO, f"cannot write {target}: the write failed ({first[:160]})")


def _std_stream(real: Path) -> TextIO | None:
    """``sys.stdout`` / ``sys.stderr`` when ``real`` (followed) is the file, pipe or terminal behind descriptor 1 / 2
    (``/dev/stdout``, or the file a shell redirected it to): written through the stream, whose own buffered output
    and file offset a second opening would overwrite or truncate."""
    try:
        st = os.stat(real)
    except OSError:
        return None
    for fd, stream in ((1, sys.stdout), (2, sys.stderr)):
        try:
            own = os.fstat(fd)
        except OSError:
            continue
        if stream is not None and (own.st_dev, own.st_ino) == (st.st_dev, st.st_ino):
            return stream
    return None


def _special(real: Path) -> bool:
    """Whether ``real`` exists and is a device or a FIFO (written through, appended to)."""
    try:
        mode = os.stat(real).st_mode
    except OSError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode)


def _through(target: Path, std: TextIO | None) -> Iterator[Path]:
    """Yield a temporary file whose content then goes to ``target``: through ``std`` (flushed first) when it is the
    process's stdout/stderr, else appended to the device or FIFO (never truncated, never renamed over)."""
    import tempfile

    fd, name = tempfile.mkstemp(prefix="edgeae-out-")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with tmp.open("rb") as src:
            buffer = getattr(std, "buffer", None) if std is not None else None
            if std is not None and buffer is not None:
                std.flush()
                shutil.copyfileobj(src, buffer)
                buffer.flush()
            elif std is not None:  # a replaced sys.stdout (redirect_stdout, a notebook): text through it
                std.write(src.read().decode("utf-8", errors="replace"))
                std.flush()
            else:
                with open(target, "ab") as out:
                    shutil.copyfileobj(src, out)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort: not every file system lets a folder be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(
    path: str | os.PathLike[str], *, durable: bool = True, temp: str | os.PathLike[str] | None = None
) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s new content to; on a clean exit it replaces ``path``.

    ``temp``: the temporary file (default :func:`temp_name`, per process); a fixed name suits a folder one process
    owns (the flight's storage: a power loss mid-write leaves one file the next write replaces, not one per boot).

    ``durable``: fsync the file before the rename and the folder after it (a crash or power loss then leaves
    the old or the new file, never an empty one). An exception (``BaseException``: also Ctrl-C) removes the
    temporary file and propagates; an ``OSError`` without a file name gets the target's, and a ``torch.save`` that
    failed mid-write becomes a :class:`WriteFailed` naming the target and why (a full disk)."""
    target = Path(path)
    real = Path(os.path.realpath(target))
    std = _std_stream(target)  # stat follows /dev/stdout's magic link, whose resolved name may not be a path
    if std is not None or _special(target):  # /dev/stdout (a pipe, a terminal, a redirected file), a FIFO, a device
        yield from _through(target, std)
        return
    if real.is_dir():
        raise IsADirectoryError(errno.EISDIR, f"cannot write {target}: it is a folder")
    if real != target:  # a symlink: the file it points to is replaced, the link kept (a shared results file)
        target = real
        if temp is not None:  # beside the file it replaces (a rename cannot cross file systems)
            temp = target.with_name(Path(temp).name)
    tmp = temp_name(target) if temp is None else Path(temp)
    try:
        yield tmp
        if durable:
            with tmp.open("rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        if exc.filename is None or str(exc.filename) == str(tmp):  # numpy's tofile names nothing; open() the temp
            msg = f"cannot write {target}: {exc.strerror or exc}"
            raise (OSError(exc.errno, msg) if exc.errno is not None else OSError(msg)) from exc
        raise
    except RuntimeError as exc:  # checked while the partial file still holds its space
        failed = _torch_write_failed(target, exc)
        if failed is None:
            raise
        raise failed from exc
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    if durable:
        fsync_folder(target.parent)


def write_bytes(
    path: str | os.PathLike[str], data: bytes, *, durable: bool = True, temp: str | os.PathLike[str] | None = None
) -> None:
    """Write ``data`` to ``path`` atomically (:func:`atomic_path`)."""
    with atomic_path(path, durable=durable, temp=temp) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike[str], text: str, *, durable: bool = True, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically (:func:`atomic_path`)."""
    with atomic_path(path, durable=durable) as tmp:
        tmp.write_text(text, encoding=encoding)
