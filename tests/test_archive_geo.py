"""Pixel <-> map <-> lon/lat for every map-projected sample: round trips exact to 0.5 px, ISIS latitudes as the
cube's Mapping group states them, and the score-map GeoTIFF aligned with its product."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rasterio", reason="the archive extra is not installed: pip install 'edgeae[archive]'")
pytest.importorskip("pyproj", reason="the archive extra is not installed: pip install 'edgeae[archive]'")

from edgeae.archive.label import parse_number
from edgeae.archive.reader import ProductReader

PROJECTED = {
    "isis3/ldem_4_reduced.cub": "MOON",
    "isis3/dawnEqui1.cub": "VESTA",
    "isis3/PSP_002118_1510_25cm_o_forPDS_cropped.cub": "MARS",
    "isis3/PSP_009404_2635_RED_NLstretch_1m_o_forPDS_cropped.cub": "MARS",
    "isis3/Ares4_Marth_Crater_3557E_126N_ngate_03_lowres.cub": "MARS",
    "pds3/MI_MAP_03_N51E124N50E125SC_cropped.lbl": "MOON",
    "pds3/ldem_4_cropped.img": "MOON",
    "pds4/MY36_015782_024_0_PAN_cropped.xml": "MARS",
    "jp2/test.jp2": "MARS",
    "geotiff/mars.tif": "MARS",
    "geotiff/moon.tif": "MOON",
    "geotiff/Lunar_LRO_LOLA_Shade_MAP2_90.0N20.0_LAMB.tif": "MOON",
    "geotiff/Mars_MGS_MOLA_ClrShade_MAP2_0.0N0.0_MERC.tif": "MARS",
    "geotiff/Mars_MGS_MOLA_ClrShade_MAP2_90.0N0.0_POLA.tif": "MARS",
    "geotiff/ESP_037156_1800_RED.byte.tif": "MARS",
    "geotiff/DTEEC_017825_1760_018458_1760_A01.tif": "MARS",
    "geotiff/Mars_HRSC_MOLA_BlendDEM_Global_200mp_v2.window.tif": "MARS",
}


@pytest.mark.parametrize("name", sorted(PROJECTED))
def test_pixel_map_lonlat_round_trip(formats: Path, name: str) -> None:
    with ProductReader(formats / name) as r:
        geo = r.geo
    assert geo is not None and geo.body == PROJECTED[name]
    rng = np.random.default_rng(0)
    col = rng.uniform(0, geo.width, 200)
    row = rng.uniform(0, geo.height, 200)
    x, y = geo.pixel_to_map(col, row)
    c2, r2 = geo.map_to_pixel(x, y)
    assert np.abs(c2 - col).max() < 1e-6 and np.abs(r2 - row).max() < 1e-6
    lon, lat = geo.map_to_lonlat(x, y)
    assert np.isfinite(lon).all() and np.isfinite(lat).all()
    assert (lon >= -180).all() and (lon < 180).all() and (np.abs(lat) <= 90).all()
    if np.abs(lat).max() < 89.9:  # the lon/lat round trip is singular at the pole rows of the global maps
        x3, y3 = geo.lonlat_to_map(lon, lat)
        c3, r3 = geo.map_to_pixel(x3, y3)
        assert np.abs(c3 - col).max() < 0.5 and np.abs(r3 - row).max() < 0.5


def test_isis_equirectangular_latitudes_match_the_mapping_group(formats: Path) -> None:
    """GDAL's sphere of local radius returns the cube's own planetocentric latitudes; the Mapping group's
    ellipsoid would shift them by 0.03° (≈ 7,000 px at 0.25 m/px)."""
    with ProductReader(formats / "isis3/PSP_002118_1510_25cm_o_forPDS_cropped.cub") as r:
        geo, m = r.geo, r.label.mapping
    assert geo.label_radii == (3396190.0, 3376200.0) and geo.semi_major == pytest.approx(3392593.611, abs=1e-3)
    x, y = geo.pixel_to_map(np.array([0.0, geo.width]), np.array([geo.height, 0.0]))
    lon, lat = geo.map_to_lonlat(x, y)
    assert lat[0] == pytest.approx(parse_number(m["MinimumLatitude"]), abs=1e-9)
    assert lat[1] == pytest.approx(parse_number(m["MaximumLatitude"]), abs=1e-9)
    assert lon[0] % 360 == pytest.approx(parse_number(m["MinimumLongitude"]), abs=1e-9)
    assert lon[1] % 360 == pytest.approx(parse_number(m["MaximumLongitude"]), abs=1e-9)
    wrong = np.degrees(y / 3396190.0)  # what the Mapping group's equatorial radius would give
    assert abs(wrong[0] - lat[0]) > 0.03


@pytest.mark.parametrize("name", ["isis3/dawnEqui1.cub", "isis3/Ares4_Marth_Crater_3557E_126N_ngate_03_lowres.cub"])
def test_isis_footprint_within_a_pixel_of_the_mapping_group(formats: Path, name: str) -> None:
    with ProductReader(formats / name) as r:
        geo, m = r.geo, r.label.mapping
    n = 64
    col = np.concatenate(
        [np.linspace(0, geo.width, n), np.full(n, geo.width), np.linspace(0, geo.width, n), np.zeros(n)]
    )
    row = np.concatenate(
        [np.zeros(n), np.linspace(0, geo.height, n), np.full(n, geo.height), np.linspace(0, geo.height, n)]
    )
    lon, lat = geo.map_to_lonlat(*geo.pixel_to_map(col, row))
    px_deg = np.degrees(geo.pixel_size() / geo.semi_major)
    assert abs(lat.min() - parse_number(m["MinimumLatitude"])) < px_deg
    assert abs(lat.max() - parse_number(m["MaximumLatitude"])) < px_deg
    lon_min = parse_number(m["MinimumLongitude"])
    assert abs((lon.min() - lon_min + 180) % 360 - 180) < px_deg


def test_map_a_planet_mercator_k0_is_repaired(formats: Path) -> None:
    with ProductReader(formats / "geotiff/Mars_MGS_MOLA_ClrShade_MAP2_0.0N0.0_MERC.tif") as r:
        geo = r.geo
    assert "scale_factor 0" in geo.note
    lon, _ = geo.map_to_lonlat(*geo.pixel_to_map(np.array([0.0, geo.width]), np.array([0.0, 0.0])))
    # 2304 px × 4630 m = π × 3,396,190 m less one pixel: the grid spans 0..180° E with k = 1
    assert lon[0] == pytest.approx(0.0, abs=1e-9) and lon[1] == pytest.approx(179.9675, abs=1e-4)


def test_hirise_geojp2_centre_latitude_is_repaired(formats: Path) -> None:
    """PSP_001892_1715 (orbit 1892, near 8.5° S) was placed at 13.25° S: its GeoJP2 writes the centre latitude
    (-5) as latitude_of_origin (GDAL ticket 2706); read as the standard parallel, the corner is at 8.25° S."""
    with ProductReader(formats / "jp2/test.jp2") as r:
        geo = r.geo
    assert "HiRISE GeoJP2 CRS repaired" in geo.note
    lon, lat = geo.map_to_lonlat(*geo.pixel_to_map(np.array([0.0]), np.array([0.0])))
    assert lat[0] == pytest.approx(-8.2465, abs=1e-3) and lon[0] == pytest.approx(-84.590, abs=1e-3)
    # a CRS that only looks alike (the sphere is not Mars's local radius there) is left as it is
    from edgeae.archive.geo import _hirise_equirectangular

    other = geo.crs_wkt.replace('PARAMETER["latitude_of_origin",0]', 'PARAMETER["latitude_of_origin",-5]').replace(
        'PARAMETER["standard_parallel_1",-5]', 'PARAMETER["standard_parallel_1",0]'
    )
    assert _hirise_equirectangular(other)[1]  # the original form is recognised
    assert not _hirise_equirectangular(other.replace("3396036.8126024", "3396190"))[1]


def test_score_geotiff_is_aligned_with_its_product(formats: Path, tmp_path: Path) -> None:
    rasterio = pytest.importorskip("rasterio")
    from edgeae.archive.geo import write_score_geotiff

    src = formats / "geotiff/ESP_037156_1800_RED.byte.tif"
    with ProductReader(src) as r:
        geo = r.geo
    heat = np.arange((geo.height // 4 + 1) * (geo.width // 4 + 1), dtype=np.float32).reshape(geo.height // 4 + 1, -1)
    heat[0, 0] = np.nan
    out = write_score_geotiff(tmp_path / "map.tif", heat, geo, downsample=4)
    with rasterio.open(out) as ds, rasterio.open(src) as prod:
        assert ds.crs == prod.crs and ds.shape == heat.shape
        assert ds.transform.a == pytest.approx(4 * prod.transform.a) and ds.transform.c == prod.transform.c
        assert ds.transform.f == prod.transform.f
        # map pixel (i, j) covers product pixels [4i, 4i+4) x [4j, 4j+4)
        assert ds.xy(3, 5, offset="ul") == pytest.approx(prod.xy(12, 20, offset="ul"))
        back = ds.read(1)
    assert np.isnan(back[0, 0]) and np.array_equal(back[1:], heat[1:])
