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


def samples_valid(samples: np.ndarray, bits: int, bayer: str | None = None) -> np.ndarray:
    """Bool (H, W): the pixels of integer samples (H, W, C) of ``bits`` bits that hold data, by the no-data
    detection :func:`edgeae.imageio.read_image` runs on a file's stored counts (``nodata_mask`` and
    ``valid_mask``): the same pixels as :func:`file_valid` of the frame saved as an image without alpha.
    ``bayer``: the samples were demosaiced from a mosaic of that pattern (a margin keeps its dark measured
    sample: the darkest channel decides, as ``read_image`` decides for a demosaiced frame)."""
    from edgeae.nodata import nodata_mask, valid_mask

    reduce = "min" if bayer else "max"
    return nodata_mask(samples, bit_depth=bits) & valid_mask(samples, bit_depth=bits, reduce=reduce)


def original_valid(path: str | Path, samples: np.ndarray, bits: int, bayer: str | None = None) -> np.ndarray:
    """:func:`file_valid` of ``path`` given its samples as :func:`edgeae.ground.sources.image_samples` read them:
    worked out from those samples (:func:`samples_valid`) where they are the file's stored counts (an image of
    unsigned counts of up to 16 bits, no alpha), so the file is decoded once and no float copy is made (review s36
    r15 #1: reading it again took 2.5x the memory, 3x the time); the file read again only where the samples do
    not show what it declares missing (alpha, float or 32-bit samples, archive products)."""
    from edgeae.archive.formats import is_archive_path
    from edgeae.imagedecode import probe

    p = Path(path)
    info = None if is_archive_path(p) else probe(p)
    stored = info is not None and not info.has_alpha and info.bit_depth <= 16 and samples.dtype.kind == "u"
    if stored and bits <= 16 and not _float_samples(p, info):
        return samples_valid(samples, bits, bayer)
    return file_valid(p, bayer)


def _float_samples(path: Path, info) -> bool:
    """Whether the file stores float samples (a TIFF's SampleFormat 3): its NaN/inf hold no data, which the
    quantised samples (0 there) do not show."""
    return info.format == "tiff" and _tiff_float(path)


def _tiff_float(path: Path) -> bool:
    try:
        import tifffile

        with tifffile.TiffFile(path) as tf:
            return tf.pages[0].dtype is not None and np.dtype(tf.pages[0].dtype).kind == "f"
    except Exception:  # unsure: read the file again, as file_valid does
        return True


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
