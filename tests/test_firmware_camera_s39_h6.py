"""A strip camera of any height (session 39, fixer h6): ``[camera] height = 0`` is the documented "any height" (HiRISE
browse strips of 3,190 to 4,559 rows under one mission), but with a width set the boot counted a 0-row frame's packets
and stopped on "range() arg 3 must not be zero" (``firmware-sim run`` and ``check`` alike). A frame's packets are now
counted when it comes, its height known; every camera size key still refuses 0 where it means nothing, negative and
absurd values in one line at mission validation, before anything is allocated."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

pytest.importorskip("onnx")

CAMERA = 'source = "strips"\nwidth = 192\nheight = 0\n'


def test_a_strip_camera_of_any_height_boots_and_flies_frames_of_two_heights(tmp_path: Path) -> None:
    from _helpers_firmware import run_frames, write_mission
    from edgeae.firmware_sim.testing import textured_frame

    mission = write_mission(tmp_path, "anyheight", camera=CAMERA)
    frames = []
    for i, rows in enumerate((128, 320)):
        frames.append(tmp_path / f"f{i}.npy")
        np.save(frames[-1], textured_frame(i, h=rows))
    assert run_frames(mission, frames, tmp_path / "out") == 0
    lines = [json.loads(x) for x in (tmp_path / "out" / "telemetry.jsonl").read_text().splitlines()]
    recs = [x for x in lines if "status" in x and "source" in x]
    assert [r["status"] for r in recs] == ["processed", "processed"], recs
    plan = next(x for x in lines if x.get("kind") == "memory_plan")  # the strips' buffers are still planned at boot
    assert plan["plan"]["frame_strip_raw"] == 4 * 64 * 192, plan


def test_check_reports_a_strip_camera_of_any_height(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from _helpers_firmware import write_mission
    from edgeae.firmware_sim.cli import main

    mission = write_mission(tmp_path, "anyheight", camera=CAMERA)
    assert main(["check", "--mission", str(mission)]) == 0
    out = capsys.readouterr().out
    assert "a any x 192 px (height x width) frame's buffers" in out and "any frame height: each frame's packets" in out


def _rt(m: Any) -> Any:
    return SimpleNamespace(m=m, _model_bytes=lambda: 0, tm=SimpleNamespace(write=lambda *a, **k: None))


def test_the_packets_of_a_frame_of_any_height_are_counted_when_it_comes(tmp_path: Path) -> None:
    from edgeae.firmware_sim.frame_intake import check_fixed_camera, packet_refusal
    from edgeae.firmware_sim.mission import MissionError
    from edgeae.firmware_sim.testing import small_mission, tiny_models

    m = small_mission(tiny_models(tmp_path / "models"), reconstruction={"mode": "off"},
                      camera={"source": "strips", "width": 4096, "height": 0}, sampling={"keep": 1.0},
                      downlink={"codec": "none", "max_packet_bytes": 128})  # fmt: skip
    check_fixed_camera(_rt(m))  # any height: nothing to count yet (until session 39: ZeroDivision-like ValueError)
    rows = 4096  # 16 Mpx kept whole in 128-byte packets: far more than 65,535
    why = packet_refusal(m, 4096, rows)  # what the loop asks of each raw frame before it is sampled
    assert why is not None and "more than the wire format's 65,535 per product" in why, why
    fixed = dataclasses.replace(m, camera=dataclasses.replace(m.camera, height=rows))
    with pytest.raises(MissionError, match="a full frame's sparse pixels"):  # a known height: refused at boot
        check_fixed_camera(_rt(fixed))


@pytest.mark.parametrize(
    ("camera", "says"),
    [
        ({"height": -1}, "height must be in 0..1,048,576 px (0 = any), got -1"),
        ({"width": -2048}, "width must be in 0..1,048,576 px (0 = any), got -2,048"),
        ({"width": 2**40}, "width must be in 0..1,048,576 px (0 = any), got 1,099,511,627,776"),
        ({"strip_rows": 0}, "strip_rows must be in 1..1,048,576, got 0"),
        ({"strip_rows": -256}, "strip_rows must be in 1..1,048,576, got -256"),
        ({"height": 2**20, "width": 2**13}, "height x width = 1,048,576 x 8,192 = 8,589,934,592 px is over"),
        ({"channels": 0}, "channels must be 1 or 3, got 0"),
        ({"bit_depth": 0}, "bit_depth must be in 1..16, got 0"),
        ({"height": 1.5}, "height must be an integer, got 1.5 (float)"),
    ],
)
def test_a_camera_size_that_is_no_size_is_refused_in_one_line(camera: dict[str, Any], says: str) -> None:
    from edgeae.firmware_sim.mission import MissionError, mission_from_dict

    with pytest.raises(MissionError) as err:
        mission_from_dict({"name": "x", "camera": {"source": "strips", **camera}})
    assert str(err.value) == f"mission: [camera]: {says}" or (says in str(err.value) and "\n" not in str(err.value))
