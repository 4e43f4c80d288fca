"""The console's late-frame advice (session 36, fixer i2; review r7 #4): a slow frame that also arrived late is told
its lateness, and a fraction of a ms left reads as given."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from edgeae.firmware_sim.cli_advice import advice_lines


def _mission(frame_ms: float = 3000.0) -> Any:
    return SimpleNamespace(
        budget=SimpleNamespace(frame_ms=frame_ms, safety=0.85),
        anomaly=SimpleNamespace(stride=32, patch=32),
        runtime=SimpleNamespace(threads=1),
    )


def _late(total: float, lateness: float, frame_ms: float = 3000.0, fid: int = 0) -> dict[str, Any]:
    return {"frame_id": fid, "status": "processed", "flags": ["late"], "timing_ms": {"total": total},
            "lateness_ms": lateness, "available_ms": frame_ms - lateness, "deadline": {"status": "late"}}  # fmt: skip


def test_a_slow_frame_that_also_arrived_late_is_told_its_lateness() -> None:
    """r7's repro: 2700 ms of work, 2000 ms late, 3000 ms budget: 'raise frame_ms to about 3200 ms' and no more."""
    (line,) = advice_lines({}, [_late(2700.0, 2000.0)], _mission())
    assert "raise [budget] frame_ms to about 3200 ms" in line  # what the work needs (2700 / 0.85)
    assert "frame 0 also arrived 2000 ms late, so it needed about 5600 ms with that delay" in line
    (on_time,) = advice_lines({}, [_late(2700.0, 0.0)], _mission())
    assert "arrived" not in on_time


def test_a_fraction_of_a_ms_left_reads_as_given() -> None:
    """'predicted to take 1 ms of the 0 ms available' for --frame-ms 0.001."""
    starved = {**_late(5.0, 0.0, 0.001), "deadline": {"status": "met"}, "predicted_nominal_ms": 1.0,
               "patches": {"grid": 4}}  # fmt: skip
    (line,) = advice_lines({}, [starved], _mission(0.001))
    assert "of the 0.001 ms available" in line
