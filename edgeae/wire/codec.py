"""Lossless coding of the sample bytes inside one packet (numpy + the standard library's zlib).

Codec ids are part of the wire format (``docs/wire-format.md``):

- 0 ``none``: samples big-endian, interleaved (row-major over (n, C) or the flat element order).
- 1 ``delta-deflate``: per-channel differences along the sample order (modulo 2**8 or 2**16, the first
  sample against 0), uint16 split into a high-byte plane then a low-byte plane, then zlib/deflate level 9.
- 2 ``deflate``: the ``none`` bytes, then zlib/deflate level 9 (for latents, which are not smooth).

zlib is in every Python and a few KB of C (miniz) on a bare-metal board, so the flight side stays light.
"""

from __future__ import annotations

import zlib

import numpy as np

CODECS: dict[str, int] = {"none": 0, "delta-deflate": 1, "deflate": 2}
"""Codec name -> the codec byte on the wire."""


class CodecError(ValueError):
    """Coded sample bytes that do not decode to the announced number of samples."""


def _be(dtype: np.dtype) -> np.dtype:
    return dtype.newbyteorder(">") if dtype.itemsize > 1 else dtype


def encode_samples(samples: np.ndarray, codec: int) -> bytes:
    """Bytes of ``samples`` ((n, C) or flat; uint8, uint16, int8 or float16) under ``codec``."""
    arr = np.ascontiguousarray(samples)
    if codec == 0:
        return arr.astype(_be(arr.dtype), copy=False).tobytes()
    if codec == 2:
        return zlib.compress(arr.astype(_be(arr.dtype), copy=False).tobytes(), 9)
    if codec == 1:
        if arr.dtype not in (np.uint8, np.uint16):
            raise CodecError(f"delta-deflate codes uint8/uint16 samples, got {arr.dtype}")
        a2 = arr.reshape(arr.shape[0], -1) if arr.ndim > 1 else arr.reshape(-1, 1)
        delta = np.diff(a2, axis=0, prepend=np.zeros((1, a2.shape[1]), a2.dtype))  # wraps modulo 2**bits
        if delta.dtype == np.uint16:
            raw = (delta >> 8).astype(np.uint8).tobytes() + (delta & 0xFF).astype(np.uint8).tobytes()
        else:
            raw = delta.tobytes()
        return zlib.compress(raw, 9)
    raise CodecError(f"unknown codec {codec}")


def decode_samples(data: bytes, codec: int, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of :func:`encode_samples`; raises :class:`CodecError` when ``data`` does not fit ``shape``."""
    dtype = np.dtype(dtype)
    count = int(np.prod(shape, dtype=np.int64))
    nbytes = count * dtype.itemsize
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
    if dtype not in (np.uint8, np.uint16):
        raise CodecError(f"delta-deflate decodes uint8/uint16 samples, not {dtype}")
    cols = 1 if len(shape) < 2 else int(np.prod(shape[1:], dtype=np.int64))
    rows = count // cols if cols else 0
    if dtype == np.uint16:
        planes = np.frombuffer(raw, dtype=np.uint8)
        delta = (planes[:count].astype(np.uint16) << 8) | planes[count:].astype(np.uint16)
    else:
        delta = np.frombuffer(raw, dtype=np.uint8)
    out = np.cumsum(delta.reshape(rows, cols), axis=0, dtype=dtype)  # wraps back modulo 2**bits
    return out.reshape(shape)
