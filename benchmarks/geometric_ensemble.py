"""Geometric self-ensemble for the ground CAE (issue 11, session 21; measured, not shipped).

    python -m benchmarks.geometric_ensemble --out benchmarks/results/geometric_ensemble [--model M] [--keep 0.1]

Restoration networks often gain 0.1-0.3 dB by averaging their outputs over flipped and rotated copies of the
input (each output turned back first): the ground station has no time budget, so a ×2 or ×8 cost would be fine if
it bought quality. The sampled pixels and their mask turn with the image, so every view is an exact input. This
measures it on the **validation** panoramas of the rover set (``rover_rgb_v2`` val: files no model trained on and
not the test split), 512-px centre crops, keep 0.1, seed = image index (as the reconstruction benchmark):

- ``plain``: the model as shipped;
- ``+ left-right flip``: the mean of the identity and the left-right mirrored view (a rover scene mirrored is
  still a rover scene);
- ``8 views``: the mean over the 4 rotations by 90° and their mirrors;
- with ``--with-model M`` (session 22), ``mean with M``: the plain model's output averaged with another model's
  (a two-model ensemble; the flight model ``rover-rgb-unet2-flight`` is another architecture of similar quality),
  and ``M alone``.

Each row: mean PSNR and its difference from ``plain``, and normalised convolution on the same crops for scale.
Deterministic: exact on a rerun. About 4 min on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

CROP = 512
VIEWS = {"plain": (0,), "+ left-right flip": (0, 4), "8 views": tuple(range(8))}


class ModelMean:
    """A predictor that averages two predictors' outputs (same tiles, same contract)."""

    def __init__(self, first: Any, second: Any) -> None:
        self.first, self.second = first, second
        self.metadata, self.source = first.metadata, getattr(first, "source", "")

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        a = np.asarray(self.first(batch), np.float64)
        return ((a + np.asarray(self.second(batch), np.float64)) / 2).astype(np.float32)


class GeometricEnsemble:
    """A predictor that averages ``views`` of the dihedral group (g < 4: rotation by g × 90°; g ≥ 4: the same
    after a left-right flip) of square NCHW tiles, each output turned back first."""

    def __init__(self, predictor: Any, views: tuple[int, ...]) -> None:
        self.predictor, self.views = predictor, views
        self.metadata, self.source = predictor.metadata, getattr(predictor, "source", "")

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        acc = np.zeros(batch.shape, np.float64)
        for g in self.views:
            v = np.rot90(batch, g % 4, axes=(2, 3))
            v = v[..., ::-1] if g >= 4 else v
            y = np.asarray(self.predictor(np.ascontiguousarray(v)), np.float64)
            y = y[..., ::-1] if g >= 4 else y
            acc += np.rot90(y, -(g % 4), axes=(2, 3))
        return (acc / len(self.views)).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.geometric_ensemble", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--model", default="rover-rgb-unet2-ground")
    ap.add_argument("--keep", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--with-model", default=None, help="also average the plain model with this one (zoo name/path)")
    args = ap.parse_args(argv)
    from benchmarks.machine import machine_info
    from benchmarks.reconstruction_acceptance import centre_crop
    from edgeae.datasets import split_files
    from edgeae.imageio import read_image
    from edgeae.masks import make_mask
    from edgeae.metrics import compare
    from edgeae.predictor import load_predictor
    from edgeae.reconstruct import reconstruct

    t0 = time.perf_counter()
    pred = load_predictor(args.model, threads=args.threads)
    other = load_predictor(args.with_model, threads=args.threads) if args.with_model else None
    channels = pred.metadata.channels
    if other is not None and other.metadata.channels != channels:
        raise SystemExit(f"{args.with_model}: not the channels of {args.model} ({channels})")
    extra = {f"{args.with_model} alone": other, f"mean with {args.with_model}": ModelMean(pred, other)} if other else {}
    rows: list[dict[str, Any]] = []
    for i, f in enumerate(split_files("rover_rgb_v2", "val")):
        img = centre_crop(read_image(f, channels=channels).pixels, CROP)
        known = make_mask(i, img.shape[:2], args.keep)
        row: dict[str, Any] = {"image": f.name}
        for name, views in VIEWS.items():
            out = reconstruct(img, known, "cae", predictor=GeometricEnsemble(pred, views), progress=False)
            row[name] = compare(img, out, known)["psnr"]
        for name, p in extra.items():
            row[name] = compare(img, reconstruct(img, known, "cae", predictor=p, progress=False), known)["psnr"]
        row["normconv"] = compare(img, reconstruct(img, known, "normconv"), known)["psnr"]
        rows.append(row)
        print({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
    mean = {k: float(np.mean([r[k] for r in rows])) for k in (*VIEWS, *extra, "normconv")}
    res = {"machine": machine_info(args.threads), "model": args.model, "with_model": args.with_model,
           "keep": args.keep, "crop": CROP,
           "images": rows, "mean_psnr": mean, "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(res, indent=2))
    md = [f"{args.model}, rover_rgb_v2 validation panoramas ({len(rows)}), {CROP}-px centre crops, keep {args.keep}",
          "", "| fill | mean PSNR dB | vs plain |", "|---|---:|---:|"]  # fmt: skip
    md += [f"| {k} | {v:.2f} | {v - mean['plain']:+.3f} |" for k, v in mean.items()]
    (args.out / "results.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
