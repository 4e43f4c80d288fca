"""Where an ONNX artifact's time goes, per operator type (onnxruntime's own profiler, 1 thread, batch 1).

    python benchmarks/ort_op_profile.py ARTIFACT.onnx [ARTIFACT.onnx ...] [--runs 40]

Prints, per file, the summed kernel time per run of each operator type (e.g. ``QLinearConv`` = the int8
convolutions, ``Conv`` = float convolutions such as the unet2 pre-fill's and gate's depthwise blurs) and the
1-minute load before and after. The profiler's per-node times add a little overhead, so compare the shares
within one file and files of the same run, not these totals with the latency tables.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
from pathlib import Path

import numpy as np


def profile(path: str, runs: int = 40, seed: int = 0) -> dict[str, float]:
    """Milliseconds per run of each operator type of ``path`` on a sparse random input (10 % of pixels kept)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.enable_profiling = True
    so.profile_file_prefix = str(Path(os.environ.get("TMPDIR", "/tmp")) / "edgeae-ortprof")
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    shape = [d if isinstance(d, int) and d > 0 else 1 for d in inp.shape]
    rng = np.random.default_rng(seed)
    x = (rng.random(shape) * (rng.random(shape) < 0.1)).astype(np.float32)
    for _ in range(runs):
        sess.run(None, {inp.name: x})
    trace = Path(sess.end_profiling())
    try:
        events = json.loads(trace.read_text())
    finally:
        trace.unlink(missing_ok=True)
    per_op: collections.Counter[str] = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            per_op[e["args"].get("op_name", "?")] += e["dur"] / 1e3 / runs
    return dict(per_op.most_common())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ort_op_profile", description=__doc__.splitlines()[0])
    p.add_argument("artifacts", nargs="+")
    p.add_argument("--runs", type=int, default=40)
    args = p.parse_args(argv)
    print(f"1-minute load before: {os.getloadavg()[0]:.2f}")
    for path in args.artifacts:
        ops = profile(path, args.runs)
        total = sum(ops.values())
        print(f"{Path(path).name}: {total:.2f} ms per run")
        for op, ms in list(ops.items())[:8]:
            print(f"  {op:<18} {ms:6.2f} ms  {ms / total:5.1%}")
    print(f"1-minute load after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
