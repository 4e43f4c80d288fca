"""Which sampled pixels a rebuild receives: the rule ``edgeae reconstruct`` and ``edgeae demo`` share.

A sampled pixel that the file declares missing (NaN/inf samples, alpha 0, an archive product's no-data, a
``--margin``: :func:`edgeae.imageio.read_image`'s ``extra["declared_valid"]``, else its ``valid``) carries nothing:
it is not received, so no fill takes it as a sample. A dark or saturated margin that the no-data margin rule only
guesses stays a sample (dark content is content); the metrics leave it out all the same (``valid``, the PSNR rule
of :mod:`edgeae.ground.validity`). :func:`received_pixels` applies the rule and refuses, in one line, a frame that
leaves nothing to rebuild from, saying why: no pixel of the frame holds data at all, the mask sampled no pixel, or
no sampled pixel holds data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from edgeae.imageio import ImageData


class NothingReceived(ValueError):
    """No sampled pixel holds data: nothing to rebuild from. Its message is one line that says why."""


class NoData(NothingReceived):
    """No pixel of the frame holds data at all: no option can help, so the commands call it a data error (exit
    status 1, ``edgeae.cli.DataError``), where a mask that missed the data (raise ``--keep``) is a usage error."""


def declared_valid(data: ImageData) -> np.ndarray:
    """Bool (H, W): the pixels that ``data`` declares as holding data, its guessed dark or saturated margins
    included (they stay samples)."""
    valid: np.ndarray = data.extra.get("declared_valid", data.valid)
    return valid


def received_pixels(sampled: np.ndarray, has_data: np.ndarray | None, what: str, keep: float, seed: int) -> np.ndarray:
    """Bool (H, W): the ``sampled`` pixels that hold data (``has_data``; None: every pixel does), the pixels a
    rebuild of ``what`` (the frame's name, for the messages) receives. Raises :class:`NothingReceived` when
    ``has_data`` holds no pixel at all (:class:`NoData`), when the mask (``keep``, ``seed``: named in the message)
    sampled none, or when no sampled pixel holds data."""
    total = int(sampled.size)
    if has_data is not None and not has_data.any():  # no --keep or --seed can help: say so, not "raise --keep"
        raise NoData(
            f"{what}: none of its {total:,} pixels holds data (all no-data, transparent or NaN/inf): nothing to "
            "rebuild from or to measure against"
        )
    if not sampled.any():  # a tiny image at a small keep fraction: the mask kept no pixel at all
        raise NothingReceived(
            f"{what}: the mask sampled none of its {total} pixel(s) at --keep {keep:g} (seed {seed}): nothing to "
            "rebuild from (raise --keep or change --seed)"
        )
    if has_data is None or has_data.all():
        return sampled
    known: np.ndarray = sampled & has_data
    if not known.any():
        raise NothingReceived(
            f"{what}: none of the {int(np.count_nonzero(sampled))} sampled pixels holds data (no-data or "
            "non-finite): nothing to rebuild from (raise --keep or change --seed)"
        )
    return known


def left_out(valid: np.ndarray, declared: np.ndarray) -> str:
    """Which pixels the metrics leave out (not ``valid``: :mod:`edgeae.ground.validity`) and why, in the words of
    ``edgeae reconstruct``: the share the file declares no-data or non-finite (not ``declared``) and the share the
    no-data margin rule reads as a dark or saturated margin ("" when none)."""
    size = valid.size
    guessed = int(np.count_nonzero(declared & ~valid))
    missing = size - int(np.count_nonzero(declared))
    parts = []
    if missing:
        parts.append(f"{missing / size:.1%} of the frame declared no-data or non-finite")
    if guessed:
        parts.append(f"{guessed / size:.1%} read as a dark or saturated margin by the no-data margin rule")
    return " and ".join(parts)
