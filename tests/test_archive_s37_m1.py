"""Session 37, review r3 of the archive fixes: a file name that is not UTF-8 turned the folder rule off for an ISIS3
``^Core`` (read from ``../out``), the quality filter's pass over a product ignored the streaming limit (the sparse bomb
was read without end by ``edgeae scan --max-missing``), a ``^QUBE`` or a PDS4 ``<offset>`` into another file's own
label was read as pixels, refusals printed a name that is not UTF-8 as ``\\udce9``, and the GeoTIFF check needed
tifffile, which the ``[archive]`` extra does not install."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

rasterio = pytest.importorskip("rasterio", reason="the archive extra is not installed: pip install 'edgeae[archive]'")

from _helpers_archive import PDS4, QUBE, copy_other, rows_after_the_label  # noqa: E402

from edgeae.archive import gdal_env  # noqa: E402
from edgeae.archive.reader import ProductReader  # noqa: E402
from edgeae.imageio import ImageReadError, read_image  # noqa: E402

CORE = np.arange(16, dtype=np.uint8).reshape(4, 4) * 9


def _isis3(core: bytes) -> bytes:
    """A detached ISIS3 label of a 4 × 4 uint8 cube whose ``^Core`` is ``core``."""
    return (
        b"Object = IsisCube\n  Object = Core\n    ^Core = " + core + b"\n    Format = BandSequential\n"
        b"    Group = Dimensions\n      Samples = 4\n      Lines = 4\n      Bands = 1\n    End_Group\n"
        b"    Group = Pixels\n      Type = UnsignedByte\n      ByteOrder = Lsb\n      Base = 0.0\n"
        b"      Multiplier = 1.0\n    End_Group\n  End_Object\nEnd_Object\nEnd\n"
    )


def _write(folder: Path, name: bytes, data: bytes) -> Path:
    path = os.path.join(os.fsencode(folder), name)
    with open(path, "wb") as fh:
        fh.write(data)
    return Path(os.fsdecode(path))


# -- finding 1: a ^Core named by bytes that are not UTF-8 left the label's folder -------------------------------------


@pytest.mark.parametrize("name", [b"t\xe9.core", b"ascii.core"])
def test_an_isis3_core_outside_the_labels_folder_is_refused_whatever_its_name(tmp_path: Path, name: bytes) -> None:
    """``^Core = ../out/t\\xe9.core`` was read (rasterio cannot decode GDAL's file list, and the list put in its place
    held the label alone): refused as its ASCII twin always was, the name written as \\xe9."""
    (tmp_path / "lab").mkdir()
    (tmp_path / "out").mkdir()
    _write(tmp_path / "out", name, b"OUTSIDE!" * 2)
    label = _write(tmp_path / "lab", b"escape.cub", _isis3(b"../out/" + name))
    with pytest.raises(ImageReadError) as err:
        ProductReader(label)
    msg, shown = str(err.value), name.decode("utf-8", "backslashreplace")
    assert "escape.cub: its label points to " in msg and f"/out/{shown}" in msg, msg
    assert "outside the label's folder: a pointer must stay in the label's folder" in msg and "\\udc" not in msg


def test_an_isis3_core_beside_its_label_named_by_bytes_that_are_not_utf8_reads(tmp_path: Path) -> None:
    """The same label with ``^Core = t\\xe9.core`` beside it: GDAL's own list of the files it reads (as bytes) is
    checked, so the product reads, its bytes the pixels."""
    _write(tmp_path, b"t\xe9.core", CORE.tobytes())
    label = _write(tmp_path, b"in.cub", _isis3(b"t\xe9.core"))
    with ProductReader(label) as r:
        assert np.array_equal(r.read_raw(0, 4)[..., 0], CORE)
        files = [os.fsencode(f) for f in gdal_env.dataset_files(r.ds)]
    assert files == [os.fsencode(label), os.path.join(os.fsencode(tmp_path), b"t\xe9.core")]


def test_without_gdals_file_list_a_name_that_is_not_utf8_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where GDAL's list cannot be had as bytes (its C API out of reach), the files GDAL reads are unknown: refused in
    one line, never guessed from the label."""
    monkeypatch.setattr(gdal_env, "_file_list_bytes", lambda ds, opts: None)
    _write(tmp_path, b"t\xe9.core", CORE.tobytes())
    label = _write(tmp_path, b"in.cub", _isis3(b"t\xe9.core"))
    with pytest.raises(ImageReadError, match=r"in\.cub: GDAL reads a file whose name is not UTF-8: cannot check"):
        ProductReader(label)


# -- finding 2: the quality filter's pass (and the scaling's) obeys the streaming limit ------------------------------


def _sparse_tiff(path: Path, side: int, dtype: str) -> Path:
    """A georeferenced deflate-tiled TIFF of ``side`` × ``side`` samples, one tile written (the audit's bomb)."""
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    with rasterio.open(path, "w", driver="GTiff", width=side, height=side, count=1, dtype=dtype, tiled=True,
                       compress="deflate", sparse_ok=True, crs="EPSG:4326",
                       transform=from_origin(0, 0, 1e-3, 1e-3)) as ds:  # fmt: skip
        ds.write(np.full((1, 256, 256), 7, dtype), window=Window(0, 0, 256, 256))
    return path


@pytest.fixture
def no_window(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Every window :class:`ProductReader` reads, recorded; the test fails at the first one."""
    reads: list[tuple[int, int]] = []

    def read_raw(self: Any, y0: int, y1: int) -> Any:
        reads.append((y0, y1))
        raise AssertionError(f"rows {y0}..{y1} of {self.path} read before the streaming limit was checked")

    monkeypatch.setattr(ProductReader, "read_raw", read_raw)
    monkeypatch.delenv("EDGEAE_MAX_STREAM_PIXELS", raising=False)
    return reads


def test_the_missing_data_filter_refuses_a_sparse_bomb_before_any_window(tmp_path: Path, no_window: list) -> None:
    """``edgeae scan --max-missing 0.5`` counted the no-data of the bomb in a pass over all its windows (killed at
    60 s) before the streaming limit of its tiling was reached: refused first, naming the variable."""
    from edgeae.scan.quality import QualityFilter, check_product

    bomb = _sparse_tiff(tmp_path / "bomb.tif", 20000, "uint8")  # 400 M pixels in ~50 KB
    with pytest.raises(ImageReadError, match=r"bomb\.tif: declares 20000×20000 = 400,000,000 pixels, over the "
                       r"streaming limit .*EDGEAE_MAX_STREAM_PIXELS"):  # fmt: skip
        check_product(bomb, QualityFilter(max_missing=0.5))
    assert no_window == []


def test_python_m_edgeae_archive_refuses_a_16_bit_bomb_before_its_range_pass(
    tmp_path: Path, no_window: list, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 16-bit product's scaling is measured in a pass over its samples: on the bomb it ran without end."""
    from edgeae.archive.__main__ import main

    _sparse_tiff(tmp_path / "bomb16.tif", 20000, "uint16")
    assert main([str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert "over the streaming limit" in out and "1 of 1 products could not be read" in err
    assert no_window == []


def test_an_honest_products_missing_fraction_is_still_counted(formats: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The HRSC strip (16-bit, its no-data the label's): counted as before, far inside the limit."""
    from edgeae.scan.quality import product_facts

    monkeypatch.delenv("EDGEAE_MAX_STREAM_PIXELS", raising=False)
    path = formats / "pds3/h2862_0006_sr2_cropped.img"
    facts = product_facts(path, need_missing=True)
    with ProductReader(path) as r:
        raw = r.read_raw(0, r.height)
        want = float(r.invalid(raw).sum()) / (r.height * r.width)
    assert facts["missing_fraction"] == pytest.approx(want) and 0.0 <= want < 1.0
    monkeypatch.setenv("EDGEAE_MAX_STREAM_PIXELS", "1000")  # set by the user: the one limit, for this pass too
    with pytest.raises(ImageReadError, match=r"over the streaming limit of 1,000 pixels \(EDGEAE_MAX_STREAM_PIXELS"):
        product_facts(path, need_missing=True)


# -- finding 3: ^QUBE and PDS4 <offset> into another file's own label ------------------------------------------------


@pytest.fixture
def other(formats: Path, tmp_path: Path) -> Path:
    """OTHER.img: a copy of the LROC NAC EDR (an attached PDS3 label whose END line ends at byte 3650)."""
    return copy_other(formats, tmp_path)


@pytest.mark.parametrize(
    ("name", "text", "what"),
    [("Q.lbl", QUBE, r"\^QUBE pointer"), ("P.xml", PDS4, r"Array_2D_Image \(<offset> 0\)")],
    ids=["pds3-qube", "pds4-offset"],
)
def test_a_qube_or_pds4_array_inside_another_files_label_is_refused(
    other: Path, name: str, text: str, what: str
) -> None:
    """``^QUBE = ("OTHER.img", 1 <BYTES>)`` and a PDS4 array at ``<offset> 0`` of OTHER.img read its label's text as
    10 rows (``PDS_VERSION_ID = PDS``...): refused as a ``^IMAGE`` there is; after that label, the bytes are read."""
    label = other.parent / name
    label.write_text(text.format(at=1 if name.endswith(".lbl") else 0))
    with pytest.raises(ImageReadError, match=rf"{name}: its {what} names OTHER\.img at byte 1, inside OTHER\.img's "
                       r"own PDS3 label \(which ends at byte 3650\): its text would be read as pixels"):  # fmt: skip
        ProductReader(label)
    label.write_text(text.format(at=3651 if name.endswith(".lbl") else 3650))  # the first byte after its END line
    with ProductReader(label) as r:
        assert np.array_equal(r.read_raw(0, 10)[..., 0], rows_after_the_label(other))


# -- finding 6: a refused name that is not UTF-8 is written as \xe9 ------------------------------------------------


def test_a_pointer_refusal_writes_a_name_that_is_not_utf8_as_x_escapes(tmp_path: Path) -> None:
    label = _write(
        tmp_path, b"p.lbl",
        b'PDS_VERSION_ID = PDS3\nRECORD_TYPE = UNDEFINED\n^IMAGE = ("../out/t\xe9.core", 1 <BYTES>)\nOBJECT = IMAGE\n'
        b"  LINES = 4\n  LINE_SAMPLES = 4\n  SAMPLE_BITS = 8\n  SAMPLE_TYPE = MSB_UNSIGNED_INTEGER\n"
        b"END_OBJECT = IMAGE\nEND\n",
    )  # fmt: skip
    with pytest.raises(ImageReadError) as err:
        read_image(label)
    assert r"its ^IMAGE pointer names '../out/t\xe9.core', not a file beside the label" in str(err.value)
    assert "\\udc" not in str(err.value)


# -- finding 7: an install with the [archive] extra only (no tifffile) ----------------------------------------------


def test_a_geotiff_reads_without_tifffile(formats: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """tifffile comes with [ground] and [scan], not [archive]: the strip-and-tile check is skipped without it (GDAL's
    read error then names a missing block), and the GeoTIFF reads as with it."""
    path = formats / "geotiff/mars.tif"
    with ProductReader(path) as r:
        want = r.read_raw(0, r.height)
    monkeypatch.setitem(sys.modules, "tifffile", None)  # import tifffile raises ImportError
    with ProductReader(path) as r:
        assert np.array_equal(r.read_raw(0, r.height), want)
