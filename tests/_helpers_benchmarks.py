"""Shared pieces of the `python -m benchmarks` signal tests (sessions 38 u1 and z1): a stage table and machine
record swapped in for the real ones, and a stage command that writes one results file."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import benchmarks.__main__ as bm

WRITE = "import sys; from pathlib import Path; out = Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True); " \
        "(out / 'results.md').write_text(sys.argv[2])"  # fmt: skip


def fake_stages(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """A fixed machine record, and a function that makes its keyword arguments (name=Stage) the stage table."""
    fake: dict[str, Any] = {"date": "2026-12-08T00:00:00+00:00", "commit": "abc1234", "cpu": "Test CPU",
                            "logical_cores": 2, "gpu": None, "cpu_flags": [], "versions": {}}  # fmt: skip
    monkeypatch.setattr(bm, "machine_info", lambda: fake)

    def make(**table: bm.Stage) -> None:
        monkeypatch.setattr(bm, "STAGES", table)

    return make
