"""Why an image has no patch holding a valid pixel: the no-data its file declares (NaN, alpha 0, its label's special
values, a fixed ``--margin``), which no ``--min-valid`` makes worth scoring, or a frame dark throughout that the margin
detection (:func:`edgeae.nodata.valid_mask`) read as no-data, which ``--min-valid 0`` scores (review s37 r8 #1)."""

from __future__ import annotations

import os
from typing import Any


def no_valid_pixel(
    path: str | os.PathLike[str],
    patch: int,
    stride: int,
    *,
    channels: int | None,
    bayer: str | None = None,
    margin: Any = None,
    detect_nodata: bool = True,
) -> bool | None:
    """Whether no patch of ``path`` holds a valid pixel, read up to its first valid one (None when it cannot be read).
    ``detect_nodata=False``: only the no-data the file declares counts (and ``margin``), not the dark-margin guess."""
    from edgeae.strips import iter_patch_blocks

    try:
        for blk in iter_patch_blocks(
            path, patch, stride, channels=channels, bayer=bayer, margin=margin, detect_nodata=detect_nodata
        ):
            if blk.valid_frac.size and float(blk.valid_frac.max()) > 0:
                return False
    except Exception:
        return None
    return True


def blank_kind(
    path: str | os.PathLike[str], patch: int, stride: int, *, channels: int | None, bayer: str | None, margin: Any
) -> str | None:
    """``"declared"``: no valid pixel even by the file's own no-data alone; ``"dark"``: valid pixels only once the
    dark-margin detection is left out (dark throughout); None: some patch holds a valid pixel, or it cannot be read."""
    if not no_valid_pixel(path, patch, stride, channels=channels, bayer=bayer, margin=margin):
        return None
    declared = no_valid_pixel(path, patch, stride, channels=channels, bayer=bayer, margin=margin, detect_nodata=False)
    return None if declared is None else "declared" if declared else "dark"
