"""Writing a new mission (session 30 audit): what does not fit is refused at boot with the keys to change, a
frame that does not fit goes down the ladder or is dropped before sampling with its own reason, the console
says what to change, and ``firmware-sim check`` validates a mission without running it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from edgeae.firmware_sim.mission import MissionError, load_mission, mission_from_dict

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from edgeae.firmware_sim import boot, frame_intake, loop
from edgeae.firmware_sim.budget import LADDER, plan_memory
from edgeae.firmware_sim.cli import main
from edgeae.firmware_sim.cli_outputs import _first_drops, advice_lines
from edgeae.firmware_sim.faults import FaultSpecError
from edgeae.firmware_sim.loop import FlightRuntime
from edgeae.firmware_sim.onboard import default_loader
from edgeae.firmware_sim.testing import small_mission as mission
from edgeae.firmware_sim.testing import textured_frame as frame
from edgeae.firmware_sim.testing import tiny_cae_onnx, tiny_models

P = 32


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return tiny_models(tmp_path_factory.mktemp("models"), 1, P)


def _write(path: Path, doc: dict[str, Any]) -> Path:
    """A mission TOML of flat sections (strings, numbers, booleans, lists of strings)."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return repr(v)

    lines = [f"{k} = {value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    for name, sec in doc.items():
        if isinstance(sec, dict):
            lines += [f"[{name}]", *(f"{k} = {value(v)}" for k, v in sec.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


# ------------------------------------------------------------------ 1: a reconstruction model that does not fit
def test_a_recon_model_of_another_tile_size_or_channel_count_is_refused_at_boot(
    tmp_path: Path, models: dict[str, Path]
) -> None:
    out = tmp_path / "out"
    with pytest.raises(MissionError, match=r"takes 32 x 32-px tiles.*\[reconstruction\] tile = 16: set tile = 32"):
        FlightRuntime(mission(models, reconstruction={"tile": 16}), out)
    assert not out.exists()  # a refused boot leaves nothing
    rgb = tiny_cae_onnx(tmp_path / "rgb_cae.onnx", channels=3, tile=P)
    with pytest.raises(MissionError, match=r"takes 3 channel\(s\), the camera has 1 \(\[camera\] channels\)"):
        FlightRuntime(mission(models, reconstruction={"model": str(rgb)}), out)
    with pytest.raises(MissionError, match="mode 'latent' needs a cae-encoder model, artifact is 'cae'"):
        FlightRuntime(mission(models, reconstruction={"mode": "latent"}), out)
    rt = FlightRuntime(mission(models, reconstruction={"mode": "latent", "model": str(models["encoder"])}), out)
    rt.close()


def test_a_recon_model_that_fails_its_first_run_is_refused_at_boot(tmp_path: Path, models: dict[str, Path]) -> None:
    class Broken:
        def __init__(self, real: Any) -> None:
            self.metadata = real.metadata

        def __call__(self, x: np.ndarray) -> np.ndarray:
            raise RuntimeError("arena allocation failed")

    def loader(path: Path, threads: int) -> Any:
        real = default_loader(path, threads)
        return Broken(real) if path.name == "cae.onnx" else real

    with pytest.raises(MissionError, match=r"\[reconstruction\] model failed its first run at boot.*arena"):
        FlightRuntime(mission(models), tmp_path / "out", loader=loader)


# ------------------------------------------------------------------ 5: too many packets, before sampling
def test_a_frame_the_wire_cannot_carry_is_dropped_before_sampling(tmp_path: Path, models: dict[str, Path]) -> None:
    m = mission(
        models,
        anomaly={"model": ""},
        reconstruction={"mode": "off"},
        sampling={"keep": 1.0},
        downlink={"max_packet_bytes": 128, "codec": "none"},
    )
    rt = FlightRuntime(m, tmp_path)  # any frame size: checked per frame
    rec = rt.process(np.zeros((2048, 4096), np.uint8))
    s = rt.finish()
    assert rec["status"] == "dropped" and rec["reason"] == "too_many_packets"
    assert "timing_ms" not in rec or "sample" not in rec["timing_ms"]  # never sampled
    for key in ("[downlink] max_packet_bytes (now 128)", "[sampling] keep (now 1)", "[downlink] codec"):
        assert key in rec["detail"]
    assert "--max-packet" not in rec["detail"] and "--keep" not in rec["detail"]
    assert s["frames"]["drop_reasons"] == {"too_many_packets": 1}


# ------------------------------------------------------------------ 3: models alone over the memory budget
def test_boot_refused_when_the_loaded_models_and_buffers_exceed_the_budget(
    tmp_path: Path, models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    base = boot.rss_bytes()
    readings = iter([base, base + 200 * 2**20])  # at boot, then after the models loaded
    monkeypatch.setattr(boot, "rss_bytes", lambda: next(readings, base + 200 * 2**20))
    m = mission(models, budget={"memory_bytes": 64 * 2**20}, runtime={"threads": 2})
    out = tmp_path / "out"
    with pytest.raises(MissionError) as err:
        FlightRuntime(m, out)
    msg = str(err.value)
    assert "after the models loaded the process holds 209,715,200 B" in msg
    assert "[runtime] threads = 2" in msg and "[budget] memory_bytes = 67,108,864 B" in msg
    assert "frame_strip_raw" in msg and "raise [budget] memory_bytes to at least 204 MiB" in msg  # 203 until s40 h8
    assert not out.exists()


def test_threads_over_the_cores_warn_at_boot(
    tmp_path: Path, models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(frame_intake, "usable_cores", lambda: 1)
    rt = FlightRuntime(mission(models, runtime={"threads": 2}), tmp_path)
    rt.close()
    assert any("[runtime] threads = 2 but this machine gives the process 1 core" in w for w in rt.boot_warnings)


# ------------------------------------------------------------------ 4: a frame over the budget degrades
def test_a_frame_over_the_memory_budget_goes_down_the_ladder(
    tmp_path: Path, models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    m = mission(models, budget={"memory_bytes": 2**20, "frame_ms": 1e6})
    base = boot.rss_bytes()
    monkeypatch.setattr(boot, "rss_bytes", lambda: base)  # the boot: nothing held yet (whatever was imported)
    rt = FlightRuntime(m, tmp_path)
    h, w = 128, 192
    plan = plan_memory(m, w, h, rt._model_bytes(), 1)
    least = frame_intake.level_plan(plan, LADDER[-1])
    assert least.total < plan.total
    held = m.budget.memory_bytes - least.total - 1  # room for sparse_only's buffers, not for scoring
    monkeypatch.setattr(frame_intake, "rss_bytes", lambda: rt.rss_boot + held)
    rec = rt.process(frame(0, h, w, patch=P))
    assert rec["status"] == "processed" and rec["level"]["name"] == "sparse_only"
    assert "memory_degraded" in rec["flags"] and rec["memory_level"]["name"] == "sparse_only"
    assert rec["memory_plan"] == least.total and rec["memory_plan_nominal"] == plan.total
    # nothing fits, not even sparse_only: dropped, the reason with the items and what to raise
    monkeypatch.setattr(frame_intake, "rss_bytes", lambda: rt.rss_boot + m.budget.memory_bytes)
    rec2 = rt.process(frame(1, h, w, patch=P))
    s = rt.finish()
    assert rec2["status"] == "dropped" and rec2["reason"] == "memory_budget"
    assert "patch_batch_f32" in rec2["detail"] and "even at sparse_only" in rec2["detail"]
    assert "raise it to at least 2 MiB" in rec2["detail"]
    lines = _first_drops(s)
    assert lines and lines[0].startswith("  dropped memory_budget x1, e.g. frame 1: the process holds")


# ------------------------------------------------------------------ 6: advice on the console
def test_console_advice_for_late_frames_and_frames_that_scored_nothing(models: dict[str, Path]) -> None:
    m = mission(models, budget={"frame_ms": 5.0}, anomaly={"stride": 1})
    late = {"status": "processed", "flags": [], "timing_ms": {"total": 29.0}, "deadline": {"status": "late"}}
    starved = {
        "status": "processed", "flags": [], "frame_id": 3, "timing_ms": {"total": 2.0},
        "deadline": {"status": "met"}, "predicted_nominal_ms": 89132.0, "patches": {"grid": 33153},
        "available_ms": 3000.0,
    }  # fmt: skip
    lines = advice_lines({}, [late, starved], m)
    assert "1 frame(s) missed the 5 ms deadline (the slowest took 29 ms)" in lines[0]
    assert "raise [budget] frame_ms to about 35 ms (--frame-ms 35)" in lines[0]  # 29 / safety 0.85, rounded up
    assert "frame 3's 33,153 patches ([anomaly] stride = 1) was predicted to take 89,132 ms" in lines[1]
    assert "about 110000 ms or [anomaly] stride (up to patch = 32)" in lines[1]
    assert advice_lines({}, [{**late, "deadline": {"status": "met"}}], m) == []
    heavy = {**late, "frame_id": 0, "deadline": {"status": "met"}, "memory_plan": 7 * 2**20,
             "memory": {"over_budget": True, "rss_growth_peak": 66 * 2**20}}  # fmt: skip
    (line,) = advice_lines({}, [heavy], m, held_at_boot=57 * 2**20)
    assert "frame 0 peaked at 66.0 MiB over boot (57.0 MiB held by the loaded models, 7.0 MiB of planned" in line
    assert "raise [budget] memory_bytes to at least 66 MiB" in line


# ------------------------------------------------------------------ 7, 8, 12: mission fields
@pytest.mark.parametrize(
    ("doc", "match"),
    [
        ({"camera": {"height": -5}}, r"\[camera\]: height must be in 0\.\.1,048,576 px \(0 = any\), got -5"),
        ({"camera": {"width": -1, "margin": [2]}}, "width must be in 0..1,048,576 px"),
        ({"runtime": {"measure_memory": False, "trace_allocations": True}}, "trace_allocations = true needs"),
        ({"anomaly": {"method": "cae-masked", "threshold": -0.5}}, "threshold -0.5 is negative"),
        (
            {"camera": {"source": "strips", "strip_rows": 100}, "anomaly": {"patch": 64}},
            "got strip_rows = 100, patch = 64, stride = 64",
        ),
    ],
)
def test_mission_fields_refused_with_the_right_reason(doc: dict[str, Any], match: str) -> None:
    with pytest.raises(MissionError, match=match):
        mission_from_dict({"name": "x", **doc}, source="m.toml")


def test_name_must_be_a_string_and_a_vae_threshold_may_be_negative(tmp_path: Path) -> None:
    with pytest.raises(MissionError, match=r"m\.toml: name must be a string, got 42 \(int\)"):
        mission_from_dict({"name": 42}, source="m.toml")
    with pytest.raises(MissionError, match="description must be a string"):
        mission_from_dict({"name": "x", "description": ["a"]}, source="m.toml")
    assert mission_from_dict({"name": "x", "anomaly": {"threshold": -1.0}}).anomaly.threshold == -1.0


def test_a_bad_fault_in_the_mission_file_names_the_file_and_the_key(tmp_path: Path, models: dict[str, Path]) -> None:
    doc = {
        "name": "t",
        "camera": {"channels": 1},
        "anomaly": {"model": str(models["vae"]), "patch": P, "stride": P},
        "runtime": {"inject": ["late@frameX"]},
    }
    path = _write(tmp_path / "faulty.toml", doc)
    with pytest.raises(FaultSpecError, match=r"faulty\.toml \[runtime\] inject: fault 'late@frameX'"):
        FlightRuntime(load_mission(path), tmp_path / "out")


# ------------------------------------------------------------------ 13: firmware-sim check; the fallback line
def test_check_validates_a_mission_without_running_it(
    tmp_path: Path, models: dict[str, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = {
        "name": "t",
        "camera": {"channels": 1, "height": 128, "width": 192},
        "anomaly": {"model": str(models["vae"]), "patch": P, "stride": P, "batch": 8},
        "reconstruction": {"mode": "check", "model": str(models["cae"]), "tile": P},
    }
    path = _write(tmp_path / "m.toml", doc)
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["check", "--mission", str(path)]) == 0
    out = capsys.readouterr().out
    assert "mission t" in out and "boots" in out and "packets" in out
    assert "a 128 x 192 px (height x width) frame's buffers" in out
    assert main(["check", "--mission", str(path), "--set", "reconstruction.tile=16"]) == 2
    assert "set tile = 32" in capsys.readouterr().err
    assert main(["check", "--mission", str(path), "--set", "downlink.max_packet_bytes=128", "--set",
                 "sampling.keep=1.0", "--set", "camera.height=40000", "--set", "camera.width=4000"]) == 2  # fmt: skip
    assert "[sampling] keep" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # wrote nothing


def test_a_fallback_loaded_after_a_corrupt_model_says_so_in_one_line(tmp_path: Path, models: dict[str, Path]) -> None:
    copy = tmp_path / "copy.onnx"
    copy.write_bytes(models["vae"].read_bytes())
    m = mission(models, anomaly={"fallback": str(copy)})
    rt = FlightRuntime(m, tmp_path / "out", inject=["corrupt-model@load"])
    rt.close()
    notes = [w for w in rt.boot_warnings if "fallback" in w]
    assert len(notes) == 1 and "failed its checks at boot" in notes[0] and str(copy) in notes[0]


# ------------------------------------------------------------------ a reconstruction failure inside a frame
def test_a_recon_failure_inside_a_frame_keeps_the_frames_products(tmp_path: Path, models: dict[str, Path]) -> None:
    """The reconstruction check is optional: when it fails mid-frame, the frame's sparse pixels and patches still
    fly, the frame is flagged ``recon_failed`` and its record says why (it was dropped as ``frame_error``)."""
    rt = FlightRuntime(mission(models), tmp_path / "out")
    assert rt.recon is not None

    def broken(x: np.ndarray) -> np.ndarray:
        raise RuntimeError("arena allocation failed")

    rt.recon.predictor = broken
    rec = rt.process(frame())
    rt.finish()
    assert rec["status"] != "dropped", rec.get("reason")
    assert "recon_failed" in rec["flags"]
    assert rec["reconstruction"]["tiles"] == 0 and "arena allocation failed" in rec["reconstruction"]["error"]
    assert rec["status"] == "processed" and rec["queued_bytes"]["sparse"] > 0 and rec["queued_bytes"]["patch"] > 0


def test_boot_warms_the_recon_model_on_no_more_tiles_than_a_frame_checks(
    tmp_path: Path, models: dict[str, Path]
) -> None:
    """check_tiles = 1,000,000 on a 128 x 192 camera: the boot run takes the 24 cells of the tile grid (it asked
    the model for a million tiles, 3.8 GiB, and failed with MemoryError)."""
    seen: list[int] = []
    loader = _counting_recon_loader(seen)
    m = mission(models, camera={"height": 128, "width": 192}, reconstruction={"check_tiles": 1_000_000})
    FlightRuntime(m, tmp_path / "out", loader=loader).close()
    assert seen and max(seen) == (128 // P) * (192 // P)


def test_a_compressible_frame_over_the_raw_packet_count_still_flies_and_one_that_is_not_is_dropped(
    tmp_path: Path, models: dict[str, Path]
) -> None:
    """With a coding codec the packet count is known only after coding: a flat frame whose raw samples would need
    ~84,000 packets flies (it was dropped before sampling), an incompressible one is dropped as
    ``too_many_packets`` (not ``frame_error``) with the mission keys. The deadline is a day (the most a mission
    may set), so the frames run at nominal whatever the machine's load (with 5 s a loaded machine's cost model
    chose lower_keep_fraction, which halved the packets the message names)."""
    m = mission(
        models,
        anomaly={"model": ""},
        reconstruction={"mode": "off"},
        sampling={"keep": 1.0},
        downlink={"max_packet_bytes": 128, "codec": "delta-deflate"},
        budget={"frame_ms": 86_400_000.0},
    )
    rt = FlightRuntime(m, tmp_path / "out")
    flat = rt.process(np.full((2048, 4096), 77, np.uint8))
    noise = rt.process(np.random.default_rng(0).integers(0, 256, (2048, 4096), dtype=np.uint8))
    rt.finish()
    assert flat["status"] == "processed", flat.get("reason")
    assert flat["level"]["name"] == noise["level"]["name"] == "nominal"  # the mission's keep: the count below
    assert noise["status"] == "dropped" and noise["reason"].startswith("too_many_packets")
    assert noise["detail"] == (
        "sparse product 1 needs 174,763 packets, over the 65,535 a product can have, after coding ([downlink] codec "
        "'delta-deflate'): raise [downlink] max_packet_bytes (now 128) or lower [sampling] keep (now 1)"
    )
    events = [json.loads(line) for line in (tmp_path / "out" / "telemetry.jsonl").read_text().splitlines()]
    kinds = {e.get("kind") for e in events if e.get("frame_id") == 1}
    assert "too_many_packets" in kinds and "frame_error" not in kinds
    assert not list((tmp_path / "out" / "queue" / "items").glob("*.tmp"))  # nothing left on the flight storage


def test_the_cost_probe_times_at_most_one_static_batch_or_16_patches(
    tmp_path: Path, models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a sparse_only frame with time to spare the per-patch cost is re-measured on a few patches, not on a
    mission-sized batch (batch = 1000 allocated that many patches' temporaries: +32 MiB)."""
    rt = FlightRuntime(mission(models, anomaly={"batch": 1000}), tmp_path / "out")
    timed: list[int] = []
    monkeypatch.setattr(rt.models, "time_batch", lambda n=0: timed.append(n) or 0.01)
    rt.cost.batch = 1  # a model with a dynamic batch
    assert rt._probe(LADDER[-1], slack_ms=1e9) is not None and timed == [loop.PROBE_PATCHES_MAX]
    rt.cost.batch = 16  # a static batch of 16: one call of it
    assert rt._probe(LADDER[-1], slack_ms=1e9) is not None and timed[-1] == 16
    rt.finish()


def test_boot_warms_an_any_size_cameras_recon_model_on_at_most_64_tiles(
    tmp_path: Path, models: dict[str, Path]
) -> None:
    seen: list[int] = []
    loader = _counting_recon_loader(seen)
    m = mission(models, camera={"height": 0, "width": 0}, reconstruction={"check_tiles": 1_000_000})
    FlightRuntime(m, tmp_path / "out", loader=loader).close()
    from edgeae.firmware_sim.onboard import WARM_TILES_MAX

    assert seen and max(seen) == WARM_TILES_MAX == 64


def test_a_latent_encoder_failure_inside_a_frame_keeps_its_other_products(
    tmp_path: Path, models: dict[str, Path]
) -> None:
    rt = FlightRuntime(mission(models, reconstruction={"mode": "latent", "model": str(models["encoder"])}), tmp_path)
    assert rt.recon is not None

    def broken(x: np.ndarray) -> np.ndarray:
        raise RuntimeError("encoder fault")

    rt.recon.predictor = broken
    rec = rt.process(frame(h=100, w=150))
    rt.finish()
    assert rec["status"] == "processed" and "recon_failed" in rec["flags"]
    assert "encoder fault" in rec["reconstruction"]["error"]
    assert rec["queued_bytes"]["latent"] == 0 and rec["queued_bytes"]["sparse"] > 0


def _counting_recon_loader(seen: list[int]) -> Any:
    """The default loader, with the reconstruction model (cae.onnx) recording the tiles of every call in ``seen``."""

    def loader(path: Path, threads: int) -> Any:
        real = default_loader(path, threads)
        if path.name != "cae.onnx":
            return real

        class Counting:
            metadata = real.metadata

            def __call__(self, x: np.ndarray) -> np.ndarray:
                seen.append(x.shape[0])
                return real(x)

        return Counting()

    return loader
