"""Turn the received pieces of a flat product back into arrays (numpy only): latents, anomaly-patch pixels and
telemetry bytes, each with a per-element received mask; then what the ground reads of them: dequantised latents,
the coverage of the pieces' ranges, how far a latent frame's image can be trusted, and the telemetry record as
JSON. :class:`DecodeError`, the error of every decode (sparse frames too, :mod:`.decode`), is here.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeae.wire.products import sample_dtype

from .limits import GroundLimits, LimitError
from .reassembly import Assembly


class DecodeError(ValueError):
    """A product that cannot be decoded at all (for example an unsupported mask PRNG version)."""


@dataclass(frozen=True, eq=False)
class FlatResult:
    """A flat product: ``values`` in its final shape and ``received`` (same shape, bool)."""

    frame_id: int
    header: dict
    values: np.ndarray
    received: np.ndarray
    overlapping: int = 0  # pieces refused because they cover elements a piece of a lower part number gave

    def not_covered(self) -> int:
        """Elements no placed piece covers."""
        return int(self.received.size - np.count_nonzero(self.received))


def decode_flat(asm: Assembly, limits: GroundLimits | None = None) -> FlatResult:
    """Latents ((tiles, C, h, w)), patch pixels ((size, size, C)) or telemetry bytes from their pieces.

    The element count the header claims is checked against ``limits`` before anything is allocated. Pieces are
    placed in part order; one that covers an element an earlier part gave already (a crafted or damaged range:
    the flight's pieces never overlap) is refused whole and counted in ``overlapping``, so no piece silently
    overwrites another.
    """
    lim = limits or GroundLimits()
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
    total = math.prod(int(v) for v in shape)  # Python ints: no int64 overflow on a crafted shape
    cap = {"latent": lim.max_latent_elements, "patch": lim.max_patch_elements}.get(asm.kind, lim.max_telemetry_bytes)
    if total > cap:
        name = {"latent": "max_latent_elements", "patch": "max_patch_elements"}.get(asm.kind, "max_telemetry_bytes")
        unit = "bytes" if name == "max_telemetry_bytes" else "elements"
        raise LimitError(f"{asm.kind} {asm.frame_id}: {total:,} {unit} is over {name} {cap:,}")
    flat = np.zeros(total, dtype=dtype)
    got = np.zeros(total, dtype=bool)
    overlapping = 0
    pieces = asm.pieces
    for part in sorted(pieces):
        pkt = pieces[part]
        e0, n = pkt.header["e0"], pkt.header["n"]
        if got[e0 : e0 + n].any():
            overlapping += 1
            continue
        flat[e0 : e0 + n] = pkt.samples
        got[e0 : e0 + n] = True
    return FlatResult(asm.frame_id, h0, flat.reshape(shape), got.reshape(shape), overlapping)


def dequantise(frame_id: int, header: dict, values: np.ndarray) -> np.ndarray:
    """A latent frame's values as float32 (int8 ones times the frame's ``scale``). A value that is not finite in
    float32 then (a scale float32 cannot hold: the decoder must not see it) raises :class:`DecodeError`."""
    scale = header["scale"] if header["dtype"] == "int8" else 1.0
    with np.errstate(over="ignore", invalid="ignore"):  # said below, not warned
        lat = values.astype(np.float32) * np.float32(scale)
    overflow = int(lat.size - np.count_nonzero(np.isfinite(lat)))
    if overflow:
        raise DecodeError(
            f"latent frame {frame_id}: its int8 scale {scale:g} gives {overflow:,} dequantised latent values that are "
            "not finite in float32: latents not decoded"
        )
    return lat


_UNITS = {"telemetry": "bytes", "patch": "samples", "latent": "latent values"}


def coverage(asm: Assembly, res: FlatResult) -> dict[str, Any]:
    """What a flat product's report says of its pieces' ranges: ``pieces_overlapping`` (refused by
    :func:`decode_flat`) and, when every packet arrived but elements are missing (pieces that overlap or leave
    gaps: not packet loss), ``elements_not_covered``; ``coverage_note`` says it in words."""
    out: dict[str, Any] = {}
    refused = f"{res.overlapping} piece(s) overlapping an earlier part refused" if res.overlapping else ""
    if res.overlapping:
        out["pieces_overlapping"] = res.overlapping
    missing = res.not_covered()
    if missing and len(asm.pieces) == asm.parts:
        out["elements_not_covered"] = missing
        out["coverage_note"] = (
            f"{missing:,} of {res.received.size:,} {_UNITS.get(asm.kind, 'elements')} not covered by any received "
            f"piece (all {asm.parts} packets arrived{'; ' + refused if refused else ''})"
        )
    elif refused:
        out["coverage_note"] = refused
    return out


LATENT_PATCH_REASON = (
    "a latent frame is rebuilt by its decoder from the latents alone: anomaly patches are not pasted into it (each "
    "is written as a product of its own)"
)


def latent_image_note(received: np.ndarray, nonfinite: int, tiles_complete: int) -> str | None:
    """How far to trust a latent frame's image when latent values are missing (lost, or NaN / infinite), or None.
    ``received``: bool (tiles, ...) per latent value."""
    missing = int(received.size - np.count_nonzero(received))
    if not missing:
        return None
    tiles = received.shape[0]
    why = f" ({nonfinite:,} of them NaN or infinite)" if nonfinite else ""
    state = (
        "unusable: no tile's latents arrived whole"
        if tiles_complete == 0
        else f"partial: {tiles - tiles_complete} of its {tiles} tiles are decoded from incomplete latents"
    )
    return f"{missing:,} of {received.size:,} latent values not received{why}, decoded as 0: the image is {state}"


TELEMETRY_MAX_DEPTH = 64
"""Deepest nesting of lists and objects a telemetry record may have (a flight record has a few: the record, its
``anomaly`` list, a patch's entry); a deeper record is refused (:class:`DecodeError`), so no walker of the record or
of a report holding it can run out of stack."""


class _LongInteger(ValueError):
    def __init__(self, digits: int) -> None:
        super().__init__(digits)
        self.digits = digits


def _parse_int(text: str) -> int:
    """``int(text)`` that refuses, before converting, an integer longer than Python converts (its
    ``sys.get_int_max_str_digits()``, 4300 by default; 0: no limit)."""
    cap = sys.get_int_max_str_digits()
    digits = len(text) - text.startswith("-")
    if cap and digits > cap:
        raise _LongInteger(digits)
    return int(text)


def telemetry_json(res: FlatResult, nonfinite: list[str] | None = None) -> dict | None:
    """The telemetry record as JSON when every byte arrived and it parses; else None.

    JSON cannot hold NaN or infinities (``{"temp": NaN}`` parses in Python, but no strict reader takes it):
    such values become None, and their paths (``temp``, ``a.b[2]``) are appended to ``nonfinite``. Valid JSON
    this ground refuses raises :class:`DecodeError` naming the telemetry record and why: nested deeper than
    :data:`TELEMETRY_MAX_DEPTH`, or an integer longer than Python converts.
    """
    if not res.received.all():
        return None
    what = f"telemetry {res.frame_id}: the record's JSON"
    try:
        out = json.loads(res.values.tobytes().decode("utf-8"), parse_int=_parse_int)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    except RecursionError:  # the parser's own stack ran out: far deeper than the bound
        raise DecodeError(f"{what} is nested deeper than {TELEMETRY_MAX_DEPTH} levels: record refused") from None
    except _LongInteger as exc:
        raise DecodeError(
            f"{what} holds an integer of {exc.digits:,} digits, over the {sys.get_int_max_str_digits():,} this "
            "ground converts: record refused"
        ) from None
    top = 1 if isinstance(out, dict) else 0  # another value is wrapped: the wrapper is no level of the record
    try:
        return _finite_values(out if top else {"value": out}, "", [] if nonfinite is None else nonfinite, top)
    except _TooDeep:
        raise DecodeError(f"{what} is nested deeper than {TELEMETRY_MAX_DEPTH} levels: record refused") from None


class _TooDeep(ValueError):
    pass


def _finite_values(obj: object, path: str, nonfinite: list[str], depth: int) -> Any:
    """``obj`` with every NaN or infinite float replaced by None; their paths appended to ``nonfinite``. ``depth``:
    the nesting level of ``obj`` (the record is 1); a list or object deeper than :data:`TELEMETRY_MAX_DEPTH` raises
    :class:`_TooDeep` (so the recursion is bounded)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        nonfinite.append(path or "value")
        return None
    if isinstance(obj, dict | list) and depth > TELEMETRY_MAX_DEPTH:
        raise _TooDeep
    if isinstance(obj, dict):
        return {k: _finite_values(v, f"{path}.{k}" if path else str(k), nonfinite, depth + 1) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite_values(v, f"{path}[{i}]", nonfinite, depth + 1) for i, v in enumerate(obj)]
    return obj
