"""``edgeae scan --score context-knn`` over the HiRISE development split: the evaluation's crater ranking, as a scan.

    python -m benchmarks.scan_context --out benchmarks/results/scan_context [--views 8] [--limit N] [--workers 2]

Builds an archive of the dev split's crops (symbolic links into the data folder, in a temporary folder), scans it
with the shipped grey VAE (its int8 artifact, the scan's default; ``--runtime onnx`` pinned so the numbers do not
depend on the CPU), each crop's 25 patches at stride 41 as ``edgeae evaluate`` cuts them (``--min-valid 0``: every
patch, as the evaluation scores them), products given by ``--group`` from the crop names, and reads the scan's
``results.parquet`` back: a crop's score is its highest patch, crater (class 1) vs other (class 0), ROC AUC and AP
over random, the figures ``edgeae evaluate`` gives for the ``two-context kNN (mu)`` candidate on the same crops.
Reports the scan's own timings (scoring, the set's ranking) with machine and load.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

GROUP = r"^[A-Z]+_[0-9]+_[0-9]+"  # a HiRISE crop's parent product: ESP_011289_1950 of ESP_011289_1950_RED-0006.jpg


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.scan_context", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--views", type=int, default=8)
    ap.add_argument("--limit", type=int, default=None, help="the first N dev crops only (a smoke run)")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)

    import pandas as pd
    from sklearn.metrics import average_precision_score, roc_auc_score

    from benchmarks.hirise_dev import dev_crops
    from benchmarks.machine import machine_info, wait_for_quiet
    from edgeae.anomaly.evaluate import HIRISE_STRIDE
    from edgeae.anomaly.labels import hirise_product
    from edgeae.scan.run import EngineOptions, scan_archive

    images, crops, _ = dev_crops(args.limit)
    quiet = wait_for_quiet(max_load=1.0, timeout_s=300)  # timings start on a settled machine (or say they did not)
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgeae-scan-context-") as tmp:
        arc = Path(tmp) / "archive"
        arc.mkdir()
        for f, _ in crops:
            (arc / f).symlink_to(images / f)
        import re

        assert all(re.match(GROUP, f).group(0) == hirise_product(f) for f, _ in crops)  # type: ignore[union-attr]
        report = scan_archive(
            arc, "orbital-gray-vae", Path(tmp) / "scan", engine=EngineOptions(workers=args.workers),
            stride=HIRISE_STRIDE, min_valid=0.0, score="context-knn", views=args.views, group=GROUP,
            runtime="onnx", progress=False,
        )  # fmt: skip
        table = pd.read_parquet(Path(tmp) / "scan" / "results.parquet")
    wall = time.perf_counter() - t0
    best = table.groupby("file")["score"].max()
    cls = np.array([c for _, c in crops])
    score = best.reindex([f for f, _ in crops]).to_numpy()
    sel = (cls == 0) | (cls == 1)
    y = cls[sel] == 1
    auc = float(roc_auc_score(y, score[sel]))
    ap_r = float(average_precision_score(y, score[sel]) / y.mean())
    res = {
        "machine": machine_info(args.workers),
        "load_1min_at_start": round(load, 2),
        "wait_for_quiet": quiet,
        "artifact": report["artifact"],
        "views": args.views,
        "crops": len(crops),
        "craters": int((cls == 1).sum()),
        "other": int((cls == 0).sum()),
        "patches": int(report["patches_in_results"]),
        "roc_auc": round(auc, 3),
        "ap_over_random": round(ap_r, 2),
        "scoring_seconds": report.get("scoring_seconds"),
        "patches_per_s_scoring": report.get("patches_per_s_scoring"),
        "context_knn": report["context_knn"],
        "wall_seconds": round(wall, 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(res, indent=2, default=str))
    ctx = report["context_knn"]
    md = [
        f"`edgeae scan --score context-knn --views {args.views} --group '{GROUP}' --stride {HIRISE_STRIDE} "
        f"--min-valid 0 --runtime onnx` over the HiRISE dev split ({len(crops)} crops: {res['craters']} craters, "
        f"{res['other']} other; {res['patches']:,} patches; `{report['artifact']}`): crater vs other, a crop = its "
        "highest patch.",
        "",
        "| ROC AUC | AP over random | scoring | the set's ranking | wall |",
        "|---:|---:|---:|---:|---:|",
        f"| {auc:.3f} | {ap_r:.2f} | {report.get('scoring_seconds') or 0:.0f} s "
        f"({report.get('patches_per_s_scoring') or 0:,.0f} patches/s, {args.views} VAE calls each) | "
        f"{ctx['seconds']:.0f} s | {wall:.0f} s |",
        "",
        f"Command: `python -m benchmarks.scan_context --out {args.out}"
        + ("" if args.views == 8 else f" --views {args.views}")
        + ("" if args.limit is None else f" --limit {args.limit}")
        + ("" if args.workers == 2 else f" --workers {args.workers}")
        + f"`; {args.workers} workers on {res['machine'].get('cpu', '?')}, 1-minute load {load:.2f} at the start "
        "(quality numbers are exact on a rerun; timings one run).",
    ]
    (args.out / "results.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
