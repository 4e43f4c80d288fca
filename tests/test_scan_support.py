"""Shared builders for the scan tests (no tests here): a tiny archive cut from a real lunar image, a tiny CAE."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def build_small_archive(root: Path, moon: np.ndarray, n: int = 8, seed: int = 0) -> dict[str, list[str]]:
    """``n`` crops of the real moon image (PNG/JPEG/TIFF in two folders), a tiled BigTIFF strip written in
    tiles, and two corrupt files. Returns the names by role."""
    from edgeae.imageio import write_image
    from edgeae.strips import write_tiled_bigtiff

    rng = np.random.default_rng(seed)
    names: dict[str, list[str]] = {"good": [], "corrupt": []}
    for i in range(n):
        h, w = (int(v) for v in rng.integers(70, 200, size=2))
        y, x = int(rng.integers(0, moon.shape[0] - h)), int(rng.integers(0, moon.shape[1] - w))
        name = f"{'ab'[i % 2]}/crop_{i:02d}{('.png', '.jpg', '.tif')[i % 3]}"
        write_image(root / name, np.ascontiguousarray(moon[y : y + h, x : x + w]))
        names["good"].append(name)
    write_tiled_bigtiff(root / "strip.tif", (640, 192), [moon], tile=64, seed=seed, nodata_margin=40)
    names["good"].append("strip.tif")
    (root / "bad_trunc.png").write_bytes((root / "a/crop_00.png").read_bytes()[:200])
    (root / "bad_noise.jpg").write_bytes(bytes(rng.integers(0, 256, 1000, dtype=np.uint8)))
    names["corrupt"] += ["bad_noise.jpg", "bad_trunc.png"]
    return names


def noise_archive(root: Path, names: list[str]) -> Path:
    """``root`` holding a random 64×64 grey image (seed 0) under each of ``names``; the test is skipped where the file
    system refuses one of the names (one whose bytes are not UTF-8)."""
    import pytest

    from edgeae.imageio import write_image

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in names:
        try:
            write_image(root / name, rng.integers(0, 256, (64, 64), dtype=np.uint8))
        except (OSError, ValueError, UnicodeError) as exc:
            pytest.skip(f"this file system does not take the file name {name!r}: {exc}")
    return root


def scan_report(**kw: object) -> dict[str, Any]:
    """A finished scan's report of one image, what report.md and the console summary are written from; ``kw``
    replaces or adds fields."""
    r = {
        "out": "out", "model": "m", "artifact_hash": "0" * 64, "engine": "local", "images": 1, "done": 1,
        "failed": 0, "pending": 0, "failures": [], "top": [],
    }  # fmt: skip
    return {**r, **kw}


def tiny_cae(path: Path, patch: int = 32) -> Path:
    """A seeded, untrained grey CAE checkpoint with a small patch (fast to run)."""
    import torch

    from edgeae.checkpoint import save_checkpoint
    from edgeae.metadata import ModelMetadata
    from edgeae.models.cae import CAE, CAEConfig

    torch.manual_seed(0)
    cfg = CAEConfig(channels=1, widths=(4, 8), tile=patch)
    meta = ModelMetadata(kind="cae", architecture=cfg.to_dict(), input_shape=(-1, 1, patch, patch), channels=1)
    return save_checkpoint(path, CAE(cfg), meta)


def mean_scorer(batch: np.ndarray) -> np.ndarray:
    """A stand-in score: the mean brightness of each patch (numpy only, picklable)."""
    return batch.reshape(len(batch), -1).mean(axis=1).astype(np.float64)


def mean_scorer_factory() -> object:
    return mean_scorer


def checkerboard_moon_archive(root: Path, moon: np.ndarray) -> tuple[Path, np.ndarray]:
    """``root/moon.png``: the real moon image with a 4-px checkerboard (40/220) planted at x 256, y 192 (64 px).
    Returns the image path and its pixels."""
    import cv2

    root.mkdir(parents=True, exist_ok=True)
    img = moon.copy()
    img[192:256, 256:320] = np.where((np.indices((64, 64)).sum(0) // 4) % 2 == 0, 40, 220)
    path = root / "moon.png"
    cv2.imwrite(str(path), img)
    return path, img


def scan_with_both_local_paths(archive: Path, out: Path, score: str, **kw: Any) -> dict[int, Any]:
    """Scan ``archive`` with the zoo ``orbital-gray-vae`` in this process (workers 0) and on the threaded worker
    pool (workers 2) into ``out/out0`` and ``out/out2``; checks the report names ``score`` and returns each run's
    results.parquet as a DataFrame."""
    import pyarrow.parquet as pq

    from edgeae.scan.run import EngineOptions, scan_archive

    runs: dict[int, Any] = {}
    for workers in (0, 2):
        dest = out / f"out{workers}"
        report = scan_archive(archive, "orbital-gray-vae", dest, engine=EngineOptions(workers=workers), top_k=4,
                              score=score, progress=False, **kw)  # fmt: skip
        assert report["done"] == 1 and report["score"] == score
        assert f"score `{score}`" in (dest / "report.md").read_text()
        runs[workers] = pq.read_table(dest / "results.parquet").to_pandas()
    return runs
