"""Pass-file names with a digit that is not ASCII (session 36, fixer i4; review r13 #4): ``'²'.isdigit()`` is True
but ``int('²')`` raises, so a ``pass_².bin`` beside the pass files stopped ``edgeae ground decode`` and the flight's
report with "invalid literal for int()"; such a name is now ordered after the numbered ones, by name."""

from __future__ import annotations

from pathlib import Path

import pytest
from edgeae.firmware_sim.interpreters import _natural_key
from edgeae.firmware_sim.report_packets import pass_files

from edgeae.ground.sources import packet_files


@pytest.fixture
def downlink(tmp_path: Path) -> Path:
    for name in ("pass_00002.bin", "pass_².bin", "pass_00001.bin", "pass_١٢.bin", "pass_00010.bin"):
        (tmp_path / name).write_bytes(b"")
    return tmp_path


def test_a_pass_file_named_with_a_superscript_digit_goes_after_the_numbered_ones(downlink: Path) -> None:
    want = ["pass_00001.bin", "pass_00002.bin", "pass_00010.bin", "pass_².bin", "pass_١٢.bin"]
    assert [f.name for f in packet_files(downlink)] == want
    assert [f.name for f in pass_files(downlink)] == want


def test_ground_decode_reads_a_folder_holding_such_a_name(
    downlink: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from edgeae.cli import main

    rc = main(["ground", "decode", str(downlink), "--out", str(tmp_path / "gd_out")])
    out, err = capsys.readouterr()
    assert rc == 1, err  # empty files: no product, as before the ordering (not the error exit, 2)
    assert "0 packets received" in out and "invalid literal" not in err


def test_a_tensor_name_ending_in_a_superscript_digit_sorts_after_the_numbered_ones() -> None:
    names = ["out_²", "out_10", "out_2"]
    assert sorted(names, key=_natural_key) == ["out_2", "out_10", "out_²"]
