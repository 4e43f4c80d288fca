"""Real image patches for int8 calibration and parity checks (never synthetic noise).

Which images (the model's own training data decides) is :mod:`edgeae.export.data_plan`. A CAE is fed what it sees in
flight: half of the patches are clean, half have 50-99 % of their pixels destroyed (set to zero), as in the gt-CAE
training.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeae.metadata import ModelMetadata

# the data plan, where the export's callers (edgeae.export.api, tests, benchmarks) have always found it
from .data_plan import dataset_of as dataset_of
from .data_plan import plan_data as plan_data
from .data_plan import split_images as split_images
from .data_plan import tail_frame_files as tail_frame_files

log = logging.getLogger(__name__)


def channel_mismatches(files: Sequence[str | os.PathLike[str]], channels: int) -> list[tuple[Path, int, bool]]:
    """(file, stored channels without alpha, whether it has an alpha channel) of the images whose channel count
    is not ``channels`` (read from the headers; a file whose header cannot be read is left to the reader, which
    names it). Alpha is not a channel of the model (it marks pixels invalid), but a message names it."""
    from edgeae import _headers
    from edgeae.imageio import image_shape

    out = []
    for f in files:
        try:
            stored = int(image_shape(f)[2])
        except (OSError, ValueError):
            continue
        if stored != channels:
            try:
                alpha = bool(_headers.probe(Path(f)).has_alpha)
            except (OSError, ValueError):  # an archive product: no alpha
                alpha = False
            out.append((Path(f), stored, alpha))
    return out


def channels_text(stored: int, alpha: bool) -> str:
    """``3``, or ``4 (RGB + alpha)`` / ``2 (grey + alpha)``: how a message counts an image's channels."""
    if not alpha:
        return str(stored)
    return f"{stored + 1} ({'RGB' if stored == 3 else 'grey' if stored == 1 else f'{stored} bands'} + alpha)"


def provenance(
    calib: Sequence[Path],
    test: Sequence[Path],
    tail: Sequence[Path] = (),
    sampled: Sequence[Path] | None = None,
    train: Sequence[Path] = (),
) -> dict[str, dict[str, Any]]:
    """What the export report and the int8 artifacts record of the calibration files.

    Only the ``sampled`` calibration files (those the calibration patches come from, :func:`sampled_files`;
    default: all) are read: a folder of GB-size products is not hashed whole. ``calibration``: ``files_sha256``
    (SHA-256 of the sorted SHA-256s of the sampled files' contents: the same images anywhere give the same hash),
    ``n_files``, ``n_hashed``, ``others_sha256`` when files were not sampled (SHA-256 of their relative paths,
    sizes and modification times, one line each) and ``overlaps`` (names of the ``test`` and ``tail`` frames that
    are also sampled calibration images, by content; only frames of a sampled file's size are hashed) and
    ``training_overlaps`` (names of the sampled calibration images that are ``train`` files: the model's training
    images, the same path or the same content: each ``train`` file of a sampled file's size is read, so
    :func:`edgeae.export.data_plan.plan_data` gives every training file only for ``--calib``); ``test`` / ``tail``:
    ``held_out`` (no such overlap). No file is read twice.
    """
    import hashlib

    from edgeae.metadata import sha256_file

    read = list(dict.fromkeys(calib if sampled is None else sampled))
    sha_of = {f: sha256_file(f) for f in read}
    calib_sha = set(sha_of.values())
    digest = hashlib.sha256("\n".join(sorted(calib_sha)).encode()).hexdigest()
    sizes = {f.stat().st_size for f in read}
    same_path = {Path(os.path.abspath(f)) for f in read} & {Path(os.path.abspath(f)) for f in train}
    others = [f for f in train if Path(os.path.abspath(f)) not in same_path]
    held = {
        f: sha_of.get(f) or sha256_file(f) for f in dict.fromkeys([*test, *tail, *others]) if f.stat().st_size in sizes
    }
    shared_test = [f.name for f in test if held.get(f) in calib_sha]
    shared_tail = [f.name for f in tail if held.get(f) in calib_sha]
    train_sha = {held[f] for f in others if f in held}
    trained = [f.name for f in read if Path(os.path.abspath(f)) in same_path or sha_of[f] in train_sha]
    out: dict[str, dict[str, Any]] = {
        # no calibration file (an fp32-only export): no hash, not the SHA-256 of nothing, which reads like data's
        "calibration": {"files_sha256": digest if calib else None, "n_files": len(calib), "n_hashed": len(read)},
        "test": {"held_out": not shared_test},
        "tail": {"held_out": not shared_tail},
    }
    unread = sorted(set(calib) - set(read))
    if unread:
        root = Path(os.path.commonpath([f.parent for f in calib]))
        lines = []
        for f in unread:
            st = f.stat()
            lines.append(f"{f.relative_to(root).as_posix()}\t{st.st_size}\t{st.st_mtime_ns}")
        out["calibration"]["others_sha256"] = hashlib.sha256("\n".join(lines).encode()).hexdigest()
    if shared_test or shared_tail:
        out["calibration"]["overlaps"] = list(dict.fromkeys([*shared_test, *shared_tail]))
    if trained:
        out["calibration"]["training_overlaps"] = trained
    return out


def read_pixels(path: Path, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, C) float32 in [0, 1] and the (H, W) valid mask of one image."""
    from edgeae.imageio import read_image

    img = read_image(path, channels=channels)
    return np.asarray(img.pixels, dtype=np.float32), np.asarray(img.valid, dtype=bool)


def _per_file(count: int, n_files: int) -> list[int]:
    """Patches drawn from each of ``n_files`` files for ``count`` patches: even shares, the first files one more
    (with fewer patches than files, only the first ``count`` files are read)."""
    return [count // n_files + (1 if i < count % n_files else 0) for i in range(n_files)]


def _tail_counts(count: int, tail: float) -> tuple[int, int, int]:
    """(random, synthetic extreme, busiest real) patches of a calibration set of ``count`` (:func:`model_patches`)."""
    if not 0.0 <= tail < 1.0:
        raise ValueError(f"tail must be in [0, 1), got {tail}")
    n_tail = round(count * tail)
    n_extremes = min(n_tail, len(extreme_patches(1, 2)))
    return count - n_tail, n_extremes, n_tail - n_extremes


def sampled_files(files: Sequence[Path], count: int, tail: float = 0.0) -> list[Path]:
    """The files :func:`model_patches` reads for ``count`` patches (at most ``count``): what provenance hashes."""
    n_random, _, n_busy = _tail_counts(count, tail)
    return list(files[: max(n_random, n_busy)])


def _skip(f: str | os.PathLike[str], patch: int, min_valid: float, skipped: list[Path] | None) -> None:
    """Account for an image without one valid patch: into ``skipped`` (the caller warns once), else a warning."""
    if skipped is not None:
        skipped.append(Path(f))
    else:
        log.warning("%s", no_valid_patch_text(Path(f), patch, min_valid))


def no_valid_patch_text(f: Path, patch: int, min_valid: float) -> str:
    return (
        f"{f}: no {patch}×{patch} patch with {min_valid:.0%} valid pixels (no-data, NaN or transparent): skipped, its "
        "share of the patches drawn from the other images"
    )


def extract_patches(
    files: Sequence[str | os.PathLike[str]],
    channels: int,
    patch: int,
    count: int,
    seed: int = 0,
    min_valid: float = 0.99,
    skipped: list[Path] | None = None,
) -> np.ndarray:
    """``count`` real ``patch``×``patch`` patches (NCHW float32 [0, 1]) drawn evenly from ``files``.

    Positions lie on a half-overlapping grid; patches with less than ``min_valid`` valid pixels (no-data
    margins) are skipped; the choice among the rest is seeded. An image without one such patch is skipped (named
    in ``skipped``, else in a warning) and its share drawn from the next images read; ValueError when none has one.
    """
    rng = np.random.default_rng(seed)
    per_file = _per_file(count, len(files))
    out: list[np.ndarray] = []
    owed = 0  # the share of the images skipped so far
    last: tuple[np.ndarray, list[tuple[int, int]]] | None = None
    for f, n in zip(files, per_file, strict=True):
        if n == 0:
            continue
        pixels, valid = read_pixels(Path(f), channels)
        h, w = pixels.shape[:2]
        if h < patch or w < patch:
            raise ValueError(f"{f}: image {w}×{h} is smaller than one {patch}×{patch} patch")
        step = max(patch // 2, 1)
        pos = [(y, x) for y in range(0, h - patch + 1, step) for x in range(0, w - patch + 1, step)]
        pos = [(y, x) for y, x in pos if valid[y : y + patch, x : x + patch].mean() >= min_valid]
        if not pos:
            _skip(f, patch, min_valid, skipped)
            owed += n
            continue
        take, owed, last = n + owed, 0, (pixels, pos)
        out += _draw(pixels, pos, take, patch, rng)
    if owed and last is not None:  # the last images read were skipped: their share from the last usable one
        out += _draw(*last, owed, patch, rng)
    if not out and count > 0:
        read = [str(f) for f, n in zip(files, per_file, strict=True) if n]
        raise ValueError(
            f"none of the {len(read)} image(s) read ({', '.join(read[:3])}{', ...' if len(read) > 3 else ''}) has a "
            f"{patch}×{patch} patch with {min_valid:.0%} valid pixels (all no-data, NaN or transparent): give other "
            "images"
        )
    if not out:
        return np.zeros((0, channels, patch, patch), np.float32)
    return np.ascontiguousarray(np.stack(out), dtype=np.float32)


def _draw(
    pixels: np.ndarray, pos: list[tuple[int, int]], n: int, patch: int, rng: np.random.Generator
) -> list[np.ndarray]:
    pick = rng.choice(len(pos), size=n, replace=len(pos) < n)
    return [pixels[y : y + patch, x : x + patch].transpose(2, 0, 1) for y, x in (pos[int(i)] for i in pick)]


def frame_patches(path: str | os.PathLike[str], channels: int, patch: int, min_valid: float = 0.9) -> np.ndarray:
    """Every patch of a frame's non-overlapping grid with at least ``min_valid`` valid pixels, NCHW float32."""
    pixels, valid = read_pixels(Path(path), channels)
    h, w = pixels.shape[:2]
    tiles = [
        pixels[y : y + patch, x : x + patch].transpose(2, 0, 1)
        for y in range(0, h - patch + 1, patch)
        for x in range(0, w - patch + 1, patch)
        if valid[y : y + patch, x : x + patch].mean() >= min_valid
    ]
    if not tiles:
        raise ValueError(f"{path}: no {patch}-px patch with {min_valid:.0%} valid pixels")
    return np.ascontiguousarray(np.stack(tiles), dtype=np.float32)


def destroy_pixels(patches: np.ndarray, rng: np.random.Generator, lo: float = 0.5, hi: float = 0.99) -> np.ndarray:
    """Copy of ``patches`` with a fraction in [lo, hi] of each patch's pixels (all channels) set to 0."""
    out = patches.copy()
    n, _, h, w = out.shape
    frac = np.asarray(rng.uniform(lo, hi, size=n), dtype=np.float64)
    for i in range(n):
        out[i, :, rng.random((h, w)) < frac[i]] = 0.0
    return out


def extreme_patches(channels: int, patch: int, seed: int = 0) -> np.ndarray:
    """Synthetic tail patches (NCHW float32 [0, 1]) a flight camera can deliver and a score must rank.

    All-white, all-black, flat bright and dark levels, 4-px and 1-px checkerboards (40/220 and 0/255), uniform
    noise, a half-white/half-black edge and a ramp: they make the int8 calibration cover the activation
    ranges of the anomalies, not only of plain terrain (a score clipped at its calibrated maximum ties them).
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.indices((patch, patch))
    checker4 = (yy // 4 + xx // 4) % 2 == 0
    checker1 = (yy + xx) % 2 == 0
    planes = [
        np.ones((patch, patch)),
        np.zeros((patch, patch)),
        np.full((patch, patch), 0.9),
        np.full((patch, patch), 0.05),
        np.where(checker4, 40, 220) / 255.0,
        np.where(checker4, 0.0, 1.0),
        np.where(checker1, 40, 220) / 255.0,
        rng.random((patch, patch)),
        rng.random((patch, patch)),
        (xx >= patch // 2).astype(np.float64),
        xx / (patch - 1.0),
    ]
    out = np.stack([np.repeat(p[None], channels, axis=0) for p in planes])
    return np.ascontiguousarray(out, dtype=np.float32)


def busy_patches(
    files: Sequence[str | os.PathLike[str]],
    channels: int,
    patch: int,
    count: int,
    min_valid: float = 0.99,
    skipped: list[Path] | None = None,
) -> np.ndarray:
    """The ``count`` real patches of highest contrast (std), and among the rest the brightest and darkest,
    drawn evenly from ``files`` on a non-overlapping grid: the real tail of the calibration frames. An image
    without a patch of ``min_valid`` valid pixels is skipped (as in :func:`extract_patches`); fewer patches come
    back when the images hold fewer whole patches than their share."""
    if count <= 0:
        return np.zeros((0, channels, patch, patch), np.float32)
    per_file = _per_file(count, len(files))
    out: list[np.ndarray] = []
    owed = 0
    for f, share in zip(files, per_file, strict=True):
        if share == 0:
            continue
        pixels, valid = read_pixels(Path(f), channels)
        h, w = pixels.shape[:2]
        if h < patch or w < patch:
            raise ValueError(f"{f}: image {w}×{h} is smaller than one {patch}×{patch} patch")
        pos = [(y, x) for y in range(0, h - patch + 1, patch) for x in range(0, w - patch + 1, patch)]
        pos = [(y, x) for y, x in pos if valid[y : y + patch, x : x + patch].mean() >= min_valid]
        if not pos:
            _skip(f, patch, min_valid, skipped)
            owed += share
            continue
        n, owed = share + owed, 0
        tiles = np.stack([pixels[y : y + patch, x : x + patch].transpose(2, 0, 1) for y, x in pos])
        std, mean = tiles.std(axis=(1, 2, 3)), tiles.mean(axis=(1, 2, 3))
        n_std = n - 2 * (n // 4)
        pick = list(np.argsort(-std, kind="stable")[:n_std])
        rest = np.setdiff1d(np.arange(len(tiles)), pick)
        by_mean = rest[np.argsort(mean[rest], kind="stable")]
        pick += list(by_mean[-(n // 4) :]) if n // 4 else []
        pick += list(by_mean[: n // 4]) if n // 4 else []
        out.append(tiles[np.asarray(pick[:n], dtype=np.int64)])
    if not out:
        return np.zeros((0, channels, patch, patch), np.float32)
    return np.ascontiguousarray(np.concatenate(out), dtype=np.float32)


def model_patches(
    metadata: ModelMetadata,
    files: Sequence[str | os.PathLike[str]],
    count: int,
    seed: int = 0,
    tail: float = 0.0,
) -> np.ndarray:
    """Real NCHW image patches shaped for ``metadata``'s model (CAE: half of them with destroyed pixels).

    ``tail``: fraction of ``count`` taken from the tail instead of at random: :func:`extreme_patches` plus the
    real :func:`busy_patches` of ``files`` (int8 calibration; parity sets keep ``tail=0``). Images without a valid
    patch are skipped with one warning each; ValueError when none of the images read has one.
    """
    arch = metadata.architecture
    channels = int(arch.get("channels", metadata.channels))
    patch = int(arch.get("tile") or arch.get("patch") or metadata.input_shape[-1])
    n_random, n_extremes, n_busy = _tail_counts(count, tail)
    extremes = extreme_patches(channels, patch, seed if n_extremes else 0)[:n_extremes]
    skipped: list[Path] = []
    busy = busy_patches(files, channels, patch, n_busy, skipped=skipped)
    random = extract_patches(files, channels, patch, n_random, seed=seed, skipped=skipped)
    for f in dict.fromkeys(skipped):
        log.warning("%s", no_valid_patch_text(f, patch, 0.99))
    clean = np.concatenate([random, extremes, busy])
    if metadata.kind == "vae":
        return clean
    rng = np.random.default_rng(seed + 1)
    if n_extremes + n_busy:
        clean = clean[rng.permutation(len(clean))]  # tail patches both clean and destroyed
    half = count // 2
    return np.concatenate([clean[:half], destroy_pixels(clean[half:], rng)])
