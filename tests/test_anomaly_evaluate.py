"""The evaluation driver: tables from scored units, and a tiny real-data run ranking craters above random."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeae.anomaly.evaluate import Scored, markdown_tables, table_rows
from edgeae.predictor import load_predictor


def test_table_rows_and_markdown() -> None:
    s = np.array([5.0, 4.0, 3.0, 2.0, 1.0, 0.0])
    pos = np.array([1, 0, 1, 0, 0, 0], bool)
    scored = Scored(
        methods={"vae a(x)": s, "patch std": s[::-1].copy()},
        features={"f": (pos, np.ones(6, bool)), "g": (pos, np.array([1, 1, 1, 1, 0, 0], bool))},
        primary="vae a(x)",
    )
    rows = table_rows(scored)
    assert len(rows) == 4
    r = rows[0]
    assert (r["feature"], r["method"], r["positives"], r["negatives"]) == ("f", "vae a(x)", 2, 4)
    assert r["ap"] == pytest.approx((1.0 + 2.0 / 3.0) / 2.0)
    assert r["random_ap"] == pytest.approx(1.0 / 3.0)
    assert rows[2]["negatives"] == 2  # feature g evaluates only the selected units
    md = markdown_tables(rows, "vae a(x)", "toy")
    assert "| f | 2 | 4 | 0.833 | 0.333 | 2.50 |" in md
    assert "**0.833 (2.50x)**" in md


def test_tiny_real_run_ranks_large_craters_above_random(data_root: Path) -> None:
    """One evaluated LROC NAC mosaic (169 patches) with the zoo VAE: craters >= 32 px rank above random."""
    pytest.importorskip("torch")
    from edgeae.anomaly.evaluate import lroc_files
    from edgeae.anomaly.labels import crater_file_for, patch_labels, read_craters
    from edgeae.anomaly.metrics import ranking_summary
    from edgeae.anomaly.score import make_scorer, score_array
    from edgeae.imageio import read_image

    try:
        predictor = load_predictor("orbital-gray-vae", threads=1)
    except (KeyError, FileNotFoundError) as exc:
        pytest.skip(f"zoo VAE not available: {exc}")
    f = lroc_files(data_root)[0]
    img = read_image(f, channels=1)
    res = score_array(img.pixels, make_scorer(predictor), 64, 64, valid=img.valid, min_valid=0.0)
    labels = patch_labels(res.xy, 64, read_craters(crater_file_for(f)), d_min=32.0)
    row = ranking_summary(res.score, labels)
    assert row["positives"] >= 10 and row["negatives"] >= 100
    assert row["ap"] > row["random_ap"]
    assert row["auc"] > 0.5


def test_data_note_calls_a_run_a_sample_only_when_the_limit_left_items_out() -> None:
    from edgeae.anomaly.evaluate import data_note

    rows = [{"feature": "craters", "positives": 5, "negatives": 95}]
    checks = [{"dataset": "lroc_nac_craters", "feature": "craters"}]
    # --limit 400 over the 10 LROC mosaics scores them all: not a sample
    assert "a sample" not in data_note("lroc_nac_craters", rows, checks, 400, sampled=False)
    assert "a sample: --limit 400" in data_note("lroc_nac_craters", rows, checks, 400, sampled=True)
    assert "5 positives / 95 negatives" in data_note("lroc_nac_craters", rows, checks, None)
