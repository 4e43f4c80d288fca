"""The cgroup room counts the page cache the kernel would reclaim as free (session 36, fixer i2; review r9 #2): only
inactive_file counted, so a 512 MiB cgroup holding 400 MB of active cache had 35 MiB of room and frames were
degraded or dropped on a machine with memory to spare."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeae import memory_probe

MIB = 2**20


def _cgroup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: dict[str, str], v1: bool = False) -> None:
    root = tmp_path / "cg"
    folder = root / "memory" if v1 else root
    folder.mkdir(parents=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    (tmp_path / "self_cgroup").write_text("4:memory:/\n" if v1 else "0::/\n")
    monkeypatch.setattr(memory_probe, "CGROUP", str(root))
    monkeypatch.setattr(memory_probe, "PROC_CGROUP", str(tmp_path / "self_cgroup"))
    monkeypatch.setattr(memory_probe, "_low_watermark", lambda: 16 * MIB)


def test_active_page_cache_is_room_under_a_v2_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stat = f"anon {100_000_000}\nactive_file {400_000_000}\ninactive_file 0\nfile_dirty 0\nfile_writeback 0\n"
    _cgroup(tmp_path, monkeypatch, {"memory.max": str(512 * MIB), "memory.current": "500000000", "memory.stat": stat})
    room = memory_probe._cgroup_room()
    # 512 MiB less (500 MB used less 400 MB of cache less the 16 MiB reserve)
    assert room == 512 * MIB - (500_000_000 - (400_000_000 - 16 * MIB))
    assert room > 400 * MIB  # r9's repro gave 35.16 MiB


def test_dirty_cache_and_the_reserve_are_not_room(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stat = "active_file 300000000\ninactive_file 100000000\nfile_dirty 50000000\nfile_writeback 50000000\n"
    _cgroup(tmp_path, monkeypatch, {"memory.max": str(512 * MIB), "memory.current": "500000000", "memory.stat": stat})
    assert memory_probe._cgroup_room() == 512 * MIB - (500_000_000 - (300_000_000 - 16 * MIB))
    monkeypatch.setattr(memory_probe, "_low_watermark", lambda: None)  # unknown: half the cache held back
    assert memory_probe._cgroup_room() == 512 * MIB - (500_000_000 - 150_000_000)


def test_v1_counts_total_active_and_inactive_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stat = "total_active_file 400000000\ntotal_inactive_file 0\ntotal_dirty 0\ntotal_writeback 0\n"
    files = {"memory.limit_in_bytes": str(512 * MIB), "memory.usage_in_bytes": "500000000", "memory.stat": stat}
    _cgroup(tmp_path, monkeypatch, files, v1=True)
    assert memory_probe._cgroup_room() == 512 * MIB - (500_000_000 - (400_000_000 - 16 * MIB))
