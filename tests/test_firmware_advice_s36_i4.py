"""The starved-frame line of a frame that arrived later than its whole budget (session 36, fixer i4; review r13 #5):
it read "of the -2.23e+03 ms left" (the line before it says "leaving 0 ms"); a time left is never below 0 ms."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from edgeae.firmware_sim.cli_advice import _ms, advice_lines


def _mission(frame_ms: float = 3000.0) -> Any:
    return SimpleNamespace(
        budget=SimpleNamespace(frame_ms=frame_ms, safety=0.85),
        anomaly=SimpleNamespace(stride=32, patch=32),
        runtime=SimpleNamespace(threads=1),
    )


def test_a_frame_later_than_its_budget_has_0_ms_left() -> None:
    starved = {"frame_id": 4, "status": "processed", "flags": [], "timing_ms": {"total": 3.0},
               "lateness_ms": 5234.0, "available_ms": 3000.0 - 5234.0, "deadline": {"status": "met"},
               "predicted_nominal_ms": 1000.0, "patches": {"grid": 4}}  # fmt: skip
    (line,) = advice_lines({}, [starved], _mission())
    assert "predicted to take 1,000 ms of the 0 ms left after it arrived 5234 ms late" in line
    assert "e+" not in line and "-" not in line.split("left")[0]


def test_times_read_as_given() -> None:
    assert [_ms(v) for v in (1020.4, 12.0, 0.001, 0.0, -2234.0)] == [
        "1,020 ms", "12 ms", "0.001 ms", "0 ms", "-2,234 ms"
    ]  # fmt: skip
