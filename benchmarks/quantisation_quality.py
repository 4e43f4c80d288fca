"""What int8 costs in quality: the zoo models in PyTorch against their fp32 and int8 flight artifacts.

1. Reconstruction: the zoo CAE (``--cae``, default ``rover-rgb-gtcae``) in PyTorch, ONNX fp32/int8 and
   TFLite fp32/int8 rebuilds unseen ``rover_rgb`` test crops sampled at each ``--keeps`` fraction (seeded
   uniform masks, :func:`edgeae.reconstruct.reconstruct`): PSNR, SSIM, MAE against the original, and PSNR
   of each runtime's output against PyTorch's (how far the artifact drifts).
2. Anomaly ranking: the zoo VAE (``--vae``, default ``orbital-gray-vae``) scores every 64×64 patch of the
   evaluated ``lroc_nac_craters`` mosaics in each runtime (:func:`edgeae.anomaly.evaluate.score_lroc`);
   AP, random AP, improvement, KS per crater-size feature (:func:`edgeae.anomaly.evaluate.table_rows`),
   plus the Spearman correlation of the scores with PyTorch's and the overlap of the top 1% patches.

Artifacts are taken from ``edgeae/zoo/artifacts/<model>/`` or ``--artifacts/<model>/`` (default
``runs/bench-artifacts``, shared with benchmarks/test_speed.py) and exported there with
:func:`edgeae.export.api.export_model` when missing (minutes of CPU, once).

    .venv/bin/python benchmarks/quantisation_quality.py --out runs/quantisation_quality [--quick]

Writes ``results.json`` and ``results.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgeae.datasets import split_files
from edgeae.imageio import read_image
from edgeae.masks import PRNG_VERSION, make_mask
from edgeae.metrics import compare, psnr
from edgeae.reconstruct import reconstruct

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from any folder
from benchmarks.machine import machine_info
from benchmarks.reconstruction_sweep import centre_crop

log = logging.getLogger("quantisation_quality")
RUNTIMES = ("torch-fp32", "onnx-fp32", "onnx-int8", "tflite-fp32", "tflite-int8")
ZOO_ARTIFACTS = Path(__file__).resolve().parent.parent / "edgeae" / "zoo" / "artifacts"


# ------------------------------------------------------------------------------------------ artifacts
def artifact_path(model: str, runtime: str, folder: Path, build: bool = True) -> Path:
    """The ``<model>.<precision>.<fmt>`` artifact of a zoo model, exported into ``folder/model`` if missing."""
    fmt, precision = runtime.split("-")
    name = f"{model}.{precision}.{fmt}"
    for d in (ZOO_ARTIFACTS / model, folder / model):
        if (d / name).is_file():
            return d / name
    if not build:
        raise FileNotFoundError(f"no artifact {name} under {ZOO_ARTIFACTS / model} or {folder / model}")
    from edgeae.export.api import ExportConfig, export_model

    log.info("exporting %s %s artifacts into %s (once; minutes of CPU)", model, fmt, folder / model)
    export_model(model, folder / model, ExportConfig(formats=(fmt,), latency=False))
    return folder / model / name


def load_runtimes(model: str, runtimes: tuple[str, ...], folder: Path, threads: int | None) -> dict[str, Any]:
    """Predictors per runtime name; artifacts whose source checkpoint is not the zoo weights are refused."""
    from edgeae.firmware_sim.runtime import read_metadata

    from edgeae.metadata import sha256_file
    from edgeae.predictor import load_predictor, resolve_model_path

    want = sha256_file(resolve_model_path(model)).split(":")[-1]
    out: dict[str, Any] = {}
    for rt in runtimes:
        if rt == "torch-fp32":
            out[rt] = load_predictor(model, threads=threads)
            continue
        path = artifact_path(model, rt, folder)
        got = (read_metadata(path).source_checkpoint_hash or "").split(":")[-1]
        if got and got != want:
            raise RuntimeError(
                f"{path} was exported from checkpoint {got[:12]}, but zoo {model} is now {want[:12]}; "
                f"delete {path.parent} (or pass another --artifacts folder) to re-export"
            )
        out[rt] = load_predictor(path, threads=threads)
    return out


# ------------------------------------------------------------------------------------------ 1. CAE
def reconstruction_quality(
    images: list[np.ndarray], predictors: dict[str, Any], keeps: tuple[float, ...], seed: int = 0
) -> dict[str, dict[str, dict[str, float]]]:
    """keep -> runtime -> mean {psnr, ssim, mae, psnr_vs_torch, seconds} over ``images`` (H, W, C) floats.

    The first runtime is the reference for ``psnr_vs_torch`` (absent from its own entry)."""
    ref_name = next(iter(predictors))
    out: dict[str, dict[str, dict[str, float]]] = {}
    for keep in keeps:
        rows: dict[str, list[dict[str, float]]] = {rt: [] for rt in predictors}
        for i, img in enumerate(images):
            known = make_mask(seed + i, img.shape[:2], keep)
            ref = None
            for rt, pred in predictors.items():
                t0 = time.perf_counter()
                rec = reconstruct(img, known, "cae", pred, progress=False)
                dt = time.perf_counter() - t0
                ref = rec if rt == ref_name else ref
                m = compare(img, rec)
                row = {"psnr": m["psnr"], "ssim": m["ssim"], "mae": m["mae"], "seconds": dt}
                if rt != ref_name and ref is not None:
                    row["psnr_vs_torch"] = psnr(ref, rec)
                rows[rt].append(row)
        out[str(keep)] = {rt: {k: float(np.mean([r[k] for r in v])) for k in v[0]} for rt, v in rows.items()}
        log.info("keep %.2f: %s", keep, {rt: round(d["psnr"], 2) for rt, d in out[str(keep)].items()})
    return out


# ------------------------------------------------------------------------------------------ 2. VAE
def score_agreement(ref: np.ndarray, other: np.ndarray, top: float = 0.01) -> dict[str, float]:
    """Spearman ρ of two score vectors and the fraction of the reference's top ``top`` found in the other's."""
    from scipy.stats import spearmanr

    a, b = np.asarray(ref, np.float64), np.asarray(other, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"score vectors differ in length: {a.shape} vs {b.shape}")
    k = max(1, round(top * a.size))
    ta, tb = set(np.argsort(-a, kind="stable")[:k]), set(np.argsort(-b, kind="stable")[:k])
    return {"spearman": float(spearmanr(a, b).statistic), f"top{top:.0%}_overlap": len(ta & tb) / k, "top_k": k}


def anomaly_ranking(predictors: dict[str, Any], root: Path, limit: int | None, seed: int = 0) -> dict[str, Any]:
    """Per runtime: the paper's rows for the VAE score a(x) on LROC craters, and agreement with the first."""
    from edgeae.anomaly.evaluate import score_lroc, table_rows
    from edgeae.anomaly.score import make_scorer

    out: dict[str, Any] = {}
    ref = None
    for rt, pred in predictors.items():
        t0 = time.perf_counter()
        scored = score_lroc(root, make_scorer(pred, keep_latents=True), limit=limit, seed=seed)
        score = scored.methods[scored.primary]
        ref = score if ref is None else ref
        rows = [r for r in table_rows(scored) if r["method"] == scored.primary]
        out[rt] = {
            "rows": rows,
            "agreement": score_agreement(ref, score),
            "n_patches": int(score.size),
            "seconds": time.perf_counter() - t0,
            "files": scored.info["files"],
        }
        log.info("%s: %d patches, Spearman vs first %.4f", rt, score.size, out[rt]["agreement"]["spearman"])
    return out


# ------------------------------------------------------------------------------------------ report
def _f(v: Any, d: int = 3) -> str:
    return "n/a" if v is None else (f"{v:.{d}f}" if isinstance(v, float) else str(v))


def markdown(result: dict[str, Any]) -> str:
    lines: list[str] = []
    if result.get("reconstruction"):
        lines += [
            f"CAE {result['cae']} on {len(result['images'])} unseen rover_rgb/test crops ({result['crop']} px): "
            "mean over images; 'vs torch': PSNR of the runtime's reconstruction against PyTorch's.",
            "",
            "| keep | runtime | PSNR (dB) | SSIM | MAE | PSNR vs torch (dB) | s/image |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
    for keep, by_rt in result.get("reconstruction", {}).items():
        for rt, d in by_rt.items():
            vs = f"{d['psnr_vs_torch']:.1f}" if "psnr_vs_torch" in d else "ref"
            lines.append(
                f"| {keep} | {rt} | {d['psnr']:.2f} | {d['ssim']:.4f} | {d['mae']:.4f} | {vs} | {d['seconds']:.2f} |"
            )
    an = result.get("anomaly")
    if an:
        first = next(iter(an.values()))
        lines += [
            *([""] if lines else []),
            f"VAE {result['vae']} a(x) on lroc_nac_craters ({len(first['files'])} mosaics, {first['n_patches']} "
            "patches of 64×64, stride 32): agreement of the scores with the first runtime, then the paper's columns.",
            "",
            "| runtime | Spearman ρ vs first | top-1% overlap | s (scoring + baselines) |",
            "|---|---:|---:|---:|",
        ]
        for rt, d in an.items():
            ag = d["agreement"]
            lines.append(
                f"| {rt} | {ag['spearman']:.5f} | {ag['top1%_overlap']:.3f} (k={ag['top_k']}) | {d['seconds']:.0f} |"
            )
        lines += [
            "",
            "| feature | runtime | positives | AP | random AP | improvement | KS |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for i, row0 in enumerate(first["rows"]):
            for rt, d in an.items():
                r = d["rows"][i]
                lines.append(
                    f"| {row0['feature']} | {rt} | {r['positives']} | {_f(r['ap'])} | {_f(r['random_ap'], 4)} | "
                    f"{_f(r['improvement'], 2)} | {_f(r['ks'])} |"
                )
    lines += ["", f"`{result['command']}` ({result['seconds_total']:.0f} s, commit {result['machine'].get('commit')})"]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------ CLI
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.quantisation_quality", description=__doc__.splitlines()[0] if __doc__ else None
    )
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--quick", action="store_true", help="2 crops of 256 px, keep 0.1, 2 LROC mosaics")
    p.add_argument("--cae", default="rover-rgb-gtcae")
    p.add_argument("--vae", default="orbital-gray-vae")
    p.add_argument("--runtimes", default=",".join(RUNTIMES), help=f"comma-separated subset of {RUNTIMES}")
    p.add_argument("--artifacts", type=Path, default=Path("runs/bench-artifacts"))
    p.add_argument("--data", help="shared data folder (default $EDGEAE_DATA or ../shared/data)")
    p.add_argument("--crop", type=int, help="centre crop size (default 512, quick 256)")
    p.add_argument("--limit", type=int, help="rover test images (default all, quick 2)")
    p.add_argument("--keeps", help="comma-separated keep fractions (default 0.05,0.1,0.3; quick 0.1)")
    p.add_argument("--lroc-limit", type=int, help="LROC mosaics (default all 10, quick 2)")
    p.add_argument("--skip", choices=("cae", "vae"), help="skip one part")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int)
    return p.parse_args(argv)


def write_outputs(result: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=2, default=float) + "\n")
    (out / "results.md").write_text(markdown(result))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    from edgeae.data import data_root

    runtimes = tuple(r for r in args.runtimes.split(",") if r)
    bad = [r for r in runtimes if r not in RUNTIMES]
    if bad:
        raise SystemExit(f"unknown runtime(s) {bad}; choose from {RUNTIMES}")
    crop = args.crop or (256 if args.quick else 512)
    keeps = (
        tuple(float(k) for k in args.keeps.split(",")) if args.keeps else ((0.1,) if args.quick else (0.05, 0.1, 0.3))
    )
    limit = args.limit or (2 if args.quick else None)
    lroc_limit = args.lroc_limit or (2 if args.quick else None)
    t0 = time.perf_counter()
    result: dict[str, Any] = {
        "benchmark": "quantisation_quality",
        "command": " ".join(["python benchmarks/quantisation_quality.py", *(sys.argv[1:] if argv is None else argv)]),
        "machine": machine_info(),
        "cae": args.cae,
        "vae": args.vae,
        "runtimes": list(runtimes),
        "crop": crop,
        "keeps": list(keeps),
        "seed": args.seed,
        "prng_version": PRNG_VERSION,
        "images": [],
    }
    if args.skip != "cae":
        files = split_files("rover_rgb", "test", root=args.data)[:limit]
        images = [centre_crop(read_image(f, channels=3).pixels, crop) for f in files]
        result["images"] = [f.name for f in files]
        preds = load_runtimes(args.cae, runtimes, args.artifacts, args.threads)
        result["artifacts_cae"] = {rt: str(getattr(p, "source", args.cae)) for rt, p in preds.items()}
        result["reconstruction"] = reconstruction_quality(images, preds, keeps, args.seed)
        result["seconds_total"] = time.perf_counter() - t0
        write_outputs(result, args.out)  # the CAE part survives a cut-off VAE part
    if args.skip != "vae":
        preds = load_runtimes(args.vae, runtimes, args.artifacts, args.threads)
        result["artifacts_vae"] = {rt: str(getattr(p, "source", args.vae)) for rt, p in preds.items()}
        result["anomaly"] = anomaly_ranking(preds, data_root(args.data), lroc_limit, args.seed)
    result["seconds_total"] = time.perf_counter() - t0
    write_outputs(result, args.out)
    print(markdown(result))
    print(f"wrote {args.out}/results.json and results.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
