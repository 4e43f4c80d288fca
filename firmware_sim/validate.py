"""Frame validation: is this frame (or strip) what the camera is supposed to deliver?

Two checks, both numpy only and both returning a reason instead of raising, so the loop can log the frame
and move on: :func:`check_header` before any pixel is read (shape, channels, sample type), and
:func:`check_pixels` on each strip (non-finite values, saturated fraction, out-of-range samples).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeae.nodata import across_channels

from .frames import FrameHeader
from .mission import Camera, margin_sides


@dataclass(frozen=True)
class Verdict:
    """The outcome of a check: ``ok``, or not with a short machine-readable ``reason`` and a detail."""

    ok: bool
    reason: str = ""
    detail: str = ""
    nan_fraction: float = 0.0
    saturated_fraction: float = 0.0


OK = Verdict(True)


def max_value(bit_depth: int) -> int:
    """The largest raw sample of a ``bit_depth``-bit camera."""
    return (1 << bit_depth) - 1


def check_header(header: FrameHeader, camera: Camera) -> Verdict:
    """Shape, channels and sample type against the mission's camera. With ``[camera] bayer`` this is the
    stored frame, before demosaicing: 1 channel (the mosaic) or 3 (grey-stored mosaic, or colour already)."""
    if header.height < 1 or header.width < 1:
        return Verdict(False, "shape", f"empty frame {header.height}x{header.width}")
    if camera.height and header.height != camera.height:
        return Verdict(False, "shape", f"height {header.height} != camera height {camera.height}")
    if camera.width and header.width != camera.width:
        return Verdict(False, "shape", f"width {header.width} != camera width {camera.width}")
    if camera.bayer and header.channels not in (1, 3):
        return Verdict(
            False, "channels", f"{header.channels} channels: a {camera.bayer} colour-filter frame has 1 or 3"
        )
    if not camera.bayer and header.channels != camera.channels:
        return Verdict(False, "channels", f"{header.channels} channels != camera's {camera.channels}")
    t, b, left, right = margin_sides(camera.margin)
    if t + b >= header.height or left + right >= header.width:
        return Verdict(
            False,
            "margin",
            f"the fixed margin {list(camera.margin)} leaves no pixel of a {header.height} x {header.width} px "
            "(height x width) frame",
        )
    kind = header.dtype.kind
    if kind not in "uf" and not (kind == "i" and header.dtype.itemsize <= 2):
        return Verdict(False, "dtype", f"sample type {header.dtype} is not an unsigned integer or float")
    if kind in "ui" and header.dtype.itemsize * 8 < camera.bit_depth:
        return Verdict(False, "dtype", f"{header.dtype} cannot hold {camera.bit_depth}-bit samples")
    if kind in "ui" and camera.bit_depth <= 8 and header.dtype.itemsize > 1:
        return Verdict(False, "dtype", f"{header.dtype} samples for an {camera.bit_depth}-bit camera")
    return OK


def check_pixels(strip: np.ndarray, camera: Camera) -> Verdict:
    """Non-finite values, saturation and range of one strip of raw samples (rows, W, C).

    Float frames are expected in [0, 1]; integer frames in [0, 2**bit_depth - 1]. A pixel is saturated when
    any channel sits at the top of the range.
    """
    n = strip.shape[0] * strip.shape[1]
    if n == 0:
        return Verdict(False, "shape", "empty strip")
    top = 1.0 if strip.dtype.kind == "f" else max_value(camera.bit_depth)
    nan_frac = 0.0
    if strip.dtype.kind == "f":
        bad = ~across_channels(strip, np.logical_and, np.isfinite)
        nan_frac = float(bad.sum()) / n
        if nan_frac > camera.max_nan_fraction:
            return Verdict(False, "nan", _nan_detail(int(bad.sum()), n), nan_frac)
        lo, hi = float(np.nanmin(strip)), float(np.nanmax(strip))
        if lo < 0.0 or hi > 1.0:
            return Verdict(False, "range", f"float samples span [{lo:.3g}, {hi:.3g}], want [0, 1]", nan_frac)
    elif (np.iinfo(strip.dtype).max > top and int(strip.max()) > top) or (
        strip.dtype.kind == "i" and int(strip.min()) < 0
    ):  # (a uint8 strip of an 8-bit camera cannot exceed its range: no pass over it)
        return Verdict(False, "range", f"samples exceed the {camera.bit_depth}-bit range")
    hot = across_channels(strip, np.logical_or, lambda p: p >= top)
    sat = float(np.count_nonzero(hot)) / n
    if sat > camera.max_saturated_fraction:
        return Verdict(False, "saturated", f"{sat:.3f} of pixels saturated", nan_frac, sat)
    return Verdict(True, nan_fraction=nan_frac, saturated_fraction=sat)


def _nan_detail(count: int, n: int) -> str:
    """``count`` NaN/inf pixels of a strip of ``n``, said: "all 76,800 pixels (100%)" for a whole strip (its fraction,
    1, read as "1 of them"); else the count, then a fraction that does not round one pixel to 0.0000, nor a strip
    NaN but for one pixel to 1."""
    if count == n:
        return f"all {n:,} pixels (100%) are NaN/inf"
    share = f"{count / n:.3g}"
    return f"{count:,} pixel(s), {'>0.999' if float(share) >= 1 else share} of them, are NaN/inf"


def to_samples(strip: np.ndarray, bit_depth: int) -> np.ndarray:
    """Raw samples in the wire's sample type (uint8 up to 8 bits, else uint16); floats in [0, 1] are scaled
    to the bit depth and NaN becomes 0."""
    want = np.uint8 if bit_depth <= 8 else np.uint16
    if strip.dtype.kind == "f":
        v = np.nan_to_num(strip, nan=0.0, posinf=1.0, neginf=0.0)
        return np.clip(np.rint(v * max_value(bit_depth)), 0, max_value(bit_depth)).astype(want)
    return strip.astype(want, copy=False)
