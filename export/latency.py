"""Latency of exported artifacts: ``python -m edgeae.export.latency DIR [--repeats N]``.

Median ms per image at batch 1 and 32 with 1 and 2 threads for every ``.onnx``/``.ort``/``.tflite`` file in
DIR, on random [0, 1] input (speed does not depend on pixel values), written as ``latency.json`` and printed as
a markdown table with the machine's load average (a loaded machine inflates every figure). Files that failed
their export checks (``*.FAILED.*``) are skipped; a file that cannot be loaded is named on stderr and makes the
exit status 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from edgeae.firmware_sim.runtime import load_artifact

from .filetype import check_artifact_file
from .outdir import is_failed, is_stale
from .parity import measure_latency
from .report import environment


def artifact_latency(
    path: str | Path, batches: tuple[int, ...] = (1, 32), threads: tuple[int, ...] = (1, 2), repeats: int = 10
) -> list[dict[str, Any]]:
    """Latency records for one artifact (see :func:`edgeae.export.parity.measure_latency`)."""
    out = []
    for t in threads:
        pred = load_artifact(path, threads=t)
        shape = [abs(v) for v in pred.metadata.input_shape[1:]]
        if pred.metadata.layout == "NHWC":
            shape = [shape[2], shape[0], shape[1]]
        rng = np.random.default_rng(0)
        for b in batches:
            x = rng.random((b, *shape), dtype=np.float32)
            out.append({**measure_latency(pred, x, repeats=repeats), "threads": t})
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m edgeae.export.latency", description=__doc__)
    p.add_argument("folder", type=Path)
    p.add_argument("--repeats", type=int, default=10, help="timed runs per figure, their median reported (default 10)")
    p.add_argument("--pattern", default="*", help="file name glob within FOLDER (default: all artifacts)")
    args = p.parse_args(argv)
    if args.repeats < 1:  # no median of nothing: every file failed with "no median for empty data"
        p.error(f"--repeats must be at least 1, got {args.repeats}")
    if not args.folder.is_dir():
        print(f"error: {args.folder}: no such folder", file=sys.stderr)
        return 2
    files = sorted(
        f
        for f in args.folder.glob(args.pattern)
        if f.suffix in (".onnx", ".ort", ".tflite") and not is_failed(f.name) and not is_stale(f.name)
    )  # a *.FAILED.* file failed its export checks, a *.STALE.* one is an earlier checkpoint's: not timed
    if not files:
        print(f"error: no .onnx/.ort/.tflite files matching {args.pattern!r} in {args.folder}", file=sys.stderr)
        return 2
    env = environment()
    rows: dict[str, list[dict[str, Any]]] = {}
    errors: dict[str, str] = {}
    for f in files:
        try:
            check_artifact_file(f)
            rows[f.name] = artifact_latency(f, repeats=args.repeats)
        except (OSError, ValueError) as exc:  # ArtifactError and MetadataError are ValueErrors
            errors[f.name] = str(exc)
            print(f"error: {exc}", file=sys.stderr)
    (args.folder / "latency.json").write_text(
        json.dumps({"environment": env, "latency": rows, **({"errors": errors} if errors else {})}, indent=2)
    )
    print(f"median ms per image; {env['cpu_count']} CPUs, load {env['loadavg_1min']}")
    print("| artifact | b1 t1 | b1 t2 | b32 t1 | b32 t2 | size (KB) |\n|---|---:|---:|---:|---:|---:|")
    for name, recs in rows.items():
        cells = [f"{r['median_ms_per_image']:.2f}" for r in sorted(recs, key=lambda r: (r["batch"], r["threads"]))]
        print(f"| {name} | {' | '.join(cells)} | {(args.folder / name).stat().st_size / 1024:.0f} |")
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
