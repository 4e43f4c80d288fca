"""`edgeae score` on a map-projected product: map/lon/lat columns on every row and an aligned score GeoTIFF;
`edgeae scan --geo` writes a layer QGIS opens; `edgeae reconstruct` keeps the product's georeferencing."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

rasterio = pytest.importorskip("rasterio", reason="the archive extra is not installed: pip install 'edgeae[archive]'")
pytest.importorskip("torch")
from test_scan_support import tiny_cae  # noqa: E402

from edgeae.cli import main  # noqa: E402


def test_score_adds_map_columns_and_writes_an_aligned_geotiff(formats: Path, tmp_path: Path) -> None:
    model = tiny_cae(tmp_path / "tiny.pt")
    cube = formats / "isis3/dawnEqui1.cub"
    out = tmp_path / "s.csv"
    args = ["score", str(cube), "--model", str(model), "--patch", "32", "-o", str(out), "--no-progress"]
    assert main([*args, "--min-valid", "0.5", "--map", str(tmp_path / "map.tif")]) == 0
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["file", "x", "y", "score", "valid_frac", "map_x", "map_y", "lon", "lat"]
    with rasterio.open(cube) as ds:
        for r in rows:
            x, y = int(r["x"]), int(r["y"])
            cx, cy = (x + min(x + 32, ds.width)) / 2, (y + min(y + 32, ds.height)) / 2  # clipped patch centre
            assert float(r["map_x"]) == pytest.approx(cx * ds.transform.a + ds.transform.c, abs=1e-3)
            assert float(r["map_y"]) == pytest.approx(cy * ds.transform.e + ds.transform.f, abs=1e-3)
            assert -13 < float(r["lat"]) < -1 and -4 < float(r["lon"]) < 3  # the Mapping group's extent
        with rasterio.open(tmp_path / "map.tif") as m:
            assert m.crs == ds.crs and m.transform == ds.transform and m.shape == ds.shape
            heat = m.read(1)
    assert np.isfinite(heat).mean() > 0.5
    from edgeae.anomaly.score import read_csv

    assert len(read_csv(out)) == len(rows)  # the reader tolerates the extra columns


def test_scan_cli_geo_layer_and_quality_flags(formats: Path, tmp_path: Path) -> None:
    pyogrio = pytest.importorskip("pyogrio")
    model = tiny_cae(tmp_path / "tiny.pt")
    layer = tmp_path / "det.gpkg"
    rc = main([
        "scan", str(formats / "isis3"), "--model", str(model), "--out", str(tmp_path / "o"), "--workers", "0",
        "--no-progress", "--top-k", "2", "--geo", str(layer), "--geo-geometry", "polygon", "--max-missing", "0.3",
    ])  # fmt: skip
    assert rc == 0
    names = {n for n, _ in pyogrio.list_layers(layer)}
    # dawnEqui1 has 27.6 % no-data: kept at max 30 %; in its own CRS, which PROJ cannot relate to IAU Vesta's
    assert "anomalies_vesta_crs0" in names
    info = pyogrio.read_info(layer, layer="anomalies_vesta_crs0")
    assert info["geometry_type"] == "Polygon" and info["features"] == 2 and "VESTA" in info["crs"].upper()
    assert {"score", "product", "product_id", "thumbnail", "lon", "lat"} <= set(info["fields"])


def test_score_skips_a_label_pointing_out_of_its_folder(formats: Path, tmp_path: Path, capsys) -> None:
    """A PDS3 ``^IMAGE = ("../../../../etc/passwd", 1 <BYTES>)`` raised an unnamed ValueError ("Invalid name")
    that aborted the whole run; it is now an ImageReadError naming the label, and the other products are scored."""
    model = tiny_cae(tmp_path / "tiny.pt")
    folder = tmp_path / "products"
    folder.mkdir()
    (folder / "dawnEqui1.cub").symlink_to(formats / "isis3/dawnEqui1.cub")
    (folder / "evil.lbl").write_text(
        'PDS_VERSION_ID = PDS3\r\n^IMAGE = ("../../../../etc/passwd", 1 <BYTES>)\r\nOBJECT = IMAGE\r\n  LINES = 2\r\n'
        "  LINE_SAMPLES = 4\r\n  SAMPLE_BITS = 8\r\nEND_OBJECT = IMAGE\r\nEND\r\n"
    )
    out = tmp_path / "s.csv"
    rc = main(["score", str(folder / "evil.lbl"), str(folder / "dawnEqui1.cub"), "--model", str(model), "--patch",
               "32", "-o", str(out), "--no-progress", "--min-valid", "0.5"])  # fmt: skip
    err = capsys.readouterr().err
    assert "evil.lbl: its ^IMAGE pointer names '../../../../etc/passwd'" in err
    rows = list(csv.DictReader(out.open()))
    assert rows and {Path(r["file"]).name for r in rows} == {"dawnEqui1.cub"}
    assert rc == 1  # one product could not be read: the exit status says so too


def test_reconstruct_keeps_a_map_projected_products_georeferencing(formats: Path, tmp_path: Path, capsys) -> None:
    src = formats / "geotiff/ESP_037156_1800_RED.byte.tif"
    out = tmp_path / "r.tif"
    assert main(["reconstruct", str(src), "--method", "telea", "-o", str(out)]) == 0
    with rasterio.open(src) as ds, rasterio.open(out) as r:
        assert r.crs == ds.crs and r.transform == ds.transform and r.shape == ds.shape
    assert "map-projected" not in capsys.readouterr().out
    assert main(["reconstruct", str(src), "--method", "telea", "-o", str(tmp_path / "r.png")]) == 0
    assert "is map-projected; write -o *.tif" in capsys.readouterr().out  # a PNG cannot hold it: said
