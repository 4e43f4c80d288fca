"""Ground-side packet intake: check, de-duplicate, count gaps (14-bit wrap) and group pieces by product.

:class:`Receiver` takes packets in any order and never raises on bad input: every packet it cannot use is
counted by reason (``edgeae.wire.parse.REASONS``; CCSDS idle fill apart, in ``idle``), and charged to its
sequence count as corrupt or refused when its primary header can be read. Sequence counts are unwrapped per APID
by :class:`edgeae.ground.seq_tracker.SeqTracker`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from edgeae.wire.packets import SEQ_MODULO
from edgeae.wire.parse import KIND_OF_APID, Packet, WireError, parse_packet, peek_header

from .limits import GroundLimits
from .seq_tracker import SeqTracker

DAMAGED = ("crc", "length", "short")
"""Parse failures of a packet damaged on the way (unverified header): charged to its count as corrupt. Other
reasons (``header``, ``codec``, ``samples``, ``type``, ``version``) come after the CRC matched: refused."""


@dataclass
class Assembly:
    """The received pieces of one product (kind, frame id, patch index).

    Pieces are grouped by their frame-level header fields; the group with the most pieces is the product
    (so one damaged packet that slipped past the CRC cannot take over a frame by arriving first), and
    pieces of the other groups count as inconsistent.
    """

    kind: str
    frame_id: int
    groups: dict[tuple, dict[int, Packet]] = field(default_factory=dict)
    seq0s: dict[tuple, int] = field(default_factory=dict)  # unwrapped count of part 0, per group
    # pieces that came again under a part already held, with other contents (not a copy): the first is kept
    conflicting: int = 0

    def _main(self) -> tuple:
        return max(self.groups, key=lambda g: len(self.groups[g]))

    @property
    def pieces(self) -> dict[int, Packet]:
        return self.groups[self._main()]

    @property
    def header(self) -> dict:
        return next(iter(self.pieces.values())).header

    @property
    def parts(self) -> int:
        return next(iter(self.pieces.values())).parts

    @property
    def inconsistent(self) -> int:
        main = self._main()
        return sum(len(v) for g, v in self.groups.items() if g != main)

    def snapshot(self) -> Assembly:
        """A copy that later packets cannot change (for a decoder running beside the receiver)."""
        return Assembly(
            self.kind, self.frame_id, {g: dict(v) for g, v in self.groups.items()}, dict(self.seq0s), self.conflicting
        )

    @property
    def seq_range(self) -> tuple[int, int]:
        s0 = self.seq0s[self._main()]
        return s0, s0 + self.parts


# header fields that must agree between the pieces of one product
_FRAME_KEYS = {
    "sparse": ("height", "width", "channels", "bit_depth", "keep", "pattern", "seed", "prng_version"),
    "latent": (
        "encoder_id",
        "height",
        "width",
        "channels",
        "tile",
        "stride",
        "grid_rows",
        "grid_cols",
        "dtype",
        "scale",
        "latent_shape",
    ),
    "patch": ("x", "y", "size", "channels", "bit_depth", "score"),
    "telemetry": ("total",),
}


def _same(value: object) -> object:
    """A header value as a grouping key: NaN equals NaN (a NaN score must not split a product into pieces)."""
    return "nan" if isinstance(value, float) and value != value else value


def same_piece(a: Packet, b: Packet) -> bool:
    """Whether two valid packets carry the same piece: the same headers and the same decoded samples (a copy or
    a resend, whatever its count or codec), not another piece under the same part (a second product under one id)."""
    return (
        a.parts == b.parts
        and a.header.keys() == b.header.keys()
        and all(_same(a.header[k]) == _same(b.header[k]) for k in a.header)
        and a.samples.dtype == b.samples.dtype
        and a.samples.shape == b.samples.shape
        and a.samples.tobytes() == b.samples.tobytes()
    )


@dataclass
class SessionTotals:
    """What the receivers of one session keep in all (several captures decoded together share one): the
    ``max_session_*`` and ``max_products`` limits bound these, so N captures cannot hold N times the memory."""

    kept_bytes: int = 0
    accepted: int = 0
    products: int = 0


class Receiver:
    """Accepts raw packets; keeps the good ones grouped by product and counts everything else.

    ``totals``: shared with the receivers of other captures of the same session (:meth:`sibling`)."""

    def __init__(self, limits: GroundLimits | None = None, totals: SessionTotals | None = None) -> None:
        self.limits = limits or GroundLimits()
        self.totals = totals if totals is not None else SessionTotals()
        self.kept_bytes = 0  # bytes of accepted packets held in memory
        self.source_bytes: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self.received = 0
        self.received_bytes = 0
        self.accepted = 0
        self.duplicates = 0
        self.conflicting = 0  # pieces under a part already held with other contents: set aside, not copies
        self.idle = 0  # CCSDS idle packets (APID 0x7FF): fill, counted apart from rejected
        self.trackers: dict[int, SeqTracker] = {}
        self.products: dict[tuple[str, int, int], Assembly] = {}
        self._seen: set[tuple] = set()
        # valid packets under an (APID, count) already received with other contents: two streams mixed
        self.count_conflicts: Counter[int] = Counter()
        self.foreign_apids: Counter[int] = Counter()  # CRC-valid packets refused as ``apid``, by their APID

    def _tracker(self, apid: int) -> SeqTracker:
        return self.trackers.setdefault(apid, SeqTracker())

    def receive(self, data: bytes, source: str | None = None) -> Packet | None:
        """Take one packet; returns it when it was new and valid, else None (and counts why).

        ``source`` (a sender address) is charged for the bytes kept, up to ``limits.max_source_bytes``; the
        session as a whole keeps at most ``max_session_bytes`` / ``max_session_packets``.
        """
        self.received += 1
        self.received_bytes += len(data)
        lim = self.limits
        tot = self.totals
        if tot.kept_bytes + len(data) > lim.max_session_bytes or tot.accepted >= lim.max_session_packets:
            self.rejected["session_limit"] += 1
            return None
        if source is not None and self.source_bytes[source] + len(data) > lim.max_source_bytes:
            self.rejected["source_limit"] += 1
            return None
        try:
            pkt = parse_packet(data)
        except WireError as exc:
            if exc.reason == "idle":  # CCSDS fill: neither damage nor a product's packet
                self.idle += 1
                return None
            self.rejected[exc.reason] += 1
            if exc.reason == "apid":  # another APID than this wire format's (another instrument's): say which
                self.foreign_apids[(data[0] & 0x07) << 8 | data[1]] += 1  # parse_packet read 6 bytes: at most 2,047
            self._attribute(data, damaged=exc.reason in DAMAGED)
            return None
        except Exception:  # a parser bug must not stop the ground station; count it apart
            self.rejected["internal"] += 1
            self._attribute(data, damaged=False)
            return None
        t = self._tracker(pkt.apid)
        pid = (pkt.kind, pkt.frame_id, int(pkt.header.get("index", 0)))
        if pid not in self.products and tot.products >= lim.max_products:
            # refused before anything is remembered of it: a flood of new products cannot grow memory
            self.rejected["product_limit"] += 1
            return None
        u = t.unwrap(pkt.seq_count)
        key = (pkt.apid, u, pkt.frame_id, pkt.part, data[-2:])
        if key in self._seen:
            self.duplicates += 1
            return None
        if u in t.valid:  # another packet under this count: not a copy of the one received (CRC or piece differ)
            self.count_conflicts[pkt.apid] += 1
        self._seen.add(key)
        t.valid.add(u)
        if pid not in self.products:
            tot.products += 1
        asm = self.products.setdefault(pid, Assembly(pkt.kind, pkt.frame_id))
        sig = (pkt.parts, *(_same(pkt.header[k]) for k in _FRAME_KEYS[pkt.kind]))
        group = asm.groups.setdefault(sig, {})
        asm.seq0s.setdefault(sig, u - pkt.part)
        held = group.get(pkt.part)
        if held is not None:
            if same_piece(held, pkt):
                self.duplicates += 1  # the same piece under another count: a resend
            else:  # another piece under this part (a second product under the same id): the first is kept
                self.conflicting += 1
                asm.conflicting += 1
            return None
        group[pkt.part] = pkt
        self.accepted += 1
        self.kept_bytes += len(data)
        tot.accepted += 1
        tot.kept_bytes += len(data)
        if source is not None:
            self.source_bytes[source] += len(data)
        return pkt

    def _attribute(self, data: bytes, damaged: bool) -> None:
        """Charge a packet that arrived but could not be used to its APID and count, when its primary header
        can be read and names a wire APID: ``damaged`` (CRC, length, cut short) as corrupt, else (CRC-valid,
        refused for its headers or samples) as refused. The header is unverified (a CRC failure) or was refused:
        an attribution, not a fact, so it never moves the counter's top. Bounded: a flood of such packets
        cannot grow the sets without end."""
        peek = peek_header(data)
        if not peek or peek[0] not in KIND_OF_APID:
            return
        t = self._tracker(peek[0])
        if len(t.corrupt) + len(t.refused) >= self.limits.max_session_packets:
            return
        u = t.unwrap(peek[1], update=False)
        if damaged:
            t.add_corrupt(u)
        else:
            t.add_refused(u)

    def clash(self, data: bytes) -> str | None:
        """Why the valid packet ``data`` cannot continue the stream received so far, or None (it can, or it is
        not valid). It cannot when its APID and count were received with other contents (the counts of another
        sender, or of a restarted one), or when it is a piece of a product received already, with the same
        frame-level headers, at a count that is not that product's (a second frame under the same id that
        would be taken for resends). Only reads the receiver's state."""
        if not self.trackers:  # nothing received: anything can start the stream
            return None
        try:
            pkt = parse_packet(data)
        except Exception:  # not valid: no evidence either way
            return None
        t = self.trackers.get(pkt.apid)
        if t is None:
            return None
        u = t.unwrap(pkt.seq_count, update=False)
        if u in t.valid and (pkt.apid, u, pkt.frame_id, pkt.part, data[-2:]) not in self._seen:
            return (
                f"APID {pkt.apid:#x} count {pkt.seq_count} was already received with other contents "
                "(its sequence counts restart or belong to another sender)"
            )
        asm = self.products.get((pkt.kind, pkt.frame_id, int(pkt.header.get("index", 0))))
        sig = (pkt.parts, *(_same(pkt.header[k]) for k in _FRAME_KEYS[pkt.kind]))
        if asm is not None and sig in asm.seq0s and asm.seq0s[sig] != u - pkt.part:
            s0 = asm.seq0s[sig] % SEQ_MODULO
            return (
                f"{pkt.kind} {pkt.frame_id} was received at counts from {s0}, a piece with the same headers "
                f"arrives at count {pkt.seq_count} (another frame under the same id)"
            )
        return None

    def continues(self, data: bytes) -> bool:
        """Whether the valid packet ``data`` is a piece of a product received here, with the same frame-level
        headers, at the count that product's pieces give it (its pass continued in another file)."""
        try:
            pkt = parse_packet(data)
        except Exception:
            return False
        t = self.trackers.get(pkt.apid)
        asm = self.products.get((pkt.kind, pkt.frame_id, int(pkt.header.get("index", 0))))
        if t is None or asm is None:
            return False
        sig = (pkt.parts, *(_same(pkt.header[k]) for k in _FRAME_KEYS[pkt.kind]))
        return asm.seq0s.get(sig) == t.unwrap(pkt.seq_count, update=False) - pkt.part

    def distance(self, data: bytes) -> int | None:
        """How far the valid packet ``data``'s count lies from the highest count received under its APID (0: it
        overlaps or directly follows what was received), or None when it is not valid or its APID has none."""
        try:
            pkt = parse_packet(data)
        except Exception:
            return None
        t = self.trackers.get(pkt.apid)
        if t is None or t.top is None:
            return None
        return max(0, t.unwrap(pkt.seq_count, update=False) - t.top - 1)

    def product_report(self, asm: Assembly) -> dict:
        """Packets expected, received, corrupt and refused (by sequence count in the product's range) and lost
        (never arrived in any form)."""
        t = self.trackers[{v: k for k, v in KIND_OF_APID.items()}[asm.kind]]
        a, b = asm.seq_range
        corrupt = t.corrupt_in(a, b)
        refused = t.refused_in(a, b)
        received = len(asm.pieces)
        # pieces of this product that arrived only with other frame-level headers (damaged headers that
        # passed the CRC) arrived: they are inconsistent, not lost on the link
        stray = set().union(*(set(g) for g in asm.groups.values())) - set(asm.pieces) if asm.groups else set()
        stray = {p for p in stray if 0 <= p < asm.parts}
        return {
            "kind": asm.kind,
            "frame_id": asm.frame_id,
            "packets_expected": asm.parts,
            "packets_received": received,
            "packets_corrupt": corrupt,
            "packets_refused": refused,
            "packets_lost": max(0, asm.parts - received - corrupt - refused - len(stray)),
            "packets_inconsistent": asm.inconsistent,
            "packets_conflicting": asm.conflicting,
        }

    def stream_report(self) -> dict:
        """Totals for the whole session: packets received (= accepted + duplicates + conflicting + idle + rejected),
        accepted, duplicated, conflicting (another piece under a part already held), idle fill, rejected by reason,
        gaps."""
        gaps = {}
        for apid, t in sorted(self.trackers.items()):
            kind = KIND_OF_APID.get(apid, hex(apid))
            ranges = [a.seq_range for a in self.products.values() if a.kind == kind]
            n_missing, runs = t.gaps(ranges)
            span = t.span(ranges)
            gaps[kind] = {
                "apid": apid,
                "received": len(t.valid),
                "corrupt": len(t.corrupt - t.valid),
                "refused": len(t.refused - t.valid - t.corrupt),
                "missing": n_missing,
                "missing_ranges": runs,
                # gaps are counted between these (wrapped) counts only: see SEQUENCE_SCOPE
                "first_count": None if span is None else span[0] % SEQ_MODULO,
                "last_count": None if span is None else span[1] % SEQ_MODULO,
                "count_conflicts": self.count_conflicts[apid],
            }
        return {
            "packets_received": self.received,
            "bytes_received": self.received_bytes,
            "packets_accepted": self.accepted,
            "bytes_kept": self.kept_bytes,
            "duplicates": self.duplicates,
            "conflicting": self.conflicting,
            "idle_packets": self.idle,
            "rejected": dict(sorted(self.rejected.items())),
            # the APIDs of the packets in rejected.apid, with how many of each
            "rejected_apids": {f"{a:#05x}": n for a, n in sorted(self.foreign_apids.items())},
            "sequence": gaps,
            "sequence_scope": SEQUENCE_SCOPE,
            "products": len(self.products),
        }


SEQUENCE_SCOPE = (
    "missing counts are counted from first_count to last_count of each APID (the counts received, widened by the "
    "products they belong to): a product lost whole before the first count received or after the last one (at the "
    "start or end of a pass decoded without the passes around it) cannot be seen; flight counts start at 0 on a "
    "mission's first pass and continue across passes and reboots"
)
"""What the per-APID gap counts of ``stream.json`` cannot see (written there as ``sequence_scope``)."""
