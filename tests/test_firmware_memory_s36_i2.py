"""The board's memory at each frame (session 36, fixer i2; review r9 #3, #7): ``[budget] board_memory =
"budget-only"`` turns the per-frame cap by the host's memory off, and the boot's out-of-memory line says no type
twice and no threads advice at one thread."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from edgeae.firmware_sim import memory_room
from edgeae.firmware_sim.cli import main
from edgeae.firmware_sim.mission import load_mission


def _mission(board_memory: str = "probe", threads: int = 1):  # type: ignore[no-untyped-def]
    from edgeae.firmware_sim.mission import MISSIONS_DIR

    m = load_mission(MISSIONS_DIR / "rover_mastcamz.toml")
    return dataclasses.replace(
        m,
        budget=dataclasses.replace(m.budget, board_memory=board_memory),
        runtime=dataclasses.replace(m.runtime, threads=threads),
    )


def test_budget_only_turns_the_per_frame_room_cap_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory_room, "room_now", lambda: memory_room.Room(1 << 20, "MemAvailable"))
    capped = memory_room.room_cap(_mission(), 5)
    assert capped is not None and capped[0] == 5 + (1 << 20)  # the host's 1 MiB caps the ladder
    assert memory_room.room_cap(_mission("budget-only"), 5) is None  # the budget alone


def test_a_board_memory_that_is_not_known_is_refused_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--mission", "rover_mastcamz", "--set", "budget.board_memory=never"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "board_memory must be one of 'probe', 'budget-only'" in err


def test_the_boots_out_of_memory_line_names_the_type_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory_room, "room_now", lambda: None)
    text = str(memory_room.boot_out_of_memory(_mission(), "loading the models", MemoryError()))
    assert "(MemoryError)" in text and "MemoryError: MemoryError" not in text and "threads" not in text
    text = str(memory_room.boot_out_of_memory(_mission(threads=2), "x", OSError("failed to map segment " * 20)))
    assert "lower [runtime] threads (now 2)" in text and "segment ...)" not in text and "segment...)" in text


def test_a_frame_whose_thread_cannot_start_is_dropped_memory_unavailable(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """r9 #8: a RuntimeError("can't start new thread") from the strip prefetch was dropped frame_error."""
    import json

    import numpy as np
    from edgeae.firmware_sim import frame_work
    from edgeae.firmware_sim.testing import textured_frame

    (tmp_path / "m.toml").write_text(
        'name = "i2"\n[camera]\nchannels = 1\n[anomaly]\nmodel = ""\n[reconstruction]\nmode = "off"\n'
    )
    np.save(tmp_path / "f0.npy", textured_frame(0))

    def no_thread(self: Any, strip_rows: int) -> bool:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(frame_work.FrameWork, "stream", no_thread)
    out = tmp_path / "out"
    argv = ["run", "--mission", str(tmp_path / "m.toml"), "--frames", str(tmp_path / "f0.npy"), "--out", str(out)]
    assert main(argv) == 1  # every frame dropped
    drops = json.loads((out / "summary.json").read_text())["frames"]["drop_reasons"]
    assert drops == {"memory_unavailable": 1}
