"""The flight process's malloc policy (firmware_sim/heap.py): set at boot, recorded, refused when unknown."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from edgeae.firmware_sim.heap import COMPACT, apply_heap_policy, glibc_version


def test_system_policy_changes_nothing() -> None:
    assert apply_heap_policy("system") == {"policy": "system"}


def test_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match=r"heap policy must be one of .*compact.*system"):
        apply_heap_policy("small")


def test_compact_policy_is_set_or_explained() -> None:
    """In a fresh process (arenas are bound when a thread first allocates): on glibc the three mallopt
    settings are applied and recorded; elsewhere the policy says why nothing was changed."""
    code = (
        "import json\nfrom edgeae.firmware_sim.heap import apply_heap_policy\n"
        "print(json.dumps(apply_heap_policy('compact')))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr[-2000:]
    got = json.loads(res.stdout)
    if glibc_version() is None:
        assert got["policy"] == "system" and got["requested"] == "compact" and got["reason"]
    else:
        assert got["policy"] == "compact" and "failed" not in got
        assert {k: got[k] for k in COMPACT} == {k: v for k, (_, v) in COMPACT.items()}


def test_the_runtime_records_its_heap_policy(tmp_path: Path) -> None:
    """The boot telemetry and the summary say which policy the flight process ran under."""
    from edgeae.firmware_sim.loop import FlightRuntime
    from edgeae.firmware_sim.mission import mission_from_dict

    m = mission_from_dict({"name": "t", "camera": {"channels": 1}, "runtime": {"heap": "system"}})
    rt = FlightRuntime(m, tmp_path)
    s = rt.finish()
    assert s["memory"]["heap"] == {"policy": "system"}
    assert s["memory"]["traced_peak_bytes"] is None  # tracemalloc is off unless trace_allocations
    start = json.loads((tmp_path / "telemetry.jsonl").read_text().splitlines()[0])
    assert start["type"] == "start" and start["heap"] == {"policy": "system"}
