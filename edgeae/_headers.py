"""Header-only probing of image files: format, size, channels, bit depth, and structural integrity.

OpenCV returns None (or a partially decoded image) for truncated files without saying why, so every
file is checked here first: PNG chunks must reach IEND, JPEG must end with the EOI marker, a binary
PNM must hold its full payload, and TIFF strips/tiles must lie inside the file.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeae._optional import require

READ_EXTENSIONS = (".png", ".jpg", ".jpeg", ".pgm", ".ppm", ".pnm", ".tif", ".tiff")
# planetary products, read through GDAL (edgeae.archive): labels, data files opened through the label of the
# same stem beside them, and every suffix only GDAL reads (.xml only when it is a PDS4 label)
ARCHIVE_LABEL_SUFFIXES = (".lbl", ".xml", ".lblx")
ARCHIVE_DATA_SUFFIXES = (".img", ".dat", ".fits", ".fit", ".qub")
ARCHIVE_SUFFIXES = (".img", ".lbl", ".cub", ".xml", ".lblx", ".vic", ".jp2", ".j2k", ".jpx", ".qub")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF


class ImageReadError(ValueError):
    """An image file is missing, empty, truncated, corrupt or of an unsupported kind (message names it)."""


class ImageMissingError(ImageReadError, FileNotFoundError):
    """The image file does not exist: a usage error (a wrong path), where the others are data errors."""


@dataclass(frozen=True)
class HeaderInfo:
    """What the header says: format ('png'|'jpeg'|'pnm'|'tiff'), size, channels without alpha, bit depth."""

    format: str
    height: int
    width: int
    channels: int
    bit_depth: int
    has_alpha: bool = False
    significant_bits: int | None = None  # PNG sBIT: fewer meaningful bits than stored
    # TIFF: the samples per pixel stored (0: channels + alpha), the sample indices read as the channels (empty: the
    # first ``channels``) and the alpha sample (ExtraSamples 1/2; None: the last one when ``has_alpha``). A
    # multiband TIFF (ExtraSamples 0 or absent, what tifffile and GDAL write) stores more bands than it reads
    samples: int = 0
    read_samples: tuple[int, ...] = ()
    alpha_sample: int | None = None
    planar: bool = False  # TIFF PlanarConfiguration 2: tifffile.imread gives (S, H, W), not (H, W, S)

    @property
    def bands(self) -> int:
        """Image bands stored (alpha not counted): more than ``channels`` for a multiband TIFF."""
        return (self.samples - (1 if self.has_alpha else 0)) if self.samples else self.channels

    def band_note(self) -> str | None:
        """What is read of a multiband TIFF, and how to read another band (None when every band is read)."""
        if self.bands <= self.channels:
            return None
        read = "bands 1-3 are read as RGB (its photometric interpretation)" if self.channels == 3 else "band 1 is read"
        index = "[N - 1]" if self.planar else "[..., N - 1]"  # the band axis as tifffile.imread returns it
        # a bit depth the samples do not show (12-bit counts in 16-bit samples: MaxSampleValue) goes with the band
        tag = f", extratags=[(281, 3, 1, {2**self.bit_depth - 1}, False)]" if 8 < self.bit_depth < 16 else ""
        return (
            f"{self.bands} bands in the TIFF; {read}, as for a planetary product with several bands (for band N, "
            f"extract it first: `python -c \"import tifffile; tifffile.imwrite('band_N.tif', "
            f"tifffile.imread('FILE'){index}{tag})\"`; it reads the whole file)"
        )


def check_sample_type(dtype: Any, p: Path | str) -> None:
    """The one sample-type rule of every reader: unsigned 8/16/32-bit integers or floats, else refused naming ``p``.

    Signed counts cannot be divided by 2**bits - 1 into [0, 1] (negative values), nor 1-bit masks read as images."""
    if dtype.kind == "f" or (dtype.kind == "u" and dtype.itemsize in (1, 2, 4)):
        return
    why = {"b": "1-bit bilevel", "i": "signed", "c": "complex"}.get(dtype.kind, "not an image sample type")
    raise ImageReadError(
        f"{p}: unsupported sample type {dtype} ({why}; expected uint8/16/32 or float): store unsigned counts "
        "(12-bit as uint16 with MaxSampleValue 4095) or floats in [0, 1]"
    )


def sniff(head: bytes) -> str | None:
    """Format name from the first bytes of a file, or None."""
    if head.startswith(PNG_SIGNATURE):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] in TIFF_SIGNATURES:
        return "tiff"
    if len(head) >= 3 and head[:1] == b"P" and head[1:2] in b"2356" and head[2:3].isspace():
        return "pnm"
    return None


def probe(p: Path) -> HeaderInfo:
    """Check that ``p`` exists, is a supported, structurally complete image, and return its header."""
    if not p.exists():
        raise ImageMissingError(f"{p}: no such file")
    if p.is_dir():
        raise ImageReadError(f"{p}: is a directory, not an image file")
    ext = p.suffix.lower()
    if ext not in READ_EXTENSIONS:
        if ext in ARCHIVE_DATA_SUFFIXES:
            raise ImageReadError(
                f"{p}: a planetary data file ({ext}) is read through its label, and its label was not found "
                f"(no {p.stem}.lbl / .xml / .lblx beside it)"
            )
        planetary = ", ".join(dict.fromkeys(ARCHIVE_SUFFIXES + ARCHIVE_DATA_SUFFIXES))
        note = " (an .xml only when it is a PDS4 label)" if ext == ".xml" else ""
        raise ImageReadError(
            f"{p}: unsupported file type {ext or '(no extension)'!r}; supported: {', '.join(READ_EXTENSIONS)}, "
            f"and planetary products through GDAL (pip install 'edgeae[archive]'): {planetary}{note}"
        )
    size = p.stat().st_size
    if size == 0:
        raise ImageReadError(f"{p}: file is empty (0 bytes)")
    with open(p, "rb") as fh:
        head = fh.read(16)
    fmt = sniff(head)
    if fmt is None:
        raise ImageReadError(f"{p}: not a PNG, JPEG, PNM or TIFF file (starts with {head[:8]!r})")
    if fmt == "png":
        return _probe_png(p, size)
    if fmt == "jpeg":
        return _probe_jpeg(p, size)
    if fmt == "pnm":
        return _probe_pnm(p, size)
    return _probe_tiff(p, size)


def _probe_png(p: Path, size: int) -> HeaderInfo:
    with open(p, "rb") as fh:
        fh.seek(8)
        hdr = fh.read(25)
        if len(hdr) < 25 or hdr[4:8] != b"IHDR":
            raise ImageReadError(f"{p}: truncated PNG (no complete IHDR header)")
        width, height, depth, colour = struct.unpack(">IIBB", hdr[8:18])
        pos, sig_bits, seen_end = 8, 0, False
        while pos + 8 <= size:
            fh.seek(pos)
            length, ctype = struct.unpack(">I4s", fh.read(8))
            if ctype == b"sBIT":
                sig_bits = max(fh.read(min(length, 4)) or b"\x00")
            pos += 12 + length
            if ctype == b"IEND":
                seen_end = pos <= size
                break
    if not seen_end:
        raise ImageReadError(f"{p}: truncated PNG (file ends before the IEND chunk; {size} bytes)")
    if width == 0 or height == 0:
        raise ImageReadError(f"{p}: PNG header gives an empty image ({width}x{height})")
    channels = {0: 1, 2: 3, 3: 3, 4: 1, 6: 3}.get(colour)
    if channels is None:
        raise ImageReadError(f"{p}: corrupt PNG header (colour type {colour})")
    bits = 16 if depth == 16 else 8
    sig = sig_bits if bits == 16 and 8 < sig_bits < 16 else None
    return HeaderInfo("png", height, width, channels, bits, has_alpha=colour in (4, 6), significant_bits=sig)


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _probe_jpeg(p: Path, size: int) -> HeaderInfo:
    with open(p, "rb") as fh:
        fh.seek(max(0, size - 64))
        tail = fh.read().rstrip(b"\x00\r\n\t ")
        if not tail.endswith(b"\xff\xd9"):
            raise ImageReadError(f"{p}: truncated JPEG (no end-of-image marker FFD9 at the end of the file)")
        fh.seek(2)
        while True:
            b = fh.read(1)
            while b == b"\xff":
                b = fh.read(1)
            if not b:
                raise ImageReadError(f"{p}: corrupt JPEG (no frame header before the end of the file)")
            marker = b[0]
            if marker in (0x01, *range(0xD0, 0xD8)):
                continue
            seg = fh.read(2)
            if len(seg) < 2:
                raise ImageReadError(f"{p}: truncated JPEG header")
            (length,) = struct.unpack(">H", seg)
            if marker in _SOF:
                body = fh.read(6)
                if len(body) < 6:
                    raise ImageReadError(f"{p}: truncated JPEG frame header")
                precision, height, width, ncomp = struct.unpack(">BHHB", body)
                if height == 0 or width == 0:
                    raise ImageReadError(f"{p}: JPEG frame header gives an empty image ({width}x{height})")
                return HeaderInfo("jpeg", height, width, 1 if ncomp == 1 else 3, precision)
            if marker == 0xDA:
                raise ImageReadError(f"{p}: corrupt JPEG (scan data before any frame header)")
            fh.seek(length - 2, 1)


def _pnm_tokens(data: bytes, count: int) -> tuple[list[int], int]:
    """First ``count`` integer tokens of a PNM header (skipping comments) and the offset after them."""
    tokens: list[int] = []
    i = 2
    while len(tokens) < count:
        while i < len(data) and (data[i : i + 1].isspace() or data[i : i + 1] == b"#"):
            if data[i : i + 1] == b"#":
                while i < len(data) and data[i : i + 1] not in (b"\n", b"\r"):
                    i += 1
            else:
                i += 1
        j = i
        while j < len(data) and data[j : j + 1].isdigit():
            j += 1
        if j == i:
            raise ValueError("bad header")
        tokens.append(int(data[i:j]))
        i = j
    return tokens, i + 1  # one whitespace byte separates the header from binary data


def _probe_pnm(p: Path, size: int) -> HeaderInfo:
    with open(p, "rb") as fh:
        data = fh.read(4096)
    kind = data[1:2]
    try:
        (width, height, maxval), offset = _pnm_tokens(data, 3)
    except ValueError:
        raise ImageReadError(f"{p}: corrupt or truncated PNM header") from None
    if width == 0 or height == 0 or not 0 < maxval < 65536:
        raise ImageReadError(f"{p}: invalid PNM header ({width}x{height}, maxval {maxval})")
    channels = 3 if kind in (b"3", b"6") else 1
    if kind in (b"5", b"6"):
        need = offset + width * height * channels * (1 if maxval < 256 else 2)
        if size < need:
            raise ImageReadError(f"{p}: truncated PNM ({size} bytes, header promises {need})")
    bits = max(8, math.ceil(math.log2(maxval + 1))) if maxval >= 256 else 8
    return HeaderInfo("pnm", height, width, channels, bits)


def _probe_tiff(p: Path, size: int) -> HeaderInfo:
    tifffile = require("tifffile")
    try:
        with tifffile.TiffFile(p) as tif:
            if not tif.series:
                raise ImageReadError(f"{p}: TIFF holds no image")
            series = tif.series[0]
            level = series.levels[0] if getattr(series, "levels", None) else series
            page = level.keyframe
            shape, axes = tuple(level.shape), level.axes.upper()
            for pg in level.pages:
                if pg is None:
                    continue
                for off, cnt in zip(pg.dataoffsets, pg.databytecounts, strict=False):
                    if cnt and off + cnt > size:
                        raise ImageReadError(
                            f"{p}: truncated TIFF (image data runs to byte {off + cnt}, file has {size})"
                        )
            bits = int(page.bitspersample)
            maxval = page.tags.valueof(281)  # MaxSampleValue, e.g. 4095 for 12-bit data stored in 16
            photometric = int(page.photometric)
            extras = tuple(int(e) for e in page.extrasamples) if page.extrasamples else ()
            dtype = page.dtype
    except ImageReadError:
        raise
    except Exception as exc:  # tifffile raises many types for broken files
        raise ImageReadError(f"{p}: not a readable TIFF ({type(exc).__name__}: {exc})") from exc
    if photometric == 3:
        raise ImageReadError(f"{p}: palette (colour-mapped) TIFF is not supported; store grey or RGB")
    if axes in ("YX",):
        h, w, c = shape[0], shape[1], 1
    elif axes == "YXS":
        h, w, c = shape
    elif axes == "SYX":
        c, h, w = shape
    else:
        raise ImageReadError(
            f"{p}: TIFF series has axes {axes!r} and shape {shape}; only single 2-D grey/RGB images "
            "(optionally pyramidal) are supported"
        )
    if dtype is None:
        raise ImageReadError(f"{p}: unsupported TIFF sample format ({bits} bits per sample)")
    check_sample_type(dtype, p)
    read, alpha = _tiff_samples(int(c), photometric, extras)
    if isinstance(maxval, (int, tuple)) and bits == 16:
        mv = max(maxval) if isinstance(maxval, tuple) else maxval
        if 0 < mv < 65535:
            bits = max(8, math.ceil(math.log2(mv + 1)))
    planar = axes == "SYX"
    return HeaderInfo("tiff", int(h), int(w), len(read), bits, alpha is not None, None, int(c), read, alpha, planar)


def _tiff_samples(c: int, photometric: int, extras: tuple[int, ...]) -> tuple[tuple[int, ...], int | None]:
    """The sample indices read as channels (1 grey or 3 RGB) and the alpha sample of a TIFF pixel of ``c`` samples.

    Only an extra sample marked associated or unassociated alpha (ExtraSamples 1, 2) is alpha; unspecified ones (0,
    or no ExtraSamples tag) are bands, except the 4th sample of an RGB pixel of exactly 4 samples without the tag
    (what OpenCV writes for BGRA), which is alpha as libtiff's RGBA reader and Pillow take it. Every band is read when
    there are 1 or 3 (as for a planetary product), the first three of an RGB image with more, else band 1
    (:meth:`HeaderInfo.band_note` says so)."""
    base = max(1, c - len(extras))  # the colour samples come first, then the extra samples
    alpha = next((base + i for i, e in enumerate(extras) if e in (1, 2) and base + i < c), None)
    if photometric == 2 and c == 4 and not extras:  # cv2.imwrite of BGRA: RGB + alpha, no ExtraSamples tag
        alpha = 3
    bands = tuple(i for i in range(c) if i != alpha)
    if photometric == 2 and len(bands) > 3:
        return bands[:3], alpha
    return (bands if len(bands) in (1, 3) else bands[:1]), alpha
