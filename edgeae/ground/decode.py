"""Turn the received pieces of a product back into arrays (numpy only; reconstruction is in ``rebuild``).

A sparse frame comes back as its received samples placed on the regenerated mask, plus ``known`` (pixels
whose value arrived) and ``covered`` (pixels whose packet arrived, kept or not). Latents come back with a
per-element received mask; patches and telemetry likewise. A piece whose regenerated mask does not hold
the announced number of samples (a PRNG mismatch) is dropped and counted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from edgeae import masks
from edgeae.wire.products import sample_dtype

from .reassembly import Assembly


class DecodeError(ValueError):
    """A product that cannot be decoded at all (for example an unsupported mask PRNG version)."""


@dataclass(frozen=True, eq=False)
class SparseResult:
    """Received samples of a sparse frame: ``samples`` (H, W, C) uint8/uint16, zero where unknown."""

    frame_id: int
    samples: np.ndarray
    known: np.ndarray  # bool (H, W): value received
    covered: np.ndarray  # bool (H, W): the packet for this pixel arrived
    mask: np.ndarray  # bool (H, W): the full regenerated sampling mask
    bit_depth: int
    pieces_bad: int

    def as_float(self) -> np.ndarray:
        """Samples as float32 in [0, 1] (divided by 2**bit_depth - 1)."""
        return self.samples.astype(np.float32) / np.float32(2**self.bit_depth - 1)


def decode_sparse(asm: Assembly, max_pixels: int = 1 << 28) -> SparseResult:
    """Place every received piece of a sparse frame on its regenerated mask rows."""
    h0 = asm.header
    h, w, c, bits = h0["height"], h0["width"], h0["channels"], h0["bit_depth"]
    if h0["prng_version"] != masks.PRNG_VERSION:
        raise DecodeError(
            f"frame {asm.frame_id}: mask PRNG version {h0['prng_version']} is not "
            f"{masks.PRNG_VERSION}, the one this ground implements"
        )
    if h0["pattern"] not in masks.PATTERN_IDS:
        raise DecodeError(f"frame {asm.frame_id}: mask pattern {h0['pattern']!r} is not implemented here")
    if h * w > max_pixels:
        raise DecodeError(f"frame {asm.frame_id}: {h}x{w} is larger than the {max_pixels}-pixel limit")
    samples = np.zeros((h, w, c), dtype=sample_dtype(bits))
    known = np.zeros((h, w), dtype=bool)
    covered = np.zeros((h, w), dtype=bool)
    mask = masks.make_mask(h0["seed"], (h, w), h0["keep"], h0["pattern"])
    bad = 0
    for pkt in asm.pieces.values():
        p = pkt.header
        r0, r1, c0, c1 = p["row0"], p["row1"], p["col0"], p["col1"]
        sub = mask[r0:r1, c0:c1]
        if int(sub.sum()) != p["n"] or pkt.samples.shape != (p["n"], c):
            bad += 1
            continue
        ys, xs = np.nonzero(sub)
        samples[ys + r0, xs + c0] = pkt.samples
        known[ys + r0, xs + c0] = True
        covered[r0:r1, c0:c1] = True
    return SparseResult(asm.frame_id, samples, known, covered, mask, bits, bad)


@dataclass(frozen=True, eq=False)
class FlatResult:
    """A flat product: ``values`` in its final shape and ``received`` (same shape, bool)."""

    frame_id: int
    header: dict
    values: np.ndarray
    received: np.ndarray


def decode_flat(asm: Assembly) -> FlatResult:
    """Latents ((tiles, C, h, w)), patch pixels ((size, size, C)) or telemetry bytes from their pieces."""
    h0 = asm.header
    if asm.kind == "latent":
        shape = tuple(h0["latent_shape"])
        dtype = np.dtype(np.int8 if h0["dtype"] == "int8" else np.float16)
    elif asm.kind == "patch":
        shape = (h0["size"], h0["size"], h0["channels"])
        dtype = sample_dtype(h0["bit_depth"])
    elif asm.kind == "telemetry":
        shape = (h0["total"],)
        dtype = np.dtype(np.uint8)
    else:
        raise DecodeError(f"not a flat product kind: {asm.kind}")
    total = int(np.prod(shape, dtype=np.int64))
    if total > 1 << 28:
        raise DecodeError(f"{asm.kind} {asm.frame_id}: {total} elements is over the limit")
    flat = np.zeros(total, dtype=dtype)
    got = np.zeros(total, dtype=bool)
    for pkt in asm.pieces.values():
        e0, n = pkt.header["e0"], pkt.header["n"]
        flat[e0 : e0 + n] = pkt.samples
        got[e0 : e0 + n] = True
    return FlatResult(asm.frame_id, h0, flat.reshape(shape), got.reshape(shape))


def telemetry_json(res: FlatResult) -> dict | None:
    """The telemetry record as JSON when every byte arrived and it parses; else None."""
    if not res.received.all():
        return None
    try:
        out = json.loads(res.values.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return out if isinstance(out, dict) else {"value": out}
