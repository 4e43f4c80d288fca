"""Library calls a user makes from their own scripts (session 27's API audit): numpy seeds, NaN samples, RNG
state, str paths, batch and argument errors, and non-finite scores in flight."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeae.ground.station import GroundStation
from edgeae.wire.packets import WireConfig, packetise


def _frame():
    from edgeae.ground.sources import sparse_from_samples

    s = (np.arange(48 * 64 * 3).reshape(48, 64, 3) % 251).astype(np.uint8)
    return sparse_from_samples(s, 8, 0.2, 1, frame_id=7)


def test_flight_top_k_never_ranks_a_non_finite_score() -> None:
    from firmware_sim.score import TopK

    top = TopK(3, None)
    px = np.zeros((4, 4, 1), np.uint8)
    top.offer(float("nan"), 0, 0, px)
    top.offer(2.0, 4, 0, px)
    raw = np.zeros((3, 1, 4, 4), np.uint8)
    top.offer_batch(np.array([np.inf, 1.0, np.nan]), np.array([8, 12, 16]), np.array([0, 0, 0]), raw)
    assert [c.score for c in top.ranked()] == [2.0, 1.0]
    assert top.nonfinite == 3 and top.scored == 5 and top.max_score == 2.0


def test_library_calls_from_the_api_audit(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Session 27's API audit: numpy integer seeds, NaN samples, a str output folder, the wire's pattern codes."""
    import logging

    torch = pytest.importorskip("torch")
    from edgeae.masks import PATTERN_IDS, make_mask
    from edgeae.reconstruct import reconstruct
    from edgeae.wire.products import PATTERN_CODES

    # a seed drawn with rng.integers() is np.int64: it made an OverflowError
    assert np.array_equal(make_mask(np.int64(5), (8, 8), 0.5), make_mask(5, (8, 8), 0.5))
    assert np.array_equal(make_mask(np.uint32(7), (8, 8), 0.5), make_mask(7, (8, 8), 0.5))
    # destroyed pixels may hold anything: NaN there must not spread (normconv filled most of the frame with NaN)
    y, x = np.mgrid[0:64, 0:64]
    img = ((x + y) / 126.0).astype(np.float32)[:, :, None]
    k = make_mask(0, (64, 64), 0.2)
    bad = img.copy()
    bad[~k] = np.nan
    for method in ("normconv", "linear", "nearest", "telea"):
        assert np.isfinite(reconstruct(bad, k, method)).all(), method
    # a NaN among the known samples is treated as destroyed, with a warning
    bad2 = img.copy()
    ys, xs = np.nonzero(k)
    bad2[ys[:5], xs[:5]] = np.nan
    with caplog.at_level(logging.WARNING, logger="edgeae.reconstruct"):
        assert np.isfinite(reconstruct(bad2, k, "normconv")).all()
    assert "5 known pixels hold NaN" in caplog.text
    # the wire carries exactly the patterns the mask module makes
    assert PATTERN_CODES == PATTERN_IDS
    # loading a checkpoint does not move torch's global RNG
    from edgeae.predictor import load_predictor

    torch.manual_seed(1)
    state = torch.random.get_rng_state()
    load_predictor("orbital-gray-vae")
    assert torch.equal(state, torch.random.get_rng_state())
    with pytest.raises(ValueError, match="not available"):
        load_predictor("orbital-gray-vae", device="cuda:7")
    # a str output folder works like a Path
    gs = GroundStation(out=str(tmp_path / "g"))  # type: ignore[arg-type]
    for p in packetise(_frame(), config=WireConfig(256)):
        gs.receive(p)
    assert not gs.finish()["stream"].get("products_failed")


def test_artifact_batch_errors_name_the_batch() -> None:
    pytest.importorskip("onnxruntime")
    from edgeae.metadata import MetadataError
    from edgeae.predictor import load_predictor

    art = load_predictor("zoo:orbital-gray-gtcae/orbital-gray-gtcae.int8.onnx")
    with pytest.raises(MetadataError, match="empty"):
        art(np.zeros((0, 1, 128, 128), np.float32))
    with pytest.raises(MetadataError, match=r"\(2, 3, 128, 128\)"):  # the batch axis as given, not 0
        art(np.zeros((2, 3, 128, 128), np.float32))
    from edgeae.firmware_sim.runtime import load_artifact

    with pytest.raises(ValueError, match="threads"):
        load_artifact(art.source, threads=0)


def test_a_cae_scorer_refuses_a_keep_fraction_it_cannot_use_when_made() -> None:
    from edgeae.anomaly.score import make_scorer
    from edgeae.predictor import load_predictor

    cae = load_predictor("zoo:orbital-gray-gtcae/orbital-gray-gtcae.int8.onnx")
    for bad in (0.0, float("nan"), 1.5):
        with pytest.raises(ValueError, match="cae_keep"):
            make_scorer(cae, cae_keep=bad)
    assert make_scorer(cae, cae_keep=0.5).cae_keep == 0.5


def test_arguments_a_call_cannot_honour_are_said_not_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from edgeae.anomaly.score import make_scorer, score_array, score_file
    from edgeae.imageio import write_image
    from edgeae.masks import make_mask
    from edgeae.predictor import load_predictor
    from edgeae.reconstruct import reconstruct

    cae = load_predictor("zoo:orbital-gray-gtcae/orbital-gray-gtcae.int8.onnx")  # fixed 128-px tiles
    img = (np.arange(160 * 160).reshape(160, 160, 1) % 97 / 97).astype(np.float32)
    k = make_mask(0, (160, 160), 0.3)
    with caplog.at_level(logging.WARNING, logger="edgeae.reconstruct"):
        reconstruct(img, k, "cae", predictor=cae, tile=64)
    assert "tile 64 ignored" in caplog.text and "128-px tiles" in caplog.text
    with pytest.raises(ValueError, match="tile must be at least 8"):
        reconstruct(img, k, "cae", predictor=cae, tile=0)
    scorer = make_scorer(cae)
    with pytest.raises(ValueError, match="min_valid"):
        score_array(img, scorer, 128, 128, min_valid=1.5)
    path = write_image(tmp_path / "i.png", img)
    with pytest.raises(ValueError, match="min_valid"):
        score_file(path, scorer, 128, 128, min_valid=2.0)
