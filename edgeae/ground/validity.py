"""Which pixels of an original a ground or plan PSNR covers: the pixels with data, by the rule ``edgeae
reconstruct`` scores with (:func:`edgeae.imageio.read_image`'s ``valid``: transparent pixels, NaN/inf samples and
the black, dark or saturated no-data margins reaching the border left out), so one rebuild gets one PSNR
whichever command reports it. An original's no-data pixels are NaN (:func:`mark_no_data`), which
:func:`edgeae.ground.outputs.psnr_fields` leaves out and names in ``psnr_over``."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def file_valid(path: str | Path, bayer: str | None = None) -> np.ndarray:
    """Bool (H, W): the pixels of the image file ``path`` that hold data, as ``edgeae reconstruct`` reads them
    (``read_image(path, bayer=bayer).valid``). Reads the frame once more (a float copy, freed on return)."""
    from edgeae.imageio import read_image

    return read_image(path, bayer=bayer).valid


def samples_valid(samples: np.ndarray, bits: int) -> np.ndarray:
    """Bool (H, W): the pixels of integer samples (H, W, C) of ``bits`` bits that hold data, by the no-data
    detection :func:`edgeae.imageio.read_image` runs on a file's stored counts (``nodata_mask`` and
    ``valid_mask``): the same pixels as :func:`file_valid` of the frame saved as an image without alpha."""
    from edgeae.nodata import nodata_mask, valid_mask

    return nodata_mask(samples, bit_depth=bits) & valid_mask(samples, bit_depth=bits, reduce="max")


def mark_no_data(original: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    """``original`` (float (H, W, C) in [0, 1]) with NaN in every channel of the pixels not ``valid`` (in place);
    as it is when ``valid`` is None or all True."""
    if valid is not None and not valid.all():
        original[~valid] = np.nan
    return original


def coverage(valid: np.ndarray) -> str:
    """What a PSNR over the ``valid`` pixels covers, in words (the reports' ``psnr_over``)."""
    n, total = int(np.count_nonzero(valid)), int(valid.size)
    if n == total:
        return f"all {total:,} pixels"
    return (
        f"the {n:,} pixels with data ({100 * n / total:.1f}%; the {100 * (total - n) / total:.1f}% no-data left "
        "out, as edgeae reconstruct)"
    )
