"""An export's calibration and parity-test sets: their patches, refused in one line naming the set when none is
valid, and the tail frames' size check (both before any conversion)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeae.metadata import ModelMetadata

from . import calibration as cal


def _patches_of(
    flag: str,
    given: bool,
    source: str,
    meta: ModelMetadata,
    files: list[Path],
    count: int,
    seed: int,
    tail: float = 0.0,
) -> np.ndarray:
    """:func:`edgeae.export.calibration.model_patches` of one set; its ValueError names the set: a set without one
    valid patch is refused before the conversions. ``flag`` (``--calib`` / ``--test``) names the set when the user
    ``given`` it, else it is the remedy (the set came from the model's own data)."""
    try:
        return cal.model_patches(meta, files, count, seed=seed, tail=tail)
    except ValueError as exc:
        what = "calibration" if flag == "--calib" else "parity test"
        if given:
            raise ValueError(f"{what} set {source} ({flag}): {exc}") from None
        raise ValueError(f"{what} set {source}: {exc}; to use images of your own, give {flag} DIR") from None


def check_tail_frames(frames: list[tuple[str, np.ndarray]], side: int) -> None:
    """ValueError (one line naming the frames and ``--test``) when the tail frames give fewer than the 3 patches the
    tail's Spearman needs: said before any work, not after the minutes of conversion."""
    n = int(sum(len(p) for _, p in frames))
    if n < 3:
        raise ValueError(
            f"the tail frames ({', '.join(name for name, _ in frames)}) give {n} patch(es) of {side} px, the tail's "
            "Spearman needs at least 3: give --test DIR (more or larger images)"
        )
