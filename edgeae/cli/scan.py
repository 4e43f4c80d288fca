"""``edgeae scan``: score every patch of an image archive into Parquet, resumably, locally or on Ray."""

from __future__ import annotations

import argparse
from typing import Any

DEFAULT_MODEL = "orbital-gray-vae"


def register(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "scan",
        help="scan an image archive for anomalous patches (local cores or Ray)",
        description=(
            "Walk ARCHIVE (folders, manifest files with one path a line, globs), stream each image in strips, "
            "score every patch and write OUT/results.parquet, OUT/images.parquet, OUT/topk/ and "
            "OUT/report.json. Rerunning the same command resumes an interrupted scan."
        ),
    )
    p.add_argument("archive", nargs="+", help="folder, manifest file (.txt/.lst/.csv), image file or glob")
    p.add_argument(
        "--model", default=DEFAULT_MODEL, help=f"zoo name, .pt checkpoint or artifact (default {DEFAULT_MODEL})"
    )
    p.add_argument("--out", required=True, help="results folder (created; reused to resume)")
    p.add_argument("--engine", choices=("local", "ray"), default="local", help="local processes (default) or Ray Data")
    p.add_argument("--address", default=None, help="Ray cluster address (default: start a local Ray instance)")
    p.add_argument("--workers", type=int, default=2, help="local worker processes (0 = this process; default 2)")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray instance (default: all)")
    p.add_argument("--actors", type=int, default=None, help="Ray model actors (default: one per CPU, or per GPU)")
    p.add_argument("--threads", type=int, default=1, help="interpreter threads per worker/actor (default 1)")
    p.add_argument("--stride", type=int, default=None, help="patch stride in pixels (default: the patch size)")
    p.add_argument("--batch-size", type=int, default=64, help="patches per model call (default 64)")
    p.add_argument("--min-valid", type=float, default=0.5, help="skip patches with less valid data (default 0.5)")
    p.add_argument("--top-k", type=int, default=16, help="anomalies kept as thumbnails (default 16)")
    p.add_argument("--retry-failed", action="store_true", help="scan images recorded as failed again")
    p.add_argument("--force", action="store_true", help="discard earlier results in OUT and start over")
    p.add_argument("--max-images", type=int, default=None, help="stop after this many images (resume later)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def run(args: argparse.Namespace) -> int:
    from edgeae.cli import CLIError
    from edgeae.scan.report import report_markdown
    from edgeae.scan.run import EngineOptions, scan_archive
    from edgeae.scan.state import ScanStateError

    if args.address and args.engine != "ray":
        raise CLIError("--address needs --engine ray")
    try:
        opts = EngineOptions(
            engine=args.engine, workers=args.workers, address=args.address, num_cpus=args.num_cpus,
            actors=args.actors, threads=args.threads,
        )  # fmt: skip
        report = scan_archive(
            args.archive, args.model, args.out, engine=opts, stride=args.stride, batch_size=args.batch_size,
            min_valid=args.min_valid, top_k=args.top_k, retry_failed=args.retry_failed, force=args.force,
            max_images=args.max_images, progress=not args.no_progress,
        )  # fmt: skip
    except ScanStateError as exc:
        raise CLIError(str(exc)) from exc
    print(report_markdown(report), end="")
    return 0
