"""The console's advice against the mission's budgets (session 36, fixer g4; audit s36 a3, the late-frame and small
memory-budget advice): a frame that arrived late is not told to "raise" frame_ms below its current value, the
deadline is written as given, and "lower [runtime] threads" is not advised at one thread. Also the ground's
wording on patches refused on board, which the flight's compacted queue index no longer itemises."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from edgeae.firmware_sim.cli_advice import advice_lines
from edgeae.firmware_sim.cli_outputs import DROP_HINTS
from edgeae.firmware_sim.run_summary import memory_warnings

MIB = 2**20


def _mission(frame_ms: float = 3000.0, threads: int = 1) -> Any:
    return SimpleNamespace(
        budget=SimpleNamespace(frame_ms=frame_ms, safety=0.85),
        anomaly=SimpleNamespace(stride=32, patch=32),
        runtime=SimpleNamespace(threads=threads),
    )


def _late(total: float, lateness: float, frame_ms: float = 3000.0, fid: int = 0) -> dict[str, Any]:
    return {"frame_id": fid, "status": "processed", "flags": ["late"] if lateness else [],
            "timing_ms": {"total": total}, "lateness_ms": lateness, "available_ms": frame_ms - lateness,
            "deadline": {"status": "late"}}  # fmt: skip


def test_a_frame_late_because_it_arrived_late_is_not_told_to_raise_frame_ms() -> None:
    """a3's repro: a frame 2999 ms late on a 3000 ms budget took 374 ms: 'raise [budget] frame_ms to about 440 ms'."""
    (line,) = advice_lines({}, [_late(374.0, 2999.0)], _mission())
    assert "raise" not in line and "440" not in line
    assert line == (
        "  1 frame(s) missed the 3000 ms deadline because they arrived late: frame 0 arrived 2999 ms late, leaving "
        "1 ms, and took 374 ms, within the budget had it come on time (raising [budget] frame_ms would not help "
        "them: see what delays the frames)"
    )


def test_a_frame_too_slow_for_the_budget_is_told_the_frame_ms_it_needs() -> None:
    # on time, over the budget: as before (374 / safety 0.85 = 440, rounded up)
    (line,) = advice_lines({}, [_late(374.0, 0.0, 300.0)], _mission(300.0))
    assert (
        "1 frame(s) missed the 300 ms deadline (the slowest took 374 ms): raise [budget] frame_ms to about 440 ms"
        in line
    )
    # a budget given in fractions of a ms reads as given (it read "missed the 0 ms deadline")
    (line,) = advice_lines({}, [_late(374.0, 0.0, 0.001)], _mission(0.001))
    assert "missed the 0.001 ms deadline" in line and "about 440 ms (--frame-ms 440)" in line
    # both kinds: one line each
    lines = advice_lines({}, [_late(374.0, 0.0, 300.0), _late(200.0, 250.0, 300.0, fid=1)], _mission(300.0))
    assert len(lines) == 2 and "about 440 ms" in lines[0] and "frame 1 arrived 250 ms late" in lines[1]


def test_a_frame_that_scored_nothing_for_lateness_is_not_told_to_raise_frame_ms() -> None:
    """'predicted to take 1,020 ms of the 1 ms available: raise [budget] frame_ms to about 1300 ms' with 3000 ms."""
    starved = {**_late(5.0, 2999.0), "deadline": {"status": "met"}, "predicted_nominal_ms": 1020.0,
               "patches": {"grid": 480}}  # fmt: skip
    (line,) = advice_lines({}, [starved], _mission())
    assert "1 frame(s) ran sparse_only, no patch scored" in line and "raise" not in line
    assert "1,020 ms of the 1 ms left after it arrived 2999 ms late: on time it fits the 3000 ms budget" in line
    slow = {**starved, "lateness_ms": 0.0, "available_ms": 3000.0, "predicted_nominal_ms": 89132.0}
    (line,) = advice_lines({}, [slow], _mission())
    assert "predicted to take 89,132 ms of the 3,000 ms available: raise [budget] frame_ms to about 110000 ms" in line


def test_lower_threads_is_advised_only_above_one_thread() -> None:
    heavy = {"frame_id": 0, "status": "processed", "flags": [], "timing_ms": {"total": 1.0},
             "deadline": {"status": "met"}, "memory": {"over_budget": True, "rss_growth_peak": 66 * MIB,
                                                       "budget": 64 * MIB}}  # fmt: skip
    (one,) = advice_lines({}, [heavy], _mission(threads=1))
    assert one.endswith("raise [budget] memory_bytes to at least 66 MiB")
    (two,) = advice_lines({}, [heavy], _mission(threads=2))
    assert two.endswith("raise [budget] memory_bytes to at least 66 MiB or lower [runtime] threads (now 2)")
    assert memory_warnings([heavy], 1)[0].endswith("to at least 66 MiB")
    assert memory_warnings([heavy], 4)[0].endswith("to at least 66 MiB or lower [runtime] threads (now 4)")
    assert "lower [runtime] threads where it is above 1" in DROP_HINTS["memory_budget"]


def test_the_ground_points_to_the_flights_telemetry_for_patches_refused_on_board(capsys: Any) -> None:
    """'the flight's queue/index.json says which': since the index is compacted (dab3114) it itemises only the last
    100 evicted products; telemetry.jsonl has an event for each."""
    import inspect

    pytest.importorskip("spacepackets")  # the ground package's wire format
    from edgeae.cli.ground_output import print_report
    from edgeae.ground import patch_checks

    stream = {"packets_received": 1, "packets_accepted": 1, "duplicates": 0, "rejected": {}, "sequence": {},
              "patches_announced_not_received": {"count": 2, "patches": []}}  # fmt: skip
    print_report({"stream": stream, "products": {}})
    line = next(x for x in capsys.readouterr().out.splitlines() if "announced in received telemetry" in x)
    assert "queue/index.json says which" not in line
    assert "the flight's telemetry.jsonl has an 'evicted' or 'queue_refused' event for each product refused" in line
    doc = inspect.getdoc(patch_checks.announced_not_received) or ""
    assert "queue/index.json`` says which" not in doc and "``queue_refused``" in doc
