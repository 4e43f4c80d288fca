"""What each zoo reconstruction model costs: parameters, MACs per pixel and tile latency next to the seed CAE.

For every model: trainable parameters, multiply-accumulates per input pixel (convolutions, counted from the
layers), and the median latency of one 128×128 tile (batch 1, one thread) in PyTorch fp32 and in onnxruntime
fp32 / int8 (artifacts exported and parity-checked by ``edgeae export``). Latencies are measured interleaved,
round by round, in one process, so the ratio to the seed CAE (the flight budget: ≤ 2× its int8 latency) is
meaningful even on a shared machine; the 1-minute load is recorded before and after.

    python benchmarks/model_costs.py --out benchmarks/results/model_costs \\
        --models rover-rgb-gtcae,rover-rgb-gtunet,rover-rgb-unet2-flight,rover-rgb-unet2-ground
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
from benchmarks.artifacts import ART_DIR, is_fresh, write_stamp
from benchmarks.machine import machine_info
from benchmarks.opcount import count_macs

REFERENCE = "rover-rgb-gtcae"


def onnx_artifact(name: str, precision: str) -> Path:
    """The model's ONNX file: shipped in the zoo, else exported (ONNX only, parity-checked) under ART_DIR."""
    from edgeae.export.api import ExportConfig, export_model

    shipped = Path("edgeae/zoo/artifacts") / name / f"{name}.{precision}.onnx"
    if shipped.is_file():
        return shipped
    path = ART_DIR / name / f"{name}.{precision}.onnx"
    if not path.is_file() or not is_fresh(name):  # a cache built from an older checkpoint is rebuilt
        export_model(name, ART_DIR / name, ExportConfig(formats=("onnx",), kinds=("cae",), latency=False))
        write_stamp(name)
    return path


def _onnx_session(path: Path) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.model_costs", description=__doc__.splitlines()[0] if __doc__ else None
    )
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--models", default=f"{REFERENCE},rover-rgb-gtunet")
    p.add_argument("--rounds", type=int, default=30)
    args = p.parse_args(argv)
    import torch

    from edgeae.checkpoint import load_checkpoint
    from edgeae.zoo import resolve

    torch.set_num_threads(1)
    names = [m for m in args.models.split(",") if m]
    if REFERENCE not in names:
        names.insert(0, REFERENCE)
    load_before = os.getloadavg()[0]
    rows: dict[str, dict[str, Any]] = {}
    runners: dict[str, dict[str, Any]] = {}
    for name in names:
        ck = load_checkpoint(resolve(name))
        c = int(ck.metadata.channels)
        tile = int(ck.metadata.input_shape[-1])
        x = np.random.default_rng(0).random((1, c, tile, tile), dtype=np.float32)
        x[:, :, ::3] = 0  # destroyed pixels, as the models see them
        macs = count_macs(ck.model, (1, c, tile, tile))
        rows[name] = {
            "parameters": int(sum(p.numel() for p in ck.model.parameters() if p.requires_grad)),
            "macs_per_pixel": macs / (tile * tile),
            "macs_per_tile": macs,
            "channels": c,
            "tile": tile,
            "variant": ck.metadata.architecture.get("variant", "seed"),
            "widths": ck.metadata.architecture.get("widths"),
        }
        xt = torch.from_numpy(x)
        model = ck.model.eval()

        def torch_run(model: Any = model, xt: Any = xt) -> None:
            with torch.inference_mode():
                model(xt)

        runners[name] = {"torch fp32": torch_run}
        for precision in ("fp32", "int8"):
            sess = _onnx_session(onnx_artifact(name, precision))
            feed = {sess.get_inputs()[0].name: x}
            runners[name][f"onnxruntime {precision}"] = lambda s=sess, f=feed: s.run(None, f)
    times: dict[str, dict[str, list[float]]] = {n: {k: [] for k in r} for n, r in runners.items()}
    for _ in range(3):  # warm-up
        for r in runners.values():
            for fn in r.values():
                fn()
    for _ in range(args.rounds):
        for n, r in runners.items():
            for k, fn in r.items():
                t0 = time.perf_counter()
                fn()
                times[n][k].append(1000 * (time.perf_counter() - t0))
    ref = {k: float(np.median(v)) for k, v in times[REFERENCE].items()}
    for n in names:
        med = {k: float(np.median(v)) for k, v in times[n].items()}
        rows[n]["latency_ms"] = med
        rows[n]["latency_vs_seed"] = {k: med[k] / ref[k] for k in med}
    result = {
        "benchmark": "model_costs",
        "command": " ".join(["benchmarks/model_costs.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": machine_info(),
        "threads": 1,
        "batch": 1,
        "rounds": args.rounds,
        "load_1min": {"before": load_before, "after": os.getloadavg()[0]},
        "reference": REFERENCE,
        "models": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    md = markdown(result)
    (args.out / "results.md").write_text(md)
    print(md)
    return 0


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"One 128×128 tile, batch 1, 1 thread, median of {result['rounds']} interleaved rounds; 1-minute load "
        f"{result['load_1min']['before']:.2f} before, {result['load_1min']['after']:.2f} after.",
        "",
        "| model | variant, widths | parameters | MACs / pixel | torch fp32 (ms) | ORT fp32 (ms) | ORT int8 (ms) "
        "| int8 vs seed CAE |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n, r in result["models"].items():
        lat = r["latency_ms"]
        lines.append(
            f"| {n} | {r['variant']} {r['widths']} | {r['parameters']:,} | {r['macs_per_pixel']:,.0f} | "
            f"{lat['torch fp32']:.2f} | {lat['onnxruntime fp32']:.2f} | {lat['onnxruntime int8']:.2f} | "
            f"{r['latency_vs_seed']['onnxruntime int8']:.2f}× |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
