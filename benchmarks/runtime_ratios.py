"""Each runtime's speed relative to PyTorch eager, measured *interleaved*: the ratios the speed suite gives.

The pytest-benchmark suite (``benchmarks/test_speed.py``) times one case after another; on a shared 2-core
machine the machine drifts between cases, and two back-to-back runs agreed within 20% on only 37 of 60 cases
(README). Here every group (model × batch × threads) loads all five runtimes (PyTorch eager fp32, onnxruntime
fp32 / int8, TFLite fp32 / int8 through ai-edge-litert) and times them round by round, in a rotating order,
so drift hits every runtime alike and the ratio to PyTorch eager is what one round measures. Also reported:
each runtime's achieved GOP/s as a fraction of the int8 / fp32 matrix-product peak measured in the same
process (``benchmarks/peak.py``), and the 1-minute load before and after.

    python benchmarks/runtime_ratios.py --out benchmarks/results/ratios [--rounds-b1 100 --rounds-b32 10]

Artifacts come from the same place as the speed suite's (exported once from the zoo models into
$EDGEAE_BENCH_ARTIFACTS, default runs/bench-artifacts), so it runs on a fresh clone with the data beside it (int8
calibration reads ../shared/data or $EDGEAE_DATA).
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
from benchmarks.machine import machine_info
from benchmarks.speed_cases import BATCHES, MODELS, RUNTIMES, THREADS, case_predictor, item_shape, model_macs


def _time_group(kind: str, batch: int, threads: int, rounds: int) -> dict[str, list[float]]:
    """Seconds per call of every runtime for one (model, batch, threads), interleaved round by round."""
    import torch

    preds = {rt: case_predictor(kind, rt, threads) for rt in RUNTIMES}
    shape = item_shape(preds["torch-fp32"].metadata)
    x = np.random.default_rng(0).random((batch, *shape), dtype=np.float32)
    for pred in preds.values():  # warm-up (and TFLite tensor resize)
        torch.set_num_threads(threads)
        for _ in range(3):
            pred(x)
    times: dict[str, list[float]] = {rt: [] for rt in RUNTIMES}
    order = list(RUNTIMES)
    for r in range(rounds):
        for rt in order[r % len(order) :] + order[: r % len(order)]:  # rotate who goes first
            if rt == "torch-fp32":
                torch.set_num_threads(threads)  # process-wide: set before each PyTorch call
            t = time.perf_counter()
            preds[rt](x)
            times[rt].append(time.perf_counter() - t)
    return times


def run(rounds_b1: int, rounds_b32: int) -> dict[str, Any]:
    from benchmarks.peak import measure_peak

    load_before = os.getloadavg()[0]
    peaks = {t: measure_peak(t) for t in THREADS}
    rows = []
    for kind in MODELS:
        macs = model_macs(kind)
        for batch in BATCHES:
            for threads in THREADS:
                times = _time_group(kind, batch, threads, rounds_b1 if batch == 1 else rounds_b32)
                med = {rt: float(np.median(v)) for rt, v in times.items()}
                for rt in RUNTIMES:
                    precision = rt.split("-")[1]
                    peak = peaks[threads]["ort_int8_gops" if precision == "int8" else "ort_fp32_gops"]
                    gops = 2 * macs * batch / med[rt] / 1e9
                    rows.append(
                        {
                            "model": kind,
                            "runtime": rt,
                            "batch": batch,
                            "threads": threads,
                            "median_ms": round(1e3 * med[rt], 4),
                            "iqr_ms": round(1e3 * float(np.subtract(*np.percentile(times[rt], [75, 25]))), 4),
                            "rounds": len(times[rt]),
                            "ratio_to_torch_eager": round(med["torch-fp32"] / med[rt], 3),
                            "gops": round(gops, 2),
                            "fraction_of_peak": round(gops / peak, 4),
                        }
                    )
                print(f"{kind} b{batch} t{threads}: " + ", ".join(f"{rt} {1e3 * med[rt]:.2f} ms" for rt in RUNTIMES))
    return {
        "benchmark": "runtime_ratios",
        "machine": machine_info(max(THREADS)),
        "peaks": {str(t): v for t, v in peaks.items()},
        "load_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "rows": rows,
    }


def markdown(res: dict[str, Any]) -> str:
    lb, la = res["load_before_after"]
    md = [
        "Each runtime next to PyTorch eager, timed interleaved round by round in one process (median ms; ratio "
        f"= PyTorch median / runtime median, same model, batch and threads); 1-minute load {lb} before, {la} after.",
        "",
        "| model | batch | threads | runtime | median ms | IQR ms | rounds | × PyTorch eager | GOP/s | % of peak |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        md.append(
            f"| {r['model']} | {r['batch']} | {r['threads']} | {r['runtime']} | {r['median_ms']:.3f} | "
            f"{r['iqr_ms']:.3f} | {r['rounds']} | {r['ratio_to_torch_eager']:.2f}× | {r['gops']:.1f} | "
            f"{100 * r['fraction_of_peak']:.0f} |"
        )
    pk = res["peaks"]
    md += [
        "",
        "Peak (onnxruntime 2048³ MatMul / MatMulInteger, same process): "
        + "; ".join(
            f"{t} thread(s): fp32 {v['ort_fp32_gops']:.1f}, int8 {v['ort_int8_gops']:.1f} GOP/s" for t, v in pk.items()
        ),
    ]
    return "\n".join(md) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.runtime_ratios", description=__doc__.splitlines()[0] if __doc__ else None
    )
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--rounds-b1", type=int, default=100)
    p.add_argument("--rounds-b32", type=int, default=10)
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    res = run(args.rounds_b1, args.rounds_b32)
    res["command"] = " ".join(["benchmarks/runtime_ratios.py", *(argv if argv is not None else sys.argv[1:])])
    (args.out / "results.json").write_text(json.dumps(res, indent=2) + "\n")
    (args.out / "results.md").write_text(markdown(res))
    print(markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
