"""Fault injection: the upsets a flight computer sees, injected on purpose so their handling is tested.

A fault is written ``kind@when[:arg]`` (in the mission's ``[runtime] inject`` list or ``--inject``):

==========================  ==========================================================================
``seu@frame3[:bits]``       flip ``bits`` (a whole number in 1..65,536, default 1) random bits of the anomaly
                            model's weight image in memory before frame 3; the checksum scrub must detect it
                            and reload
``seu-recon@frame3[:bits]`` the same for the reconstruction model
``corrupt-model@load``      the anomaly model file is damaged on storage: one byte flipped in the copy the
                            runtime loads; the golden-hash check refuses it (fallback copy, or no scoring)
``late@frame2[:ms]``        frame 2 arrives ``ms`` late (a number in (0, 86,400,000], one day; default: 60%
                            of the frame budget); the runtime must degrade to meet its deadline
``bad-frame@frame1[:how]``  frame 1 is corrupted after acquisition: ``nan`` (default), ``saturate`` or
                            ``shape``; validation must drop it with a reason
``reboot@frame4``           the computer reboots before frame 4; the next run on the same output folder
                            recovers the queue and the frame ledger
==========================  ==========================================================================

Frame numbers are the mission's frame ids, counted from 0 across the boots on one output folder. A value no run
could fly (NaN, inf, 2.5 bits) is refused when the spec is parsed, before the boot. Randomness (which bit flips)
comes from ``seed``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

KINDS = ("seu", "seu-recon", "corrupt-model", "late", "bad-frame", "reboot")
BAD_FRAME_MODES = ("nan", "saturate", "shape")


class FaultSpecError(ValueError):
    """A fault specification string cannot be parsed."""


class SimulatedReboot(Exception):
    """Raised by the loop when a ``reboot`` fault fires; the state on disk is what survives."""


@dataclass(frozen=True)
class Fault:
    kind: str
    frame: int | None  # None: at load
    arg: str = ""

    def __str__(self) -> str:
        when = "load" if self.frame is None else f"frame{self.frame}"
        return f"{self.kind}@{when}" + (f":{self.arg}" if self.arg else "")


MAX_SEU_BITS = 65_536  # bits one seu fault may flip: an upset is a few bits; more is a typo (1e30 ran out of memory)
MAX_LATE_MS = 86_400_000.0  # one day, the longest [budget] frame_ms: a frame no later than the longest frame budget
TAKES_NO_ARG = ("corrupt-model", "reboot")


def _digits(text: str, most: int = 18) -> bool:
    """ASCII digits only (``str.isdigit`` also takes ``²``, which ``int`` refuses), at most ``most`` of them
    after leading zeros (``int`` refuses 4,300 or more)."""
    return text.isascii() and text.isdigit() and len(text.lstrip("0")) <= most


def parse_fault(spec: str) -> Fault:
    """Parse one ``kind@when[:arg]`` string; a value no run could fly (NaN, inf, a fraction of a bit, a count over
    :data:`MAX_SEU_BITS`, a lateness over :data:`MAX_LATE_MS`) is refused here, so ``check`` refuses it too."""
    text = spec.strip()
    kind, sep, rest = text.partition("@")
    if not sep or kind not in KINDS:
        raise FaultSpecError(f"fault {spec!r}: expected KIND@frameN[:ARG] with KIND one of {KINDS}")
    when, colon, arg = rest.partition(":")
    if kind in TAKES_NO_ARG and colon:
        raise FaultSpecError(f"fault {spec!r}: {kind} takes no argument (write {kind}@{when})")
    if when == "load":
        if kind != "corrupt-model":
            raise FaultSpecError(f"fault {spec!r}: only corrupt-model happens @load")
        return Fault(kind, None, arg)
    if not when.startswith("frame") or not _digits(when[5:]):
        raise FaultSpecError(f"fault {spec!r}: 'when' must be 'load' or 'frameN', got {when!r}")
    if kind == "corrupt-model":
        raise FaultSpecError(f"fault {spec!r}: corrupt-model happens @load")
    if colon and not arg:
        raise FaultSpecError(f"fault {spec!r}: nothing after ':' (leave out ':' for the default)")
    if kind == "bad-frame" and arg and arg not in BAD_FRAME_MODES:
        raise FaultSpecError(f"fault {spec!r}: bad-frame mode must be one of {BAD_FRAME_MODES}")
    if kind in ("seu", "seu-recon") and arg and not (_digits(arg) and 1 <= int(arg) <= MAX_SEU_BITS):
        raise FaultSpecError(f"fault {spec!r}: the bits to flip must be a whole number in 1..{MAX_SEU_BITS:,}")
    if kind == "late" and arg:
        try:
            ms = float(arg)
        except ValueError:
            ms = math.nan
        if not 0 < ms <= MAX_LATE_MS:  # False for NaN
            raise FaultSpecError(
                f"fault {spec!r}: the lateness must be a number of ms in (0, {MAX_LATE_MS:,.0f}] (one day)"
            )
    return Fault(kind, int(when[5:]), arg)


def parse_faults(specs: list[str] | tuple[str, ...]) -> tuple[Fault, ...]:
    """Parse specs; each string may itself hold several comma-separated faults."""
    out = [parse_fault(s) for spec in specs for s in str(spec).split(",") if s.strip()]
    return tuple(out)


class FaultPlan:
    """The faults of one run, looked up by frame number."""

    def __init__(self, faults: tuple[Fault, ...], seed: int = 0) -> None:
        self.faults = faults
        self.rng = np.random.default_rng(seed)
        self.fired: list[str] = []  # the faults injected in this boot (the summary lists those that never were)

    def mark(self, fault: object) -> None:
        """Record that ``fault`` was injected."""
        self.fired.append(str(fault))

    def at(self, frame: int | None, kind: str) -> Fault | None:
        for f in self.faults:
            if f.kind == kind and f.frame == frame:
                return f
        return None

    def __bool__(self) -> bool:
        return bool(self.faults)


def flip_bits(image: np.ndarray, n_bits: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """Flip ``n_bits`` random bits of a uint8 array in place; returns (byte offset, bit) pairs. ``n_bits`` is
    at most :data:`MAX_SEU_BITS` (the list of flips is logged)."""
    if not 0 <= n_bits <= MAX_SEU_BITS:
        raise ValueError(f"flip_bits: {n_bits} bits is outside 0..{MAX_SEU_BITS:,}")
    flips = []
    for _ in range(n_bits):
        off = int(rng.integers(0, image.size))
        bit = int(rng.integers(0, 8))
        image[off] ^= np.uint8(1 << bit)
        flips.append((off, bit))
    return flips


def corrupt_frame(strip: np.ndarray, mode: str) -> np.ndarray:
    """A damaged copy of a frame strip: NaNs in a block, everything saturated, or a wrong channel count."""
    if mode == "shape":  # a channel lost in the camera interface: 2 channels, never what a camera sends
        return np.ascontiguousarray(np.repeat(strip[:, :, :1], 2, axis=2))
    if mode == "saturate":
        top = 1.0 if strip.dtype.kind == "f" else np.iinfo(strip.dtype).max
        return np.full_like(strip, top)
    out = strip.astype(np.float32)
    out /= np.float32(1.0 if strip.dtype.kind == "f" else np.iinfo(strip.dtype).max)
    out[: max(1, out.shape[0] // 4)] = np.nan
    return out
