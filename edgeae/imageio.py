"""Read real planetary images (PNG, JPEG, PGM/PPM, TIFF/BigTIFF) keeping their bit depth (writing: imagewrite).

Pixels come back as float32 (H, W, C) in [0, 1] together with the divisor that produced them
(``scale``: 255, 4095, 65535, ...), the stored dtype and bit depth, and a no-data validity mask.
Decoding goes through :mod:`edgeae.imagedecode`, the one path the flight runtime uses too: the header
is read first and a file claiming more than ``ImageLimits`` pixels/bytes is refused before decoding (a
decompression bomb), the structure is checked (PNG chunks and CRCs up to IEND, JPEG EOI marker, PNM payload
size, TIFF segment offsets), then pyspng / simplejpeg / numpy / tifffile decode (OpenCV where the first two
are absent); any decoder error becomes an :class:`ImageReadError` naming the file.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeae import _headers
from edgeae._headers import ImageReadError
from edgeae.imagedecode import ImageLimits, decode_file
from edgeae.imagewrite import WRITE_EXTENSIONS as WRITE_EXTENSIONS
from edgeae.imagewrite import write_image as write_image
from edgeae.nodata import Margin, across_channels, margin_mask, nodata_mask, valid_mask

log = logging.getLogger(__name__)

__all__ = [
    "READ_EXTENSIONS",
    "WRITE_EXTENSIONS",
    "ImageData",
    "ImageLimits",
    "ImageReadError",
    "convert_channels",
    "image_shape",
    "read_image",
    "read_raw",
    "to_float",
    "write_image",
]

READ_EXTENSIONS = _headers.READ_EXTENSIONS
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601, as cv2.cvtColor


@dataclass(frozen=True)
class ImageData:
    """A decoded image: ``pixels`` float32 (H, W, C) in [0, 1] = raw / ``scale``; ``valid`` bool (H, W)."""

    pixels: np.ndarray
    raw_dtype: str
    bit_depth: int
    scale: float
    valid: np.ndarray
    path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        p, v = self.pixels, self.valid
        if p.ndim != 3 or p.shape[2] not in (1, 3) or p.dtype != np.float32:
            raise ValueError(f"pixels must be float32 (H, W, 1|3), got {p.dtype} {p.shape}")
        if v.shape != p.shape[:2] or v.dtype != np.bool_:
            raise ValueError(f"valid must be bool {p.shape[:2]}, got {v.dtype} {v.shape}")
        if self.bit_depth <= 0 or self.scale <= 0:
            raise ValueError(f"bit_depth and scale must be positive, got {self.bit_depth}, {self.scale}")

    @property
    def shape(self) -> tuple[int, int, int]:
        h, w, c = self.pixels.shape
        return int(h), int(w), int(c)

    def __repr__(self) -> str:
        """One line, not every pixel (the dataclass's own repr printed the whole array until session 46)."""
        h, w, c = self.shape
        where = f"{self.path.name!r}, " if self.path is not None else ""
        return (
            f"ImageData({where}{h}x{w}x{c}, {self.bit_depth}-bit {self.raw_dtype}, "
            f"{float(self.valid.mean()):.1%} valid)"
        )

    @property
    def channels(self) -> int:
        return int(self.pixels.shape[2])

    @property
    def valid_fraction(self) -> float:
        return float(self.valid.mean()) if self.valid.size else 0.0


def _as_path(path: str | os.PathLike[str]) -> Path:
    return Path(os.fspath(path))


def read_raw(path: str | os.PathLike[str]) -> tuple[np.ndarray, int, np.ndarray | None]:
    """Decode ``path`` to its stored integer/float array (H, W, C) in RGB order, its bit depth, and alpha.

    The alpha channel (if any) is split off and returned separately (None when absent).
    Raises :class:`ImageReadError` naming the file and the reason.
    """
    p = _as_path(path)
    # existence, extension, signature, size limits (decompression bombs), structure/truncation, then pixels
    arr, info = decode_file(p)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    arr, alpha = _split_samples(arr, info, p)
    note = info.band_note()
    if note:
        log.warning("%s: %s", p, note)
    if arr.dtype.kind == "f":
        return arr, 32 if arr.dtype.itemsize >= 4 else 16, alpha
    _headers.check_sample_type(arr.dtype, p)
    bits = info.bit_depth if info.bit_depth and info.bit_depth <= 8 * arr.dtype.itemsize else None
    sig = info.significant_bits
    top = int(arr.max(initial=0)) if sig or arr.dtype == np.uint16 else 0  # one pass, only where it is read
    if sig and top < 2**sig:
        # PNG sBIT: the spec scales samples to 16 bits, but many instrument pipelines store the
        # raw 12-bit counts; only when every value fits in ``sig`` bits are they read as such
        bits = sig
    elif arr.dtype == np.uint16 and (bits or 16) == 16 and 0 < top < 4096:
        # read as 16-bit the image is nearly black (and may count as no-data): say what is probably going on
        log.warning(
            "%s: 16-bit samples reach only %d of 65535; if this is 12-bit (or narrower) data stored without a "
            "bit-depth record (PNG sBIT, TIFF BitsPerSample), it reads nearly black: store it with its bit depth "
            "or rescale it",
            p,
            top,
        )
    return arr, bits or 8 * arr.dtype.itemsize, alpha


def _split_samples(arr: np.ndarray, info: _headers.HeaderInfo, p: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """The channels read (H, W, 1|3) and the alpha (H, W) or None of decoded samples (H, W, S).

    A TIFF's header says which sample is alpha (ExtraSamples 1/2 only) and which bands are read
    (:attr:`HeaderInfo.read_samples`); in a PNG (or OpenCV's expansion of one) a last 2nd or 4th channel is alpha."""
    if info.samples:
        if arr.ndim != 3 or arr.shape[2] != info.samples:
            raise ImageReadError(f"{p}: decoded {arr.shape} samples, the TIFF header says {info.samples} per pixel")
        alpha = None if info.alpha_sample is None else arr[:, :, info.alpha_sample]
        first, n = info.read_samples[0], len(info.read_samples)
        if info.read_samples == tuple(range(first, first + n)):
            return arr[:, :, first : first + n], alpha  # a view, no copy
        return arr[:, :, list(info.read_samples)], alpha
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        raise ImageReadError(f"{p}: unsupported pixel layout {arr.shape} (expected grey, RGB or RGBA)")
    alpha = None
    if arr.shape[2] in (2, 4):
        alpha = arr[:, :, -1]
        arr = arr[:, :, :-1]
    if info.channels == 1 and arr.shape[2] == 3:  # OpenCV expands grey+alpha PNG to BGRA
        arr = arr[:, :, :1]
    return arr, alpha


def to_float(raw: np.ndarray, bit_depth: int, *, path: Path | None = None) -> tuple[np.ndarray, float]:
    """Normalise a raw array to float32 [0, 1]; return (pixels, scale) with pixels = raw / scale.

    Integer data is divided by 2**bit_depth - 1. Float data must already lie in [0, 1] (NaN/inf are
    allowed and mapped to 0; mark them invalid with :func:`finite_mask`). Signed, boolean and other sample types
    are refused (:func:`edgeae._headers.check_sample_type`, the rule of every reader): they have no [0, 1] reading.
    """
    _headers.check_sample_type(raw.dtype, path or "array")
    if raw.dtype.kind == "f":
        finite = np.isfinite(raw)
        if finite.any():
            lo, hi = float(raw[finite].min()), float(raw[finite].max())
            if lo < 0.0 or hi > 1.0:
                raise ImageReadError(
                    f"{path or 'array'}: float samples span [{lo:.4g}, {hi:.4g}], outside [0, 1]; "
                    "rescale the product to [0, 1] (or store it as 8/16-bit integers) first"
                )
        return np.where(finite, raw, 0).astype(np.float32), 1.0
    scale = float(2**bit_depth - 1)
    out = raw.astype(np.float32)
    out *= np.float32(1.0 / scale)
    if bit_depth < 8 * raw.dtype.itemsize:
        np.clip(out, 0.0, 1.0, out=out)  # 12-bit-in-16 files may carry stray high values
    return out, scale


def convert_channels(pixels: np.ndarray, channels: int | None) -> np.ndarray:
    """Grey <-> RGB for float (H, W, C): grey is repeated; RGB becomes BT.601 luminance."""
    if channels is None or pixels.shape[2] == channels:
        return pixels
    if channels == 3 and pixels.shape[2] == 1:
        return np.repeat(pixels, 3, axis=2)
    if channels == 1 and pixels.shape[2] == 3:
        return np.tensordot(pixels, LUMA, axes=([2], [0])).astype(np.float32)[:, :, None]
    raise ValueError(f"cannot convert {pixels.shape[2]} channels to {channels}; channels must be 1, 3 or None")


def read_image(
    path: str | os.PathLike[str],
    *,
    channels: int | None = None,
    detect_nodata: bool = True,
    nodata_threshold: float | None = None,
    bayer: str | None = None,
    margin: Margin | None = None,
) -> ImageData:
    """Read a PNG/JPEG/PGM/PPM/TIFF file into an :class:`ImageData`.

    ``channels``: 1 (grey), 3 (RGB) or None (as stored). ``detect_nodata``: mark black margins
    connected to the image border invalid (see :func:`edgeae.nodata.nodata_mask`), and dark or saturated
    margins and no-data seen from the border (:func:`edgeae.nodata.valid_mask`, the flight runtime's own
    mask); transparent pixels (alpha 0) and non-finite float samples are always invalid. ``bayer``: the
    frame is a raw colour-filter mosaic of that pattern ("RGGB", ...): demosaiced (:func:`edgeae.bayer.demosaic`,
    the flight's) before anything else; an undeclared frame that looks like one is logged as a warning
    (``extra["looks_like_mosaic"]``).
    ``margin``: a fixed margin marked invalid. Where the margin guesses marked more pixels invalid than the file
    declares (NaN/inf, alpha 0, ``margin``), ``extra["declared_valid"]`` holds the declared mask alone.

    Archive products (PDS3/PDS4/ISIS3/VICAR/JP2/GeoTIFF, :func:`edgeae.archive.reader.read_product`) take their
    no-data from the label (special values, non-finite samples: always invalid, they hold no sample) and, for an
    unsigned product that declares none, from regions of exact 0 reaching the border; ``detect_nodata=False``
    keeps only the label's. ``bayer`` demosaics the product's normalised samples (as ``score_file`` streams
    it), ``margin`` is marked invalid; ``nodata_threshold`` (the black-margin detection of image files) is
    refused for a product.
    """
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be None, 1 or 3, got {channels!r}")
    from edgeae.bayer import PATTERNS, demosaic, looks_like_mosaic

    if bayer and bayer.upper() not in PATTERNS:  # before any reading, for every kind of file
        raise ValueError(f"unknown Bayer pattern {bayer!r} for {path}; choose from {', '.join(PATTERNS)}")
    p = _as_path(path)
    if _is_archive(p):  # PDS3/PDS4/ISIS3/VICAR/JP2/GeoTIFF products go through GDAL (edgeae.archive)
        return _read_archive(p, channels, detect_nodata, nodata_threshold, bayer, margin)
    raw, bits, alpha = read_raw(p)

    extra: dict[str, Any] = {"stored_channels": int(raw.shape[2]), "alpha": alpha is not None}
    if bayer:
        try:
            raw = demosaic(raw, bayer)
        except ValueError as exc:
            raise ImageReadError(f"{p}: cannot demosaic as {bayer}: {exc}") from exc
        extra["demosaiced"] = bayer
    elif looks_like_mosaic(raw):
        log.warning(
            "%s looks like an undemosaiced colour-filter mosaic (2x2 repeating values); give --bayer PATTERN "
            "(bayer= in the library) to demosaic it",
            p,
        )
        extra["looks_like_mosaic"] = True
    valid = np.ones(raw.shape[:2], dtype=bool)
    if raw.dtype.kind == "f":
        valid &= across_channels(raw, np.logical_and, np.isfinite)
    if alpha is not None:
        valid &= alpha > 0
    if detect_nodata:  # before the float copy exists, so their temporaries do not add up
        declared = valid.copy()  # what the file itself says is missing (NaN/inf, transparent), before the guesses
        valid &= nodata_mask(raw, bit_depth=bits, threshold=nodata_threshold)
        reduce = "min" if bayer else "max"  # a demosaiced margin keeps its dark measured sample
        valid &= valid_mask(raw, bit_depth=bits, threshold=nodata_threshold, margin=margin, reduce=reduce)
        if margin:
            declared &= margin_mask(valid.shape, margin)  # a margin the user gave is declared, not guessed
        if not np.array_equal(declared, valid):  # guessed margins: kept apart, e.g. a rebuild still uses them
            extra["declared_valid"] = declared
    elif margin:
        valid &= margin_mask(valid.shape, margin)
    pixels, scale = to_float(raw, bits, path=p)
    return ImageData(
        pixels=convert_channels(pixels, channels),
        raw_dtype=str(raw.dtype),
        bit_depth=bits,
        scale=scale,
        valid=valid,
        path=p,
        extra=extra,
    )


def _read_archive(
    p: Path,
    channels: int | None,
    detect_nodata: bool,
    nodata_threshold: float | None,
    bayer: str | None,
    margin: Margin | None,
) -> ImageData:
    """:func:`read_image` of an archive product: :func:`edgeae.archive.reader.read_product`, then the options."""
    from edgeae.archive.reader import read_product

    if nodata_threshold is not None:
        raise ValueError(
            f"{p}: nodata_threshold sets the black-margin detection of image files; an archive product's no-data "
            "comes from its label (special values; exact 0 at the border when it declares none): leave it unset"
        )
    data = read_product(p, channels=None if bayer else channels)
    pixels, valid, extra = data.pixels, data.valid, dict(data.extra)
    dtype, specials = np.dtype(data.raw_dtype), extra.get("special_values")
    if not detect_nodata and dtype.kind == "u" and not specials and extra.get("offset") == 0:
        # read_product's zero-fill rule (ProductReader.fills_zero) is the only no-data of such a product, and a
        # detection, not a declaration: skipped as the black-margin detection of an image is. Its pixels are 0.
        valid = np.ones_like(valid)
    if bayer:
        from edgeae.bayer import demosaic_bilinear

        try:
            pixels = demosaic_bilinear(pixels, bayer)  # what the streamed read (score_file, scan) computes
        except ValueError as exc:
            raise ImageReadError(f"{p}: cannot demosaic as {bayer}: {exc}") from exc
        pixels = convert_channels(pixels, channels)
        extra["demosaiced"] = bayer
    if margin:
        valid = valid & margin_mask(valid.shape, margin)
    if pixels is data.pixels and valid is data.valid:
        return data
    return ImageData(pixels, data.raw_dtype, data.bit_depth, data.scale, valid, data.path, extra)


def image_shape(path: str | os.PathLike[str]) -> tuple[int, int, int]:
    """(H, W, C) as :func:`read_image` with ``channels=None`` would return it, read from the header only.

    PNG (IHDR), JPEG (SOF marker), PNM (text header) and TIFF (first IFD of the finest level) are
    parsed without decoding pixels; C drops any alpha channel.
    """
    p = _as_path(path)
    if _is_archive(p):
        from edgeae.archive.reader import product_shape

        return product_shape(p)
    info = _headers.probe(p)
    return info.height, info.width, info.channels


def _is_archive(p: Path) -> bool:
    """Archive-format hook: is ``p`` a planetary product read through GDAL (see docs/archive.md)?"""
    from edgeae.archive.formats import is_archive_path

    return is_archive_path(p)
