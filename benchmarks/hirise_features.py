"""kNN on the grey VAE encoder's feature maps for the HiRISE crater ranking (issue 12, sessions 13-14; measured,
not shipped).

    python -m benchmarks.hirise_features --out benchmarks/results/hirise_features [--limit N]

The shipped candidate ``frame-z kNN (mu)`` (ROC AUC 0.754 on the dev split) describes a 64-px patch by the VAE's
bottleneck μ. PatchCore (Roth et al. 2022) describes every location of an image by the feature maps of a
pretrained encoder's *middle* layers and scores it by its distance to a bank of normal locations. Here the
encoder is the shipped grey VAE's (no pretrained network can be downloaded; it was trained on orbital frames),
run convolutionally over each whole 227 × 227 crop; the output of each of its four conv blocks (``L1``-``L4``:
16/32/64/32 channels at 1/2, 1/4, 1/8, 1/16 resolution) is averaged over a 3 × 3 neighbourhood and brought to the
``L3`` grid (27 × 27 after its 1-cell border is dropped). Per location:

- each layer's features are robust-z scaled per channel within the crop (the frame-z idea: illumination differs
  between products), either as the evaluation does (``z``: a channel with zero MAD is left unscaled) or with the
  MAD floored at 1e-3 (``z, MAD floor 1e-3``: a ReLU channel silent over most of the crop then makes its rare
  firings stand out);
- ``ref bank``: mean distance to the 3 nearest of 5,000 locations drawn from the class-0 crops of the *training*
  products (the crops the VAE trained on; no dev crop);
- ``dev bank``: the same against 5,000 locations drawn from the dev crops themselves (transductive, as frame-z
  kNN is);
- ``norm``: the length of the z-scaled feature vector (no bank).

A crop's score is its highest location. ROC AUC of crater (class 1) vs other (class 0) on all dev crops, on the
anomaly benchmark's seed-0 sample of 400 and on the other crops. Fixed seeds: exact on a rerun. About 8 min on
2 cores.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

LAYERS = ("L1", "L2", "L3", "L4")
COMBOS = (("L2",), ("L3",), ("L4",), ("L2", "L3"), ("L3", "L4"))
BANK = 5000
SCALINGS = (("z", None), ("z, MAD floor 1e-3", 1e-3))
K = 3


def feature_maps(paths: list[Path], encoder: Any) -> dict[str, np.ndarray]:
    """(crops, locations, C) per layer: each conv block's output, 3 × 3 averaged, on the L3 grid, border dropped."""
    import torch
    from torch.nn import functional as F

    from edgeae.imageio import read_image

    outs: dict[str, list[np.ndarray]] = {name: [] for name in LAYERS}
    with torch.no_grad():
        for path in paths:
            pixels = read_image(path, channels=1).pixels[..., 0]
            h = torch.from_numpy(np.ascontiguousarray(pixels, np.float32))[None, None]
            taps = []
            for layer in encoder:
                h = layer(h)
                if isinstance(layer, torch.nn.ReLU):
                    taps.append(h)
            if len(taps) != len(LAYERS):
                raise SystemExit(f"expected {len(LAYERS)} conv blocks in the encoder, found {len(taps)}")
            grid = taps[2].shape[-1]
            for name, t in zip(LAYERS, taps, strict=True):
                t = F.avg_pool2d(t, 3, 1, 1)
                t = (
                    F.interpolate(t, size=grid, mode="nearest")
                    if t.shape[-1] < grid
                    else F.adaptive_avg_pool2d(t, grid)
                )
                outs[name].append(t[0, :, 1:-1, 1:-1].permute(1, 2, 0).reshape(-1, t.shape[1]).numpy())
    return {k: np.stack(v) for k, v in outs.items()}


def crop_z(f: np.ndarray, floor: float | None) -> np.ndarray:
    """(crops, locations, C) -> each crop's locations robust-z scaled per channel.

    ``floor=None``: :func:`edgeae.anomaly.baselines.robust_z` (a channel with zero MAD is left unscaled). A float:
    the MAD floored at that value instead: after a ReLU most channels are silent over most of a crop (MAD 0), and
    the few locations where one fires then stand out by orders of magnitude."""
    from edgeae.anomaly.baselines import robust_z

    if floor is None:
        return np.stack([robust_z(c) for c in f]).astype(np.float32)
    med = np.median(f, axis=1, keepdims=True)
    mad = 1.4826 * np.median(np.abs(f - med), axis=1, keepdims=True)
    return ((f - med) / np.maximum(mad, floor)).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.hirise_features", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--limit", type=int, default=None, help="the first N dev crops only (a smoke run)")
    args = ap.parse_args(argv)
    import torch

    from benchmarks.hirise_dev import crater_auc_row, dev_crops, write_results
    from benchmarks.machine import machine_info
    from edgeae.anomaly.baselines import knn_distance
    from edgeae.checkpoint import load_checkpoint
    from edgeae.zoo import resolve

    torch.set_num_threads(2)
    t0 = time.perf_counter()
    images, dev, ref = dev_crops(args.limit)
    encoder = load_checkpoint(resolve("orbital-gray-vae")).model.eval().encoder
    fd = feature_maps([images / f for f, _ in dev], encoder)
    fr = feature_maps([images / f for f in ref], encoder)
    print(f"features of {len(dev)} dev and {len(ref)} reference crops: {time.perf_counter() - t0:.0f} s", flush=True)
    cls = np.array([c for _, c in dev])
    n = len(dev)
    rows: list[dict[str, Any]] = []

    def add(method: str, crop_score: np.ndarray) -> None:
        rows.append(crater_auc_row(method, crop_score, cls))

    for scaling, floor in SCALINGS:
        for combo in COMBOS:
            name = f"{'+'.join(combo)}, {scaling}"
            q = np.concatenate([crop_z(fd[c], floor) for c in combo], -1)
            b = np.concatenate([crop_z(fr[c], floor) for c in combo], -1).reshape(-1, q.shape[-1])
            flat = q.reshape(-1, q.shape[-1])
            rng = np.random.default_rng(1)
            for bank_name, pool in (("ref bank", b), ("dev bank", flat)):
                bank = pool[rng.choice(len(pool), size=min(BANK, len(pool)), replace=False)]
                d = knn_distance(bank, k=K, queries=flat).reshape(n, -1)
                add(f"{name}, {bank_name}", d.max(1))
            add(f"{name}, norm", np.linalg.norm(q, axis=-1).max(1))
    res = {"machine": machine_info(2), "crops": n, "craters": int((cls == 1).sum()), "other": int((cls == 0).sum()),
           "reference crops": len(ref), "bank": BANK, "k": K, "scalings": dict(SCALINGS), "rows": rows,
           "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip
    write_results(args.out, res, "features",
                  f"HiRISE dev split, {n} crops ({res['craters']} craters, {res['other']} other); crater vs other; a "
                  "crop's score is its highest location. The bottleneck-μ candidate (frame-z kNN) gives 0.754; "
                  "target (issue 12): 0.80.")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
