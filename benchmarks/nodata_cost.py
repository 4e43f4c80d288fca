"""What the ground's no-data mask costs on a streamed NAC-size strip (session 21).

    python -m benchmarks.nodata_cost --out benchmarks/results/nodata_cost [--rows 52224] [--repeats 3]

``edgeae scan`` streams a strip in bands of 257 rows (256 and the last row of the band above, whose no-data seeds
this band's: here that row's no-data mask; the scan also folds in its flight mask) and masks each with
:func:`edgeae.nodata.nodata_mask` (sides left and right; top and bottom only on the strip's first and last band).
Since session 21 the mask flood-fills only the dark regions that reach a real side or a seed pixel; before, every
dark region of the band was labelled (``cv2.connectedComponents``) and the touching ones filled. This times both on
every band of the benchmark strip (``runs/frames/nac_*.tif``, made by ``python -m benchmarks --only nac`` or here
from the grey test files, seed 0), interleaved band by band, and checks that the masks are identical. The labelling
variant is the pre-session-21 code, kept here as the reference. Reports total CPU seconds per variant (process time,
one thread) and their ratio, with the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np


def labelled_nodata(arr: np.ndarray, edges: list[str], seed: np.ndarray | None) -> np.ndarray:
    """The pre-session-21 :func:`edgeae.nodata.nodata_mask` on uint8 (defaults), labelling every dark region."""
    import cv2

    from edgeae.nodata import DEFAULT_THRESHOLD, NEAR_BORDER

    h, w = arr.shape
    valid = np.ones((h, w), bool)
    dark = arr <= DEFAULT_THRESHOLD * 255
    if not dark.any():
        return valid
    near = {"top": dark[:NEAR_BORDER], "bottom": dark[-NEAR_BORDER:], "left": dark[:, :NEAR_BORDER],
            "right": dark[:, -NEAR_BORDER:]}  # fmt: skip
    if not any(near[s].any() for s in edges) and (seed is None or not seed.any()):
        return valid
    se = np.ones((3, 3), np.uint8)
    d8 = cv2.morphologyEx(cv2.morphologyEx(dark.view(np.uint8), cv2.MORPH_CLOSE, se), cv2.MORPH_OPEN, se)
    n, labels = cv2.connectedComponents(d8, connectivity=8, ltype=cv2.CV_32S)
    if n <= 1:
        return valid
    border = {"top": labels[0], "bottom": labels[-1], "left": labels[:, 0], "right": labels[:, -1]}
    touch = np.zeros(n, bool)
    for s in edges:
        touch |= np.bincount(border[s], minlength=n) >= max(32, 0.3 * border[s].size)
    touch[0] = False
    starts: dict[int, tuple[int, int]] = {}
    for s in edges:
        labs, first = np.unique(border[s], return_index=True)
        for lab, i in zip(labs.tolist(), first.tolist(), strict=True):
            if touch[lab]:
                starts.setdefault(lab, {"top": (i, 0), "bottom": (i, h - 1), "left": (0, i), "right": (w - 1, i)}[s])
    forced: set[int] = set()
    if seed is not None:
        for y in np.flatnonzero(seed.any(axis=1)).tolist():
            xs = np.flatnonzero(seed[y])
            labs, first = np.unique(labels[y, xs], return_index=True)
            for lab, i in zip(labs.tolist(), first.tolist(), strict=True):
                if lab and lab not in forced:
                    forced.add(lab)
                    starts.setdefault(lab, (int(xs[i]), y))
    fill = np.zeros((h + 2, w + 2), np.uint8)
    small = []
    for lab, (x, y) in starts.items():
        if fill[y + 1, x + 1]:
            continue
        area, *_ = cv2.floodFill(d8, fill, (x, y), 0, 0, 0, 8 | cv2.FLOODFILL_MASK_ONLY | (1 << 8))
        if area < 64 and lab not in forced:
            small.append(lab)
    invalid = fill[1:-1, 1:-1].view(bool)
    for lab in small:
        invalid &= labels != lab
    if invalid.any():
        invalid = cv2.dilate(invalid.view(np.uint8), se).view(bool)
    return ~invalid


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.nodata_cost", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--rows", type=int, default=52224, help="strip height (the benchmark strip: 52,224)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    import cv2
    import tifffile

    from benchmarks.frame_costs import _nac_strip
    from benchmarks.machine import machine_info
    from edgeae.nodata import nodata_mask

    cv2.setNumThreads(1)
    strip = _nac_strip(args.rows)
    arr = tifffile.TiffFile(strip).pages[0].asarray()
    h = arr.shape[0]
    load0 = os.getloadavg()[0]
    cpu: dict[str, list[float]] = {"flood fills (now)": [], "labelling (before)": []}
    bands = 0
    for _ in range(args.repeats):
        totals = dict.fromkeys(cpu, 0.0)
        prev_valid: np.ndarray | None = None
        for y0 in range(0, h, 256):
            y1 = min(y0 + 256, h)
            edges = ["left", "right"] + (["top"] if y0 == 0 else []) + (["bottom"] if y1 == h else [])
            if prev_valid is None:
                band, seed = arr[y0:y1], None
            else:
                band = arr[y0 - 1 : y1]
                seed = np.zeros(band.shape, bool)
                seed[0] = ~prev_valid[-1]
            t = time.process_time()
            new = nodata_mask(band, edges=edges, seed=seed)
            totals["flood fills (now)"] += time.process_time() - t
            t = time.process_time()
            old = labelled_nodata(band, edges, seed)
            totals["labelling (before)"] += time.process_time() - t
            if not np.array_equal(new, old):
                raise SystemExit(f"rows {y0}-{y1}: the two masks differ")
            prev_valid = new if seed is None else new[1:]
        for k, v in totals.items():
            cpu[k].append(round(v, 3))
        bands = len(range(0, h, 256))
    res: dict[str, Any] = {"machine": machine_info(1), "strip": str(strip), "shape": list(arr.shape), "bands": bands,
                           "cpu_seconds": cpu, "load_before_after": [round(load0, 2), round(os.getloadavg()[0], 2)],
                           "ratio_median": round(float(np.median(cpu["labelling (before)"]) /
                                                       np.median(cpu["flood fills (now)"])), 2)}  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(res, indent=2))
    md = [f"nodata_mask on the {bands} bands of {strip} ({arr.shape[0]} x {arr.shape[1]}), CPU s per pass "
          f"(one thread; {args.repeats} passes; load {res['load_before_after']}); masks identical", "",
          "| variant | CPU s (median) | passes |", "|---|---:|---|"]  # fmt: skip
    md += [f"| {k} | {np.median(v):.3f} | {v} |" for k, v in cpu.items()]
    md.append(f"\nlabelling / flood fills: {res['ratio_median']}x")
    (args.out / "results.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
