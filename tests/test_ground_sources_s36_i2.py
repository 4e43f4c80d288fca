"""The ground reads a downlink folder's pass files in the order the flight wrote them (session 36, fixer i2): by
name, ``pass_100000.bin`` came between ``pass_10000.bin`` and ``pass_10001.bin``, so from pass 100,000 on the ground
kept another first of two resends than the flight's report."""

from __future__ import annotations

from pathlib import Path

from edgeae.firmware_sim.report_packets import pass_files

from edgeae.ground.sources import packet_files


def test_pass_files_are_read_in_the_order_of_their_number_as_the_flight_reads_them(tmp_path: Path) -> None:
    for n in (9999, 10000, 100000, 10001, 100001):
        (tmp_path / f"pass_{n:05d}.bin").write_bytes(b"")
    (tmp_path / "extra.bin").write_bytes(b"")  # not a pass file: after them
    got = [f.name for f in packet_files(tmp_path)]
    assert got == [
        "pass_09999.bin", "pass_10000.bin", "pass_10001.bin", "pass_100000.bin", "pass_100001.bin", "extra.bin"
    ]  # fmt: skip
    assert got[:-1] == [f.name for f in pass_files(tmp_path)]  # the flight report's order
