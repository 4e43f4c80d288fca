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
reboots. Every item file is checked before a packet of it is re-stamped (:func:`.queue_files.packets_to_send`):
one damaged in storage sends what it holds intact before the damage and is evicted, ``storage corruption: ...``.

When onboard storage (``capacity_bytes``) is full, items of lower priority than the newcomer are evicted, the
lowest-priority and oldest first, except an item already sent in part (finished first: the ground reassembles a
product from consecutive sequence counts); an item of the same or a higher priority is never evicted for it (a
newcomer that no such eviction makes room for is refused, reason ``queue_full``: what was queued first goes first).
Every eviction and refusal is recorded with its reason.

"Bounded" is the stored products (``capacity_bytes``), not the index: it holds every frame's ledger entry (about
100 B, 130 B once its outcome is kept) and the products still waiting, and grows with the mission
(:mod:`.queue_ledger`).
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from .atomic_files import atomic_write as atomic_write
from .atomic_files import remove_stale_temps as remove_stale_temps
from .queue_files import PacketDamaged as PacketDamaged
from .queue_files import check_index, packets_to_send, remove_item_files, state_without_index
from .queue_files import restamp as restamp
from .queue_files import split_packets as split_packets
from .queue_items import EVICTED as EVICTED
from .queue_items import INDEX_VERSION as INDEX_VERSION
from .queue_items import PENDING as PENDING
from .queue_items import PRIORITY as PRIORITY
from .queue_items import READ_VERSIONS as READ_VERSIONS
from .queue_items import SENT as SENT
from .queue_items import IndexNotSaved as IndexNotSaved
from .queue_items import Item as Item
from .queue_items import PassReport as PassReport
from .queue_items import _why_nothing_sent
from .queue_ledger import KEEP_EVICTED as KEEP_EVICTED
from .queue_ledger import check_compacted, compact, tallies


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
        self.leftover_files: list[str] = []  # sent or evicted items' files a power loss left, removed by the sweep
        self.passes_skipped: list[str] = []  # why each pass of this process that could send nothing sent nothing
        self.over_capacity = ""  # at load: the stored bytes over capacity_bytes (lowered since they were queued)
        self._sent_files: set[int] = set()  # items whose file goes once a save records them sent or evicted
        self._settled: set[int] = set()  # items finished at the last save: the next save may compact them
        index = self.root / "index.json"
        if index.is_file():
            self._load()
        elif found := state_without_index(self.root):  # until session 35 the mission silently started over
            raise ValueError(
                f"{index} is missing but the state folder holds earlier boots' files ({'; '.join(found)}): starting "
                "over would reuse the frame ids, pass numbers and sequence counts already sent and overwrite the "
                "products still queued; restore the index, or run with --fresh to discard that state"
            )

    def sweep_stale_temps(self, downlink: Path | None = None, *, held: bool = True) -> list[str]:
        """Remove what a power loss or ``kill -9`` mid-write left: the index's and the items' temporaries, and the
        pass files' in ``downlink``; returns their names (also in :attr:`stale_temps`). Also removes the files of
        items the index records sent or evicted that a power loss kept (:attr:`leftover_files`). Only a flight
        run's boot calls it, while it holds the output folder: no other run writes these files then, so each is
        stale. Where the folder could not be locked (``held`` False: a file system without ``flock``) a live
        process's temporaries are kept."""
        found = remove_stale_temps(self.root, lambda n: n == "index.json", any_pid=held)
        found += remove_stale_temps(self.items_dir, lambda n: n.endswith(".pkt"), any_pid=held)
        if downlink is not None:
            found += remove_stale_temps(downlink, lambda n: n.startswith("pass_") and n.endswith(".bin"), any_pid=held)
        self.stale_temps += found
        # item files of items the index records sent or evicted (or compacted: any id below next_id that waits for
        # nothing): the save that records them removes them after its rename, so a power loss in between kept them
        # on flash for good, outside the capacity (until review r6 of session 35; before session 35 every pass
        # removed every sent item's file). One scandir per boot
        keep = {i for i, it in self.items.items() if it.status == PENDING} | self._sent_files
        below = int(self.state["next_id"])
        self.leftover_files = remove_item_files(self.items_dir, lambda i: i < below and i not in keep)
        return found

    # ----------------------------------------------------------------------------------- persistence
    def _load(self) -> None:
        path = self.root / "index.json"
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: queue index unreadable ({exc})") from exc
        version = doc.get("version") if isinstance(doc, dict) else None
        if version not in READ_VERSIONS:
            raise ValueError(f"{path}: queue index version {version!r} is not {INDEX_VERSION} (or 1, 2)")
        wrong = check_index(doc, Item.__dataclass_fields__, PRIORITY) or check_compacted(doc["state"])
        if wrong:  # valid JSON of the wrong structure (until session 35 a KeyError or TypeError traceback)
            raise ValueError(f"{path}: queue index unreadable ({wrong})")
        self.state = doc["state"]
        self.items = {int(d["id"]): Item(**d) for d in doc["items"]}
        for it in self.items.values():  # a pending item must still have its packets, all of them
            if it.status != PENDING:
                continue
            try:
                size = (self.items_dir / it.file).stat().st_size
            except OSError:
                size = -1
            if size != it.wire_bytes:  # cut short or grown: the pass would send damage (session 35: stopped it)
                why = "missing" if size < 0 else f"damaged ({size:,} B, {it.wire_bytes:,} B were queued)"
                it.status, it.reason = EVICTED, f"item file {why} after reboot"
                self._sent_files.add(it.id)
                self.lost_on_recovery.append(it.id)
        self.recovered = True
        lost = set(self.lost_on_recovery)
        self._settled = {i for i, it in self.items.items() if it.status != PENDING and i not in lost}
        if self.stored_bytes > self.capacity_bytes:
            self.over_capacity = (
                f"{self.stored_bytes:,} B of queued products are stored, over queue_capacity_bytes = "
                f"{self.capacity_bytes:,} B ({self.stored_bytes / max(1, self.capacity_bytes):.1f}x; lowered since "
                "they were queued): they stay queued and go out in priority order (the queue evicts only for a "
                "newcomer of higher priority), and a new product is queued only where evicting lower-priority "
                "items brings storage under the capacity"
            )

    def save(self) -> None:
        """Write the index atomically; :class:`IndexNotSaved` (naming it) when it cannot be written. Items finished
        at the last save whose frame's outcome is final are compacted first (:func:`.queue_ledger.compact`): the
        index keeps totals per kind and the frame's outcome, not each item (until session 36 every item stayed,
        ~170 B a product, for good)."""
        compact(self.items, self.state, self._settled)
        # vars(), not dataclasses.asdict (a deep copy per item): 30,000 items, 7,500 frames saved in 0.2-0.3 s, not 1 s
        doc = {"version": INDEX_VERSION, "state": self.state, "items": [vars(i) for i in self.items.values()]}
        index = self.root / "index.json"
        try:
            atomic_write(index, json.dumps(doc, separators=(",", ":")).encode())
        except OSError as exc:
            err = IndexNotSaved(index, exc)
            self.unsaved = str(err)
            raise err from exc
        self.unsaved = ""
        self._settled = {i for i, it in self.items.items() if it.status != PENDING}
        done, self._sent_files = self._sent_files, set()  # the index records them sent or evicted: files go
        for iid in done:
            (self.items_dir / f"{iid:08d}.pkt").unlink(missing_ok=True)

    # --------------------------------------------------------------------------------------- queries
    @property
    def stored_bytes(self) -> int:
        return sum(i.wire_bytes - i.sent_bytes for i in self.items.values() if i.status == PENDING)

    def pending(self) -> list[Item]:
        return sorted((i for i in self.items.values() if i.status == PENDING), key=lambda i: (i.priority, i.id))

    def tallies(self) -> dict[str, dict[str, int]]:
        """Totals per kind of every item this queue ever held, those compacted included
        (:func:`.queue_ledger.tallies`: items, wire_bytes, sent_bytes, pending, sent, evicted, withdrawn,
        corrupted)."""
        return tallies((vars(i) for i in self.items.values()), self.state.get("compacted"))

    def frame_items(self, frame_id: int) -> list[Item]:
        return [i for i in self.items.values() if i.frame_id == frame_id]

    # --------------------------------------------------------------------------------------- enqueue
    def put(self, kind: str, frame_id: int, packets: Iterable[bytes]) -> tuple[Item, list[Item]]:
        """Queue one product's packets; returns the item and the items evicted to make room.

        The returned item's status is ``evicted`` (reason ``queue_full``) when no room could be made: known before a
        byte is written for packets given as a sequence (nothing is written), and for a lazy packetiser once its
        packets pass the most room evictions could make (the rest are counted, not written). A product that is
        stored is written before the items evicted for it are removed (a failed write evicts nothing): storage holds
        up to that product over ``capacity_bytes`` in between, and a ``kill -9`` there leaves a temporary file the
        next boot removes. Call :meth:`save` after the frame's products are queued (the loop does).
        """
        item = Item(
            id=int(self.state["next_id"]),
            kind=kind,
            priority=PRIORITY[kind],
            frame_id=int(frame_id),
            n_packets=0,
            wire_bytes=0,
        )
        room = self.capacity_bytes - self.stored_bytes + sum(v.wire_bytes for v in self._victims(item))
        if isinstance(packets, Sequence) and sum(map(len, packets)) > room:  # refused without touching storage
            item.n_packets, item.wire_bytes = len(packets), sum(map(len, packets))
            item.status, item.reason = EVICTED, "queue_full"
            self.state["next_id"] = item.id + 1
            self.items[item.id] = item
            return item, []
        from edgeae.atomic import temp_name

        final = self.items_dir / item.file
        tmp = temp_name(final)  # per process: another process writing the same id never renames this half file
        crc = 0
        try:
            with tmp.open("wb") as f:  # streamed: a huge sparse frame never sits in memory as one bytes object
                for p in packets:  # a lazy packetiser may refuse here (too many packets): nothing is left behind
                    item.n_packets += 1
                    item.wire_bytes += len(p)
                    if item.wire_bytes <= room:  # past it the product is refused: counted, never written
                        f.write(p)
                        crc = zlib.crc32(p, crc)
                f.flush()
                os.fsync(f.fileno())
        except BaseException as exc:
            tmp.unlink(missing_ok=True)
            if isinstance(exc, OSError) and exc.filename is None:  # a failed write or fsync names no file
                msg = f"cannot write queue item {final}: {exc.strerror or exc}"
                raise (OSError(exc.errno, msg) if exc.errno is not None else OSError(msg)) from exc
            raise
        item.crc32 = crc  # what a pass checks the file against before it sends a packet of it
        self.state["next_id"] = item.id + 1
        self.items[item.id] = item
        evicted = self._make_room(item)
        if item.status == PENDING:
            os.replace(tmp, final)
        else:
            tmp.unlink(missing_ok=True)
        return item, evicted

    def _victims(self, new: Item) -> list[Item]:
        """The items that may be evicted for ``new``, in eviction order: pending items of lower priority, the
        lowest-priority and oldest first. An item already sent in part is finished, never evicted: the counts of
        its unsent packets would go to later products, and the ground reassembles a product from consecutive counts
        (docs/wire-format.md)."""
        return sorted(
            (
                i
                for i in self.items.values()
                if i.status == PENDING and i.id != new.id and i.priority > new.priority and i.sent_packets == 0
            ),
            key=lambda i: (-i.priority, i.id),
        )

    def _make_room(self, new: Item) -> list[Item]:
        need = self.stored_bytes - self.capacity_bytes  # new is pending already, so counted in stored_bytes
        evicted: list[Item] = []
        if need <= 0:
            return evicted
        victims = self._victims(new)
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
        naming the first such item, its packet's size and the budget.

        Each item's file is checked before a packet of it is re-stamped (:func:`.queue_files.item_packets`): one
        damaged in storage (cut short, a bit flipped, gone) sends the packets before the damage, then is evicted with
        the reason (``storage corruption: ...``, the report's ``damaged``), and the pass goes on with the next."""
        index = int(self.state["passes"]) + 1
        seq = dict(self.state["seq"])
        out: list[bytes] = []
        sent: list[tuple[Item, int, int, str]] = []  # (item, packets, bytes, damage when they are all it had left)
        damaged: list[tuple[Item, str]] = []  # nothing of it can be sent: evicted with the pass
        left = int(budget_bytes)
        full = False  # a packet did not fit: the pass ends there (strict priority order, no gap filling)
        too_big: tuple[Item, int] | None = None  # the first item passed over and the size of its next packet
        for it in self.pending():
            if left <= 0 or full:
                break
            took = took_bytes = 0
            rest, why = packets_to_send(self.items_dir / it.file, it)
            if why and not rest:
                damaged.append((it, why))
                continue
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
                out.append(restamp(p, n, check=False))  # checked by packets_to_send
                left -= len(p)
                took, took_bytes = took + 1, took_bytes + len(p)
            sent.append((it, took, took_bytes, why if took == len(rest) else ""))
        if not out:  # an empty pass file would tell the ground nothing: none is written, no pass number used
            self.passes_skipped.append(_why_nothing_sent(too_big, budget_bytes, len(damaged)))
            report = PassReport(index - 1, 0, 0, 0, 0, "", skipped=self.passes_skipped[-1])
            return self._evict_damaged(report, damaged)
        path = Path(out_dir) / f"pass_{index:05d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, b"".join(out))
        done = partial = 0
        grown: list[int] = []
        for it, took, took_bytes, why in sent:
            it.sent_packets += took
            it.sent_bytes += took_bytes
            if why and it.sent_packets < it.n_packets:  # its packets before the damage are sent: no more can be
                damaged.append((it, why))
            elif it.sent_packets == it.n_packets:
                it.status = SENT  # a file grown in storage too: every queued packet is sent, nothing of it lost (until
                if why:  # review r16 of session 36 evicted as storage corruption, counted as a product lost)
                    it.reason = why  # the damage past its packets: the report's ``grown``
                    grown.append(it.id)
                self._sent_files.add(it.id)  # removed once the index records it (save)
                done += 1
            elif took:
                partial += 1
        self.state["seq"], self.state["passes"] = seq, index
        report = PassReport(index, int(budget_bytes) - left, len(out), done, partial, str(path), grown=tuple(grown))
        # saved only after the pass file is on disk: a crash in between resends, never loses. A save that fails
        # keeps the sent items' files (a reboot would load the old index); the next save records and removes them
        return self._evict_damaged(report, damaged, save=True)

    def _evict_damaged(self, report: PassReport, damaged: list[tuple[Item, str]], save: bool = False) -> PassReport:
        """``report`` with the damaged items evicted (their files removed by the save) and the index saved when
        the pass sent something or evicted anything (``index_error`` when it could not be)."""
        for it, why in damaged:
            it.status, it.reason = EVICTED, why
            self._sent_files.add(it.id)
        if damaged:
            report = replace(report, damaged=tuple(it.id for it, _ in damaged))
        if save or damaged:
            try:
                self.save()
            except OSError as exc:  # the pass was sent; the next save records it
                return replace(report, index_error=str(exc))
        return report
