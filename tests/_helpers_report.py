"""Pages replaced all or nothing (edgeae.report, the demo): the pieces their session-36 tests each wrote out
(until session 37): a full disk for the page, every file of a folder, a small report."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import numpy as np


def no_space_for_the_page(monkeypatch: Any) -> None:
    """Until ``monkeypatch`` is undone, ``Path.write_text`` of a file whose name holds ``index.html`` fails as on a
    full disk (ENOSPC); every other file is written."""
    real = Path.write_text

    def full_disk(self: Path, data: str, *args: object, **kwargs: object) -> int:
        if "index.html" in self.name:
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real(self, data, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "write_text", full_disk)


def files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones too) by its path relative to ``folder``, with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def sections(value: int, names: tuple[str, ...] = ("a", "b", "c")) -> list[Any]:
    """A report of one section: a 4×6 figure of ``value`` under each of ``names`` and an image ``bar``."""
    from edgeae.report import Figure, Section

    pix = np.full((4, 6), value, np.uint8)
    return [Section("S", figures=[Figure(n, pix, n) for n in names], images={"bar": pix})]
