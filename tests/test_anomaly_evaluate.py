"""The evaluation driver: tables from scored units, and a tiny real-data run ranking craters above random."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeae.anomaly.evaluate import Scored, markdown_tables, table_rows


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
    """One LROC NAC mosaic (576 patches) with the zoo VAE: craters >= 32 px rank above random."""
    pytest.importorskip("torch")
    from edgeae.anomaly.evaluate import score_lroc
    from edgeae.anomaly.score import make_scorer
    from edgeae.predictor import load_predictor

    try:
        predictor = load_predictor("orbital-gray-vae", threads=1)
    except (KeyError, FileNotFoundError) as exc:
        pytest.skip(f"zoo VAE not available: {exc}")
    scored = score_lroc(data_root, make_scorer(predictor, keep_latents=True), limit=1)
    rows = {(r["feature"], r["method"]): r for r in table_rows(scored)}
    row = rows[("craters >= 32 px", "vae a(x)")]
    assert row["positives"] > 10
    assert row["ap"] > 1.5 * row["random_ap"]
