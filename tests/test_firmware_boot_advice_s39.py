"""Proposed with firmware_sim/frame_intake.py's scoring_need (session 39, h2): the boot's memory refusal names the
figure that scores every patch beside its sparse_only figure."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("onnx")


def _refusal(tmp_path: Path, **camera: int) -> tuple[str, int, int]:
    from edgeae.firmware_sim.budget import LADDER, plan_memory
    from edgeae.firmware_sim.frame_intake import check_loaded_memory, level_plan
    from edgeae.firmware_sim.mission import MissionError
    from edgeae.firmware_sim.testing import small_mission, tiny_models

    m = small_mission(tiny_models(tmp_path / "models"), reconstruction={"mode": "off"}, runtime={"threads": 2},
                      camera=camera, budget={"memory_bytes": 2**20})  # fmt: skip
    rt = SimpleNamespace(m=m, rss_loaded=16 * 2**20, rss_boot=0, _model_bytes=lambda: 0,
                         tm=SimpleNamespace(write=lambda *a, **k: None))  # fmt: skip
    with pytest.raises(MissionError) as err:
        check_loaded_memory(rt)  # type: ignore[arg-type]
    plan = plan_memory(m, m.camera.width, m.camera.height, 0, 1)
    return str(err.value), plan.total, level_plan(plan, LADDER[-1]).total


def test_a_fixed_camera_is_told_what_scoring_needs(tmp_path: Path) -> None:
    from edgeae.firmware_sim.frame_intake import HELD_RISE  # the heap's rise over the first frames (session 39, h9)

    text, nominal, least = _refusal(tmp_path, height=1024, width=1024)
    mib = 2**20
    low = -(-(16 * mib + HELD_RISE + least) // mib)  # the rise in both figures since session 40 (h1)
    high = -(-(16 * mib + HELD_RISE + nominal) // mib)
    assert high > low
    assert (
        f"raise [budget] memory_bytes to at least {low} MiB for frames with no patch scored (sparse_only), "
        f"{high} MiB to score every patch ({nominal:,} B of buffers at nominal) or lower [runtime] threads (now 2)"
    ) in text, text


def test_a_camera_of_any_size_gets_the_floor_alone(tmp_path: Path) -> None:
    text, _, _ = _refusal(tmp_path, height=0, width=0)
    assert "to score every patch" not in text and text.endswith("or lower [runtime] threads (now 2)"), text
