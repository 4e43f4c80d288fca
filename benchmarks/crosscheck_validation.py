"""How the cross-check defaults (edgeae.crosscheck) were chosen: validation files only, never test images.

    python benchmarks/crosscheck_validation.py --model rover-rgb-unet2-ground --data-split rover_rgb_v2:val \\
        --configs 64:0.5:1,32:0.5:1,64:0.5:3,64:0.25:3
    python benchmarks/crosscheck_validation.py --model orbital-gray-unet2-ground --data-split orbital_gray_v2:val \\
        --keep 0.02 --configs 64:0.5:1,64:0.5:3,64:0.25:3
    python benchmarks/crosscheck_validation.py --model rover-rgb-unet2-ground --data-split rover_rgb_v2:val \\
        --sky-regions --configs 64:0.5:1,64:0.25:3

For each of the first ``--limit`` files of the split: its 512-px centre crop and its smoothest 128-px window (the
acceptance benchmark's rule), uniform masks seeded by the file index; PSNR of normconv, linear, the CAE alone and
the CAE cross-checked against ``--method`` with each ``SIGMA:TAU:FOLDS`` config (seed = file index); since
session 39 also normconv-wide and blend (``edgeae.inpaint``), the classical fills the margins are taken over.
``--sky-regions`` instead cuts 512-px crops from the top of each MarsScapes panorama with labelled sky (semantic
class 6) and reports PSNR over the sky pixels and over the whole crop. Prints one JSON line per crop, then the
means and each method's worst margin over the best of those classical fills.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgeae.crosscheck import CrossCheckConfig, cross_checked_fill
from edgeae.datasets import split_files
from edgeae.imageio import read_image
from edgeae.masks import make_mask
from edgeae.predictor import load_predictor
from edgeae.reconstruct import reconstruct

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from any folder

SKY = 6  # MarsScapes semantic class
CLASSICAL = ("normconv", "linear", "normconv-wide", "blend")  # the margins are over the best of these per crop


def _psnr(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / max(float(((a - b) ** 2)[where].mean()), 1e-12)))


def _items(dataset: str, split: str, limit: int | None, channels: int, sky: bool) -> list[tuple[str, Any, Any, int]]:
    """(name, image, region mask, seed) per crop: seed = file index (sky regions: 100 × file index + crop index)."""
    from benchmarks.reconstruction_acceptance import SMOOTH_WINDOW, centre_crop, smoothest_window

    out: list[tuple[str, Any, Any, int]] = []
    for f, path in enumerate(split_files(dataset, split)[:limit]):
        full = read_image(path, channels=channels).pixels
        if not sky:
            y, x = smoothest_window(full)
            win = full[y : y + SMOOTH_WINDOW, x : x + SMOOTH_WINDOW]
            out += [(f"{path.name} crop", centre_crop(full, 512), None, f), (f"{path.name} smooth", win, None, f)]
            continue
        sem_path = path.parent.parent / "semantic" / f"{path.stem}_semanticId.png"
        if not sem_path.is_file():
            continue
        raw = cv2.imread(str(sem_path), cv2.IMREAD_UNCHANGED)
        if raw is None:
            raise SystemExit(f"{sem_path}: not a readable label image")
        labels = raw[..., 0] if raw.ndim == 3 else raw
        h = min(512, full.shape[0])
        for j, x in enumerate(range(0, full.shape[1] - 511, 512)):
            region = labels[:h, x : x + 512] == SKY
            if region.mean() >= 0.03:
                out.append((f"{path.name} x{x}", full[:h, x : x + 512], region, 100 * f + j))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.crosscheck_validation", description=(__doc__ or "").splitlines()[0]
    )
    ap.add_argument("--model", required=True)
    ap.add_argument("--data-split", required=True, help="DATASET:SPLIT, a validation split")
    ap.add_argument("--keep", type=float, default=0.1)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--method", default="linear", help="the classical fill mixed with the CAE")
    ap.add_argument("--configs", default="64:0.25:3", help="comma-separated SIGMA:TAU:FOLDS")
    ap.add_argument("--sky-regions", action="store_true", help="MarsScapes crops scored on their sky pixels")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    dataset, split = args.data_split.split(":")
    if split == "test":
        ap.error("choose settings on validation data, not on the test split")
    configs = [tuple(c.split(":")) for c in args.configs.split(",") if c]
    if any(len(c) != 3 for c in configs):
        ap.error("each config is SIGMA:TAU:FOLDS")
    pred = load_predictor(args.model, threads=args.threads)
    rows: list[dict[str, Any]] = []
    for name, img, region, i in _items(dataset, split, args.limit, pred.metadata.channels, args.sky_regions):
        known = make_mask(i, img.shape[:2], args.keep)
        outs = {m: reconstruct(img, known, m) for m in CLASSICAL}
        outs["cae"] = reconstruct(img, known, "cae", predictor=pred, progress=False)
        for sigma, tau, folds in configs:
            cfg = CrossCheckConfig(method=args.method, sigma=float(sigma), tau=float(tau), folds=int(folds), seed=i)
            outs[f"xcheck {sigma}:{tau}:{folds}"] = cross_checked_fill(img, known, pred, cfg, progress=False)
        everywhere = np.ones(img.shape[:2], dtype=bool)
        row: dict[str, Any] = {"crop": name}
        for m, o in outs.items():
            if region is not None:
                row[f"{m} (sky)"] = _psnr(img, o, region)
            row[m] = _psnr(img, o, everywhere)
        rows.append(row)
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    groups = (
        {"all": rows}
        if args.sky_regions
        else {k: [r for r in rows if r["crop"].endswith(k)] for k in ("crop", "smooth")}
    )
    for kind, rs in groups.items():
        keys = [k for k in rs[0] if k != "crop"]
        print(kind, "mean", json.dumps({k: round(float(np.mean([r[k] for r in rs])), 3) for k in keys}))
        for suffix in (" (sky)", "") if args.sky_regions else ("",):
            best = [max(r[f"{c}{suffix}"] for c in CLASSICAL) for r in rs]
            worst = {
                k: round(min(r[k] - b for r, b in zip(rs, best, strict=True)), 3) for k in keys if k.endswith(suffix)
            }
            if suffix == "":
                worst = {k: v for k, v in worst.items() if not k.endswith(" (sky)")}
            print(kind, f"worst margin{suffix} over the best of {', '.join(CLASSICAL)}", json.dumps(worst))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
