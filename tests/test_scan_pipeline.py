"""The per-image pipeline: chunking, scoring one batch per chunk, order-free joining, top-k tie-breaks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeae.scan.pipeline import Chunk, ImageAccumulator, ScanConfig, TopK, count_patches, score_chunk, tile_image
from edgeae.scan.scoring import ModelSpec

SPEC = ModelSpec(path="m.pt", model_id="m", artifact_hash="0" * 64, kind="vae", patch=16, channels=1)


def _mean(batch: np.ndarray) -> np.ndarray:
    return batch.reshape(len(batch), -1).mean(axis=1)


def _chunk(rng: np.random.Generator, n: int, y0: int) -> Chunk:
    return Chunk(
        xs=np.arange(n, dtype=np.int32) * 16,
        ys=np.full(n, y0, np.int32),
        valid=np.ones(n, np.float32),
        pixels=rng.random((n, 1, 16, 16), dtype=np.float32),
        n_skipped=1,
    )


def test_accumulator_is_order_free_and_checks_chunks() -> None:
    cfg = ScanConfig(SPEC, stride=16, batch_size=4, top_k=3)
    rng = np.random.default_rng(0)
    scored = [score_chunk(_mean, _chunk(rng, 4 if i < 3 else 2, 16 * i), cfg.top_k) for i in range(4)]
    fwd, back = ImageAccumulator("a", cfg), ImageAccumulator("a", cfg)
    for i, s in enumerate(scored):
        fwd.add(i, s)
    for i in reversed(range(4)):
        back.add(i, scored[i])
    a, b = fwd.result(), back.result()
    assert len(a.scores) == 14 and a.n_skipped == 4
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.ys, np.repeat([0, 16, 32, 48], [4, 4, 4, 2]))
    np.testing.assert_array_equal(a.top.scores, b.top.scores)
    np.testing.assert_array_equal(a.top.scores, np.sort(a.scores)[::-1][:3])
    assert a.top.thumbs.shape == (3, 1, 16, 16) and a.top.thumbs.dtype == np.uint8
    with pytest.raises(ValueError, match="twice"):
        fwd.add(0, scored[0])
    gap = ImageAccumulator("g", cfg)
    gap.add(1, scored[1])
    with pytest.raises(ValueError, match=r"chunks \[0\] are missing"):
        gap.result()


def test_topk_ties_break_by_position() -> None:
    e = TopK.empty(1, 2)
    t = TopK(np.array([1.0, 1.0, 2.0]), np.array([5, 1, 0], np.int32), np.array([0, 0, 9], np.int32),
             np.zeros((3, 1, 2, 2), np.uint8))  # fmt: skip
    m = e.merged(t, 2)
    assert m.scores.tolist() == [2.0, 1.0] and m.xs.tolist() == [0, 1]


def test_score_chunk_rejects_bad_scorers() -> None:
    rng = np.random.default_rng(1)
    with pytest.raises(ValueError, match="2 scores for 3"):
        score_chunk(lambda b: np.zeros(2), _chunk(rng, 3, 0), 2)
    with pytest.raises(ValueError, match="non-finite"):
        score_chunk(lambda b: np.full(len(b), np.nan), _chunk(rng, 3, 0), 2)


def test_tile_image_chunks_count_and_skip_nodata(moon: np.ndarray, tmp_path: Path) -> None:
    from edgeae.imageio import write_image

    img = moon[:100, :70].copy()
    img[:, :20] = 0  # a no-data margin: the patches in it are counted, not scored
    write_image(tmp_path / "m.png", img)
    cfg = ScanConfig(SPEC, stride=16, batch_size=4, min_valid=0.5)
    chunks = list(tile_image(tmp_path / "m.png", cfg))
    scored = sum(len(c.xs) for c in chunks)
    skipped = sum(c.n_skipped for c in chunks)
    assert scored + skipped == count_patches(tmp_path / "m.png", cfg) == 7 * 5
    assert skipped >= 7 and all(len(c.xs) <= 4 for c in chunks)
    assert all(c.pixels.shape[1:] == (1, 16, 16) for c in chunks)
    assert count_patches(tmp_path / "missing.png", cfg) == 0
