"""What the standalone HiRISE crater studies share (``hirise_views``, ``hirise_features``): the development split's
crops, the crater vs other ROC AUC on all of it / the anomaly benchmark's seed-0 sample of 400 / the other crops,
and the results files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

SAMPLE = 400  # the anomaly benchmark's HiRISE sample (seed 0)


def dev_crops(limit: int | None = None) -> tuple[Path, list[tuple[str, int]], list[str]]:
    """The crops' folder, ``(file, class)`` of the dev crops (products the VAE never trained on; the first
    ``limit`` only) and the class-0 crops of the training products."""
    from edgeae.anomaly.evaluate import HIRISE_CLASSES
    from edgeae.anomaly.labels import hirise_product, hirise_training_products, read_hirise_labels
    from edgeae.data import data_root

    root = data_root() / "hirise_landmarks"
    labels = read_hirise_labels(root / "labels.txt")
    train = hirise_training_products(labels)
    dev = [(f, c) for f, c in labels if hirise_product(f) not in train and c in HIRISE_CLASSES][:limit]
    ref = [f for f, c in labels if hirise_product(f) in train and c == 0]
    return root / "images", dev, ref


def crater_auc_row(method: str, crop_score: np.ndarray, classes: np.ndarray) -> dict[str, Any]:
    """Crater (class 1) vs other (class 0) ROC AUC of one score per crop, on all crops, the seed-0 sample and the
    rest (None where a part lacks either kind); printed as it is made."""
    from sklearn.metrics import roc_auc_score

    n = len(classes)
    pos, ev = classes == 1, (classes == 1) | (classes == 0)
    sample = np.zeros(n, bool)
    sample[np.random.default_rng(0).choice(n, size=min(SAMPLE, n), replace=False)] = True
    row: dict[str, Any] = {"method": method}
    for part, sel in (("all", ev), (f"sample {SAMPLE}", ev & sample), ("other", ev & ~sample)):
        ok = pos[sel].any() and (~pos[sel]).any()
        row[part] = round(float(roc_auc_score(pos[sel], crop_score[sel])), 3) if ok else None
    print(row, flush=True)
    return row


def write_results(out: Path, res: dict[str, Any], first_column: str, note: str) -> None:
    """``results.json`` (``res``) and ``results.md`` (one row per ``res["rows"]`` entry, then ``note``); prints the
    table."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(res, indent=2, default=str))
    md = [f"| {first_column} | ROC AUC all | seed-0 sample of {SAMPLE} | other crops |", "|---|---:|---:|---:|"]
    md += [f"| {r['method']} | {r['all']} | {r[f'sample {SAMPLE}']} | {r['other']} |" for r in res["rows"]]
    md.append(f"\n{note}")
    (out / "results.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
