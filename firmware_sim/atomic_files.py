"""Crash-safe files of the flight runtime: atomic writes, and the removal of the temporary files that a power loss or
``kill -9`` left mid-write (a flight run's boot, :meth:`.queue.DownlinkQueue.sweep_stale_temps`).

A temporary file is named for the process that writes it (``.NAME.tmp-PID``, :func:`edgeae.atomic.temp_name`), so two
processes never rename each other's half-written file.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from edgeae.atomic import process_gone, remove_files  # one definition each


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves either the old or the new file, never a mix; on an error
    (a full or read-only disk) the temporary file is removed and the ``OSError`` names ``path``
    (:func:`edgeae.atomic.write_bytes`). The temporary file is ``.NAME.tmp-PID``, one per process (until session 32
    ``NAME.tmp`` for every process, so two runs on one folder renamed each other's half-written file); one a power
    loss leaves is removed at the next boot (:meth:`.queue.DownlinkQueue.sweep_stale_temps`)."""
    from edgeae.atomic import write_bytes

    write_bytes(path, data)


# a temporary file of :func:`atomic_write` / :meth:`.queue.DownlinkQueue.put` (``.NAME.tmp-PID``), or of the versions
# before session 32 (``NAME.tmp``, one fixed name for every process)
_TEMP = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<pid>\d+)$")
_OLD_TEMP = re.compile(r"^(?P<name>.+)\.tmp$")


def remove_stale_temps(
    folder: Path, names: Callable[[str], bool] = lambda _: True, *, any_pid: bool = False
) -> list[str]:
    """Remove the temporary files a power loss or ``kill -9`` left in ``folder`` mid-write (``.NAME.tmp-PID``
    of a process no longer running, and the fixed ``NAME.tmp`` of earlier versions), for the target names that
    ``names`` accepts; a live process's are kept (``firmware-sim report`` beside a running mission). ``any_pid``:
    the caller holds the folder (:mod:`edgeae.folder_lock`) and only a holder writes these names, so every such
    temporary is stale, whatever its pid (a writer in another PID namespace would look gone to ``os.kill``).
    Returns the names removed (:func:`edgeae.atomic.remove_files`: best effort)."""

    def stale(name: str) -> bool:
        m = _TEMP.match(name)
        if m is not None and names(m["name"]) and (any_pid or process_gone(int(m["pid"]))):
            return True
        old = _OLD_TEMP.match(name)
        return old is not None and not name.startswith(".") and names(old["name"])

    return remove_files(folder, stale)
