"""Training crops: random (overlapping) square crops from master images, lightly augmented, no-data skipped.

Numpy + OpenCV only. Randomness comes in as a ``numpy.random.Generator``. Augmentation is one affine warp
per crop (``cv2.warpAffine`` sampling only the output pixels): rotation, shear and horizontal flip about
the crop centre, plus a small shift; the random crop position itself is the large shift.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeae._optional import require

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Augment:
    """Light augmentation limits (the paper's "≤20%"): rotation ±20% of 90°, shift ±20% of a quarter crop,
    shear ±0.2, horizontal flip with probability 0.5. ``Augment.none()`` turns everything off."""

    rotation_deg: float = 18.0
    shift: float = 0.05
    shear: float = 0.2
    flip: bool = True

    def __post_init__(self) -> None:
        for name in ("rotation_deg", "shift", "shear"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"augment {name} must be finite and >= 0, got {v}")
        if self.rotation_deg > 45 or self.shear > 0.5 or self.shift > 0.5:
            raise ValueError(f"augmentation too strong for 'light' (rotation ≤ 45°, shear ≤ 0.5, shift ≤ 0.5): {self}")

    @classmethod
    def none(cls) -> Augment:
        return cls(rotation_deg=0.0, shift=0.0, shear=0.0, flip=False)


@dataclass(frozen=True)
class MasterImage:
    """A decoded master image: ``pixels`` float32 (H, W, C) in [0, 1], ``valid`` bool (H, W)."""

    pixels: np.ndarray
    valid: np.ndarray
    path: Path


def load_masters(files: Sequence[str | os.PathLike[str]], channels: int) -> list[MasterImage]:
    """Read every file as ``channels`` (1 grey, 3 RGB) with its no-data mask (edgeae.imageio). An image without a
    valid pixel (all no-data, e.g. all black) gives no crops: one warning names every such file
    (:func:`without_crops`). Files that cannot be read are all named in one
    :class:`~edgeae._headers.ImageReadError` (at most ten, then a count), not one per run."""
    from edgeae._headers import ImageReadError
    from edgeae.imageio import read_image

    out, bad = [], []
    for f in files:
        try:
            img = read_image(f, channels=channels, detect_nodata=True)
        except ImageReadError as exc:
            bad.append(str(exc))
            continue
        if not bad:  # once one failed the run is refused: the rest are only checked
            out.append(MasterImage(pixels=img.pixels, valid=img.valid, path=Path(f)))
    if bad:
        more = f"; and {len(bad) - 10} more" if len(bad) > 10 else ""
        raise ImageReadError(
            f"{len(bad)} of {len(files)} image files cannot be read: {'; '.join(bad[:10])}{more}; fix or remove them"
        )
    empty = without_crops(out)
    if 0 < len(empty) < len(out):  # all of them: refused by check_masters / sample_crops
        log.warning(
            "%d of %d images give no crops (every pixel is no-data) and are left out: %s%s", len(empty), len(out),
            ", ".join(str(p) for p in empty[:10]), " ..." if len(empty) > 10 else "",
        )  # fmt: skip
    return out


def without_crops(masters: Sequence[MasterImage]) -> list[Path]:
    """The files of ``masters`` that have no valid pixel: :func:`sample_crops` never draws from them."""
    return [mi.path for mi in masters if not mi.valid.any()]


def check_sizes(
    train: Sequence[Path],
    val: Sequence[Path],
    shapes: Sequence[tuple[int, int, int]],
    size: int,
    aug: Augment,
    folder: bool,
) -> None:
    """Refuse, in one ValueError naming all of them, the ``train`` images too small for ``size``-pixel crops with
    ``aug`` and the ``val`` images too small for ``size``-pixel crops (not augmented), from their headers' (H, W, C)
    ``shapes`` (train then val), before any image is decoded: the validation ones used to be named only once the
    training ones were removed, a second run later. ``folder``: the data is a folder split by file, whose split
    removing a file changes (the message says so)."""
    n = len(train)
    roles = (
        ("training", list(zip(train, shapes[:n], strict=True)), aug, " with this augmentation"),
        (
            "validation",
            list(zip(val, shapes[n:], strict=True)),
            Augment.none(),
            " (validation crops are not augmented)",
        ),
    )
    parts = []
    for role, items, role_aug, how in roles:
        need = 2 * _margin(size, role_aug) + 1
        small = [f"{p.name} ({w}x{h})" for p, (h, w, _) in items if min(h, w) < need]
        if small:
            listed = f"{', '.join(small[:10])}{' ...' if len(small) > 10 else ''}"
            parts.append(f"{len(small)} of {len(items)} {role} images need at least {need} px a side{how}: {listed}")
    if not parts:
        return
    split = (
        " (a folder's validation files are every fifth of its sorted files: removing or adding a file moves the files "
        "sorted after it between training and validation; replacing one with a larger image of the same name keeps "
        "the split)" if folder else ""
    )  # fmt: skip
    raise ValueError(f"images too small for {size}-pixel crops: {'; '.join(parts)}; remove or replace them{split}")


def check_masters(masters: Sequence[MasterImage], size: int, aug: Augment, role: str = "training") -> None:
    """Refuse images :func:`sample_crops` cannot crop from: none at all, any too small for ``size``-pixel crops
    with ``aug``, or no valid pixel in any of them (a ValueError naming them; ``role``: ``"training"`` or
    ``"validation"``, which the message names with its own limit). A trainer calls it when the images are read,
    before it writes anything, not at the first crop of its first epoch."""
    if not masters:
        raise ValueError(f"no {role} images to crop from")
    m = _margin(size, aug)
    small = [
        f"{mi.path.name} ({mi.valid.shape[1]}x{mi.valid.shape[0]})" for mi in masters if min(mi.valid.shape) < 2 * m + 1
    ]
    if small:
        listed = f"{', '.join(small[:10])}{' ...' if len(small) > 10 else ''}"
        if role == "validation":
            raise ValueError(
                f"{len(small)} of {len(masters)} validation images are too small for {size}-pixel crops (validation "
                f"crops are not augmented: each side needs at least {2 * m + 1} px; training images need "
                f"{2 * _margin(size, Augment()) + 1} px with the default augmentation): {listed}; remove or replace "
                "them (a folder's validation files are every fifth of its sorted files)"
            )
        raise ValueError(
            f"{len(small)} of {len(masters)} images are too small for {size}-pixel crops with this augmentation "
            f"(each side needs at least {2 * m + 1} px): {listed}; remove them from the data folder"
        )
    if len(without_crops(masters)) == len(masters):
        raise ValueError(f"no valid pixels in the {role} images {[str(mi.path) for mi in masters]} (every pixel is "
                         "no-data)")  # fmt: skip


def _affine(size: int, centre: tuple[float, float], aug: Augment, rng: np.random.Generator) -> np.ndarray:
    """2×3 matrix mapping output (crop) coordinates to source coordinates (for WARP_INVERSE_MAP)."""
    theta = math.radians(rng.uniform(-aug.rotation_deg, aug.rotation_deg)) if aug.rotation_deg else 0.0
    shear = rng.uniform(-aug.shear, aug.shear) if aug.shear else 0.0
    flip = -1.0 if (aug.flip and rng.random() < 0.5) else 1.0
    c, s = math.cos(theta), math.sin(theta)
    # rotation @ shear @ flip, written out (2x2 numpy products cost more than the warp itself)
    a00, a01, a10, a11 = c * flip, c * shear - s, s * flip, s * shear + c
    sx, sy = (float(v) * size for v in rng.uniform(-aug.shift, aug.shift, size=2)) if aug.shift else (0.0, 0.0)
    half = (size - 1) / 2.0
    src_x, src_y = centre[1] + sx, centre[0] + sy
    return np.array(
        [[a00, a01, src_x - (a00 * half + a01 * half)], [a10, a11, src_y - (a10 * half + a11 * half)]], np.float64
    )


def _margin(size: int, aug: Augment) -> int:
    """Half-extent of the largest source footprint of one crop, in pixels."""
    theta = math.radians(aug.rotation_deg)
    spread = (abs(math.cos(theta)) + abs(math.sin(theta))) * (1.0 + aug.shear)
    return math.ceil(size / 2.0 * spread + aug.shift * size) + 1


def _as_u8(mask: np.ndarray) -> np.ndarray:
    """A bool mask as uint8 0/1 for OpenCV: a zero-copy view when it is contiguous (a copy of the whole master
    per crop was most of the crop's cost on a 2400-pixel panorama)."""
    if mask.dtype == np.bool_ and mask.flags.c_contiguous:
        return mask.view(np.uint8)
    return mask.astype(np.uint8)


def random_crop(
    master: MasterImage, size: int, aug: Augment, rng: np.random.Generator, min_valid: float = 1.0
) -> np.ndarray | None:
    """One augmented (size, size, C) crop, or None when it touches no-data (below ``min_valid``)."""
    cv2 = require("cv2")
    h, w = master.valid.shape
    m = _margin(size, aug)
    if h < 2 * m + 1 or w < 2 * m + 1:
        raise ValueError(f"{master.path}: image {w}x{h} is too small for {size}-pixel crops")
    cy, cx = float(rng.uniform(m, h - m)), float(rng.uniform(m, w - m))
    mat = _affine(size, (cy, cx), aug, rng)
    flags = cv2.WARP_INVERSE_MAP
    valid = cv2.warpAffine(_as_u8(master.valid), mat, (size, size), flags=cv2.INTER_NEAREST | flags, borderValue=0)
    if valid.mean() < min_valid:
        return None
    crop = cv2.warpAffine(
        master.pixels, mat, (size, size), flags=cv2.INTER_LINEAR | flags, borderMode=cv2.BORDER_REFLECT
    )
    if crop.ndim == 2:
        crop = crop[:, :, None]
    return np.clip(crop, 0.0, 1.0).astype(np.float32, copy=False)


def sample_crops(
    masters: Sequence[MasterImage],
    n: int,
    size: int,
    rng: np.random.Generator,
    aug: Augment | None = None,
    min_valid: float = 1.0,
    max_tries: int = 50,
    workers: int = 1,
    role: str = "training",
) -> np.ndarray:
    """``n`` crops as float32 (n, C, size, size), from images picked in proportion to their valid area.

    Crops that touch no-data are skipped and redrawn (up to ``max_tries`` per crop, then an error naming the
    ``role`` images, ``"training"`` or ``"validation"``, with their valid fractions). ``workers`` > 1 draws
    ``workers`` contiguous shares of the crops in threads (OpenCV's warps release the GIL), share k from
    ``rng.spawn(workers)[k]``: deterministic for a given (rng, workers), a different stream from ``workers=1``.
    """
    if n <= 0:
        raise ValueError(f"number of crops must be positive, got {n}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    if workers > 1 and n >= workers:
        from concurrent.futures import ThreadPoolExecutor

        bounds = np.linspace(0, n, workers + 1).astype(int)
        rngs = rng.spawn(workers)
        with ThreadPoolExecutor(workers) as pool:
            parts = list(
                pool.map(
                    lambda k: sample_crops(masters, int(bounds[k + 1] - bounds[k]), size, rngs[k], aug, min_valid,
                                           max_tries, role=role),
                    range(workers),
                )
            )  # fmt: skip
        return np.concatenate(parts)
    aug = aug or Augment()
    check_masters(masters, size, aug, role)  # found before any crop is drawn, not when the file is first drawn
    weights = np.array([float(mi.valid.sum()) for mi in masters])
    weights /= weights.sum()
    c = masters[0].pixels.shape[2]
    out = np.empty((n, c, size, size), dtype=np.float32)
    for i in range(n):
        for _ in range(max_tries):
            mi = masters[int(rng.choice(len(masters), p=weights))]
            crop = random_crop(mi, size, aug, rng, min_valid=min_valid)
            if crop is not None:
                out[i] = crop.transpose(2, 0, 1)
                break
        else:
            raise ValueError(_no_clean_crop(masters, size, max_tries, role))
    return out


def _no_clean_crop(masters: Sequence[MasterImage], size: int, tries: int, role: str) -> str:
    """Why no crop free of no-data was found: the ``role`` images with their valid fractions, and what to do."""
    shown = ", ".join(f"{mi.path} ({100 * float(mi.valid.mean()):.1f}% valid)" for mi in masters[:10])
    more = f" and {len(masters) - 10} more" if len(masters) > 10 else ""
    what = (
        "remove or replace them (a folder's validation files are every fifth of its sorted files)"
        if role == "validation"
        else "remove them or add images with more valid area"
    )
    return (
        f"could not find a {size}-pixel {role} crop free of no-data in {tries} tries: too little of the {role} "
        f"images is valid (no-data: black or saturated margins and dark areas, edgeae.nodata): {shown}{more}; {what}"
    )
