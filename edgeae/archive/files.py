"""What may be opened, and how much of it: only regular files (a FIFO blocks ``open``, a device never ends) and
labels up to :data:`MAX_LABEL_BYTES`; small reads (a file's head, bytes at an offset), and whether two paths are one
file."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from edgeae._headers import ImageReadError

__all__ = ["FOLLOW_LINKS_ENV", "MAX_LABEL_BYTES", "follow_links", "not_regular"]

# a label larger than this is refused before it is parsed (GDAL and ElementTree hold a parsed label many times
# its size: a 40 MB PDS4 XML took 2.5 GB); real labels are tens of KB (the largest sample: 27.8 KB)
MAX_LABEL_BYTES = 4 * 1024**2

# opt-in for links beside a label to regular files elsewhere (data on another disk, a git-annex or DVC cache); off by
# default, because a link planted by an archive's provider would have the reader score any file it can read
FOLLOW_LINKS_ENV = "EDGEAE_ARCHIVE_FOLLOW_LINKS"
LINK_REMEDY = f"set {FOLLOW_LINKS_ENV}=1 to read links to regular files outside the label's folder"


def follow_links() -> bool:
    """Whether ``EDGEAE_ARCHIVE_FOLLOW_LINKS=1`` (or true/yes/on) lets a label name a link to a regular file outside
    its folder; read at each call, so setting it in a running process takes effect at the next product."""
    return os.environ.get(FOLLOW_LINKS_ENV, "").strip().lower() in ("1", "true", "yes", "on")


_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a directory"),
)


def _kind(mode: int) -> str | None:
    """What a file of this st_mode is when it is not a regular file ('a FIFO', ...), else None."""
    if stat.S_ISREG(mode):
        return None
    return next((what for test, what in _KINDS if test(mode)), "not a regular file")


def not_regular(p: Path) -> str | None:
    """'a FIFO', 'a character device', ... when ``p`` (links followed) exists but is not a regular file, else None.

    Such a file is never opened: a FIFO blocks ``open`` until a writer comes, a device never ends.
    """
    try:
        return _kind(os.stat(p).st_mode)
    except (OSError, ValueError):  # missing, a dangling link, an unreadable folder: said by whoever opens it
        return None


def _open_regular(p: Path) -> BinaryIO:
    """``open(p, "rb")`` for a regular file only; anything else is refused with :class:`ImageReadError`."""
    kind = not_regular(p)
    if kind is not None:
        raise ImageReadError(f"{p}: {kind}, not a regular file: not read")
    # O_NONBLOCK: if p became a FIFO since the stat, the open returns at once instead of waiting for a writer
    fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        kind = _kind(os.fstat(fd).st_mode)
        if kind is not None:
            raise ImageReadError(f"{p}: {kind}, not a regular file: not read")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _head(p: Path, n: int = 4096) -> bytes:
    with _open_regular(p) as fh:
        return fh.read(n)


def _check_label_size(label: Path) -> None:
    """Refuse a label over :data:`MAX_LABEL_BYTES` before anything parses it, naming the file and its size."""
    size = label.stat().st_size
    if size > MAX_LABEL_BYTES:
        raise ImageReadError(
            f"{label}: the label is {size} bytes ({size / 1024**2:.1f} MiB), over the {MAX_LABEL_BYTES // 1024**2} MiB "
            "a label may have (real labels are tens of KB): not parsed"
        )


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _read_at(p: Path, start: int, n: int) -> bytes:
    with open(p, "rb") as fh:
        fh.seek(start)
        return fh.read(n)
