"""One gt-CAE (random 50-99% destroyed per sample) against CAEs trained at one fixed level, on unseen tiles.

Trains (same data, crops, epochs and seed for every model, so the budget is equal) a gt-CAE and one
fixed-level CAE per ``--fixed`` level on the ``rover_rgb`` train split, then evaluates every model, and the
classical Telea inpainting baseline, on 128×128 tiles of the held-out ``rover_rgb`` test split (no no-data,
non-overlapping, up to ``--tiles-per-image`` per image) at each ``--levels`` destroyed fraction. The
reconstruction keeps the known pixels (as ``edgeae reconstruct`` does); MAE and PSNR are per-tile means.

    .venv/bin/python benchmarks/gt_vs_fixed.py --out runs/gt_vs_fixed [--crops 1000 --epochs 4] \
        [--extra-model rover-rgb-gtcae]

With ``--gt-model rover-rgb-gtcae --crops 2000 --val-crops 300 --epochs 5 --seed 1`` the zoo gt-CAE is the gt
model (its budget is checked against these options) and only the fixed-level models are trained.

Writes ``results.json`` and ``results.md`` under ``--out``; trained models under ``--out/models/``
(reused when their ``config.json`` matches, so a rerun only evaluates).
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
from edgeae.masks import make_mask
from edgeae.tiling import extract_tiles, filter_positions, tile_positions

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from any folder
from benchmarks.machine import machine_info

log = logging.getLogger("gt_vs_fixed")
TILE = 128


def load_test_tiles(per_image: int, seed: int, data_root: str | None = None) -> tuple[np.ndarray, list[str]]:
    """(N, 3, 128, 128) float32 tiles of the rover_rgb test split and the file each came from."""
    rng = np.random.default_rng(seed)
    tiles, names = [], []
    for path in split_files("rover_rgb", "test", root=data_root):
        img = read_image(path, channels=3)
        h, w = img.valid.shape
        pos = filter_positions(img.valid, tile_positions(h, w, TILE), TILE, min_valid=1.0)
        if not pos:
            continue
        pick = sorted(rng.choice(len(pos), size=min(per_image, len(pos)), replace=False))
        t = extract_tiles(img.pixels, [pos[i] for i in pick], TILE)
        tiles.append(t.transpose(0, 3, 1, 2))
        names += [path.name] * len(t)
    return np.ascontiguousarray(np.concatenate(tiles), dtype=np.float32), names


def masks_for(n: int, level: float, seed: int) -> np.ndarray:
    """Keep masks (N, 128, 128) for one destroyed fraction: ``make_mask(seed + i, ...)`` for tile i."""
    return np.stack([make_mask(seed + i, (TILE, TILE), 1.0 - level) for i in range(n)])


def predict(checkpoint: Path, x: np.ndarray, batch: int = 64) -> np.ndarray:
    """Run a CAE checkpoint on a (N, C, H, W) batch."""
    from edgeae.predictor import load_predictor

    model = load_predictor(str(checkpoint))
    return np.concatenate([model(x[i : i + batch]) for i in range(0, len(x), batch)])


def telea(x: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """OpenCV Telea inpainting of each masked tile (the classical baseline)."""
    import cv2

    out = np.empty_like(x)
    for i in range(len(x)):
        img8 = np.clip(x[i].transpose(1, 2, 0) * 255 + 0.5, 0, 255).astype(np.uint8)
        holes = (~keep[i]).astype(np.uint8)
        r = cv2.inpaint(img8, holes, 3, cv2.INPAINT_TELEA)
        out[i] = (r.reshape(TILE, TILE, -1).astype(np.float32) / 255.0).transpose(2, 0, 1)
    return out


def score(clean: np.ndarray, recon: np.ndarray, keep: np.ndarray) -> dict[str, float]:
    """Per-tile mean MAE and PSNR, and the pooled error variance, with known pixels restored."""
    recon = np.where(keep[:, None], clean, recon)
    err = (recon - clean).reshape(len(clean), -1)
    mse = np.maximum((err**2).mean(axis=1), 1e-12)
    return {
        "mae": float(np.abs(err).mean(axis=1).mean()),
        "psnr": float((10 * np.log10(1.0 / mse)).mean()),
        "error_variance": float(err.var()),
    }


def train_models(args: argparse.Namespace, root: Path) -> dict[str, Path]:
    """Train (or reuse) the gt-CAE and the fixed-level CAEs with one equal budget."""
    from edgeae.train.cae import CAETrainConfig, train_cae

    specs: dict[str, dict[str, Any]] = {} if args.gt_model else {"gt": {"mode": "gt"}}
    for level in args.fixed:
        specs[f"fixed-{level:g}"] = {"mode": "fixed", "destroy": level}
    out: dict[str, Path] = {}
    for name, kw in specs.items():
        cfg = CAETrainConfig(
            data="rover_rgb",
            out=str(root / "models" / name),
            epochs=args.epochs,
            crops=args.crops,
            val_crops=args.val_crops,
            seed=args.seed,
            threads=args.threads,
            data_root=args.data_root,
            progress=False,
            **kw,
        )
        ck = Path(cfg.out) / "best.pt"
        cfg_file = Path(cfg.out) / "config.json"
        if ck.is_file() and cfg_file.is_file() and CAETrainConfig.from_dict(json.loads(cfg_file.read_text())) == cfg:
            log.info("reusing %s", ck)
        else:
            log.info("training %s: %s", name, kw)
            train_cae(cfg)
        out[name] = ck
    if args.gt_model:
        out = {"gt": check_budget(args.gt_model, args), **out}
    return out


def check_budget(spec: str, args: argparse.Namespace) -> Path:
    """Path of an already trained gt-CAE (zoo name or .pt), refused unless its budget equals this run's."""
    from edgeae.checkpoint import load_checkpoint
    from edgeae.predictor import resolve_model_path

    path = resolve_model_path(spec)
    ck = load_checkpoint(path)
    extra, mask = ck.metadata.extra, ck.metadata.mask
    got = (mask.get("mode"), extra.get("data"), extra.get("crops"), extra.get("seed"), len(ck.history))
    want = ("gt", "rover_rgb", args.crops, args.seed, args.epochs)
    if got != want:
        raise SystemExit(f"{path}: (mode, data, crops, seed, epochs) = {got}, this run trains {want}: unfair")
    log.info("using %s as the gt-CAE (same budget)", path)
    return path


def markdown(results: dict[str, Any]) -> str:
    levels = results["levels"]
    head = "| model | " + " | ".join(f"MAE @{lv:.0%} | PSNR @{lv:.0%}" for lv in levels) + " |"
    lines = [head, "|---|" + "---:|---:|" * len(levels)]
    for name, per in results["scores"].items():
        cells = " | ".join(f"{per[f'{lv:g}']['mae']:.4f} | {per[f'{lv:g}']['psnr']:.2f}" for lv in levels)
        lines.append(f"| {name} | {cells} |")
    lines.append("")
    lines.append(
        f"{results['tiles']} test tiles (128×128, rover_rgb test split, unseen); known pixels kept; "
        f"training budget per model: {results['budget']}."
    )
    for lv, gap in results["gt_gap"].items():
        lines.append(
            f"- at {float(lv):.0%} destroyed: gt-CAE MAE − fixed-{lv} MAE = {gap['mae']:+.4f}, "
            f"PSNR difference {gap['psnr']:+.2f} dB"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gt_vs_fixed", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--crops", type=int, default=1000)
    p.add_argument("--val-crops", type=int, default=200)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fixed", type=float, nargs="+", default=[0.5, 0.9], help="fixed training levels")
    p.add_argument("--levels", type=float, nargs="+", default=None, help="test levels (default: --fixed)")
    p.add_argument("--tiles-per-image", type=int, default=16)
    p.add_argument("--extra-model", action="append", default=[], help="also evaluate a zoo name or .pt")
    p.add_argument("--gt-model", default=None, help="use this gt-CAE (zoo name or .pt) trained with the same budget")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data-root", default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    levels = args.levels or args.fixed
    t0 = time.perf_counter()
    models: dict[str, Any] = dict(train_models(args, args.out))
    for spec in args.extra_model:
        models[f"{spec} (extra)"] = spec
    tiles, names = load_test_tiles(args.tiles_per_image, args.seed, args.data_root)
    log.info("%d test tiles from %d files", len(tiles), len(set(names)))
    scores: dict[str, dict[str, dict[str, float]]] = {}
    for li, level in enumerate(levels):
        keep = masks_for(len(tiles), level, seed=1_000_000 * (li + 1) + args.seed)
        masked = tiles * keep[:, None]
        scores.setdefault("telea (classical)", {})[f"{level:g}"] = score(tiles, telea(masked, keep), keep)
        for name, ck in models.items():
            scores.setdefault(name, {})[f"{level:g}"] = score(tiles, predict(ck, masked), keep)
    gap = {}
    for level in levels:
        fixed = scores.get(f"fixed-{level:g}")
        if fixed:
            g, f = scores["gt"][f"{level:g}"], fixed[f"{level:g}"]
            gap[f"{level:g}"] = {"mae": g["mae"] - f["mae"], "psnr": g["psnr"] - f["psnr"]}
    results = {
        "levels": levels,
        "tiles": len(tiles),
        "tile_files": sorted(set(names)),
        "budget": f"{args.crops} crops × {args.epochs} epochs, seed {args.seed}",
        "scores": scores,
        "gt_gap": gap,
        "command": " ".join([sys.executable.split("/")[-1], *sys.argv]),
        "seconds": round(time.perf_counter() - t0, 1),
        "machine": machine_info(args.threads),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "results.md").write_text(markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
