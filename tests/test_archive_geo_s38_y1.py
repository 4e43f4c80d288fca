"""Audit s38 a3 #6: ``body`` is filled from the label's target for products without georeferencing (images.parquet
had null for every CTX, HiRISE EDR, LROC NAC frame). Synthetic products in tmp_path; the real samples under the
``formats`` fixture (skipped without the data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

rasterio = pytest.importorskip("rasterio", reason="the archive extra is not installed: pip install 'edgeae[archive]'")
pytest.importorskip("pyproj")

from edgeae.scan.geo import georef_of  # noqa: E402


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
