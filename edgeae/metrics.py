"""Reconstruction quality: PSNR, SSIM, mean absolute error and error variance, for images in [0, 1].

Images are (H, W) or (H, W, C) float arrays with data range 1: integer arrays are refused (0-255 pairs gave a
PSNR of -8 dB next to an SSIM of 0.999), float samples far outside [0, 1] and NaN/inf samples (which make every
metric they touch NaN) are logged as warnings with their count. ``compare`` also reports the metrics over the
destroyed pixels alone, the ones a reconstruction actually had to invent.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from edgeae._optional import require

log = logging.getLogger(__name__)


def _check_samples(a: np.ndarray, b: np.ndarray) -> None:
    """Warn (one line) about NaN/inf samples and about float data clearly outside the range [0, 1] assumed."""
    bad_a, bad_b = (int(x.size - np.count_nonzero(np.isfinite(x))) for x in (a, b))
    if bad_a or bad_b:
        log.warning(
            "image metrics: %d NaN/inf samples in the original and %d in the reconstruction: every metric they "
            "touch is NaN (compare over valid= pixels, or replace them first)",
            bad_a,
            bad_b,
        )
    for name, x in (("original", a), ("reconstruction", b)):
        ok = np.isfinite(x)
        lo, hi = float(np.min(x, where=ok, initial=np.inf)), float(np.max(x, where=ok, initial=-np.inf))
        if hi > 1.5 or lo < -0.5:
            log.warning(
                "image metrics: the %s spans [%.4g, %.4g], but the metrics assume data range 1 (images in [0, 1]): "
                "0-255 data? divide by 255 (2**bits - 1 for bits-deep samples)",
                name,
                lo,
                hi,
            )


def _pair(original: np.ndarray, recon: np.ndarray, check: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Both images as float64 of one shape ((H, W, 1) squeezed to (H, W)); ``check``: warn about their samples."""
    for name, x in (("original", original), ("reconstruction", recon)):
        dt = np.asarray(x).dtype
        if dt.kind not in "f":
            raise ValueError(
                f"image metrics take float images in [0, 1] (data range 1); the {name} is {dt}: convert it "
                "(edgeae.read_image(path).pixels, or divide by 255, 2**bits - 1 for bits-deep samples)"
            )
    a = np.asarray(original, dtype=np.float64)
    b = np.asarray(recon, dtype=np.float64)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if b.ndim == 3 and b.shape[2] == 1:
        b = b[..., 0]
    if a.shape != b.shape:
        raise ValueError(f"cannot compare images of different shapes {a.shape} and {b.shape}")
    if a.ndim not in (2, 3):
        raise ValueError(f"images must be (H, W) or (H, W, C), got {a.shape}")
    if check:
        _check_samples(a, b)
    return a, b


def psnr_db(reference: np.ndarray, test: np.ndarray, peak: float = 1.0, cap: float | None = None) -> float:
    """PSNR in dB of ``test`` against ``reference``, 10·log10(peak² / MSE) in float64 over every sample: the one
    PSNR of edgeae (:func:`psnr` adds the image checks; export parity passes its ``peak``; ground/science its
    ``cap``). Identical arrays give inf, or ``cap`` when given, which then stands for every MSE at or below
    peak²·10^(-cap/10). NaN samples give NaN; arrays of different shapes or no samples are refused."""
    a = np.asarray(reference).astype(np.float64, copy=False)
    b = np.asarray(test).astype(np.float64, copy=False)
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"PSNR needs two arrays of the same non-empty shape, got {a.shape} and {b.shape}")
    if not (math.isfinite(peak) and peak > 0):
        raise ValueError(f"PSNR peak must be a finite number > 0, got {peak}")
    mse = float(np.mean((a - b) ** 2))
    if cap is not None and mse <= peak * peak * 10 ** (-cap / 10):
        return cap
    return math.inf if mse == 0 else 10.0 * math.log10(peak * peak / mse)


def _ssim(a: np.ndarray, b: np.ndarray, valid: np.ndarray | None = None) -> float:
    metrics = require("skimage.metrics")
    win = min(7, a.shape[0], a.shape[1])
    win -= 1 - win % 2
    if win < 3:
        raise ValueError(f"image {a.shape} is too small for SSIM (needs at least 3×3 pixels)")
    kwargs: dict[str, Any] = {"data_range": 1.0, "win_size": win}
    if a.ndim == 3:
        kwargs["channel_axis"] = 2
    if valid is None:
        return float(metrics.structural_similarity(a, b, **kwargs))
    _, smap = metrics.structural_similarity(a, b, full=True, **kwargs)
    smap = smap.mean(axis=2) if smap.ndim == 3 else smap
    return float(smap[valid].mean())


def psnr(original: np.ndarray, recon: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB for data range 1 (inf for identical images)."""
    return psnr_db(*_pair(original, recon))


def mae(original: np.ndarray, recon: np.ndarray) -> float:
    """Mean absolute error over all pixels and channels (the paper's MAE, as a fraction of full scale)."""
    a, b = _pair(original, recon)
    return float(np.mean(np.abs(a - b)))


def error_variance(original: np.ndarray, recon: np.ndarray) -> float:
    """Variance of the signed error ``recon - original`` over all pixels and channels (the paper's Fig. 4)."""
    a, b = _pair(original, recon)
    return float(np.var(b - a))


def ssim(original: np.ndarray, recon: np.ndarray, valid: np.ndarray | None = None) -> float:
    """Structural similarity (scikit-image, data range 1, 7×7 window or the largest odd one that fits); with
    ``valid`` (bool (H, W)) the mean of the SSIM map over the valid pixels only."""
    return _ssim(*_pair(original, recon), valid)


def compare(
    original: np.ndarray, recon: np.ndarray, known: np.ndarray | None = None, valid: np.ndarray | None = None
) -> dict[str, float]:
    """All metrics over the whole image; with ``known`` (bool (H, W), True = sampled pixel) also over the
    destroyed pixels only (keys ``*_destroyed``) and the kept fraction (``keep_actual``). ``ssim`` is NaN for
    an image under 3 pixels high or wide (a line scan), which SSIM's window does not fit.

    ``valid`` (bool (H, W), e.g. :attr:`edgeae.imageio.ImageData.valid`): every metric over the valid pixels only,
    so a product's no-data margins and NaN samples, whose "truth" is a fill value, do not count; adds
    ``valid_fraction``. All metrics are NaN when no pixel is valid. Float images in [0, 1] (data range 1):
    integer arrays are refused; NaN/inf samples (over the valid pixels) are logged as a warning with their
    count."""
    a, b = _pair(original, recon, check=False)  # checked once below, over the pixels that count
    v = None if valid is None else np.asarray(valid, dtype=bool)
    if v is not None and v.shape != a.shape[:2]:
        raise ValueError(f"valid mask {v.shape} does not match image {a.shape}")
    if v is not None and not v.all():
        if not v.any():
            nan = math.nan
            return {"psnr": nan, "ssim": nan, "mae": nan, "error_variance": nan, "valid_fraction": 0.0}
        out = compare(a[v][:, None], b[v][:, None], None if known is None else np.asarray(known, bool)[v][:, None])
        out["ssim"] = _ssim(a, b, v) if min(a.shape[0], a.shape[1]) >= 3 else math.nan
        out["valid_fraction"] = float(v.mean())
        return out
    _check_samples(a, b)
    out = {
        "psnr": psnr_db(a, b),
        "ssim": _ssim(a, b) if min(a.shape[0], a.shape[1]) >= 3 else math.nan,
        "mae": float(np.mean(np.abs(a - b))),
        "error_variance": float(np.var(b - a)),
    }
    if v is not None:
        out["valid_fraction"] = 1.0
    if known is not None:
        k = np.asarray(known, dtype=bool)
        if k.shape != a.shape[:2]:
            raise ValueError(f"known mask {k.shape} does not match image {a.shape}")
        lost = ~k
        out["keep_actual"] = float(k.mean())
        if lost.any():
            da, db = a[lost], b[lost]
            out["psnr_destroyed"] = psnr_db(da, db)
            out["mae_destroyed"] = float(np.mean(np.abs(da - db)))
            out["error_variance_destroyed"] = float(np.var(db - da))
    return out
