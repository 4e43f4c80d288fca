"""Products whose own file name is not UTF-8 (opened through a temporary UTF-8 link): read errors name the real
file, and the files sharing its stem (world file, .prj, .aux.xml) are seen as beside the real one (review s36 r12)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

rasterio = pytest.importorskip("rasterio")

from edgeae._headers import ImageReadError  # noqa: E402
from edgeae.archive.gdal_env import _Alias  # noqa: E402
from edgeae.archive.reader import read_product  # noqa: E402

GEOTIFF = Path("/work/shared/data/formats/geotiff/ESP_037156_1800_RED.byte.tif")


def _corrupt_tiff(path: Path, scratch: Path) -> None:
    a = np.random.default_rng(0).integers(0, 255, (512, 512)).astype("uint8")
    tmp = scratch / "t.tif"
    opts = {"compress": "deflate", "tiled": True, "blockxsize": 256, "blockysize": 256}
    with rasterio.open(tmp, "w", driver="GTiff", width=512, height=512, count=1, dtype="uint8", **opts) as d:
        d.write(a, 1)
    b = bytearray(tmp.read_bytes())
    b[len(b) // 2 : len(b) // 2 + 2000] = b"\x55" * 2000
    path.write_bytes(bytes(b))


def test_a_read_error_names_the_file_not_its_temporary_link(tmp_path: Path) -> None:
    p = tmp_path / os.fsdecode(b"c\xfe.tif")
    _corrupt_tiff(p, tmp_path)
    with pytest.raises(ImageReadError) as err:
        read_product(p)
    text = str(err.value)
    assert "read of rows" in text or "cannot be read" in text
    assert "c_.tif" not in text, text
    assert "edgeae-gdal-" not in text, text
    assert "failed: c\\xfe.tif, band 1" in text, text  # GDAL's words name the file, not the link


def test_unalias_writes_a_links_bare_name_as_the_files_own(tmp_path: Path) -> None:
    p = tmp_path / os.fsdecode(b"c\xfe.tif")
    p.write_bytes(b"x")
    alias = _Alias.of(p)
    assert alias is not None
    try:
        link = os.path.basename(alias.path)
        assert link == "c_.tif"
        said = alias.unalias(f"{alias.path}: bad; Read failed: {link}, band 1. Not xc_.tif nor {link}x.")
        assert said == f"{tmp_path}/c\\xfe.tif: bad; Read failed: c\\xfe.tif, band 1. Not xc_.tif nor {link}x."
    finally:
        alias.remove()
