"""Whether a received anomaly patch lies inside its frame: checked when the patch is decoded, and again at the
session's end for the patches decoded before their frame arrived (``serve``: the flight sends patches first).
Functions over the :class:`~.station.GroundStation` whose products they check."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgeae import atomic

from .decode import DecodeError
from .outputs import PATCH_FILE_KEYS, product_name, remove_images, strict_json

if TYPE_CHECKING:
    from .station import GroundStation


def check_patch_in_frame(station: GroundStation, frame_id: int, hd: dict) -> None:
    """Refuse (:class:`DecodeError`) a patch that does not lie inside the sparse or latent frame of its id
    that this session has received so far (a patch of a frame not received cannot be checked)."""
    x, y, size = hd["x"], hd["y"], hd["size"]
    for kind in ("sparse", "latent"):
        with station.lock:  # the receiver may be taking packets in another thread
            frame = station.receiver.products.get((kind, frame_id, 0))
            shape = None if frame is None else (frame.header["height"], frame.header["width"])
        if shape is not None and (x + size > shape[1] or y + size > shape[0]):
            raise DecodeError(
                f"patch {frame_id}/{hd['index']}: {size}x{size} at (x={x}, y={y}) runs past its {kind} frame "
                f"{frame_id} ({shape[1]} wide, {shape[0]} high): patch not written"
            )


def recheck_patches(station: GroundStation) -> None:
    """Check again every patch written before its frame arrived (``serve`` decodes a patch as soon as it is
    complete, and the flight sends patches first): one that runs past its frame fails now, its file removed."""
    for key in [k for k in station.receiver.products if k[0] == "patch"]:
        name, rep = product_name(key), station.reports.get(product_name(key))
        if rep is None or "error_reason" in rep or "x" not in rep:
            continue
        try:
            check_patch_in_frame(station, key[1], {"x": rep["x"], "y": rep["y"], "size": rep["size"], "index": key[2]})
        except DecodeError as exc:
            station.failures["decode"] += 1
            rep.update(error=str(exc), error_reason="decode")
            for gone in PATCH_FILE_KEYS:  # they describe files removed now: no report names a file not there
                rep.pop(gone, None)
            if station.out is not None:
                remove_images(station.out, name)
                try:
                    atomic.write_text(station.out / f"{name}.json", strict_json(rep), durable=False)
                except OSError as exc:
                    rep["write_error"] = str(exc)


def announced_not_received(station: GroundStation, limit: int = 100) -> dict | None:
    """The anomaly patches a received telemetry record announces (its ``anomaly`` list, in rank order: patch
    index 0, 1, ...) of which no packet is in this session: sent in an earlier pass not decoded here, lost whole on
    the link, not yet sent, or refused on board (the flight's ``telemetry.jsonl`` has an ``evicted`` or
    ``queue_refused`` event for each product refused or evicted on board, its ``queue/index.json`` the products still
    queued: since session 36 the index itemises only the last 100 evicted, the others compacted into totals).
    ``{"count", "patches": [{"frame_id", "index", "x", "y", "score"}, ...]}`` (the first ``limit``), or None."""
    with station.lock:
        have = {(k[1], k[2]) for k in station.receiver.products if k[0] == "patch"}
    missing = []
    for rep in station.reports.values():
        tel = rep.get("telemetry") if rep.get("kind") == "telemetry" else None
        if not isinstance(tel, dict) or not isinstance(tel.get("anomaly"), list):
            continue
        fid = rep.get("frame_id")  # the packet header's id (the JSON's own field could be anything)
        if not isinstance(fid, int) or isinstance(fid, bool):
            continue
        for i, a in enumerate(tel["anomaly"]):
            if isinstance(a, dict) and (fid, i) not in have:
                missing.append({"frame_id": fid, "index": i, **{k: a.get(k) for k in ("x", "y", "score")}})
    if not missing:
        return None
    missing.sort(key=lambda m: (m["frame_id"], m["index"]))
    return {"count": len(missing), "patches": missing[:limit]}
