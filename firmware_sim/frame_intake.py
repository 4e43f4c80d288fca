"""A frame's way into the loop, before its pixels are processed: its ledger entry (``in_progress``, or
``dropped`` with its reason), the faults placed on it (``reboot``, ``late``, ``bad-frame``), its reader with the
header checked and any colour filter applied, and whether its buffers fit the memory budget now; at boot,
whether a fixed camera's frames can fit at all (buffers, packets per product).

Functions over the :class:`~.loop.FlightRuntime` whose frame they take in (as :mod:`.frame_work` does).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeae.wire.packets import overhead

from .budget import plan_memory, rss_bytes
from .faults import SimulatedReboot
from .frames import ArrayFrame, FrameError, FrameReader, open_frame
from .mission import Mission, MissionError
from .reader_wrappers import Corrupted, Demosaiced
from .validate import check_header

if TYPE_CHECKING:
    from .loop import FlightRuntime


def drop(rt: FlightRuntime, rec: dict[str, Any], reason: str, detail: str = "") -> dict[str, Any]:
    rec.update(status="dropped", reason=reason, detail=detail)
    rt.queue.state["frames"][str(rec["frame_id"])] = {
        "source": rec["source"],
        "status": "dropped",
        "reason": f"{reason}: {detail}" if detail else reason,
        "code": reason,  # what the summary counts drops by; the detail stays in the ledger
    }
    rt.queue.save()
    return rec


def reboot_if_due(rt: FlightRuntime, fid: int) -> None:
    """The ``reboot`` fault placed before frame ``fid``: it fires once per output folder, so the same command
    run again recovers instead of rebooting again before the same frame."""
    reboot = rt.faults.at(fid, "reboot")
    fired: list[str] = rt.queue.state.setdefault("faults_fired", [])
    if reboot is None or str(reboot) in fired:
        return
    fired.append(str(reboot))
    rt.queue.save()
    rt.tm.write("event", kind="fault_injected", fault=str(reboot))
    rt.faults.mark(reboot)
    rt.tm.close()
    rt.meter.stop()
    rt.models.close()
    raise SimulatedReboot(f"reboot before frame {fid}")


def acquire(rt: FlightRuntime, frame: str | os.PathLike[str] | np.ndarray, frame_id: int | None) -> dict[str, Any]:
    """Enter the frame in the ledger (``in_progress``) under the next frame id, or under ``frame_id`` when
    it retries a frame an interrupted run did not finish; its record so far."""
    fno = rt.frame_no
    rt.frame_no += 1
    # faults are placed by frame id (counted across reboots)
    fid = int(rt.queue.state["next_frame_id"]) if frame_id is None else frame_id
    if frame_id is None:
        reboot_if_due(rt, fid)
        rt.queue.state["next_frame_id"] = fid + 1
    source = "array" if isinstance(frame, np.ndarray) else str(frame)
    rt.queue.state["frames"][str(fid)] = {"source": source, "status": "in_progress", "reason": ""}
    rt.queue.save()
    rt._current = fid
    rec: dict[str, Any] = {"frame_id": fid, "frame_no": fno, "source": source, "flags": [], "events": []}
    if frame_id is not None:
        rec["flags"].append("retried_after_interrupt")
    return rec


def late_fault(rt: FlightRuntime, rec: dict[str, Any]) -> float:
    """The lateness (ms) of a ``late`` fault placed on this frame, else 0."""
    late = rt.faults.at(rec["frame_id"], "late")
    lateness = float(late.arg) if late and late.arg else (0.6 * rt.m.budget.frame_ms if late else 0.0)
    if late:
        rt.tm.write("event", kind="fault_injected", fault=str(late), lateness_ms=lateness)
        rt.faults.mark(late)
        rec["flags"].append("late")
    rec["lateness_ms"] = lateness
    return lateness


def open_reader(
    rt: FlightRuntime, frame: str | os.PathLike[str] | np.ndarray, rec: dict[str, Any]
) -> FrameReader | None:
    """The frame's reader, damaged by a ``bad-frame`` fault, its header checked, demosaiced when the camera
    has a colour filter; None (the frame dropped with its reason) when it cannot be flown."""
    fid = rec["frame_id"]
    try:
        reader: FrameReader = ArrayFrame(frame, "array") if isinstance(frame, np.ndarray) else open_frame(frame)
    except (FrameError, OSError) as exc:
        drop(rt, rec, "unreadable", str(exc))
        return None
    except Exception as exc:  # any reader failure drops this frame only, with its reason
        drop(rt, rec, "unreadable", f"{type(exc).__name__}: {exc}")
        return None
    bad = rt.faults.at(fid, "bad-frame")
    if bad is not None:
        rt.tm.write("event", kind="fault_injected", fault=str(bad))
        rt.faults.mark(bad)
        reader = Corrupted(reader, bad.arg or "nan")
    verdict = check_header(reader.header, rt.m.camera)  # the frame as stored (before any demosaicing)
    if not verdict.ok:
        drop(rt, rec, f"invalid_{verdict.reason}", verdict.detail)
        return None
    return colour_filter(rt, reader, rec)


def memory_refusal(rt: FlightRuntime, reader: FrameReader, rec: dict[str, Any]) -> str | None:
    """Why the frame's buffers cannot fit the memory budget now, or None."""
    h, w = reader.header.height, reader.header.width
    plan = plan_memory(rt.m, w, h, rt._model_bytes(), rt.m.camera.channels)
    rec["memory_plan"] = plan.total
    held = max(0, rss_bytes() - rt.rss_boot)  # what the process already holds beyond the boot baseline
    rec["memory_predicted"] = held + plan.total
    budget = rt.m.budget.memory_bytes
    if plan.total > budget:
        return f"needs {plan.total} B > {budget} B"
    if held + plan.total > budget:
        return (
            f"the process holds {held} B over its boot baseline; with this frame's {plan.total} B of buffers "
            f"that exceeds {budget} B"
        )
    return None


def colour_filter(rt: FlightRuntime, reader: FrameReader, rec: dict[str, Any]) -> FrameReader:
    """Demosaic a declared colour-filter mosaic (``[camera] bayer``) before anything reads the pixels;
    flag an undeclared frame that looks like one (2×2 repeating values)."""
    from edgeae.bayer import looks_like_mosaic

    pattern = rt.m.camera.bayer
    if pattern:
        wrapped = Demosaiced(reader, pattern)  # the stored channels were checked (1 or 3)
        rec["camera"] = wrapped.info  # updated while streaming: demosaiced turns true when it is
        return wrapped
    if isinstance(reader, ArrayFrame) and looks_like_mosaic(reader.array):
        rec["flags"].append("looks_like_bayer_mosaic")
        rec["camera"] = {"bayer": None, "demosaiced": False, "looks_like_mosaic": True}
        rt.tm.write("event", kind="looks_like_bayer_mosaic", source=rec["source"],
                    hint='set [camera] bayer = "RGGB" (or the sensor\'s pattern) to demosaic it')  # fmt: skip
    return reader


def check_fixed_camera(rt: FlightRuntime) -> None:
    """A fixed camera: refuse to fly what cannot fit (buffers over the memory budget, a frame the wire
    format cannot carry)."""
    mission, cam = rt.m, rt.m.camera
    if not (cam.width and (cam.height or cam.source == "strips")):
        return
    plan = plan_memory(mission, cam.width, cam.height, rt._model_bytes(), cam.channels)
    rt.tm.write("event", kind="memory_plan", plan=plan.as_dict(), budget=mission.budget.memory_bytes)
    n_packets = sparse_packet_estimate(mission, cam.width, cam.height)
    if n_packets >= 2**16:
        raise MissionError(
            f"{mission.source_path}: a full frame's sparse pixels need about {n_packets:,} packets, more "
            "than the wire format's 65,535 per product: raise [downlink] max_packet_bytes or lower keep"
        )
    if plan.total > mission.budget.memory_bytes:
        raise MissionError(
            f"{mission.source_path}: the buffers need {plan.total:,} B but [budget] memory_bytes is "
            f"{mission.budget.memory_bytes:,} B ({plan.as_dict()})"
        )


def sparse_packet_estimate(mission: Mission, width: int, height: int) -> int:
    """Packets a frame's sparse pixels need at the nominal keep fraction (raw samples, whole rows)."""
    item = 1 if mission.camera.bit_depth <= 8 else 2
    per_packet = max(1, (mission.downlink.max_packet_bytes - overhead("sparse")) // (mission.camera.channels * item))
    kept = int(height * width * mission.sampling.keep)
    return -(-kept // per_packet) + height // 8  # row boundaries waste a little of each packet
