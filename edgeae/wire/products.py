"""The downlink products: what the spacecraft sends and the ground rebuilds.

Frozen, validated dataclasses holding numpy arrays. They are the in-memory side of the wire format
(``docs/wire-format.md``); :mod:`.packets` turns them into CCSDS space packets and back. Numpy only: this
module runs on the flight computer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Union

import numpy as np

_F32 = np.finfo(np.float32)
LATENT_SCALE_RANGE = (float(_F32.tiny), float(_F32.max) / 128)
"""Latent scales a frame may carry: a positive normal float32 with 128 × scale finite in float32 (the ground
computes q · scale in float32; :mod:`edgeae.wire.parse` refuses other scales)."""

PATTERN_CODES: dict[str, int] = {"uniform": 1, "jittered": 2}  # = edgeae.masks.PATTERN_IDS (a test checks)
"""Mask pattern name -> the pattern byte on the wire (the same ids as ``edgeae.masks.PATTERN_IDS``)."""
PATTERNS: tuple[str, ...] = tuple(PATTERN_CODES)

LATENT_CODES: dict[str, int] = {"int8": 0, "fp16": 1}
"""Latent element type -> the dtype byte on the wire."""
LATENT_DTYPES: tuple[str, ...] = tuple(LATENT_CODES)


def sample_dtype(bit_depth: int) -> np.dtype:
    """The numpy dtype that carries samples of ``bit_depth`` bits: uint8 up to 8 bits, else uint16."""
    if not 1 <= bit_depth <= 16:
        raise ValueError(f"bit_depth must be in 1..16, got {bit_depth}")
    return np.dtype(np.uint8) if bit_depth <= 8 else np.dtype(np.uint16)


def _check_u32(name: str, value: int) -> None:
    if not 0 <= int(value) < 2**32:
        raise ValueError(f"{name} must fit in 32 unsigned bits, got {value}")


def _check_samples(name: str, arr: np.ndarray, bit_depth: int) -> None:
    want = sample_dtype(bit_depth)
    if arr.dtype != want:
        raise ValueError(f"{name} must be {want} for bit_depth {bit_depth}, got {arr.dtype}")
    if bit_depth not in (8, 16) and arr.size and int(arr.max()) >= 2**bit_depth:
        raise ValueError(f"{name} has values >= 2**{bit_depth}")


@dataclass(frozen=True, eq=False)
class SparseFrame:
    """A frame reduced to the pixels kept by a sampling mask.

    The mask is ``edgeae.masks.make_mask(seed, (height, width), keep, pattern)``; the ground regenerates it
    from these fields. ``values`` is (n_kept, channels), uint8 (bit_depth <= 8) or uint16, in mask order:
    raster order of the kept pixels.
    """

    frame_id: int
    height: int
    width: int
    channels: int
    bit_depth: int
    keep: float
    pattern: str
    seed: int
    prng_version: int
    values: np.ndarray

    def __post_init__(self) -> None:
        _check_u32("frame_id", self.frame_id)
        _check_u32("height", self.height)
        _check_u32("width", self.width)
        if self.height < 1 or self.width < 1:
            raise ValueError(f"frame shape must be positive, got {self.height}x{self.width}")
        if not 1 <= self.channels <= 255:
            raise ValueError(f"channels must be in 1..255, got {self.channels}")
        if not 0.0 < float(self.keep) <= 1.0:
            raise ValueError(f"keep must be in (0, 1], got {self.keep}")
        if self.pattern not in PATTERNS:
            raise ValueError(f"pattern must be one of {PATTERNS}, got {self.pattern!r}")
        if not 0 <= int(self.seed) < 2**64:
            raise ValueError(f"seed must fit in 64 unsigned bits, got {self.seed}")
        if not 0 <= int(self.prng_version) < 256:
            raise ValueError(f"prng_version must fit in one byte, got {self.prng_version}")
        if self.values.ndim != 2 or self.values.shape[1] != self.channels:
            raise ValueError(f"values must be (n_kept, {self.channels}), got {self.values.shape}")
        if self.values.shape[0] > self.height * self.width:
            raise ValueError("values has more rows than the frame has pixels")
        _check_samples("values", self.values, self.bit_depth)

    @property
    def raw_bytes(self) -> int:
        """Bytes of the full frame at its sample width (the 'raw' reference for compression ratios)."""
        return self.height * self.width * self.channels * sample_dtype(self.bit_depth).itemsize


@dataclass(frozen=True, eq=False)
class LatentFrame:
    """A frame sent as CAE encoder latents, one latent per tile.

    Tiles are 'tile'×'tile' pixels at the positions ``edgeae.tiling.tile_positions(height, width, tile,
    stride)`` in that order (grid_rows × grid_cols of them; 1 <= stride <= tile). ``latents`` is (n_tiles, C, h,
    w): int8 values q with x ≈ q · scale, or float16 values (scale 1.0). ``encoder_id`` names the encoder
    artifact (a short hash, up to 16 ASCII characters) so the ground can pick the matching decoder.
    """

    frame_id: int
    encoder_id: str
    height: int
    width: int
    channels: int
    tile: int
    stride: int
    grid_rows: int
    grid_cols: int
    scale: float
    dtype: Literal["int8", "fp16"]
    latents: np.ndarray

    def __post_init__(self) -> None:
        _check_u32("frame_id", self.frame_id)
        _check_u32("height", self.height)
        _check_u32("width", self.width)
        if not self.encoder_id.isascii() or len(self.encoder_id) > 16:
            raise ValueError(f"encoder_id must be at most 16 ASCII characters, got {self.encoder_id!r}")
        if not 1 <= self.channels <= 255:
            raise ValueError(f"channels must be in 1..255, got {self.channels}")
        for name in ("tile", "stride", "grid_rows", "grid_cols"):
            v = getattr(self, name)
            if not 1 <= v < 2**16:
                raise ValueError(f"{name} must be in 1..65535, got {v}")
        if self.stride > self.tile:  # the ground would fail the product (`decode`) after it crossed the link
            raise ValueError(f"stride must be in 1..tile ({self.tile}): {self.stride} would leave gaps between tiles")
        if self.dtype not in LATENT_DTYPES:
            raise ValueError(f"dtype must be one of {LATENT_DTYPES}, got {self.dtype!r}")
        want = np.dtype(np.int8) if self.dtype == "int8" else np.dtype(np.float16)
        if self.latents.dtype != want:
            raise ValueError(f"latents must be {want} for dtype {self.dtype}, got {self.latents.dtype}")
        if self.latents.ndim != 4 or self.latents.shape[0] != self.grid_rows * self.grid_cols:
            raise ValueError(
                f"latents must be (grid_rows*grid_cols={self.grid_rows * self.grid_cols}, C, h, w), "
                f"got {self.latents.shape}"
            )
        if any(not 1 <= s < 2**16 for s in self.latents.shape[1:]):
            raise ValueError(f"latent C, h, w must be in 1..65535, got {self.latents.shape[1:]}")
        if not LATENT_SCALE_RANGE[0] <= self.scale <= LATENT_SCALE_RANGE[1]:  # NaN fails too
            raise ValueError(
                f"scale must be a positive normal float32 whose int8 values (q * scale, |q| <= 128) stay finite in "
                f"float32 ({LATENT_SCALE_RANGE[0]:.3g}..{LATENT_SCALE_RANGE[1]:.3g}; the ground refuses others), "
                f"got {self.scale}"
            )


@dataclass(frozen=True, eq=False)
class AnomalyPatch:
    """A square patch flagged as anomalous, sent at full resolution in its original sample type.

    ``(x, y)`` is the top-left corner in the frame; ``pixels`` is (size, size, channels) uint8 or uint16.
    ``index`` tells several patches of one frame apart.
    """

    frame_id: int
    x: int
    y: int
    size: int
    score: float
    pixels: np.ndarray
    bit_depth: int = 8
    index: int = 0

    def __post_init__(self) -> None:
        _check_u32("frame_id", self.frame_id)
        _check_u32("x", self.x)
        _check_u32("y", self.y)
        if not 1 <= self.size < 2**16:
            raise ValueError(f"size must be in 1..65535, got {self.size}")
        if max(self.x, self.y) + self.size >= 2**32:  # frame sides are u32; the ground refuses such a patch
            raise ValueError(f"patch at ({self.x}, {self.y}) of size {self.size} runs past the largest frame")
        if not 0 <= self.index < 2**16:
            raise ValueError(f"index must be in 0..65535, got {self.index}")
        if not math.isfinite(self.score):
            raise ValueError(f"score must be finite, got {self.score}")
        if self.pixels.ndim != 3 or self.pixels.shape[:2] != (self.size, self.size):
            raise ValueError(f"pixels must be ({self.size}, {self.size}, C), got {self.pixels.shape}")
        if not 1 <= self.pixels.shape[2] <= 255:
            raise ValueError(f"channels must be in 1..255, got {self.pixels.shape[2]}")
        _check_samples("pixels", self.pixels, self.bit_depth)

    @property
    def channels(self) -> int:
        return int(self.pixels.shape[2])


@dataclass(frozen=True, eq=False)
class TelemetryRecord:
    """Housekeeping for a frame as UTF-8 JSON bytes (timings, budgets, scores, model ids)."""

    frame_id: int
    payload: bytes

    def __post_init__(self) -> None:
        _check_u32("frame_id", self.frame_id)
        if not isinstance(self.payload, bytes | bytearray):
            raise ValueError(f"payload must be bytes, got {type(self.payload).__name__}")
        if len(self.payload) >= 2**32:
            raise ValueError("payload too long")


Product = Union[SparseFrame, LatentFrame, AnomalyPatch, TelemetryRecord]  # noqa: UP007
"""Any downlink product."""
