"""Grey CAEs on the grey validation files: margin over the best classical fill per file (validation data only).

    python -m benchmarks.grey_validation --out DIR [--data-set orbital_gray_lunar] [--models A,B,RUN/gated.pt]

How a grey candidate was chosen without the test split: for every validation file of ``--data-set`` (default
``orbital_gray_lunar``: HiRISE, Mercury, two CTX tiles and a lunar NAC mosaic), its centre ``--crop`` px (as the
reconstruction stage crops the test files), ``--masks`` uniform masks keeping ``--keep`` of the pixels (seeds from
the file's name, so a file's masks do not depend on the others listed), and each model's PSNR minus the best
classical fill's (:data:`benchmarks.acceptance_report.CLASSICAL`, the best per mask), averaged over the masks. The
models are used as given (a ``gated.pt`` with its gate, as the zoo ships them). Fixed seeds: exact on a rerun.
Writes ``results.json`` and ``results.md`` under ``--out``; about a minute for three models on the five files of
``orbital_gray_lunar`` (2 cores).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.acceptance_report import CLASSICAL

MODELS = ("orbital-gray-unet2-ground",)


def mask_seed(name: str, k: int) -> int:
    """The ``k``-th mask's seed of the file called ``name``."""
    return 100 + 10 * (zlib.crc32(name.encode()) % 1000) + k


def margins(
    img: np.ndarray, name: str, predictors: dict[str, Any], keep: float, masks: int
) -> dict[str, dict[str, float]]:
    """Per model, its mean PSNR minus the best classical fill's over ``masks`` masks of ``img`` (and that best)."""
    from benchmarks.reconstruction_acceptance import evaluate
    from edgeae.masks import make_mask

    methods: dict[str, Any] = {**predictors, **dict.fromkeys(CLASSICAL)}
    psnr: dict[str, list[float]] = {}
    for k in range(masks):
        seed = mask_seed(name, k)
        r = evaluate(img, make_mask(seed, img.shape[:2], keep, "uniform"), methods, seed=seed)
        for m, v in r.items():
            psnr.setdefault(m, []).append(v["psnr"])
    best = [max(psnr[c][k] for c in CLASSICAL) for k in range(masks)]
    out = {m: {"margin_db": float(np.mean(np.subtract(psnr[m], best)))} for m in predictors}
    out["best classical"] = {"psnr": float(np.mean(best))}
    return out


def markdown(result: dict[str, Any]) -> str:
    models = result["models"]
    lines = [
        f"Grey validation files of `{result['data_set']}` (centre {result['crop']}-px crops, keep {result['keep']}, "
        f"{result['masks']} masks each): each model's PSNR minus the best classical fill's (dB)",
        "",
        "| file | best classical (dB) | " + " | ".join(models) + " |",
        "|---|---:|" + "---:|" * len(models),
    ]
    for f, r in result["per_file"].items():
        cells = " | ".join(f"{r[m]['margin_db']:+.3f}" for m in models)
        lines.append(f"| {f} | {r['best classical']['psnr']:.2f} | {cells} |")
    mean = " | ".join(f"**{result['mean_margin_db'][m]:+.3f}**" for m in models)
    lines += [f"| mean | | {mean} |", "", f"`{result['command']}`; {result['seconds']:.0f} s", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.grey_validation", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--data-set", default="orbital_gray_lunar", help="a grey dataset of edgeae.datasets (its val)")
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated zoo names or checkpoints")
    ap.add_argument("--keep", type=float, default=0.1)
    ap.add_argument("--crop", type=int, default=512)
    ap.add_argument("--masks", type=int, default=2, help="masks per file (default 2)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    if not models or args.masks < 1 or not 0 < args.keep < 1:
        ap.error("--models must name a model, --masks be >= 1 and --keep in (0, 1)")
    from benchmarks.crops import centre_crop
    from benchmarks.machine import machine_info
    from edgeae.datasets import split_files
    from edgeae.imageio import read_image
    from edgeae.predictor import load_predictor

    t0 = time.perf_counter()
    predictors = {m: load_predictor(m, threads=args.threads) for m in models}
    per_file: dict[str, Any] = {}
    for path in split_files(args.data_set, "val"):
        img = centre_crop(read_image(path, channels=1).pixels, args.crop)
        per_file[path.name] = margins(img, path.name, predictors, args.keep, args.masks)
        print(path.name, {m: round(per_file[path.name][m]["margin_db"], 3) for m in models}, flush=True)
    result = {
        "benchmark": "grey_validation",
        "command": "python -m benchmarks.grey_validation " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine_info(args.threads),
        "data_set": args.data_set, "models": models, "keep": args.keep, "crop": args.crop, "masks": args.masks,
        "per_file": per_file,
        "mean_margin_db": {m: float(np.mean([r[m]["margin_db"] for r in per_file.values()])) for m in models},
        "seconds": round(time.perf_counter() - t0, 1),
    }  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "results.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
