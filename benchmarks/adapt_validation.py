"""How the per-frame adaptation defaults (edgeae.adapt) were chosen: validation crops only, never test images.

    python benchmarks/adapt_validation.py --model rover-rgb-unet2-ground --data-split rover_rgb_v2:val --limit 3 \\
        --keep 0.1 --configs 30:1e-4:0.2:0.5,100:1e-4:0.2:0.5,100:3e-4:0.2:0.5
    python benchmarks/adapt_validation.py --model orbital-gray-unet2-ground --data-split orbital_gray_v2:val \\
        --keep 0.1 --configs 100:1e-4:0.2:0.5,200:1e-4:0.2:0.5,100:1e-4:0.1:0.3

512-px centre crops of the first ``--limit`` files of the split, uniform masks seeded by the file index, the model
as shipped, the classical fills (normconv and linear interpolation; since session 39 also normconv-wide and blend,
printed for reference: the configs are compared on the adapted model's own PSNR), then the model adapted with each
``STEPS:LR:DROP_LO:DROP_HI`` config (seed = file index; CHECK is the held-out fraction of edgeae.adapt, 0 = the
model after the last step is used whatever it does). Prints one JSON line per file and the means; the tables of
docs/training.md ("Per-frame adaptation") come from these commands.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from benchmarks.crops import centre_crop
from edgeae.adapt import AdaptConfig, adapt_predictor
from edgeae.datasets import split_files
from edgeae.imageio import read_image
from edgeae.masks import make_mask
from edgeae.predictor import load_predictor
from edgeae.reconstruct import run_method


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.adapt_validation", description=(__doc__ or "").splitlines()[0]
    )
    ap.add_argument("--model", required=True)
    ap.add_argument("--data-split", required=True, help="DATASET:SPLIT, a validation split")
    ap.add_argument("--keep", type=float, default=0.1)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument(
        "--configs",
        default="100:1e-4:0.2:0.5:0.1",
        help="comma-separated STEPS:LR:DROP_LO:DROP_HI[:CHECK] (CHECK: held-out fraction, 0 = no check; default 0.1)",
    )
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    dataset, split = args.data_split.split(":")
    if split == "test":
        ap.error("choose settings on validation data, not on the test split")
    configs = [c.split(":") for c in args.configs.split(",") if c]
    if any(len(c) not in (4, 5) for c in configs):
        ap.error("each config is STEPS:LR:DROP_LO:DROP_HI[:CHECK]")
    base = load_predictor(args.model, threads=args.threads)
    channels = base.metadata.channels
    rows = []
    for i, path in enumerate(split_files(dataset, split)[: args.limit]):
        img = centre_crop(read_image(path, channels=channels).pixels, 512)
        known = make_mask(i, img.shape[:2], args.keep)
        row: dict[str, object] = {"file": path.name}
        for m in ("normconv", "linear", "normconv-wide", "blend"):
            row[m] = run_method(img, known, m).metrics["psnr"]
        row["shipped"] = run_method(img, known, "cae", base, progress=False).metrics["psnr"]
        for c in configs:
            steps, lr, lo, hi = c[:4]
            check = float(c[4]) if len(c) == 5 else 0.1
            cfg = AdaptConfig(steps=int(steps), lr=float(lr), drop=(float(lo), float(hi)), seed=i, check=check)
            t0 = time.perf_counter()
            report: dict[str, object] = {}
            tuned = adapt_predictor(base, img, known, cfg, progress=False, report=report)
            name = ":".join(c)
            row[f"adapt {name}"] = run_method(img, known, "cae", tuned, progress=False).metrics["psnr"]
            row[f"seconds {name}"] = round(time.perf_counter() - t0, 1)
            row[f"chosen step {name}"] = report.get("chosen_step", 0)
        rows.append(row)
        print(json.dumps(row), flush=True)
    keys = [k for k in rows[0] if k != "file" and not k.startswith(("seconds", "chosen"))]
    print("mean", json.dumps({k: round(float(np.mean([r[k] for r in rows])), 3) for k in keys}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
