"""Lossless coding of the sample bytes inside one packet (numpy + the standard library's zlib; libaec lazily).

Codec ids are part of the wire format (``docs/wire-format.md``):

- 0 ``none``: samples big-endian, interleaved (row-major over (n, C) or the flat element order).
- 1 ``delta-deflate``: per-channel differences along the sample order (modulo 2**8 or 2**16, the first
  sample against 0), uint16 split into a high-byte plane then a low-byte plane, then zlib/deflate level 9.
  A patch packet's flat range of interleaved pixels differs per channel too (:func:`encode_delta_pixels`).
- 2 ``deflate``: the ``none`` bytes, then zlib/deflate level 9 (for latents, which are not smooth).
- 3 ``ccsds121``: CCSDS 121.0-B lossless data compression (the Rice-based adaptive entropy coder flown on
  many missions) as implemented by libaec: unit-delay predictor, block size 16, reference sample interval
  128 blocks, unsigned samples of the product's bit depth, channels coded as planes one after another
  (all samples of channel 0, then channel 1, ...) in one stream.

zlib is in every Python and a few KB of C (miniz) on a bare-metal board; libaec is a ~100 KB C library on a
board and comes to Python through ``imagecodecs`` (imported only when codec 3 is used, so this module and
the whole wire package import with numpy alone).
"""

from __future__ import annotations

import zlib

import numpy as np

CODECS: dict[str, int] = {"none": 0, "delta-deflate": 1, "deflate": 2, "ccsds121": 3}
"""Codec name -> the codec byte on the wire."""
SAMPLE_CODECS = ("none", "delta-deflate", "ccsds121")
"""Codecs for image samples (sparse pixels, patches): the lossless options a mission chooses between."""
DEFAULT_SAMPLE_CODEC = "ccsds121"
"""The codec the missions, ``edgeae downlink`` and the benchmarks use: the smallest on every test set
(``benchmarks/lossless_coding.py``). ``WireConfig()`` itself defaults to ``none``, which needs numpy only."""

AEC_BLOCK = 16  # J: samples per coded block (CCSDS 121 allows 8, 16, 32, 64)
AEC_RSI = 128  # reference sample interval, in blocks
AEC_PREPROCESS = 8  # libaec AEC_DATA_PREPROCESS: unit-delay predictor + mapping (CCSDS 121 section 4)
PIP_AEC = "pip install 'edgeae[flight-ccsds121]'"  # imagecodecs, which brings libaec (also in the ground extra)


def aec_available() -> bool:
    """Whether libaec (through imagecodecs) is installed, so the ccsds121 codec can be used."""
    import importlib.util

    return importlib.util.find_spec("imagecodecs") is not None


def resolve_sample_codec(name: str) -> str:
    """``auto`` -> ``ccsds121`` when libaec is installed (``edgeae[flight-ccsds121]``), else ``delta-deflate``
    (stdlib zlib); any other name as given. The codec byte of every packet says which one was used."""
    if name != "auto":
        return name
    return "ccsds121" if aec_available() else "delta-deflate"


class CodecError(ValueError):
    """Coded sample bytes that do not decode to the announced number of samples."""


def _be(dtype: np.dtype) -> np.dtype:
    return dtype.newbyteorder(">") if dtype.itemsize > 1 else dtype


def _aec():
    try:
        import imagecodecs
    except ImportError:
        raise CodecError(f"the ccsds121 codec needs libaec through imagecodecs: {PIP_AEC}") from None
    return imagecodecs


def _planar(arr: np.ndarray) -> np.ndarray:
    """(n, C) -> the channel planes one after another, little-endian (libaec reads native LSB-first words)."""
    a2 = arr.reshape(arr.shape[0], -1) if arr.ndim > 1 else arr.reshape(-1, 1)
    return np.ascontiguousarray(a2.T).reshape(-1).astype(arr.dtype.newbyteorder("<"), copy=False)


def _bits(dtype: np.dtype, bits: int | None) -> int:
    full = dtype.itemsize * 8
    b = full if bits is None else int(bits)
    if not 1 <= b <= full or (dtype.itemsize == 2 and b <= 8):
        raise CodecError(f"bit depth {b} does not fit {dtype} samples")
    return b


def encode_samples(samples: np.ndarray, codec: int, bits: int | None = None) -> bytes:
    """Bytes of ``samples`` ((n, C) or flat; uint8, uint16, int8 or float16) under ``codec``.

    ``bits`` (ccsds121 only): the samples' bit depth, 1-8 for uint8 and 9-16 for uint16 (default: the full
    width of the dtype)."""
    arr = np.ascontiguousarray(samples)
    if codec == 0:
        return arr.astype(_be(arr.dtype), copy=False).tobytes()
    if codec == 2:
        return zlib.compress(arr.astype(_be(arr.dtype), copy=False).tobytes(), 9)
    if codec in (1, 3) and arr.dtype not in (np.uint8, np.uint16):
        raise CodecError(f"codec {codec} codes uint8/uint16 samples, got {arr.dtype}")
    if codec == 1:
        # (n, C) as n rows; not reshape(n, -1), which cannot infer C for an empty band (n = 0)
        a2 = (
            arr.reshape(arr.shape[0], int(np.prod(arr.shape[1:], dtype=np.int64)))
            if arr.ndim > 1
            else arr.reshape(-1, 1)
        )
        delta = np.diff(a2, axis=0, prepend=np.zeros((1, a2.shape[1]), a2.dtype))  # wraps modulo 2**bits
        return _delta_bytes(delta)
    if codec == 3:
        b = _bits(arr.dtype, bits)
        if arr.size == 0:
            return b""
        if b < arr.dtype.itemsize * 8 and int(arr.max()) >= 1 << b:
            raise CodecError(f"a sample is above the {b}-bit range")
        out = _aec().aec_encode(_planar(arr), bitspersample=b, flags=AEC_PREPROCESS, blocksize=AEC_BLOCK, rsi=AEC_RSI)
        return bytes(out)
    raise CodecError(f"unknown codec {codec}")


def decode_samples(
    data: bytes, codec: int, dtype: np.dtype, shape: tuple[int, ...], bits: int | None = None
) -> np.ndarray:
    """Inverse of :func:`encode_samples`; raises :class:`CodecError` when ``data`` does not fit ``shape``.

    The output size comes from ``shape``; the caller bounds it before calling (``parse`` does)."""
    dtype = np.dtype(dtype)
    count = int(np.prod(shape, dtype=np.int64))
    nbytes = count * dtype.itemsize
    if codec == 3:
        return _decode_aec(data, dtype, shape, count, bits)
    if codec in (1, 2):
        try:
            d = zlib.decompressobj()
            raw = d.decompress(data, nbytes + 1)  # bounded: a corrupt stream cannot inflate without limit
            if not d.eof or d.unused_data or d.unconsumed_tail:
                raise CodecError("compressed samples are truncated or followed by extra bytes")
        except zlib.error as exc:
            raise CodecError(f"compressed samples do not inflate: {exc}") from None
    elif codec == 0:
        raw = data
    else:
        raise CodecError(f"unknown codec {codec}")
    if len(raw) != nbytes:
        raise CodecError(f"expected {nbytes} sample bytes, got {len(raw)}")
    if codec != 1:
        return np.frombuffer(raw, dtype=_be(dtype)).astype(dtype).reshape(shape)
    delta = _deltas(raw, dtype, count)
    cols = 1 if len(shape) < 2 else int(np.prod(shape[1:], dtype=np.int64))
    rows = count // cols if cols else 0
    out = np.cumsum(delta.reshape(rows, cols), axis=0, dtype=dtype)  # wraps back modulo 2**bits
    return out.reshape(shape)


def _delta_bytes(delta: np.ndarray) -> bytes:
    """Codec 1's bytes of the differences ``delta``: u16 as a high-byte plane then a low-byte plane; zlib."""
    if delta.dtype == np.uint16:
        raw = (delta >> 8).astype(np.uint8).tobytes() + (delta & 0xFF).astype(np.uint8).tobytes()
    else:
        raw = delta.tobytes()
    return zlib.compress(raw, 9)


def _deltas(raw: bytes, dtype: np.dtype, count: int) -> np.ndarray:
    """The ``count`` differences (flat, ``dtype``) in the inflated bytes of a codec-1 stream."""
    if dtype not in (np.uint8, np.uint16):
        raise CodecError(f"delta-deflate decodes uint8/uint16 samples, not {dtype}")
    if dtype == np.uint16:
        planes = np.frombuffer(raw, dtype=np.uint8)
        return (planes[:count].astype(np.uint16) << 8) | planes[count:].astype(np.uint16)
    return np.frombuffer(raw, dtype=np.uint8)


def _pixel_rows(flat: np.ndarray, channels: int, first: int) -> np.ndarray:
    """``flat`` (n samples of interleaved pixels, the first of channel ``first``) as whole-pixel rows, zeros
    before and after: (ceil((first + n) / channels), channels)."""
    n = flat.shape[0]
    full = np.zeros(-(-(first + n) // channels) * channels, flat.dtype)
    full[first : first + n] = flat
    return full.reshape(-1, channels)


def encode_delta_pixels(flat: np.ndarray, channels: int, first: int = 0) -> bytes:
    """Codec 1 (delta-deflate) of a flat range of interleaved pixel samples (an anomaly patch packet's e0 and
    n): each sample minus the previous sample *of its channel* in the range (the first of each channel minus
    0); the range starts at channel ``first`` (e0 mod C) and need not hold whole pixels."""
    arr = np.ascontiguousarray(flat).reshape(-1)
    if arr.dtype not in (np.uint8, np.uint16):
        raise CodecError(f"codec 1 codes uint8/uint16 samples, got {arr.dtype}")
    rows = _pixel_rows(arr, channels, first)
    delta = np.diff(rows, axis=0, prepend=np.zeros((1, channels), arr.dtype)).reshape(-1)
    return _delta_bytes(delta[first : first + arr.shape[0]])


def decode_delta_pixels(data: bytes, dtype: np.dtype, n: int, channels: int, first: int = 0) -> np.ndarray:
    """Inverse of :func:`encode_delta_pixels`: ``n`` samples (flat), per-channel differences undone."""
    dtype = np.dtype(dtype)
    delta = _deltas(decode_samples(data, 2, np.dtype(np.uint8), (n * dtype.itemsize,)).tobytes(), dtype, n)
    rows = np.cumsum(_pixel_rows(delta, channels, first), axis=0, dtype=dtype)  # wraps back modulo 2**bits
    return rows.reshape(-1)[first : first + n]


def _decode_aec(data: bytes, dtype: np.dtype, shape: tuple[int, ...], count: int, bits: int | None) -> np.ndarray:
    if dtype not in (np.uint8, np.uint16):
        raise CodecError(f"ccsds121 decodes uint8/uint16 samples, not {dtype}")
    b = _bits(dtype, bits)
    if count == 0:
        if data:
            raise CodecError("coded samples where none were announced")
        return np.zeros(shape, dtype)
    if not data:
        raise CodecError("no coded samples")
    codecs = _aec()
    padded = -(-count // AEC_BLOCK) * AEC_BLOCK * dtype.itemsize  # the coder works in whole blocks
    try:
        got = codecs.aec_decode(
            data, bitspersample=b, flags=AEC_PREPROCESS, blocksize=AEC_BLOCK, rsi=AEC_RSI, out=padded
        )
    except Exception as exc:  # libaec reports a damaged or short stream as an error of its own type
        raise CodecError(f"ccsds121 samples do not decode: {exc}") from None
    if len(got) < count * dtype.itemsize:
        raise CodecError(f"ccsds121 samples are truncated: {len(got)} of {count * dtype.itemsize} bytes")
    planes = np.frombuffer(got, dtype.newbyteorder("<"), count).astype(dtype)
    cols = 1 if len(shape) < 2 else int(np.prod(shape[1:], dtype=np.int64))
    if b < dtype.itemsize * 8 and int(planes.max()) >= 1 << b:
        raise CodecError(f"a sample is above the {b}-bit range")
    return np.ascontiguousarray(planes.reshape(cols, count // cols).T).reshape(shape)
