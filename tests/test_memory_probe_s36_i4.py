"""The memory probe reads /proc/zoneinfo once per process (session 36, fixer i4; review r13 #6): the probe runs
before every frame and asks for the low watermark once per cgroup level, 3.4 ms a read of a 256-CPU host's file."""

from __future__ import annotations

import builtins
from pathlib import Path
from typing import Any

import pytest

from edgeae import memory_probe


def test_the_low_watermark_is_read_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    zoneinfo = tmp_path / "zoneinfo"
    zoneinfo.write_text("Node 0, zone   Normal\n  pages free     100\n        min      10\n        low      12\n"
                        "Node 0, zone    DMA32\n        low      4\n")  # fmt: skip
    monkeypatch.setattr(memory_probe, "ZONEINFO", str(zoneinfo))
    memory_probe._low_watermark.cache_clear()
    opened: list[str] = []
    real_open = builtins.open

    def counting_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting_open)
    try:
        page = memory_probe.os.sysconf("SC_PAGE_SIZE")
        assert memory_probe._low_watermark() == 16 * page
        for _ in range(3):
            assert memory_probe.reclaimable_cache({"active_file": 10**9}, ("active_file",), ()) == 10**9 - 16 * page
        assert opened.count(str(zoneinfo)) == 1
    finally:
        memory_probe._low_watermark.cache_clear()  # the next test reads the real file
