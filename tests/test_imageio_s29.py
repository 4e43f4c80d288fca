"""Session 29's audit of imageio: read_image honours (or refuses) bayer=, margin=, detect_nodata= and
nodata_threshold= for archive products; write_image says what it clips, refuses empty arrays and says when a
bit depth cannot apply."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from edgeae.imageio import read_image, write_image
from edgeae.nodata import Margin


def test_read_image_checks_the_bayer_pattern_before_reading(tmp_path: Path) -> None:
    png = write_image(tmp_path / "g.png", np.full((8, 8), 0.5, np.float32))
    with pytest.raises(ValueError, match=r"unknown Bayer pattern 'XXXX'.*RGGB"):
        read_image(png, bayer="XXXX")
    with pytest.raises(ValueError, match="unknown Bayer pattern"):  # a product too (no GDAL needed to say it)
        read_image(tmp_path / "missing.cub", bayer="XXXX")


def test_read_image_applies_bayer_and_margin_to_archive_products(formats: Path) -> None:
    """read_image(cub, bayer='XXXX') returned the grey product with no error; bayer and margin were ignored."""
    pytest.importorskip("rasterio")
    from edgeae.archive.reader import read_product
    from edgeae.bayer import demosaic_bilinear

    cub = formats / "isis3" / "mocImage.cub"
    plain = read_product(cub)
    assert plain.pixels.shape == (20, 20, 1)
    rgb = read_image(cub, bayer="RGGB")
    assert rgb.pixels.shape == (20, 20, 3) and rgb.extra["demosaiced"] == "RGGB"
    assert np.array_equal(rgb.pixels, demosaic_bilinear(plain.pixels, "RGGB"))  # as score_file streams it
    assert read_image(cub, bayer="RGGB", channels=1).pixels.shape == (20, 20, 1)
    edged = read_image(cub, margin=Margin(2, 0, 3, 0))
    assert not edged.valid[:2].any() and not edged.valid[:, :3].any() and edged.valid[2:, 3:].all()
    with pytest.raises(ValueError, match=r"nodata_threshold.*archive product"):
        read_image(cub, nodata_threshold=0.1)


def test_detect_nodata_false_keeps_a_products_label_no_data_only(formats: Path) -> None:
    """A byte GeoTIFF with no declared no-data: its zero-filled border is detected, and detect_nodata=False skips
    that detection (as for an image); declared special values stay invalid either way."""
    pytest.importorskip("rasterio")
    tif = formats / "geotiff" / "ESP_037156_1800_RED.byte.tif"
    seen = read_image(tif)
    assert 0.6 < seen.valid_fraction < 0.8
    kept = read_image(tif, detect_nodata=False)
    assert kept.valid.all() and np.array_equal(kept.pixels, seen.pixels)
    cub = formats / "isis3" / "PSP_002118_1510_25cm_o_forPDS_cropped.cub"  # declares 0 and 255 special
    assert np.array_equal(read_image(cub, detect_nodata=False).valid, read_image(cub).valid)


def test_write_image_says_what_it_clips_and_refuses_what_it_cannot_write(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    grey = (np.arange(64 * 64).reshape(64, 64) % 256).astype(np.float32)
    with caplog.at_level(logging.WARNING, logger="edgeae.imageio"):
        write_image(tmp_path / "a.png", grey)  # 0..255 floats: clipped to nearly all white
    assert "float samples span [0, 255]" in caplog.text and "divide by 255" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="edgeae.imageio"):
        write_image(tmp_path / "b.png", grey / 255 * 1.2)  # a small overshoot is clipped without a word
    assert not caplog.text
    for empty in (np.zeros((0, 0), np.float32), np.zeros((0, 5, 3), np.uint8)):
        with pytest.raises(ValueError, match=r"the array is empty \(shape"):
            write_image(tmp_path / "e.png", empty)
    with caplog.at_level(logging.WARNING, logger="edgeae.imageio"):
        out = write_image(tmp_path / "c.png", grey.astype(np.uint8), bit_depth=16)
    assert "uint8 samples are written at 8 bits" in caplog.text
    assert read_image(out, detect_nodata=False).bit_depth == 8
