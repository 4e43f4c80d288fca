"""How the ``two-context kNN (mu)`` ranking holds when each patch is measured against a sample of the set.

    python -m benchmarks.context_bank --out benchmarks/results/context_bank [--model M] [--views 8] [--limit N]

:func:`edgeae.anomaly.baselines.context_knn` compares every patch with every other patch of the set it ranks
(O(N²)); a set of more than :data:`~edgeae.anomaly.baselines.CONTEXT_BANK` patches is instead measured against a
uniform sample (its reference bank) of that many of its own patches. This study scores the HiRISE development
split once (every dev crop, the shipped grey VAE, 8 rotations/flips per patch, crop and product contexts, exactly
as ``edgeae evaluate --views 8`` does) and ranks it with the exact kNN and with banks of several sizes (seeds 0-2),
each timed; and, as references, with the kNN restricted to each product's own crops, with each product's crops
as one frame (no crop context: what scanning whole product files, one frame each, gives), and against a bank made
of the VAE's 21 training products (their class-0 and class-6 crops, never evaluated), scaled the same way.
Crater (class 1) vs other (class 0), a crop's score is its highest patch; ROC AUC and AP over random.

Fixed seeds: quality numbers are exact on a rerun; timings are one run each on the machine recorded.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_MODEL = "edgeae/zoo/artifacts/orbital-gray-vae/orbital-gray-vae.int8.onnx"  # 3-4x faster, same ranking
BANKS = (3_000, 6_000, 12_000, 25_000)
SEEDS = (0, 1, 2)


def _latents(model: str, views: int, crops: list[str]) -> list[np.ndarray]:
    """(N_i, V, D) μ of every crop's patches (64 px, stride 41), as the evaluation scores them."""
    from edgeae.anomaly.evaluate import HIRISE_STRIDE, default_scorer, score_frame
    from edgeae.anomaly.score import make_scorer
    from edgeae.data import data_root
    from edgeae.imageio import read_image
    from edgeae.predictor import load_predictor

    folder = data_root() / "hirise_landmarks" / "images"
    scorer = make_scorer(load_predictor(model, threads=2), keep_latents=True, views=views)
    ms = default_scorer("hirise_landmarks")
    out = []
    t0 = time.perf_counter()
    for i, f in enumerate(crops):
        img = read_image(folder / f, channels=1)  # what the evaluation's HIRISE scoring reads (eval_datasets)
        pix, valid = img.pixels, img.valid
        r = score_frame(pix, valid, scorer, ms, 64, HIRISE_STRIDE, batch=256, name=f).result
        out.append(np.asarray(r.extras["mu_views"] if views > 1 else r.extras["mu"], np.float32))
        if i % 500 == 0:
            print(f"{i}/{len(crops)} crops, {time.perf_counter() - t0:.0f} s", flush=True)
    return out


def _row(name: str, per: list[np.ndarray], cls: np.ndarray, seconds: float | None) -> dict[str, Any]:
    from sklearn.metrics import average_precision_score, roc_auc_score

    crop = np.array([s.max() if len(s) else -np.inf for s in per])
    sel = (cls == 0) | (cls == 1)
    y = cls[sel] == 1
    row = {
        "method": name,
        "auc": round(float(roc_auc_score(y, crop[sel])), 3),
        "ap_over_random": round(float(average_precision_score(y, crop[sel]) / y.mean()), 2),
        "seconds": None if seconds is None else round(seconds, 1),
    }
    print(row, flush=True)
    return row


def _bank_scores(
    dev: list[np.ndarray], groups: list[str], bank: list[np.ndarray], bank_groups: list[str]
) -> list[np.ndarray]:
    """Both contexts' z of the dev patches measured against the same z of an outside bank's patches (each set
    scaled within its own crops and products), each part robust-z scaled over the dev patches, summed equally."""
    from edgeae.anomaly.baselines import _distance_z, grouped_latent_z, knn_distance

    def zs(frames: list[np.ndarray], labels: list[Any]) -> np.ndarray:
        return grouped_latent_z([z[:, None] if z.ndim == 2 else z for z in frames], labels)

    parts = []
    for dev_labels, bank_labels in ((list(range(len(dev))), list(range(len(bank)))), (groups, bank_groups)):
        q, ref = zs(dev, dev_labels), zs(bank, bank_labels)
        parts.append(_distance_z(knn_distance(ref, queries=q)))
    s = 0.5 * parts[0] + 0.5 * parts[1]
    bounds = np.cumsum([0] + [len(z) for z in dev])
    return [s[a:b] for a, b in itertools.pairwise(bounds)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.context_bank", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--model", default=DEFAULT_MODEL, help=f"the grey VAE (default {DEFAULT_MODEL})")
    ap.add_argument("--views", type=int, default=8, help="rotations/flips per patch (default 8)")
    ap.add_argument("--limit", type=int, default=None, help="the first N dev crops only (a smoke run)")
    args = ap.parse_args(argv)

    from benchmarks.hirise_dev import dev_crops
    from benchmarks.machine import machine_info, wait_for_quiet
    from edgeae.anomaly.baselines import CONTEXT_BANK, context_knn
    from edgeae.anomaly.labels import hirise_product, hirise_training_products, read_hirise_labels
    from edgeae.data import data_root

    quiet = wait_for_quiet(max_load=1.0, timeout_s=300)  # timings start on a settled machine (or say they did not)
    t_start = time.perf_counter()
    load = __import__("os").getloadavg()[0]
    _, crops, _ = dev_crops(args.limit)
    files = [f for f, _ in crops]
    cls = np.array([c for _, c in crops])
    groups = [hirise_product(f) for f in files]
    dev = _latents(args.model, args.views, files)
    n = sum(len(z) for z in dev)
    rows = []
    t = time.perf_counter()
    rows.append(
        _row(f"exact: every patch against every other ({n:,})", context_knn(dev, groups), cls, time.perf_counter() - t)
    )
    for b in BANKS:
        if b >= n:
            continue
        for seed in SEEDS:
            t = time.perf_counter()
            per = context_knn(dev, groups, bank=b, seed=seed)
            rows.append(_row(f"bank of {b:,} (seed {seed})", per, cls, time.perf_counter() - t))
    # reference: the kNN within each product only (each product's crops ranked on their own, as a scan of one
    # product file at a time would)
    per_product: list[np.ndarray] = [np.zeros(0)] * len(dev)
    t = time.perf_counter()
    for g in dict.fromkeys(groups):
        idx = [i for i, x in enumerate(groups) if x == g]
        if sum(len(dev[i]) for i in idx) >= 2:
            for i, s in zip(idx, context_knn([dev[i] for i in idx]), strict=True):
                per_product[i] = s
        else:
            for i in idx:
                per_product[i] = np.zeros(len(dev[i]))
    rows.append(_row("kNN within each product only", per_product, cls, time.perf_counter() - t))
    # reference: each product one frame (what a scan of whole product files, one file a product, would give): the
    # crop context is gone, the product is the frame and the whole set the group
    t = time.perf_counter()
    members = {g: [i for i, x in enumerate(groups) if x == g] for g in dict.fromkeys(groups)}
    merged = context_knn([np.concatenate([dev[i] for i in idx]) for idx in members.values()])
    per_frame: list[np.ndarray] = [np.zeros(0)] * len(dev)
    for idx, s in zip(members.values(), merged, strict=True):
        for i, part in zip(idx, np.split(s, np.cumsum([len(dev[i]) for i in idx])[:-1]), strict=True):
            per_frame[i] = part
    rows.append(
        _row("each product one frame, the set one group (no crop context)", per_frame, cls, time.perf_counter() - t)
    )
    # reference: an outside bank, the crops of the products the VAE trained on (never evaluated)
    labels = read_hirise_labels(data_root() / "hirise_landmarks" / "labels.txt")
    train = hirise_training_products(labels)
    outside = [f for f, _ in labels if hirise_product(f) in train]
    bank = _latents(args.model, args.views, outside)
    t = time.perf_counter()
    per = _bank_scores(dev, groups, bank, [hirise_product(f) for f in outside])
    rows.append(
        _row(
            f"bank of the 21 training products' crops ({sum(len(z) for z in bank):,})",
            per,
            cls,
            time.perf_counter() - t,
        )
    )

    res = {
        "machine": machine_info(2),
        "load_1min_at_start": round(load, 2),
        "wait_for_quiet": quiet,
        "model": args.model,
        "views": args.views,
        "crops": len(files),
        "craters": int((cls == 1).sum()),
        "other": int((cls == 0).sum()),
        "patches": n,
        "context_bank_default": CONTEXT_BANK,
        "rows": rows,
        "seconds": round(time.perf_counter() - t_start, 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(res, indent=2, default=str))
    md = [
        f"HiRISE dev split: {len(files)} crops ({res['craters']} craters, {res['other']} other), {n:,} patches, "
        f"`{Path(args.model).name}`, {args.views} views; two-context kNN (mu), crater vs other, a crop = its highest "
        "patch.",
        "",
        "| ranking | ROC AUC | AP over random | kNN seconds |",
        "|---|---:|---:|---:|",
    ]
    md += [f"| {r['method']} | {r['auc']:.3f} | {r['ap_over_random']:.2f} | {r['seconds']} |" for r in rows]
    md.append(
        f"\nCommand: `python -m benchmarks.context_bank --out {args.out}"
        + ("" if args.model == DEFAULT_MODEL else f" --model {args.model}")
        + ("" if args.views == 8 else f" --views {args.views}")
        + ("" if args.limit is None else f" --limit {args.limit}")
        + f"`; {res['seconds']:.0f} s in all on {res['machine'].get('cpu', '?')}, 1-minute load {load:.2f} at the "
        "start (quality numbers do not depend on load; kNN seconds are one run each)."
    )
    (args.out / "results.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
