"""Several packet files, one stream or captures of their own: which ground station gets each file's packets
(:func:`feed_captures`; docs/ground.md, "Several packet files"). Split from :mod:`.sources` in session 37, whose
old names (``edgeae.ground.sources.feed_captures``, ...) still import."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from edgeae.wire.stream import Damage

if TYPE_CHECKING:
    from .station import GroundStation


CAPTURE_LOOKAHEAD = 64
"""Packets at the start of a file (after the first) compared with each capture before the file is given to one."""
CAPTURE_LOOKAHEAD_BYTES = 4 << 20
"""... or fewer, once they hold this many bytes (what deciding may buffer)."""


@dataclass
class Capture:
    """One stream of packets, decoded by a station of its own, and the files it was read from (in order)."""

    station: GroundStation
    files: list[str] = field(default_factory=list)
    reason: str = ""  # why its first file continues no earlier capture ("" for the first)
    skipped: int = 0  # bytes that formed no packet
    damage: list[Damage] = field(default_factory=list)


def feed_captures(paths: Iterable[str | Path], station: GroundStation) -> list[Capture]:
    """Hand the packets of ``paths`` (files, or folders of ``*.bin`` files in the order the flight wrote them:
    :func:`~.sources.packet_files`, by pass number) to ``station``, except those of a file that is another capture:
    it gets a station of its own (:meth:`GroundStation.sibling`, writing into ``station.out / "capture_<k>"``), so
    two frames under one id in two captures are both rebuilt.

    Each file is compared with the captures so far, in order, by its first :data:`CAPTURE_LOOKAHEAD` packets
    (:meth:`~edgeae.ground.reassembly.Receiver.clash`) and joins the one whose counts it continues most closely
    (a product it continues first, then :meth:`~edgeae.ground.reassembly.Receiver.distance`; the oldest on a tie):
    flight passes (sequence counts continuing from pass to pass, a frame spanning two files) and two
    receptions of one transmission stay one capture; a file whose counts restart starts a new one. Packets
    are streamed as :func:`feed_packets` does (memory: at most the look-ahead besides what the stations keep)."""
    from .sources import feed_packets, packet_files  # imported here: sources re-exports this module's names

    caps = [Capture(station)]
    for path in paths:
        for f in packet_files(path):
            router = _FileRouter(caps, str(f))
            skipped, damage = feed_packets(f, router.take)
            cap = router.decide()
            cap.files.append(str(f))
            cap.skipped += skipped
            cap.damage += damage
    return caps


class _FileRouter:
    """Buffers the first packets of one file until it is known which capture the file belongs to."""

    def __init__(self, caps: list[Capture], path: str) -> None:
        self.caps, self.path = caps, path
        self.buf: list[bytes] = []
        self.nbytes = 0
        # the first file read (nothing received yet) starts capture 1: nothing to compare it with
        self.cap: Capture | None = caps[0] if len(caps) == 1 and not caps[0].station.receiver.received else None

    def take(self, _arrival: float, packet: bytes) -> None:
        if self.cap is not None:
            self.cap.station.receiver.receive(packet, source=self.path)
            return
        self.buf.append(packet)
        self.nbytes += len(packet)
        if len(self.buf) >= CAPTURE_LOOKAHEAD or self.nbytes >= CAPTURE_LOOKAHEAD_BYTES:
            self.decide()

    def decide(self) -> Capture:
        if self.cap is None:
            self.cap = self._choose()
            for packet in self.buf:
                self.cap.station.receiver.receive(packet, source=self.path)
            self.buf = []
        return self.cap

    def _choose(self) -> Capture:
        why = ""
        fits: list[tuple[int, int, int, Capture]] = []
        for k, cap in enumerate(self.caps):
            rx = cap.station.receiver
            reason = next((w for w in map(rx.clash, self.buf) if w), "")
            if reason:
                why = why or reason
                continue
            # the capture this file continues: first one with a product the file's pieces continue (a frame
            # spanning two passes), then the one whose counts it follows most closely (a later pass of the second
            # of two missions must not join the first just because nothing clashes there), the oldest on a tie
            # (two spacecraft whose passes alternate: each file joins the capture it started in)
            open_product = any(map(rx.continues, self.buf))
            near = [d for d in map(rx.distance, self.buf) if d is not None]
            fits.append((0 if open_product else 1, min(near) if near else 1 << 30, k, cap))
        if fits:
            return min(fits, key=lambda f: f[:3])[3]
        out = self.caps[0].station.out
        cap = Capture(
            self.caps[0].station.sibling(None if out is None else out / f"capture_{len(self.caps) + 1}"),
            reason=f"{self.path} does not continue the stream of the files before it: {why}",
        )
        self.caps.append(cap)
        return cap
