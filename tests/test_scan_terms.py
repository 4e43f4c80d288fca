"""``edgeae scan --score terms-max``: the orbital mission's flight score over an archive, exact per image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeae.anomaly.terms import frame_terms_max
from edgeae.scan.pipeline import Chunk, ImageAccumulator, ScanConfig, score_chunk
from edgeae.scan.scoring import ModelSpec

SPEC = ModelSpec(path="m.pt", model_id="m", artifact_hash="0" * 64, kind="vae", patch=16, channels=1)


def _terms(batch: np.ndarray) -> np.ndarray:
    """Stand-in VAE terms: rec = patch variance (texture), mu2 = squared mean brightness."""
    flat = batch.reshape(len(batch), -1).astype(np.float64)
    return np.stack([flat.var(axis=1), flat.mean(axis=1) ** 2], axis=1)


def _chunks(rng: np.random.Generator, n_chunks: int, size: int) -> list[Chunk]:
    out = []
    for i in range(n_chunks):
        pix = rng.random((size, 1, 16, 16), dtype=np.float32) * 0.2 + 0.4
        pix[rng.random(size) < 0.15] *= 3.0  # a few bright patches (term mu2: ~9x the median)
        busy = rng.random(size) < 0.15  # a few busy ones (term rec: ~9x the median)
        pix[busy] = rng.random((int(busy.sum()), 1, 16, 16), dtype=np.float32) * 0.6 + 0.2
        xs = np.arange(size, dtype=np.int32) * 16
        out.append(Chunk(xs=xs, ys=np.full(size, 16 * i, np.int32), valid=np.ones(size, np.float32), pixels=pix,
                         n_skipped=0))  # fmt: skip
    return out


@pytest.mark.parametrize("top_k", [1, 5, 12])
def test_terms_max_ranking_is_the_whole_image_ranking_in_any_chunk_order(top_k: int) -> None:
    cfg = ScanConfig(SPEC, stride=16, batch_size=8, top_k=top_k, score="terms-max")
    chunks = _chunks(np.random.default_rng(3), 9, 8)
    scored = [score_chunk(_terms, c, top_k) for c in chunks]
    assert all(s.scores.shape == (8, 2) and len(s.tops) == 2 for s in scored)
    empty = Chunk(xs=np.zeros(0, np.int32), ys=np.zeros(0, np.int32), valid=np.zeros(0, np.float32),
                  pixels=np.zeros((0, 1, 16, 16), np.float32), n_skipped=3)  # fmt: skip
    scored.insert(4, score_chunk(_terms, empty, top_k))  # only no-data patches: nothing to rank
    chunks.insert(4, empty)
    fwd, back = ImageAccumulator("f", cfg), ImageAccumulator("b", cfg)
    for i, s in enumerate(scored):
        fwd.add(i, s)
    for i in reversed(range(len(scored))):
        back.add(i, scored[i])
    a, b = fwd.result(), back.result()
    terms = np.concatenate([_terms(c.pixels) for c in chunks if len(c.xs)])
    want = frame_terms_max(terms[:, 0], terms[:, 1])
    np.testing.assert_allclose(a.scores, want)
    np.testing.assert_array_equal(a.terms, terms)
    xs = np.concatenate([c.xs for c in chunks])
    ys = np.concatenate([c.ys for c in chunks])
    order = np.lexsort((xs, ys, -want))[:top_k]  # the whole image ranked at once, ties by (y, x)
    for r in (a, b):
        np.testing.assert_array_equal(r.top.scores, want[order])
        assert list(zip(r.top.xs, r.top.ys, strict=True)) == list(zip(xs[order], ys[order], strict=True))
    pix = np.concatenate([c.pixels for c in chunks])
    np.testing.assert_array_equal(a.top.thumbs, np.round(np.clip(pix[order], 0, 1) * 255).astype(np.uint8))
    # both terms reach the top: the ranking sees texture and brightness alike
    if top_k >= 5:
        winner = terms[order] / np.median(terms, axis=0)
        assert (winner[:, 0] >= winner[:, 1]).any() and (winner[:, 1] > winner[:, 0]).any()


def test_terms_max_config_is_checked_and_changes_the_fingerprint() -> None:
    with pytest.raises(ValueError, match="score must be one of"):
        ScanConfig(SPEC, stride=16, score="z")
    cae = ModelSpec(path="c.pt", model_id="c", artifact_hash="0" * 64, kind="cae", patch=16, channels=1)
    with pytest.raises(ValueError, match=r"terms-max.*cae"):
        ScanConfig(cae, stride=16, score="terms-max")
    a = ScanConfig(SPEC, stride=16)
    t = ScanConfig(SPEC, stride=16, score="terms-max")
    assert a.result_fingerprint() != t.result_fingerprint()
    old = a.to_dict()
    del old["score"]  # a results folder written before the option existed resumes as score "a"
    assert ScanConfig.from_dict(old).result_fingerprint() == a.result_fingerprint()
    acc = ImageAccumulator("x", t)
    one = score_chunk(lambda b: b.reshape(len(b), -1).mean(axis=1), _chunks(np.random.default_rng(0), 1, 4)[0], 2)
    with pytest.raises(ValueError, match=r"wants \(n, 2\) terms"):
        acc.add(0, one)


def test_scan_terms_max_with_the_zoo_int8_vae_matches_the_offline_score(moon: np.ndarray, tmp_path: Path) -> None:
    """End to end with the shipped int8 VAE: rec and mu2 columns, score = terms-max of the image, and the same
    numbers from the threaded engine as from the in-process reference path."""
    pytest.importorskip("pyarrow.parquet")
    pytest.importorskip("ai_edge_litert")
    from test_scan_support import checkerboard_moon_archive, scan_with_both_local_paths

    from edgeae.scan.run import EngineOptions, scan_archive
    from edgeae.scan.state import ScanStateError

    checkerboard_moon_archive(tmp_path / "arc", moon)
    runs = scan_with_both_local_paths(tmp_path / "arc", tmp_path, "terms-max")
    t = runs[0]
    assert {"rec", "mu2"} <= set(t.columns) and len(t) == 64
    np.testing.assert_allclose(t["score"], frame_terms_max(t["rec"].to_numpy(), t["mu2"].to_numpy()))
    np.testing.assert_allclose(runs[2]["score"], t["score"], rtol=1e-6)
    best = t.sort_values("score", ascending=False).iloc[0]
    assert (best["x"], best["y"]) == (256, 192)  # the planted texture ranks first
    with pytest.raises(ScanStateError, match="other settings"):
        scan_archive(tmp_path / "arc", "orbital-gray-vae", tmp_path / "out0", engine=EngineOptions(workers=0),
                     top_k=4, progress=False)  # fmt: skip
