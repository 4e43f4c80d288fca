"""How the ``local z (mu)`` candidate was chosen (issue 12, session 16): validation on the two λ mosaics.

    python -m benchmarks.local_z_validation --out benchmarks/results/local_z_validation [--no-hirise] [--model M]

:func:`edgeae.anomaly.context.local_z` scores a patch by how far its VAE latent μ stands from those of the patches
around it on its own frame. Its radius, which neighbours it leaves out and how it is combined were chosen here, on
the two LROC NAC mosaics kept apart for λ (:data:`edgeae.train.vae.LAMBDA_FILES`; no reported figure uses them),
64-px patches at stride 32 as in the anomaly benchmark, AP over random of craters ≥ 32 px (the chosen metric) and
≥ 64 px, next to the evaluation's own methods on the same patches (baselines fitted on these patches, as there):

- radius 64 / 96 / 128 px, leaving out only the patch itself or also its overlapping (32 px) or touching (64 px)
  neighbours;
- rank sums of local z with the isolation forest, the kNN and patch std;
- the MAD floor (1e-3, 1e-2, 0.1) and μ pre-scaled by a robust z over all patches or within each mosaic;
- a coarser grid: every 2nd grid point (stride 64), radius 96 / 128 / 192 px (why the radius is at least 2 steps);
- (session 45) μ from windows of 32 / 128 / 256 px at the same centres, alone, concatenated or averaged, and
  neighbour distances (k-th nearest μ within a radius, the local outlier factor) in place of the z score, and μ
  over each patch's 8 rotations and flips.

Then the weight of the reconstruction error in :func:`edgeae.anomaly.context.local_novelty` (the shipped
candidate ``local z (mu, rec)``), chosen as λ is: the AP above for each weight, and on the validation frames of
``benchmarks.planted_blocks --split val`` whether the planted bright, checkerboard and noise blocks all rank in
the top 2 % of the frame's patches. Then (unless ``--no-hirise``) the carry-over the docs quote: crater vs other
ROC AUC on all 2,017 HiRISE dev crops, the anomaly benchmark's seed-0 sample of 400 and the other crops, of the
candidate, of local z of μ alone, of ``frame-z kNN (mu)`` and of the default. Fixed seeds: exact on a rerun.
About 3 min on 2 cores.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

REFERENCES = (
    "default (multi-scale z)",
    "vae a(x)",
    "isolation forest (mu)",
    "kNN (mu)",
    "patch std",
    "RX (patch features)",
    "frame-z kNN (mu)",
)
FEATURES = ("craters >= 32 px", "craters >= 64 px")
REC_WEIGHTS = (0.0, 0.25, 0.5, 1.0)  # weight of the error's local z in local_novelty (0: μ alone)


def _per_frame(fn: Any, frames: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    return np.concatenate([fn(mu, xy) for mu, xy in frames])


def variants(frames: list[tuple[np.ndarray, np.ndarray]], methods: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every local z variant of the study, per patch (frames: per mosaic (μ, corners))."""
    from scipy.stats import rankdata

    from edgeae.anomaly.baselines import robust_z
    from edgeae.anomaly.context import local_z

    out: dict[str, np.ndarray] = {}
    for radius, exclude in ((96, 0), (64, 32), (96, 32), (128, 32), (96, 64)):
        name = f"local z, radius {radius} px, leaving out {'the patch' if exclude == 0 else f'<= {exclude} px'}"
        out[name] = _per_frame(lambda m, c, r=radius, e=exclude: local_z(m, c, radius=r, exclude=e), frames)
    chosen = out["local z, radius 96 px, leaving out the patch"]

    def rank(v: np.ndarray) -> np.ndarray:
        return np.asarray(rankdata(v), dtype=np.float64) / len(v)

    for ref in ("isolation forest (mu)", "kNN (mu)", "patch std"):
        out[f"rank sum: local z + {ref}"] = rank(chosen) + rank(methods[ref])
    for floor in (1e-2, 0.1):
        out[f"local z, MAD floor {floor:g}"] = _per_frame(lambda m, c, f=floor: local_z(m, c, floor=f), frames)
    pooled = robust_z(np.concatenate([m for m, _ in frames]))
    bounds = np.cumsum([0] + [len(m) for m, _ in frames])
    pre = [(pooled[a:b], c) for (a, b), (_, c) in zip(itertools.pairwise(bounds), frames, strict=True)]
    out["local z of μ robust-z scaled over all patches"] = _per_frame(local_z, pre)
    out["local z of μ robust-z scaled within each mosaic"] = _per_frame(lambda m, c: local_z(robust_z(m), c), frames)
    return out


def coarse_grid(frames: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Every 2nd grid point (stride 64): the kept patches and local z at radius 96 / 128 / 192 px."""
    from edgeae.anomaly.context import local_z

    keep = np.concatenate([(c % 64 == 0).all(axis=1) for _, c in frames])
    sub = [(m[(c % 64 == 0).all(axis=1)], c[(c % 64 == 0).all(axis=1)]) for m, c in frames]
    out = {
        f"stride 64, radius {r} px": _per_frame(lambda m, c, r=r: local_z(m, c, radius=r), sub) for r in (96, 128, 192)
    }
    return keep, out


def window_and_neighbour_variants(
    scored: Any, scorer: Any, frames: list[tuple[np.ndarray, np.ndarray]]
) -> dict[str, np.ndarray]:
    """Session 45 (tried, not adopted): local z of μ from windows of 32 / 128 / 256 px centred on each patch (the
    multi-window scorer's windows, resampled to the model's 64 px), alone, concatenated with the 64-px μ or averaged
    over the windows; and two ways of comparing a patch with its neighbours other than a z score: the distance to
    its k-th nearest neighbour in μ (μ robust-z scaled over the frame) among the patches within 96 / 192 px, and the
    local outlier factor of μ over the whole frame (scikit-learn, k = 20); and μ of each patch's 8 rotations and
    flips (``edgeae.anomaly.views``) averaged, concatenated, or each view's local z averaged."""
    from sklearn.neighbors import LocalOutlierFactor

    from edgeae.anomaly.baselines import robust_z
    from edgeae.anomaly.context import local_z
    from edgeae.anomaly.multiscale import MultiScale, score_windows
    from edgeae.anomaly.views import VIEWS, dihedral

    ms = MultiScale(windows=(32, 128, 256))
    mus = [
        {64: m, **{w: np.asarray(v["mu"]) for w, v in score_windows(img, scorer, r, ms, r.patch).items()}}
        for img, r, (m, _) in zip(scored.images, scored.patch_results, frames, strict=True)
    ]
    xys = [c for _, c in frames]

    def lz(m: np.ndarray, c: np.ndarray) -> np.ndarray:
        return local_z(m, c) / np.sqrt(m.shape[1])

    out: dict[str, np.ndarray] = {}
    for w in (32, 128, 256):
        out[f"local z of the {w}-px window's μ"] = np.concatenate([lz(m[w], c) for m, c in zip(mus, xys, strict=True)])
    for ws in ((32, 64), (64, 128), (32, 64, 128), (32, 64, 128, 256)):
        tag = "/".join(map(str, ws))
        out[f"local z of μ concatenated over windows {tag}"] = np.concatenate(
            [lz(np.concatenate([m[w] for w in ws], axis=1), c) for m, c in zip(mus, xys, strict=True)]
        )
        out[f"mean over windows {tag} of local z of μ"] = np.concatenate(
            [np.mean([lz(m[w], c) for w in ws], axis=0) for m, c in zip(mus, xys, strict=True)]
        )

    def local_knn(m: np.ndarray, c: np.ndarray, radius: float, k: int) -> np.ndarray:
        z, res = robust_z(np.asarray(m, np.float64)), np.zeros(len(m))
        for i in range(len(m)):
            near = np.flatnonzero((np.abs(c - c[i]) <= radius).all(axis=1))
            d = np.sort(np.linalg.norm(z[near[near != i]] - z[i], axis=1))
            res[i] = d[min(k, len(d)) - 1] if len(d) else 0.0
        return res

    for radius in (96, 192):
        for k in (1, 3, 8):
            out[f"distance to the nearest μ within {radius} px, k = {k}"] = np.concatenate(
                [local_knn(m, c, radius, k) for m, c in frames]
            )
    viewed = []  # (V, N, D): μ of each patch's 8 rotations and flips
    for img, r in zip(scored.images, scored.patch_results, strict=True):
        p = r.patch
        tiles = np.stack([img[y : y + p, x : x + p] for x, y in zip(r.x, r.y, strict=True)]).transpose(0, 3, 1, 2)
        viewed.append(np.stack([scorer(np.ascontiguousarray(dihedral(tiles, g)))["mu"] for g in range(VIEWS)]))
    for name, fn in (
        ("local z of μ averaged over the 8 views", lambda m, c: lz(m.mean(axis=0), c)),
        ("local z of μ concatenated over the 8 views", lambda m, c: lz(np.concatenate(list(m), axis=1), c)),
        ("mean over the 8 views of local z of μ", lambda m, c: np.mean([lz(v, c) for v in m], axis=0)),
    ):
        out[name] = np.concatenate([fn(m, c) for m, c in zip(viewed, xys, strict=True)])
    out["local outlier factor of μ over the frame (k = 20)"] = np.concatenate(
        [-LocalOutlierFactor(n_neighbors=20).fit(robust_z(np.asarray(m, np.float64))).negative_outlier_factor_
         for m, _ in frames]
    )  # fmt: skip
    return out


def planted_rows(model: str) -> list[dict[str, Any]]:
    """Per validation frame of ``benchmarks.planted_blocks --split val`` and error weight: how many grid patches
    score above each planted block (bright, checkerboard, noise) under local_novelty, the block in place of the
    patch nearest the frame centre."""
    from benchmarks.planted_blocks import grid_tiles, local_z_above, vae_terms, val_frames
    from edgeae.anomaly.planted import BLOCKS, TOP_FRACTION, block
    from edgeae.data import data_root
    from edgeae.predictor import load_predictor

    predict = load_predictor(model, threads=2)
    b_rec, _, b_mu = vae_terms(predict, np.stack([block(k, 64)[None] for k in BLOCKS]))
    rows = []
    for f in val_frames(data_root()):
        pos, tiles = grid_tiles(f)
        rec, _, mu = vae_terms(predict, tiles)
        xy = np.array([(x, y) for y, x in pos], dtype=np.float64)
        for wgt in REC_WEIGHTS:
            above = local_z_above(mu, rec, xy, b_mu, b_rec, rec_weight=wgt)
            found = all(a / len(pos) < TOP_FRACTION for a in above)
            rows.append({"frame": f.name, "n": len(pos), "weight": wgt, "above": above, "all_found": found})
    return rows


def hirise_rows(model: str) -> list[dict[str, Any]]:
    """Crater vs other ROC AUC on all HiRISE dev crops of local z and of frame-z kNN (a crop: its highest patch)."""
    from benchmarks.hirise_dev import crater_auc_row, dev_crops
    from edgeae.anomaly import evaluate as ev
    from edgeae.anomaly.context import local_z
    from edgeae.anomaly.score import make_scorer
    from edgeae.data import data_root
    from edgeae.predictor import load_predictor

    scorer = make_scorer(load_predictor(model, threads=2), keep_latents=True)
    scored = ev.score_hirise(data_root(), scorer, limit=None, seed=0)
    cls = np.array([c for _, c in dev_crops()[1]])  # the same crops in the same order as score_hirise's
    rows = [crater_auc_row(m, scored.methods[m], cls) for m in (ev.LOCAL_Z, ev.FRAME_Z_KNN, ev.DEFAULT)]
    mu_only = np.concatenate([local_z(r.extras["mu"], r.xy) for r in scored.patch_results])
    bounds = np.cumsum([0] + [len(r) for r in scored.patch_results])
    rows.append(crater_auc_row("local z (mu) alone", np.maximum.reduceat(mu_only, bounds[:-1]), cls))
    return rows


def main(argv: list[str] | None = None) -> int:
    from edgeae.anomaly import evaluate as ev
    from edgeae.anomaly.context import local_novelty
    from edgeae.anomaly.metrics import ranking_summary
    from edgeae.anomaly.score import make_scorer
    from edgeae.data import data_root
    from edgeae.predictor import load_predictor
    from edgeae.train.vae import LAMBDA_FILES

    ap = argparse.ArgumentParser(prog="python -m benchmarks.local_z_validation", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/local_z_validation"))
    ap.add_argument("--model", default="orbital-gray-vae", help="grey VAE: zoo name or checkpoint")
    ap.add_argument("--no-hirise", action="store_true", help="skip the HiRISE carry-over (about 2 of the 3 min)")
    args = ap.parse_args(argv)
    t0 = time.time()
    root = data_root()
    scorer = make_scorer(load_predictor(args.model, threads=2), keep_latents=True)
    scored = ev.score_lroc(root, scorer, seed=0, files=[root / f for f in LAMBDA_FILES])
    frames = [(r.extras["mu"], r.xy) for r in scored.patch_results]
    recs = [r.extras["rec"] for r in scored.patch_results]
    methods = {m: scored.methods[m] for m in REFERENCES}
    rows: list[dict[str, Any]] = []

    def add(group: str, name: str, score: np.ndarray, keep: np.ndarray | None = None) -> None:
        row: dict[str, Any] = {"group": group, "method": name}
        for feat in FEATURES:
            pos = scored.features[feat][0]
            s = ranking_summary(score, pos if keep is None else pos[keep])
            row[feat] = {"ap_over_random": round(float(s["improvement"]), 3), "auc": round(float(s["auc"]), 3)}
        rows.append(row)

    for name, v in methods.items():
        add("evaluation's methods", name, v)
    for name, v in variants(frames, methods).items():
        add("local z variants", name, v)
    for w in REC_WEIGHTS:
        v = np.concatenate([local_novelty(m, r, c, rec_weight=w) for (m, c), r in zip(frames, recs, strict=True)])
        add("error weight (local z (mu, rec))", f"max(local z(mu) / sqrt D, {w:g} x local z(log rec))", v)
    for name, v in window_and_neighbour_variants(scored, scorer, frames).items():
        add("window sizes and neighbours (session 45)", name, v)
    keep, coarse = coarse_grid(frames)
    for name, v in coarse.items():
        add("every 2nd grid point", name, v, keep)
    for name in ("isolation forest (mu)", "kNN (mu)", "patch std"):  # fitted on all patches, ranked on the subset
        add("every 2nd grid point", f"{name} (fitted on every patch)", methods[name][keep], keep)
    planted = planted_rows(args.model)
    hirise = [] if args.no_hirise else hirise_rows(args.model)
    args.out.mkdir(parents=True, exist_ok=True)
    res = {"model": args.model, "lambda_mosaics": list(LAMBDA_FILES), "rows": rows, "planted_val": planted,
           "hirise_dev_crater_auc": hirise,
           "seconds": round(time.time() - t0, 1)}  # fmt: skip
    (args.out / "results.json").write_text(json.dumps(res, indent=2) + "\n")
    md = [
        "Validation: the two λ mosaics (" + ", ".join(Path(f).name for f in LAMBDA_FILES) + "), 64-px patches at "
        f"stride 32, AP over random (ROC AUC); model `{args.model}`. `python -m benchmarks.local_z_validation`.",
        "",
        "| group | method | craters ≥ 32 px | craters ≥ 64 px |",
        "|---|---|---:|---:|",
    ]
    for r in rows:
        cells = [f"{r[f]['ap_over_random']:.2f}× ({r[f]['auc']:.3f})" for f in FEATURES]
        md.append(f"| {r['group']} | {r['method']} | " + " | ".join(cells) + " |")
    frames_ = list(dict.fromkeys(r["frame"] for r in planted))
    sizes = {r["frame"]: r["n"] for r in planted}
    md += ["", "Planted bright / checkerboard / noise blocks on the validation frames of `benchmarks.planted_blocks "
           "--split val` (patches scoring above each; found: fewer than 2 % above all three):", "",
           "| error weight | frames with all 3 found | " + " | ".join(f"{f[:24]} (n={sizes[f]})" for f in frames_)
           + " |",
           "|---:|---:|" + "---:|" * len(frames_)]  # fmt: skip
    for w in REC_WEIGHTS:
        sub = [r for r in planted if r["weight"] == w]
        cells = [" / ".join(str(a) for a in r["above"]) for r in sub]
        md.append(f"| {w:g} | {sum(r['all_found'] for r in sub)}/{len(sub)} | " + " | ".join(cells) + " |")
    if hirise:
        md += ["", "HiRISE dev crops, crater vs other ROC AUC (a crop scored by its highest patch):", "",
               "| method | all | seed-0 sample of 400 | other crops |", "|---|---:|---:|---:|"]  # fmt: skip
        md += [f"| {r['method']} | {r['all']} | {r['sample 400']} | {r['other']} |" for r in hirise]
    (args.out / "results.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
