"""Audit a3 #1 and #2, the reader's part: a label byte that is not UTF-8 where GDAL quotes it in a message (one
line naming the product and its label, no "Exception ignored" traceback from rasterio's message logger), and a map
projection PROJ cannot parse (read without georeferencing, with a warning, as other broken georeferencing is).
Synthetic products are built in tmp_path; the auditor's real cases run under the ``formats`` fixture."""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rasterio", reason="the archive extra is not installed: pip install 'edgeae[archive]'")

from edgeae.archive.reader import ProductReader, read_product
from edgeae.imageio import ImageReadError


def _vicar(path: Path, intfmt: bytes = b"HIGH", host: bytes = b"SUN-SOLR") -> Path:
    """An 8 × 8 byte VICAR image (samples 0..63) with the given INTFMT and HOST label values."""
    body = (
        b"FORMAT='BYTE'  TYPE='IMAGE'  BUFSIZ=8  DIM=3  EOL=0  RECSIZE=8  ORG='BSQ'  NL=8  NS=8  NB=1  N1=8  N2=8  "
        b"N3=1  N4=0  NBB=0  NLB=0  HOST='" + host + b"'  INTFMT='" + intfmt + b"'  REALFMT='IEEE'  "
    )
    size = 8 * ((len(body) + 24) // 8 + 1)
    path.write_bytes((b"LBLSIZE=%-16d" % size + body).ljust(size, b" ") + bytes(range(64)))
    return path


def _pds3_map(folder: Path, center_lat: str) -> Path:
    """An 8 × 8 byte PDS3 image with a simple cylindrical IMAGE_MAP_PROJECTION centred at ``center_lat``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "m.lbl").write_text(
        'PDS_VERSION_ID = PDS3\nRECORD_TYPE = UNDEFINED\n^IMAGE = ("m.img", 1 <BYTES>)\nOBJECT = IMAGE\n  LINES = 8\n'
        "  LINE_SAMPLES = 8\n  SAMPLE_TYPE = UNSIGNED_INTEGER\n  SAMPLE_BITS = 8\nEND_OBJECT = IMAGE\n"
        'OBJECT = IMAGE_MAP_PROJECTION\n  MAP_PROJECTION_TYPE = "SIMPLE CYLINDRICAL"\n  A_AXIS_RADIUS = 1737.4 <km>\n'
        "  B_AXIS_RADIUS = 1737.4 <km>\n  C_AXIS_RADIUS = 1737.4 <km>\n  POSITIVE_LONGITUDE_DIRECTION = EAST\n"
        f"  CENTER_LATITUDE = {center_lat} <deg>\n  CENTER_LONGITUDE = 0.0 <deg>\n"
        "  MAP_RESOLUTION = 2048.0 <pixel/deg>\n"
        "  MAP_SCALE = 0.014806323445 <km/pixel>\n  LINE_PROJECTION_OFFSET = 104448.0 <pixel>\n"
        "  SAMPLE_PROJECTION_OFFSET = -253952.0 <pixel>\nEND_OBJECT = IMAGE_MAP_PROJECTION\nEND\n"
    )
    (folder / "m.img").write_bytes(bytes(range(64)))
    return folder / "m.lbl"


@pytest.fixture
def unraisable(monkeypatch) -> list:
    """What Python would print as "Exception ignored in ..." (rasterio's message logger failing) while a test runs."""
    seen: list = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    return seen


def test_a_label_byte_gdal_quotes_that_is_not_utf8_is_one_line(tmp_path: Path, unraisable, capfd, caplog) -> None:
    """Was: two "Exception ignored in: 'rasterio._env.log_error'" tracebacks, then "'utf-8' codec can't decode byte
    0xd8 in position 7" naming no file."""
    bad = _vicar(tmp_path / "bad.vic", intfmt=b"\xd8IGH")
    with caplog.at_level(logging.INFO, logger="rasterio"), pytest.raises(ImageReadError) as err:
        read_product(bad)
    msg = str(err.value)
    assert msg.startswith(f"{bad}: GDAL cannot open it: its label holds bytes that are not UTF-8 text")
    assert "INTFMT=\\xd8IGH layout not supported" in msg and "\n" not in msg
    assert unraisable == [] and "Exception ignored" not in capfd.readouterr().err
    assert "INTFMT=\\\\xd8IGH layout not supported" in caplog.text  # GDAL's message still reaches rasterio's log


def test_a_label_byte_that_is_not_utf8_elsewhere_still_reads(tmp_path: Path, unraisable) -> None:
    """A byte GDAL does not quote (a HOST value) is no reason to refuse the product."""
    data = read_product(_vicar(tmp_path / "ok.vic", host=b"SUN-\xe9OLR"))
    assert data.pixels.shape == (8, 8, 1) and np.isclose(data.pixels.max(), 63 / 255)
    assert unraisable == []


def test_an_unparsable_map_projection_reads_without_georeferencing(tmp_path: Path, caplog) -> None:
    """Was: rasterio's bare CRSError "The WKT could not be parsed. OGR Error code 5", naming no file."""
    good = read_product(_pds3_map(tmp_path / "good", "0.0"))
    assert good.extra["georef"] is not None and good.extra["warnings"] == []
    label = _pds3_map(tmp_path / "bad", "1e309")
    with caplog.at_level(logging.WARNING):
        bad = read_product(label)
    np.testing.assert_array_equal(bad.pixels, good.pixels)
    assert bad.extra["georef"] is None
    (note,) = bad.extra["warnings"]
    assert note.startswith("the map projection in its label is invalid (The WKT could not be parsed")
    assert "standard_parallel_1 = Inf" in note and note.endswith("read without georeferencing")
    assert f"{label}: {note}" in caplog.text


# -- the auditor's cases on the real samples ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "offset", "byte", "words"),
    [
        ("vicar/4600.byt.vic", 194, 0xD8, "INTFMT=\\xd8IGH layout not supported"),
        ("isis3/M1333276014R.default.crop.cub", 258, 0xF2, "Re\\xf2l pixel type not supported"),
    ],
)
def test_real_labels_with_a_byte_that_is_not_utf8(formats, tmp_path, unraisable, capfd, name, offset, byte, words):
    data = bytearray((formats / name).read_bytes())
    data[offset] = byte
    path = tmp_path / Path(name).name
    path.write_bytes(data)
    with pytest.raises(ImageReadError, match="its label holds bytes that are not UTF-8 text") as err:
        ProductReader(path)
    assert str(err.value).startswith(f"{path}: ") and words in str(err.value)
    assert unraisable == [] and "Exception ignored" not in capfd.readouterr().err


@pytest.mark.parametrize(
    ("name", "others", "old", "new"),
    [
        ("pds3/MI_MAP_03_N51E124N50E125SC_cropped.lbl", ["pds3/MI_MAP_03_N51E124N50E125SC_cropped.img"],
         b"CENTER_LATITUDE              = 0.0 <deg>", b"CENTER_LATITUDE              = 1e309"),
        ("isis3/PSP_002118_1510_25cm_o_forPDS_cropped.cub", [],
         b"CenterLongitude    = 226.94", b"CenterLongitude    = 1e309 "),  # same length: the cube's offsets hold
    ],
)  # fmt: skip
def test_real_labels_with_an_infinite_projection_parameter(formats, tmp_path, name, others, old, new) -> None:
    for other in others:
        shutil.copy(formats / other, tmp_path)
    data = (formats / name).read_bytes()
    assert old in data
    path = tmp_path / Path(name).name
    path.write_bytes(data.replace(old, new, 1))
    with ProductReader(formats / name) as ref, ProductReader(path) as r:
        assert ref.geo is not None and r.geo is None
        assert any("map projection in its label is invalid" in w for w in r.warnings)
        np.testing.assert_array_equal(r.read_raw(0, r.height), ref.read_raw(0, ref.height))
