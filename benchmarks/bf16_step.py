"""Is bfloat16 autocast faster than float32 for training on this CPU? (the trainers' ``bf16 = None`` default)

    python benchmarks/bf16_step.py [--rounds 3] [--threads 1] [--json out.json]

Times one training step (forward, MSE-style loss, backward, Adam) of the zoo's grey ground CAE (batch 16 of
128×128, 90 % of pixels zeroed) and of the grey VAE (batch 64 of 64×64), in float32 and under bfloat16 autocast,
both with ``channels_last`` tensors, alternating the two ``--rounds`` times after one warm-up step each, and
prints the seconds per step, the ratio, and what :func:`edgeae.train.common.cpu_has_fast_bf16` says about this
CPU. Only a ratio taken in one run means anything on a shared machine; the JSON records machine, versions and
load.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from any folder
from benchmarks.machine import machine_info

CASES = {"orbital-gray-unet2-ground": (16, 128), "orbital-gray-vae": (64, 64)}


def _step(torch: Any, model: Any, opt: Any, x: Any, bf16: bool) -> float:
    t0 = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        out = model(x)
    y = out["recon"] if isinstance(out, dict) and "recon" in out else out
    if isinstance(y, dict):
        y = next(iter(y.values()))
    loss = ((y.float() - x) ** 2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    return time.perf_counter() - t0


def measure(name: str, rounds: int) -> dict[str, Any]:
    import torch

    from edgeae.checkpoint import load_checkpoint
    from edgeae.predictor import resolve_model_path

    batch, side = CASES[name]
    model = load_checkpoint(resolve_model_path(name)).model.train().to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-5)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 1, side, side, generator=g)
    if "vae" not in name:
        x = x * (torch.rand(x.shape, generator=g) < 0.1)
    x = x.contiguous(memory_format=torch.channels_last)
    times: dict[str, list[float]] = {"float32": [], "bfloat16": []}
    for bf16 in (False, True):
        _step(torch, model, opt, x, bf16)  # warm-up
    for _ in range(rounds):
        for bf16 in (False, True):
            times["bfloat16" if bf16 else "float32"].append(_step(torch, model, opt, x, bf16))
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    return {
        "model": name,
        "batch": batch,
        "side": side,
        "seconds": {k: [round(t, 4) for t in v] for k, v in times.items()},
        "median_s": {k: round(v, 4) for k, v in med.items()},
        "bf16_over_fp32": round(med["bfloat16"] / med["float32"], 2),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bf16_step", description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)
    import torch

    from edgeae.train.common import cpu_has_fast_bf16

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    rows = [measure(name, args.rounds) for name in CASES]
    result = {"machine": machine_info(args.threads), "cpu_has_fast_bf16": cpu_has_fast_bf16(), "rows": rows,
              "load_1min": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)}}  # fmt: skip
    for r in rows:
        m = r["median_s"]
        print(f"{r['model']}: float32 {m['float32']:.3f} s/step, bfloat16 {m['bfloat16']:.3f} s/step "
              f"(bf16 / fp32 = {r['bf16_over_fp32']})")  # fmt: skip
    print(f"hardware bfloat16 on this CPU: {result['cpu_has_fast_bf16']}; 1-minute load {result['load_1min']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
