"""Science per byte (edgeae.ground.science) and the image-codec baselines, on small synthetic frames."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeae.ground import baselines, science
from edgeae.ground.feature_sets import LabelledFrame, grid_positions
from edgeae.ground.link import LinkConfig

pytest.importorskip("imagecodecs")
pytest.importorskip("cv2")


def scene(h: int = 192, w: int = 256, c: int = 1, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = 100 + 40 * np.sin(xx / 17.0) * np.cos(yy / 23.0)
    return np.clip(base[..., None] + rng.normal(0, 3, (h, w, c)), 0, 255).astype(np.uint8)


def feature_frame() -> LabelledFrame:
    img = scene()
    img[64:128, 128:192] = np.where((np.indices((64, 64)).sum(0) // 8) % 2, 250, 5)[..., None]  # a rare feature
    return LabelledFrame("t", "synthetic", img, 64, np.array([[128, 64]]), "test")


def inpaint_fill(image: np.ndarray, known: np.ndarray) -> np.ndarray:
    from edgeae.inpaint import inpaint

    return np.asarray(inpaint(image, known, "telea"), np.float32)


def contrast_score(batch: np.ndarray) -> dict:
    return {"score": batch.reshape(len(batch), -1).std(axis=1)}


def test_grid_is_the_flight_grid() -> None:
    g = grid_positions(200, 130, 64)
    assert g[:3].tolist() == [[0, 0], [64, 0], [66, 0]]  # right edge flush
    assert len(g) == 4 * 3


@pytest.mark.parametrize("method", science.METHODS)
def test_every_method_fits_its_budget(method: str) -> None:
    fr = feature_frame()
    scores = science.score_grid(fr, contrast_score)
    cfg = science.PlanConfig()
    for frac in (0.05, 0.2):
        budget = int(frac * fr.samples.nbytes)
        sent = science.plan(fr, scores, budget, method, cfg)
        assert 0.8 * budget < sent.wire_bytes <= budget
        assert all(len(p) <= cfg.max_packet for p in sent.packets)


def test_prioritised_sends_the_feature_at_full_resolution() -> None:
    fr = feature_frame()
    scores = science.score_grid(fr, contrast_score)
    assert int(np.argmax(scores)) == [tuple(p) for p in fr.grid()].index((128, 64))
    sent = science.plan(fr, scores, int(0.2 * fr.samples.nbytes), "prioritised", science.PlanConfig())
    assert sent.patches[0] == (128, 64)
    got = science.receive(fr, sent, LinkConfig(), inpaint_fill)
    m = science.metrics(fr, got)
    assert m["feature_recall"] == 1.0 and m["feature_psnr"] == science.MAX_PSNR
    sparse = science.receive(fr, science.plan(fr, scores, int(0.2 * fr.samples.nbytes), "sparse", science.PlanConfig()),
                             LinkConfig(), inpaint_fill)  # fmt: skip
    ms = science.metrics(fr, sparse)
    assert ms["feature_recall"] == 0.0 and ms["feature_psnr"] < 40


def test_evaluate_rows_markdown_and_verdicts() -> None:
    fr = feature_frame()
    cfg = science.PlanConfig(budgets=(0.05, 0.1))
    links = {"perfect": LinkConfig(), "loss 20%": LinkConfig(loss=0.2)}
    rows = science.evaluate([fr], contrast_score, inpaint_fill, cfg, links, seeds=1)
    assert len(rows) == 2 * len(science.METHODS) * 2
    json.dumps(rows)  # the benchmark writes them as JSON
    md = science.markdown(rows)
    assert "| 5% | prioritised |" in md and "loss 20%" in md
    v = science.verdicts(rows, (0.05,))
    assert {x["method"] for x in v} == {"prioritised", "prioritised-j2k"} and all("wins" in x for x in v)


def test_codec_baselines_hit_the_budget_and_survive_loss() -> None:
    img = scene(c=3)
    for codec in ("jpeg", "jpeg2000", "webp"):
        data, _ = baselines.at_bytes(img, codec, 3000)
        assert len(data) <= 3000
        out = baselines.decode(data, codec, img.shape)
        assert out is not None and out.shape == img.shape
    rows = baselines.same_bytes(img, ["jpeg2000", "webp"], 6000, LinkConfig(loss=0.5, seed=3), 256)
    assert all(r["wire_bytes"] <= 6000 for r in rows)
    assert all(r["decoded"] in ("complete", "prefix", "zero-fill", "undecodable") for r in rows)
    with pytest.raises(ValueError, match="budget"):
        baselines.at_bytes(img, "jpeg2000", 10)


def test_a_codec_file_without_its_header_is_not_decoded_from_zeros() -> None:
    img = scene()
    data, _ = baselines.at_bytes(img, "jpeg2000", 4000)
    original = np.frombuffer(data, np.uint8)
    received = np.ones(len(original), bool)
    received[:200] = False  # the first packet (main header) lost
    im, how = baselines.decode_partial(np.where(received, original, 0), received, "jpeg2000", img.shape, img)
    assert im is None and how == "undecodable"
    received[:200], received[1000:1200] = True, False  # a later gap: the prefix still decodes
    im, how = baselines.decode_partial(np.where(received, original, 0), received, "jpeg2000", img.shape, img)
    assert im is not None and how in ("prefix", "zero-fill")


@pytest.mark.parametrize("method", ["jpeg2000", "prioritised-j2k"])
def test_codec_header_is_resent_last_and_fills_a_lost_first_packet(method: str) -> None:
    from edgeae.ground.decode import decode_flat
    from edgeae.ground.reassembly import Receiver

    fr = feature_frame()
    scores = science.score_grid(fr, contrast_score)
    budget = int(0.2 * fr.samples.nbytes)
    sent = science.plan(fr, scores, budget, method, science.PlanConfig(codec_head_copies=1))
    assert sent.wire_bytes <= budget
    tm = [i for i, p in enumerate(sent.packets) if Receiver().receive(p).kind == "telemetry"]
    assert tm[-1] == len(sent.packets) - 1  # the copy goes last (after the context and the patches)
    rx = Receiver()
    for i, p in enumerate(sent.packets):
        if i != tm[0]:  # the original first packet of the codec file is lost
            rx.receive(p)
    asm = next(a for (kind, _, _), a in rx.products.items() if kind == "telemetry")
    assert decode_flat(asm).received.all()
    without = science.plan(fr, scores, budget, method, science.PlanConfig(codec_head_copies=0))
    assert len(without.packets) <= len(sent.packets)


def test_packetise_resends_only_the_asked_parts() -> None:
    from edgeae.wire.packets import SequenceCounters, packetise
    from edgeae.wire.products import TelemetryRecord

    rec = TelemetryRecord(0, bytes(range(256)) * 20)
    counters = SequenceCounters()
    full = packetise(rec, counters=counters)
    again = packetise(rec, counters=counters, parts=[0, 0])
    assert len(full) > 1 and len(again) == 2
    assert again[0][6:-2] == again[1][6:-2] == full[0][6:-2]  # same piece (CRC aside), new sequence counts
    assert len({full[-1][2:4], again[0][2:4], again[1][2:4]}) == 3
    with pytest.raises(ValueError, match="parts"):
        packetise(rec, parts=[len(full)])


def test_oracle_ranking_sends_the_labelled_patches_first() -> None:
    fr = feature_frame()
    rows = science.evaluate(
        [fr], None, None, science.PlanConfig(budgets=(0.2,)), {"perfect": LinkConfig()},
        methods=("prioritised-j2k",), oracle=True,
    )  # fmt: skip
    assert rows[0]["patches_sent"] >= 1 and rows[0]["features_in_sent"] == 1  # the one feature patch, sent first
    assert rows[0]["feature_recall"] == 1.0


def test_score_grid_ranks_a_vae_by_its_frame_normalised_terms() -> None:
    """A VAE scorer's patches are ranked by the orbital mission's flight score (terms-max) by default; the
    terms' units do not matter, and ``score="a"`` keeps a(x)."""
    from edgeae.anomaly.terms import frame_terms_max

    fr = feature_frame()

    def vae_like(batch: np.ndarray) -> dict:
        flat = batch.reshape(len(batch), -1)
        rec, mu2 = 1e3 * flat.std(axis=1) ** 2, flat.mean(axis=1) * 1e-3  # texture term vs a tiny brightness term
        return {"score": rec + mu2, "rec": rec, "mu2": mu2}

    tm, a = science.score_grid(fr, vae_like, score="terms-max"), science.score_grid(fr, vae_like, score="a")
    got = vae_like(np.stack([fr.samples[y : y + 64, x : x + 64].transpose(2, 0, 1) / 255.0 for x, y in fr.grid()]))
    np.testing.assert_allclose(tm, frame_terms_max(got["rec"], got["mu2"]), rtol=1e-5)  # float32 patches there
    assert tuple(fr.grid()[int(np.argmax(tm))]) == (128, 64)  # the textured feature leads
    np.testing.assert_allclose(a, got["score"], rtol=1e-5)
    assert np.array_equal(science.score_grid(fr, contrast_score), science.score_grid(fr, contrast_score, score="a"))
    with pytest.raises(ValueError, match="score must be"):
        science.score_grid(fr, vae_like, score="z")
