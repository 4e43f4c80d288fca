"""Audit s38 a3, what a scan says of a product's georeferencing: a CRS the reader repairs (Map-a-Planet's Mercator
``scale_factor 0``, the HiRISE GeoJP2 latitude) is warned of once and listed in report.md/report.json (it was noted in
parts/*.meta.json only, while GDAL and QGIS place the product by the file's own CRS), and ``body`` is filled from the
label's target for products without georeferencing (images.parquet had null for every CTX, HiRISE EDR, LROC NAC
frame). Synthetic products in tmp_path; the real samples under the ``formats`` fixture (skipped without the data)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

rasterio = pytest.importorskip("rasterio", reason="the archive extra is not installed: pip install 'edgeae[archive]'")
pytest.importorskip("pyproj")

from edgeae.archive.reader import NOTES_LOGGER, ProductReader, new_notes  # noqa: E402
from edgeae.scan.geo import georef_of  # noqa: E402
from edgeae.scan.report_text import report_markdown, report_summary  # noqa: E402

# the CRS of Mars_MGS_MOLA_ClrShade_MAP2_0.0N0.0_MERC.tif as GDAL reads it: k = 0, which PROJ refuses
MERC_K0 = 'PROJCS["Mercator MARS",GEOGCS["GCS_MARS",DATUM["D_MARS",SPHEROID["MARS",3396190,169.894447223612]],PRIMEM["Reference_Meridian",0],UNIT["degree",0.0174532925199433]],PROJECTION["Mercator_1SP"],PARAMETER["central_meridian",0],PARAMETER["scale_factor",0],PARAMETER["false_easting",0],PARAMETER["false_northing",0],UNIT["metre",1]]'  # noqa: E501
K_NOTE = "scale_factor 0 in the product's WKT read as 1"


def _merc(path: Path) -> Path:
    from rasterio.transform import Affine

    rng = np.random.default_rng(0)
    with rasterio.open(
        path, "w", driver="GTiff", height=64, width=64, count=1, dtype="uint8", crs=MERC_K0,
        transform=Affine(4630.0, 0, 0, 0, -4630.0, 296_320.0),
    ) as dst:  # fmt: skip
        dst.write(rng.integers(1, 250, (1, 64, 64), dtype=np.uint8))
    with rasterio.open(path) as ds:
        assert 'PARAMETER["scale_factor",0]' in ds.crs.to_wkt()  # GDAL gives it back as the sample has it
    return path


def _notes(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == NOTES_LOGGER]


def test_a_repaired_crs_is_warned_once_per_product(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    p = _merc(tmp_path / "merc.tif")
    new_notes()
    with caplog.at_level(logging.WARNING, logger=NOTES_LOGGER):
        for _ in range(3):  # a scan opens a product several times
            with ProductReader(p) as r:
                assert r.geo is not None and r.geo.note == K_NOTE
    (line,) = _notes(caplog)
    assert line.startswith(f"{p}: georeferencing corrected ({K_NOTE})") and "QGIS" in line and "aux.xml" in line


def test_a_scan_lists_repaired_crss_in_its_reports(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Before: "mentions of the repair: console 0, report.md 0, report.json 0, meta.json 1"."""
    from test_scan_support import mean_scorer_factory, tiny_cae

    from edgeae.scan.run import EngineOptions, scan_archive

    arc = tmp_path / "arc"
    arc.mkdir()
    _merc(arc / "merc.tif")
    (arc / "plain.tif").symlink_to(_plain(tmp_path / "plain.tif"))
    model = tiny_cae(tmp_path / "tiny.pt")
    with caplog.at_level(logging.WARNING):
        r = scan_archive(arc, model, tmp_path / "out", progress=False, scorer_factory=mean_scorer_factory,
                         engine=EngineOptions(workers=0))  # fmt: skip
    assert len([n for n in _notes(caplog) if "georeferencing corrected" in n]) == 1
    assert r["georeferencing_corrected"] == [{"file": "merc.tif", "note": K_NOTE}]
    stored = json.loads((tmp_path / "out" / "report.json").read_text())
    assert stored["georeferencing_corrected"] == r["georeferencing_corrected"]
    md = (tmp_path / "out" / "report.md").read_text()
    assert "- georeferencing corrected for 1 product (`merc.tif`: " in md  # Markdown: scale\_factor
    assert "## Georeferencing corrected for 1 product\n\n" in md and "- `merc.tif`: scale\\_factor 0 in" in md
    console = report_summary(r, str(tmp_path / "out"))
    assert "- georeferencing corrected for 1 product (`merc.tif`: " in console


def _plain(path: Path) -> Path:
    """A GeoTIFF without any georeferencing issue (Mars sphere, equirectangular)."""
    from rasterio.transform import Affine

    with rasterio.open(
        path, "w", driver="GTiff", height=64, width=64, count=1, dtype="uint8", crs="+proj=eqc +R=3396190 +units=m",
        transform=Affine(100.0, 0, 0, 0, -100.0, 0),
    ) as dst:  # fmt: skip
        dst.write(np.random.default_rng(1).integers(1, 250, (1, 64, 64), dtype=np.uint8))
    return path


def test_the_report_text_lists_every_corrected_product() -> None:
    from test_scan_support import scan_report

    many = [{"file": f"p{i}.jp2", "note": "HiRISE GeoJP2 CRS repaired"} for i in range(60)]
    r = scan_report(georeferencing_corrected=many)
    md = report_markdown(r)
    assert "## Georeferencing corrected for 60 products" in md and "- `p49.jp2`: HiRISE GeoJP2 CRS repaired" in md
    assert "`p50.jp2`" not in md and "... and 10 more (report.json lists them all)" in md
    console = report_summary(r, "out")
    assert "- georeferencing corrected for 60 products (`p0.jp2`: HiRISE GeoJP2 CRS repaired; and 59 more" in console
    assert "georeferencing corrected" not in report_markdown(scan_report())


def _pds3_target(folder: Path, target: str) -> Path:
    """An attached-label PDS3 frame of 32 × 32 bytes whose label names ``target`` and no map projection."""
    folder.mkdir(parents=True, exist_ok=True)
    label = (
        f"PDS_VERSION_ID = PDS3\r\nRECORD_TYPE = FIXED_LENGTH\r\nRECORD_BYTES = 32\r\nLABEL_RECORDS = 16\r\n"
        f'^IMAGE = 17\r\nTARGET_NAME = "{target}"\r\nOBJECT = IMAGE\r\n  LINES = 32\r\n  LINE_SAMPLES = 32\r\n'
        "  SAMPLE_TYPE = UNSIGNED_INTEGER\r\n  SAMPLE_BITS = 8\r\nEND_OBJECT = IMAGE\r\nEND\r\n"
    )
    head = label.encode().ljust(16 * 32, b" ")
    p = folder / f"{target.lower().replace(' ', '_')}.img"
    p.write_bytes(head + np.arange(32 * 32, dtype=np.uint8).tobytes())
    return p


@pytest.mark.parametrize(("target", "body"), [("MARS", "MARS"), ("Moon", "MOON"), ("4 VESTA", "VESTA"), ("SKY", None)])
def test_body_of_a_product_without_a_map_comes_from_its_labels_target(tmp_path: Path, target: str, body) -> None:
    geo, meta = georef_of(_pds3_target(tmp_path, target))
    assert geo is None and meta["georef"] is None and meta["target"] == target.upper()
    assert meta["body"] == body


def test_real_frames_without_a_map_get_their_targets_body(formats: Path) -> None:
    """Before: ``body`` None for these while their meta said ``target MARS`` / ``MOON``."""
    want = {"isis3/ctxTestImage.cub": "MARS", "isis3/M1333276014R.default.crop.cub": "MOON",
            "pds3/PSP_001446_1790_BG12_0.IMG": "MARS"}  # fmt: skip
    for name, body in want.items():
        geo, meta = georef_of(formats / name)
        assert geo is None and meta["body"] == body, (name, meta["target"], meta["body"])
