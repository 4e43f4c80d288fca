"""CPU cost of the flight loop's sampling step on a NAC-size frame, per mask pattern (one thread, no model).

    python benchmarks/sampling_cost.py [--rounds 2]

For every 256-row strip of a 52,224 × 5,064 frame at keep 0.02 (the orbital mission): the mask rows and the
kept samples in mask order, as the flight loop does it (``edgeae.masks.mask_rows_and_indices`` + ``np.take``
+ per-row counts), and as it did before (a bool mask, ``samples[mask]``, ``mask.sum(axis=1)``). Process CPU
seconds per frame, so the figures hold on a loaded machine; the 1-minute load is printed anyway.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from any folder

H, W, KEEP, STRIP = 52224, 5064, 0.02, 256


def cpu_per_frame(pattern: str, indexed: bool) -> float:
    from edgeae.masks import make_mask_rows, mask_rows_and_indices

    samples = np.random.default_rng(0).integers(0, 256, (STRIP, W, 1), dtype=np.uint8)
    out = np.empty((STRIP, W), bool)
    t = time.process_time()
    for r0 in range(0, H, STRIP):
        r1 = min(H, r0 + STRIP)
        if indexed:
            _, idx = mask_rows_and_indices(1009, (H, W), KEEP, pattern, r0, r1, out=out[: r1 - r0])
            np.take(samples[: r1 - r0].reshape(-1, 1), idx, axis=0)
            np.bincount(idx // W, minlength=r1 - r0)
        else:
            m = make_mask_rows(1009, (H, W), KEEP, pattern, r0, r1, out=out[: r1 - r0])
            _ = samples[: r1 - r0][m]
            m.sum(axis=1)
    return time.process_time() - t


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.sampling_cost", description=(__doc__ or "").splitlines()[0])
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args(argv)
    print(f"1-minute load before: {os.getloadavg()[0]:.2f}")
    print("| pattern | bool mask + samples[mask] (CPU s per frame) | indices + take (CPU s per frame) |")
    print("|---|---|---|")
    for _ in range(args.rounds):
        for pattern in ("uniform", "jittered"):
            print(f"| {pattern} | {cpu_per_frame(pattern, False):.2f} | {cpu_per_frame(pattern, True):.2f} |")
    print(f"1-minute load after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
