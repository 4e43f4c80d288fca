"""Telemetry: the summary at the end of a run and its frame accounting (the lines themselves, one JSON line per
event, are written and read in :mod:`.telemetry_lines`; their names are importable from here as well).

The summary is built from the lines of every boot on the folder's state (a reboot, an interrupted run, a rerun),
and its frame accounting satisfies acquired = downlinked + partial + queued + dropped.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from .queue import DownlinkQueue, atomic_write
from .queue_ledger import WITHDRAWN as WITHDRAWN
from .queue_ledger import Outcome as Outcome
from .queue_ledger import processed_outcome
from .queue_ledger import storage_damage as storage_damage
from .state import boot_of
from .telemetry_lines import History as History
from .telemetry_lines import TelemetryNotWritten as TelemetryNotWritten
from .telemetry_lines import TelemetryWriter as TelemetryWriter
from .telemetry_lines import _clean
from .telemetry_lines import dumps as dumps
from .telemetry_lines import history_of as history_of
from .telemetry_lines import read_history as read_history
from .telemetry_lines import read_lines as read_lines
from .telemetry_lines import read_lines_with as read_lines_with
from .telemetry_lines import read_records as read_records
from .telemetry_lines import run_finished as run_finished
from .telemetry_lines import utc_iso as utc_iso

INTERRUPTED = "interrupted: the run was stopped during this frame; a rerun with the same --out takes it again"


def frame_outcomes(queue: DownlinkQueue) -> dict[int, Outcome]:
    """The outcome of every acquired frame in the ledger (see :func:`.queue_ledger.processed_outcome`); a frame dropped
    before its products keeps the code it was dropped with (``unreadable``, ``invalid_shape``, ...). One dropped
    ``memory_unavailable`` that a later run took again (``retaken_as``, :func:`.frame_intake.acquire`) is
    ``retaken``: not an acquired frame, its retake is."""
    by_frame: dict[int, list[Any]] = {}
    for it in queue.items.values():
        by_frame.setdefault(it.frame_id, []).append(it)
    out: dict[int, Outcome] = {}
    for key, rec in queue.state["frames"].items():
        fid = int(key)
        status = rec["status"]
        if rec.get("retaken_as") is not None:  # superseded by the frame that took it again: not counted
            code = rec.get("code") or str(rec["reason"]).split(":", 1)[0]
            out[fid] = Outcome("retaken", code, f"{rec['reason']} (taken again as frame {rec['retaken_as']})")
        elif status == "dropped":
            code = rec.get("code") or str(rec["reason"]).split(":", 1)[0]
            out[fid] = Outcome("dropped", code, rec["reason"])
        elif status == "in_progress":
            out[fid] = Outcome("dropped", "reboot_during_processing", "reboot during processing")
        elif status == "interrupted":
            out[fid] = Outcome("dropped", "interrupted", INTERRUPTED)
        elif isinstance(rec.get("outcome"), list):  # final: its products compacted (queue_ledger.compact)
            out[fid] = Outcome(*rec["outcome"])
        else:  # what an interrupted attempt at this frame had queued was withdrawn: not this attempt's
            items = [i for i in by_frame.get(fid, []) if i.reason != "frame_interrupted"]
            out[fid] = processed_outcome(items)
    return out


def retake_unsaved(queue: DownlinkQueue, path: str | os.PathLike[str]) -> list[int]:
    """The frames the queue index holds ``in_progress`` that the last boot in ``telemetry.jsonl`` (``path``) marked
    interrupted, by an ``interrupted`` event or its ``recovery`` line's ``interrupted_unsaved``: that boot stopped
    because the index could not be saved (a full disk), so the mark is in telemetry only. They are marked
    ``interrupted`` in ``queue``'s ledger (in memory), so a rerun takes them again. A frame a power loss stopped
    has no such line and stays ``reboot_during_processing``; telemetry is read only when a frame is in progress,
    and of it only the lines that may say so are parsed."""
    frames = queue.state["frames"]
    waiting = {int(k) for k, e in frames.items() if e["status"] == "in_progress"}
    if not waiting:
        return []
    lines = read_lines_with(path, (b'"start"', b'"interrupted"', b'"recovery"'))  # the others are not parsed
    starts = [i for i, r in enumerate(lines) if r.get("type") == "start"]
    named: set[int] = set()
    for r in lines[starts[-1] :] if starts else []:
        if r.get("type") == "event" and r.get("kind") == "interrupted" and isinstance(r.get("frame_id"), int):
            named.add(r["frame_id"])
        elif r.get("type") == "recovery":
            named.update(x for x in r.get("interrupted_unsaved") or [] if isinstance(x, int))
    retaken = sorted(waiting & named)
    for fid in retaken:
        old = frames[str(fid)]  # its boot kept (state.retake_candidates)
        frames[str(fid)] = {"source": old["source"], "status": "interrupted", "reason": INTERRUPTED, **boot_of(old)}
    return retaken


def summarise(queue: DownlinkQueue, frames: list[dict[str, Any]], extra: dict[str, Any]) -> dict[str, Any]:
    """The run summary: accounting, budgets, timings, anomalies, faults. ``frames``: the frame records of every
    boot on this state (:func:`read_history`), so a recovery or a rerun counts the frames of earlier boots."""
    outcomes = frame_outcomes(queue)
    counts = Counter(o.outcome for o in outcomes.values())
    acquired = len(outcomes) - counts["retaken"]
    processed = [f for f in frames if f.get("status") == "processed"]
    totals = [f["timing_ms"]["total"] for f in processed]
    by_kind = queue.tallies().values()  # every item, those compacted into totals included
    summary = {
        "frames": {
            "acquired": acquired,
            "downlinked": counts["downlinked"],
            "queued": counts["queued"],
            "partial": counts["partial"],  # some products sent (or part of one), the others evicted or refused
            "dropped": counts["dropped"],
            # by reason code; each frame's detail is in the ledger
            "drop_reasons": dict(Counter(o.code for o in outcomes.values() if o.outcome == "dropped")),
            "partial_reasons": dict(Counter(o.code for o in outcomes.values() if o.outcome == "partial")),
            "accounted": counts["downlinked"] + counts["partial"] + counts["queued"] + counts["dropped"] == acquired,
            # attempts dropped memory_unavailable that a later run took again: in the ledger, counted as neither
            **({"retaken": counts["retaken"]} if counts["retaken"] else {}),
            "processed": sum(r["status"] == "processed" for r in queue.state["frames"].values()),  # every boot
        },
        "queue": {
            "pending_items": sum(t["pending"] for t in by_kind),
            "pending_bytes": queue.stored_bytes,
            "sent_bytes": sum(t["sent_bytes"] for t in by_kind),
            "evicted_items": sum(t["evicted"] for t in by_kind),
            "withdrawn_items": sum(t["withdrawn"] for t in by_kind),  # among them
            # among them too: evicted because their file was damaged or missing (a pass's "storage corruption: ...",
            # a boot's "item file ... after reboot"), not for room
            "corrupted_items": sum(t["corrupted"] for t in by_kind),
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
            {
                "frame_id": fid,
                "source": queue.state["frames"][str(fid)]["source"],
                "outcome": o.outcome,
                "code": o.code,
                "reason": o.reason,
                **({"retaken_as": queue.state["frames"][str(fid)]["retaken_as"]} if o.outcome == "retaken" else {}),
                **boot_of(queue.state["frames"][str(fid)]),  # the boot that took it in (cli_advice.retaken_lines)
            }
            for fid, o in sorted(outcomes.items())
        ],
        "anomalies": _anomalies(processed),
        **extra,
    }
    return _clean(summary)


def _anomalies(processed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The frames whose patches were chosen for the downlink, with them: over ``threshold`` when it is a number
    (anomalous), the frame's highest-scoring ``top_k`` by rank when it is None (none judged anomalous)."""
    return [
        {
            "frame_id": r["frame_id"],
            "source": r.get("source"),
            "threshold": r["anomaly"].get("threshold"),
            "patches": r["anomaly"]["patches"],
        }
        for r in processed
        if (r.get("anomaly") or {}).get("patches")
    ]


def rebuild_summary(out: str | os.PathLike[str]) -> tuple[dict[str, Any], list[str]]:
    """A summary of an incomplete run (rebooted, interrupted, killed) from what its folder holds: the frame
    records and events of ``telemetry.jsonl``, the ledger and queue of ``queue/index.json`` and the mission of
    ``mission.json``; and the names of those that are missing. Without the queue index the outcome of a
    processed frame is ``unknown`` (its products' fate is in the index only)."""
    root = Path(out)
    missing = [n for n in ("telemetry.jsonl", "queue/index.json", "mission.json") if not (root / n).is_file()]
    history = read_history(root / "telemetry.jsonl")
    records = [history.frames[k] for k in sorted(history.frames)]
    try:
        mission = json.loads((root / "mission.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        mission = {}
    if not isinstance(mission, dict):  # valid JSON but no mission record: as unreadable
        mission = {}
    settings = mission.get("settings")
    if not isinstance(settings, dict):
        settings = {}
    extra: dict[str, Any] = {
        "mission": mission.get("name") or "?",
        "budgets": {k: settings.get(f"budget.{k}") for k in ("memory_bytes", "frame_ms", "downlink_bytes_per_pass")},
        "boots": history.boots,
        **({"boots_refused": history.refused_boots} if history.refused_boots else {}),
        # the last boot's, as a finished run's summary copies it (until review r10 of session 36 a rebuilt one had none)
        **({"machine": history.machine} if history.machine is not None else {}),
        # as a finished run's summary says them (run_summary.summary_sections), from the events: the faults the
        # boots injected (those asked for are not recorded, so none is said "not fired") and the scrub reloads
        "faults": history.faults_fired(),
        "faults_fired": history.faults_fired(),
        "scrub_reloads": history.count("seu_detected"),
        **({"storage_grown_items": history.count("storage_grown")} if history.count("storage_grown") else {}),
        **({"telemetry_lines_unreadable": history.unreadable_lines} if history.unreadable_lines else {}),
        "incomplete": {
            "why": "the last boot did not write a summary (rebooted, interrupted or killed)",
            "missing": missing,
        },
    }
    if (root / "queue" / "index.json").is_file():
        queue = DownlinkQueue(root / "queue", 1 << 62)  # read only: nothing is queued or saved
        retake_unsaved(queue, root / "telemetry.jsonl")  # a frame the index could not mark interrupted: as a rerun
        ledger = queue.state["frames"]
        summary = summarise(queue, [r for r in records if str(r["frame_id"]) in ledger], extra)
    else:
        retaken = {e.get("retakes") for e in history.events if e.get("kind") == "frame_retaken"}
        summary = _summary_without_queue([r for r in records if r["frame_id"] not in retaken], extra)
    return summary, missing


def _summary_without_queue(records: list[dict[str, Any]], extra: dict[str, Any]) -> dict[str, Any]:
    """Frame accounting from the frame records alone: a processed frame's outcome is ``unknown``."""
    outcome = {r["frame_id"]: ("unknown" if r.get("status") == "processed" else "dropped") for r in records}
    counts = Counter(outcome.values())
    processed = [r for r in records if r.get("status") == "processed"]
    totals = [r["timing_ms"]["total"] for r in processed if isinstance(r.get("timing_ms"), dict)]
    return _clean(
        {
            "frames": {
                "acquired": len(records),
                "downlinked": 0,
                "queued": 0,
                "partial": 0,
                "dropped": counts["dropped"],
                "unknown": counts["unknown"],
                "drop_reasons": dict(Counter(str(r.get("reason")) for r in records if r.get("status") == "dropped")),
                "accounted": False,
                "processed": len(processed),
            },
            "timing_ms": {
                "p50": float(np.percentile(totals, 50)) if totals else None,
                "max": max(totals) if totals else None,
                "deadline_missed": sum(bool(r.get("deadline_missed")) for r in processed),
            },
            "ledger": [
                {
                    "frame_id": r["frame_id"],
                    "source": r.get("source"),
                    "outcome": outcome[r["frame_id"]],
                    "code": str(r.get("reason") or ""),
                    "reason": str(r.get("detail") or ""),
                }
                for r in records
            ],
            "anomalies": _anomalies(processed),
            **extra,
        }
    )


def write_summary(path: str | os.PathLike[str], summary: dict[str, Any]) -> None:
    atomic_write(Path(path), (json.dumps(summary, indent=2) + "\n").encode())
