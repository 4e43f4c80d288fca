"""Resume stamps of `edgeae scan`: a product is scanned again when its detached data file changes, not only its
label; manifests written before data files were stamped still resume without rescanning everything."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from edgeae.scan.archive import ArchiveEntry
from edgeae.scan.pipeline import ScanConfig
from edgeae.scan.scoring import ModelSpec
from edgeae.scan.state import ScanStore, file_stamp

SPEC = ModelSpec(path="m.onnx", model_id="m", artifact_hash="0" * 64, kind="cae", patch=32, channels=1)


def _pds3(folder: Path) -> tuple[Path, Path]:
    lbl, img = folder / "x.lbl", folder / "x.img"
    lbl.write_text(
        'PDS_VERSION_ID = PDS3\r\n^IMAGE = ("x.img", 1 <BYTES>)\r\nOBJECT = IMAGE\r\n  LINES = 2\r\n'
        "  LINE_SAMPLES = 4\r\n  SAMPLE_BITS = 8\r\nEND_OBJECT = IMAGE\r\nEND\r\n"
    )
    img.write_bytes(bytes(8))
    return lbl, img


def _pds4(folder: Path) -> tuple[Path, Path]:
    xml, dat = folder / "y.xml", folder / "y.dat"
    xml.write_text(
        '<?xml version="1.0"?>\n<Product_Observational xmlns="http://pds.nasa.gov/pds4/pds/v1">'
        "<File_Area_Observational><File><file_name>y.dat</file_name></File></File_Area_Observational>"
        "</Product_Observational>\n"
    )
    dat.write_bytes(bytes(8))
    return xml, dat


def _touch(p: Path, data: bytes) -> None:
    st = p.stat()
    p.write_bytes(data)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a second later, whatever the clock's resolution


@pytest.mark.parametrize("make", [_pds3, _pds4])
def test_a_changed_data_file_sends_its_label_back_to_the_queue(tmp_path: Path, make) -> None:
    label, data = make(tmp_path)
    assert f"{data.name}=" in file_stamp(label) and f"{label.name}=" in file_stamp(data)
    store = ScanStore(tmp_path / "out", ScanConfig(SPEC, stride=32))
    entry = ArchiveEntry(label, label.name)
    store.mark_failed(entry, "ImageReadError: whatever")
    assert store.pending([entry]) == [] and store.changed == []
    _touch(data, bytes(range(8)))  # same size, new content and time: the label alone did not change
    assert store.pending([entry]) == [entry] and store.changed == [label.name]


def test_old_manifests_stamped_the_entry_alone(tmp_path: Path) -> None:
    """A stamp without data files (``size:mtime_ns``) is compared with the entry's own part only."""
    label, data = _pds3(tmp_path)
    store = ScanStore(tmp_path / "out", ScanConfig(SPEC, stride=32))
    st = label.stat()
    line = {"name": "x.lbl", "key": "k", "status": "failed", "error": "e", "stamp": f"{st.st_size}:{st.st_mtime_ns}"}
    store.manifest.write_text(json.dumps(line) + "\n")
    entry = ArchiveEntry(label, "x.lbl")
    assert store.pending([entry]) == []
    _touch(data, bytes(range(8)))  # not stamped then: not compared (no rescan of every old record)
    assert store.pending([entry]) == []
    _touch(label, label.read_bytes().replace(b"LINES = 2", b"LINES = 1"))
    assert store.pending([entry]) == [entry]


def test_plain_images_keep_their_stamp(tmp_path: Path) -> None:
    p = tmp_path / "a.png"
    p.write_bytes(b"\x89PNG")
    st = p.stat()
    assert file_stamp(p) == f"{st.st_size}:{st.st_mtime_ns}" and file_stamp(tmp_path / "gone.png") == ""
