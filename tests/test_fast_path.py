"""The fast scoring path (firmware-sim, edgeae score, edgeae scan) gives the numbers of the path it replaced.

- zero-copy tiling (:func:`edgeae.strips.iter_patch_blocks`, :func:`edgeae.scan.pipeline.tile_image`) equals
  the per-patch iteration: positions, order, pixels, valid fractions, skipped counts, chunk boundaries;
- the :class:`~edgeae.firmware_sim.score.ScoreEngine` (several interpreters on threads) returns each batch's
  scores in submission order, equal to one interpreter scoring them one after the other;
- the flight loop's fast path (shipped int8 VAE, two interpreters, strided patch extraction, prefetched
  strips) keeps exactly the patches, counts and scores of the sequential ``PatchScorer`` path;
- the int8 default of ``edgeae scan`` ranks patches as the fp32 checkpoint does within the export parity
  gate (score Spearman >= 0.99).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from edgeae.firmware_sim.score import ScoreEngine, TopK

ZOO_VAE = Path(__file__).resolve().parents[1] / "edgeae" / "zoo" / "artifacts" / "orbital-gray-vae"
PARITY_SPEARMAN = 0.99  # export/parity.py budget for int8 VAE scores


def _textured(h: int, w: int, seed: int = 0, margin: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = 120 + 60 * np.sin(xx / 7.0 + seed) * np.cos(yy / 11.0) + rng.normal(0, 12, (h, w))
    img[h // 3 : h // 3 + 40, w // 2 : w // 2 + 40] = 250  # a bright block: an obvious anomaly
    out = np.clip(img, 1, 254).astype(np.uint8)
    if margin:
        out[:, :margin] = 0
        out[:, w - margin :] = 0
    return out


@pytest.fixture(scope="module")
def tiff(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tifffile = pytest.importorskip("tifffile")
    p = tmp_path_factory.mktemp("fast") / "strip.tif"
    tifffile.imwrite(p, _textured(700, 333, margin=30), tile=(64, 64))
    return p


@pytest.mark.parametrize("stride", [64, 48])
def test_patch_blocks_equal_iter_patches(tiff: Path, stride: int) -> None:
    from edgeae.strips import iter_patch_blocks, iter_patches

    ref = list(iter_patches(tiff, 64, stride, channels=1))
    blocks = list(iter_patch_blocks(tiff, 64, stride, channels=1))
    ys = np.concatenate([b.ys for b in blocks])
    xs = np.concatenate([b.xs for b in blocks])
    fr = np.concatenate([b.valid_frac for b in blocks])
    pix = np.concatenate([b.pixels(np.arange(b.ys.size)) for b in blocks])
    assert [(p.y, p.x) for p in ref] == list(zip(ys.tolist(), xs.tolist(), strict=True))
    assert np.array_equal([p.valid_frac for p in ref], fr)
    assert np.array_equal(np.stack([p.pixels.transpose(2, 0, 1) for p in ref]), pix)
    assert all(np.shares_memory(b.windows, b.windows.base) for b in blocks if b.windows.base is not None)


@pytest.mark.parametrize("batch", [7, 64])
def test_scan_tiling_equals_the_per_patch_reference(tiff: Path, batch: int) -> None:
    from edgeae.scan.pipeline import ScanConfig, tile_image, tile_image_reference
    from edgeae.scan.scoring import ModelSpec

    spec = ModelSpec(str(tiff), "m", "0" * 64, "vae", 64, 1)
    cfg = ScanConfig(spec, stride=48, batch_size=batch, min_valid=0.9)
    fast, ref = list(tile_image(tiff, cfg)), list(tile_image_reference(tiff, cfg))
    assert len(fast) == len(ref) and sum(c.n_skipped for c in ref) > 0
    for a, b in zip(fast, ref, strict=True):
        assert np.array_equal(a.xs, b.xs) and np.array_equal(a.ys, b.ys) and np.array_equal(a.valid, b.valid)
        assert np.array_equal(a.pixels, b.pixels) and a.n_skipped == b.n_skipped


def test_score_file_equals_the_per_patch_path(tiff: Path) -> None:
    pytest.importorskip("onnxruntime")
    from edgeae.firmware_sim.runtime import load_artifact

    from edgeae.anomaly.score import _collect, make_scorer, score_file
    from edgeae.strips import iter_patches

    scorer = make_scorer(load_artifact(ZOO_VAE / "orbital-gray-vae.int8.onnx", threads=1))
    fast = score_file(tiff, scorer, 64, 48, min_valid=0.9, batch=32, progress=False)
    items = ((int(q.x), int(q.y), q.pixels, float(q.valid_frac)) for q in iter_patches(tiff, 64, 48, channels=1))
    ref = _collect(str(tiff), items, scorer, 64, (700, 333), 32, 0.9)
    assert len(fast) == len(ref) > 0
    for k in ("x", "y", "valid_frac", "score"):
        assert np.array_equal(getattr(fast, k), getattr(ref, k)), k
    assert fast.extras.keys() == ref.extras.keys()
    assert all(np.array_equal(fast.extras[k], ref.extras[k]) for k in ref.extras)


def test_engine_returns_results_in_submission_order() -> None:
    import time

    def make() -> object:
        def run(batch: np.ndarray) -> np.ndarray:
            time.sleep(0.002 * (int(batch[0, 0, 0, 0]) % 3))  # finish out of order
            return batch.reshape(len(batch), -1).sum(axis=1).astype(np.float64)

        return run

    batches = [np.full((4, 1, 2, 2), i, np.float32) for i in range(20)]
    got = []
    with ScoreEngine(make, workers=2, depth=3) as eng:
        for i, b in enumerate(batches):
            got += eng.submit(b, i)
        got += eng.drain()
        assert eng.ms_per_item is not None and eng.done_items == 80
    assert [t for t, _ in got] == list(range(20))
    assert all(np.array_equal(s, np.full(4, 4.0 * t)) for t, s in got)


def test_topk_offer_batch_equals_offer() -> None:
    rng = np.random.default_rng(3)
    for threshold in (None, 0.5):
        a, b = TopK(5, threshold), TopK(5, threshold)
        for _ in range(30):
            s = np.round(rng.random(16), 2)  # ties included
            xs, ys = rng.integers(0, 100, 16), rng.integers(0, 100, 16)
            raw = rng.integers(0, 255, (16, 1, 4, 4), dtype=np.uint8)
            for i in range(16):
                a.offer(float(s[i]), int(xs[i]), int(ys[i]), raw[i].transpose(1, 2, 0))
            b.offer_batch(s, xs, ys, raw)
        assert (a.scored, a.flagged, a.max_score) == (b.scored, b.flagged, b.max_score)
        ra, rb = a.ranked(), b.ranked()
        assert [(c.score, c.x, c.y) for c in ra] == [(c.score, c.x, c.y) for c in rb]
        assert all(np.array_equal(c.pixels, d.pixels) for c, d in zip(ra, rb, strict=True))


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_score_runner_equals_the_artifact_predictor(fmt: str) -> None:
    from edgeae.firmware_sim.runtime import load_artifact
    from edgeae.firmware_sim.score import PatchScorer, score_runner

    path = ZOO_VAE / f"orbital-gray-vae.int8.{fmt}"
    pytest.importorskip("ai_edge_litert" if fmt == "tflite" else "onnxruntime")
    raw = _textured(128, 512, seed=1)
    tiles = np.stack([raw[y : y + 64, x : x + 64] for y in (0, 64) for x in range(0, 512, 64)])[:, None]
    slow = PatchScorer(load_artifact(path, threads=1), "vae", 64, 1, len(tiles), 8)
    for k, t in enumerate(tiles):
        slow.load(k, t.transpose(1, 2, 0))
    want = slow.run(len(tiles))
    fast = score_runner(load_artifact(path, threads=1), raw_max=255)
    assert np.array_equal(fast(tiles), want)  # the same quantised input, bit for bit
    if fmt == "tflite":  # the shipped file runs 16 patches per call (export.graphs.VAE_TFLITE_BATCH)
        from edgeae.export.graphs import VAE_TFLITE_BATCH

        assert load_artifact(path, threads=1)._runner.static_batch == VAE_TFLITE_BATCH
    # batches that are not a multiple of the file's static batch (TFLite: 16 per call) are padded per call
    assert np.array_equal(fast(tiles[:5]), want[:5])
    assert np.array_equal(fast(np.concatenate([tiles, tiles[:5]])), np.concatenate([want, want[:5]]))
    as_float = score_runner(load_artifact(path, threads=1))
    assert np.allclose(as_float(tiles.astype(np.float32) * np.float32(1 / 255)), want, rtol=1e-6)


def test_flight_fast_path_equals_the_sequential_path(tmp_path: Path) -> None:
    pytest.importorskip("ai_edge_litert")
    from edgeae.firmware_sim.loop import FlightRuntime
    from edgeae.firmware_sim.mission import load_mission, mission_from_dict

    img = _textured(1024, 640, seed=2, margin=20)
    np.save(tmp_path / "f.npy", img)
    base = load_mission("orbital_nac")
    recs = []
    for fast in (True, False):
        m = mission_from_dict(
            {
                "name": "nac-small",
                "camera": {"source": "strips", "channels": 1, "height": 0, "width": 0, "bit_depth": 8,
                           "strip_rows": 256},
                "sampling": {"keep": 0.02, "seed": 1009, "min_keep": 0.002},
                "anomaly": {"model": str(ZOO_VAE / "orbital-gray-vae.int8.tflite"), "method": "vae", "patch": 64,
                            "stride": 64, "batch": 16, "top_k": 8, "min_valid": 0.9},
                "reconstruction": {"mode": "off"},
                "budget": {"frame_ms": 1e7, "memory_bytes": base.budget.memory_bytes},
                "runtime": {"threads": 2},
            }
        )  # fmt: skip
        rt = FlightRuntime(m, tmp_path / f"out{fast}")
        if not fast:
            assert rt.models.engine is not None
            rt.models.engine.close()
            rt.models.engine = None  # the PatchScorer path, patch by patch
        recs.append(rt.process(tmp_path / "f.npy"))
        rt.finish()
    a, b = recs
    assert a["patches"] == b["patches"] and a["patches"]["nodata_skipped"] > 0
    assert a["anomaly"] == b["anomaly"]  # the same top-k patches with bit-identical scores
    assert a["sparse"] == b["sparse"]


@pytest.mark.parametrize("runtime", ["tflite", "onnx"])
def test_int8_default_ranks_like_the_fp32_checkpoint(runtime: str) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("ai_edge_litert" if runtime == "tflite" else "onnxruntime")
    from scipy.stats import spearmanr

    from edgeae.scan.scoring import load_scorer, resolve_model

    int8 = resolve_model("orbital-gray-vae", runtime=runtime)
    fp32 = resolve_model("orbital-gray-vae", precision="fp32")
    assert int8.path.endswith(f".int8.{runtime}") and fp32.path.endswith(".pt")
    rng = np.random.default_rng(0)
    imgs = [_textured(256, 256, seed=s) for s in range(4)]
    x = np.stack([im[y : y + 64, xx : xx + 64] for im in imgs for y in range(0, 256, 64) for xx in range(0, 256, 64)])
    x = (x[:, None].astype(np.float32) / 255.0)[rng.permutation(len(x))]
    a, b = load_scorer(int8)(x), load_scorer(fp32)(x)
    assert spearmanr(a, b).statistic >= PARITY_SPEARMAN


def test_scan_picks_the_int8_runtime_by_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """auto: onnxruntime first on x86 without VNNI (faster there), LiteRT first elsewhere; a pinned runtime
    is used as asked, and one that cannot be had is an error, not a silent fallback to the checkpoint."""
    pytest.importorskip("ai_edge_litert")
    from edgeae.firmware_sim import cpu

    from edgeae.scan import scoring

    for no_vnni, suffix in ((True, ".int8.onnx"), (False, ".int8.tflite")):
        monkeypatch.setattr(cpu, "x86_without_vnni", lambda v=no_vnni: v)
        assert str(scoring.shipped_int8("orbital-gray-vae")).endswith(suffix)
        assert str(scoring.shipped_int8("orbital-gray-vae", "tflite")).endswith(".int8.tflite")
        assert str(scoring.shipped_int8("orbital-gray-vae", "onnx")).endswith(".int8.onnx")
    with pytest.raises(ValueError, match="runtime must be one of"):
        scoring.int8_preference("tensorrt")
    with pytest.raises(ValueError, match="no shipped int8 onnx artifact"):
        scoring.resolve_model("rover-rgb-vae", runtime="onnx")  # the rover VAE ships no int8 file
    with pytest.raises(ValueError, match="picks an int8 artifact"):
        scoring.resolve_model("orbital-gray-vae", precision="fp32", runtime="tflite")


def test_scan_rate_clock_separates_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from edgeae.scan.report import RateClock, lro_extrapolation

    now = [1000.0]  # a fake perf_counter (RateClock reads it): no real sleeping, exact numbers
    monkeypatch.setattr(time, "perf_counter", lambda: now[0])
    seen: list[int] = []
    t0 = now[0]
    clock = RateClock(seen.append, t0)
    now[0] += 0.5  # start-up
    for _ in range(4):
        clock(100)
        now[0] += 0.25
    r = clock.rates(400, now[0])
    assert seen == [100] * 4
    # start-up ends at the first report; the 300 patches after it took the remaining 4 x 0.25 s
    assert r == {"startup_seconds": 0.5, "scoring_seconds": 1.0, "patches_per_s_scoring": 300.0}
    assert lro_extrapolation(6400.0, basis="scoring time")["rate_basis"] == "scoring time"
    tiny = RateClock(seen.append, t0)  # a few small images: the first report holds most of the patches
    tiny(40)
    tiny(3)
    assert tiny.rates(43, now[0] + 0.3)["patches_per_s_scoring"] is None  # the wall rate is used


def test_cae_masked_error_counts_valid_pixels_only() -> None:
    """A patch that overlaps a dark margin by a few rows (above min_valid) is scored on its valid pixels: the
    margin's edge, which no CAE predicts, cannot make it anomalous (the rover frame's top rows did)."""
    from edgeae.firmware_sim.score import PatchScorer

    p = 16
    truth = np.full((p, p, 3), 200, np.uint8)
    truth[:2] = 3  # two dark margin rows
    predictor = lambda batch: np.full_like(batch, 200 / 255)  # noqa: E731  (predicts the content, not the margin)
    sc = PatchScorer(predictor, "cae-masked", p, 3, 2, 8)
    valid = np.ones((p, p), bool)
    valid[:2] = False
    keep = np.ones((p, p), bool)
    sc.load(0, truth, keep)  # no valid mask: the margin rows count
    sc.load(1, truth, keep, valid)
    s = sc.run(2)
    assert s[0] > 0.05 and s[1] == pytest.approx(0.0, abs=1e-12)
