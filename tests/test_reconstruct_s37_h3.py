"""`edgeae reconstruct` on a frame with no pixel of data (session 37, fixer h3; audit s37 a2 #7): it said "none of
the 8965 sampled pixels holds data ... (raise --keep or change --seed)", which no --keep or --seed can help."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest


def _cli(*argv: Any) -> int:
    from edgeae.cli import main

    return main([str(a) for a in argv])


@pytest.mark.parametrize("value", [np.nan, -np.inf])
def test_a_frame_with_no_pixel_of_data_says_so(
    value: float, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tifffile = pytest.importorskip("tifffile")
    image = tmp_path / "nan.tif"
    tifffile.imwrite(image, np.full((30, 50), value, np.float32))
    out = tmp_path / "r.tif"
    assert _cli("reconstruct", image, "--method", "linear", "-o", out) == 1  # a data error (2 until review r5 #2)
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert f"{image}: none of its 1,500 pixels holds data (all no-data, transparent or NaN/inf)" in err
    assert "--keep" not in err and "--seed" not in err and not out.exists()


def test_a_mask_that_misses_the_pixels_with_data_still_says_raise_keep(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Where some pixel holds data but no sampled one does, --keep or --seed can help: said as before."""
    tifffile = pytest.importorskip("tifffile")
    from edgeae.masks import make_mask

    frame = np.full((30, 50), np.nan, np.float32)
    missed = np.argwhere(~make_mask(0, frame.shape, 0.1, "uniform"))[0]
    frame[tuple(missed)] = 0.5  # one pixel of data, which the seed-0 mask does not sample
    image = tmp_path / "one.tif"
    tifffile.imwrite(image, frame)
    assert _cli("reconstruct", image, "--method", "linear", "-o", tmp_path / "r.tif") == 2
    err = capsys.readouterr().err
    assert "sampled pixels holds data" in err and "(raise --keep or change --seed)" in err


def test_received_pixels_names_each_reason() -> None:
    from edgeae.received import NoData, NothingReceived, received_pixels

    sampled = np.zeros((4, 4), bool)
    sampled[1, 1] = True
    has_data = np.ones((4, 4), bool)
    assert received_pixels(sampled, None, "f", 0.1, 0) is sampled
    assert received_pixels(sampled, has_data, "f", 0.1, 0) is sampled
    with pytest.raises(NoData, match=r"^f: none of its 16 pixels holds data"):
        received_pixels(sampled, ~has_data, "f", 0.1, 0)
    with pytest.raises(
        NothingReceived, match=r"^f: the mask sampled none of its 16 pixel\(s\) at --keep 0.1 \(seed 0"
    ) as a:
        received_pixels(~has_data, has_data, "f", 0.1, 0)
    has_data[1, 1] = False
    with pytest.raises(NothingReceived, match=r"^f: none of the 1 sampled pixels holds data") as b:
        received_pixels(sampled, has_data, "f", 0.1, 0)
    assert not isinstance(a.value, NoData) and not isinstance(b.value, NoData)  # raise --keep: a usage error
    sampled[2, 2] = True
    assert np.array_equal(received_pixels(sampled, has_data, "f", 0.1, 0), sampled & has_data)
