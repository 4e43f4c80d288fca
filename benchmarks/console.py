"""The terminal of ``python -m benchmarks`` may go away while it runs (closed: its writes fail with EIO; the reader of
its pipe gone: EPIPE). Everything it shows is in the stage logs and records too, so from then on its output goes
nowhere instead of ending the run with a traceback and status 1 (until session 39, even after a stage it had stopped
with status 130)."""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any, TextIO, cast

GONE = frozenset({errno.EPIPE, errno.EIO})
"""The errors of a write to an output that is gone for good."""


class _Survivor:
    """``stream`` as long as it takes writes; once one failed with an error in :data:`GONE`, nothing (its file
    descriptor then points at /dev/null, so the interpreter's last flush of what it holds cannot fail: Python would
    exit 120). Any other error is raised as it was."""

    def __init__(self, stream: TextIO) -> None:
        self.stream, self.gone = stream, False

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                self.stream.write(text)
            except OSError as exc:
                self._lost(exc)
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                self.stream.flush()
            except OSError as exc:
                self._lost(exc)

    def _lost(self, exc: OSError) -> None:
        if exc.errno not in GONE:
            raise exc
        self.gone = True
        with suppress(OSError, ValueError, AttributeError):  # no descriptor (a test's capture): nothing to point
            fd = self.stream.fileno()
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, fd)
            os.close(null)

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding... as the stream has them
        return getattr(self.stream, name)


@contextmanager
def output_may_vanish() -> Iterator[None]:
    """While the body runs, ``sys.stdout`` and ``sys.stderr`` survive their terminal going away (see the module)."""
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = cast(TextIO, _Survivor(out)), cast(TextIO, _Survivor(err))
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):  # what is still buffered (a pipe's stdout): its reader may be gone
            with suppress(OSError):
                stream.flush()
        sys.stdout, sys.stderr = out, err
