"""Reconstruction quality: PSNR, SSIM, mean absolute error and error variance, for images in [0, 1].

Images are (H, W) or (H, W, C) float arrays with data range 1: integer arrays are refused (0-255 pairs gave a
PSNR of -8 dB next to an SSIM of 0.999). :func:`compare` (``edgeae.image_metrics``) refuses float samples outside
[0, 1] by more than :data:`edgeae.inpaint.RANGE_SLACK`, as a fill does; the single metrics (:func:`psnr`,
:func:`ssim`, ...) log float samples far outside [0, 1] as a warning (decoders' raw outputs go through them).
NaN/inf samples (which make every metric they touch NaN) are logged as warnings with their count. ``compare``
also reports the metrics over the destroyed pixels alone, the ones a reconstruction actually had to invent.

``compare`` and :func:`ssim` work in row bands of about :data:`BAND_SAMPLES` samples, converted to float64 one
band at a time (sums in float64, SSIM bands overlapping by half its window): their memory does not grow with the
image, and their values are those of whole-image float64 arrays up to the order of summation (~1e-15 relative).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from edgeae._optional import require

log = logging.getLogger(__name__)
# samples per row band of compare and ssim: 2 MiB per float64 copy, ~30 MiB of SSIM work arrays per band
BAND_SAMPLES = 1 << 18


def _warn_non_finite(bad_a: int, bad_b: int) -> None:
    if bad_a or bad_b:
        log.warning(
            "image metrics: %d NaN/inf samples in the original and %d in the reconstruction: every metric they "
            "touch is NaN (compare over valid= pixels, or replace them first)",
            bad_a,
            bad_b,
        )


def _check_samples(a: np.ndarray, b: np.ndarray) -> None:
    """Warn (one line) about NaN/inf samples and about float data clearly outside the range [0, 1] assumed."""
    _warn_non_finite(*(int(x.size - np.count_nonzero(np.isfinite(x))) for x in (a, b)))
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


def _views(original: np.ndarray, recon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both images as they are (no copy) with one shape ((H, W, 1) squeezed to (H, W)); integers refused."""
    for name, x in (("original", original), ("reconstruction", recon)):
        dt = np.asarray(x).dtype
        if dt.kind not in "f":
            raise ValueError(
                f"image metrics take float images in [0, 1] (data range 1); the {name} is {dt}: convert it "
                "(edgeae.read_image(path).pixels, or divide by 255, 2**bits - 1 for bits-deep samples)"
            )
    a, b = np.asarray(original), np.asarray(recon)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if b.ndim == 3 and b.shape[2] == 1:
        b = b[..., 0]
    if a.shape != b.shape:
        raise ValueError(f"cannot compare images of different shapes {a.shape} and {b.shape}")
    if a.ndim not in (2, 3):
        raise ValueError(f"images must be (H, W) or (H, W, C), got {a.shape}")
    if a.size == 0:
        raise ValueError(f"image metrics need two arrays of the same non-empty shape, got {a.shape}")
    return a, b


def _pair(original: np.ndarray, recon: np.ndarray, check: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Both images as float64 of one shape ((H, W, 1) squeezed to (H, W)); ``check``: warn about their samples."""
    a, b = (x.astype(np.float64, copy=False) for x in _views(original, recon))
    if check:
        _check_samples(a, b)
    return a, b


def _bands(height: int, row_samples: int, least: int = 1) -> list[tuple[int, int]]:
    """(start, stop) row bands of about :data:`BAND_SAMPLES` samples, each at least ``least`` rows (a short last
    band joins the one before it)."""
    rows = max(least, BAND_SAMPLES // max(row_samples, 1), 1)
    out = [(r, min(r + rows, height)) for r in range(0, height, rows)]
    if len(out) >= 2 and out[-1][1] - out[-1][0] < least:
        out[-2:] = [(out[-2][0], height)]
    return out


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
    return _psnr_of_mse(float(np.mean((a - b) ** 2)), peak, cap)


def _psnr_of_mse(mse: float, peak: float = 1.0, cap: float | None = None) -> float:
    if not math.isfinite(mse):  # an inf or NaN sample: the metric is NaN, as the warning about them says
        return math.nan
    if cap is not None and mse <= peak * peak * 10 ** (-cap / 10):
        return cap
    return math.inf if mse == 0 else 10.0 * math.log10(peak * peak / mse)


def _ssim(a: np.ndarray, b: np.ndarray, valid: np.ndarray | None = None) -> float:
    """scikit-image's mean SSIM (7×7 window or the largest odd one that fits), or with ``valid`` the mean of its
    SSIM map over the valid pixels, computed band by band: each band of rows is extended by half the window on
    either side (the rows its window reaches), so its map equals the whole image's there."""
    metrics = require("skimage.metrics")
    h, w = a.shape[0], a.shape[1]
    win = min(7, h, w)
    win -= 1 - win % 2
    if win < 3:
        raise ValueError(f"image {a.shape} is too small for SSIM (needs at least 3×3 pixels)")
    pad = (win - 1) // 2
    kwargs: dict[str, Any] = {"data_range": 1.0, "win_size": win, "full": True}
    if a.ndim == 3:
        kwargs["channel_axis"] = 2
    channels = a.shape[2] if a.ndim == 3 else 1
    total = np.zeros(channels, dtype=np.float64)
    for r0, r1 in _bands(h, w * channels, least=win):
        e0, e1 = max(0, r0 - pad), min(h, r1 + pad)
        band_a, band_b = (x[e0:e1].astype(np.float64) for x in (a, b))
        if valid is not None:  # samples outside ``valid`` (NaN no-data) must not turn their valid neighbours' map
            outside = ~valid[e0:e1]  # NaN; a NaN inside ``valid`` stays NaN, as in every other metric; finite
            if band_a.ndim == 3:  # samples outside it keep their values (the map is as before)
                outside = outside[..., None]
            for x in (band_a, band_b):
                x[~np.isfinite(x) & outside] = 0.0
        _, smap = metrics.structural_similarity(band_a, band_b, **kwargs)
        smap = smap[r0 - e0 : r0 - e0 + (r1 - r0)]  # the band's own rows, exact
        if valid is not None:
            plane = smap.mean(axis=2) if smap.ndim == 3 else smap
            total[0] += plane[valid[r0:r1]].sum()
            continue
        lo, hi = max(r0, pad), min(r1, h - pad)  # skimage's mean leaves out half a window at every edge
        if hi > lo:
            inner = smap[lo - r0 : hi - r0, pad : w - pad]
            total += inner.reshape(inner.shape[0] * inner.shape[1], channels).sum(axis=0)
    if valid is not None:
        return float(total[0] / np.count_nonzero(valid))
    return float((total / ((h - 2 * pad) * (w - 2 * pad))).mean())


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
    a, b = _views(original, recon)
    _check_samples(a, b)
    return _ssim(a, b, None if valid is None else np.asarray(valid, dtype=bool))


class _Errors:
    """Running count, mean, sum of squares about the mean (Chan et al.'s pairwise update), sum of squares and sum
    of absolute values of the signed error, in float64."""

    def __init__(self) -> None:
        self.n, self.mean, self.m2, self.sq, self.abs = 0, 0.0, 0.0, 0.0, 0.0

    def add(self, d: np.ndarray) -> None:
        n = int(d.size)
        if n == 0:
            return
        mean = float(d.mean())
        m2 = float(np.square(d - mean).sum())
        total = self.n + n
        delta = mean - self.mean
        self.m2 += m2 + delta * delta * self.n * n / total
        self.mean += delta * n / total
        self.n = total
        self.sq += float(np.square(d).sum())
        self.abs += float(np.abs(d).sum())

    def metrics(self, suffix: str = "") -> dict[str, float]:
        return {
            f"psnr{suffix}": _psnr_of_mse(self.sq / self.n),
            f"mae{suffix}": self.abs / self.n,
            f"error_variance{suffix}": self.m2 / self.n,
        }


def _check_range(name: str, lo: float, hi: float) -> None:
    """Refuse samples outside [0, 1] by more than a fill accepts (:data:`edgeae.inpaint.RANGE_SLACK`)."""
    from edgeae.inpaint import RANGE_SLACK

    if lo < -RANGE_SLACK or hi > 1.0 + RANGE_SLACK:
        hint = "; 0-255 data? divide by 255 (2**bits - 1 for bits-deep samples)" if hi > 1.5 else ""
        raise ValueError(
            f"the {name}'s samples span [{lo:.4g}, {hi:.4g}], outside [0, 1]: image metrics take float images in "
            f"[0, 1] (data range 1; edgeae.read_image(path).pixels){hint}"
        )


def compare(
    original: np.ndarray, recon: np.ndarray, known: np.ndarray | None = None, valid: np.ndarray | None = None
) -> dict[str, float]:
    """All metrics over the whole image: a dict with ``psnr`` (dB, data range 1), ``ssim``, ``mae`` and
    ``error_variance``; with ``known`` (bool (H, W), True = sampled pixel) also over the destroyed pixels only
    (``psnr_destroyed``, ``mae_destroyed``, ...) and the kept fraction (``keep_actual``). ``ssim`` is NaN for an
    image under 3 pixels high or wide (a line scan), which SSIM's window does not fit.

    ``valid`` (bool (H, W), e.g. :attr:`edgeae.imageio.ImageData.valid`): every metric over the valid pixels only,
    so a product's no-data margins and NaN samples, whose "truth" is a fill value, do not count; adds
    ``valid_fraction``. All metrics are NaN when no pixel is valid. Float images in [0, 1] (data range 1):
    integer arrays and samples outside [0, 1] by more than :data:`edgeae.inpaint.RANGE_SLACK` (over the valid
    pixels) are refused; NaN/inf samples (over the valid pixels) are logged as a warning with their count.
    Computed in row bands (module docstring): about 30 bytes per pixel beyond the inputs."""
    a, b = _views(original, recon)
    h, w = a.shape[0], a.shape[1]
    for name, m in (("valid", valid), ("known", known)):  # as fill: a float mask of 0.1 was silently all True
        if m is not None and np.asarray(m).dtype != bool:
            raise ValueError(f"{name} must be a bool array (True = {name}), got {np.asarray(m).dtype}")
    v = None if valid is None else np.asarray(valid)
    if v is not None and v.shape != (h, w):
        raise ValueError(f"valid mask {v.shape} does not match image {a.shape}")
    k = None if known is None else np.asarray(known)
    if k is not None and k.shape != (h, w):
        raise ValueError(f"known mask {k.shape} does not match image {a.shape}")
    if v is not None and not v.any():
        nan = math.nan
        return {"psnr": nan, "ssim": nan, "mae": nan, "error_variance": nan, "valid_fraction": 0.0}
    mask = None if v is None or v.all() else v
    every, lost = _Errors(), _Errors()
    bad = [0, 0]
    span = [[math.inf, -math.inf], [math.inf, -math.inf]]
    for r0, r1 in _bands(h, a[0].size):
        m = None if mask is None else mask[r0:r1]
        band = [x[r0:r1] if m is None else x[r0:r1][m] for x in (a, b)]
        for i, x in enumerate(band):
            ok = np.isfinite(x)
            bad[i] += int(x.size - np.count_nonzero(ok))
            span[i][0] = min(span[i][0], float(np.min(x, where=ok, initial=np.inf)))
            span[i][1] = max(span[i][1], float(np.max(x, where=ok, initial=-np.inf)))
        d = band[1].astype(np.float64) - band[0].astype(np.float64)
        every.add(d)
        if k is not None:
            gone = ~k[r0:r1] if m is None else ~k[r0:r1][m]
            lost.add(d[gone])
    for name, (lo, hi) in zip(("original", "reconstruction"), span, strict=True):
        _check_range(name, lo, hi)
    _warn_non_finite(*bad)
    ev = every.metrics()
    out = {
        "psnr": ev["psnr"],
        "ssim": _ssim(a, b, mask) if min(h, w) >= 3 else math.nan,
        "mae": ev["mae"],
        "error_variance": ev["error_variance"],
    }
    if v is not None and mask is None:
        out["valid_fraction"] = 1.0
    if k is not None:
        kept = k if mask is None else k[mask]
        out["keep_actual"] = float(kept.mean())
        if lost.n:
            out.update(lost.metrics("_destroyed"))
    if mask is not None:
        out["valid_fraction"] = float(mask.mean())
    return out
