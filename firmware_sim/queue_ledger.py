"""What the downlink queue's index keeps of finished products: each frame's outcome by its products (:class:`Outcome`,
:func:`processed_outcome`), the totals per product kind (:func:`tallies`), and the compaction that folds finished
items into those totals (:func:`compact`) so the index grows by a frame's ledger entry, not by its products.

An item sent or evicted is compacted once its frame's outcome can no longer change (the frame processed with no
product waiting, or dropped) and a save later than the one that recorded it finished (the loop reads an item right
after the pass or the put that finished it); the :data:`KEEP_EVICTED` most recent evicted items stay whole, for
the report's table of evicted items. Every eviction is also an ``evicted`` or ``queue_refused`` event in
``telemetry.jsonl``. Plain functions over the queue's items and state; :mod:`.queue` calls :func:`compact` at each
save.

The index is not bounded: it still grows with the mission, by about 130 B a frame once its products are sent (100 B
of ledger entry and 30 B of outcome; a partial frame's outcome keeps the reason of its loss, up to about 200 B), and
the items of a frame whose outcome never becomes final (left ``in_progress`` or ``interrupted`` and never taken
again) are never compacted (``scripts/queue_index_growth.py`` measures the growth, docs/firmware_sim.md quotes it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .queue_files import DAMAGED
from .queue_items import EVICTED, PENDING, SENT

KEEP_EVICTED = 100  # the most recent evicted items kept whole: the report's evicted table shows this many
WITHDRAWN = ("frame_dropped", "frame_interrupted")  # reasons of products taken back from the queue, not evicted
TALLIES = ("items", "wire_bytes", "sent_bytes", "pending", "sent", "evicted", "withdrawn", "corrupted")
OUTCOMES = ("downlinked", "partial", "queued", "dropped")


@dataclass(frozen=True)
class Outcome:
    """The final state of one acquired frame: ``outcome`` (downlinked | partial | queued | dropped), ``code``
    (a short machine-readable reason: what the summary counts by) and ``reason`` (the detail, for the ledger)."""

    outcome: str
    code: str = ""
    reason: str = ""


def boot_loss(reason: str) -> bool:
    """Whether an eviction ``reason`` is an item's file found missing or damaged by a boot's recovery (``item file
    missing after reboot``, ``item file damaged (...) after reboot``)."""
    return reason.startswith("item file ") and reason.endswith(" after reboot")


def storage_damage(reason: str) -> bool:
    """Whether an eviction ``reason`` is damage to the item's file found by a pass (``storage corruption: ...``) or
    at boot (:func:`boot_loss`), not a lack of room."""
    return reason.startswith(DAMAGED) or boot_loss(reason)


def _lost(items: list[Any]) -> str:
    return "; ".join(sorted({f"{i.kind}: {i.reason}{_sent_part(i)}" for i in items if i.status == EVICTED}))


def _sent_part(item: Any) -> str:
    """What of an evicted item was sent before it was evicted ('' when nothing was)."""
    return f" ({item.sent_packets} of {item.n_packets} packets sent)" if item.sent_packets else ""


def _all_sent(item: Any) -> bool:
    """Whether an evicted item had every packet sent first (its file grown in storage: the damage is past them)."""
    return bool(item.status == EVICTED and item.n_packets and item.sent_packets >= item.n_packets)


def processed_outcome(items: list[Any]) -> Outcome:
    """A processed frame by its products: ``dropped`` (code ``products_lost``) when every science product
    (patches, sparse pixels, latents) was evicted or refused with nothing of it sent, whatever became of its
    telemetry record; ``queued`` while any product waits, ``downlinked`` when every one was sent, else ``partial``
    (an item evicted after some of its packets were sent, storage corruption found by a pass, counts as sent in
    part: until review r6 of session 35 its frame was ``dropped``; one evicted with every packet sent, its file grown
    in storage, counts as sent). The products lost are named in the reason of each, with what of them was sent."""
    science = [i for i in items if i.kind != "telemetry"]
    lost = _lost(items)
    if not science or all(i.status == EVICTED and not i.sent_packets for i in science):
        return Outcome("dropped", "products_lost", lost or "no products")
    if any(i.status == PENDING for i in items):
        return Outcome("queued", "", lost)
    if all(i.status == SENT or _all_sent(i) for i in items):
        return Outcome("downlinked", "", lost)
    kinds = ", ".join(sorted({i.kind for i in items if i.status == EVICTED and not _all_sent(i)}))
    return Outcome("partial", f"lost {kinds}", lost)


def add_tally(into: dict[str, dict[str, int]], item: Mapping[str, Any]) -> None:
    """Count one item (its fields as the index holds them) into ``into``, by kind (:data:`TALLIES`)."""
    t = into.setdefault(str(item.get("kind", "?")), dict.fromkeys(TALLIES, 0))
    status, reason = item.get("status", PENDING), str(item.get("reason") or "")
    t["items"] += 1
    t["wire_bytes"] += int(item.get("wire_bytes") or 0)
    t["sent_bytes"] += int(item.get("sent_bytes") or 0)
    if status in (PENDING, SENT, EVICTED):
        t[status] += 1
    if status == EVICTED:
        t["withdrawn"] += reason in WITHDRAWN
        t["corrupted"] += storage_damage(reason)


def tallies(items: Iterable[Mapping[str, Any]], compacted: Any) -> dict[str, dict[str, int]]:
    """The totals per kind (:data:`TALLIES`) of every item the queue ever held: ``items`` (those in the index, as
    dicts) and ``compacted`` (the index state's totals of the items folded away; anything else counts none)."""
    out = {
        str(k): {**dict.fromkeys(TALLIES, 0), **v}
        for k, v in (compacted.items() if isinstance(compacted, dict) else ())
        if isinstance(v, dict)
    }
    for d in items:
        add_tally(out, d)
    return out


def compact(items: dict[int, Any], state: dict[str, Any], settled: set[int]) -> int:
    """Fold the finished items of ``items`` (:class:`.queue_items.Item` by id) that were already finished at the
    last save (``settled``) into ``state["compacted"]`` (:data:`TALLIES` by kind), where their frame's outcome is
    final: its ``state["frames"]`` entry then keeps it (``outcome``: [outcome, code, reason]). An item withdrawn
    when its frame was interrupted never counts for the frame; one of a frame not in the ledger is kept. Keeps the
    :data:`KEEP_EVICTED` most recent evicted items. Returns how many were compacted."""
    frames = state["frames"]
    waiting = {it.frame_id for it in items.values() if it.status == PENDING}
    evicted = sorted(i for i, it in items.items() if it.status == EVICTED)
    keep = set(evicted[-KEEP_EVICTED:])
    by_frame: dict[int, list[Any]] = {}
    for it in items.values():
        by_frame.setdefault(it.frame_id, []).append(it)
    totals = state.setdefault("compacted", {})
    gone = []
    for iid in sorted(settled):
        it = items.get(iid)
        if it is None or it.status == PENDING or iid in keep:
            continue
        entry = frames.get(str(it.frame_id))
        status = entry.get("status") if isinstance(entry, dict) else None
        if it.reason == "frame_interrupted" or status == "dropped":
            pass  # counts for no outcome: that of a dropped frame is its ledger entry's
        elif status == "processed" and it.frame_id not in waiting and entry is not None:
            if "outcome" not in entry:  # final: no product of it waits, none can be added
                o = processed_outcome([i for i in by_frame[it.frame_id] if i.reason != "frame_interrupted"])
                entry["outcome"] = [o.outcome, o.code, o.reason]
        else:
            continue
        add_tally(totals, vars(it))
        gone.append(iid)
    for iid in gone:
        del items[iid]
    return len(gone)


def _inconsistent(t: dict[str, int]) -> str:
    """What of one kind's compacted totals cannot be ('' when they add up): a compacted item is sent or evicted,
    never pending; a withdrawn or corrupted item is an evicted one. Sent bytes over the queued bytes are not
    refused: until review r10 of session 36 a pass sent the packets a file grown in storage held past those queued,
    so an index a run wrote can hold them, and refusing it left only ``--fresh``."""
    if t["pending"]:
        return f"pending {t['pending']}, not 0 (a compacted item is never pending)"
    if t["sent"] + t["evicted"] != t["items"]:
        return f"sent {t['sent']} + evicted {t['evicted']} is not its items {t['items']}"
    if t["withdrawn"] + t["corrupted"] > t["evicted"]:
        return f"withdrawn {t['withdrawn']} + corrupted {t['corrupted']} is over its evicted {t['evicted']}"
    return ""


def check_compacted(state: dict[str, Any]) -> str:
    """What is wrong with the state's ``compacted`` totals and the ledger's ``outcome`` entries ('' when nothing
    is): an object of kinds, each of :data:`TALLIES` counts >= 0 that add up (:func:`_inconsistent`: until
    review r5 of session 36 only their type was checked, so one damaged digit changed the summary's counts); an
    outcome is [outcome, code, reason]."""
    compacted = state.get("compacted", {})
    if not isinstance(compacted, dict):
        return f"state 'compacted' is {compacted!r}, not an object"
    for kind, t in compacted.items():
        if not isinstance(t, dict) or not all(
            k in TALLIES and type(v) is int and v >= 0 for k, v in t.items()
        ):  # fmt: skip
            return f"state 'compacted' of {kind} is {t!r}, not counts of {', '.join(TALLIES)} (>= 0)"
        wrong = _inconsistent({**dict.fromkeys(TALLIES, 0), **t})
        if wrong:
            return f"state 'compacted' of {kind}: {wrong}"
    for fid, entry in state["frames"].items():
        o = entry.get("outcome")
        if o is None:
            continue
        if not (isinstance(o, list) and len(o) == 3 and all(isinstance(x, str) for x in o) and o[0] in OUTCOMES):
            return f"frame {fid} of the ledger has the outcome {o!r}, not [outcome, code, reason]"
    return ""
