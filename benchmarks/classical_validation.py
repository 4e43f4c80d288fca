"""How ``blend``'s pair of classical fills (edgeae.inpaint.BLEND_OF) was chosen: validation files only, never test.

    python benchmarks/classical_validation.py [--keeps 0.02,0.05,0.1] [--data DIR]

Rover: the ``rover_rgb_v2`` validation files, 512-px centre crops, uniform masks seeded by the file index (the
acceptance benchmark's rule on its test files). Grey: ``benchmarks/grey_rates.py``'s validation crops (the
``orbital_gray_v2`` validation files, centre and upper-left-quarter 512-px crops, seeds 300 + index). Mean PSNR of
each single classical fill and of the pixelwise mean of ``linear`` with ``normconv`` or with ``normconv-wide``, per
set and keep; the best is marked. Prints a markdown table (about 2 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from any folder
from benchmarks.grey_rates import crops as grey_crops

SINGLE = ("normconv", "normconv-wide", "linear", "telea", "ns")
PAIRS = (("normconv", "linear"), ("normconv-wide", "linear"))


def rover_crops(root: Any) -> list[tuple[str, np.ndarray]]:
    from benchmarks.reconstruction_acceptance import centre_crop  # the acceptance's own 512-px crop
    from edgeae.datasets import split_files
    from edgeae.imageio import read_image

    return [
        (p.name, centre_crop(read_image(p, channels=3).pixels, 512)) for p in split_files("rover_rgb_v2", "val", root)
    ]


def measure(items: list[tuple[str, np.ndarray]], seed0: int, keep: float) -> dict[str, float]:
    """Mean PSNR per fill over ``items`` at ``keep``."""
    from edgeae.inpaint import inpaint
    from edgeae.masks import make_mask
    from edgeae.metrics import psnr

    rows = []
    for i, (_, img) in enumerate(items):
        known = make_mask(seed0 + i, img.shape[:2], keep, "uniform")
        fills = {m: inpaint(img, known, m) for m in SINGLE}
        fills |= {f"mean({a},{b})": (fills[a] + fills[b]) * np.float32(0.5) for a, b in PAIRS}
        rows.append({m: psnr(img, f) for m, f in fills.items()})
    return {m: float(np.mean([r[m] for r in rows])) for m in rows[0]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python benchmarks/classical_validation.py", description=__doc__.splitlines()[0])
    ap.add_argument("--keeps", default="0.02,0.05,0.1")
    ap.add_argument("--data", default=None, help="shared data folder (default $EDGEAE_DATA or ../shared/data)")
    args = ap.parse_args(argv)
    from edgeae.data import data_root

    root = data_root(args.data)
    sets = {"rover validation (rover_rgb_v2)": (rover_crops(root), 0), "grey validation (orbital_gray_v2)": (
        grey_crops("val", root), 300)}  # fmt: skip
    cells = {(name, float(k)): measure(items, seed0, float(k)) for name, (items, seed0) in sets.items()
             for k in args.keeps.split(",") if k}  # fmt: skip
    methods = list(next(iter(cells.values())))
    print("| crops | keep | " + " | ".join(methods) + " |")
    print("|---|---:|" + "---:|" * len(methods))
    for (name, keep), mean in cells.items():
        best = max(mean.values())
        vals = [f"**{v:.3f}**" if v == best else f"{v:.3f}" for v in mean.values()]
        print(f"| {name} ({len(sets[name][0])}) | {keep:g} | " + " | ".join(vals) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
