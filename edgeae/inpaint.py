"""Classical baselines that fill the destroyed pixels of a sparsely sampled image.

- ``telea`` / ``ns``: OpenCV's fast-marching (Telea 2004) and Navier-Stokes inpainting, run on each channel
  as 16-bit (OpenCV's float path for Telea is broken and its 8-bit path rounds); the radius grows with the
  mean gap between samples.
- ``linear``: piecewise-linear interpolation on the Delaunay triangulation of the known pixels, the same
  interpolant as ``scipy.interpolate.griddata(method="linear")``; pixels outside the convex hull take their
  nearest known value. Triangles are rasterised in numpy, which is ~50× faster than griddata's point
  location on megapixel frames.
- ``nearest``: each pixel takes the value of its nearest known pixel (exact Euclidean distance transform,
  equivalent to ``griddata(method="nearest")`` up to ties).
- ``normconv``: normalised convolution (Knutsson & Westin 1993): Gaussian-weighted means of the known pixels
  at σ = 4, 2, 1 px, each finer scale taking over where its kernel saw about two or more samples. It is the
  fixed pre-fill layer inside the ``unet`` CAE variant (``edgeae.models.unet_cae``), reported here on its own
  so the learned part of that model is measured against it.
- ``normconv-wide``: the same normalised convolution with one coarser scale, σ = 8, 4, 2, 1 px
  (:data:`NORMCONV_WIDE_SIGMAS`): at keep 0.02 (about 7 px between samples) σ ≤ 4 leaves the holes far from any
  sample at the image's global mean, σ = 8 fills them from their neighbourhood. A baseline only: the ``unet``
  pre-fill keeps :data:`NORMCONV_SIGMAS`.
- ``blend``: the pixelwise mean of the ``normconv-wide`` and ``linear`` fills (:data:`BLEND_OF`), no parameter. The
  pair was picked on the validation files (``benchmarks/classical_validation.py``, docs/reconstruction.md): it is
  the best classical fill there at keep 0.02, 0.05 and 0.1 on rover and grey frames.

All methods take float32 (H, W, C) or (H, W) in [0, 1] plus ``known`` bool (H, W) and return float32 of the
same shape with the known pixels unchanged bit for bit. :func:`prepare` checks that contract for every fill (this
module's, :func:`edgeae.reconstruct.reconstruct`, :func:`edgeae.crosscheck.cross_checked_fill`): integer samples
and floats outside [0, 1] are refused, a NaN/inf known sample counts as destroyed.
"""

from __future__ import annotations

import logging
import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from edgeae._optional import require
from edgeae.nodata import across_channels

METHODS = ("telea", "ns", "linear", "nearest", "normconv", "normconv-wide", "blend")
NORMCONV_SIGMAS = (1.0, 2.0, 4.0)  # must match edgeae.models.unet_cae.SIGMAS
NORMCONV_WIDE_SIGMAS = (1.0, 2.0, 4.0, 8.0)  # the normconv-wide baseline only (not the unet pre-fill's)
BLEND_OF = ("normconv-wide", "linear")  # the fills blend averages, picked on validation (module docstring)
_TRI_CHUNK = 20_000  # triangles rasterised per step (bounds temporary memory)
# how far known samples may stray outside [0, 1] (resampling overshoot, rounding) before the image is refused
RANGE_SLACK = 0.01
log = logging.getLogger(__name__)


def _convert_hint(dtype: np.dtype) -> str:
    if dtype.kind == "b":
        return "image.astype(np.float32)"
    if dtype.kind in "iu" and dtype.itemsize <= 2:
        top = np.iinfo(dtype).max
        return f"divide by {top} (or by 2**bits - 1 for samples of fewer bits)"
    return "divide by 2**bits - 1 for bits-deep samples (255 for 8-bit)"


def prepare(image: np.ndarray, known: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool, int]:
    """Check a fill's input and return (float32 (H, W, C) with the destroyed pixels zeroed, the known mask less
    its non-finite samples, whether the input was (H, W), how many known samples were non-finite).

    Refused (ValueError): integer or bool samples and floats outside [0, 1] by more than ``RANGE_SLACK`` (a
    fill clips what it invents to [0, 1] and keeps the known samples as given: 0-255 data came out as a mix of
    both), a bad ``known``, and an image with no finite known sample. A NaN/inf known sample would spread
    through every fill: it is not known (the caller says so; the count is returned).
    """
    raw = np.asarray(image)
    if raw.dtype.kind not in "f":
        raise ValueError(
            f"image samples are {raw.dtype}, but a fill takes float images in [0, 1]: use "
            f"edgeae.read_image(path).pixels, or {_convert_hint(raw.dtype)}"
        )
    img = raw.astype(np.float32, copy=False)
    squeeze = img.ndim == 2
    if squeeze:
        img = img[..., None]
    if img.ndim != 3:
        raise ValueError(f"image must be (H, W) or (H, W, C), got shape {np.shape(image)}")
    k = np.asarray(known)
    if k.dtype != bool or k.shape != img.shape[:2]:
        raise ValueError(f"known must be a bool array of shape {img.shape[:2]}, got {k.dtype} {k.shape}")
    if img.size == 0:
        raise ValueError(f"image is empty (shape {np.shape(image)}): nothing to reconstruct")
    finite = across_channels(img, np.logical_and, np.isfinite)
    bad = int(np.count_nonzero(k & ~finite))
    if bad:
        k = k & finite
    if not k.any():
        if not finite.any():
            why = "the image holds no finite sample (all NaN or inf)"
        elif bad:
            why = f"all {bad} known pixels hold NaN or inf samples"
        else:
            why = "no known pixels (raise the keep fraction)"
        raise ValueError(f"nothing to reconstruct from: {why}")
    vals = img[k]
    lo, hi = float(vals.min()), float(vals.max())
    if lo < -RANGE_SLACK or hi > 1.0 + RANGE_SLACK:
        hint = "; 0-255 data? divide by 255 (2**bits - 1 for bits-deep samples)" if hi > 1.5 else ""
        raise ValueError(
            f"known samples span [{lo:.4g}, {hi:.4g}], outside [0, 1]: a fill takes float images in [0, 1] "
            f"(edgeae.read_image(path).pixels){hint}"
        )
    img = np.where(k[..., None], img, np.float32(0.0))  # destroyed pixels may hold anything, NaN included
    return img, k, squeeze, bad


def default_radius(keep: float) -> int:
    """Inpainting radius in pixels for a kept fraction: ~0.8 × mean sample spacing, clipped to [1, 10]."""
    return int(min(10, max(1, round(0.8 / math.sqrt(max(keep, 1e-6))))))


def _opencv(img: np.ndarray, known: np.ndarray, method: str, radius: int | None) -> np.ndarray:
    cv2 = require("cv2")
    flag = cv2.INPAINT_TELEA if method == "telea" else cv2.INPAINT_NS
    r = default_radius(float(known.mean())) if radius is None else int(radius)
    holes = (~known).astype(np.uint8)
    out = np.empty_like(img)

    def one(c: int) -> None:
        ch16 = np.round(np.clip(img[..., c], 0.0, 1.0) * 65535.0).astype(np.uint16)
        ch16[~known] = 0
        out[..., c] = cv2.inpaint(ch16, holes, r, flag).astype(np.float32) / 65535.0

    # cv2.inpaint is single-threaded and releases the GIL: the channels run side by side (1.9x on RGB)
    threads = min(img.shape[2], os.cpu_count() or 1)
    if threads <= 1:
        for c in range(img.shape[2]):
            one(c)
    else:
        with ThreadPoolExecutor(threads, thread_name_prefix="edgeae-inpaint") as pool:
            list(pool.map(one, range(img.shape[2])))  # list(): re-raises a channel's error here
    return out


def nearest_indices(known: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every pixel, the (row, col) of its nearest known pixel (Euclidean distance transform)."""
    ndimage = require("scipy.ndimage")
    # the indices alone: the float64 distances (8 bytes a pixel) are not needed
    iy, ix = ndimage.distance_transform_edt(~known, return_distances=False, return_indices=True)
    return iy, ix


def _nearest(img: np.ndarray, known: np.ndarray) -> np.ndarray:
    iy, ix = nearest_indices(known)
    return img[iy, ix]


def _rasterise(pts: np.ndarray, simplices: np.ndarray, values: np.ndarray, out: np.ndarray, todo: np.ndarray) -> None:
    """Fill ``out[y, x]`` where ``todo`` is True with the barycentric interpolation of the covering triangle."""
    for lo in range(0, len(simplices), _TRI_CHUNK):
        s = simplices[lo : lo + _TRI_CHUNK]
        p = pts[s]  # (T, 3, 2) integer (y, x)
        y0, y1 = p[..., 0].min(1), p[..., 0].max(1)
        x0, x1 = p[..., 1].min(1), p[..., 1].max(1)
        bw = x1 - x0 + 1
        count = (y1 - y0 + 1) * bw
        tid = np.repeat(np.arange(len(s)), count)
        k = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
        cy = y0[tid] + k // bw[tid]
        cx = x0[tid] + k % bw[tid]
        sel = todo[cy, cx]
        tid, cy, cx = tid[sel], cy[sel], cx[sel]
        a, b, c = (p[tid, i].astype(np.float64) for i in range(3))
        v0, v1 = b - a, c - a
        v2y, v2x = cy - a[:, 0], cx - a[:, 1]
        den = v0[:, 1] * v1[:, 0] - v1[:, 1] * v0[:, 0]
        ok = den != 0
        den = np.where(ok, den, 1.0)
        l1 = (v2x * v1[:, 0] - v1[:, 1] * v2y) / den
        l2 = (v0[:, 1] * v2y - v2x * v0[:, 0]) / den
        l0 = 1.0 - l1 - l2
        eps = -1e-9
        inside = ok & (l0 >= eps) & (l1 >= eps) & (l2 >= eps)
        tid, cy, cx = tid[inside], cy[inside], cx[inside]
        lam = np.stack([l0[inside], l1[inside], l2[inside]], axis=1)  # (P, 3)
        vv = values[s[tid]]  # (P, 3, C)
        out[cy, cx] = np.einsum("pk,pkc->pc", lam, vv).astype(np.float32)
        todo[cy, cx] = False  # a pixel on a shared edge takes the first triangle's (identical) value


def _linear(img: np.ndarray, known: np.ndarray) -> np.ndarray:
    spatial = require("scipy.spatial")
    out = img.copy()
    ys, xs = np.nonzero(known)
    todo = ~known
    if len(ys) >= 3:
        pts = np.column_stack([ys, xs]).astype(np.int64)
        try:
            tri = spatial.Delaunay(pts.astype(np.float64))
        except spatial.QhullError:  # all samples collinear: no triangles, nearest fills everything
            tri = None
        if tri is not None:
            _rasterise(pts, tri.simplices, img[ys, xs].astype(np.float64), out, todo)
    if todo.any():  # outside the convex hull
        iy, ix = nearest_indices(known)
        out[todo] = img[iy[todo], ix[todo]]
    return out


def _normconv(img: np.ndarray, known: np.ndarray, sigmas: tuple[float, ...] = NORMCONV_SIGMAS) -> np.ndarray:
    ndimage = require("scipy.ndimage")
    m = known.astype(np.float32)
    x = img * m[..., None]
    est = np.broadcast_to(x.sum((0, 1)) / max(float(m.sum()), 1e-6), img.shape).astype(np.float32)
    for sigma in sorted(sigmas, reverse=True):  # coarse to fine, as in the exported layer
        opts = {"sigma": sigma, "mode": "nearest", "radius": max(1, math.ceil(3 * sigma))}
        den = ndimage.gaussian_filter(m, **opts)
        num = np.stack([ndimage.gaussian_filter(x[..., c], **opts) for c in range(img.shape[2])], axis=-1)
        fine = num / np.maximum(den, 1e-6)[..., None]
        w = (1 - np.exp(-den * (2 * math.pi * sigma**2) / 1.5))[..., None]
        est = w * fine + (1 - w) * est
    return est.astype(np.float32)


def inpaint(image: np.ndarray, known: np.ndarray, method: str, radius: int | None = None) -> np.ndarray:
    """Fill the pixels where ``known`` is False from those where it is True. See the module docstring."""
    img, k, squeeze, bad = prepare(image, known)
    if bad:
        log.warning("%d known pixels hold NaN or inf samples: treated as destroyed", bad)
    out = fill_prepared(img, k, method, radius)
    return out[..., 0] if squeeze else out


def fill_prepared(img: np.ndarray, k: np.ndarray, method: str, radius: int | None = None) -> np.ndarray:
    """:func:`inpaint` of an input :func:`prepare` already checked (float32 (H, W, C), destroyed pixels zeroed,
    ``k`` without non-finite samples), for callers that prepared it themselves (``reconstruct``, the
    cross-check): the checks and the image copy are not done twice."""
    if method not in METHODS:
        raise ValueError(f"unknown inpainting method {method!r}; expected one of {METHODS}")
    if method in ("telea", "ns"):
        out = _opencv(img, k, method, radius)
    elif method == "linear":
        out = _linear(img, k)
    elif method == "normconv":
        out = _normconv(img, k)
    elif method == "normconv-wide":
        out = _normconv(img, k, NORMCONV_WIDE_SIGMAS)
    elif method == "blend":  # each fill is clipped and keeps the known samples: so does their mean
        a, b = (fill_prepared(img, k, m, radius) for m in BLEND_OF)
        return (a + b) * np.float32(0.5)
    else:
        out = _nearest(img, k)
    out = np.clip(out, 0.0, 1.0)
    out[k] = img[k]
    return out
