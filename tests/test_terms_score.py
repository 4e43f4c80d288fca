"""The ``terms-max`` score (issue 12): the VAE's two terms, each divided by its median over the frame, combined
by their maximum (:mod:`edgeae.anomaly.terms`), in the flight runtime (streaming, exact top-k), in
``edgeae score`` and in the artifact runners (terms read from the ``score`` and ``mu`` outputs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from edgeae.firmware_sim.score import TermsTopK, TopK

from edgeae.anomaly.terms import SCORE_MODES, frame_scales, frame_terms_max, terms_from_outputs, terms_max

ZOO_VAE = Path(__file__).resolve().parents[1] / "edgeae" / "zoo" / "artifacts" / "orbital-gray-vae"


def _textured(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = 120 + 40 * np.sin(xx / 9.0 + seed) * np.cos(yy / 13.0) + rng.normal(0, 6, (h, w))
    img[128:192, 192:256] = np.where((yy[128:192, 192:256] // 4 + xx[128:192, 192:256] // 4) % 2, 40, 220)
    img[320:384, 64:128] = 250  # a bright block
    return np.clip(img, 1, 254).astype(np.uint8)


def test_terms_from_outputs_splits_a() -> None:
    rng = np.random.default_rng(0)
    rec, mu = rng.random(50) * 30, rng.normal(0, 2, (50, 8))
    lam = 49.9
    score = (rec + lam * (mu**2).sum(1)).astype(np.float32)
    r, m = terms_from_outputs(score, mu.astype(np.float32), lam)
    assert np.allclose(m, (mu**2).sum(1), rtol=1e-6)
    assert np.allclose(r, rec, atol=1e-6 * score.max() * 8)  # float32 rounding of a(x) only
    assert (terms_from_outputs(np.zeros(3), np.ones((3, 2)), 1.0)[0] == 0).all()  # clipped at 0


def test_frame_terms_max_is_scale_free_per_term() -> None:
    rng = np.random.default_rng(1)
    rec, mu2 = rng.random(100) + 0.1, rng.random(100) + 0.1
    s = frame_terms_max(rec, mu2)
    assert np.allclose(frame_terms_max(rec * 1e3, mu2 * 1e-2), s)  # units and λ do not matter
    a, b = frame_scales(rec, mu2)
    assert a == pytest.approx(np.median(rec)) and b == pytest.approx(np.median(mu2))
    assert np.array_equal(s, terms_max(rec, mu2, (a, b)))
    flat = frame_scales(np.zeros(4), np.zeros(4))
    assert all(v > 0 for v in flat)  # a flat frame does not divide by zero
    with pytest.raises(ValueError, match="non-empty"):
        frame_scales(np.zeros(0), np.zeros(0))


@pytest.mark.parametrize("threshold", [None, 1.5])
def test_terms_topk_equals_ranking_the_whole_frame(threshold: float | None) -> None:
    rng = np.random.default_rng(2)
    n, k = 400, 7
    # heavy tails in both terms, and ties, so the union of the two heaps is exercised
    t = np.stack([np.round(rng.lognormal(0, 1, n), 2), np.round(rng.lognormal(0, 2, n), 1)], axis=1)
    xs, ys = np.arange(n) % 20 * 64, np.arange(n) // 20 * 64
    raw = rng.integers(0, 255, (n, 1, 4, 4), dtype=np.uint8)
    batched, single = TermsTopK(k, threshold, n), TermsTopK(k, threshold, n)
    for i in range(0, n, 16):
        batched.offer_batch(t[i : i + 16], xs[i : i + 16], ys[i : i + 16], raw[i : i + 16])
    for i in range(n):
        single.offer(t[i], int(xs[i]), int(ys[i]), raw[i].transpose(1, 2, 0))
    every = frame_terms_max(t[:, 0], t[:, 1])
    order = sorted(range(n), key=lambda i: (-every[i], ys[i], xs[i]))
    want = [i for i in order if threshold is None or every[i] > threshold][:k]
    for top in (batched, single):
        got = top.ranked()
        assert [(c.x, c.y) for c in got] == [(int(xs[i]), int(ys[i])) for i in want]
        assert [c.score for c in got] == pytest.approx([every[i] for i in want])
        assert all(np.array_equal(c.pixels, raw[i].transpose(1, 2, 0)) for c, i in zip(got, want, strict=True))
        assert top.scored == n and top.max_score == pytest.approx(every.max())
        assert top.flagged == (None if threshold is None else int((every > threshold).sum()))
    with pytest.raises(ValueError, match="grid"):
        batched.offer_batch(t[:1], xs[:1], ys[:1], raw[:1])


def test_terms_topk_empty_frame() -> None:
    top = TermsTopK(4, None, 10)
    assert top.ranked() == [] and top.flagged is None and top.max_score == float("-inf")
    assert TermsTopK(4, 1.0, 10).flagged == 0
    assert isinstance(TopK(4, None).ranked(), list)


def test_mission_refuses_terms_max_without_a_vae() -> None:
    from edgeae.firmware_sim.mission import SCORE_MODES as MISSION_MODES
    from edgeae.firmware_sim.mission import Anomaly, MissionError

    assert MISSION_MODES == SCORE_MODES  # the stdlib-only mission module keeps its own copy
    with pytest.raises(MissionError, match="score must be one of"):
        Anomaly(score="z")
    with pytest.raises(MissionError, match='needs method = "vae"'):
        Anomaly(method="cae-masked", score="terms-max")
    with pytest.raises(MissionError, match="threshold"):
        Anomaly(score="terms-max", threshold="metadata")
    assert Anomaly(score="terms-max", threshold=3.0).threshold == 3.0


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_terms_runner_equals_the_predictor_outputs(fmt: str) -> None:
    from edgeae.firmware_sim.runtime import load_artifact
    from edgeae.firmware_sim.score import model_lambda, score_runner

    pytest.importorskip("ai_edge_litert" if fmt == "tflite" else "onnxruntime")
    path = ZOO_VAE / f"orbital-gray-vae.int8.{fmt}"
    pred = load_artifact(path, threads=1)
    raw = _textured(128, 640)
    tiles = np.stack([raw[y : y + 64, x : x + 64] for y in (0, 64) for x in range(0, 640, 64)])[:, None]
    out = pred(tiles.astype(np.float32) * np.float32(1 / 255))
    lam = model_lambda(pred.metadata)
    x = tiles.astype(np.float32) / 255
    rec_direct = ((x - out["x_hat"]).astype(np.float64) ** 2).reshape(len(x), -1).sum(1)
    want = np.stack(terms_from_outputs(out["score"], out["mu"], lam), axis=1)
    assert np.allclose(want[:, 0], rec_direct, rtol=1e-3, atol=1e-3)  # rec = a − λ·mu2 is the x̂ error
    got = score_runner(load_artifact(path, threads=1), raw_max=255, terms=True)(tiles[:13])  # padded call
    assert got.shape == (13, 2)
    assert np.allclose(got, want[:13], rtol=1e-6)
    assert np.allclose(score_runner(pred, raw_max=255)(tiles), out["score"], rtol=1e-6)  # a(x) unchanged


def test_flight_terms_max_ranks_like_the_offline_score(tmp_path: Path) -> None:
    """firmware-sim with ``score = "terms-max"`` (fast path and sequential path) flags the top-k of the frame's
    patches by :func:`frame_terms_max` of the same artifact's outputs, and finds the planted checkerboard,
    which a(x) ranks low."""
    pytest.importorskip("ai_edge_litert")
    from edgeae.firmware_sim.loop import FlightRuntime
    from edgeae.firmware_sim.mission import load_mission, mission_from_dict
    from edgeae.firmware_sim.runtime import load_artifact
    from edgeae.firmware_sim.score import model_lambda

    img = _textured(512, 512)
    np.save(tmp_path / "f.npy", img)
    base = load_mission("orbital_nac")
    path = ZOO_VAE / "orbital-gray-vae.int8.tflite"
    recs = {}
    for score, fast in (("terms-max", True), ("terms-max", False), ("a", True)):
        m = mission_from_dict(
            {
                "name": "nac-small",
                "camera": {"source": "strips", "channels": 1, "height": 0, "width": 0, "bit_depth": 8,
                           "strip_rows": 256},
                "sampling": {"keep": 0.02, "seed": 1009, "min_keep": 0.002},
                "anomaly": {"model": str(path), "method": "vae", "patch": 64, "stride": 64, "batch": 16,
                            "top_k": 3, "min_valid": 0.9, "score": score},
                "reconstruction": {"mode": "off"},
                "budget": {"frame_ms": 1e7, "memory_bytes": base.budget.memory_bytes},
                "runtime": {"threads": 2},
            }
        )  # fmt: skip
        rt = FlightRuntime(m, tmp_path / f"out-{score}-{fast}")
        if not fast:
            assert rt.models.engine is not None
            rt.models.engine.close()
            rt.models.engine = None
        recs[(score, fast)] = rt.process(tmp_path / "f.npy")
        rt.finish()
    fast_rec, slow_rec = recs[("terms-max", True)], recs[("terms-max", False)]
    assert fast_rec["anomaly"]["patches"] == slow_rec["anomaly"]["patches"]
    pred = load_artifact(path, threads=1)
    pos = [(y, x) for y in range(0, 512, 64) for x in range(0, 512, 64)]
    tiles = np.stack([img[y : y + 64, x : x + 64] for y, x in pos])[:, None].astype(np.float32) / 255
    out = pred(tiles)
    s = frame_terms_max(*terms_from_outputs(out["score"], out["mu"], model_lambda(pred.metadata)))
    want = sorted(range(len(pos)), key=lambda i: -s[i])[:3]
    got = fast_rec["anomaly"]["patches"]
    assert [(p["y"], p["x"]) for p in got] == [pos[i] for i in want]
    assert [p["score"] for p in got] == pytest.approx([s[i] for i in want], rel=1e-5)
    assert fast_rec["anomaly"]["flagged"] is None and fast_rec["anomaly"]["score"] == "terms-max"  # no threshold
    flagged = {(p["y"], p["x"]) for p in got}
    assert {(128, 192), (320, 64)} <= flagged  # the checkerboard and the bright block
    assert (128, 192) not in {(p["y"], p["x"]) for p in recs[("a", True)]["anomaly"]["patches"]}


def test_score_cli_terms_max(tmp_path: Path) -> None:
    pytest.importorskip("ai_edge_litert")
    pytest.importorskip("tifffile")
    from edgeae.anomaly.score import read_csv
    from edgeae.cli import main
    from edgeae.imageio import write_image

    img = tmp_path / "f.png"
    write_image(img, _textured(512, 512))
    art = ZOO_VAE / "orbital-gray-vae.int8.tflite"
    a, t = tmp_path / "a.csv", tmp_path / "t.csv"
    assert main(["score", str(img), "--model", str(art), "-o", str(a), "--no-progress"]) == 0
    assert main(["score", str(img), "--model", str(art), "--score", "terms-max", "-o", str(t), "--no-progress"]) == 0
    rows_a, rows_t = read_csv(a), read_csv(t)
    assert [r[1:3] for r in rows_a] == [r[1:3] for r in rows_t] and len(rows_t) == 64
    s = np.array([r[3] for r in rows_t])
    assert np.median(s) >= 1.0  # each term's median is 1 after normalisation, so the larger's median is >= 1
    top2 = {(r[2], r[1]) for r in sorted(rows_t, key=lambda r: -r[3])[:2]}
    assert top2 == {(128, 192), (320, 64)}  # the checkerboard and the bright block lead
    top2_a = {(r[2], r[1]) for r in sorted(rows_a, key=lambda r: -r[3])[:2]}
    assert (128, 192) not in top2_a  # a(x) misses the checkerboard
    assert main(["score", str(img), "--model", "orbital-gray-gtcae", "--score", "terms-max", "-o", str(t)]) == 2
