"""Audit s38 a3, the detection layers as a GIS reads them: each written feature, reprojected by PROJ from its layer's
CRS into its product's own CRS, lands on its patch (a product on an ellipsoid landed 4.6-7 px off through the body's
sphere layer; PROJ refused the Vesta layer outright), polygon outlines stay within ±90° and beside their point, and a
GeoJSON rerun leaves no earlier run's layer files or thumbnails behind. Small synthetic GeoTIFFs in tmp_path."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

rasterio = pytest.importorskip("rasterio", reason="the archive extra is not installed: pip install 'edgeae[archive]'")
pyproj = pytest.importorskip("pyproj")

from edgeae.scan.accumulator import TopK  # noqa: E402
from edgeae.scan.geo import georef_of, write_layer  # noqa: E402
from edgeae.scan.report_text import report_markdown  # noqa: E402

PATCH = 16
# products on the Mars sphere, the Mars ellipsoid (GDAL's names, as Map-a-Planet writes them) and GDAL's local-radius
# Vesta sphere, which PROJ cannot relate to the IAU 2015 Vesta sphere
MARS_SPHERE = 'PROJCS["Equirectangular MARS",GEOGCS["GCS_MARS",DATUM["D_MARS",SPHEROID["MARS",3396190,0]],PRIMEM["Reference_Meridian",0],UNIT["degree",0.0174532925199433]],PROJECTION["Equirectangular"],PARAMETER["standard_parallel_1",0],PARAMETER["central_meridian",0],PARAMETER["false_easting",0],PARAMETER["false_northing",0],UNIT["metre",1]]'  # noqa: E501
MARS_ELLIPSOID = 'PROJCS["Mercator MARS",GEOGCS["GCS_MARS",DATUM["D_MARS",SPHEROID["MARS",3396190,169.894447223612]],PRIMEM["Reference_Meridian",0],UNIT["degree",0.0174532925199433]],PROJECTION["Mercator_1SP"],PARAMETER["central_meridian",0],PARAMETER["scale_factor",1],PARAMETER["false_easting",0],PARAMETER["false_northing",0],UNIT["metre",1]]'  # noqa: E501
VESTA_LOCAL = 'PROJCS["Equirectangular VESTA",GEOGCS["GCS_VESTA",DATUM["D_VESTA",SPHEROID["VESTA_localRadius",287858,0]],PRIMEM["Reference_Meridian",0],UNIT["degree",0.0174532925199433]],PROJECTION["Equirectangular"],PARAMETER["standard_parallel_1",0],PARAMETER["central_meridian",0],PARAMETER["false_easting",0],PARAMETER["false_northing",0],UNIT["metre",1]]'  # noqa: E501
MOON_LONLAT = 'GEOGCS["GCS_Moon",DATUM["D_Moon",SPHEROID["Moon",1737400,0]],PRIMEM["Reference_Meridian",0],UNIT["degree",0.0174532925199433]]'  # noqa: E501
# the global LOLA grids' CRS: equirectangular round 180° E, 0..360° across
MOON_EQC_180 = 'PROJCS["Equirectangular Moon",GEOGCS["GCS_Moon",DATUM["D_Moon",SPHEROID["Moon",1737400,0]],PRIMEM["Reference_Meridian",0],UNIT["degree",0.0174532925199433]],PROJECTION["Equirectangular"],PARAMETER["standard_parallel_1",0],PARAMETER["central_meridian",180],PARAMETER["false_easting",0],PARAMETER["false_northing",0],UNIT["metre",1]]'  # noqa: E501
MOON_DEG = 1737400 * np.pi / 180  # metres a degree
# (CRS, geotransform): 1 km pixels near 45° N, where geodetic and planetocentric latitude differ by 0.34° (20 km)
PRODUCTS = {
    "sphere": (MARS_SPHERE, (1000.0, 0, 500_000.0, 0, -1000.0, 2_700_000.0)),
    "ellipsoid": (MARS_ELLIPSOID, (1000.0, 0, 500_000.0, 0, -1000.0, 3_000_000.0)),
    "vesta": (VESTA_LOCAL, (100.0, 0, 10_000.0, 0, -100.0, 20_000.0)),
}
SPOTS = ((0, 0), (32, 16), (48, 48))  # top-left (x, y) of each product's best patches


def _tif(path: Path, crs: str, transform: tuple[float, ...], width: int = 64, height: int = 64) -> Path:
    from rasterio.transform import Affine

    with rasterio.open(
        path, "w", driver="GTiff", height=height, width=width, count=1, dtype="uint8", crs=crs,
        transform=Affine(*transform),
    ) as dst:  # fmt: skip
        dst.write(np.full((1, height, width), 7, np.uint8))
    return path


class _Store:
    """What write_layer reads of a scan's store: each product's meta and best patches (at ``SPOTS``)."""

    def __init__(self, folder: Path, spots: tuple[tuple[int, int], ...] = SPOTS) -> None:
        self.folder, self.spots = folder, spots
        self.config = SimpleNamespace(patch=PATCH, top_k=len(spots))

    def meta_path(self, key: str) -> Path:
        return self.folder / f"{key}.meta.json"

    def top_path(self, key: str) -> Path:
        return self.folder / f"{key}.top.npz"

    def load_top(self, key: str) -> TopK:
        n = len(self.spots)
        xs = np.array([x for x, _ in self.spots], np.int32)
        ys = np.array([y for _, y in self.spots], np.int32)
        return TopK(np.linspace(2.0, 1.0, n), xs, ys, np.full((n, 1, PATCH, PATCH), 9, np.uint8))


def _entries(store: _Store, paths: dict[str, Path]) -> list[SimpleNamespace]:
    out = []
    for key, path in paths.items():
        _, meta = georef_of(path)
        store.meta_path(key).write_text(json.dumps(meta))
        store.top_path(key).touch()
        out.append(SimpleNamespace(key=key, name=path.name))
    return out


def _products(tmp_path: Path, names: tuple[str, ...]) -> tuple[_Store, list[SimpleNamespace], dict[str, Path]]:
    paths = {n: _tif(tmp_path / f"{n}.tif", *PRODUCTS[n]) for n in names}
    store = _Store(tmp_path)
    return store, _entries(store, paths), paths


def _rings(wkb: bytes) -> np.ndarray:
    """The (lon or x, lat or y) points of a WKB point or one-ring polygon."""
    kind = struct.unpack("<I", wkb[1:5])[0]
    if kind == 1:
        return np.frombuffer(wkb[5:21], "<f8").reshape(1, 2)
    (n,) = struct.unpack("<I", wkb[9:13])
    return np.frombuffer(wkb[13 : 13 + 16 * n], "<f8").reshape(n, 2)


def _to_product_pixels(layer_crs: str, product: Path, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What QGIS does: PROJ from the layer's CRS to the product's own (as GDAL reads it), then its pixel grid."""
    with rasterio.open(product) as ds:
        crs, (a, _, c, _, e, f) = pyproj.CRS.from_wkt(ds.crs.to_wkt()), tuple(ds.transform)[:6]
    t = pyproj.Transformer.from_crs(pyproj.CRS.from_user_input(layer_crs), crs, always_xy=True)
    x, y = t.transform(pts[:, 0], pts[:, 1])
    return (np.asarray(x) - c) / a, (np.asarray(y) - f) / e  # north-up grids


@pytest.mark.parametrize("geometry", ["point", "polygon"])
def test_every_feature_reprojected_by_proj_lands_on_its_patch(tmp_path: Path, geometry: str) -> None:
    """Before: the ellipsoid product's points sat in the Mars sphere layer (IAU_2015:49900) with planetocentric
    latitudes, which PROJ passes to the ellipsoid unchanged (a "ballpark" offset): 20 px off at 45° N here."""
    pyogrio = pytest.importorskip("pyogrio")
    store, entries, paths = _products(tmp_path, ("sphere", "ellipsoid", "vesta"))
    out = tmp_path / "det.gpkg"
    written = write_layer(store, entries, out, geometry=geometry)
    assert sum(w["features"] for w in written) == 3 * len(SPOTS)
    seen = set()
    for name, _ in pyogrio.list_layers(out):
        meta, _fids, wkb, fields = pyogrio.raw.read(out, layer=name)
        cols = dict(zip(list(meta["fields"]), fields, strict=True))
        for i, g in enumerate(wkb):
            product = paths[Path(cols["product"][i]).stem]
            col, row = _to_product_pixels(meta["crs"], product, _rings(bytes(g)))
            x0, y0 = int(cols["x_px"][i]), int(cols["y_px"][i])
            if geometry == "point":
                err = float(np.hypot(col[0] - (x0 + PATCH / 2), row[0] - (y0 + PATCH / 2)))
            else:  # every vertex on the patch outline
                on_x = np.minimum(np.abs(col - x0), np.abs(col - x0 - PATCH))
                on_y = np.minimum(np.abs(row - y0), np.abs(row - y0 - PATCH))
                err = float(np.minimum(on_x, on_y).max())
                assert col.min() == pytest.approx(x0, abs=1e-6) and row.max() == pytest.approx(y0 + PATCH, abs=1e-6)
            assert err < 0.01, (name, product.name, x0, y0, err)
            seen.add((product.stem, name))
    by_product = dict(seen)
    assert by_product["sphere"] == "anomalies_mars"  # the body's lon/lat layer (IAU 2015 sphere, planetocentric)
    assert by_product["ellipsoid"].startswith("anomalies_mars_geodetic")  # its own ellipsoid's lon/lat
    assert by_product["vesta"].startswith("anomalies_vesta_crs")  # PROJ cannot relate it: map x/y


def test_an_ellipsoid_products_layer_keeps_planetocentric_attributes(tmp_path: Path) -> None:
    """The geodetic layer's geometry holds geodetic latitude (what its CRS means); the ``lat`` field stays
    planetocentric, as in results.parquet, and differs from it by the 0.34° expected at 45°."""
    store, entries, _ = _products(tmp_path, ("ellipsoid",))
    (w,) = write_layer(store, entries, tmp_path / "e.geojson")
    doc = json.loads(Path(w["path"]).read_text())
    crs = pyproj.CRS.from_user_input(doc["crs"]["properties"]["name"])
    assert crs.is_geographic and crs.ellipsoid.semi_minor_metre == pytest.approx(3376200, abs=1)
    assert "geodetic" in w["note"] and "planetocentric" in w["note"]
    for f in doc["features"]:
        lon, lat = f["geometry"]["coordinates"]
        b_a = 3376200 / 3396190
        centric = np.degrees(np.arctan(b_a**2 * np.tan(np.radians(lat))))
        assert f["properties"]["lat"] == pytest.approx(centric, abs=1e-9)
        assert lon == pytest.approx(f["properties"]["lon"])
        assert 0.3 < lat - f["properties"]["lat"] < 0.4


def test_a_body_proj_cannot_relate_goes_to_a_product_crs_layer_and_the_report_says_why(tmp_path: Path) -> None:
    """Before: the Vesta product's points were written in IAU_2015:200000400, which PROJ (QGIS) refuses to transform
    to the product's local-radius sphere ("Source and target ellipsoid do not belong to the same celestial body")."""
    with pytest.raises(pyproj.exceptions.ProjError):  # what the layer would ask of PROJ
        pyproj.Transformer.from_crs("IAU_2015:200000400", pyproj.CRS.from_wkt(VESTA_LOCAL), always_xy=True)
    store, entries, _ = _products(tmp_path, ("vesta",))
    (w,) = write_layer(store, entries, tmp_path / "v.geojson")
    doc = json.loads(Path(w["path"]).read_text())
    assert w["layer"] == doc["name"] == "anomalies_vesta_crs0"
    assert pyproj.CRS.from_user_input(doc["crs"]["properties"]["name"]) == pyproj.CRS.from_wkt(VESTA_LOCAL)
    for f in doc["features"]:  # map x/y of the patch centre
        x0, y0 = f["properties"]["x_px"], f["properties"]["y_px"]
        assert f["geometry"]["coordinates"] == pytest.approx([10_000 + 100 * (x0 + 8), 20_000 - 100 * (y0 + 8)])
        assert f["properties"]["body"] == "VESTA" and f["properties"]["lon"] is not None
    assert "PROJ cannot" in w["note"] and "vesta.tif" in w["note"] and "IAU_2015:200000400" in w["note"]
    md = report_markdown(
        {"out": "o", "model": "m", "artifact_hash": "0" * 64, "images": 1, "done": 1, "failed": 0, "pending": 0,
         "failures": [], "geo_layers": [w]}
    )  # fmt: skip
    assert f"- map layer `anomalies_vesta_crs0`: {len(SPOTS)} detections -> " in md and "PROJ cannot" in md


def test_polygon_vertices_stay_within_the_poles_and_beside_their_point(tmp_path: Path) -> None:
    """A global grid whose top row is written to the centimetre (90.0000284°) put ring vertices past the pole, which
    PROJ turns into inf; a ring across the antimeridian was unwrapped to 174..198° while its point and ``lon`` said
    -174°. Now: |lat| <= 90, and the ring lies round its centre's longitude in [-180, 180)."""
    grid = (0.75 * MOON_DEG, 0, -30 * MOON_DEG, 0, -0.75 * MOON_DEG, 90.0000284 * MOON_DEG)  # 150..210° E
    p = _tif(tmp_path / "moon.tif", MOON_EQC_180, grid, width=80, height=32)
    store = _Store(tmp_path, spots=((32, 0), (0, 16)))
    entries = _entries(store, {"moon": p})
    out = tmp_path / "p.geojson"
    (w,) = write_layer(store, entries, out, geometry="polygon")
    doc = json.loads(out.read_text())
    assert w["layer"] == "anomalies_moon"
    eqc = pyproj.Transformer.from_crs("IAU_2015:30100", "+proj=eqc +R=1737400 +lon_0=180 +type=crs", always_xy=True)
    for f in doc["features"]:
        ring = np.array(f["geometry"]["coordinates"][0])
        lon = f["properties"]["lon"]
        assert -180 <= lon < 180 and np.abs(ring[:, 1]).max() <= 90.0
        mid = (ring[:, 0].min() + ring[:, 0].max()) / 2
        assert mid == pytest.approx(lon, abs=1e-6), (f["properties"]["x_px"], ring[:, 0].min(), ring[:, 0].max())
        assert ring[:, 0].max() - ring[:, 0].min() == pytest.approx(PATCH * 0.75)
        x, y = eqc.transform(ring[:, 0], ring[:, 1], errcheck=False)
        assert np.isfinite(x).all() and np.isfinite(y).all()
    top = next(f for f in doc["features"] if f["properties"]["y_px"] == 0)
    assert np.array(top["geometry"]["coordinates"][0])[:, 1].max() == 90.0  # the pole row, clamped


def test_a_lonlat_grid_past_180_degrees_goes_to_its_own_crs_layer(tmp_path: Path) -> None:
    """A product in a lon/lat CRS running 150..210° E: its patch at 186° E would sit at -174° in the body's layer,
    which a GIS draws 360° away from the product's grid; it goes to its CRS's layer (x = 186), saying why."""
    p = _tif(tmp_path / "moon.tif", MOON_LONLAT, (0.75, 0, 150.0, 0, -0.75, 20.0), width=80, height=32)
    store = _Store(tmp_path, spots=((40, 0),))
    (w,) = write_layer(store, _entries(store, {"moon": p}), tmp_path / "g.geojson")
    (f,) = json.loads(Path(w["path"]).read_text())["features"]
    assert w["layer"] == "anomalies_moon_crs0" and "past 180° E" in w["note"] and "moon.tif" in w["note"]
    assert f["geometry"]["coordinates"] == pytest.approx([186.0, 14.0])  # the grid's own x, 360° from lon
    assert f["properties"]["lon"] == pytest.approx(-174)


def test_a_geojson_rerun_removes_the_earlier_runs_other_layers_and_thumbnails(tmp_path: Path) -> None:
    """Before: rerun without the Moon product, det_anomalies_moon.geojson (and its thumbnails) stayed beside the new
    det.geojson, holding detections of an image the results no longer hold. A file of that name that is not a layer
    this writer wrote, and other files, are kept."""
    moon = _tif(tmp_path / "moon.tif", MOON_LONLAT, (0.01, 0, 10.0, 0, -0.01, 5.0))
    mars = _tif(tmp_path / "mars.tif", *PRODUCTS["sphere"])
    store = _Store(tmp_path / "s")
    store.folder.mkdir()
    both = _entries(store, {"mars": mars, "moon": moon})
    out = tmp_path / "det.geojson"
    first = write_layer(store, both, out)
    assert sorted(Path(w["path"]).name for w in first) == ["det.geojson", "det_anomalies_moon.geojson"]
    thumbs = tmp_path / "det_thumbs"
    assert len(list(thumbs.glob("moon_*.png"))) == len(SPOTS)
    (tmp_path / "det_anomalies_notes.geojson").write_text('{"type": "FeatureCollection", "name": "mine"}')
    (thumbs / "notes.txt").write_text("mine")
    second = write_layer(store, both[:1], out)
    assert [Path(w["path"]).name for w in second] == ["det.geojson"]
    assert not (tmp_path / "det_anomalies_moon.geojson").exists()
    assert not list(thumbs.glob("moon_*.png")) and len(list(thumbs.glob("mars_*.png"))) == len(SPOTS)
    assert (tmp_path / "det_anomalies_notes.geojson").exists() and (thumbs / "notes.txt").exists()
    assert json.loads(out.read_text())["name"] == "anomalies_mars"


def test_a_layer_in_the_other_format_keeps_the_thumbnails_both_share(tmp_path: Path) -> None:
    """det.gpkg and det.geojson in one folder share det_thumbs/: writing one removed the other's thumbnails without a
    word (review r4, session 38). With the other format's layer there, no thumbnail is pruned."""
    moon = _tif(tmp_path / "moon.tif", MOON_LONLAT, (0.01, 0, 10.0, 0, -0.01, 5.0))
    mars = _tif(tmp_path / "mars.tif", *PRODUCTS["sphere"])
    store = _Store(tmp_path / "s")
    store.folder.mkdir()
    both = _entries(store, {"mars": mars, "moon": moon})
    write_layer(store, both, tmp_path / "det.gpkg")
    thumbs = tmp_path / "det_thumbs"
    n = len(list(thumbs.glob("*.png")))
    write_layer(store, both[:1], tmp_path / "det.geojson")  # the Mars product only: the gpkg still shows the Moon's
    assert len(list(thumbs.glob("*.png"))) == n and list(thumbs.glob("moon_*.png"))
