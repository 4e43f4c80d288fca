"""What the contrastive encoder of benchmarks/hirise_contrastive.py sees: its input (64-px windows averaged 2 x 2 to
32 px, normalised per window or by a fixed map) and the pairs it trains on (two augmented views of one random region
of the grey orbital training images, :class:`Sources`).
"""

from __future__ import annotations

import hashlib

import numpy as np

INPUT = 32  # encoder input (px): a 64-px window averaged 2 x 2
REGION = 96  # both views of a pair come from one region this size
VIEW_MIN = 48
MAX_DARK = 0.02  # a region with more than 2 % pixels at or below 2/255 (no-data margins) is drawn again


def standardise(x: np.ndarray) -> np.ndarray:
    """(N, H, W) -> each window minus its mean over max(its std, 2/255)."""
    m = x.mean(axis=(1, 2), keepdims=True)
    s = np.maximum(x.std(axis=(1, 2), keepdims=True), 2.0 / 255.0)
    return ((x - m) / s).astype(np.float32)


def normalise(x: np.ndarray, how: str) -> np.ndarray:
    """(N, H, W) -> encoder input values: ``window`` (:func:`standardise`, brightness and contrast removed) or
    ``fixed`` ((x - 0.5) / 0.25: brightness kept, as the VAE sees it)."""
    if how == "window":
        return standardise(x)
    if how == "fixed":
        return ((x - 0.5) / 0.25).astype(np.float32)
    raise ValueError(f"input normalisation must be 'window' or 'fixed', got {how!r}")


def encoder_input(windows: np.ndarray, how: str = "window") -> np.ndarray:
    """(N, 64, 64) float [0, 1] windows -> (N, 1, 32, 32) encoder input (2 x 2 means, :func:`normalise`)."""
    n, h, w = windows.shape
    small = windows.reshape(n, h // 2, 2, w // 2, 2).mean(axis=(2, 4))
    return normalise(small, how)[:, None]


class Sources:
    """The training images (grey float32 [0, 1]) and how often each is drawn."""

    def __init__(self) -> None:
        from benchmarks.hirise_dev import dev_crops
        from edgeae.data import data_root
        from edgeae.datasets import SPLITS
        from edgeae.imageio import read_image

        root = data_root()
        files = [root / f for f in SPLITS["orbital_gray_v2"]["train"]]
        images, _, ref = dev_crops()
        crops = [images / f for f in ref]
        self.files = [str(p.relative_to(root)) for p in files + crops]
        self.images: list[np.ndarray] = []
        for p in files + crops:
            self.images.append(read_image(p, channels=1).pixels[..., 0])
        # half the draws from HiRISE (strips and training-product crops), half from the rest, by area within each
        hirise = np.array(["hirise" in f.lower() for f in self.files])
        area = np.array([im.size for im in self.images], np.float64)
        w = np.where(hirise, area / area[hirise].sum(), area / area[~hirise].sum()) * 0.5
        self.weights = w / w.sum()

    def manifest(self) -> str:
        from edgeae.data import data_root

        root, h = data_root(), hashlib.sha256()
        for f in self.files:
            h.update(f.encode() + hashlib.sha256((root / f).read_bytes()).digest())
        return h.hexdigest()

    def pairs(self, rng: np.random.Generator, n: int, how: str = "window") -> tuple[np.ndarray, np.ndarray]:
        """Two augmented views of ``n`` random regions: (n, 1, 32, 32) each (``how``: :func:`normalise`; with
        ``fixed`` each view also gets a random gain and offset, so brightness alone cannot pair views)."""
        import cv2

        views: list[list[np.ndarray]] = [[], []]
        while len(views[0]) < n:
            im = self.images[rng.choice(len(self.images), p=self.weights)]
            h, w = im.shape
            if h < REGION or w < REGION:
                continue
            y, x = rng.integers(0, h - REGION + 1), rng.integers(0, w - REGION + 1)
            region = im[y : y + REGION, x : x + REGION]
            if (region <= 2.0 / 255.0).mean() > MAX_DARK:
                continue
            for v in views:
                s = int(rng.integers(VIEW_MIN, REGION + 1))
                vy, vx = rng.integers(0, REGION - s + 1), rng.integers(0, REGION - s + 1)
                crop = cv2.resize(region[vy : vy + s, vx : vx + s], (INPUT, INPUT), interpolation=cv2.INTER_AREA)
                crop = np.rot90(crop, int(rng.integers(4)))
                if rng.random() < 0.5:
                    crop = crop[:, ::-1]
                crop = np.clip(crop, 0, 1) ** float(np.exp(rng.normal(0, 0.25)))  # gamma
                if how == "fixed":  # drawn only here, so the window variant's random stream is unchanged
                    crop = crop * float(np.exp(rng.normal(0, 0.1))) + float(rng.normal(0, 0.03))
                if rng.random() < 0.3:
                    sigma = float(rng.uniform(0.3, 1.0))
                    crop = cv2.GaussianBlur(np.ascontiguousarray(crop, np.float32), (3, 3), sigma)
                crop = crop + rng.normal(0, rng.uniform(0, 0.02), crop.shape)
                v.append(np.asarray(crop, np.float32))
        return normalise(np.stack(views[0]), how)[:, None], normalise(np.stack(views[1]), how)[:, None]
