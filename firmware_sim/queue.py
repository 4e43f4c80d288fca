"""The onboard downlink queue: prioritised, bounded, persisted to disk, and accountable.

Products are packetised when they are queued (so their wire size is known) and kept as files of CCSDS packets under
``DIR/items/``; the index ``DIR/index.json`` is rewritten atomically (temporary file, fsync, rename) after every
change, so a reboot at any instant loses nothing that was queued. Every write goes through a temporary file named
for the process (``.NAME.tmp-PID``, :func:`edgeae.atomic.temp_name`: two processes never rename each other's half
file); those a power loss left are removed when a flight run boots, holding the folder
(:meth:`DownlinkQueue.sweep_stale_temps`), never by a reader such as ``firmware-sim report``.

A downlink pass sends packets in strict priority order (anomaly patches, then telemetry, then sparse pixels, then
latents; oldest first within a priority) until the next packet does not fit (an item whose next packet is larger
than a whole pass, from a boot with other packet settings, is passed over, never sent, rather than stall the
queue); a product larger than what is left is sent in part and finished on the next pass (every packet decodes on
its own). Sequence counts are stamped at send time, so they run without gaps in transmit order across passes and
reboots.

When onboard storage (``capacity_bytes``) is full, items of lower priority than the newcomer are evicted, the
lowest-priority and oldest first, except an item already sent in part (finished first: the ground reassembles a
product from consecutive sequence counts); an item of the same or a higher priority is never evicted for it (a
newcomer that no such eviction makes room for is refused, reason ``queue_full``: what was queued first goes first).
Every eviction and refusal is recorded with its reason.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from .atomic_files import atomic_write as atomic_write
from .atomic_files import remove_stale_temps as remove_stale_temps

PRIORITY: dict[str, int] = {"patch": 0, "telemetry": 1, "sparse": 2, "latent": 3}
PENDING, SENT, EVICTED = "pending", "sent", "evicted"
INDEX_VERSION = 1


class IndexNotSaved(OSError):
    """The queue index could not be written (a full or read-only disk; the message names the file): memory is ahead
    of the index on disk, which still holds what the last save wrote. The loop cannot go on without it (the frame
    in progress is marked interrupted, :func:`.stops.interrupted`), unlike a product that cannot be stored."""

    def __init__(self, path: Path, exc: OSError) -> None:
        why = exc.strerror or str(exc)
        msg = why if exc.filename is None and str(path) in why else f"cannot write {path}: {why}"
        super().__init__(*((exc.errno, msg) if exc.errno is not None else (msg,)))
        self.path = str(path)


def split_packets(data: bytes) -> list[bytes]:
    """Cut concatenated CCSDS space packets apart using each primary header's length field."""
    out, i = [], 0
    while i + 6 <= len(data):
        n = 7 + struct.unpack_from(">H", data, i + 4)[0]
        out.append(data[i : i + n])
        i += n
    if i != len(data):
        raise ValueError(f"{len(data) - i} trailing bytes are not a whole space packet")
    return out


def restamp(packet: bytes, seq_count: int) -> bytes:
    """The packet with its 14-bit sequence count replaced and its CRC-16 recomputed."""
    from edgeae.wire.packets import crc16  # (spacepackets) so reading a queue index needs numpy and stdlib only

    b = bytearray(packet)
    word = struct.unpack_from(">H", b, 2)[0]
    struct.pack_into(">H", b, 2, (word & 0xC000) | (seq_count & 0x3FFF))
    struct.pack_into(">H", b, len(b) - 2, crc16(bytes(b[:-2])))
    return bytes(b)


@dataclass
class Item:
    """One queued product (metadata; the packets live in a file)."""

    id: int
    kind: str
    priority: int
    frame_id: int
    n_packets: int
    wire_bytes: int
    status: str = PENDING
    sent_packets: int = 0
    sent_bytes: int = 0
    reason: str = ""

    @property
    def file(self) -> str:
        return f"{self.id:08d}.pkt"


@dataclass(frozen=True)
class PassReport:
    """What one downlink pass sent."""

    index: int
    bytes_sent: int
    packets_sent: int
    items_completed: int
    items_partial: int
    path: str
    index_error: str = ""  # the pass file was written but the queue index could not be saved (the error)
    # no packet could be sent (the first item waiting has a packet larger than the whole pass): no pass file was
    # written, ``index`` is the last pass number used, nothing changed; why, naming the item, its size and the budget
    skipped: str = ""


class DownlinkQueue:
    """A persistent prioritised queue of packetised products in ``root`` (created if absent)."""

    def __init__(self, root: str | os.PathLike[str], capacity_bytes: int) -> None:
        self.root = Path(root)
        self.items_dir = self.root / "items"
        self.items_dir.mkdir(parents=True, exist_ok=True)
        self.capacity_bytes = int(capacity_bytes)
        self.items: dict[int, Item] = {}
        self.state: dict[str, Any] = {"next_id": 0, "passes": 0, "seq": {}, "frames": {}, "next_frame_id": 0}
        self.recovered = False
        self.lost_on_recovery: list[int] = []
        self.unsaved = ""  # the error of the last save when it failed: the index on disk is behind memory
        self.stale_temps: list[str] = []  # removed by sweep_stale_temps (a boot); opening the queue removes nothing
        self.passes_skipped: list[str] = []  # why each pass of this process that could send nothing sent nothing
        if (self.root / "index.json").is_file():
            self._load()

    def sweep_stale_temps(self, downlink: Path | None = None, *, held: bool = True) -> list[str]:
        """Remove what a power loss or ``kill -9`` mid-write left: the index's and the items' temporaries, and the
        pass files' in ``downlink``; returns their names (also in :attr:`stale_temps`). Only a flight run's boot
        calls it, while it holds the output folder: no other run writes these files then, so each is stale. Where
        the folder could not be locked (``held`` False: a file system without ``flock``) a live process's
        temporaries are kept."""
        found = remove_stale_temps(self.root, lambda n: n == "index.json", any_pid=held)
        found += remove_stale_temps(self.items_dir, lambda n: n.endswith(".pkt"), any_pid=held)
        if downlink is not None:
            found += remove_stale_temps(downlink, lambda n: n.startswith("pass_") and n.endswith(".bin"), any_pid=held)
        self.stale_temps += found
        return found

    # ----------------------------------------------------------------------------------- persistence
    def _load(self) -> None:
        path = self.root / "index.json"
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: queue index unreadable ({exc})") from exc
        if doc.get("version") != INDEX_VERSION:
            raise ValueError(f"{path}: queue index version {doc.get('version')!r} is not {INDEX_VERSION}")
        self.state = doc["state"]
        self.items = {int(d["id"]): Item(**d) for d in doc["items"]}
        for it in self.items.values():  # a pending item must still have its packets
            if it.status == PENDING and not (self.items_dir / it.file).is_file():
                it.status, it.reason = EVICTED, "item file missing after reboot"
                self.lost_on_recovery.append(it.id)
        self.recovered = True

    def save(self) -> None:
        """Write the index atomically; :class:`IndexNotSaved` (naming it) when it cannot be written."""
        doc = {
            "version": INDEX_VERSION,
            "state": self.state,
            "items": [asdict(i) for i in self.items.values()],
        }
        index = self.root / "index.json"
        try:
            atomic_write(index, json.dumps(doc, separators=(",", ":")).encode())
        except OSError as exc:
            err = IndexNotSaved(index, exc)
            self.unsaved = str(err)
            raise err from exc
        self.unsaved = ""

    # --------------------------------------------------------------------------------------- queries
    @property
    def stored_bytes(self) -> int:
        return sum(i.wire_bytes - i.sent_bytes for i in self.items.values() if i.status == PENDING)

    def pending(self) -> list[Item]:
        return sorted((i for i in self.items.values() if i.status == PENDING), key=lambda i: (i.priority, i.id))

    def frame_items(self, frame_id: int) -> list[Item]:
        return [i for i in self.items.values() if i.frame_id == frame_id]

    # --------------------------------------------------------------------------------------- enqueue
    def put(self, kind: str, frame_id: int, packets: Iterable[bytes]) -> tuple[Item, list[Item]]:
        """Queue one product's packets; returns the item and the items evicted to make room.

        The returned item's status is ``evicted`` (reason ``queue_full``) when no room could be made.
        Call :meth:`save` after the frame's products are queued (the loop does).
        """
        item = Item(
            id=int(self.state["next_id"]),
            kind=kind,
            priority=PRIORITY[kind],
            frame_id=int(frame_id),
            n_packets=0,
            wire_bytes=0,
        )
        from edgeae.atomic import temp_name

        final = self.items_dir / item.file
        tmp = temp_name(final)  # per process: another process writing the same id never renames this half file
        try:
            with tmp.open("wb") as f:  # streamed: a huge sparse frame never sits in memory as one bytes object
                for p in packets:  # a lazy packetiser may refuse here (too many packets): nothing is left behind
                    f.write(p)
                    item.n_packets += 1
                    item.wire_bytes += len(p)
                f.flush()
                os.fsync(f.fileno())
        except BaseException as exc:
            tmp.unlink(missing_ok=True)
            if isinstance(exc, OSError) and exc.filename is None:  # a failed write or fsync names no file
                msg = f"cannot write queue item {final}: {exc.strerror or exc}"
                raise (OSError(exc.errno, msg) if exc.errno is not None else OSError(msg)) from exc
            raise
        self.state["next_id"] = item.id + 1
        self.items[item.id] = item
        evicted = self._make_room(item)
        if item.status == PENDING:
            os.replace(tmp, final)
        else:
            tmp.unlink(missing_ok=True)
        return item, evicted

    def _make_room(self, new: Item) -> list[Item]:
        need = self.stored_bytes - self.capacity_bytes  # new is pending already, so counted in stored_bytes
        evicted: list[Item] = []
        if need <= 0:
            return evicted
        # an item already sent in part is finished, never evicted: the counts of its unsent packets would go to later
        # products, and the ground reassembles a product from consecutive counts (docs/wire-format.md)
        victims = sorted(
            (
                i
                for i in self.items.values()
                if i.status == PENDING and i.id != new.id and i.priority > new.priority and i.sent_packets == 0
            ),
            key=lambda i: (-i.priority, i.id),
        )
        freeable = sum(v.wire_bytes - v.sent_bytes for v in victims)
        if freeable < need:
            new.status, new.reason = EVICTED, "queue_full"
            return evicted
        for v in victims:
            if need <= 0:
                break
            need -= v.wire_bytes - v.sent_bytes
            self._evict(v, f"evicted for higher-priority item {new.id}")
            evicted.append(v)
        return evicted

    def withdraw(self, item: Item, reason: str) -> None:
        """Take a pending item off the queue (its file removed), recorded as evicted for ``reason``."""
        self._evict(item, reason)

    def _evict(self, item: Item, reason: str) -> None:
        item.status, item.reason = EVICTED, reason
        (self.items_dir / item.file).unlink(missing_ok=True)

    # -------------------------------------------------------------------------------------- downlink
    def downlink_pass(self, budget_bytes: int, out_dir: str | os.PathLike[str]) -> PassReport:
        """Send up to ``budget_bytes`` of packets into ``out_dir/pass_NNNNN.bin`` (written atomically), in strict
        priority order: the pass ends at the first packet that does not fit, so a product resumed in the next pass
        continues at the next sequence counts of its APID (until session 31 smaller packets of later items filled the
        rest, and the ground split the mission into captures and counted phantom losses).

        Nothing in memory changes until the pass file is on disk, and the index is saved right after, so an
        interruption at any point either sent the pass (file and state) or did not (neither). A pass file that
        cannot be written raises ``OSError`` (naming the file) with nothing changed: every item stays pending and
        the next pass sends it under the same pass number. A pass that can send nothing (every item waiting has a
        packet larger than the whole pass) writes no file and uses no pass number: its report's ``skipped`` says why,
        naming the first such item, its packet's size and the budget."""
        index = int(self.state["passes"]) + 1
        seq = dict(self.state["seq"])
        out: list[bytes] = []
        sent: list[tuple[Item, int, int]] = []  # (item, packets, bytes) taken in this pass
        left = int(budget_bytes)
        full = False  # a packet did not fit: the pass ends there (strict priority order, no gap filling)
        too_big: tuple[Item, int] | None = None  # the first item passed over and the size of its next packet
        for it in self.pending():
            if left <= 0 or full:
                break
            took = took_bytes = 0
            rest = split_packets((self.items_dir / it.file).read_bytes())[it.sent_packets :]
            if rest and len(rest[0]) > budget_bytes:  # can never fit a pass (other packet settings): passed over
                too_big = too_big or (it, len(rest[0]))
                continue
            for p in rest:
                if len(p) > left:
                    # later, smaller packets of other items would fit, but taking them would put their sequence
                    # counts between this item's sent and unsent packets: the ground reassembles a product from
                    # consecutive counts (docs/wire-format.md), so the rest of this item must come next
                    full = True
                    break
                apid = struct.unpack_from(">H", p, 0)[0] & 0x7FF
                n = seq.get(str(apid), 0)
                seq[str(apid)] = (n + 1) % (1 << 14)
                out.append(restamp(p, n))
                left -= len(p)
                took, took_bytes = took + 1, took_bytes + len(p)
            sent.append((it, took, took_bytes))
        if not out:  # an empty pass file would tell the ground nothing: none is written, no pass number used
            self.passes_skipped.append(_why_nothing_sent(too_big, budget_bytes))
            return PassReport(index - 1, 0, 0, 0, 0, "", skipped=self.passes_skipped[-1])
        path = Path(out_dir) / f"pass_{index:05d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, b"".join(out))
        done = partial = 0
        for it, took, took_bytes in sent:
            it.sent_packets += took
            it.sent_bytes += took_bytes
            if it.sent_packets == it.n_packets:
                it.status = SENT
                done += 1
            elif took:
                partial += 1
        self.state["seq"], self.state["passes"] = seq, index
        report = PassReport(index, int(budget_bytes) - left, len(out), done, partial, str(path))
        try:
            self.save()  # only after the pass file is on disk: a crash in between resends, never loses
        except OSError as exc:  # the pass was sent; the next save records it. Until then a reboot would load the
            return replace(report, index_error=str(exc))  # old index: keep the sent items' packets
        for it in self.items.values():
            if it.status == SENT:
                (self.items_dir / it.file).unlink(missing_ok=True)
        return report


def _why_nothing_sent(too_big: tuple[Item, int] | None, budget_bytes: int) -> str:
    """Why a downlink pass sent no packet (:meth:`DownlinkQueue.downlink_pass`)."""
    if too_big is None:
        return f"nothing to send in a pass of {int(budget_bytes):,} B"
    it, size = too_big
    return (
        f"the first item waiting does not fit a pass: item {it.id} ({it.kind} of frame {it.frame_id}, "
        f"{it.wire_bytes - it.sent_bytes:,} B to send) has a packet of {size:,} B, over the pass budget of "
        f"{int(budget_bytes):,} B (it was queued under other packet settings: raise [budget] "
        f"downlink_bytes_per_pass to at least {size} to send it)"
    )
