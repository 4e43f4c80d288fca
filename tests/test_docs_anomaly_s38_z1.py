"""Session 38, fixer z1 (review r3 #6): docs/anomaly.md's MSL rows on all 1,201 validation-sol images come from the
committed msl_full run, which predates the kNN baselines on classical features (block means, patch stats) of
6987f22, so their "best baseline" is the best of the four older ones. Each such row names that run (its date and
commit as its record in stages.json gives them) and says so while the run has no rows for those baselines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGES = ROOT / "benchmarks" / "results" / "stages.json"
RESULTS = ROOT / "benchmarks" / "results" / "msl_full" / "msl_surface" / "results.json"
CLASSICAL_KNN = ("frame-z kNN (block means)", "two-context kNN (block means)", "frame-z kNN (patch stats)",
                 "two-context kNN (patch stats)")  # fmt: skip


@pytest.mark.skipif(not (STAGES.is_file() and RESULTS.is_file()), reason="the committed msl_full run is not here")
def test_the_full_set_msl_rows_name_their_run_and_the_baselines_it_lacks() -> None:
    record = json.loads(STAGES.read_text())["msl_full"]["machine"]
    run = f"{record['date'][:10]}, {record['commit']} in stages.json"  # a rerun must update the rows
    methods = {r["method"] for r in json.loads(RESULTS.read_text())["rows"]}
    lacks = not any(m in methods for m in CLASSICAL_KNN)
    rows = [
        line for line in (ROOT / "docs" / "anomaly.md").read_text().splitlines() if line.startswith("| MSL, all 1,201")
    ]
    assert len(rows) == 3
    for line in rows:
        first = line.strip("|").split("|")[0]
        assert run in first, first
        assert ("before the kNN baselines on block means and patch stats" in first) == lacks, first
