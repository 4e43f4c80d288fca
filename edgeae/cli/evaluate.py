"""``edgeae evaluate``: the lunar VAE paper's evaluation (AP vs random, KS, baselines, plots), one command."""

from __future__ import annotations

import argparse
from pathlib import Path

from edgeae.cli import CLIError

DATASETS = ("lroc_nac_craters", "hirise_landmarks")


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "evaluate",
        help="anomaly ranking on labelled data (AP, random AP, KS, baselines, plots)",
        description="Score the labelled evaluation set with MODEL and write table.md, results.json and plots "
        "to OUT/DATASET/.",
    )
    p.add_argument(
        "--dataset", required=True, choices=[*DATASETS, "all"], help="labelled evaluation set, or all of them"
    )
    p.add_argument(
        "--model", required=True, help="zoo name (orbital-gray-vae), .pt checkpoint, or .onnx/.ort/.tflite artifact"
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--batch", type=int, default=256, help="patches per model call (default 256)")
    p.add_argument("--limit", type=int, default=None, help="only the first N files (LROC) / N random crops (HiRISE)")
    p.add_argument("--seed", type=int, default=0, help="seed of random-16 gallery, isolation forest, t-SNE, --limit")
    p.add_argument("--cae-keep", type=float, default=0.5, help="CAE scoring: fraction of pixels the model sees")
    p.add_argument("--no-plots", action="store_true", help="write tables and JSON only, no plots")
    p.add_argument("--threads", type=int, default=None, help="interpreter / torch threads")
    p.add_argument("--data-root", default=None, help="data folder (default: $EDGEAE_DATA or ../shared/data)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def needs(args: argparse.Namespace) -> dict[str, str]:
    """Optional packages this command imports (checked before any work)."""
    return {"cv2": "ground", "scipy": "ground", "sklearn": "ground", "matplotlib": "ground", "tqdm": "ground"}


def run(args: argparse.Namespace) -> int:
    from edgeae.anomaly.evaluate import evaluate
    from edgeae.anomaly.score import make_scorer
    from edgeae.data import data_root
    from edgeae.predictor import load_predictor

    predictor = load_predictor(args.model, threads=args.threads)
    if predictor.metadata.kind not in ("vae", "cae"):
        raise CLIError(f"{args.model}: a {predictor.metadata.kind!r} model cannot score patches")
    scorer = make_scorer(predictor, cae_keep=args.cae_keep, keep_latents=True)
    root = data_root(args.data_root)
    out = Path(args.out)
    for ds in DATASETS if args.dataset == "all" else (args.dataset,):
        res = evaluate(
            ds,
            scorer,
            root,
            out / ds,
            batch=args.batch,
            limit=args.limit,
            seed=args.seed,
            plots=not args.no_plots,
            progress=not args.no_progress,
        )
        print((out / ds / "table.md").read_text())
        print(f"{ds}: {len(res['rows'])} rows -> {out / ds}")
    return 0
