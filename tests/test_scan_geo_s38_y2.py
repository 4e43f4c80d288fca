"""Review s38 r4 #3: the number in ``geodetic<i>`` / ``crs<i>`` layer names ran across bodies
(``anomalies_moon_geodetic1``). Small synthetic GeoTIFFs in tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("rasterio", reason="the archive extra is not installed: pip install 'edgeae[archive]'")
pytest.importorskip("pyproj")

from test_scan_geo_s38_y1 import (
    MARS_ELLIPSOID,
    MOON_LONLAT,
    PRODUCTS,
    VESTA_LOCAL,
    _entries,
    _Store,
    _tif,
)

from edgeae.scan.geo import write_layer

MOON_ELLIPSOID = MARS_ELLIPSOID.replace("MARS", "Moon").replace("3396190,169.894447223612", "1737400,1000")
VESTA_LOCAL_2 = VESTA_LOCAL.replace("287858", "262700")  # another local radius: another CRS


def test_layer_numbers_start_at_0_for_each_body(tmp_path: Path) -> None:
    """Before: a Mars and a Moon ellipsoid product in one scan gave anomalies_mars_geodetic0 and
    anomalies_moon_geodetic1; the number counts a body's layers of one kind, so each body's first is 0."""
    mars = _tif(tmp_path / "mars.tif", *PRODUCTS["ellipsoid"])
    moon = _tif(tmp_path / "moon.tif", MOON_ELLIPSOID, (100.0, 0, 10_000.0, 0, -100.0, 20_000.0))
    vesta = _tif(tmp_path / "vesta.tif", *PRODUCTS["vesta"])
    vesta2 = _tif(tmp_path / "vesta2.tif", VESTA_LOCAL_2, PRODUCTS["vesta"][1])
    moon_own = _tif(tmp_path / "moon_own.tif", MOON_LONLAT, (0.75, 0, 150.0, 0, -0.75, 20.0), width=80, height=32)
    store = _Store(tmp_path, spots=((40, 0),))  # the lon/lat Moon product's patch at 186° E: its CRS's layer
    paths = {"mars": mars, "moon": moon, "vesta": vesta, "vesta2": vesta2, "moon_own": moon_own}
    names = sorted(w["layer"] for w in write_layer(store, _entries(store, paths), tmp_path / "d.gpkg"))
    assert names == [
        "anomalies_mars_geodetic0", "anomalies_moon_crs0", "anomalies_moon_geodetic0",
        "anomalies_vesta_crs0", "anomalies_vesta_crs1",
    ]  # fmt: skip
