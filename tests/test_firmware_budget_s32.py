"""The flight runtime's budgets (session 32 audit a5): the memory plan counts a real frame's buffers (the decoded
file, the demosaic, the no-data mask, the reader's band), a float frame is planned at its own sample type and
refused before its pixels are read, ``check`` says the level a camera-size frame runs at for memory and time,
absurd budgets are refused, and two runs cannot share one ``--out``."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _helpers_firmware import process_in_a_fresh_process
from edgeae.firmware_sim.budget import plan_memory
from edgeae.firmware_sim.cli_outputs import advice_lines
from edgeae.firmware_sim.mission import MissionError, load_mission, mission_from_dict

MIB = 2**20
# docs/firmware_sim.md: a boot's first frame grows at most 4 MiB beyond its plan, and at most 12 MiB less
UNDER, OVER = 4 * MIB, 12 * MIB


def _frame_lines(out: Path) -> list[dict[str, Any]]:
    lines = (json.loads(x) for x in (out / "telemetry.jsonl").read_text().splitlines())
    return [r for r in lines if r.get("type") == "frame"]


# ------------------------------------------------------------------ item 1: the plan on real frames
def _growth_gap(rec: dict[str, Any]) -> int:
    return int(rec["memory"]["rss_growth_peak"]) - int(rec["memory_predicted"])


def test_rover_full_frame_plan_is_within_the_bound_of_its_measured_growth(data_root: Path, tmp_path: Path) -> None:
    """The shipped rover mission on the full 1200 x 1648 ZL0 Mastcam-Z frame: the plan left out the decoded file,
    the demosaic and the no-data mask and was 19.4 MiB under the measured growth (audit a5, item 1)."""
    pytest.importorskip("onnxruntime")
    frames = sorted((data_root / "rover_rgb" / "mars2020_raw").glob("ZL0_*.png"))
    if not frames:
        pytest.skip("no ZL0 Mastcam-Z frame under rover_rgb/mars2020_raw")
    doc = _toml("rover_mastcamz")
    doc = {**doc, "budget": {**doc["budget"], "frame_ms": 1e6}}  # nominal whatever the CPU
    rec = process_in_a_fresh_process(doc, frames[0], tmp_path / "out")
    assert rec["status"] == "processed" and rec["level"]["name"] == "nominal", rec.get("reason")
    assert -OVER <= _growth_gap(rec) <= UNDER, (rec["memory_predicted"], rec["memory"]["rss_growth_peak"])
    # the whole frame's buffers (was 14.2 MiB; 33.5 until session 40, fixer h8, planned the no-data step at what it
    # measures, 25.8 since)
    assert rec["memory_plan"] > 24 * MIB


def test_orbital_strip_plan_is_within_the_bound_of_its_measured_growth(tmp_path: Path) -> None:
    """The shipped orbital mission on a tiled 4,096-line NAC-width strip (the reader's band of tiles was not
    planned, nor the modules the first frame imported)."""
    pytest.importorskip("ai_edge_litert")
    tifffile = pytest.importorskip("tifffile")

    rng = np.random.default_rng(3)
    strip = (80 + 40 * rng.random((4096, 5064))).astype(np.uint8)
    path = tmp_path / "strip.tif"
    tifffile.imwrite(path, strip, tile=(256, 256))
    doc = _toml("orbital_nac")
    rec = process_in_a_fresh_process({**doc, "camera": {**doc["camera"], "height": 4096}}, path, tmp_path / "out")
    assert rec["status"] == "processed", rec.get("reason")
    assert -OVER <= _growth_gap(rec) <= UNDER, (rec["memory_predicted"], rec["memory"]["rss_growth_peak"])


def _toml(name: str) -> dict[str, Any]:
    import tomllib

    from edgeae.firmware_sim.mission import resolve_mission

    return tomllib.loads(resolve_mission(name).read_text())


def test_the_plan_counts_the_whole_frame_buffers_of_a_demosaiced_file() -> None:
    m = load_mission("rover_mastcamz")
    items = dict(plan_memory(m, 1648, 1200, 0, 3).items)
    px = 1648 * 1200
    assert items["frame_strip_raw"] == px * 3  # the decoded file
    assert items["demosaic_rgb"] == px * 4  # its RGB and the mosaic plane it came from
    assert items["nodata_mask"] >= px and items["frame_temporaries"] >= 2 * px


# ------------------------------------------------------------------ item 2: float frames
def test_a_float_frame_is_planned_at_its_own_sample_type() -> None:
    m = load_mission("rover_mastcamz")
    f32 = dict(plan_memory(m, 3200, 2400, 0, 3, (3, np.dtype(np.float32))).items)
    u8 = dict(plan_memory(m, 3200, 2400, 0, 3).items)
    assert f32["frame_strip_raw"] == 4 * u8["frame_strip_raw"] == 2400 * 3200 * 3 * 4
    assert f32["samples"] == 2400 * 3200 * 3  # converted to the wire's uint8 samples
    assert "samples" not in u8
    # to_samples's three copies are at the stored width: a float64 frame's were planned as float32 (review s32: a
    # 1200 x 1648 x 3 float64 .npy planned at 205.3 MiB grew 244.4)
    f64 = dict(plan_memory(m, 3200, 2400, 0, 3, (3, np.dtype(np.float64))).items)
    assert f64["frame_strip_raw"] == 2 * f32["frame_strip_raw"]
    assert f64["frame_temporaries"] == 2 * f32["frame_temporaries"] == 2400 * 3200 * 3 * 3 * 8


def test_a_float_npy_frame_over_the_budget_is_refused_before_its_pixels_are_read(tmp_path: Path) -> None:
    """A 92 MB float32 .npy (memory-mapped) was planned at 1 B per sample and read whole by the channel checks
    before the memory check: the process held 147 MiB over boot when the frame was dropped."""
    pytest.importorskip("onnxruntime")

    path = tmp_path / "f32.npy"
    np.save(path, np.full((2400, 3200, 3), 0.5, np.float32))
    doc = {**_toml("rover_mastcamz"), "camera": {**_toml("rover_mastcamz")["camera"], "bayer": ""}}
    rec = process_in_a_fresh_process(doc, path, tmp_path / "out")
    assert rec["status"] == "dropped" and rec["reason"] == "memory_budget"
    assert "frame_strip_raw 92,160,000 B" in rec["detail"]
    held = int(rec["memory_predicted"]) - int(rec["memory_plan"])  # over boot at the frame's memory check
    # not the 88 MiB frame; since session 40 the mosaic check's mapped crop (~10 MB of this float frame) is released
    # before the memory check, so it is in the peak but not in ``held`` (16 MiB before)
    assert int(rec["memory"]["rss_growth_peak"]) - held < 32 * MIB


def test_looks_like_mosaic_reads_only_its_crop(monkeypatch: pytest.MonkeyPatch) -> None:
    """The mosaic plane and the channel comparison get the central crop, never the frame (a memory-mapped frame
    stays on disk). Until the review of session 32 this test wrapped the frame in an ndarray subclass whose guard
    ``np.asarray`` removed, so it passed whatever was read."""
    from edgeae import bayer

    seen: list[tuple[int, ...]] = []
    real_plane, real_equal = bayer.mosaic_plane, bayer.channels_equal

    def plane(raw: np.ndarray) -> np.ndarray:
        seen.append(np.shape(raw))
        return real_plane(raw)

    def equal(a: np.ndarray, block_rows: int = 256) -> bool:
        seen.append(np.shape(a))
        return real_equal(a, block_rows)

    monkeypatch.setattr(bayer, "mosaic_plane", plane)
    monkeypatch.setattr(bayer, "channels_equal", equal)
    grey = np.repeat(np.random.default_rng(0).integers(0, 255, (2000, 1500, 1), np.uint8), 3, axis=2)
    assert bayer.looks_like_mosaic(grey) is False  # random grey: no 2x2 pattern
    assert seen and all(s[:2] == (512, 512) for s in seen), seen


def test_a_grey_mosaic_with_colour_off_the_sampled_rows_flies_as_colour() -> None:
    """A mosaic stored grey in RGB with a few coloured pixels on a row the 64-row sample skips went down the demosaic
    path, whose whole-strip channel check raised: dropped as ``frame_error`` (review s32; before the sampling it
    flew with ``already_colour``). Equal sampled rows are now confirmed over the whole strip."""
    from edgeae.firmware_sim.frames import ArrayFrame
    from edgeae.firmware_sim.reader_wrappers import Demosaiced

    from edgeae.bayer import sampled_channels_equal

    h, w = 600, 400
    plane = np.random.default_rng(0).integers(60, 120, (h, w)).astype(np.uint8)
    plane[0::2, 0::2] += 100  # R sites bright: a 2x2 filter pattern
    rgb = np.repeat(plane[:, :, None], 3, axis=2)
    rgb[5, 10:40, 0] = 255  # an overlay on row 5, which the sample does not take
    assert sampled_channels_equal(rgb)  # the sample alone calls it grey
    d = Demosaiced(ArrayFrame(rgb), "RGGB")
    out = list(d.strips(h))
    assert d.info == {"bayer": "RGGB", "demosaiced": False, "already_colour": True}
    assert len(out) == 1 and np.array_equal(out[0][1], rgb)  # flown as stored
    mosaic = Demosaiced(ArrayFrame(np.repeat(plane[:, :, None], 3, axis=2)), "RGGB")  # no overlay: demosaiced
    assert [s.shape for _, s in mosaic.strips(h)] == [(h, w, 3)] and mosaic.info["demosaiced"] is True


def test_memory_advice_ignores_a_dropped_frame_peak() -> None:
    m = load_mission("rover_mastcamz")
    dropped = {"frame_id": 0, "status": "dropped", "flags": [], "memory": {"over_budget": True,
               "rss_growth_peak": 273 * MIB}}  # fmt: skip
    assert not [a for a in advice_lines({}, [dropped], m) if "memory" in a]
    processed = {**dropped, "status": "processed"}
    assert any("at least 273 MiB" in a for a in advice_lines({}, [processed], m))


def test_the_summary_warning_sizes_the_budget_on_processed_frames_only() -> None:
    """``summary.warnings`` advised the budget from a dropped frame's peak, which the console's advice ignores, and
    said such a frame "is scored and downlinked as usual" (review s32): dropped frames get their own warning."""
    from edgeae.firmware_sim.run_summary import memory_warnings

    def rec(fid: int, status: str, peak: int) -> dict[str, Any]:
        return {"frame_id": fid, "status": status, "memory": {"over_budget": True, "rss_growth_peak": peak * MIB,
                "budget": 64 * MIB}}  # fmt: skip

    warnings = memory_warnings([rec(0, "dropped", 273), rec(1, "processed", 70), rec(2, "dropped", 90)], 2)
    assert warnings == [
        "1 frame went over the 64 MiB memory budget (frame 1; peak growth over boot 70.0 MiB): raise [budget] "
        "memory_bytes to at least 70 MiB or lower [runtime] threads (now 2)",
        "2 dropped frames went over the 64 MiB memory budget before they were dropped (frames 0, 2; peak growth "
        "over boot 273.0 MiB): the drop reason in the ledger says why; not a frame to size the budget for",
    ]
    only_dropped = memory_warnings([rec(0, "dropped", 273)], 2)
    assert len(only_dropped) == 1 and "raise" not in only_dropped[0] and "it was dropped" in only_dropped[0]


def test_the_boot_imports_only_the_decoders_of_the_frame_types_it_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    """A files mission imported tifffile at boot for PNG frames (review s32): the boot's count held a decoder no
    frame used. Told the frame types (``firmware-sim run`` knows them), it imports theirs; told nothing, all."""
    import importlib

    from edgeae.firmware_sim.frame_intake import FRAME_PATH_MODULES, preload_frame_path

    names: list[str] = []
    monkeypatch.setattr(importlib, "import_module", names.append)
    m = load_mission("rover_mastcamz")
    assert m.camera.source == "files"
    preload_frame_path(m, {".png"})
    assert names == [*FRAME_PATH_MODULES, "edgeae.imagedecode", "pyspng"]
    names.clear()
    preload_frame_path(m, {".npy", ".TIF"})
    assert names == [*FRAME_PATH_MODULES, "edgeae.imagedecode", "tifffile"]  # TiffFrame checks limits with it
    names.clear()
    preload_frame_path(m)
    assert names == [*FRAME_PATH_MODULES, "edgeae.imagedecode", "pyspng", "simplejpeg", "tifffile"]
    names.clear()  # a strips mission given .npy frames reads no TIFF either (review s32)
    preload_frame_path(load_mission("orbital_nac"), {".npy"})
    assert names == [*FRAME_PATH_MODULES]


# ------------------------------------------------------------------ items 3, 4, 5, 6: check and the budgets
def _check(*args: str) -> tuple[int, str]:
    """``firmware-sim check --mission orbital_nac ARGS`` in a fresh interpreter (what the boot holds counts the
    interpreter libraries only when they load after the boot baseline, as in a real run)."""
    cmd = [sys.executable, "-m", "edgeae.firmware_sim.cli", "check", "--mission", "orbital_nac", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    return proc.returncode, proc.stdout + proc.stderr


def test_check_says_the_level_a_camera_size_frame_runs_at() -> None:
    """Budgets are set from what this machine's check measures (the models' resident memory differs between
    machines: 27.6 MiB here, more on CI), so each case sits MiBs away from its edge on any machine."""
    pytest.importorskip("ai_edge_litert")
    size = ["--set", "camera.height=2048", "--set", "camera.width=2048"]
    rc, out = _check(*size, "--set", f"budget.memory_bytes={1024 * MIB}")
    held = re.search(r"the loaded models hold ([0-9.]+) MiB", out)
    nominal = re.search(r"  held \+ buffers: ([0-9.]+) MiB [^:]*: fits at nominal", out)
    assert rc == 0 and held and nominal, out
    held_mib, nominal_mib = float(held.group(1)), float(nominal.group(1))
    assert nominal_mib - held_mib > 8  # the 2048 px frame's nominal buffers, 13.0 MiB (sparse_only's: 4.6)
    below_nominal = math.floor(nominal_mib) - 2  # was said to "fit at nominal" when the plan left buffers out
    rc, out = _check(*size, "--set", f"budget.memory_bytes={below_nominal * MIB}")
    assert rc == 0 and "frames of this size run at sparse_only" in out and "fits at nominal" not in out, out
    below_sparse = math.ceil(held_mib) + 1  # every frame was dropped: the boot must refuse
    rc, out = _check(*size, "--set", f"budget.memory_bytes={below_sparse * MIB}")
    assert rc == 2 and "even at sparse_only" in out, out


def test_check_assesses_the_time_budget() -> None:
    pytest.importorskip("ai_edge_litert")
    rc, out = _check("--frame-ms", "50")
    assert rc == 0 and "predicted ms of a full frame (65,280 patches) per level: nominal" in out
    assert "WARNING: no level is predicted to meet the 50 ms deadline" in out


def test_a_big_batch_sends_frames_down_the_ladder_not_the_boot_back() -> None:
    """The boot refused a fixed camera on its nominal buffers with a raw dict; sparse_only fits."""
    pytest.importorskip("ai_edge_litert")
    rc, out = _check("--set", "anomaly.batch=512", "--set", f"budget.memory_bytes={1024 * MIB}")
    nominal = re.search(r"  held \+ buffers: ([0-9.]+) MiB [^:]*: fits at nominal", out)
    assert rc == 0 and nominal, out
    # 1 MiB under nominal's need (97.0 MiB here, the models' share differs between machines): the 42 MiB batch
    # buffer does not fit, sparse_only does
    budget = math.floor(float(nominal.group(1))) - 1
    rc, out = _check("--set", "anomaly.batch=512", "--set", f"budget.memory_bytes={budget * MIB}")
    assert rc == 0 and "run at sparse_only" in out and "patch_batch_f32" in out and "[anomaly] batch" in out, out
    assert "{'" not in out


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [("memory_bytes", 99999999999999999999, "memory_bytes must be in 1 MiB..1 TiB"),
     ("frame_ms", 1e308, "frame_ms must be in (0, 86,400,000] (one day)")],
)  # fmt: skip
def test_absurd_budgets_are_refused_in_one_line(key: str, value: Any, says: str) -> None:
    doc = _toml("orbital_nac")
    with pytest.raises(MissionError, match=r"\[budget\]") as e:
        mission_from_dict({**doc, "budget": {**doc["budget"], key: value}})
    assert says in str(e.value) and "\n" not in str(e.value)


# ------------------------------------------------------------------ item 7: one run per --out
_HOLDER = """
import sys, time
from edgeae.folder_lock import hold
with hold(sys.argv[1], "flight run"):
    print("held", flush=True)
    time.sleep(30)
"""


def test_a_second_run_on_a_held_out_folder_is_refused_and_removes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from edgeae.firmware_sim.cli import main

    from edgeae.imageio import write_image

    out = tmp_path / "out"
    (out / "queue").mkdir(parents=True)
    (out / "telemetry.jsonl").write_text('{"type": "start"}\n')
    (out / "queue" / "index.json").write_text("{}")
    frame = tmp_path / "f.png"
    write_image(frame, np.zeros((64, 64, 3), np.uint8))
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        before = sorted(str(p.relative_to(out)) for p in out.rglob("*"))  # the holder's lock file too
        t = time.perf_counter()
        rc = main(["run", "--mission", "rover_mastcamz", "--frames", str(frame), "--out", str(out)])
        assert time.perf_counter() - t < 5
        after = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    finally:
        holder.kill()
        holder.wait()
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and f"{out} is in use by another flight run (pid {holder.pid}" in err[0]
    assert after == before and (out / "telemetry.jsonl").read_text() == '{"type": "start"}\n'
