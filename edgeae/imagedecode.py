"""The one image-decoding path of flight and ground: header first, size limits, structure checks, then pixels.

``decode_file(path)`` reads the header only (:mod:`edgeae._headers`: PNG IHDR, JPEG SOF, PNM text header,
TIFF tags), refuses a file whose pixel count or decoded size is over :class:`ImageLimits` before anything
is decoded (a 1 KB PNG can claim 30000×30000), checks the structure (PNG chunks up to IEND with their CRCs,
JPEG end-of-image marker, PNM payload size, TIFF segments inside the file), and only then decodes:

- PNG with ``pyspng`` (libspng), JPEG with ``simplejpeg`` (libjpeg-turbo, strict: a damaged scan is refused,
  not grey-filled), PNM with numpy, TIFF with ``tifffile``. These are small (about 2 MB together with
  tifffile) and come with the flight extras, so a board reads PNG/JPEG/TIFF frames without OpenCV;
- OpenCV decodes PNG/JPEG only where ``pyspng``/``simplejpeg`` are not installed.

Every failure, whatever the decoder raised (``cv2.error``, ``RuntimeError``, ``MemoryError`` ...), becomes an
:class:`~edgeae._headers.ImageReadError` naming the file and the reason; one the process's memory caused (a
MemoryError, or a decoder failing while less memory is left than decoding takes, the file intact) is the subclass
:class:`ImageMemoryError`, so a caller can take the file again instead of calling it damaged. A decoder that is not
installed (or fails to import) is no fault of the file: its :class:`~edgeae._optional.MissingDependencyError`, with the
pip line, passes through unchanged (until session 37 it became "the JPEG decoder refused the file", and the flight
dropped every frame for good as ``unreadable``); :func:`missing_decoder` says so before any file is read. Numpy at the
core; decoders are imported lazily. ``edgeae.imageio.read_image`` (ground) and ``edgeae.firmware_sim.frames``
(flight) both decode through here.
"""

from __future__ import annotations

import importlib.util
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeae import _headers
from edgeae._headers import HeaderInfo, ImageReadError
from edgeae._optional import MissingDependencyError, require, tiff_codec_error

__all__ = [
    "FORMAT_DECODERS",
    "SUFFIX_FORMATS",
    "ImageLimits",
    "ImageMemoryError",
    "check_band",
    "check_limits",
    "decode_file",
    "decoder_of",
    "missing_decoder",
    "probe",
]

FORMAT_DECODERS: dict[str, tuple[str, ...]] = {
    "png": ("pyspng", "cv2"),
    "jpeg": ("simplejpeg", "cv2"),
    "tiff": ("tifffile",),
    "pnm": (),  # numpy
}
"""The modules that decode each format, the first installed of them used (OpenCV only where the flight's decoder is
not installed)."""

SUFFIX_FORMATS = {
    ".png": "png",
    **dict.fromkeys((".jpg", ".jpeg"), "jpeg"),
    **dict.fromkeys((".tif", ".tiff"), "tiff"),
    **dict.fromkeys((".pgm", ".ppm", ".pnm"), "pnm"),
}
"""The format of an image file by its suffix (lower case), for a check before the file is read."""


@dataclass(frozen=True)
class ImageLimits:
    """Largest image decoded: ``max_pixels`` (height × width) and ``max_bytes`` (decoded samples).

    The defaults (268 M pixels, 2 GiB) take a NAC-size strip (52,224 × 5,064) and leave room on a 24 GB
    machine; set ``EDGEAE_MAX_IMAGE_PIXELS`` / ``EDGEAE_MAX_IMAGE_BYTES`` to change them for every command.
    """

    max_pixels: int = 1 << 28
    max_bytes: int = 2 << 30

    def __post_init__(self) -> None:
        if self.max_pixels < 1 or self.max_bytes < 1:
            raise ValueError(f"image limits must be positive, got {self.max_pixels} pixels, {self.max_bytes} B")

    @classmethod
    def from_env(cls) -> ImageLimits:
        """The defaults, overridden by ``EDGEAE_MAX_IMAGE_PIXELS`` / ``EDGEAE_MAX_IMAGE_BYTES`` (``1e8``, ``4G``)."""
        kw = {}
        for key, env in (("max_pixels", "EDGEAE_MAX_IMAGE_PIXELS"), ("max_bytes", "EDGEAE_MAX_IMAGE_BYTES")):
            text = os.environ.get(env, "").strip()
            if text:
                kw[key] = _parse_size(text, env)
        return cls(**kw)


def _parse_size(text: str, what: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    t = text.upper().removesuffix("B").removesuffix("I")
    mult = units.get(t[-1:], 1)
    try:
        v = float(t[:-1] if t[-1:] in units else t) * mult
    except ValueError:
        raise ValueError(f"{what}={text!r} is not a size (examples: 1e8, 64M, 2G)") from None
    if not 1 <= v < float("inf"):
        raise ValueError(f"{what}={text!r} must be a positive number")
    return int(v)


def probe(path: str | os.PathLike[str], limits: ImageLimits | None = None) -> HeaderInfo:
    """The header of ``path`` (no pixel decoded), checked for structure and against ``limits``."""
    p = Path(os.fspath(path))
    info = _headers.probe(p)
    check_limits(info, p, limits or ImageLimits.from_env())
    return info


def check_limits(info: HeaderInfo, path: Path, limits: ImageLimits) -> None:
    """Refuse an image whose header claims more than ``limits`` (before decoding: a decompression bomb)."""
    pixels = info.height * info.width
    if pixels > limits.max_pixels:
        raise ImageReadError(
            f"{path}: {info.width}x{info.height} = {pixels:,} pixels is over the limit of {limits.max_pixels:,} "
            "(a decompression bomb or a frame too large to decode whole; set EDGEAE_MAX_IMAGE_PIXELS to raise it)"
        )
    stored = info.samples or info.channels + (1 if info.has_alpha else 0)  # every band of a multiband TIFF
    nbytes = pixels * stored * max(1, -(-info.bit_depth // 8))
    if nbytes > limits.max_bytes:
        raise ImageReadError(
            f"{path}: decoding needs {nbytes:,} B, over the limit of {limits.max_bytes:,} B "
            "(set EDGEAE_MAX_IMAGE_BYTES to raise it)"
        )


def check_band(
    path: Path,
    y0: int,
    y1: int,
    width: int,
    channels: int,
    *,
    itemsize: int = 4,
    what: str = "float32 pixels",
    limits: ImageLimits | None = None,
) -> None:
    """Refuse a read of rows [y0, y1) × ``width`` × ``channels`` samples of ``itemsize`` bytes over
    ``limits.max_bytes``, before it is allocated: a streamed read (:mod:`edgeae.row_bands`) decodes one band of rows
    at a time, and no band may take more than a whole decode may (the float32 band built from it counts, 4 bytes a
    sample). ``max_pixels`` bounds whole decodes only: streaming is how an image over it is read."""
    lim = limits or ImageLimits.from_env()
    nbytes = (y1 - y0) * width * channels * itemsize
    if nbytes > lim.max_bytes:
        raise ImageReadError(
            f"{path}: reading rows {y0}..{y1} takes {nbytes:,} B as {what} ({y1 - y0:,} × {width:,} × {channels} × "
            f"{itemsize} B), over the limit of {lim.max_bytes:,} B for one read (set EDGEAE_MAX_IMAGE_BYTES to "
            "raise it)"
        )


def decode_file(path: str | os.PathLike[str], limits: ImageLimits | None = None) -> tuple[np.ndarray, HeaderInfo]:
    """Decode ``path`` to its stored samples (H, W[, C]) in RGB(A) order, after the header and size checks."""
    p = Path(os.fspath(path))
    info = probe(p, limits)
    try:
        if info.format == "tiff":
            arr = _tiff(p)
        else:
            data = p.read_bytes()
            if info.format == "png":
                _check_png_crcs(p, data)
                arr = _png(p, data, info)
            elif info.format == "jpeg":
                arr = _jpeg(p, data, info)
            else:
                arr = _pnm(p, data, info)
    except (ImageReadError, MissingDependencyError):  # a decoder not installed: the pip line, not a bad file
        raise
    except MemoryError:
        raise ImageMemoryError(f"{p}: out of memory decoding a {info.width}x{info.height} image{_room()}") from None
    except Exception as exc:  # cv2.error, RuntimeError from libspng, ValueError from libjpeg-turbo, ...
        why = f"{type(exc).__name__}: {exc}"
        if _short_of_memory(p, info):  # libspng reports a failed allocation as "invalid argument"
            raise ImageMemoryError(
                f"{p}: out of memory decoding a {info.width}x{info.height} image (the {info.format.upper()} decoder "
                f"failed: {why}; the file's structure is intact){_room()}"
            ) from None
        raise ImageReadError(f"{p}: the {info.format.upper()} decoder refused the file ({why})") from exc
    if arr.shape[:2] != (info.height, info.width):
        raise ImageReadError(
            f"{p}: decoded {arr.shape[1]}x{arr.shape[0]} pixels, the header says {info.width}x{info.height}"
        )
    return arr, info


class ImageMemoryError(ImageReadError):
    """An intact image could not be decoded for want of memory: the decoder failed while the process had less
    memory left than decoding takes, and the file's structure checks out (a PNG's zlib stream inflates to the size
    its header gives). Reading it again with more memory can work: not the file's fault."""


DECODE_SLACK = 16 << 20  # bytes a decoder needs beyond the image and its file (libspng's rows and inflate window)


def _room() -> str:
    """``; N MiB left (which bound)`` for a message: what this process can still get."""
    from edgeae.memory_probe import SOURCE_NAMES, tightest

    found = tightest()
    return "" if found is None else f"; {found[0] / 2**20:,.1f} MiB left ({SOURCE_NAMES.get(found[1], found[1])})"


def _short_of_memory(p: Path, info: HeaderInfo) -> bool:
    """Whether a decoder's failure on ``p`` is more likely the memory than the file (until session 36 an intact
    frame was dropped for good as "the PNG decoder refused the file" when libspng could not allocate): the process
    has less memory left than the decoded samples twice (the decoder's output and the copy made of it), the file
    and :data:`DECODE_SLACK`, and a PNG's compressed stream is intact."""
    from edgeae import memory_probe

    room = memory_probe.available_memory()
    stored = info.samples or info.channels + (1 if info.has_alpha else 0)
    decoded = info.height * info.width * stored * max(1, -(-info.bit_depth // 8))
    try:
        size = p.stat().st_size
    except OSError:
        return False
    if room is None or room >= 2 * decoded + size + DECODE_SLACK:
        return False
    return info.format != "png" or _png_stream_intact(p, info)


def _png_stream_intact(p: Path, info: HeaderInfo) -> bool:
    """Whether the PNG's IDAT chunks hold one complete zlib stream, inflated in 64 KiB pieces (little memory), of
    the size the header gives for a non-interlaced image (an interlaced one: complete and not shorter)."""
    try:
        data = p.read_bytes()
        colour, interlaced = data[25], data[28]
        per_px = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(colour)
        if per_px is None:
            return False
        want = info.height * (1 + -(-info.width * per_px * info.bit_depth // 8))
        inflate, got, pos = zlib.decompressobj(), 0, 8
        while pos + 12 <= len(data):
            (length,) = struct.unpack_from(">I", data, pos)
            kind = data[pos + 4 : pos + 8]
            if kind == b"IDAT":
                chunk = data[pos + 8 : pos + 8 + length]
                while chunk:
                    got += len(inflate.decompress(chunk, 1 << 16))
                    chunk = inflate.unconsumed_tail
            elif kind == b"IEND":
                break
            pos += 12 + length
        got += len(inflate.flush())
    except (MemoryError, zlib.error, IndexError, OSError, struct.error):
        return False
    return inflate.eof and (got == want if not interlaced else got >= want)


def decoder_of(fmt: str) -> str | None:
    """The module :func:`decode_file` decodes ``fmt`` (a :data:`FORMAT_DECODERS` key) with here: the first of its
    decoders installed, else the first (whose import then says what to install); None where numpy decodes it."""
    names = FORMAT_DECODERS[fmt]
    return next((n for n in names if _have(n)), names[0] if names else None)


def missing_decoder(fmt: str) -> MissingDependencyError | None:
    """Why ``fmt`` cannot be decoded here: the :class:`~edgeae._optional.MissingDependencyError` (its pip line) of a
    decoder not installed, found without importing any; None when one is installed (or numpy decodes it)."""
    name = decoder_of(fmt)
    if name is None or _have(name):
        return None
    try:
        require(name)  # not found: fails without importing anything, with the extra to install
    except MissingDependencyError as exc:
        return exc
    return None


def _have(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _check_png_crcs(p: Path, data: bytes) -> None:
    """Every chunk's CRC-32 (libspng is run without them): a flipped bit is refused, not decoded."""
    pos = 8
    while pos + 12 <= len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        end = pos + 12 + length
        if end > len(data):
            raise ImageReadError(f"{p}: truncated PNG (chunk at byte {pos} runs past the end of the file)")
        want = struct.unpack_from(">I", data, end - 4)[0]
        if zlib.crc32(data[pos + 4 : end - 4]) != want:
            ctype = data[pos + 4 : pos + 8].decode("latin-1")
            raise ImageReadError(f"{p}: corrupt PNG (CRC mismatch in the {ctype!r} chunk at byte {pos})")
        if data[pos + 4 : pos + 8] == b"IEND":
            return
        pos = end


def _png(p: Path, data: bytes, info: HeaderInfo) -> np.ndarray:
    if decoder_of("png") == "cv2":
        return _cv2(p, data)
    pyspng = require("pyspng")
    colour = data[25]
    if colour == 4 and info.bit_depth <= 8:
        arr = pyspng.load(data, format="RGBA")  # libspng has no grey+alpha 8-bit output: grey is R
        return np.ascontiguousarray(arr[:, :, [0, 3]])
    arr = pyspng.load(data)
    if info.bit_depth == 16 and colour in (0, 2) and arr.ndim == 3 and arr.shape[2] in (2, 4):
        arr = arr[:, :, :-1]  # pyspng returns 16-bit grey/RGB with an opaque alpha added
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    return np.ascontiguousarray(arr)


def _jpeg(p: Path, data: bytes, info: HeaderInfo) -> np.ndarray:
    if decoder_of("jpeg") == "cv2":
        return _cv2(p, data)
    simplejpeg = require("simplejpeg")
    if info.bit_depth != 8:
        raise ImageReadError(f"{p}: {info.bit_depth}-bit JPEG is not supported (8-bit baseline/progressive only)")
    grey = info.channels == 1
    arr = simplejpeg.decode_jpeg(data, colorspace="GRAY" if grey else "RGB", strict=True)
    return arr[:, :, 0] if grey and arr.ndim == 3 else arr


def _cv2(p: Path, data: bytes) -> np.ndarray:
    cv2 = require("cv2")
    arr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise ImageReadError(f"{p}: OpenCV could not decode the file (corrupt or unsupported encoding)")
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = arr[:, :, ::-1]
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[:, :, [2, 1, 0, 3]]
    return np.ascontiguousarray(arr)


def _pnm(p: Path, data: bytes, info: HeaderInfo) -> np.ndarray:
    """Binary (P5/P6) and plain-text (P2/P3) PGM/PPM, in numpy."""
    (w, h, maxval), offset = _headers._pnm_tokens(data, 3)
    c = 3 if data[1:2] in (b"3", b"6") else 1
    n = w * h * c
    if data[1:2] in (b"5", b"6"):
        dtype = np.dtype(">u2") if maxval >= 256 else np.dtype(np.uint8)
        raw = np.frombuffer(data, dtype=dtype, count=n, offset=offset)
    else:
        body = b" ".join(line.split(b"#")[0] for line in data[offset - 1 :].splitlines())
        raw = np.array(body.split()[:n], dtype=np.int64)
        if raw.size != n or int(raw.max(initial=0)) > maxval:
            raise ImageReadError(f"{p}: plain PNM holds {raw.size} samples up to {maxval}, the header promises {n}")
    out = raw.astype(np.uint16 if maxval >= 256 else np.uint8).reshape(h, w, c)
    return out[:, :, 0] if c == 1 else out


def _tiff(p: Path) -> np.ndarray:
    tifffile = require("tifffile")
    try:
        with tifffile.TiffFile(p) as tif:
            series = tif.series[0]
            level = series.levels[0] if getattr(series, "levels", None) else series
            arr = np.asarray(level.asarray())
            axes = level.axes.upper()
    except ImageReadError:
        raise
    except Exception as exc:  # tifffile raises many types for broken files
        codec = tiff_codec_error(p, exc)  # a codec that needs imagecodecs: the pip line, not a bad file
        if codec is not None:
            raise codec from exc
        raise ImageReadError(f"{p}: not a readable TIFF ({type(exc).__name__}: {exc})") from exc
    if axes in ("YX", "YXS"):
        return arr
    if axes == "SYX":
        return np.moveaxis(arr, 0, -1)
    raise ImageReadError(
        f"{p}: TIFF series has axes {axes!r} and shape {arr.shape}; only single 2-D grey/RGB images "
        "(optionally pyramidal) are supported"
    )
