"""Session 30 audit fixes in the flight runtime's scoring:

- a partial patch (some no-data pixels, valid fraction >= min_valid) is scored with its no-data pixels filled
  with the mean of its valid ones, as the ground fills it (``edgeae.nodata.fill_patches``), on the ScoreEngine
  fast path and on the PatchScorer fallback alike; a black margin no longer ranks its patches first;
- the in-frame deadline projection counts the patches left in the whole batches they are scored in.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from edgeae.firmware_sim.budget import patch_selected, scoring_left_ms, selected_per_row
from edgeae.firmware_sim.frame_work import FrameWork
from edgeae.firmware_sim.score import PatchScorer, fill_no_data

ZOO_VAE = Path(__file__).resolve().parents[1] / "edgeae" / "zoo" / "artifacts" / "orbital-gray-vae"
FRAME = "orbital_gray/lroc_nac_craters/M1229577647_mosaic_train_small.png"  # 800 x 800, 8-bit, no no-data
BAND = 16  # black columns planted at the left: the first column of 64-px patches is 0.73 valid


def _mission(fallback_model: str, min_valid: float = 0.5) -> object:
    from edgeae.firmware_sim.mission import load_mission, mission_from_dict

    base = load_mission("orbital_nac")
    return mission_from_dict(
        {
            "name": "nodata-fill",
            "camera": {"source": "strips", "channels": 1, "height": 0, "width": 0, "bit_depth": 8, "strip_rows": 256},
            "sampling": {"keep": 0.02, "seed": 1, "min_keep": 0.002},
            "anomaly": {"model": fallback_model, "method": "vae", "patch": 64, "stride": 64, "batch": 16,
                        "top_k": 64, "min_valid": min_valid, "score": "a"},
            "reconstruction": {"mode": "off"},
            "budget": {"frame_ms": 1e7, "memory_bytes": base.budget.memory_bytes},
            "runtime": {"threads": 1},
        }
    )  # fmt: skip


def test_fill_no_data_is_the_ground_fill_and_fills_with_the_valid_mean() -> None:
    from edgeae.strips import fill_patches

    assert fill_no_data is fill_patches  # one function for flight and ground (edgeae.nodata)
    rng = np.random.default_rng(0)
    pix = rng.random((5, 3, 16, 16), dtype=np.float32)
    valid = rng.random((5, 16, 16)) > 0.3
    valid[1] = True  # whole: left as read
    valid[2] = False  # no valid pixel: left as read
    got = fill_no_data(pix.copy(), valid)
    for k in (0, 3, 4):  # an independent reference: each channel's no-data pixels take its valid mean
        for c in range(3):
            ref = np.where(valid[k], pix[k, c], pix[k, c][valid[k]].mean())
            np.testing.assert_allclose(got[k, c], ref, rtol=1e-6)
    assert np.array_equal(got[1:3], pix[1:3])


def test_patch_scorer_fills_a_partial_patch_for_the_vae_only() -> None:
    seen: list[np.ndarray] = []

    def predictor(x: np.ndarray) -> dict[str, np.ndarray]:
        seen.append(x.copy())
        return {"score": np.zeros(len(x), np.float32)}

    tile = np.full((8, 8, 1), 200, np.uint8)
    tile[:, :2] = 0  # the margin
    valid = np.ones((8, 8), bool)
    valid[:, :2] = False
    vae = PatchScorer(predictor, "vae", 8, 1, 2, 8)
    vae.load(0, tile, None, valid)
    vae.run(1)
    assert np.allclose(seen[0][0, 0], np.float32(200) * np.float32(1 / 255))  # the margin holds the valid mean
    cae = PatchScorer(lambda x: x, "cae-masked", 8, 1, 2, 8)
    cae.load(0, tile, np.ones((8, 8), bool), valid)
    assert np.all(cae.buf[0, 0][:, :2] == 0) and np.all(cae.weight[0, 0][:, :2] == 0)  # neither shown nor scored


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_score_runner_fills_the_partial_patches_it_is_given(fmt: str) -> None:
    pytest.importorskip("ai_edge_litert" if fmt == "tflite" else "onnxruntime")
    from edgeae.firmware_sim.runtime import load_artifact
    from edgeae.firmware_sim.score import score_runner

    from edgeae.strips import fill_patches

    rng = np.random.default_rng(1)
    raw = rng.integers(40, 220, (20, 1, 64, 64), dtype=np.uint8)
    raw[3, :, :, :12] = 0
    raw[17, :, 50:] = 0
    valid = np.ones((20, 64, 64), bool)
    valid[3, :, :12] = False
    valid[17, 50:] = False
    at = np.array([3, 17])
    path = ZOO_VAE / f"orbital-gray-vae.int8.{fmt}"
    run = score_runner(load_artifact(path, threads=1), raw_max=255)
    as_float = score_runner(load_artifact(path, threads=1))
    want = as_float(fill_patches(raw * np.float32(1 / 255), valid))
    got = run(raw.copy(), (at, valid[at]))
    assert np.array_equal(got, want)  # the quantised input of the float route, bit for bit
    plain = run(raw.copy())
    assert np.array_equal(np.delete(got, at), np.delete(plain, at)) and np.all(got[at] != plain[at])


@pytest.mark.parametrize(
    ("fast", "fmt", "min_valid"),
    [(True, "onnx", 0.5), (True, "tflite", 0.5), (False, "onnx", 0.5), (True, "onnx", 0.0), (False, "onnx", 0.0)],
    ids=["engine", "engine-litert", "scorer", "engine-min-valid-0", "scorer-min-valid-0"],
)
def test_flight_scores_a_partial_patch_as_the_ground_fills_it(
    data_root: Path, tmp_path: Path, fast: bool, fmt: str, min_valid: float
) -> None:
    pytest.importorskip("ai_edge_litert" if fmt == "tflite" else "onnxruntime")
    from edgeae.firmware_sim.loop import FlightRuntime
    from edgeae.firmware_sim.runtime import load_artifact
    from edgeae.firmware_sim.score import score_runner

    from edgeae.imageio import read_image
    from edgeae.nodata import valid_mask
    from edgeae.strips import fill_patches

    path = data_root / FRAME
    if not path.is_file():
        pytest.skip(f"{path} not found")
    im = read_image(path)
    assert im.raw_dtype == "uint8"
    raw = np.round(im.pixels[:512, :512, 0] * 255).astype(np.uint8)
    img = raw.copy()
    img[:, :BAND] = 0  # a black margin band over part of the first column of patches
    np.save(tmp_path / "f.npy", img)

    model = str(ZOO_VAE / f"orbital-gray-vae.int8.{fmt}")
    rt = FlightRuntime(_mission(model, min_valid), tmp_path / "out")
    try:
        if not fast:
            assert rt.models.engine is not None
            rt.models.engine.close()
            rt.models.engine = None  # the PatchScorer fallback
        rec = rt.process(tmp_path / "f.npy")
    finally:
        rt.finish()
    assert rec["patches"]["scored"] == 64 and rec["patches"]["nodata_skipped"] == 0
    got = {(c["x"], c["y"]): c["score"] for c in rec["anomaly"]["patches"]}
    assert len(got) == 64

    # the ground's fill of the same pixels, with the flight's own valid mask (per 256-row strip)
    valid = np.concatenate(
        [
            valid_mask(img[r : r + 256, :, None], bit_depth=8, row0=r, frame_height=512,
                       edges=("left", "right", "top" if r == 0 else "bottom"))
            for r in (0, 256)
        ]
    )  # fmt: skip
    assert not valid[:, :BAND].any() and valid[:, 64:].all()
    ys = list(range(0, 512, 64))
    tiles = np.stack([img[y : y + 64, :64] for y in ys])[:, None] * np.float32(1 / 255)
    masks = np.stack([valid[y : y + 64, :64] for y in ys])
    assert np.all((masks.mean(axis=(1, 2)) > 0.5) & (masks.mean(axis=(1, 2)) < 1))  # partial, above min_valid
    run = score_runner(load_artifact(model, threads=1))
    want = run(fill_patches(tiles.copy(), masks))
    as_read = run(tiles.copy())
    flight = np.array([got[(0, y)] for y in ys])
    np.testing.assert_allclose(flight, want, rtol=1e-5)
    assert np.all(as_read > 4 * want)  # read as black, the margin's edge scored (6-12x)

    whole = np.array([s for (x, _), s in got.items() if x >= 64])
    assert as_read.max() > whole.max()  # as read, a partial margin patch outranked every whole one
    best = max(got, key=lambda k: got[k])
    assert best[0] >= 64  # filled, content ranks first
    assert int((whole > flight.max()).sum()) >= 5  # and the best margin patch is well down the list


def test_selected_per_row_counts_patch_selected() -> None:
    rows = np.arange(7)
    for n_cols in (1, 4, 5, 79):
        for every in (0, 1, 2, 4):
            want = [sum(patch_selected(int(i), j, every) for j in range(n_cols)) for i in rows]
            assert selected_per_row(rows, n_cols, every).tolist() == want


def test_scoring_left_ms_counts_whole_batches() -> None:
    # 100 patches in batches of 16: 7 calls, 112 patches' time (the per-patch projection said 100)
    assert scoring_left_ms([100], 16, 1.0) == 112.0
    assert scoring_left_ms([96], 16, 0.5) == 48.0  # a divisor: unchanged
    assert scoring_left_ms([100], 16, 1.0, in_flight=2) == 144.0  # batches already submitted count whole
    assert scoring_left_ms([10, 10, 0], 16, 1.0) == 32.0  # a part batch flushed at each strip's end
    assert scoring_left_ms([10, 10], 1, 2.0) == 40.0  # a dynamic batch: patch by patch
    assert scoring_left_ms([], 16, 1.0) == 0.0


def _fw(engine: object, batch_n: int = 0, cost_batch: int = 1) -> SimpleNamespace:
    return SimpleNamespace(
        ys=list(range(0, 1024, 64)),  # 16 patch rows
        xs=list(range(0, 5 * 64, 64)),  # 5 columns
        every=1,
        batch_n=batch_n,
        strip_rows=256,  # 4 patch rows a strip
        rt=SimpleNamespace(engine=engine, cost=SimpleNamespace(batch=cost_batch)),
    )


def test_in_frame_projection_rounds_up_to_whole_batches() -> None:
    eng = SimpleNamespace(batch=16, pending=1)
    # rows 512.. hold 8 patch rows x 5 = 40 patches, plus 3 in the batch being filled: 43 -> 3 batches of 16,
    # plus the one in flight: 64 patches' time (the per-patch projection said 16 + 40 = 56, without the 3)
    assert FrameWork._scoring_left(_fw(eng, batch_n=3), 512, 1.0) == 64.0
    # the PatchScorer: 20 patches a strip, flushed at each strip's end, in calls of the model's padded batch (16)
    assert FrameWork._scoring_left(_fw(None, cost_batch=16), 512, 1.0) == 64.0
    assert FrameWork._scoring_left(_fw(None, cost_batch=1), 512, 1.0) == 40.0  # a dynamic batch
    every2 = _fw(None, cost_batch=16)
    every2.every = 2  # 3 + 2 patches a row: 10 a strip -> one call of 16 per strip
    assert FrameWork._scoring_left(every2, 512, 1.0) == 32.0
