"""`edgeae scan` over a folder mixing the archive samples, PNGs and corrupt files: every readable product
scored, the broken ones recorded as failed, quality filters recorded, the map layer inside the footprints,
and identical results on the local and Ray engines (the Ray test carries the ``ray`` marker)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rasterio", reason="the archive extra is not installed: pip install 'edgeae[archive]'")
pytest.importorskip("pyarrow")
pytest.importorskip("torch")
import pyarrow.parquet as pq
from test_scan_support import build_small_archive, mean_scorer_factory, tiny_cae

from edgeae.scan.quality import QualityFilter
from edgeae.scan.run import EngineOptions, scan_archive

INPROC = EngineOptions(workers=0)


@pytest.fixture(scope="module")
def mixed(data_root: Path, moon: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """Every sample product (symlinked: nothing is copied), a few moon PNG/JPEG/TIFF crops, corrupt files."""
    formats = data_root / "formats"
    if not formats.is_dir():
        pytest.skip(f"archive-format samples not found at {formats}")
    root = tmp_path_factory.mktemp("mixed")
    names = build_small_archive(root / "png", moon, n=3)
    for p in sorted(formats.rglob("*")):
        if p.is_file() and not p.name.startswith("."):
            dst = root / "products" / p.relative_to(formats)
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.symlink_to(p)
    bad = root / "products" / "broken"
    bad.mkdir()
    (bad / "random.cub").write_bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    head = (formats / "pds3/ab102401_cropped.img").read_bytes()
    (bad / "cut.img").write_bytes(head[: len(head) - 1500])  # attached PDS3 label, image data cut short
    return root, names


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_cae(tmp_path_factory.mktemp("model") / "tiny.pt")


def _scan(root: Path, model: Path, out: Path, **kw) -> dict:
    kw.setdefault("engine", INPROC)
    return scan_archive(root, model, out, progress=False, scorer_factory=mean_scorer_factory, **kw)


@pytest.fixture(scope="module")
def scanned(mixed, model, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """One local scan of the whole mixed folder with a GeoPackage layer (shared: scanning 41 files is slow)."""
    out = tmp_path_factory.mktemp("scan")
    return _scan(mixed[0], model, out / "out", top_k=3, geo=out / "layer.gpkg"), out


def test_scan_reads_every_product_and_records_broken_ones(mixed, scanned) -> None:
    _, names = mixed
    r, tmp_path = scanned
    failed = {f["file"]: f["error"] for f in r["failures"]}
    expect_failed = {
        "png/bad_noise.jpg", "png/bad_trunc.png", "products/broken/random.cub", "products/broken/cut.img",
        "products/pds3/N1472853667_1.cropped.lbl",
    }  # fmt: skip
    assert set(failed) == expect_failed, failed
    assert "truncated" in failed["products/pds3/N1472853667_1.cropped.lbl"]
    assert "truncated" in failed["products/broken/cut.img"] and "640 samples" not in failed["products/broken/cut.img"]
    # 43 sample files = 36 products (6 detached data files read through their label; the Cassini pair is one)
    assert r["images"] == 36 + 2 + len(names["good"]) + 2 and r["done"] == r["images"] - len(expect_failed)
    t = pq.read_table(tmp_path / "out" / "results.parquet")
    files = set(t.column("file").to_pylist())
    assert "products/jp2/test.jp2" in files
    # the PDS4 sample is read (3 × 500 px) but no 64-px patch of it is whole: reflected rows are not data
    assert "products/pds4/MY36_015782_024_0_PAN_cropped.xml" not in files
    assert "products/pds4/MY36_015782_024_0_PAN_cropped.xml" in r["images_without_patches"]
    imgs = pq.read_table(tmp_path / "out" / "images.parquet").to_pylist()
    by = {i["file"]: i for i in imgs}
    assert by["products/isis3/dawnEqui1.cub"]["map_projected"] and by["products/isis3/dawnEqui1.cub"]["body"] == "VESTA"
    assert by["products/pds3/TC1S2B0_01_05186N225E0040_mini.lbl"]["instrument"] == "TC1"
    assert not by["products/vicar/4600.byt.vic"]["map_projected"]
    # map columns: present exactly for map-projected products, lon/lat within range
    rows = t.to_pydict()
    for f, mx, lon, lat in zip(rows["file"], rows["map_x"], rows["lon"], rows["lat"], strict=True):
        assert (mx is not None) == bool(by[f]["map_projected"]), f
        if lon is not None:
            assert -180 <= lon < 180 and -90 <= lat <= 90
    assert r["geo_layers"] and sum(layer["features"] for layer in r["geo_layers"]) > 0


def test_quality_filters_skip_and_record_the_reason(mixed, model, tmp_path: Path) -> None:
    root, _ = mixed
    q = QualityFilter(max_incidence=60.0, max_resolution_m=5000.0)
    r = _scan(root / "products" / "pds3", model, tmp_path / "q", quality=q)
    skipped = {s["file"]: s["reason"] for s in r["skipped_products"]}
    assert skipped == {
        "TC1S2B0_01_05186N225E0040_mini.lbl": "incidence 65.01° > max 60°",
        "ldem_4_cropped.img": "resolution 7581 m/px > max 5000 m/px",
    }
    assert r["skipped"] == 2 and r["done"] == r["images"] - 2 - r["failed"]
    recs = [json.loads(line) for line in (tmp_path / "q" / "manifest.jsonl").read_text().splitlines()]
    assert {x["name"] for x in recs if x["status"] == "skipped"} == set(skipped)
    imgs = {i["file"]: i for i in pq.read_table(tmp_path / "q" / "images.parquet").to_pylist()}
    assert imgs["ldem_4_cropped.img"]["status"] == "skipped" and "7581" in imgs["ldem_4_cropped.img"]["reason"]
    again = _scan(root / "products" / "pds3", model, tmp_path / "q", quality=q)
    assert again["images_scanned"] == 0 and again["skipped"] == 2
    q2 = QualityFilter(max_missing=0.2)
    r2 = _scan(root / "products" / "isis3", model, tmp_path / "q2", quality=q2)
    miss = {s["file"]: s["reason"] for s in r2["skipped_products"]}
    assert set(miss) == {
        "dawnEqui1.cub", "Ares4_Marth_Crater_3557E_126N_ngate_03_lowres.cub",
        "PSP_002118_1510_25cm_o_forPDS_cropped.cub",
    }  # fmt: skip
    assert miss["dawnEqui1.cub"] == "missing data 27.6% > max 20.0%"


def test_geo_layer_points_fall_inside_their_products(mixed, model, scanned, tmp_path: Path) -> None:
    """One layer per body in planetocentric lon/lat, the MOLA products (on the Mars ellipsoid) in a geodetic lon/lat
    layer and the Vesta cube (a sphere PROJ cannot relate to IAU Vesta's) in map x/y of its CRS; every point maps back
    inside its product's footprint."""
    pyogrio = pytest.importorskip("pyogrio")
    from edgeae.scan.archive import entry_key
    from edgeae.scan.geo import _georef

    root, _ = mixed
    r, base = scanned
    gpkg = base / "layer.gpkg"
    layers = {name for name, _ in pyogrio.list_layers(gpkg)}
    assert layers == {lay["layer"] for lay in r["geo_layers"]} == {
        "anomalies_mars", "anomalies_mars_geodetic0", "anomalies_moon", "anomalies_vesta_crs0"
    }  # fmt: skip
    assert 'AUTHORITY["IAU","49900"]' in pyogrio.read_info(gpkg, layer="anomalies_mars")["crs"]  # Mars 2015 ocentric
    n = 0
    for layer in layers:
        meta, _fids, wkb, field_data = pyogrio.raw.read(gpkg, layer=layer)
        cols = dict(zip(list(meta["fields"]), field_data, strict=True))
        for i, g in enumerate(wkb):
            x, y = np.frombuffer(bytes(g)[-16:], "<f8")
            m = json.loads((base / "out" / "parts" / f"{entry_key(cols['product'][i])}.meta.json").read_text())
            geo = _georef(m["georef"])
            lon, lat = cols["lon"][i], cols["lat"][i]  # planetocentric, in every layer
            if layer.endswith("_crs0"):  # map x/y
                assert (x, y) == pytest.approx((cols["map_x"][i], cols["map_y"][i]))
            else:  # x is longitude; y planetocentric latitude on the body's sphere, geodetic on the ellipsoid's
                mx, my = cols["map_x"][i], cols["map_y"][i]
                want = geo.map_to_lonlat(mx, my, centric=not layer.endswith("geodetic0"))
                assert (x, y) == pytest.approx((lon, float(want[1]))) and want[0] == pytest.approx(lon)
            col, row = geo.map_to_pixel(*geo.lonlat_to_map(lon, lat))  # inside the product's footprint
            assert -0.5 <= col <= geo.width + 0.5 and -0.5 <= row <= geo.height + 0.5, (cols["product"][i], col, row)
            assert (base / cols["thumbnail"][i]).is_file()
            n += 1
    assert n == sum(lay["features"] for lay in r["geo_layers"]) > 0
    out = tmp_path / "layer.geojson"
    # --min-valid 0.5: some of these small cubes (a patch or two each, part no-data) have no patch at the
    # default 0.9, which the report lists (checked below)
    kw = dict(top_k=2, geo=out, geo_crs="product", min_valid=0.5)
    gj = _scan(root / "products" / "isis3", model, tmp_path / "gj", **kw)
    first = json.loads(out.read_text())
    assert first["type"] == "FeatureCollection" and first["features"] and gj["geo_layers"][0]["path"] == str(out)
    assert len(gj["geo_layers"]) == 4  # product CRSs: one file each
    # cubes of 8 × 23 and 20 × 20 px fill 18% and 39% of one 32-px patch: the rest would be reflection
    tiny = {"Ares4_Marth_Crater_3557E_126N_ngate_03_lowres.cub", "ctxTestImage.cub", "mocImage.cub"}
    assert {Path(f).name for f in gj["images_without_patches"]} == tiny
    strict = _scan(root / "products" / "isis3", model, tmp_path / "strict", top_k=2)
    empty = strict["images_without_patches"]
    md = (tmp_path / "strict" / "report.md").read_text()
    assert empty and "without a scored patch" in md and all(f"`{f}`" in md for f in empty)
    back = pyogrio.read_info(out)
    assert back["features"] == len(first["features"]) and back["crs"]  # GDAL reads the CRS member back


@pytest.mark.ray
def test_ray_engine_matches_local_on_a_mixed_archive(mixed, model, tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    from edgeae.scan.ray_engine import _init_ray

    try:
        started = _init_ray(ray, None, 2)
    except Exception as exc:
        pytest.skip(f"Ray cannot start a local instance here: {type(exc).__name__}: {exc}")
    try:
        root, _ = mixed  # the model's own scorer: a test module's function cannot be unpickled by Ray workers
        # every format but the two slowest to decode (JP2, the large shaded-relief GeoTIFFs), PNGs, broken files
        specs = [root / "png", root / "products" / "broken", root / "products" / "geotiff" / "moon.tif"] + [
            root / "products" / f for f in ("pds3", "pds4", "isis3", "vicar")
        ]
        local = scan_archive(specs, model, tmp_path / "local", engine=INPROC, progress=False)
        rr = scan_archive(specs, model, tmp_path / "ray", engine=EngineOptions(engine="ray", actors=2), progress=False)
    finally:
        if started:
            ray.shutdown()
    assert rr["done"] == local["done"] == rr["images"] - 5 and rr["failed"] == local["failed"] == 5
    assert [f["error"] for f in rr["failures"]] == [f["error"] for f in local["failures"]]
    a = pq.read_table(tmp_path / "local" / "results.parquet")
    b = pq.read_table(tmp_path / "ray" / "results.parquet")
    assert b.num_rows == a.num_rows > 0 and a.equals(b)
    assert rr["top"] == local["top"]


def test_polygons_cross_the_antimeridian_continuously(data_root: Path, model, tmp_path: Path) -> None:
    """A global cube's patches on the ±180° line: each ring's longitudes run on continuously (a 48° patch was
    drawn as a 312° ring round the planet), with points along the edges."""
    import shutil

    src = data_root / "formats" / "isis3" / "ldem_4_reduced.cub"  # 480 px over 360°
    if not src.is_file():
        pytest.skip(f"{src} not in the data folder")
    arc = tmp_path / "arc"
    arc.mkdir()
    shutil.copy(src, arc / src.name)
    layer = tmp_path / "l.geojson"
    _scan(arc, model, tmp_path / "out", top_k=500, geo=layer, geo_geometry="polygon", min_valid=0.0)
    feats = json.loads(layer.read_text())["features"]
    assert feats
    rings = [np.array(f["geometry"]["coordinates"][0]) for f in feats]
    widths = {f["properties"]["x_px"]: r[:, 0].max() - r[:, 0].min() for f, r in zip(feats, rings, strict=True)}
    assert max(widths.values()) <= feats[0]["properties"]["patch_px"] * 360.0 / 480 + 1e-4, widths
    assert all(len(r) == 4 * 8 + 1 for r in rings)
