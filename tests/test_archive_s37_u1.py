"""Session 37, review r9 of the archive fixes: a record pointer counts the RECORD_BYTES GDAL's PDS driver counts
(``pdsdataset.cpp`` ParseImage: the IMAGE object's, else the pointer's own object's, else 1; never the top level's for
a ``^IMAGE`` nested in ``OBJECT = FILE``), so a label no longer reads another file's PDS3 label as pixels nor is a
valid one refused; a PDS4 ``<offset>`` GDAL reads otherwise than written is named as written."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rasterio", reason="the archive extra is not installed: pip install 'edgeae[archive]'")

from _helpers_archive import PDS4, copy_other

from edgeae.archive.reader import ProductReader
from edgeae.imageio import ImageReadError

IMAGE = (
    "OBJECT = IMAGE\n{irb}  LINES = 10\n  LINE_SAMPLES = 64\n  SAMPLE_BITS = 8\n  SAMPLE_TYPE = UNSIGNED_INTEGER\n"
    "END_OBJECT = IMAGE\n"
)
HEAD = "PDS_VERSION_ID = PDS3\nRECORD_TYPE = FIXED_LENGTH\n"


def _label(top_rb: str = "", file_rb: str | None = None, image_rb: str = "", rec: int = 60) -> str:
    """A detached label whose ``^IMAGE = ("OTHER.img", rec)`` is nested in ``OBJECT = FILE`` (``file_rb`` not None)
    or at the top level; each ``*_rb`` a RECORD_BYTES line or ""."""
    image = IMAGE.format(irb=image_rb)
    pointer = f'  ^IMAGE = ("OTHER.img", {rec})\n'
    if file_rb is None:
        return HEAD + top_rb + pointer.strip() + "\n" + image + "END\n"
    return HEAD + top_rb + "OBJECT = FILE\n" + file_rb + pointer + image + "END_OBJECT = FILE\nEND\n"


@pytest.fixture
def other(formats: Path, tmp_path: Path) -> Path:
    """OTHER.img: a copy of the LROC NAC EDR (an attached PDS3 label whose END line ends at byte 3650)."""
    return copy_other(formats, tmp_path)


def _gdal_start(label: Path, other: Path) -> int:
    """The byte of OTHER.img where GDAL's PDS driver reads row 0 (found by its 64 bytes)."""
    import rasterio

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(label, driver="PDS") as ds:
            row = ds.read(1, window=((0, 1), (0, 64))).tobytes()
    return other.read_bytes().find(row)


RB64 = "  RECORD_BYTES = 64\n"
NO_RB = r"at record 60 with no RECORD_BYTES in FILE \(GDAL counts 1-byte records: byte 60\)"


@pytest.mark.parametrize(
    ("top", "file", "image", "rec", "start"),
    [
        ("", RB64, "", 60, 3776),  # FILE's RECORD_BYTES 64, none at the top: was refused "so byte 1"
        ("RECORD_BYTES = 1\n", RB64, "", 60, 3776),  # FILE's 64, not the top level's 1: was refused "at byte 60"
        ("", None, "", 4000, 3999),  # no RECORD_BYTES anywhere: GDAL counts 1-byte records (was refused)
    ],
    ids=["file-rb", "file-rb-over-top", "no-rb-1-byte-records"],
)
def test_a_record_pointer_reads_where_gdal_reads_it(
    other: Path, top: str, file: str | None, image: str, rec: int, start: int
) -> None:
    label = other.parent / "N.lbl"
    label.write_text(_label(top, file, image, rec))
    assert _gdal_start(label, other) == start
    want = np.frombuffer(other.read_bytes()[start : start + 640], np.uint8).reshape(10, 64)
    with ProductReader(label) as r:
        assert np.array_equal(r.read_raw(0, 10)[..., 0], want)


@pytest.mark.parametrize(
    ("top", "file", "image", "said"),
    [
        ("RECORD_BYTES = 64\n", "", "", NO_RB),  # FILE has none: not the top level's 64
        ("RECORD_BYTES = 64\n", None, "  RECORD_BYTES = 1\n", "at byte 60"),  # the IMAGE object's 1 wins
    ],
    ids=["top-rb-not-used-for-file", "image-rb-first"],
)
def test_a_record_pointer_gdal_reads_inside_another_files_label_is_refused(
    other: Path, top: str, file: str | None, image: str, said: str
) -> None:
    """GDAL reads these from byte 59 of OTHER.img, its label's text; edgeae read it as pixels (the top level's 64)."""
    label = other.parent / "N.lbl"
    label.write_text(_label(top, file, image))
    assert _gdal_start(label, other) == 59
    with pytest.raises(ImageReadError, match=rf"N\.lbl: its \^IMAGE pointer names OTHER\.img {said}, inside "
                       r"OTHER\.img's own PDS3 label \(which ends at byte 3650\)"):  # fmt: skip
        ProductReader(label)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("<offset unit='byte'>0x10</offset>", r"<offset> '0x10', which GDAL reads as 0"),
        ("<offset unit='byte'>abc</offset>", r"<offset> 'abc', which GDAL reads as 0"),
        ("<offset unit='byte'></offset>", r"<offset> '', which GDAL reads as 0"),
        ("", r"no <offset>, which GDAL reads as 0"),
        ("<offset unit='byte'>0</offset>", r"<offset> 0"),
    ],
)
def test_a_pds4_offset_is_named_as_the_label_writes_it(other: Path, text: str, said: str) -> None:
    """``<offset> 0x10`` was named ``(<offset> 0)``, which the label does not say."""
    label = other.parent / "P.xml"
    label.write_text(PDS4.format(at="0").replace('<offset unit="byte">0</offset>', text))
    with pytest.raises(ImageReadError, match=rf"P\.xml: its Array_2D_Image \({said}\) names OTHER\.img at byte 1, "):
        ProductReader(label)
