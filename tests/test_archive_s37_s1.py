"""Session 37, review r6 of the archive fixes: a PDS4 ``<offset>`` that GDAL reads as its leading integer (``4e3`` is
byte 4, ``0x10`` byte 0, ``1e400`` byte 1) slipped past the check (it parsed a float) and read another file's label as
pixels, and a nested ``^QUBE`` in records was refused as "at byte 1" whatever its own object's RECORD_BYTES."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rasterio", reason="the archive extra is not installed: pip install 'edgeae[archive]'")

from _helpers_archive import PDS4, QUBE_OBJECT, copy_other, rows_after_the_label

from edgeae.archive.pointers import pds4_offset
from edgeae.archive.reader import ProductReader
from edgeae.imageio import ImageReadError


@pytest.fixture
def other(formats: Path, tmp_path: Path) -> Path:
    """OTHER.img: a copy of the LROC NAC EDR (an attached PDS3 label whose END line ends at byte 3650)."""
    return copy_other(formats, tmp_path)


@pytest.mark.parametrize(
    ("text", "byte"), [("4e3", 4), ("0x10", 0), ("1e400", 1), (" +7 ", 7), ("", 0), ("abc", 0), ("3651.9", 3651)]
)
def test_an_offset_is_its_leading_integer_as_gdal_reads_it(text: str, byte: int) -> None:
    arr = ET.fromstring(f"<Array_2D_Image><offset unit='byte'>{text}</offset></Array_2D_Image>")
    assert pds4_offset(arr) == byte
    assert pds4_offset(ET.fromstring("<Array_2D_Image/>")) == 0  # no <offset>: GDAL's default "0"


@pytest.mark.parametrize("text", ["4e3", "0x10", "1e400", "0.5", "3649"])
def test_an_offset_gdal_reads_inside_another_files_label_is_refused(other: Path, text: str) -> None:
    """The float check took 4e3 for byte 4000 and skipped 1e400 (infinite): GDAL reads all three from the label."""
    label = other.parent / "P.xml"
    label.write_text(PDS4.format(at=text))
    byte = pds4_offset(ET.fromstring(f"<a><offset>{text}</offset></a>")) + 1
    said = (
        rf"<offset> {byte - 1}"
        if text == str(byte - 1)
        else rf"<offset> '{re.escape(text)}', which GDAL reads as {byte - 1}"
    )
    with pytest.raises(ImageReadError, match=rf"P\.xml: its Array_2D_Image \({said}\) names OTHER\.img at "
                       rf"byte {byte}, inside OTHER\.img's own PDS3 label \(which ends at byte 3650\)"):  # fmt: skip
        ProductReader(label)


def test_an_offset_after_the_label_still_reads_and_a_negative_one_is_refused(other: Path) -> None:
    label = other.parent / "P.xml"
    label.write_text(PDS4.format(at="3650e0"))  # byte 3650 for GDAL: the first byte after the END line
    with ProductReader(label) as r:
        assert np.array_equal(r.read_raw(0, 10)[..., 0], rows_after_the_label(other))
    label.write_text(PDS4.format(at="-5"))
    with pytest.raises(ImageReadError, match=r"P\.xml: its Array_2D_Image has <offset> '-5', a negative position"):
        ProductReader(label)


NESTED = (
    """PDS_VERSION_ID = PDS3
RECORD_TYPE = FIXED_LENGTH
OBJECT = FILE
{rb}  ^QUBE = ("OTHER.img", {rec})
"""
    + QUBE_OBJECT
    + "END_OBJECT = FILE\nEND\n"
)


def test_a_nested_record_pointer_names_its_real_byte(other: Path) -> None:
    """``OBJECT = FILE; RECORD_BYTES = 64; ^QUBE = ("OTHER.img", 60)`` was refused "at byte 1": record 60 of 64 bytes
    is byte 3777, after OTHER.img's label, so the label check passes it; record 50 (byte 3137) is inside and named so;
    with no RECORD_BYTES in FILE (the top level's is not GDAL's) the refusal says the record and that GDAL counts 1-byte
    records (byte 60)."""
    label = other.parent / "C.lbl"
    label.write_text(NESTED.format(rb="  RECORD_BYTES = 64\n", rec=60))
    with pytest.raises(ImageReadError) as err:  # GDAL itself cannot open this qube: any refusal but the label's
        ProductReader(label).close()
    assert "own PDS3 label" not in str(err.value)
    label.write_text(NESTED.format(rb="  RECORD_BYTES = 64\n", rec=50))
    with pytest.raises(ImageReadError, match=r"its \^QUBE pointer \(in FILE\) names OTHER\.img at byte 3137, inside"):
        ProductReader(label)
    label.write_text(NESTED.format(rb="", rec=60))
    with pytest.raises(ImageReadError, match=r"names OTHER\.img at record 60 with no RECORD_BYTES in FILE \(GDAL "
                       r"counts 1-byte records: byte 60\), inside OTHER\.img's own PDS3 label"):  # fmt: skip
        ProductReader(label)


def test_a_nested_image_record_pointer_counts_its_file_objects_record_bytes(other: Path) -> None:
    label = other.parent / "C2.lbl"
    text = NESTED.replace("^QUBE", "^IMAGE").split("OBJECT = QUBE")[0].format(rb="  RECORD_BYTES = 64\n", rec=60)
    label.write_text(
        text
        + "OBJECT = IMAGE\n  LINES = 10\n  LINE_SAMPLES = 64\n  SAMPLE_BITS = 8\n  SAMPLE_TYPE = UNSIGNED_INTEGER\n"
        "END_OBJECT = IMAGE\nEND_OBJECT = FILE\nEND\n"
    )
    with ProductReader(label) as r:  # record 60 of FILE's 64 bytes: byte 3777, where GDAL reads it (was refused)
        want = np.frombuffer(other.read_bytes()[3776 : 3776 + 640], np.uint8).reshape(10, 64)
        assert np.array_equal(r.read_raw(0, 10)[..., 0], want)
