"""A stop request that reaches a streamed read running on another thread.

``edgeae scan`` and ``edgeae score`` decode and tile an image on a background thread
(:func:`edgeae.firmware_sim.score.background`). When their main thread stops (Ctrl-C, SIGTERM, an error) it sets that
thread's stop flag and waits for it. The thread ends between two bands of rows: :func:`edgeae.row_bands._iter_bands`
checks the flag once per band, the flag given to it or, by default, the one registered for the thread it runs on
(:func:`stop_on`, :func:`current`). So a product whose bands hold no patch to hand over (all no-data) stops within one
band too. Standard library only.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

__all__ = ["Flag", "Stopped", "check", "current", "stop_on"]


class Flag(Protocol):
    """What a stop flag needs: ``threading.Event`` is one."""

    def is_set(self) -> bool: ...


class Stopped(Exception):
    """A streamed read was ended early by its stop flag (its consumer stopped: Ctrl-C, SIGTERM, an error)."""


_local = threading.local()


@contextmanager
def stop_on(flag: Flag) -> Iterator[None]:
    """While the block runs, :func:`current` on this thread gives ``flag`` (the one before it afterwards)."""
    old = getattr(_local, "flag", None)
    _local.flag = flag
    try:
        yield
    finally:
        _local.flag = old


def current() -> Flag | None:
    """The stop flag registered for this thread by :func:`stop_on`, or None."""
    return getattr(_local, "flag", None)


def check(flag: Flag | None, message: str) -> None:
    """Raise :class:`Stopped` with ``message`` when ``flag`` (None: this thread's :func:`current`) is set."""
    flag = flag if flag is not None else current()
    if flag is not None and flag.is_set():
        raise Stopped(message)
