"""Session 40 (review r4 #1): without imagecodecs (the flight extras do not install it) tifffile inflates deflate and
LZMA with the standard library and PackBits in Python, each to whatever the data holds: a 65 KB TIFF strip within
the byte-count bound held 142-566 MiB. Each such segment's decoded size is now found first, holding at most the
segment's bytes, and a segment that would decode to more is refused (an LZMA one with imagecodecs too: it took a bomb's
first bytes as the strip)."""

from __future__ import annotations

import lzma
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

tifffile = pytest.importorskip("tifffile")


def _bomb(path: Path, compression: str, payload: bytes) -> Path:
    """A one-strip 16 x 64 TIFF whose strip is ``payload`` (its offset and byte count patched to it)."""
    tifffile.imwrite(path, np.zeros((16, 64), np.uint8), compression=compression, rowsperstrip=16)
    with tifffile.TiffFile(path) as tf:
        page, bo = tf.pages[0], tf.byteorder
        tags = {code: (page.tags[code].valueoffset, page.tags[code].dtype) for code in (273, 279)}
    off = path.stat().st_size
    with open(path, "ab") as fh:
        fh.write(payload)
    fmt = {3: "H", 4: "I", 16: "Q"}
    with open(path, "r+b") as fh:
        for code, value in ((273, off), (279, len(payload))):
            where, dtype = tags[code]
            fh.seek(where)
            fh.write(struct.pack(bo + fmt[int(dtype)], value))
    return path


@pytest.mark.parametrize("imagecodecs", [True, False])
@pytest.mark.parametrize(
    ("compression", "payload"),
    [
        ("zlib", zlib.compress(bytes(16 << 20), 9)),  # 16 KiB of deflate: 16 MiB of zeros
        ("lzma", lzma.compress(bytes(16 << 20))),
        ("packbits", bytes([129, 0]) * 30000),  # runs of 128 zeros: 3.8 MB from 60 KB
    ],
)
def test_a_strip_that_decodes_to_more_than_its_samples_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compression: str, payload: bytes, imagecodecs: bool
) -> None:
    from edgeae.firmware_sim import frame_tiff
    from edgeae.firmware_sim.frames import FrameError

    if imagecodecs:
        pytest.importorskip("imagecodecs")
    else:
        monkeypatch.setattr(frame_tiff, "_has_imagecodecs", lambda: False)
    path = _bomb(tmp_path / f"{compression}.tif", compression, payload)
    frame = frame_tiff.TiffFrame(path)
    if compression == "zlib" and imagecodecs:  # libdeflate decodes into the segment's buffer: its own refusal
        with pytest.raises(FrameError):
            list(frame.strips(16))
        return
    with pytest.raises(FrameError, match="decompresses to more than its 1,024 bytes of samples"):
        list(frame.strips(16))


@pytest.mark.parametrize("compression", ["zlib", "lzma", "packbits"])
def test_a_valid_strip_is_read_as_tifffile_reads_it_without_imagecodecs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compression: str
) -> None:
    from edgeae.firmware_sim import frame_tiff

    monkeypatch.setattr(frame_tiff, "_has_imagecodecs", lambda: False)
    a = np.random.default_rng(0).integers(0, 4, (100, 300), np.uint8) * 60
    path = tmp_path / "f.tif"
    tifffile.imwrite(path, a, compression=compression, rowsperstrip=32)
    got = np.concatenate([s.copy() for _, s in frame_tiff.TiffFrame(path).strips(32)])  # strips reuse a buffer
    assert np.array_equal(got[..., 0], tifffile.imread(path))


def test_an_lzma_strip_stating_a_huge_dictionary_is_refused(tmp_path: Path) -> None:
    from edgeae.firmware_sim import frame_tiff
    from edgeae.firmware_sim.frames import FrameError

    payload = lzma.compress(bytes(1024), preset=9)  # its decoder needs 65 MiB
    path = _bomb(tmp_path / "l.tif", "lzma", payload)
    with pytest.raises(FrameError, match="do not decompress"):
        list(frame_tiff.TiffFrame(path).strips(16))
