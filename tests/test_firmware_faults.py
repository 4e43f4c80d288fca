"""Every injected fault is detected, recorded in the telemetry, and survived."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from edgeae.firmware_sim.faults import FaultSpecError, SimulatedReboot, parse_faults
from edgeae.firmware_sim.guard import block_crcs
from edgeae.firmware_sim.loop import FlightRuntime

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from edgeae.firmware_sim.testing import small_mission as mission
from edgeae.firmware_sim.testing import textured_frame as frame
from edgeae.firmware_sim.testing import tiny_models


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return tiny_models(tmp_path_factory.mktemp("models"))


def events(out: Path) -> list[dict[str, Any]]:
    lines = [json.loads(x) for x in (out / "telemetry.jsonl").read_text().splitlines()]
    return [x for x in lines if x["type"] == "event"]


def test_parse_faults() -> None:
    f = parse_faults(["seu@frame3:2,late@frame1:500", "corrupt-model@load", "bad-frame@frame0:saturate"])
    assert [str(x) for x in f] == [
        "seu@frame3:2",
        "late@frame1:500",
        "corrupt-model@load",
        "bad-frame@frame0:saturate",
    ]
    for bad in (
        "seu@3",
        "boom@frame1",
        "seu@load",
        "late@frame1:-5",
        "bad-frame@frame1:zzz",
        "corrupt-model@frame2",
    ):
        with pytest.raises(FaultSpecError):
            parse_faults([bad])


def test_seu_detected_by_scrub_and_golden_copy_reloaded(tmp_path: Path, models: dict[str, Path]) -> None:
    rt = FlightRuntime(mission(models), tmp_path, inject=["seu@frame1:3", "seu-recon@frame2"])
    golden = rt.anomaly.crcs.copy()
    recs = [rt.process(frame()) for _ in range(4)]
    s = rt.finish()
    assert recs[1]["events"] == ["seu_detected"] and recs[2]["events"] == ["seu_detected"]
    assert not recs[0]["events"] and not recs[3]["events"]
    assert s["scrub_reloads"] == 2
    assert np.array_equal(block_crcs(rt.anomaly.image), golden)
    scores = [r["anomaly"]["patches"] for r in recs]
    assert all(x == scores[0] for x in scores)  # scoring unaffected after the reload
    kinds = [e["kind"] for e in events(tmp_path)]
    assert kinds.count("fault_injected") == 2 and kinds.count("seu_detected") == 2


def test_seu_between_scrubs_flags_frames(tmp_path: Path, models: dict[str, Path]) -> None:
    rt = FlightRuntime(mission(models, runtime={"scrub_every_frames": 3}), tmp_path, inject=["seu@frame1"])
    recs = [rt.process(frame()) for _ in range(4)]
    rt.finish()
    assert [bool(r["flags"]) for r in recs] == [False, True, True, False]  # weights_unverified until frame 3
    assert recs[3]["events"] == ["seu_detected"]


def test_corrupt_model_refused_without_fallback(tmp_path: Path, models: dict[str, Path]) -> None:
    rt = FlightRuntime(mission(models), tmp_path, inject=["corrupt-model@load"])
    assert rt.anomaly is None and rt.scorer is None
    rec = rt.process(frame())
    s = rt.finish()
    assert rec["status"] == "processed" and rec["patches"]["scored"] == 0 and not rec["anomaly"]["patches"]
    assert s["frames"]["downlinked"] == 1  # sparse pixels still go down
    ev = {e["kind"]: e for e in events(tmp_path)}
    assert "model_file_corrupt" in ev and "SHA-256" in ev["model_file_corrupt"]["detail"]
    assert "sparse pixels only" in ev["model_refused"]["consequence"]
    refused = s["models_refused"]  # the summary says so too, and the console prints it (firmware_sim.cli)
    assert [r["role"] for r in refused] == ["anomaly"] and "sparse pixels only" in refused[0]["consequence"]


def test_a_malformed_golden_hash_is_refused_at_mission_load(models: dict[str, Path]) -> None:
    from edgeae.firmware_sim.mission import MissionError

    with pytest.raises(MissionError, match="sha256 must be empty or 64 hex digits, got 'abc'"):
        mission(models, anomaly={"sha256": "abc"})


def test_corrupt_model_falls_back_to_golden_copy(tmp_path: Path, models: dict[str, Path]) -> None:
    m = mission(models, anomaly={"fallback": str(models["vae"])})
    rt = FlightRuntime(m, tmp_path, inject=["corrupt-model@load"])
    assert rt.anomaly is not None and rt.anomaly.path == models["vae"]
    rec = rt.process(frame())
    rt.finish()
    assert rec["patches"]["scored"] == 24
    kinds = [e["kind"] for e in events(tmp_path)]
    assert "model_file_corrupt" in kinds and "model_fallback" in kinds


def test_declared_hash_catches_a_damaged_file(tmp_path: Path, models: dict[str, Path]) -> None:
    rt = FlightRuntime(mission(models, anomaly={"sha256": "0" * 64}), tmp_path)
    assert rt.anomaly is None
    rt.finish()


def test_late_frame_degrades_and_is_recorded(tmp_path: Path, models: dict[str, Path]) -> None:
    rt = FlightRuntime(mission(models, budget={"frame_ms": 400.0, "safety": 1.0}), tmp_path, inject=["late@frame1:380"])
    recs = []
    for _ in range(2):
        # pin the cost model before each frame: the runtime re-measures it after every frame, and on a fast,
        # idle machine the measured costs would need no degradation at all
        rt.cost.ms_per_patch, rt.cost.ms_per_mpix, rt.cost.ms_recon, rt.cost.ms_per_mkept = 1.0, 0.0, 5.0, 0.0
        recs.append(rt.process(frame()))
    rt.finish()
    assert recs[0]["level"]["index"] == 0 and recs[1]["level"]["index"] >= 2
    assert "late" in recs[1]["flags"] and recs[1]["available_ms"] == pytest.approx(20.0)
    assert recs[1]["status"] == "processed"


@pytest.mark.parametrize(
    ("mode", "reason"),
    [("nan", "invalid_nan"), ("saturate", "invalid_saturated"), ("shape", "invalid_channels")],
)
def test_bad_frame_dropped_with_reason(tmp_path: Path, models: dict[str, Path], mode: str, reason: str) -> None:
    rt = FlightRuntime(mission(models), tmp_path, inject=[f"bad-frame@frame1:{mode}"])
    recs = [rt.process(frame()) for _ in range(3)]
    s = rt.finish()
    assert [r["status"] for r in recs] == ["processed", "dropped", "processed"]
    assert recs[1]["reason"] == reason
    assert s["frames"]["dropped"] == 1 and s["frames"]["accounted"]


def test_reboot_recovers_queue_and_ledger(tmp_path: Path, models: dict[str, Path]) -> None:
    files = []
    for i in range(5):
        np.save(tmp_path / f"f{i}.npy", frame(i))
        files.append(tmp_path / f"f{i}.npy")
    m = mission(models, budget={"downlink_bytes_per_pass": 2500})
    rt = FlightRuntime(m, tmp_path / "out", inject=["reboot@frame2"])
    with pytest.raises(SimulatedReboot):
        rt.run(files)
    pending_before = rt.queue.stored_bytes
    assert pending_before > 0  # products were waiting when the computer went down
    # the next boot, same storage, the same command (the same --inject): the reboot fired already, so it recovers
    # (the fault was placed by per-boot frame count and rebooted again before every boot's third frame)
    rt2 = FlightRuntime(m, tmp_path / "out", inject=["reboot@frame2"])
    assert rt2.queue.recovered and rt2.queue.stored_bytes == pending_before
    s = rt2.run(files)
    f = s["frames"]
    assert f["acquired"] == 5 and s["this_boot"]["frames"] == 3 and f["accounted"] and f["dropped"] == 0
    assert f["processed"] == 5 and s["boots"] == 2  # the summary counts the frames of the first boot too
    assert sorted(int(k) for k in rt2.queue.state["frames"]) == [0, 1, 2, 3, 4]
    kinds = [json.loads(x)["type"] for x in (tmp_path / "out" / "telemetry.jsonl").read_text().splitlines()]
    assert "recovery" in kinds and kinds.count("start") == 2


def test_seu_with_a_damaged_golden_copy_degrades_to_sparse_only(tmp_path: Path, models: dict[str, Path]) -> None:
    vae = tmp_path / "vae.onnx"
    vae.write_bytes(models["vae"].read_bytes())
    rt = FlightRuntime(mission(models, anomaly={"model": str(vae)}), tmp_path / "out", inject=["seu@frame1"])
    vae.write_bytes(b"\0" * 100)  # storage damaged after boot: nothing trustworthy to reload
    recs = [rt.process(frame()) for _ in range(3)]
    s = rt.finish()
    assert recs[1]["events"] == ["seu_unrecoverable"] and rt.scorer is None
    assert recs[0]["patches"]["scored"] == 24 and recs[2]["patches"]["scored"] == 0
    assert s["frames"]["downlinked"] == 3  # the frames still go down as sparse pixels


def test_faults_that_never_fire_are_listed(tmp_path: Path, models: dict[str, Path]) -> None:
    rt = FlightRuntime(mission(models), tmp_path, inject=["seu@frame0", "seu@frame99", "late@frame7"])
    rt.process(frame())
    s = rt.finish()
    assert s["faults"] == ["seu@frame0", "seu@frame99", "late@frame7"]
    assert s["faults_not_fired"] == ["seu@frame99", "late@frame7"]
