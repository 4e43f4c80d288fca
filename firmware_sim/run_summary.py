"""The sections of a flight run's ``summary.json`` beyond the frame accounting (which
:func:`.telemetry.summarise` does): mission, budgets, memory against the budget, models, faults, boots.

Functions over the :class:`~.loop.FlightRuntime` that finishes the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeae.wire.codec import PIP_AEC

from .cli_advice import fewer_threads
from .memory_meter import rss_bytes
from .telemetry import History

if TYPE_CHECKING:
    from .loop import FlightRuntime

MIB = 2**20
NO_ANOMALY_MODEL = (
    "the mission names no [anomaly] model: no patch is scored and no anomaly is sent, only sparse pixels "
    "(give one with --anomaly-model or [anomaly] model)"
)


def summary_sections(rt: FlightRuntime, history: History, records: list[dict[str, Any]]) -> dict[str, Any]:
    """The summary's sections beyond the frame accounting (every boot unless they say ``this_boot``)."""
    processed = [r for r in records if r.get("status") == "processed"]
    chosen = [r for r in rt.records if r.get("status") == "processed" and (r.get("anomaly") or {}).get("patches")]
    # in the order first fired; this boot's are in telemetry too, unless a line could not be written
    fired = list(dict.fromkeys([*history.faults_fired(), *rt.queue.state.get("faults_fired", []), *rt.faults.fired]))
    return {
        "mission": rt.m.name,
        "machine": rt.machine,  # this boot's, as its start line says (CPU, cores, load at boot, versions)
        "warnings": ([NO_ANOMALY_MODEL] if not rt.m.anomaly.model else [])
        + memory_warnings(records, rt.m.runtime.threads)
        + grey_warnings(processed),
        "colour_filter": {
            "bayer": rt.m.camera.bayer or None,
            "frames_demosaiced": sum(bool(r.get("camera", {}).get("demosaiced")) for r in processed),
            "frames_looking_like_mosaic": sum("looks_like_bayer_mosaic" in r["flags"] for r in records),
        },
        "budgets": {
            "memory_bytes": rt.m.budget.memory_bytes,
            "frame_ms": rt.m.budget.frame_ms,
            "downlink_bytes_per_pass": rt.m.budget.downlink_bytes_per_pass,
        },
        "memory": memory_summary(rt, records),
        "models": {r: (str(g.path) if g else None) for r, g in (("anomaly", rt.anomaly), ("reconstruction", rt.recon))},
        # a model the mission names that could not be loaded at boot: the run goes on without it (a flight
        # loop never stops for it), and the summary and console say so
        "models_refused": list(rt.models.refused),
        "sample_codec": codec_summary(rt),
        # a rerun into the same folder continues the mission: frames already in its ledger are not taken again
        "skipped_already_acquired": rt.skipped_already_acquired,
        "mission_settings_changed": rt.settings_changed,
        "scrub_reloads": history.count("seu_detected"),
        # products sent whole whose item file then held bytes past their packets (storage damage, nothing lost)
        **({"storage_grown_items": history.count("storage_grown")} if history.count("storage_grown") else {}),
        # pass files that could not be written (a full or read-only disk): their products stayed queued
        "downlink_passes_failed": history.count("downlink_failed"),
        "faults": [str(f) for f in rt.faults.faults],  # asked for by this boot (--inject, [runtime] inject)
        # injected in any boot on this state, asked for by this boot or not (until session 35 those of earlier
        # boots were nowhere in the summary)
        "faults_fired": fired,
        # asked for but never injected in any boot (a frame id never reached, a model the fault needs not
        # loaded)
        "faults_not_fired": [str(f) for f in rt.faults.faults if str(f) not in fired],
        "recovered_from_reboot": rt.queue.recovered,
        "boots": max(1, history.boots),
        "this_boot": {
            "frames": len(rt.records),
            "processed": sum(r.get("status") == "processed" for r in rt.records),
            "skipped_already_acquired": rt.skipped_already_acquired,
            "scrub_reloads": rt.models.reloads,
            "faults_fired": sorted(set(rt.faults.fired)),
            # frames a power loss stopped in the last boot, found in progress by this one: dropped
            # reboot_during_processing (its ``recovery`` line names them too)
            "reboot_during_processing": list((history.last_recovery or {}).get("reboot_during_processing") or []),
            # this boot's frames whose patches were chosen for the downlink (in ``anomalies``): what the console
            # lists first; anomalous only those chosen over a threshold (until session 36 every frame with top
            # patches was "anomalous", with no threshold set too)
            "top_patch_frames": [r["frame_id"] for r in chosen],
            "anomalous_frames": [r["frame_id"] for r in chosen if r["anomaly"].get("threshold") is not None],
        },
        "patches_per_s": _rate(records),
        # lines of telemetry.jsonl skipped as unreadable (cut short, not UTF-8, not JSON): what they held is not
        # counted above
        **({"telemetry_lines_unreadable": history.unreadable_lines} if history.unreadable_lines else {}),
        "inputs": rt.inputs,
    }


def grey_warnings(processed: list[dict[str, Any]]) -> list[str]:
    """One warning when frames of one stored channel that were no colour-filter mosaic flew in a colour-filter
    camera's three channels, grey copied to R, G, B (until session 46 said in each frame's telemetry only)."""
    grey = [r for r in processed if (r.get("camera") or {}).get("channels_replicated")]
    if not grey:
        return []
    names = ", ".join(Path(str(r.get("source", "?"))).name for r in grey[:3]) + (", ..." if len(grey) > 3 else "")
    return [
        f"{len(grey)} of {len(processed)} frames processed hold one grey channel and no colour-filter pattern "
        f"({names}): they flew as grey copied to R, G and B of this colour camera (camera.channels_replicated in "
        "their telemetry); a grey camera's frames belong in a grey mission"
    ]


def memory_warnings(records: list[dict[str, Any]], threads: int) -> list[str]:
    """Warnings naming the frames (of every boot) whose RSS growth went over the memory budget. A processed frame
    over it is scored and downlinked as usual, so its ledger entry says nothing of it (only its
    ``memory_over_budget`` flag and ``summary.memory.within_budget`` do): one warning names those frames, their
    highest growth and the budget to raise to, as the console's advice does (:func:`.cli_outputs.advice_lines`). A
    dropped frame's peak is a frame read whole then found invalid, no frame to size the budget for: a second
    warning names those frames without advice (their drop reasons are in the ledger). ``threads``: the mission's
    ``[runtime] threads``; lowering them is advised only above one (:func:`.cli_advice.fewer_threads`)."""
    over = [r for r in records if isinstance(r.get("memory"), dict) and r["memory"].get("over_budget")]
    processed = [r for r in over if r.get("status") == "processed"]
    dropped = [r for r in over if r.get("status") != "processed"]
    out = []
    if processed:
        peak, budget, ids, n = _over_budget(processed)
        out.append(
            f"{n} frame{'s' if n != 1 else ''} went over the {budget} MiB memory budget (frame{'s' if n != 1 else ''} "
            f"{ids}; peak growth over boot {peak / MIB:.1f} MiB): raise [budget] memory_bytes to at least "
            f"{-(-peak // MIB)} MiB{fewer_threads(threads)}"
        )
    if dropped:
        peak, budget, ids, n = _over_budget(dropped)
        out.append(
            f"{n} dropped frame{'s' if n != 1 else ''} went over the {budget} MiB memory budget before "
            f"{'they were' if n != 1 else 'it was'} dropped (frame{'s' if n != 1 else ''} {ids}; peak growth over "
            f"boot {peak / MIB:.1f} MiB): the drop reason in the ledger says why; not a frame to size the budget for"
        )
    return out


def _over_budget(over: list[dict[str, Any]]) -> tuple[int, str, str, int]:
    """(peak growth in bytes, the budgets in MiB, the frame ids, how many) of frames over the memory budget."""
    peak = max(int(r["memory"].get("rss_growth_peak") or 0) for r in over)
    budgets = sorted({int(r["memory"]["budget"]) for r in over if isinstance(r["memory"].get("budget"), int)})
    budget = " / ".join(f"{b / MIB:.0f}" for b in budgets) or "?"
    ids = ", ".join(str(r.get("frame_id")) for r in over[:10]) + (", ..." if len(over) > 10 else "")
    return peak, budget, ids, len(over)


def codec_summary(rt: FlightRuntime) -> dict[str, str]:
    """The sample codec this boot coded with: ``[downlink] codec`` as configured and as resolved (``auto`` falls
    back to delta-deflate where libaec is missing: a bigger downlink that would otherwise go unnoticed)."""
    configured, used = rt.m.downlink.codec, rt.wire.codec
    out = {"configured": configured, "used": used}
    if configured == "auto":
        out["why"] = (
            "auto: libaec is installed"
            if used == "ccsds121"
            else f"auto: libaec is not installed ({PIP_AEC} for ccsds121, the smaller downlink)"
        )
    return out


def memory_summary(rt: FlightRuntime, records: list[dict[str, Any]]) -> dict[str, Any]:
    """Frame peaks over every boot's frames; the process's own figures (``rss_boot``, ``rss_peak``,
    ``rss_after_load``, ``rss_growth*``) of this boot."""
    # this process's own peak: the per-frame high-water marks and the boot; not getrusage's ru_maxrss,
    # which on Linux keeps the peak of the process image that exec'd us (a parent that held 500 MB)
    rss_peak = max(rt.meter.rss_run_peak, rt.rss_loaded, rt.rss_boot, rss_bytes())
    mems = [r["memory"] for r in records if isinstance(r.get("memory"), dict)]
    growth = max([max(0, rt.meter.rss_run_peak - rt.rss_boot), *(int(m.get("rss_growth_peak") or 0)
                                                                    for m in mems)])  # fmt: skip
    traced = [int(m["traced_peak"]) for m in mems if isinstance(m.get("traced_peak"), int)]
    if rt.meter.enabled:
        traced.append(rt.meter.run_peak)
    budget = rt.m.budget.memory_bytes
    return {
        # the budget is enforced on RSS growth over the boot baseline; the traced peak (only with
        # [runtime] trace_allocations) is shown beside it
        "enforced_on": "rss_growth_over_boot",
        "rss_frame_peak_bytes": max([rt.meter.rss_run_peak, *(int(m.get("rss_frame_peak") or 0) for m in mems)]),
        "rss_growth_peak_bytes": growth,
        "traced_peak_bytes": max(traced) if traced else None,
        "within_budget": growth <= budget,
        "traced_within_budget": (max(traced) <= budget) if traced else None,
        "heap": rt.heap,
        "rss_boot_bytes": rt.rss_boot,
        "rss_peak_bytes": rss_peak,
        # interpreter arenas and code pages are outside tracemalloc: RSS growth over the boot baseline
        "rss_growth_bytes": rss_peak - rt.rss_boot,
        "rss_after_load_bytes": rt.rss_loaded,
        "rss_growth_in_frames_bytes": max(0, rss_peak - rt.rss_loaded),
        "scope": "frame peaks and within_budget: every boot's frames; rss_boot, rss_peak, rss_after_load, "
        "rss_growth, rss_growth_in_frames: this boot's process",
    }


def _rate(records: list[dict[str, Any]]) -> float | None:
    scored = sum(r.get("patches", {}).get("scored", 0) for r in records)
    secs = sum(r["timing_ms"]["total"] for r in records if r.get("status") == "processed") / 1e3
    return scored / secs if secs > 0 and scored else None
