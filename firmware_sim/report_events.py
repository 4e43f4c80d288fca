"""The events section of ``report.html``: the boots on the folder's state, numbered (each boot's ``t`` restarts at
0, its first row says when, in UTC), the recoveries (what each boot after the first found: the frames a power loss
stopped, the items lost), the refused boots and the events (model loads, faults, scrubs), in the order
``telemetry.jsonl`` holds them (:attr:`.telemetry_lines.History.log`). Until session 36 only the events were
listed, so after a reboot the ``t`` column went back to 0 with nothing to say a boot began, and a frame dropped
``reboot_during_processing`` was in the ledger alone.

numpy and the standard library only, like the rest of the flight runtime.
"""

from __future__ import annotations

from typing import Any

from .report_html import _detail, _e, _ids, _left_out, _num, _table

EVENTS_FIRST, EVENTS_LAST = 50, 150  # a long run's events: the first (model loads) and the last
_RECOVERY_SAID = {"type", "t", "items", "pending", "reboot_during_processing", "lost", "interrupted_unsaved",
                  "leftover_item_files", "next_frame_id"}  # fmt: skip


def _int_list(v: Any) -> list[int]:
    return [x for x in v if isinstance(x, int)] if isinstance(v, list) else []


def _recovery(r: dict[str, Any]) -> str:
    """A ``recovery`` line as a sentence: what the boot found of the state the last one left."""
    parts = [f"queue state read again: {_num(r.get('items'))} items, {_num(r.get('pending'))} pending"]
    stopped = _int_list(r.get("reboot_during_processing"))
    if stopped:
        parts.append(f"frames dropped reboot_during_processing: {_ids(stopped)} (stopped by a power loss or kill -9)")
    lost = _int_list(r.get("lost"))
    if lost:
        parts.append(f"items lost (file missing or not the size queued): {_ids(lost)}")
    again = _int_list(r.get("interrupted_unsaved"))
    if again:
        parts.append(f"frames marked interrupted, to take again (the queue index could not be saved): {_ids(again)}")
    if r.get("leftover_item_files"):
        parts.append(f"{_num(r['leftover_item_files'])} files of items sent or evicted before the power loss removed")
    if r.get("next_frame_id") is not None:
        parts.append(f"next frame id {_num(r['next_frame_id'])}")
    parts += [_detail(k, v) for k, v in r.items() if k not in _RECOVERY_SAID]
    return "; ".join(parts)


def _row(boot: int, r: dict[str, Any]) -> list[str]:
    """One row: boot, t, what, detail (the cells as HTML)."""
    kind = r.get("type")
    number = str(boot) if boot else "–"
    if kind == "start":
        resumed = r.get("resumed")
        state = " (resumed)" if resumed is True else " (a new state)" if resumed is False else ""
        when = f"utc {r.get('utc')} at t = 0" if r.get("utc") else "no utc recorded"
        return [number, _num(r.get("t"), 2), _e(f"boot {boot}{state}"), _e(f"{when}, pid {r.get('pid', '?')}")]
    if kind == "recovery":
        return [number, _num(r.get("t"), 2), "recovery", _e(_recovery(r))]
    if kind == "boot_refused":
        why = f"{r.get('error', '?')}: {r.get('reason', '?')}"
        return ["–", "–", "boot refused", _e(f"{why} (not counted among the boots; its other lines taken back)")]
    detail = {k: v for k, v in r.items() if k not in ("type", "t", "kind", "sha256")}
    text = ", ".join(_detail(k, v) for k, v in detail.items())
    return [number, _num(r.get("t"), 2), _e(r.get("kind", "")), _e(text)]


def _events(log: list[tuple[int, dict[str, Any]]]) -> str:
    """The events section from ``(boot, record)`` pairs: the first :data:`EVENTS_FIRST` and the last
    :data:`EVENTS_LAST` rows of a long run."""
    if not log:
        return "<p>No event.</p>"
    cut = max(0, len(log) - EVENTS_FIRST - EVENTS_LAST)
    shown = log[:EVENTS_FIRST] + log[-EVENTS_LAST:] if cut else log
    rows = [_row(boot, r) for boot, r in shown]
    note = (
        "<p class='note'>Every boot on this folder's state, numbered: its t (seconds) restarts at 0, its first row "
        "gives that moment in UTC; a boot after the first says what it found (recovery).</p>"
    )
    rule = f"the first {EVENTS_FIRST} and the last {EVENTS_LAST}"
    where = "telemetry.jsonl ('start', 'recovery' and 'event' records)"
    return (
        note
        + _table(["boot", "t (s)", "event", "detail"], rows, left=4)
        + _left_out(cut, len(log), "events", rule, where)
    )
