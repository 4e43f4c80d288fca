"""Misleading and hostile archive products: PDS3 pointers that land in the label or follow a nested object,
labels declaring more than their files hold, constant float products, pointers out of the label's folder, and
the wording of the refusals. Synthetic files are built in tmp_path; the real samples of ../shared/data/formats
are read in place (those tests skip when the folder is absent)."""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

rasterio = pytest.importorskip("rasterio", reason="the archive extra is not installed: pip install 'edgeae[archive]'")

from edgeae.archive.reader import ProductReader, choose_scaling, read_product  # noqa: E402
from edgeae.imageio import ImageReadError, read_image  # noqa: E402


def _label_end(data: bytes) -> int:
    """Byte offset just after a PDS3 label's END line (any case), found independently of the reader."""
    m = re.search(rb"\r?\n(END|End)\r?\n", data)
    assert m is not None
    return m.end()


def _isis_cube(path: Path, samples: int, lines: int, bands: int, data: bytes, tiled: bool = True) -> Path:
    """An attached-label ISIS3 cube of 32-bit floats (LSB, 128 × 128 tiles or band-sequential) from byte 1025."""
    layout = "Tile\n    TileSamples = 128\n    TileLines = 128" if tiled else "BandSequential"
    label = (
        f"Object = IsisCube\n  Object = Core\n    StartByte = 1025\n    Format = {layout}\n"
        f"    Group = Dimensions\n      Samples = {samples}\n      Lines = {lines}\n"
        f"      Bands = {bands}\n    End_Group\n    Group = Pixels\n      Type = Real\n      ByteOrder = Lsb\n"
        "      Base = 0.0\n      Multiplier = 1.0\n    End_Group\n  End_Object\nEnd_Object\nEnd\n"
    )
    path.write_bytes(label.encode().ljust(1024, b" ") + data)
    return path


def _pds3_pair(folder: Path, pointer: str, lines: int = 2, samples: int = 4, data: bytes | None = None) -> Path:
    """A detached PDS3 label x.lbl (8-bit image) and, unless ``data`` is None, its data file x.img."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "x.lbl").write_text(
        "PDS_VERSION_ID = PDS3\r\nRECORD_TYPE = FIXED_LENGTH\r\nRECORD_BYTES = 4\r\n"
        f"^IMAGE = {pointer}\r\nOBJECT = IMAGE\r\n  LINES = {lines}\r\n  LINE_SAMPLES = {samples}\r\n"
        "  SAMPLE_TYPE = UNSIGNED_INTEGER\r\n  SAMPLE_BITS = 8\r\nEND_OBJECT = IMAGE\r\nEND\r\n"
    )
    if data is not None:
        (folder / "x.img").write_bytes(data)
    return folder / "x.lbl"


# -- 1. stale and nested ^IMAGE pointers of the cropped PDS3 samples ----------------------------------------------

# file: numpy dtype of its samples (from the label's SAMPLE_TYPE / SAMPLE_BITS), (H, W)
STALE = {
    "pds3/nacl.img": ("u1", (10, 5064)),
    "pds3/wac0000a1c4_cropped.img": ("u1", (100, 704)),
    "pds3/ab102401_cropped.img": ("u1", (5, 640)),
    "pds3/h2862_0006_sr2_cropped.img": (">i2", (5, 1008)),
    "pds3/ldem_4_cropped.img": ("<i2", (1, 1440)),
}


@pytest.mark.parametrize("name", sorted(STALE))
def test_stale_pointer_reads_the_image_after_the_label(formats: Path, name: str) -> None:
    """The crops left ^IMAGE 8-20 bytes before the label's END: GDAL read label text as row 0 (and shifted
    every row). The image fills the file right after the END line, so that is where it is read, and said."""
    dtype, (h, w) = STALE[name]
    p = formats / name
    data = p.read_bytes()
    end = _label_end(data)
    want = np.frombuffer(data[end : end + h * w * np.dtype(dtype).itemsize], dtype).reshape(h, w)
    with ProductReader(p) as r:
        got = r.read_raw(0, h)[..., 0]
        assert any("stale pointer" in w_ and f"read from byte {end + 1}" in w_ for w_ in r.warnings), r.warnings
    assert np.array_equal(got, want)
    im = read_image(p)
    assert any("stale pointer" in w_ for w_ in im.extra["warnings"])
    if dtype != "u1":
        assert (im.extra["scaling"]["raw_lo"], im.extra["scaling"]["raw_hi"]) == (want.min(), want.max())


def test_hrsc_no_longer_reads_black(formats: Path) -> None:
    """Its 4 label-text "pixels" (up to 25610) set the range while 99.9 % of values are <= 144: mean 0.0016."""
    im = read_image(formats / "pds3/h2862_0006_sr2_cropped.img")
    s = im.extra["scaling"]
    assert (s["raw_lo"], s["raw_hi"]) == (0.0, 165.0)
    assert float(im.pixels.mean()) > 0.1


def test_ldem_nested_pointer_is_not_followed(formats: Path, tmp_path: Path) -> None:
    """LOLA's label nests ``^IMAGE = LDEM_4.IMG`` in UNCOMPRESSED_FILE; GDAL follows it from byte 0 even when
    the top-level pointer is right. With the top-level pointer repaired, the reader still reads from it."""
    src = (formats / "pds3/ldem_4_cropped.img").read_bytes()
    end = _label_end(src)
    fixed = src.replace(b"^IMAGE = 2904 <BYTES>", f"^IMAGE = {end + 1} <BYTES>".encode())
    assert len(fixed) == len(src) and fixed != src
    p = tmp_path / "ldem.img"
    p.write_bytes(fixed)
    with rasterio.open(p) as ds:  # what GDAL alone makes of it: label text as heights
        assert int(ds.read(1).max()) > 20000
    im = read_image(p)
    assert (im.extra["scaling"]["raw_lo"], im.extra["scaling"]["raw_hi"]) == (-1010.0, 735.0)
    assert any("nested in UNCOMPRESSED_FILE" in w for w in im.extra["warnings"]), im.extra["warnings"]


def test_stale_pointer_with_an_ambiguous_start_is_refused(formats: Path, tmp_path: Path) -> None:
    src = (formats / "pds3/nacl.img").read_bytes()
    (tmp_path / "extra.img").write_bytes(src + b"\x01" * 100)  # image no longer flush with either end
    with pytest.raises(ImageReadError, match=r"extra\.img: its \^IMAGE pointer \(byte 3638\) lies inside its label.*"
                       r"stale pointer.*unknown"):  # fmt: skip
        read_image(tmp_path / "extra.img")
    (tmp_path / "pad.img").write_bytes(src + b"\r\n")  # padding after the image (as the LOLA crop has)
    assert read_image(tmp_path / "pad.img").shape == (10, 5064, 1)
    (tmp_path / "cut.img").write_bytes(src[:30000])
    with pytest.raises(ImageReadError, match=r"cut\.img: truncated: its label promises 10 lines"):
        read_image(tmp_path / "cut.img")


# -- 2. declared sizes bounded before anything is allocated -------------------------------------------------------


def test_a_huge_declared_width_is_refused_before_allocating(tmp_path: Path) -> None:
    """Samples = 2147483000 × 3 bands of Real: reading its one line took 24 GiB (MemoryError traceback)."""
    from edgeae.archive.__main__ import main

    p = _isis_cube(tmp_path / "wide.cub", 2147483000, 1, 3, bytes(4000))
    msg = (
        r"wide\.cub: truncated or corrupt: its label declares 1 × 2147483000 × 3 float32 samples \(25769796000 bytes\)"
    )
    with pytest.raises(ImageReadError, match=msg):
        read_image(p)
    with pytest.raises(ImageReadError, match=msg):
        ProductReader(p)
    assert main([str(p)]) == 1


def test_cli_reports_a_huge_declared_width_as_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from edgeae.archive.__main__ import main

    _isis_cube(tmp_path / "wide.cub", 2147483000, 1, 3, bytes(4000))
    assert main([str(tmp_path)]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["file"] == "wide.cub" and "declares 1 × 2147483000 × 3" in out["error"]


def test_read_windows_obey_the_byte_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = _isis_cube(tmp_path / "ok.cub", 1000, 2, 1, np.arange(2000, dtype="<f4").tobytes(), tiled=False)
    assert read_image(p).shape == (2, 1000, 1)
    monkeypatch.setenv("EDGEAE_MAX_IMAGE_BYTES", "100")
    with pytest.raises(ImageReadError, match=r"ok\.cub: reading rows 1\.\.2 takes 3\.9 KiB .* over the 100 bytes read"):
        ProductReader(p)


# -- 3. constant products with values beyond 2**53 ----------------------------------------------------------------


@pytest.mark.parametrize("value", [1e20, -1e20, 3.4e38, 1e300, -1.7976931348623157e308, 1.7976931348623157e308])
def test_constant_range_has_a_positive_width(value: float) -> None:
    s = choose_scaling(np.dtype(np.float64), None, value, value)
    assert s.raw_hi > s.raw_lo and math.isfinite(s.raw_hi) and math.isfinite(s.raw_lo)
    assert value in (s.raw_lo, s.raw_hi)


def test_constant_geotiff_of_1e20_reads_as_zeros(tmp_path: Path) -> None:
    """``vmin + 1.0 == vmin`` above 2**53: the width was 0 and normalise divided by it (ZeroDivisionError)."""
    from affine import Affine

    p = tmp_path / "const.tif"
    profile = {"driver": "GTiff", "width": 64, "height": 32, "count": 1, "dtype": "float32", "crs": "EPSG:4326",
               "transform": Affine(0.1, 0, 0, 0, -0.1, 10)}  # fmt: skip
    with rasterio.open(p, "w", **profile) as ds:
        ds.write(np.full((1, 32, 64), 1e20, np.float32))
    im = read_image(p)
    assert im.scale > 0 and im.valid.all() and not im.pixels.any()
    assert im.extra["scaling"]["raw_lo"] == float(np.float32(1e20))


def test_crism_constant_band_reads(formats: Path) -> None:
    """CRISM DDR band 11 holds 1e32 everywhere (the docs' read_product(bands=[n]) example crashed)."""
    im = read_product(formats / "pds3/frt00003e25_01_de156l_ddr1.lbl", bands=[11])
    assert im.shape == (15, 64, 1) and im.scale > 0 and not im.pixels.any()
    assert im.extra["scaling"]["raw_lo"] == pytest.approx(1e32, rel=1e-6)


def test_a_multiband_product_says_which_band_it_read(formats: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A 14-band CRISM DDR read without bands= used band 1 without a word."""
    with caplog.at_level(logging.WARNING, logger="edgeae.archive.reader"):
        im = read_product(formats / "pds3/frt00003e25_01_de156l_ddr1.lbl")
    assert im.extra["bands_read"] == [1] and "14 bands in the product; band 1 is read" in caplog.text
    (note,) = im.extra["warnings"]  # how to choose another: no --bands option exists (audit s32-a4)
    assert note.startswith("14 bands in the product; band 1 is read") and "bands=[N]" in note
    assert "bands=[...]" not in note and "rio stack" not in note  # rio stack refuses it: no geotransform (s32-g3)
    (code,) = re.findall(r"`(from edgeae[^`]*read_product\(path, bands=\[N\]\))`", note)
    path = formats / "pds3/frt00003e25_01_de156l_ddr1.lbl"
    ns: dict[str, Any] = {"path": path, "N": 2}
    imports, call = code.split("; ")
    exec(f"{imports}\nband = {call}", ns)  # the hint runs as given, for band 2
    np.testing.assert_array_equal(ns["band"].pixels, read_product(path, bands=[2]).pixels)
    assert not read_product(formats / "pds3/frt00003e25_01_de156l_ddr1.lbl", bands=[2]).extra["warnings"]
    with pytest.raises(ValueError, match=r"e.g. \[2\]"):  # an int was a bare TypeError
        read_product(formats / "pds3/frt00003e25_01_de156l_ddr1.lbl", bands=2)  # type: ignore[arg-type]


# -- 4. pointers stay in the label's folder -----------------------------------------------------------------------


@pytest.mark.parametrize("pointer", ["(\"../../../../etc/passwd\", 1 <BYTES>)", "(\"/etc/passwd\", 1 <BYTES>)",
                                     "\"sub/x.img\"", "(\"..\", 1)"])  # fmt: skip
def test_pds3_pointer_out_of_the_label_folder_is_refused(tmp_path: Path, pointer: str) -> None:
    lbl = _pds3_pair(tmp_path / "p", pointer)
    with pytest.raises(ImageReadError, match=r"x\.lbl: its \^IMAGE pointer names .*a pointer must stay in the label"):
        read_image(lbl)


def _pds4(folder: Path, file_name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / "x.xml"
    p.write_text(
        '<?xml version="1.0"?>\n<Product_Observational xmlns="http://pds.nasa.gov/pds4/pds/v1">\n'
        "<File_Area_Observational><File><file_name>" + file_name + "</file_name></File>\n"
        '<Array_2D_Image><offset unit="byte">0</offset><axes>2</axes><axis_index_order>Last Index Fastest'
        "</axis_index_order><Element_Array><data_type>UnsignedByte</data_type></Element_Array>"
        "<Axis_Array><axis_name>Line</axis_name><elements>2</elements><sequence_number>1</sequence_number></Axis_Array>"
        "<Axis_Array><axis_name>Sample</axis_name><elements>4</elements><sequence_number>2</sequence_number>"
        "</Axis_Array></Array_2D_Image></File_Area_Observational>\n</Product_Observational>\n"
    )
    return p


def test_pds4_file_name_out_of_the_label_folder_is_refused(tmp_path: Path) -> None:
    """``<file_name>../../../usr/lib/x86_64-linux-gnu/libc.so.6`` was read and scored as an image."""
    ok = _pds4(tmp_path / "ok", "in.dat")
    (tmp_path / "ok" / "in.dat").write_bytes(bytes(range(8)))
    assert np.array_equal(np.rint(read_image(ok).pixels[..., 0] * 255), np.arange(8).reshape(2, 4))
    (tmp_path / "outside.dat").write_bytes(bytes(range(8)))
    lbl = _pds4(tmp_path / "p", "../outside.dat")
    with pytest.raises(ImageReadError, match=r"x\.xml: its <file_name> names '\.\./outside\.dat'.*stay in the label"):
        read_image(lbl)


def test_any_file_gdal_opens_outside_the_label_folder_is_refused(tmp_path: Path) -> None:
    """The net under the label checks: an ISIS3 detached label whose ^Core is ../core.raw (GDAL follows it)."""
    (tmp_path / "core.raw").write_bytes(np.arange(64, dtype="<i2").tobytes())
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "x.lbl").write_text(
        "Object = IsisCube\n  Object = Core\n    ^Core = ../core.raw\n    StartByte = 1\n    Format = BandSequential\n"
        "    Group = Dimensions\n      Samples = 8\n      Lines = 8\n      Bands = 1\n    End_Group\n"
        "    Group = Pixels\n      Type = SignedWord\n      ByteOrder = Lsb\n      Base = 0.0\n      Multiplier = 1.0\n"
        "    End_Group\n  End_Object\nEnd_Object\nEnd\n"
    )
    with pytest.raises(ImageReadError, match=r"x\.lbl: its label points to .*core\.raw, outside the label's folder"):
        read_image(tmp_path / "in" / "x.lbl")


# -- 6. refusals that say what is wrong ---------------------------------------------------------------------------


def test_gdal_read_errors_keep_gdal_words(formats: Path, tmp_path: Path) -> None:
    """A tile whose JPEG stream is garbage (the file whole: a file cut short is refused at open) fails in GDAL's
    words, not rasterio's "See previous exception"."""
    import tifffile

    p = formats / "geotiff/ESP_037156_1800_RED.byte.tif"
    src = bytearray(p.read_bytes())
    with tifffile.TiffFile(p) as tif:
        start, n = tif.pages.first.dataoffsets[0], tif.pages.first.databytecounts[0]
    src[start : start + n] = (bytes(range(256)) * (n // 256 + 1))[:n]
    (tmp_path / "garbled.tif").write_bytes(bytes(src))
    with pytest.raises(ImageReadError) as err:
        read_image(tmp_path / "garbled.tif")
    assert "See previous exception" not in str(err.value) and "IReadBlock failed" in str(err.value)


def test_a_data_file_without_its_label_says_so(tmp_path: Path) -> None:
    (tmp_path / "orphan.dat").write_bytes(bytes(100))
    with pytest.raises(ImageReadError, match=r"orphan\.dat: a planetary data file \(\.dat\).*label was not found"):
        read_image(tmp_path / "orphan.dat")
    (tmp_path / "notes.xyz").write_bytes(b"x")
    with pytest.raises(
        ImageReadError, match=r"unsupported file type '\.xyz'; supported: .*\.tiff, and planetary .*\.cub"
    ):
        read_image(tmp_path / "notes.xyz")


def test_a_label_without_an_image_object_says_so(tmp_path: Path) -> None:
    p = tmp_path / "INDEX.LBL"
    p.write_text(
        'PDS_VERSION_ID = PDS3\r\nRECORD_TYPE = FIXED_LENGTH\r\nRECORD_BYTES = 100\r\n^INDEX_TABLE = "INDEX.TAB"\r\n'
        "OBJECT = INDEX_TABLE\r\n  ROWS = 2\r\n  OBJECT = COLUMN\r\n    NAME = X\r\n  END_OBJECT = COLUMN\r\n"
        "END_OBJECT = INDEX_TABLE\r\nEND\r\n"
    )
    (tmp_path / "INDEX.TAB").write_bytes(bytes(200))
    with pytest.raises(ImageReadError, match=r"INDEX\.LBL: the label has no IMAGE object \(it describes INDEX_TABLE\)"):
        read_image(p)


def test_one_line_is_singular(tmp_path: Path) -> None:
    lbl = _pds3_pair(tmp_path, '("x.img", 1 <BYTES>)', lines=1, samples=100, data=bytes(50))
    with pytest.raises(ImageReadError, match=r"truncated: its label promises 1 line \(100 bytes"):
        read_image(lbl)


def test_pds3_label_over_a_jp2_reads_the_jp2(formats: Path, tmp_path: Path) -> None:
    """A HiRISE RDR label names the .IMG it was compressed from; GDAL reads its COMPRESSED_FILE (the JP2)."""
    shutil.copy(formats / "jp2/test.jp2", tmp_path / "TEST.JP2")  # a link leaving the folder is refused (s33)
    (tmp_path / "TEST.LBL").write_text(
        'PDS_VERSION_ID = PDS3\nOBJECT = COMPRESSED_FILE\n  FILE_NAME = "TEST.JP2"\n  ENCODING_TYPE = "JP2"\n'
        'END_OBJECT = COMPRESSED_FILE\nOBJECT = UNCOMPRESSED_FILE\n  FILE_NAME = "TEST.IMG"\n  RECORD_BYTES = 4384\n'
        '  ^IMAGE = "TEST.IMG"\n  OBJECT = IMAGE\n    LINES = 775\n    LINE_SAMPLES = 2192\n    BANDS = 3\n'
        "    SAMPLE_TYPE = MSB_UNSIGNED_INTEGER\n    SAMPLE_BITS = 16\n  END_OBJECT = IMAGE\n"
        "END_OBJECT = UNCOMPRESSED_FILE\nEND\n"
    )
    assert read_image(tmp_path / "TEST.LBL").shape == (775, 2192, 3)
