"""Labels that point into another product's own label (OTHER.img, a copy of the LROC NAC EDR whose attached PDS3
label ends at byte 3650): shared by the session-37 archive tests m1, s1 and u1 (s1 and u1 imported them from m1's
test module, and s1 wrote the ``^QUBE`` object again, until session 38)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

LABEL_END = 3650  # OTHER.img's label ends here: its first byte of pixels

QUBE_OBJECT = """OBJECT = QUBE
  AXES = 3
  AXIS_NAME = (SAMPLE, LINE, BAND)
  CORE_ITEMS = (64, 10, 1)
  CORE_ITEM_BYTES = 1
  CORE_ITEM_TYPE = UNSIGNED_INTEGER
  SUFFIX_ITEMS = (0,0,0)
END_OBJECT = QUBE
"""  # a 64 × 10 byte qube, one band

QUBE = (
    """PDS_VERSION_ID = PDS3
RECORD_TYPE = FIXED_LENGTH
RECORD_BYTES = 64
^QUBE = ("OTHER.img", {at} <BYTES>)
"""
    + QUBE_OBJECT
    + "END\n"
)  # a detached PDS3 label of that qube at byte {at} of OTHER.img

PDS4 = """<?xml version="1.0" encoding="UTF-8"?>
<Product_Observational xmlns="http://pds.nasa.gov/pds4/pds/v1">
  <Identification_Area><logical_identifier>urn:nasa:pds:x:y:z</logical_identifier><version_id>1.0</version_id>
    <title>t</title><information_model_version>1.11.0.0</information_model_version>
    <product_class>Product_Observational</product_class></Identification_Area>
  <File_Area_Observational>
    <File><file_name>OTHER.img</file_name></File>
    <Array_2D_Image>
      <offset unit="byte">{at}</offset>
      <axes>2</axes>
      <axis_index_order>Last Index Fastest</axis_index_order>
      <Element_Array><data_type>UnsignedByte</data_type></Element_Array>
      <Axis_Array><axis_name>Line</axis_name><elements>10</elements><sequence_number>1</sequence_number></Axis_Array>
      <Axis_Array><axis_name>Sample</axis_name><elements>64</elements><sequence_number>2</sequence_number></Axis_Array>
    </Array_2D_Image>
  </File_Area_Observational>
</Product_Observational>
"""  # a PDS4 label of a 10 × 64 byte array at byte {at} of OTHER.img


def copy_other(formats: Path, folder: Path) -> Path:
    """``folder/OTHER.img``: a copy of the LROC NAC EDR of ``formats`` (the conftest fixture)."""
    shutil.copyfile(formats / "pds3/nacl.img", folder / "OTHER.img")
    return folder / "OTHER.img"


def rows_after_the_label(other: Path) -> np.ndarray:
    """The 10 × 64 bytes of ``other`` from :data:`LABEL_END` on: what a qube or array placed there reads."""
    return np.frombuffer(other.read_bytes()[LABEL_END : LABEL_END + 640], np.uint8).reshape(10, 64)
