"""Products whose own file name is not UTF-8 (opened through a temporary UTF-8 link): read errors name the real
file, and the files sharing its stem (world file, .prj, .aux.xml) are seen as beside the real one (review s36 r12)."""

from __future__ import annotations

import os
from html import escape
from pathlib import Path

import numpy as np
import pytest

rasterio = pytest.importorskip("rasterio")

from edgeae._headers import ImageReadError  # noqa: E402
from edgeae.archive.gdal_env import _Alias, dataset_files  # noqa: E402
from edgeae.archive.reader import ProductReader, read_product  # noqa: E402

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


needs_geotiff = pytest.mark.skipif(not GEOTIFF.is_file(), reason=f"{GEOTIFF} absent (/work/shared/data)")


def _plain_copy(src: Path, dst: Path) -> tuple[object, object]:
    """``src``'s pixels as a TIFF with no georeferencing of its own; gives ``src``'s CRS and transform."""
    with rasterio.open(src) as d:
        a, crs, transform = d.read(1), d.crs, d.transform
    with rasterio.open(
        dst.with_name("plain.tif"), "w", driver="GTiff", width=a.shape[1], height=a.shape[0], count=1, dtype=a.dtype
    ) as d:
        d.write(a, 1)
    os.rename(dst.with_name("plain.tif"), dst)
    return crs, transform


@needs_geotiff
@pytest.mark.parametrize("stem", [b"w", b"w\xfe"])
def test_a_world_file_and_aux_xml_beside_a_product_are_read_whatever_its_name(tmp_path: Path, stem: bytes) -> None:
    p = tmp_path / os.fsdecode(stem + b".tif")
    crs, t = _plain_copy(GEOTIFF, p)
    (tmp_path / os.fsdecode(stem + b".tfw")).write_text(
        f"{t.a}\n{t.d}\n{t.b}\n{t.e}\n{t.c + t.a / 2}\n{t.f + t.e / 2}\n"
    )
    srs = f"<PAMDataset><SRS>{escape(crs.to_wkt())}</SRS></PAMDataset>"
    (tmp_path / os.fsdecode(stem + b".tif.aux.xml")).write_text(srs)
    (tmp_path / os.fsdecode(b"x" + stem + b".tfw")).write_text("1\n0\n0\n-1\n0\n0\n")  # another file's
    with ProductReader(p) as r:
        assert r.ds.crs == crs
        assert tuple(r.ds.transform)[:6] == pytest.approx(tuple(t)[:6])
        files = dataset_files(r.ds)
    # GDAL's files under their own names and folder (as check_files needs them), not the links'
    assert sorted(files) == sorted(str(tmp_path / os.fsdecode(stem + x)) for x in (b".tif", b".tfw", b".tif.aux.xml"))


@needs_geotiff
def test_a_pam_aux_xml_beside_a_product_whose_name_is_not_utf8_is_read(tmp_path: Path) -> None:
    p = tmp_path / os.fsdecode(b"g\xfe.tif")
    p.write_bytes(GEOTIFF.read_bytes())
    gt = "1000.0, 2.0, 0.0, 5000.0, 0.0, -2.0"
    (tmp_path / os.fsdecode(b"g\xfe.tif.aux.xml")).write_text(
        f"<PAMDataset><GeoTransform>{gt}</GeoTransform></PAMDataset>"
    )
    with ProductReader(p) as r:
        assert tuple(r.ds.transform)[:6] == (2.0, 0.0, 1000.0, 0.0, -2.0, 5000.0)
