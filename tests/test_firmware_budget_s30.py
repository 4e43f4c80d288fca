"""The per-frame memory plan counts what a frame allocates on its scoring path, bounded by what the frame has
(session 30 audit, items 2 and 9), and the reconstruction check records the distinct tiles it checked or why
it checked none."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from edgeae.firmware_sim.budget import patch_grid, plan_memory, recon_check_positions, scoring_plan
from edgeae.firmware_sim.mission import mission_from_dict

P = 32
MARGIN = 8 * 2**20  # docs/firmware_sim.md: the plan is within 8 MiB of a frame's measured RSS growth


def _mission(**sections: dict[str, Any]) -> Any:
    doc: dict[str, Any] = {
        "name": "plan",
        "camera": {"channels": 1, "strip_rows": 256, "source": "strips", "width": 512, "height": 800},
        "sampling": {"keep": 0.02, "seed": 1, "min_keep": 0.002},
        "anomaly": {"model": "vae.onnx", "method": "vae", "patch": 64, "stride": 64, "batch": 64, "top_k": 16},
        "reconstruction": {"mode": "off"},
        "runtime": {"threads": 2},
    }
    for k, v in sections.items():
        doc[k] = {**doc.get(k, {}), **v}
    return mission_from_dict(doc)


def _rover(**anomaly: Any) -> Any:
    """The rover mission's shape: whole RGB files, CAE-masked 128-px patches, a 2-tile reconstruction check."""
    return _mission(
        camera={"channels": 3, "source": "files", "width": 0, "height": 0, "strip_rows": 1200},
        anomaly={"method": "cae-masked", "model": "cae.onnx", "patch": 128, "stride": 128, "batch": 8, "top_k": 6}
        | anomaly,
        reconstruction={"mode": "check", "model": "cae.onnx", "tile": 128, "check_tiles": 2},
    )


# ------------------------------------------------------------------ the plan function
def test_fast_path_plan_counts_raw_batches_and_runner_input_not_the_boot_buffers() -> None:
    m = _mission(anomaly={"batch": 1000})  # an 800 x 512 strip frame: 12 x 8 = 96 patches
    assert patch_grid(m, 512, 800) == 96
    plan = plan_memory(m, 512, 800, 535_128, 1)
    items = dict(plan.items)
    # raw uint8 batches (at most the frame's 96 patches in flight) + per interpreter (2) float32 input and a copy
    assert items["patch_batch_f32"] == 96 * 4096 + 2 * 96 * 4096 * 4 * 2 == 6_684_672
    assert items["patch_batch_f32"] * 7 < 1000 * 4096 * 4 * 3  # was batch x patch^2 x 4 x 3 = 49,152,000 B
    # allocated at boot, so in the RSS the frame check starts from: listed, never added again
    boot = dict(plan.boot)
    assert boot == {"model_image": 535_128, "patch_scorer_buffers": 1000 * 4096 * 4 * 2}
    # held items summed, the loop's steps (here the pixel check's and the no-data mask's) one at a time (session 39, h9)
    held = sum(v for n, v in plan.items if n not in plan.steps)
    assert "model_image" not in items and plan.total == held + plan.step_peak < sum(items.values())
    assert plan.as_dict()["boot_held"] == boot and plan.as_dict()["total"] == plan.total
    # a frame with more patches than the batch allocates whole batches, in flight on both interpreters
    big = dict(plan_memory(m, 5064, 52224, 0, 1).items)["patch_batch_f32"]
    assert big == 5 * 1000 * 4096 + 2 * 1000 * 4096 * 4 * 2


def test_patch_scorer_path_plans_its_call_temporaries_for_the_patches_the_frame_has() -> None:
    m = _rover(batch=64)
    grid = patch_grid(m, 384, 256)
    assert grid == 2 * 3
    f32 = 128 * 128 * 3 * 4
    frame, boot = scoring_plan(m, 3, grid)
    # x_hat, its error, the weighted squared error, an NHWC artifact's layout copy and what a real frame's heap did not
    # reuse (3 until session 40, fixer h8): 6 patches, not 64
    assert frame == 6 * f32 * 5
    assert boot == 64 * (2 * f32 + 128 * 128 * 4)  # input, truth and weight buffers, allocated at boot
    assert dict(plan_memory(m, 384, 256, 0, 3).boot)["patch_scorer_buffers"] == boot
    # an unknown frame size (a camera of any size, before a frame): the batch bounds it
    assert scoring_plan(m, 3, None)[0] == 64 * f32 * 5


def test_top_k_is_clamped_to_the_frame_patch_grid() -> None:
    m = _rover(top_k=5000)
    items = dict(plan_memory(m, 384, 256, 0, 3).items)
    assert items["top_k_patches"] == 6 * 128 * 128 * 3  # 6 patches in the frame, not 5,000
    assert dict(plan_memory(m, 0, 0, 0, 3).items)["top_k_patches"] == 5000 * 128 * 128 * 3  # size unknown
    terms = _mission(anomaly={"score": "terms-max", "top_k": 5000})  # two keepers and 24 B per scored patch
    assert dict(plan_memory(terms, 512, 800, 0, 1).items)["top_k_patches"] == 2 * 96 * 4096 + 24 * 96


def test_check_tiles_is_clamped_to_the_tile_grid() -> None:
    m = _mission(
        camera={"channels": 3, "source": "files", "width": 0, "height": 0},
        reconstruction={"mode": "check", "model": "cae.onnx", "tile": 128, "check_tiles": 1_000_000},
    )
    items = dict(plan_memory(m, 384, 256, 0, 3).items)
    # 2 x 3 cells; was 589,830,144,000 B; on the VAE's fast path the engine's batches beside them (session 39, h12)
    assert items["recon_tiles_f32"] - items["patch_batch_f32"] == 6 * 128 * 128 * 3 * 17
    # a streamed frame checks one strip: its tile grid
    s = _mission(reconstruction={"mode": "check", "model": "cae.onnx", "tile": 128, "check_tiles": 1_000_000})
    items = dict(plan_memory(s, 512, 800, 0, 1).items)
    assert items["recon_tiles_f32"] - items["patch_batch_f32"] == 2 * 4 * 128 * 128 * 17


def test_recon_check_positions_are_distinct_cells_spread_over_rows_and_columns() -> None:
    assert recon_check_positions(128, 384, 128, 10) == [(0, 0), (0, 128), (0, 256)]  # one row: 3 cells
    assert recon_check_positions(256, 384, 128, 2) == [(0, 0), (128, 256)]  # opposite corners
    six = recon_check_positions(256, 384, 128, 1_000_000)
    assert len(six) == len(set(six)) == 6
    picks = recon_check_positions(1200, 1648, 128, 5)
    assert len(set(picks)) == 5 and len({y for y, _ in picks}) >= 3  # not the top rows only
    assert recon_check_positions(100, 384, 128, 2) == recon_check_positions(256, 100, 128, 2) == []
    assert recon_check_positions(300, 300, 128, 3) == [(0, 0), (128, 128), (172, 172)]  # last flush with the edge


# ------------------------------------------------------------------ real runs on the stand-in models
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from edgeae.firmware_sim.loop import FlightRuntime  # noqa: E402
from edgeae.firmware_sim.testing import small_mission, textured_frame, tiny_models  # noqa: E402


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return tiny_models(tmp_path_factory.mktemp("models"), 1, P)


def _frames(out: Path) -> list[dict[str, Any]]:
    lines = (json.loads(x) for x in (out / "telemetry.jsonl").read_text().splitlines())
    return [r for r in lines if r.get("type") == "frame"]


@pytest.mark.parametrize("method", ["vae", "cae-masked"])
def test_planned_memory_matches_the_measured_growth(tmp_path: Path, models: dict[str, Path], method: str) -> None:
    # a 128 x 192 frame has 24 patches and 24 tiles: a batch of 1,000, a top-k of 5,000 and 1,000 check tiles
    # were planned as asked (about 30 MB more than the frame uses), now as the frame has them
    anomaly = {"batch": 1000, "top_k": 5000, "method": method}
    if method == "cae-masked":
        anomaly["model"] = str(models["cae"])
    m = small_mission(models, anomaly=anomaly, reconstruction={"check_tiles": 1000}, budget={"frame_ms": 1e6})
    rt = FlightRuntime(m, tmp_path)
    for i in range(2):
        rec = rt.process(textured_frame(i))
        assert rec["status"] == "processed" and rec["level"]["name"] == "nominal"
        assert rec["reconstruction"]["tiles"] == 24 and rec["reconstruction"]["check_tiles"] == 1000
    rt.finish()
    measured = json.loads((tmp_path / "summary.json").read_text())["memory"]["rss_growth_peak_bytes"]
    frames = _frames(tmp_path)
    assert frames[0]["memory_plan"] < 2 * 2**20
    predicted = max(f["memory_predicted"] for f in frames)
    assert measured - MARGIN <= predicted <= measured + MARGIN, (predicted, measured)


def test_recon_check_records_distinct_tiles_spread_over_the_frame(tmp_path: Path, models: dict[str, Path]) -> None:
    rt = FlightRuntime(small_mission(models, reconstruction={"check_tiles": 10}, budget={"frame_ms": 1e6}), tmp_path)
    rec = rt.process(textured_frame(0))  # 128 x 192: a 4 x 6 grid of 32-px tiles
    rt.finish()
    r = rec["reconstruction"]
    pos = [tuple(p) for p in r["positions"]]
    assert r["tiles"] == len(set(pos)) == 10 and "check_tiles" not in r
    assert {y for y, _ in pos} == {0, 32, 64, 96} and 0 < r["mae_destroyed"] < 1


def test_a_frame_too_small_for_a_tile_records_why_the_check_was_skipped(
    tmp_path: Path, models: dict[str, Path]
) -> None:
    rt = FlightRuntime(small_mission(models, budget={"frame_ms": 1e6}), tmp_path / "files")
    rec = rt.process(textured_frame(0, h=24, spot=None))  # 24 rows: no 32 x 32 tile
    rt.finish()
    assert rec["level"]["name"] == "nominal"
    assert rec["reconstruction"] == {
        "tiles": 0,
        "skipped": "smaller than a tile: the frame (24 x 192 px) is smaller than a 32 x 32 tile "
        "([reconstruction] tile = 32)",
    }
    m = small_mission(
        models,
        camera={"source": "strips", "strip_rows": 16},
        anomaly={"model": "", "patch": 16, "stride": 16},  # strips are whole patch rows; the check is what is tested
        budget={"frame_ms": 1e6},
    )
    rt = FlightRuntime(m, tmp_path / "strips")
    rec = rt.process(textured_frame(1, spot=None))
    rt.finish()
    assert rec["level"]["name"] == "nominal" and rec["reconstruction"]["tiles"] == 0
    assert "its strips ([camera] strip_rows = 16) are shorter than a 32 x 32 tile" in rec["reconstruction"]["skipped"]
    assert "recon" not in rec["timing_ms"]
