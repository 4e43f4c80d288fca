"""Operator limits of the ground station: every size a packet asks for is checked against these first.

A packet header can claim any frame size (a 66-byte packet can announce 4096×4096×255 samples); the ground
allocates nothing from a header before :func:`check_frame` (and the per-kind checks in ``decode``) has
compared it with these limits, and a product over a limit is reported with the reason ``limit``, not
decoded. The largest frame the defaults allow (a NAC-size strip, 52,224 × 5,064 grey) needs about 9-12 GB to
rebuild with telea or nearest and about 30 GB with linear (35-112 bytes a pixel, measured: docs/ground.md):
lower ``max_frame_pixels`` on a smaller machine. Set them with ``edgeae ground ... --limit NAME=VALUE``
(``docs/ground.md`` lists them) or in code with ``GroundLimits(...)``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


class LimitError(ValueError):
    """A product or packet over an operator limit; ``reason`` is the counter it is reported under."""

    def __init__(self, message: str, reason: str = "limit") -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class GroundLimits:
    """Sizes the ground accepts (bytes, pixels or elements; all positive integers)."""

    max_frame_pixels: int = 1 << 28  # height × width of a sparse or latent frame (268 M)
    max_frame_bytes: int = 2 << 30  # height × width × channels × 4: the float32 image the ground rebuilds
    max_latent_elements: int = 1 << 26  # latent values of one frame (256 MB as float32)
    max_patch_elements: int = 1 << 24  # size × size × channels of one anomaly patch
    max_telemetry_bytes: int = 16 << 20  # one telemetry record
    max_session_bytes: int = 2 << 30  # packet bytes kept in memory per session
    max_source_bytes: int = 1 << 30  # packet bytes kept per sending address (``serve``)
    max_session_packets: int = 2_000_000  # packets kept per session (each costs ~1 KB of bookkeeping)
    max_products: int = 100_000  # products (frames, patches, records) open per session
    decode_queue: int = 64  # ``serve``: completed products waiting for the decoder thread

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"ground limit {f.name} must be a positive integer, got {v!r}")

    @classmethod
    def from_pairs(cls, pairs: list[str] | None) -> GroundLimits:
        """Limits from ``NAME=VALUE`` strings (``max_frame_pixels=1e8``, ``max_session_bytes=4G``)."""
        names = {f.name for f in dataclasses.fields(cls)}
        out: dict[str, int] = {}
        for item in pairs or ():
            name, sep, value = item.partition("=")
            name = name.strip().replace("-", "_")
            if not sep or name not in names:
                raise ValueError(f"--limit {item!r}: expected NAME=VALUE with NAME one of {', '.join(sorted(names))}")
            out[name] = parse_size(value, f"--limit {name}")
        return cls(**out)


_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str, what: str = "size") -> int:
    """A positive integer from ``123``, ``1e8``, ``64M`` or ``2G`` (binary units); ValueError otherwise."""
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = t[-1:] if t[-1:] in _UNITS and t[-1:] else ""
    number = t[: len(t) - len(unit)]
    try:
        v = float(number) * _UNITS[unit]
    except ValueError:
        raise ValueError(f"{what}: {text!r} is not a size (examples: 1000000, 1e8, 64M, 2G)") from None
    if not v >= 1 or v != v or v == float("inf"):
        raise ValueError(f"{what}: {text!r} must be a positive number")
    return int(v)


def check_frame(kind: str, frame_id: int, h: int, w: int, c: int, limits: GroundLimits) -> None:
    """Refuse a frame whose pixel count or rebuilt float32 size is over the limits (before allocating)."""
    if h * w > limits.max_frame_pixels:
        raise LimitError(
            f"{kind} frame {frame_id}: {h}x{w} = {h * w:,} pixels is over max_frame_pixels {limits.max_frame_pixels:,}"
        )
    if h * w * c * 4 > limits.max_frame_bytes:
        raise LimitError(
            f"{kind} frame {frame_id}: {h}x{w}x{c} needs {h * w * c * 4:,} B as float32, over "
            f"max_frame_bytes {limits.max_frame_bytes:,}"
        )
