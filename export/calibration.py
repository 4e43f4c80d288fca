"""Real image patches for int8 calibration and parity checks (never synthetic noise).

Calibration defaults to the model's dataset ``val`` split; parity is measured on the ``test`` split, which no
training or model selection ever sees. A CAE is fed what it sees in flight: half of the patches are clean,
half have 50-99 % of their pixels destroyed (set to zero), as in the gt-CAE training.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgeae.metadata import ModelMetadata

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".pgm", ".ppm")
DATASET_FOR_CHANNELS = {3: "rover_rgb", 1: "orbital_gray"}


def dataset_of(metadata: ModelMetadata) -> str:
    """The edgeae dataset a model was trained on: ``extra["dataset"]`` or guessed from its channels."""
    name = metadata.extra.get("dataset") or metadata.extra.get("train_dataset")
    if isinstance(name, str) and name:
        return name
    channels = int(metadata.architecture.get("channels", metadata.channels))
    return DATASET_FOR_CHANNELS[channels]


def image_files(source: str | os.PathLike[str]) -> list[Path]:
    """Image files in a folder (sorted, recursive) or the single file given."""
    p = Path(source)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise FileNotFoundError(f"calibration source {p} is neither an image file nor a folder")
    files = sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and "mask" not in f.name)
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {p}")
    return files


def split_images(metadata: ModelMetadata, split: str, root: str | os.PathLike[str] | None = None) -> list[Path]:
    """Files of the model's dataset ``split`` (``val`` for calibration, ``test`` for parity)."""
    from edgeae.datasets import split_files

    return split_files(dataset_of(metadata), split, root=root)


def read_pixels(path: Path, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, C) float32 in [0, 1] and the (H, W) valid mask of one image."""
    from edgeae.imageio import read_image

    img = read_image(path, channels=channels)
    return np.asarray(img.pixels, dtype=np.float32), np.asarray(img.valid, dtype=bool)


def extract_patches(
    files: Sequence[str | os.PathLike[str]],
    channels: int,
    patch: int,
    count: int,
    seed: int = 0,
    min_valid: float = 0.99,
) -> np.ndarray:
    """``count`` real ``patch``×``patch`` patches (NCHW float32 [0, 1]) drawn evenly from ``files``.

    Positions lie on a half-overlapping grid; patches with less than ``min_valid`` valid pixels (no-data
    margins) are skipped; the choice among the rest is seeded.
    """
    rng = np.random.default_rng(seed)
    per_file = [count // len(files) + (1 if i < count % len(files) else 0) for i in range(len(files))]
    out: list[np.ndarray] = []
    for f, n in zip(files, per_file, strict=True):
        if n == 0:
            continue
        pixels, valid = read_pixels(Path(f), channels)
        h, w = pixels.shape[:2]
        if h < patch or w < patch:
            raise ValueError(f"{f}: image {w}×{h} is smaller than one {patch}×{patch} patch")
        step = max(patch // 2, 1)
        pos = [(y, x) for y in range(0, h - patch + 1, step) for x in range(0, w - patch + 1, step)]
        pos = [(y, x) for y, x in pos if valid[y : y + patch, x : x + patch].mean() >= min_valid] or pos
        pick = rng.choice(len(pos), size=n, replace=len(pos) < n)
        for i in pick:
            y, x = pos[int(i)]
            out.append(pixels[y : y + patch, x : x + patch].transpose(2, 0, 1))
    return np.ascontiguousarray(np.stack(out), dtype=np.float32)


def destroy_pixels(patches: np.ndarray, rng: np.random.Generator, lo: float = 0.5, hi: float = 0.99) -> np.ndarray:
    """Copy of ``patches`` with a fraction in [lo, hi] of each patch's pixels (all channels) set to 0."""
    out = patches.copy()
    n, _, h, w = out.shape
    frac = np.asarray(rng.uniform(lo, hi, size=n), dtype=np.float64)
    for i in range(n):
        out[i, :, rng.random((h, w)) < frac[i]] = 0.0
    return out


def model_patches(
    metadata: ModelMetadata,
    files: Sequence[str | os.PathLike[str]],
    count: int,
    seed: int = 0,
) -> np.ndarray:
    """Real NCHW image patches shaped for ``metadata``'s model (CAE: half of them with destroyed pixels)."""
    arch = metadata.architecture
    channels = int(arch.get("channels", metadata.channels))
    patch = int(arch.get("tile") or arch.get("patch") or metadata.input_shape[-1])
    clean = extract_patches(files, channels, patch, count, seed=seed)
    if metadata.kind == "vae":
        return clean
    rng = np.random.default_rng(seed + 1)
    half = count // 2
    return np.concatenate([clean[:half], destroy_pixels(clean[half:], rng)])
