"""Pass-file names with a digit that is not ASCII (session 36, fixer i4; review r13 #4): ``'²'.isdigit()`` is True
but ``int('²')`` raises, so a ``pass_².bin`` beside the pass files stopped ``edgeae ground decode`` and the flight's
report with "invalid literal for int()"; such a name is now ordered after the numbered ones, by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
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


def test_the_warning_on_pixels_without_data_says_what_is_sent(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """It said "read as sample value 0", where a transparent pixel's stored RGB is what the ground sends."""
    cv2 = pytest.importorskip("cv2")
    from edgeae.ground.sources import image_samples
    from edgeae.ground.validity import original_valid

    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., :3] = (200, 100, 50)
    rgba[..., 3] = 255
    rgba[:4, :4, 3] = 0  # 16 transparent pixels, their RGB still (200, 100, 50)
    png = tmp_path / "rgba.png"
    assert cv2.imwrite(str(png), rgba[..., [2, 1, 0, 3]])  # OpenCV writes BGRA
    with caplog.at_level("WARNING", logger="edgeae.ground.sources"):
        samples, bits = image_samples(png)
    assert bits == 8 and samples[0, 0].tolist() == [200, 100, 50]  # sent as stored, not 0
    assert not original_valid(png, samples, bits)[:4, :4].any()  # and left out of the PSNR
    assert original_valid(png, samples, bits).sum() == 256 - 16
    (msg,) = [r.getMessage() for r in caplog.records]
    assert msg == (
        f"{png}: 16 pixel(s) hold no data (NaN/inf or transparent): NaN/inf read as 0, transparent pixels sent as "
        "stored (the ground cannot tell them from data; their PSNR leaves them out)"
    )


def test_nan_samples_are_read_as_0(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    tifffile = pytest.importorskip("tifffile")
    from edgeae.ground.sources import image_samples

    frame = np.full((8, 8), 0.5, np.float32)
    frame[0, 0] = np.nan
    tifffile.imwrite(tmp_path / "nan.tif", frame)
    with caplog.at_level("WARNING", logger="edgeae.ground.sources"):
        samples, bits = image_samples(tmp_path / "nan.tif")
    assert bits == 16 and samples[0, 0, 0] == 0 and samples[1, 1, 0] == 32768
    assert "1 pixel(s) hold no data" in caplog.text and "NaN/inf read as 0" in caplog.text
