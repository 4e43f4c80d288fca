"""``firmware-sim run`` writes report.html; a run that drops every frame exits non-zero; missions are listed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from edgeae.firmware_sim.cli import EXIT_ALL_DROPPED, main

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("spacepackets")
from _helpers_firmware import run_frames, save_frames, write_mission
from edgeae.firmware_sim.report import png_bytes, write_report
from edgeae.firmware_sim.testing import tiny_vae_onnx


def run_mission(tmp_path: Path, height: int = 0, width: int = 0, inject: str = "") -> tuple[int, Path]:
    camera = f"height = {height}\nwidth = {width}\n"
    mission = write_mission(tmp_path, "report-test", frame_ms=5000.0, camera=camera)
    out = tmp_path / "out"
    return run_frames(mission, save_frames(tmp_path, 3), out, *(["--inject", inject] if inject else [])), out


def test_report_has_every_section(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out = run_mission(tmp_path, inject="late@frame1:6000")
    assert rc == 0
    printed = capsys.readouterr().out
    assert "None" not in printed and f"report: {out / 'report.html'}" in printed
    html = (out / "report.html").read_text()
    for title in (
        "Outcome",
        "Frame timeline: stage times against the deadline",
        "Memory against the budget",
        "Ledger: every frame downlinked, queued or dropped",
        "Downlink queue by priority",
        "Anomaly gallery",
        "Events: boots, recoveries, model loads, faults",
    ):
        assert f"<h2>{title}</h2>" in html
    assert "deadline 5000 ms" in html and "sparse_only" in html  # the late frame degraded
    assert "budget 256.0 MiB" in html  # the mission's default memory budget
    assert "RSS growth over boot" in html and "heap" in html  # the enforced figure is the one drawn
    gallery = sorted((out / "report_img").glob("anomaly_*.png"))
    # 3 patches of frames 0 and 2, decoded from the downlink packets; the late frame 1 was not scored
    assert len(gallery) == 6 and not any(g.name.startswith("anomaly_f1_") for g in gallery)
    assert all(f"report_img/{g.name}" in html for g in gallery)
    assert "`" not in html
    assert main(["report", str(out)]) == 0  # rebuilt from the folder alone


def test_all_dropped_exits_non_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out = run_mission(tmp_path, height=999, width=999)
    assert rc == EXIT_ALL_DROPPED
    cap = capsys.readouterr()
    assert "None" not in cap.out and "no frame was processed" in cap.out
    assert "every frame was dropped" in cap.err and "--set camera.height=H" in cap.err
    s = json.loads((out / "summary.json").read_text())
    assert s["frames"]["dropped"] == 3
    assert "invalid_shape" in (out / "report.html").read_text()


def test_missions_and_bench_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["missions"]) == 0
    text = capsys.readouterr().out
    assert "rover_mastcamz" in text and "orbital_nac" in text and "`" not in text
    model = tiny_vae_onnx(tmp_path / "vae.onnx", 1, 32)
    args = ["bench", "--model", str(model), "--threads", "1", "--iters", "2", "--batch", "4"]
    assert main([*args, "--frame-height", "64", "--frame-width", "64"]) == 0
    table = capsys.readouterr().out
    assert "throughput" in table and "{" not in table  # the table only: JSON goes to --json


def test_png_writer_round_trip(tmp_path: Path) -> None:
    cv2 = pytest.importorskip("cv2")
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    (tmp_path / "a.png").write_bytes(png_bytes(rgb))
    assert np.array_equal(cv2.imread(str(tmp_path / "a.png"))[..., ::-1], rgb)
    grey16 = np.full((4, 4, 1), 4095, np.uint16)
    (tmp_path / "b.png").write_bytes(png_bytes(grey16, bit_depth=12))
    assert int(cv2.imread(str(tmp_path / "b.png"), cv2.IMREAD_GRAYSCALE).max()) == 255


def test_report_of_an_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "summary.json").write_text("{}")
    html = write_report(tmp_path).read_text()
    assert "No frame was processed" in html


def test_report_command_refuses_a_damaged_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edgeae.firmware_sim.cli import main as fw_main

    (tmp_path / "summary.json").write_text('{"frames": {"acq')
    assert fw_main(["report", str(tmp_path)]) == 2
    assert "summary.json is not readable JSON" in capsys.readouterr().err
    (tmp_path / "summary.json").write_text("[1, 2]")
    assert fw_main(["report", str(tmp_path)]) == 2
    assert "not a firmware-sim run summary" in capsys.readouterr().err


def test_verdict_is_amber_when_some_frames_were_dropped_or_late() -> None:
    from edgeae.firmware_sim.report import _verdict

    ok = {"frames": {"acquired": 3, "downlinked": 3}, "timing_ms": {"p50": 10.0, "max": 12.0, "deadline_missed": 0}}
    assert "class='verdict'" in _verdict(ok)
    dropped = {**ok, "frames": {"acquired": 3, "downlinked": 2, "dropped": 1, "drop_reasons": {"frame_error": 1}}}
    assert "verdict warn" in _verdict(dropped)
    late = {**ok, "timing_ms": {"p50": 10.0, "max": 90.0, "deadline_missed": 2}}
    assert "verdict warn" in _verdict(late)
    assert "verdict bad" in _verdict({**ok, "frames": {"acquired": 2, "dropped": 2}})


def test_gallery_note_says_how_patches_were_chosen(tmp_path: Path) -> None:
    from edgeae.firmware_sim.report import _scoring_note

    settings = {"anomaly.method": "cae-masked", "anomaly.model": "m.onnx", "anomaly.patch": 128,
                "anomaly.stride": 128, "anomaly.threshold": None, "anomaly.top_k": 6}  # fmt: skip
    (tmp_path / "mission.json").write_text(json.dumps({"name": "x", "settings": settings}))
    note = _scoring_note(tmp_path)
    assert "no threshold: the top 6 of each frame by rank" in note and "128-px patches" in note
    settings["anomaly.threshold"] = 0.5
    (tmp_path / "mission.json").write_text(json.dumps({"name": "x", "settings": settings}))
    assert "above 0.5" in _scoring_note(tmp_path)
    assert _scoring_note(tmp_path / "nowhere") == ""
