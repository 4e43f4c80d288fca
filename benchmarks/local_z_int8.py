"""Does the int8 VAE rank as the fp32 one does under ``local z (mu, rec)``? (issue 12, session 17)

    python -m benchmarks.local_z_int8 --out benchmarks/results/local_z_int8 [--strip runs/frames/nac_52224x5064.tif]

For each grey test frame (``orbital_gray`` test split) at strides 32 and 64, and with ``--strip`` the NAC-size strip
``runs/frames/nac_52224x5064.tif`` (stride 64; adds ~3 min; ``python -m benchmarks --only frame`` or ``--only nac
--full`` writes it; a ``--strip`` that is missing is an error, exit 1, as in ``python -m benchmarks --only
local_z_int8 --full``; without ``--strip`` results.md says the strip row was left out), the zoo VAE's shipped int8
artifact (LiteRT by default, ``--runtime onnx`` for the onnxruntime one: ``edgeae scan`` picks one by CPU) and its
fp32 checkpoint (what ``edgeae score`` and the evaluation use) score the same patches (64 px, every patch fully valid,
the scan's tiler).
:func:`edgeae.anomaly.context.local_novelty` of each, with the MAD floored at each latent dimension's resolution (the
default since session 17) and without (the first version): top-k overlap of the int8 ranking with the fp32 one (k = 8,
16, 64, capped at an eighth of the frame's patches) and Spearman over all patches.
Deterministic: exact on a rerun.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np


def held(spec: Any, path: Path, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, 1 + D) float32 rec and μ of every fully valid patch of ``path``, and their (N, 2) corners."""
    from edgeae.scan.pipeline import ScanConfig, tile_image
    from edgeae.scan.scoring import load_scorer

    cfg = ScanConfig(spec, stride=stride, min_valid=1.0, batch_size=256, score="local-z")
    scorer = load_scorer(spec, threads=2, latents=True)
    out, xy = [], []
    for c in tile_image(path, cfg):
        if len(c.xs):
            out.append(np.asarray(scorer(c.pixels), np.float32))
            xy.append(np.stack([c.xs, c.ys], axis=1))
    return np.concatenate(out), np.concatenate(xy)


def agreement(i8: np.ndarray, f32: np.ndarray, xy: np.ndarray) -> dict[str, Any]:
    from scipy.stats import spearmanr

    from edgeae.anomaly.context import local_novelty

    ref = local_novelty(f32[:, 1:], f32[:, 0].astype(np.float64), xy)
    row: dict[str, Any] = {"patches": len(ref)}
    for name, floor in (("resolution floor", True), ("fixed floor only", False)):
        s = local_novelty(i8[:, 1:], i8[:, 0].astype(np.float64), xy, resolution_floor=floor)
        top = {}
        for k in (8, 16, 64):
            if k <= max(8, len(ref) // 8):
                top[f"top{k}"] = len(set(np.argsort(-s)[:k].tolist()) & set(np.argsort(-ref)[:k].tolist()))
        row[name] = {**top, "spearman": round(float(spearmanr(s, ref)[0]), 4)}
    return row


STRIP_HINT = (
    "`python -m benchmarks --only frame` (or `--only nac --full`) writes runs/frames/nac_52224x5064.tif; then "
    "`python -m benchmarks --only local_z_int8 --full`"
)


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        f"int8 `{meta['int8']}` vs fp32 `{meta['fp32']}` under local z (mu, rec); {meta['seconds']:.0f} s.",
        "Overlap of the int8 top k with the fp32 top k (k capped at an eighth of the frame's patches), Spearman over",
        "all patches; MAD floored at each dimension's resolution (default) / at 1e-3 only (the first version).",
        "",
        "| frame | stride | patches | top 8 | top 16 | top 64 | Spearman | without the resolution floor |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        a, b = r["resolution floor"], r["fixed floor only"]

        def cell(d: dict[str, Any], k: int) -> str:
            return f"{d[f'top{k}']}/{k}" if f"top{k}" in d else ""

        old = ", ".join(x for x in (cell(b, 8), cell(b, 16), cell(b, 64)) if x) + f", {b['spearman']}"
        lines.append(
            f"| {r['frame']} | {r['stride']} | {r['patches']} | {cell(a, 8)} | {cell(a, 16)} | {cell(a, 64)} | "
            f"{a['spearman']} | {old} |"
        )
    if meta.get("strip") is None and "strip" in meta:
        lines += ["", f"The NAC-size strip row is left out: this run had no `--strip` ({STRIP_HINT})."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from edgeae.datasets import split_files
    from edgeae.scan.scoring import resolve_model

    ap = argparse.ArgumentParser(prog="python -m benchmarks.local_z_int8", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/local_z_int8"))
    ap.add_argument("--model", default="orbital-gray-vae", help="zoo name with a shipped int8 artifact")
    ap.add_argument("--strip", type=Path, default=None, help="also the NAC-size strip (stride 64)")
    ap.add_argument(
        "--runtime", default="tflite", choices=("tflite", "onnx", "auto"),
        help="which int8 artifact (default tflite: the same numbers on every machine; auto = what edgeae scan "
        "picks on this CPU)",
    )  # fmt: skip
    args = ap.parse_args(argv)
    if args.strip is not None and not args.strip.is_file():
        raise SystemExit(f"--strip {args.strip} is missing: {STRIP_HINT} (or leave out --strip)")
    t0 = time.time()
    s8, s32 = resolve_model(args.model, runtime=args.runtime), resolve_model(args.model, precision="fp32")
    if Path(s8.path).suffix == ".pt":
        raise SystemExit(f"{args.model}: no shipped int8 artifact with passed parity to compare")
    cases = [(f, st) for f in split_files("orbital_gray", "test") for st in (32, 64)]
    if args.strip is not None:
        cases.append((args.strip, 64))
    rows = []
    for path, stride in cases:
        i8, xy = held(s8, path, stride)
        f32, xy2 = held(s32, path, stride)
        if not np.array_equal(xy, xy2):
            raise SystemExit(f"{path}: int8 and fp32 scored different patches")
        rows.append({"frame": path.name, "stride": stride, **agreement(i8, f32, xy)})
        print(json.dumps(rows[-1]), flush=True)
    strip = None if args.strip is None else str(args.strip)
    meta = {"int8": Path(s8.path).name, "fp32": Path(s32.path).name, "seconds": time.time() - t0, "strip": strip}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    (args.out / "results.md").write_text(markdown(rows, meta))
    print(markdown(rows, meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
