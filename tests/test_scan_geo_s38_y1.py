"""Audit s38 a3 #5: a GeoJSON rerun leaves no earlier run's layer files or thumbnails behind. Small synthetic GeoTIFFs
in tmp_path."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

rasterio = pytest.importorskip("rasterio", reason="the archive extra is not installed: pip install 'edgeae[archive]'")
pytest.importorskip("pyproj")

from edgeae.scan.accumulator import TopK  # noqa: E402
from edgeae.scan.geo import georef_of, write_layer  # noqa: E402

PATCH = 16
# products on the Mars sphere, the Mars ellipsoid (GDAL's names, as Map-a-Planet writes them) and GDAL's local-radius
# Vesta sphere, which PROJ cannot relate to the IAU 2015 Vesta sphere
MARS_SPHERE = 'PROJCS["Equirectangular MARS",GEOGCS["GCS_MARS",DATUM["D_MARS",SPHEROID["MARS",3396190,0]],PRIMEM["Reference_Meridian",0],UNIT["degree",0.0174532925199433]],PROJECTION["Equirectangular"],PARAMETER["standard_parallel_1",0],PARAMETER["central_meridian",0],PARAMETER["false_easting",0],PARAMETER["false_northing",0],UNIT["metre",1]]'  # noqa: E501
MARS_ELLIPSOID = 'PROJCS["Mercator MARS",GEOGCS["GCS_MARS",DATUM["D_MARS",SPHEROID["MARS",3396190,169.894447223612]],PRIMEM["Reference_Meridian",0],UNIT["degree",0.0174532925199433]],PROJECTION["Mercator_1SP"],PARAMETER["central_meridian",0],PARAMETER["scale_factor",1],PARAMETER["false_easting",0],PARAMETER["false_northing",0],UNIT["metre",1]]'  # noqa: E501
VESTA_LOCAL = 'PROJCS["Equirectangular VESTA",GEOGCS["GCS_VESTA",DATUM["D_VESTA",SPHEROID["VESTA_localRadius",287858,0]],PRIMEM["Reference_Meridian",0],UNIT["degree",0.0174532925199433]],PROJECTION["Equirectangular"],PARAMETER["standard_parallel_1",0],PARAMETER["central_meridian",0],PARAMETER["false_easting",0],PARAMETER["false_northing",0],UNIT["metre",1]]'  # noqa: E501
MOON_LONLAT = 'GEOGCS["GCS_Moon",DATUM["D_Moon",SPHEROID["Moon",1737400,0]],PRIMEM["Reference_Meridian",0],UNIT["degree",0.0174532925199433]]'  # noqa: E501
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
