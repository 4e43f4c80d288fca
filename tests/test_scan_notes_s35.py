"""Review r5 of 6bedb66 (audit a3): a product's note at open (a map projection PROJ cannot parse) is printed once a
scan, by the driver, which opens every image it hands out to count its patches; the local engine's worker processes,
which open it again to read it, no longer print it a second time."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

NOTE = "the map projection in its label is invalid"


def _pds3_bad_map(folder: Path) -> Path:
    """A 64 × 64 byte PDS3 image whose IMAGE_MAP_PROJECTION has an infinite centre latitude (PROJ rejects it)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "m.lbl").write_text(
        'PDS_VERSION_ID = PDS3\nRECORD_TYPE = UNDEFINED\n^IMAGE = ("m.img", 1 <BYTES>)\nOBJECT = IMAGE\n  LINES = 64\n'
        "  LINE_SAMPLES = 64\n  SAMPLE_TYPE = UNSIGNED_INTEGER\n  SAMPLE_BITS = 8\nEND_OBJECT = IMAGE\n"
        'OBJECT = IMAGE_MAP_PROJECTION\n  MAP_PROJECTION_TYPE = "SIMPLE CYLINDRICAL"\n  A_AXIS_RADIUS = 1737.4 <km>\n'
        "  B_AXIS_RADIUS = 1737.4 <km>\n  C_AXIS_RADIUS = 1737.4 <km>\n  POSITIVE_LONGITUDE_DIRECTION = EAST\n"
        "  CENTER_LATITUDE = 1e309 <deg>\n  CENTER_LONGITUDE = 0.0 <deg>\n  MAP_RESOLUTION = 2048.0 <pixel/deg>\n"
        "  MAP_SCALE = 0.014806323445 <km/pixel>\n  LINE_PROJECTION_OFFSET = 104448.0 <pixel>\n"
        "  SAMPLE_PROJECTION_OFFSET = -253952.0 <pixel>\nEND_OBJECT = IMAGE_MAP_PROJECTION\nEND\n"
    )
    (folder / "m.img").write_bytes(np.random.default_rng(0).integers(0, 256, 64 * 64, dtype=np.uint8).tobytes())
    return folder / "m.lbl"


def test_the_invalid_map_projection_note_is_printed_once_per_product(tmp_path: Path, caplog, capfd) -> None:
    """Was: twice per product with the process pool (the driver's open and the worker's; the once-per-product set
    is per process)."""
    pytest.importorskip("rasterio")
    pytest.importorskip("pyarrow")
    from test_scan_support import mean_scorer_factory

    from edgeae.archive.reader import NOTES_LOGGER
    from edgeae.scan.run import EngineOptions, scan_archive

    assert NOTES_LOGGER == "edgeae.archive.reader.notes"  # the name edgeae.scan.local quiets in its workers
    labels = [_pds3_bad_map(tmp_path / "arc" / d) for d in ("p", "q")]
    kw = dict(progress=False, scorer_factory=mean_scorer_factory, engine=EngineOptions(workers=2))
    with caplog.at_level(logging.WARNING):
        report = scan_archive(tmp_path / "arc", "orbital-gray-vae", tmp_path / "out", **kw)
    assert report["done"] == 2
    for label in labels:  # from the driver, once however often it opened the product
        assert caplog.text.count(f"{label}: {NOTE}") == 1
    assert NOTE not in capfd.readouterr().err  # the workers (their own stderr) say nothing more
    # a second scan in the same process (a notebook, a library user) gives each note again (review r9: the
    # driver's once-per-process set left it silent, its workers being quiet)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        scan_archive(tmp_path / "arc", "orbital-gray-vae", tmp_path / "out2", **kw)
    for label in labels:
        assert caplog.text.count(f"{label}: {NOTE}") == 1
