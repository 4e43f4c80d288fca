"""What the ground's default fill (``--method auto``: blend where it fits, else normconv-wide, else telea) costs in
time against telea, on whole real frames, with the PSNR each buys.

    python -m benchmarks.fill_costs --out DIR [--repeats 3] [--keep 0.1] [--data DIR]

The demo frame (a Mastcam-Z RGB frame, whole) and the first grey test file of ``orbital_gray_v2`` (whole), a
uniform mask at ``--keep`` (seed 0), each fill run ``--repeats`` times interleaved (telea, normconv-wide, blend,
telea, ...), the median quoted with the range and as a ratio to telea's median in the same run, so a noisy machine
moves the ratios less than the seconds. Memory is not measured here: each fill's peak is
``edgeae.ground.limits.REBUILD_BYTES`` (measured with ``/usr/bin/time -v``, docs/ground.md), printed beside it.
Writes ``results.json`` and ``results.md`` (with the machine, versions, threads and load) under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from any folder

METHODS = ("telea", "normconv-wide", "blend")


def frames(root: Path) -> list[tuple[str, np.ndarray]]:
    """The demo frame (RGB) and the first grey test file, whole, float32 in [0, 1]."""
    from edgeae.datasets import DEMO_FRAME, split_files
    from edgeae.imageio import read_image

    grey = split_files("orbital_gray_v2", "test", root)[0]
    return [
        (Path(DEMO_FRAME).name, read_image(root / DEMO_FRAME, channels=3).pixels),
        (grey.name, read_image(grey, channels=1).pixels),
    ]


def measure(img: np.ndarray, keep: float, repeats: int, methods: tuple[str, ...] = METHODS) -> dict[str, Any]:
    """Seconds of each fill (interleaved repeats) and its PSNR on ``img`` at ``keep``."""
    from edgeae.ground.limits import rebuild_bytes
    from edgeae.masks import make_mask
    from edgeae.metrics import psnr
    from edgeae.reconstruct import reconstruct

    img = np.asarray(img, np.float32)
    img = img[..., None] if img.ndim == 2 else img
    known = make_mask(0, img.shape[:2], keep, "uniform")
    sparse = np.where(known[..., None], img, 0).astype(np.float32)
    times: dict[str, list[float]] = {m: [] for m in methods}
    out: dict[str, np.ndarray] = {}
    for _ in range(repeats):
        for m in methods:
            t0 = time.perf_counter()
            out[m] = np.asarray(reconstruct(sparse, known, m), np.float32)
            times[m].append(time.perf_counter() - t0)
    h, w, c = img.shape
    base = float(np.median(times[methods[0]]))
    return {
        "shape": [h, w, c],
        "keep": keep,
        "methods": {
            m: {
                "seconds_median": round(float(np.median(t)), 3),
                "seconds_range": [round(min(t), 3), round(max(t), 3)],
                "ratio_to_first": round(float(np.median(t)) / base, 2),
                "psnr_db": round(float(psnr(img, out[m])), 3),
                "rebuild_bytes_estimate": rebuild_bytes(h, w, c, m),
            }
            for m, t in times.items()
        },
    }


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "# Fill costs: the ground's `--method auto` against telea",
        "",
        f"`{results['command']}`; {results['machine']['cpu']}, {results['machine']['logical_cores']} logical cores, "
        f"1-minute load {results['load_before']} before and {results['load_after']} after, numpy/OpenCV threads as "
        "the environment sets them (see results.json). Seconds: median of the interleaved repeats (range).",
        "",
        "| frame | size | fill | seconds | ÷ telea | PSNR dB | estimated peak memory |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for name, r in results["frames"].items():
        h, w, c = r["shape"]
        for m, v in r["methods"].items():
            lo, hi = v["seconds_range"]
            lines.append(
                f"| {name} | {h}×{w}×{c} | {m} | {v['seconds_median']:.2f} ({lo:.2f}-{hi:.2f}) | "
                f"{v['ratio_to_first']:.2f} | {v['psnr_db']:.2f} | {v['rebuild_bytes_estimate'] / 2**20:.0f} MiB |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.fill_costs", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="folder for results.json and results.md")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved runs of each fill (default 3)")
    ap.add_argument("--keep", type=float, default=0.1, help="fraction of pixels kept (default 0.1)")
    ap.add_argument("--data", default=None, help="shared data folder (default $EDGEAE_DATA or ../shared/data)")
    args = ap.parse_args(argv)
    if args.repeats < 1 or not 0 < args.keep < 1:
        ap.error("--repeats must be at least 1 and --keep in (0, 1)")
    from benchmarks.machine import machine_info
    from edgeae.data import data_root

    root = data_root(args.data)
    load_before = round(os.getloadavg()[0], 2)
    results: dict[str, Any] = {
        "command": "python -m benchmarks.fill_costs " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine_info(),
        "load_before": load_before,
        "frames": {name: measure(img, args.keep, args.repeats) for name, img in frames(Path(root))},
    }
    results["load_after"] = round(os.getloadavg()[0], 2)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    md = markdown(results)
    (args.out / "results.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
