"""The downlink queue's records: product priorities, item statuses and the index format version, one queued
:class:`Item`, what a downlink pass sent (:class:`PassReport`, with why a pass sent nothing), and
:class:`IndexNotSaved`. Plain data; :mod:`.queue` keeps the queue that holds and persists them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .queue_files import DAMAGED

PRIORITY: dict[str, int] = {"patch": 0, "telemetry": 1, "sparse": 2, "latent": 3}
PENDING, SENT, EVICTED = "pending", "sent", "evicted"
# 2: items carry ``crc32`` (session 35); 3: finished items compacted into ``state.compacted`` totals, the frame's
# outcome in its ledger entry (session 36: an older reader would count such a frame's products lost). Versions 1
# and 2 are read too; an older reader refuses 3
INDEX_VERSION = 3
READ_VERSIONS = (1, 2, INDEX_VERSION)


class IndexNotSaved(OSError):
    """The queue index could not be written (a full or read-only disk; the message names the file): memory is ahead
    of the index on disk, which still holds what the last save wrote. The loop cannot go on without it (the frame
    in progress is marked interrupted, :func:`.stops.interrupted`), unlike a product that cannot be stored."""

    def __init__(self, path: Path, exc: OSError) -> None:
        why = exc.strerror or str(exc)
        msg = why if exc.filename is None and str(path) in why else f"cannot write {path}: {why}"
        super().__init__(*((exc.errno, msg) if exc.errno is not None else (msg,)))
        self.path = str(path)


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
    crc32: int | None = None  # of the item file as queued (None: queued before session 35); checked before a pass

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
    # items whose file was found damaged (or gone) and evicted, reason "storage corruption: ..." (their packets
    # before the damage sent, when this pass had room for them; until session 35 the pass stopped for good)
    damaged: tuple[int, ...] = ()
    # items sent whole whose file held more than their queued packets (grown in storage: the bytes past them were
    # never queued nor sent): SENT, the damage in their reason (until review r16 of session 36 evicted as corrupted)
    grown: tuple[int, ...] = ()


def _why_nothing_sent(too_big: tuple[Item, int] | None, budget_bytes: int, damaged: int = 0) -> str:
    """Why a downlink pass sent no packet (:meth:`.queue.DownlinkQueue.downlink_pass`); ``damaged``: the items it found
    damaged and evicted."""
    if too_big is None:
        lost = f": {damaged} damaged item(s) evicted ({DAMAGED})" if damaged else ""
        return f"nothing to send in a pass of {int(budget_bytes):,} B{lost}"
    it, size = too_big
    return (
        f"the first item waiting does not fit a pass: item {it.id} ({it.kind} of frame {it.frame_id}, "
        f"{it.wire_bytes - it.sent_bytes:,} B to send) has a packet of {size:,} B, over the pass budget of "
        f"{int(budget_bytes):,} B (it was queued under other packet settings: raise [budget] "
        f"downlink_bytes_per_pass to at least {size} to send it)"
    )
