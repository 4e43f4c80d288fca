"""Whole-image reconstruction on unseen rover frames: the zoo CAE against classical inpainting.

1. Acceptance (issue 2): every image of the ``rover_rgb`` test split (never trained on, never used for model
   selection), sampled at ``--keep`` (default 0.1, i.e. 90% destroyed) with a seeded uniform mask, rebuilt
   by each of ``--methods``; PSNR, SSIM, MAE, error variance and time per image and averaged.
2. Sweep (the gt-CAE paper's Fig. 4 on our data): MAE and error variance from 50% to 99% destroyed for
   ``--sweep-methods``.

Exactly what ``edgeae reconstruct`` does (same mask, tiling, blending, known pixels kept), per whole image.

    .venv/bin/python benchmarks/reconstruction_sweep.py --out runs/reconstruction_sweep [--crop 512]

Writes ``results.json`` (rewritten after every image), ``results.md`` and ``sweep.png`` under ``--out``.
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
from edgeae.reconstruct import run_method

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from any folder
from benchmarks.crops import centre_crop as centre_crop
from benchmarks.machine import machine_info

log = logging.getLogger("reconstruction_sweep")
KEYS = ("psnr", "ssim", "mae", "error_variance", "mae_destroyed", "seconds")


def _record(res: Any) -> dict[str, float]:
    d = {k: float(res.metrics[k]) for k in KEYS if k in res.metrics}
    d["seconds"] = float(res.seconds)
    return d


def _mean(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]} if rows else {}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.reconstruction_sweep", description=__doc__.splitlines()[0] if __doc__ else None
    )
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--model", default="rover-rgb-gtcae", help="zoo name or checkpoint for the CAE")
    p.add_argument("--dataset", default="rover_rgb")
    p.add_argument("--split", default="test")
    p.add_argument("--data", help="shared data folder (default $EDGEAE_DATA or ../shared/data)")
    p.add_argument("--keep", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pattern", default="uniform")
    p.add_argument("--methods", default="cae,telea,ns,linear,nearest")
    p.add_argument("--levels", default="0.5,0.6,0.7,0.8,0.9,0.95,0.99", help="destroyed fractions")
    p.add_argument("--sweep-methods", default="cae,telea", help="methods for the sweep ('' to skip)")
    p.add_argument("--crop", type=int, default=0, help="centre crop to at most N×N pixels (0: whole image)")
    p.add_argument("--threads", type=int, help="torch threads for the CAE")
    p.add_argument(
        "--reuse", type=Path, nargs="*",
        help="earlier results.json files: copy their per-image results (same data, keep, seed, pattern, crop; "
        "CAE only from the same model file) instead of recomputing them",
    )  # fmt: skip
    return p.parse_args(argv)


def plot(sweep: dict[str, Any], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for method, by_level in sweep.items():
        levels = sorted(by_level, key=float)
        x = [100 * float(v) for v in levels]
        axes[0].plot(x, [100 * by_level[v]["mean"]["mae"] for v in levels], "o-", label=method)
        axes[1].plot(x, [by_level[v]["mean"]["error_variance"] for v in levels], "o-", label=method)
    axes[0].set_ylabel("MAE (% of full scale)")
    axes[1].set_ylabel("error variance")
    for ax in axes:
        ax.set_xlabel("pixels destroyed (%)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def markdown(result: dict[str, Any]) -> str:
    acc = result["acceptance"]
    lines = [
        f"Acceptance: keep {result['keep']} ({100 * (1 - result['keep']):.0f}% destroyed), "
        f"{len(result['images'])} unseen {result['dataset']}/{result['split']} images, model {result['model']}",
        "",
        "| method | PSNR (dB) | SSIM | MAE | error variance | time (s) |",
        "|---|---|---|---|---|---|",
    ]
    for method, d in acc["mean"].items():
        lines.append(
            f"| {method} | {d['psnr']:.2f} | {d['ssim']:.4f} | {d['mae']:.4f} | {d['error_variance']:.2e} | "
            f"{d['seconds']:.2f} |"
        )
    if "cae_wins" in acc:
        lines += ["", f"CAE PSNR above the best classical method on {acc['cae_wins']} of {acc['n_images']} images."]
    if result.get("sweep"):
        lines += ["", "| destroyed | " + " | ".join(f"{m} MAE | {m} err var" for m in result["sweep"]) + " |"]
        lines.append("|---" * (1 + 2 * len(result["sweep"])) + "|")
        levels = result["levels"]
        for lv in levels:
            cells = []
            for by_level in result["sweep"].values():
                d = by_level.get(str(lv), {}).get("mean", {})
                cells += [f"{d.get('mae', float('nan')):.4f}", f"{d.get('error_variance', float('nan')):.2e}"]
            lines.append(f"| {100 * lv:.0f}% | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    methods = [m for m in args.methods.split(",") if m]
    sweep_methods = [m for m in args.sweep_methods.split(",") if m]
    levels = [float(v) for v in args.levels.split(",") if v]
    predictor, model_hash = None, None
    if "cae" in methods or "cae" in sweep_methods:
        from edgeae.predictor import load_predictor

        predictor = load_predictor(args.model, threads=args.threads)
        from edgeae.metadata import sha256_file
        from edgeae.predictor import resolve_model_path

        model_hash = sha256_file(resolve_model_path(args.model))
    files = split_files(args.dataset, args.split, root=args.data)
    olds = _reusable(args, model_hash)
    result: dict[str, Any] = {
        "benchmark": "reconstruction_sweep",
        "command": " ".join(sys.argv),
        "machine": machine_info(),
        "model": args.model,
        "model_sha256": model_hash,
        "dataset": args.dataset,
        "split": args.split,
        "keep": args.keep,
        "seed": args.seed,
        "pattern": args.pattern,
        "prng_version": PRNG_VERSION,
        "crop": args.crop,
        "levels": levels,
        "images": [],
        "acceptance": {"per_image": {}, "mean": {}},
        "sweep": {m: {} for m in sweep_methods},
    }
    t_start = time.perf_counter()
    channels = int(predictor.metadata.channels) if predictor is not None else 3
    for i, path in enumerate(files):
        img = centre_crop(read_image(path, channels=channels).pixels, args.crop)
        name = path.name
        result["images"].append({"name": name, "shape": list(img.shape)})
        known = make_mask(args.seed + i, img.shape[:2], args.keep, args.pattern)
        per: dict[str, Any] = {}
        for m in methods:
            prev = _previous(olds, m, name, None)
            if prev is not None:
                per[m] = prev
                continue
            per[m] = _record(run_method(img, known, m, predictor if m == "cae" else None, progress=False))
            log.info("%s keep %.2f %-8s PSNR %.2f MAE %.4f (%.1f s)", name, args.keep, m, per[m]["psnr"],
                     per[m]["mae"], per[m]["seconds"])  # fmt: skip
        result["acceptance"]["per_image"][name] = per
        for lv in levels:
            k = make_mask(args.seed + i, img.shape[:2], 1.0 - lv, args.pattern)
            for m in sweep_methods:
                prev = _previous(olds, m, name, lv)
                if prev is not None:
                    result["sweep"][m].setdefault(str(lv), {"per_image": {}})["per_image"][name] = prev
                    continue
                r = _record(run_method(img, k, m, predictor if m == "cae" else None, progress=False))
                result["sweep"][m].setdefault(str(lv), {"per_image": {}})["per_image"][name] = r
            log.info("%s destroyed %.2f done", name, lv)
        _summarise(result, methods)
        (args.out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    result["seconds_total"] = time.perf_counter() - t_start
    (args.out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "results.md").write_text(markdown(result))
    if sweep_methods:
        where = f"{args.dataset}/{args.split}, " + (f"centre {args.crop} px crops" if args.crop else "whole images")
        plot(result["sweep"], args.out / "sweep.png", f"Reconstruction error vs destroyed fraction ({where})")
    print(markdown(result))
    print(f"wrote {args.out / 'results.json'}, results.md, sweep.png in {result['seconds_total']:.0f} s")
    return 0


def _reusable(args: argparse.Namespace, model_hash: str | None) -> list[dict[str, Any]]:
    """Earlier results made with the same settings; CAE results only from the same model file."""
    olds = []
    for path in args.reuse or []:
        if not path.is_file():
            log.warning("not reusing %s: no such file", path)
            continue
        old: dict[str, Any] = json.loads(path.read_text())
        same = {k: getattr(args, k) for k in ("dataset", "split", "keep", "seed", "pattern", "crop")}
        if any(old.get(k) != v for k, v in same.items()):
            log.warning("not reusing %s: made with other settings", path)
            continue
        old["_cae_ok"] = model_hash is not None and old.get("model_sha256") == model_hash
        olds.append(old)
    return olds


def _previous(olds: list[dict[str, Any]], method: str, name: str, level: float | None) -> Any:
    """A reusable per-image result of ``method`` (acceptance when ``level`` is None, else the sweep)."""
    for old in olds:
        if method == "cae" and not old["_cae_ok"]:
            continue
        if level is None:
            prev = old.get("acceptance", {}).get("per_image", {}).get(name, {}).get(method)
        else:
            prev = old.get("sweep", {}).get(method, {}).get(str(level), {}).get("per_image", {}).get(name)
        if prev is not None:
            return prev
    return None


def _summarise(result: dict[str, Any], methods: list[str]) -> None:
    acc = result["acceptance"]
    per_image = acc["per_image"]
    acc["mean"] = {m: _mean([per_image[n][m] for n in per_image]) for m in methods}
    acc["n_images"] = len(per_image)
    classical = [m for m in methods if m != "cae"]
    if "cae" in methods and classical:
        acc["cae_wins"] = sum(
            per_image[n]["cae"]["psnr"] > max(per_image[n][m]["psnr"] for m in classical) for n in per_image
        )
        best = max(classical, key=lambda m: acc["mean"][m]["psnr"])
        acc["best_classical"] = best
        acc["cae_minus_best_classical_psnr_db"] = acc["mean"]["cae"]["psnr"] - acc["mean"][best]["psnr"]
    for by_level in result["sweep"].values():
        for entry in by_level.values():
            entry["mean"] = _mean(list(entry["per_image"].values()))


if __name__ == "__main__":
    sys.exit(main())
