"""Labels of the evaluation sets turned into patch labels (pure numpy / stdlib).

- ``lroc_nac_craters``: ``<image>.txt`` lists crater boxes ``ID,X,Y,W,H,C_X,CY`` in pixels. A patch is
  positive for a size bin when it holds the centre of a crater whose diameter (max of W, H) lies in the bin.
- ``hirise_landmarks``: ``labels.txt`` lists ``<file> <class>`` for 227×227 crops; classes 0 other, 1 crater,
  2 dark dune, 3 slope streak, 4 bright dune, 6 edge. A crop is scored from its patch scores (the maximum).
  Crops are split by parent product (``ESP_011289_1950``), never by crop, so no product is both trained on
  and evaluated.
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path

import numpy as np

HIRISE_CLASSES: dict[int, str] = {
    0: "other",
    1: "crater",
    2: "dark dune",
    3: "slope streak",
    4: "bright dune",
    6: "edge",
}
# Crater diameter bins in pixels (LROC NAC mosaics at ~0.5 m/px; craters < 8 px are not labelled).
CRATER_BINS: tuple[tuple[float, float], ...] = ((0.0, 16.0), (16.0, 32.0), (32.0, 64.0), (64.0, math.inf))


def read_craters(path: str | os.PathLike[str]) -> np.ndarray:
    """Crater list -> float array (K, 3) of (centre x, centre y, diameter) in pixels; a row with a value that is
    not a finite number is refused with its file and line (a centre outside the image is kept: see
    :func:`craters_outside`)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"crater label file {p} does not exist")
    rows: list[tuple[float, float, float]] = []
    for n, line in enumerate(p.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("ID"):
            continue
        parts = line.split(",")
        if len(parts) != 7:
            raise ValueError(f"{p}:{n}: expected 7 fields ID,X,Y,W,H,C_X,CY, got {len(parts)}")
        try:
            _, _, _, w, h, cx, cy = (float(v) for v in parts)
        except ValueError as exc:
            raise ValueError(f"{p}:{n}: not a number ({exc})") from exc
        if not all(math.isfinite(v) for v in (w, h, cx, cy)):
            raise ValueError(f"{p}:{n}: W, H, C_X and CY must be finite numbers, got {line!r}")
        rows.append((cx, cy, max(w, h)))
    return np.asarray(rows, dtype=np.float64).reshape(-1, 3)


def craters_outside(craters: np.ndarray, shape: tuple[int, ...]) -> int:
    """How many crater centres of ``craters`` (K, 3) lie outside an image of ``shape`` (H, W, ...): no patch can
    hold them, so they label nothing (counted, not silently lost)."""
    c = np.asarray(craters, dtype=np.float64).reshape(-1, 3)
    h, w = shape[0], shape[1]
    return int(((c[:, 0] < 0) | (c[:, 0] >= w) | (c[:, 1] < 0) | (c[:, 1] >= h)).sum())


def crater_file_for(image: str | os.PathLike[str]) -> Path:
    """The label file next to an LROC mosaic (``x.png`` -> ``x.txt``)."""
    return Path(image).with_suffix(".txt")


def patch_labels(
    xy: np.ndarray,
    patch: int,
    craters: np.ndarray,
    d_min: float = 0.0,
    d_max: float = math.inf,
) -> np.ndarray:
    """Bool (N,): patch with top-left ``xy[i] = (x, y)`` holds a crater centre with d_min <= d < d_max.

    A centre at (cx, cy) belongs to the patch when x <= cx < x + patch and y <= cy < y + patch.
    """
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    c = np.asarray(craters, dtype=np.float64).reshape(-1, 3)
    c = c[(c[:, 2] >= d_min) & (c[:, 2] < d_max)]
    if c.size == 0 or xy.size == 0:
        return np.zeros(len(xy), dtype=bool)
    inside_x = (c[None, :, 0] >= xy[:, None, 0]) & (c[None, :, 0] < xy[:, None, 0] + patch)
    inside_y = (c[None, :, 1] >= xy[:, None, 1]) & (c[None, :, 1] < xy[:, None, 1] + patch)
    return np.asarray((inside_x & inside_y).any(axis=1))


def largest_crater(xy: np.ndarray, patch: int, craters: np.ndarray) -> np.ndarray:
    """Float (N,): diameter of the largest crater whose centre lies in each patch (0 when none)."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    c = np.asarray(craters, dtype=np.float64).reshape(-1, 3)
    if c.size == 0 or xy.size == 0:
        return np.zeros(len(xy))
    inside = (
        (c[None, :, 0] >= xy[:, None, 0])
        & (c[None, :, 0] < xy[:, None, 0] + patch)
        & (c[None, :, 1] >= xy[:, None, 1])
        & (c[None, :, 1] < xy[:, None, 1] + patch)
    )
    return np.asarray(np.where(inside, c[None, :, 2], 0.0).max(axis=1))


def bin_name(lo: float, hi: float) -> str:
    if math.isinf(hi):
        return f"craters >= {lo:g} px"
    return f"craters < {hi:g} px" if lo <= 0 else f"craters {lo:g}-{hi:g} px"


def read_hirise_labels(path: str | os.PathLike[str]) -> list[tuple[str, int]]:
    """``labels.txt`` -> [(file name, class)] in file order; a crop listed twice is refused with both lines (it
    would be counted twice, or as both a positive and a negative). Classes outside :data:`HIRISE_CLASSES` are
    returned as read (the evaluation counts them)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"HiRISE landmark labels {p} do not exist")
    out: list[tuple[str, int]] = []
    seen: dict[str, tuple[int, int]] = {}
    for n, line in enumerate(p.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise ValueError(f"{p}:{n}: expected '<file> <class>', got {line!r}")
        name, cls = parts[0], int(parts[1])
        if name in seen:
            first, was = seen[name]
            raise ValueError(f"{p}:{n}: {name} is listed again (class {cls}; line {first}: class {was})")
        seen[name] = (n, cls)
        out.append((name, cls))
    return out


def hirise_product(name: str) -> str:
    """Parent product of a landmark crop: ``ESP_011289_1950_RED-0006.jpg`` -> ``ESP_011289_1950``."""
    return Path(name).name.split("_RED")[0]


def group_label(name: str, pattern: str) -> str:
    """The product an image belongs to under a ``--group`` regex (``edgeae score``, ``edgeae scan``): the first
    match of ``pattern`` in ``name``; ValueError when the pattern is not a regular expression or gives no (or an
    empty) match (every image needs a product)."""
    import re

    try:
        m = re.search(pattern, name)
    except re.error as exc:
        raise ValueError(f"group {pattern!r} is not a regular expression: {exc}") from None
    if m is None or not m.group(0):
        raise ValueError(f"{name}: its name does not match --group {pattern!r} (every image needs a product)")
    return m.group(0)


def _product_hash(product: str) -> float:
    return int(hashlib.sha256(product.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def hirise_training_products(labels: list[tuple[str, int]], fraction: float = 0.5) -> set[str]:
    """Products whose class-0 crops the VAE may train on; every other product is for evaluation.

    Only products without any labelled landmark (classes 1-4) qualify, and of those the ``fraction`` chosen by
    the SHA-256 of the product id (deterministic, independent of file order). Keeping every product with a
    landmark out of training keeps all positives for evaluation.
    """
    with_landmark = {hirise_product(f) for f, c in labels if c in (1, 2, 3, 4)}
    products = {hirise_product(f) for f, _ in labels}
    return {p for p in products - with_landmark if _product_hash(p) < fraction}
