"""Telemetry: one JSON line per event (frame, downlink pass, fault, model event) and a summary at the end.

Lines are flushed as they are written, so a reboot keeps everything up to the last event. Every line has
``type`` (``start``, ``frame``, ``pass``, ``event``, ``recovery``, ``end``) and ``t`` (seconds since the
run started). The summary's frame accounting satisfies acquired = downlinked + queued + dropped.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from .queue import PENDING, SENT, DownlinkQueue, atomic_write


def _clean(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_clean(x) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float):
        return round(v, 6) if math.isfinite(v) else None
    return v


def dumps(record: dict[str, Any]) -> str:
    """Compact JSON with numpy scalars converted and non-finite floats as null."""
    return json.dumps(_clean(record), separators=(",", ":"), sort_keys=False)


class TelemetryWriter:
    """Appends JSON lines to ``path`` (kept open; flushed and fsynced per line)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.t0 = time.perf_counter()
        self._f: TextIO | None = self.path.open("a", encoding="utf-8")

    def write(self, type_: str, **fields: Any) -> dict[str, Any]:
        rec = {"type": type_, "t": time.perf_counter() - self.t0, **fields}
        if self._f is not None:
            self._f.write(dumps(rec) + "\n")
            self._f.flush()
            os.fsync(self._f.fileno())
        return rec

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


def frame_outcomes(queue: DownlinkQueue) -> dict[int, tuple[str, str]]:
    """Final state of every acquired frame in the ledger: (``downlinked`` | ``partial`` | ``queued`` |
    ``dropped``, reason).

    A processed frame is ``queued`` while any of its products waits, ``downlinked`` when none waits and every one
    was sent, ``partial`` (reason: the evictions) when some were sent and the others evicted or refused for room,
    and ``dropped`` (reason: the evictions) when none was sent.
    """
    by_frame: dict[int, list[Any]] = {}
    for it in queue.items.values():
        by_frame.setdefault(it.frame_id, []).append(it)
    out: dict[int, tuple[str, str]] = {}
    for key, rec in queue.state["frames"].items():
        fid = int(key)
        if rec["status"] == "dropped":
            out[fid] = ("dropped", rec["reason"])
            continue
        if rec["status"] == "in_progress":
            out[fid] = ("dropped", "reboot during processing")
            continue
        items = by_frame.get(fid, [])
        if any(i.status == PENDING for i in items):
            out[fid] = ("queued", "")
        elif any(i.status == SENT for i in items) and all(i.status == SENT for i in items):
            out[fid] = ("downlinked", "")
        elif any(i.status == SENT for i in items):
            lost = sorted({f"{i.kind}: {i.reason}" for i in items if i.status != SENT})
            out[fid] = ("partial", "; ".join(lost))
        else:
            reasons = sorted({i.reason for i in items}) or ["no products"]
            out[fid] = ("dropped", "; ".join(reasons))
    return out


def summarise(queue: DownlinkQueue, frames: list[dict[str, Any]], extra: dict[str, Any]) -> dict[str, Any]:
    """The run summary: accounting, budgets, timings, anomalies, faults (``frames``: this run's records)."""
    outcomes = frame_outcomes(queue)
    counts = Counter(s for s, _ in outcomes.values())
    drops = Counter(r for s, r in outcomes.values() if s == "dropped")
    processed = [f for f in frames if f.get("status") == "processed"]
    totals = [f["timing_ms"]["total"] for f in processed]
    items = list(queue.items.values())
    summary = {
        "frames": {
            "acquired": len(outcomes),
            "downlinked": counts["downlinked"],
            "queued": counts["queued"],
            "partial": counts["partial"],  # some products sent, the others evicted or refused for room
            "dropped": counts["dropped"],
            "drop_reasons": dict(drops),
            "partial_reasons": dict(Counter(r for s, r in outcomes.values() if s == "partial")),
            "accounted": counts["downlinked"] + counts["partial"] + counts["queued"] + counts["dropped"]
            == len(outcomes),
            "this_run": len(frames),
        },
        "queue": {
            "pending_items": sum(i.status == PENDING for i in items),
            "pending_bytes": queue.stored_bytes,
            "sent_bytes": sum(i.sent_bytes for i in items),
            "evicted_items": sum(i.status == "evicted" for i in items),
            "passes": queue.state["passes"],
        },
        "timing_ms": {
            "p50": float(np.percentile(totals, 50)) if totals else None,
            "p90": float(np.percentile(totals, 90)) if totals else None,
            "max": max(totals) if totals else None,
            "deadline_missed": sum(bool(f.get("deadline_missed")) for f in processed),
            "late": [
                {
                    "frame_id": f["frame_id"],
                    "overrun_ms": f["timing_ms"]["total"] - f.get("available_ms", 0.0),
                    "level": f["level"]["name"],
                }
                for f in processed
                if f.get("deadline_missed")
            ],
        },
        # frames by the ladder level they ran at; a frame that overran its deadline is counted under its level
        # with " (late)" after it: never as if it had met the deadline at that level
        "degradations": dict(
            Counter(f["level"]["name"] + (" (late)" if f.get("deadline_missed") else "") for f in processed)
        ),
        "degraded_in_flight": sum(bool(f.get("degraded_in_flight")) for f in processed),
        "ledger": [
            {"frame_id": fid, "source": queue.state["frames"][str(fid)]["source"], "outcome": o, "reason": r}
            for fid, (o, r) in sorted(outcomes.items())
        ],
        "anomalies": [
            {"frame_id": f["frame_id"], "source": f["source"], "patches": f["anomaly"]["patches"]}
            for f in processed
            if f.get("anomaly", {}).get("patches")
        ],
        **extra,
    }
    return _clean(summary)


def write_summary(path: str | os.PathLike[str], summary: dict[str, Any]) -> None:
    atomic_write(Path(path), (json.dumps(summary, indent=2) + "\n").encode())
