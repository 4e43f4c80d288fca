"""The rover CAEs on a kind of image they were not made for: MSL browse thumbnails (issue 11, do-no-harm check).

    python -m benchmarks.msl_browse_fill --out benchmarks/results/msl_browse_fill [--step 3] [--keep 0.1]
    python -m benchmarks.msl_browse_fill --out DIR --models RUN/gated.pt --no-cross-check   # a candidate, alone

The rover models are trained on full-resolution Mastcam/Mastcam-Z/Navcam frames. The MSL surface set
(``train_extra/msl_surface_v1_train``) holds Curiosity *browse* images: ~256 × 192 JPEG thumbnails, about 1/6 of
the camera's resolution, re-compressed. A ground station may well be handed such products. For every ``--step``-th
image of the validation sols (:func:`edgeae.datasets.msl_split_of_sol`: validation data, never a test figure),
a uniform mask keeping ``--keep`` of the pixels (seed = image index), then the whole image's PSNR (as in the
reconstruction stage) of the classical fills of the acceptance benchmark
(:data:`benchmarks.acceptance_report.CLASSICAL`, blend and normconv-wide included since session 39; the best per
image is the baseline), the ground and flight
CAEs alone, and each cross-checked against linear interpolation (:mod:`edgeae.crosscheck`, its defaults; what
``edgeae reconstruct`` does by default). Per-image PSNRs go to ``results.json``. Fixed seeds: exact on a rerun.
About 18 min on 2 cores at ``--step 3`` (424 images; the cross-check is most of it).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.acceptance_report import CLASSICAL

MODELS = ("rover-rgb-unet2-ground", "rover-rgb-unet2-flight")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.msl_browse_fill", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--step", type=int, default=3, help="every N-th validation image (default 3)")
    ap.add_argument("--keep", type=float, default=0.1, help="fraction of pixels received (default 0.1)")
    ap.add_argument("--limit", type=int, default=None, help="at most N images (a smoke run)")
    ap.add_argument(
        "--models",
        default=",".join(MODELS),
        help="comma-separated zoo names or checkpoints (a candidate's .pt: validation data, so a fair choice); "
        "default the two shipped rover U-Nets",
    )
    ap.add_argument("--no-cross-check", action="store_true", help="the CAE alone, without the cross-checked rows")
    args = ap.parse_args(argv)
    if args.step < 1 or not 0 < args.keep < 1:
        ap.error("--step must be >= 1 and --keep in (0, 1)")
    if not [m for m in args.models.split(",") if m]:
        ap.error("--models names no model")
    from tqdm import tqdm

    from benchmarks.machine import machine_info
    from edgeae.crosscheck import cross_checked_fill
    from edgeae.datasets import msl_surface_items
    from edgeae.imageio import read_image
    from edgeae.masks import make_mask
    from edgeae.metrics import compare
    from edgeae.predictor import load_predictor
    from edgeae.reconstruct import reconstruct

    t0 = time.perf_counter()
    items = msl_surface_items("val")[:: args.step][: args.limit]
    predictors = {m: load_predictor(m, threads=2) for m in args.models.split(",") if m}
    psnr: dict[str, list[float]] = {}
    sizes: list[tuple[int, int]] = []
    for i, (path, _cls, _sol) in enumerate(tqdm(items, desc="MSL browse images", unit="image")):
        img = read_image(path, channels=3).pixels
        sizes.append(img.shape[:2])
        known = make_mask(i, img.shape[:2], args.keep)
        fills = {name: reconstruct(img, known, name) for name in CLASSICAL}
        for m, pred in predictors.items():
            fills[m] = reconstruct(img, known, "cae", predictor=pred)
            if not args.no_cross_check:
                fills[f"{m} +xcheck"] = cross_checked_fill(img, known, pred)
        for name, fill in fills.items():
            psnr.setdefault(name, []).append(float(compare(img, fill, known)["psnr"]))
    best = np.max([psnr[c] for c in CLASSICAL], axis=0)
    rows: list[dict[str, Any]] = []
    for name, values in psnr.items():
        v = np.asarray(values)
        margin = v - best
        rows.append({"method": name, "psnr": round(float(v.mean()), 3),
                     "margin": round(float(margin.mean()), 3) if name not in CLASSICAL else None,
                     "wins": int((margin > 0).sum()) if name not in CLASSICAL else None,
                     "worst": round(float(margin.min()), 3) if name not in CLASSICAL else None,
                     "below_0.5": int((margin < -0.5).sum()) if name not in CLASSICAL else None})  # fmt: skip
    best_names = [CLASSICAL[j] for j in np.argmax([psnr[c] for c in CLASSICAL], axis=0)]
    h, w = np.array(sizes).T
    res = {
        "machine": machine_info(2), "images": len(items), "step": args.step, "keep": args.keep,
        "size_px": {"height": [int(h.min()), int(h.max())], "width": [int(w.min()), int(w.max())]},
        "best_classical": {c: best_names.count(c) for c in CLASSICAL},
        "best_classical_psnr": round(float(best.mean()), 3),
        "rows": rows, "seconds": round(time.perf_counter() - t0, 1),
        "per_image": [{"file": path.name, **{m: round(v[i], 3) for m, v in psnr.items()}}
                      for i, (path, _, _) in enumerate(items)],
    }  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(res, indent=2, default=str))
    md = [
        "| method | mean PSNR (dB) | margin over the best classical per image | images above it | worst margin "
        "| images > 0.5 dB below |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        n = len(items)
        extra = (
            "| | | | |"
            if r["margin"] is None
            else f"| {r['margin']:+.3f} | {r['wins']}/{n} | {r['worst']:+.3f} | {r['below_0.5']} |"
        )
        md.append(f"| {r['method']} | {r['psnr']:.3f} {extra}")
    md.append(
        f"\nMSL browse images of the validation sols (1 in {args.step}: {len(items)} images, "
        f"{res['size_px']['height'][0]}-{res['size_px']['height'][1]} × {res['size_px']['width'][0]}-"
        f"{res['size_px']['width'][1]} px JPEG), keep {args.keep}, whole-image PSNR. Best classical fill "
        f"per image: {res['best_classical_psnr']:.3f} dB on average "
        f"({', '.join(f'{c} {n}' for c, n in res['best_classical'].items() if n)}). Validation data: never a test "
        "figure."
    )
    (args.out / "results.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
