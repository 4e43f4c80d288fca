"""Session 37, review r3 of the archive fixes: a file name that is not UTF-8 turned the folder rule off for an ISIS3
``^Core`` (read from ``../out``), the quality filter's pass over a product ignored the streaming limit (the sparse bomb
was read without end by ``edgeae scan --max-missing``), a ``^QUBE`` or a PDS4 ``<offset>`` into another file's own
label was read as pixels, refusals printed a name that is not UTF-8 as ``\\udce9``, and the GeoTIFF check needed
tifffile, which the ``[archive]`` extra does not install."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

rasterio = pytest.importorskip("rasterio", reason="the archive extra is not installed: pip install 'edgeae[archive]'")

from edgeae.archive import gdal_env  # noqa: E402
from edgeae.archive.reader import ProductReader  # noqa: E402
from edgeae.imageio import ImageReadError  # noqa: E402

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
