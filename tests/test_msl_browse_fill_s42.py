"""benchmarks.msl_browse_fill evaluates any candidate (``--models``), alone (``--no-cross-check``), on the same images
and masks as the committed run: its figures for the shipped flight model reproduce exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import msl_browse_fill

ROOT = Path(__file__).resolve().parents[1]


def test_a_candidate_alone_reproduces_the_committed_rows(data_root: Path, tmp_path: Path) -> None:
    code = msl_browse_fill.main(
        ["--out", str(tmp_path), "--limit", "2", "--models", "rover-rgb-unet2-flight", "--no-cross-check"]
    )
    assert code == 0
    got = json.loads((tmp_path / "results.json").read_text())
    assert [r["method"] for r in got["rows"]][-1] == "rover-rgb-unet2-flight"
    assert not [r for r in got["rows"] if "xcheck" in r["method"]]
    committed = json.loads((ROOT / "benchmarks/results/msl_browse_fill/results.json").read_text())["per_image"][:2]
    for mine, theirs in zip(got["per_image"], committed, strict=True):
        assert mine["file"] == theirs["file"]
        # exact on this host; another CPU's SIMD may move the model's float rounding in the last digit
        assert mine["rover-rgb-unet2-flight"] == pytest.approx(theirs["rover-rgb-unet2-flight"], abs=0.005)
        assert mine["blend"] == theirs["blend"]


def test_no_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        msl_browse_fill.main(["--out", str(tmp_path), "--models", ","])
    assert exc.value.code == 2
