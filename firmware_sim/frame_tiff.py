"""TIFF frames (BigTIFF, tiled or stripped), read and decoded a tile or strip at a time with ``tifffile``: memory holds
one band of tiles (or a strip) with the bytes it was decoded from, plus one output strip, independent of the frame size.

Every size the file states is bounded before anything is allocated for it (review r2 of session 40, fixer h9): a tile
is at most 2 bands' worth of the image (or 1 MiB), a segment's byte count at most what any encoding of its samples
needs and never past the end of the file, and only compressions whose decoded size the TIFF's header bounds are taken
(none, LZW, deflate, PackBits, LZMA, ZSTD; JPEG and PNG after their own header's size is checked against the segment's).
Segments are read in index order (rows top to bottom, whatever order the file stores them in) and each is checked
against the rows it should hold. A damaged file is refused with a :class:`FrameError` naming the file and what is wrong.
"""

from __future__ import annotations

import functools
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgeae._optional import require

from .frame_types import FrameError, FrameHeader, FrameMemoryError

# compressions whose decoded size the TIFF's header bounds (tifffile decodes them into the segment's shape), and the
# two whose own header states it (checked against the segment's before decoding: :func:`_embedded_size`)
BOUNDED_COMPRESSIONS = {1: "none", 5: "LZW", 8: "deflate", 32946: "deflate", 32773: "PackBits", 34925: "LZMA"}
BOUNDED_COMPRESSIONS |= {50000: "ZSTD", 34926: "ZSTD", 7: "JPEG", 34933: "PNG"}
_MIB = 1 << 20


# Without imagecodecs (the flight extras do not install it) tifffile inflates deflate and LZMA with the standard library
# and PackBits in Python, each to whatever the data holds: a 65 KB deflate strip held 142-566 MiB, a 2 MB one raised
# MemoryError at 2 GiB (review r4 #1 of session 40); imagecodecs decodes into the segment's own buffer. Without it
# each such segment's decoded size is found first, within the segment's bytes (``max_length``; PackBits by its run
# headers), and a segment that would decode to more is refused. LZMA and PackBits are checked with imagecodecs too:
# it decoded an LZMA bomb's first bytes into the segment's buffer and took the strip as good.
_CAPPED = (8, 32946, 34925, 32773)
LZMA_MEMLIMIT = 40 << 20


@functools.cache  # asked per segment: a failed import would search the path again each time
def _has_imagecodecs() -> bool:
    try:
        import imagecodecs  # noqa: F401
    except ImportError:
        return False
    return True


def _check_inflated(data: bytes, compression: int, limit: int, what: str) -> None:
    """Refuse a deflate, LZMA or PackBits segment that decodes to more than ``limit`` bytes, holding at most ``limit``
    + 1 of its output while finding out (PackBits: none, its run headers give the size)."""
    import lzma
    import zlib

    if compression == 32773:
        n, i, end = 0, 0, len(data)
        while i < end and n <= limit:
            b = data[i]
            n, i = (n + b + 1, i + b + 2) if b < 128 else (n + 257 - b, i + 2) if b > 128 else (n, i + 1)
    else:
        try:
            # LZMA's dictionary is the stream's to state: its decoder held to 40 MiB (presets 0-8; 9 needs 65 MiB)
            d = zlib.decompressobj() if compression in (8, 32946) else lzma.LZMADecompressor(memlimit=LZMA_MEMLIMIT)
            n = len(d.decompress(data, limit + 1))
        except (zlib.error, lzma.LZMAError) as exc:
            raise FrameError(f"{what}: its {len(data):,} bytes do not decompress ({exc})") from None
    if n > limit:
        raise FrameError(f"{what} decompresses to more than its {limit:,} bytes of samples (a damaged file)")


def _up16(n: int) -> int:
    return -(-n // 16) * 16


def _embedded_size(data: bytes, compression: int) -> tuple[int, int] | None:
    """(rows, columns) a JPEG (its SOF) or PNG (its IHDR) segment decodes to, by its own header; None if not found."""
    if compression == 34933:
        if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
            return None
        return int.from_bytes(data[20:24], "big"), int.from_bytes(data[16:20], "big")
    i = 2 if data[:2] == b"\xff\xd8" else len(data)
    while i + 9 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF or marker == 0x01 or 0xD0 <= marker <= 0xD8:  # fill byte, markers without a length
            i += 1 if marker == 0xFF else 2
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # a start of frame
            return int.from_bytes(data[i + 5 : i + 7], "big"), int.from_bytes(data[i + 7 : i + 9], "big")
        if marker == 0xDA:  # scan data before any frame header
            return None
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return None


class TiffFrame:
    """Streams the first page of a (Big)TIFF in row strips without reading the whole image."""

    def __init__(self, path: Path) -> None:
        tifffile = require("tifffile")
        self.path = path
        try:
            with tifffile.TiffFile(path) as tf:
                page = tf.pages[0]
                shape, shaped, dtype = page.shape, page.shaped, np.dtype(page.dtype)
                planar, spp, compression = int(page.planarconfig), int(page.samplesperpixel), int(page.compression)
                self.tiled = bool(page.is_tiled)
                seg_rows = int(page.tilelength if self.tiled else page.rowsperstrip or 1 << 62)
                seg_width = int(page.tilewidth if self.tiled else page.imagewidth)
                self.file_size = int(tf.filehandle.size)
                # tifffile copies a segment decoded in another byte order, or float-predicted, to native samples
                # (each a copy: a big-endian float-predicted segment is copied twice, 1.01 times what one stated)
                copied = int(tf.byteorder != "<" and dtype.itemsize > 1) + int(int(page.predictor) == 3)
                # and unpacks bit-packed samples (12-bit, 1-bit) into a new array: the reader held 1.8 and 2.4 times
                # what it stated without this (review r4 #2 of session 40)
                packed = int(page.bitspersample) % 8 != 0
                counts = [int(n) for n in page.databytecounts]
                # a pyramid's reduced levels (SubIFDs, reduced-resolution pages) are not frames
                n_pages = sum(1 for pg in tf.pages if not getattr(pg, "is_reduced", False))
        except Exception as exc:  # tifffile raises many types for damaged files
            raise FrameError(f"{path}: not a readable TIFF ({type(exc).__name__}: {exc})") from exc
        if n_pages != 1:  # page 0 alone would drop the others without a word
            raise FrameError(f"{path}: a TIFF of {n_pages} pages; firmware-sim takes one frame per file")
        if planar == 2 and spp > 1:  # until session 40 (fixer h9) one of width 3 passed as 3 rows of H columns
            raise FrameError(f"{path}: TIFF samples stored planar-separate ({spp} planes); want contiguous (H×W×C)")
        if shaped[0] != 1 or shaped[1] != 1 or shaped[4] not in (1, 3):
            raise FrameError(f"{path}: unsupported TIFF layout {shape} (want H×W or H×W×C, contiguous)")
        h, w, c = int(shaped[2]), int(shaped[3]), int(shaped[4])
        self.header = FrameHeader(str(path), h, w, c, dtype)
        from edgeae.imagedecode import ImageLimits

        limits = ImageLimits.from_env()
        if h * w > limits.max_pixels:  # streamed, but a header claiming billions of pixels is still refused
            raise FrameError(
                f"{path}: {h} x {w} px (height x width) is over the limit of {limits.max_pixels:,} pixels "
                "(EDGEAE_MAX_IMAGE_PIXELS)"
            )
        if compression not in BOUNDED_COMPRESSIONS:
            raise FrameError(
                f"{path}: TIFF compression {compression} is not accepted on board: its decoded size is not bounded "
                f"by the TIFF's header (accepted: {', '.join(sorted(set(BOUNDED_COMPRESSIONS.values())))})"
            )
        self.compression = compression
        # the rows a band of tiles (or a TIFF strip) holds: what :meth:`_bands` decodes at a time
        self.band_rows = min(seg_rows, h)
        px_bytes = c * dtype.itemsize
        # a decoded segment's samples: a tile is decoded whole, however far it reaches past the image
        self.segment_bytes = (seg_rows if self.tiled else self.band_rows) * seg_width * px_bytes
        if self.tiled and self.segment_bytes > max(_MIB, 2 * _up16(self.band_rows) * _up16(w) * px_bytes):
            raise FrameError(
                f"{path}: TIFF tiles of {seg_rows} x {seg_width} px for a {h} x {w} px image: a decoded tile would "
                f"hold {self.segment_bytes / _MIB:.1f} MiB, over 2 bands of the image"
            )
        # the most bytes a segment may state: LZW's worst case is 1.5 times its samples, JPEG's about 3.4
        self.max_segment_bytes = 4 * self.segment_bytes + (1 << 16)
        if counts and max(counts) > self.max_segment_bytes:
            i = counts.index(max(counts))
            raise FrameError(
                f"{path}: TIFF {'tile' if self.tiled else 'strip'} {i} states {counts[i]:,} bytes, more than any "
                f"encoding of its {self.segment_bytes:,} bytes of samples needs (a damaged file)"
            )
        # the most bytes a segment is read as: what it states, within the file
        self.read_bytes = min(max(counts, default=0), self.file_size)
        # what reading holds beside the output strip: a tiled TIFF's band, a segment's bytes, the segment decoded from
        # them (uncompressed: a view of them) and the native copy of it; the decoders' own buffers: up to 1/8 of a
        # segment and 64 KiB (tracemalloc peaks, tests/test_firmware_frames_s40_h9.py)
        decoded = (compression != 1) + copied + packed + 1 / 8
        held = self.tiled * self.band_rows * w * px_bytes + self.read_bytes + decoded * self.segment_bytes
        self.reader_bytes = int(held) + (1 << 16)
        self._seg = (seg_rows, seg_width)

    def strips(self, strip_rows: int) -> Iterator[tuple[int, np.ndarray]]:
        h, w, c = self.header.height, self.header.width, self.header.channels
        out = np.empty((strip_rows, w, c), self.header.dtype)
        row0 = filled = 0
        bands = self._read_bands()
        try:
            for band in bands:
                done = 0
                while done < band.shape[0]:
                    take = min(strip_rows - filled, band.shape[0] - done)
                    out[filled : filled + take] = band[done : done + take]
                    filled += take
                    done += take
                    if filled == strip_rows:
                        yield row0, out
                        row0, filled = row0 + strip_rows, 0
                del band  # not held while the next is read
        finally:  # stopped early (a dropped frame) or failed: the file is closed now, not when garbage is collected
            bands.close()
        if filled:
            yield row0, out[:filled]
        if row0 + filled != h:
            raise FrameError(f"{self.path}: TIFF delivered {row0 + filled} rows, header says {h}")

    def _read_bands(self) -> Generator[np.ndarray, None, None]:
        """:meth:`_bands`, a damaged file's read errors (truncated, corrupt tiles: tifffile raises many types)
        raised as :class:`FrameError` naming the file, so the loop drops the frame as ``unreadable``; the
        TiffFile is closed on every way out."""
        bands = self._bands()
        try:
            while True:
                failure, short = "", False
                try:
                    band = next(bands)
                except StopIteration:
                    return
                except (FrameError, MemoryError):  # every size is bounded by the header: memory is short, truly
                    raise
                except Exception as exc:
                    from .memory_room import is_out_of_memory

                    failure = f"{self.path}: TIFF data unreadable ({type(exc).__name__}: {exc})"
                    short = is_out_of_memory(exc)  # tifffile's decoder threads that could not start, ...
                if failure:  # raised outside the handler: chained to tifffile's error, its traceback would keep this
                    # reader's frames (band buffers, TiffFile) alive after the drop
                    if short:
                        raise FrameMemoryError(failure.replace("TIFF data unreadable", "out of memory reading a TIFF"))
                    raise FrameError(failure)
                yield band
                del band  # not held while the next is read (a strip is the decoded segment itself)
        finally:
            bands.close()

    def _segment(self, fh: Any, i: int, offset: int, count: int) -> bytes:
        """Segment ``i``'s bytes, every size checked first (a damaged file: :class:`FrameError`)."""
        what = f"{self.path}: TIFF {'tile' if self.tiled else 'strip'} {i}"
        if offset <= 0 or count <= 0:  # tifffile would fill it with no-data: not a camera's frame
            raise FrameError(f"{what} has no data (offset {offset}, {count} bytes: a sparse TIFF)")
        if offset >= self.file_size:
            raise FrameError(f"{what} starts at byte {offset:,}, past the end of the {self.file_size:,}-byte file")
        fh.seek(offset)
        data: bytes = fh.read(min(count, self.file_size - offset))  # read(n) allocates n bytes first
        if self.compression in _CAPPED and (self.compression not in (8, 32946) or not _has_imagecodecs()):
            _check_inflated(data, self.compression, self.segment_bytes, what)
        if self.compression in (7, 34933):  # JPEG, PNG: decoded to the size their own header states
            size, (rows, width) = _embedded_size(data, self.compression), self._seg
            bound = (rows if self.tiled else _up16(min(rows, self.header.height)), _up16(width))
            if size is None or not (0 < size[0] <= bound[0] and 0 < size[1] <= bound[1]):
                raise FrameError(f"{what} is an image of {size or 'unknown'} px (rows, columns), over its {bound}")
        return data

    def _bands(self) -> Generator[np.ndarray, None, None]:
        """Complete rows of tiles (or strips), top to bottom, each (rows, W, C). Segments are read in index order (a
        file may store them in any order: until session 40, fixer h9, they were read in file order and handed over as
        they came, rows scrambled), each alone, its bytes dropped before the next is read; a strip is handed over as
        decoded (the plan's ``reader_band``)."""
        tifffile = require("tifffile")
        h, w, c = self.header.height, self.header.width, self.header.channels
        (seg_rows, seg_width), rows = self._seg, self.band_rows
        across = -(-w // seg_width) if self.tiled else 1
        n = -(-h // rows) * across
        with tifffile.TiffFile(self.path) as tf:
            page, fh = tf.pages[0], tf.filehandle
            decode, args = page.decode, dict[str, Any]()
            if page.compression in (6, 7, 33007, 34892):  # JPEG: the tables its segments share
                args.update(jpegtables=page.jpegtables, jpegheader=page.jpegheader)
            offsets, counts = page.dataoffsets, page.databytecounts
            if min(len(offsets), len(counts)) < n:
                raise FrameError(f"{self.path}: TIFF states {len(offsets)} segments, its {h} x {w} px need {n}")
            band = np.empty((rows, w, c), self.header.dtype) if self.tiled else None
            for i in range(n):
                data: bytes | None = self._segment(fh, i, int(offsets[i]), int(counts[i]))
                seg, idx, _shape = decode(data, i, **args)
                data = None  # a decoded segment may be a view of it: dropped with the segment
                y, x, want_y, want_x = int(idx[2]), int(idx[3]), i // across * seg_rows, i % across * seg_width
                seg = seg.reshape(seg.shape[-3:])  # (rows, columns, C)
                need = (min(rows, h - y), min(seg_width, w - x), c)
                if (int(idx[0]), int(idx[1]), y, x) != (0, 0, want_y, want_x) or any(map(int.__lt__, seg.shape, need)):
                    raise FrameError(
                        f"{self.path}: TIFF segment {i} decoded as {seg.shape} at {tuple(idx[:4])}, want {need} at "
                        f"(0, 0, {want_y}, {want_x})"
                    )
                if band is None:  # a strip spans the width: no band to assemble
                    yield seg[: need[0], :w, :c]
                else:
                    band[: need[0], x : x + need[1]] = seg[: need[0], : need[1], :c]
                    if i % across == across - 1:
                        yield band[: need[0]]
                seg = None
