"""Planted anomalies in real test frames (issue 12): where the shipped VAE score ranks a bright block and a
textured block (4-px checkerboard 40/220, uniform noise), in fp32 (PyTorch) and in the shipped int8 ONNX.

The int8 artifact must rank every planted block exactly as fp32 does (a score computed in float from
dequantised outputs: no ceiling, no ties). Whether the textured blocks reach the top 2 % depends on the score
definition: with the zoo λ the λ·||μ||² term dominates a(x) and sees brightness, not texture, so that part is
an expected failure until the default scorer ranks texture (see the issue-12 report: no single λ of
a(x) = rec + λ·mu2 puts both kinds in the top 2 % of the Tycho and M1229577647 frames).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeae.anomaly.planted import TOP_FRACTION, planted_ranks

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

INT8 = Path(__file__).resolve().parents[1] / "edgeae/zoo/artifacts/orbital-gray-vae/orbital-gray-vae.int8.onnx"


@pytest.fixture(scope="module")
def scorers() -> dict:
    from edgeae.firmware_sim.runtime import load_artifact

    from edgeae.predictor import load_predictor

    fp32 = load_predictor("orbital-gray-vae", threads=2)
    int8 = load_artifact(INT8, threads=2)

    def run(p):
        return lambda b: np.concatenate([p(b[i : i + 256])["score"] for i in range(0, len(b), 256)])

    return {"fp32": run(fp32), "int8": run(int8)}


@pytest.fixture(scope="module")
def ranks(scorers: dict, data_root: Path) -> dict:
    from edgeae.datasets import split_files
    from edgeae.imageio import read_image

    out: dict = {}
    for f in split_files("orbital_gray", "test", data_root):
        img = read_image(f, channels=1)
        for name, score in scorers.items():
            out[(f.name, name)] = {r.kind: r for r in planted_ranks(score, img.pixels, img.valid)}
    return out


def test_int8_ranks_planted_blocks_like_fp32(ranks: dict) -> None:
    for (frame, precision), rs in ranks.items():
        if precision != "int8":
            continue
        ref = ranks[(frame, "fp32")]
        for kind, r in rs.items():
            tol = 1 if ref[kind].fraction < 0.05 else max(1, round(0.03 * r.n))  # exact in the tail
            assert abs(r.above - ref[kind].above) <= tol, (frame, kind, r.above, ref[kind].above)
            assert r.score == pytest.approx(ref[kind].score, rel=0.05), (frame, kind)


def test_bright_block_ranks_in_the_top_2_percent(ranks: dict) -> None:
    for key, rs in ranks.items():
        assert rs["bright"].fraction < TOP_FRACTION, (key, rs["bright"])


@pytest.mark.xfail(strict=True, reason="the zoo VAE's a(x) sees brightness, not texture (issue 12)")
def test_textured_blocks_rank_in_the_top_2_percent(ranks: dict) -> None:
    for key, rs in ranks.items():
        for kind in ("checker", "noise"):
            assert rs[kind].fraction < TOP_FRACTION, (key, rs[kind])
