"""Review s38 r4 #2 and #3: a polygon outline that crosses 180° E in a product on a 0..360° grid with central meridian
0 was written in the Moon's lon/lat layer, where PROJ (a GIS) puts its vertices past 180° 360° away (column -438 of
an 80-column grid); and the number in ``geodetic<i>`` / ``crs<i>`` layer names ran across bodies
(``anomalies_moon_geodetic1``). Small synthetic GeoTIFFs in tmp_path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rasterio", reason="the archive extra is not installed: pip install 'edgeae[archive]'")
pytest.importorskip("pyproj")

from test_scan_geo_s38_y1 import (
    MARS_ELLIPSOID,
    MOON_DEG,
    MOON_LONLAT,
    PRODUCTS,
    VESTA_LOCAL,
    _entries,
    _Store,
    _tif,
    _to_product_pixels,
)

from edgeae.scan.geo import write_layer

# equirectangular Moon with central meridian 0, as a grid of 150..210° E is written by a tool that keeps lon_0 = 0
MOON_EQC_0 = MOON_LONLAT.replace("GEOGCS", 'PROJCS["Equirectangular Moon",GEOGCS', 1) + (
    ',PROJECTION["Equirectangular"],PARAMETER["standard_parallel_1",0],PARAMETER["central_meridian",0],'
    'PARAMETER["false_easting",0],PARAMETER["false_northing",0],UNIT["metre",1]]'
)
MOON_ELLIPSOID = MARS_ELLIPSOID.replace("MARS", "Moon").replace("3396190,169.894447223612", "1737400,1000")
VESTA_LOCAL_2 = VESTA_LOCAL.replace("287858", "262700")  # another local radius: another CRS


@pytest.mark.parametrize("crs", ["lonlat", "eqc_lon0"])
def test_a_polygon_crossing_180_lands_on_its_patch(tmp_path: Path, crs: str) -> None:
    """A 150..210° E grid, patch centred at 177° E (outline 171..183° E). In a lon/lat CRS PROJ keeps 183° and the
    ring overlays the grid in the body's layer; with central meridian 0 PROJ wraps 180..183° to -180..-177°, so the
    product goes to its own CRS's layer (map x/y), the note saying why."""
    if crs == "lonlat":
        p = _tif(tmp_path / "moon.tif", MOON_LONLAT, (0.75, 0, 150.0, 0, -0.75, 20.0), width=80, height=32)
    else:
        grid = (0.75 * MOON_DEG, 0, 150 * MOON_DEG, 0, -0.75 * MOON_DEG, 20 * MOON_DEG)
        p = _tif(tmp_path / "moon.tif", MOON_EQC_0, grid, width=80, height=32)
    store = _Store(tmp_path, spots=((28, 0),))
    (w,) = write_layer(store, _entries(store, {"moon": p}), tmp_path / "g.geojson", geometry="polygon")
    doc = json.loads(Path(w["path"]).read_text())
    (f,) = doc["features"]
    ring = np.array(f["geometry"]["coordinates"][0])
    col, row = _to_product_pixels(doc["crs"]["properties"]["name"], p, ring)
    assert col.min() == pytest.approx(28, abs=0.01) and col.max() == pytest.approx(44, abs=0.01), (w, col)
    assert row.min() == pytest.approx(0, abs=0.01) and row.max() == pytest.approx(16, abs=0.01)
    if crs == "lonlat":
        assert w["layer"] == "anomalies_moon" and "note" not in w
        assert ring[:, 0].min() == pytest.approx(171) and ring[:, 0].max() == pytest.approx(183)
    else:
        assert w["layer"] == "anomalies_moon_crs0"
        assert "moon.tif" in w["note"] and "180° E" in w["note"] and "outline" in w["note"], w["note"]
        assert f["properties"]["lon"] == pytest.approx(177)  # the attributes stay lon/lat
    # the same product as points: the centre (177° E) is placed right, so it stays in the body's layer
    (w,) = write_layer(store, _entries(store, {"moon": p}), tmp_path / "pt.geojson")
    assert w["layer"] == "anomalies_moon"


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


def test_a_global_grid_past_180_by_rounding_keeps_its_outlines_in_the_body_layer(tmp_path: Path) -> None:
    """The global LOLA grids (central meridian 180°) span 0.84 m more than 360°: PROJ puts a vertex on their left or
    right edge 360° away. Their outlines, 0.005 px inside their patches, land on them to 0.01 px in the body layer
    (the product is not sent to its CRS's layer for its edge patches)."""
    from test_scan_geo_s38_y1 import MOON_EQC_180

    p = _tif(tmp_path / "lola.tif", MOON_EQC_180, (22742.52, 0, -5458204.8, 0, -22742.52, 2729102.4), 480, 240)
    store = _Store(tmp_path, spots=((0, 100), (464, 100), (200, 100)))
    (w,) = write_layer(store, _entries(store, {"lola": p}), tmp_path / "g.geojson", geometry="polygon")
    doc = json.loads(Path(w["path"]).read_text())
    assert w["layer"] == "anomalies_moon" and len(doc["features"]) == 3
    for f in doc["features"]:
        col, row = _to_product_pixels("IAU_2015:30100", p, np.array(f["geometry"]["coordinates"][0]))
        x0, y0 = f["properties"]["x_px"], f["properties"]["y_px"]
        assert np.abs(col - np.clip(col, x0, x0 + 16)).max() < 0.01 and col.min() < x0 + 0.01, (x0, col)
        assert col.max() > x0 + 16 - 0.01 and abs(row.min() - y0) < 0.01 and abs(row.max() - y0 - 16) < 0.01
