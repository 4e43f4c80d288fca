"""What a ``report.html`` is built from: the outputs a flight run leaves in its folder (``summary.json``, or
a summary rebuilt from ``telemetry.jsonl`` and ``queue/index.json`` when the run did not finish, and the
anomaly patches decoded from the ``downlink/pass_*.bin`` packet files, exactly as the ground receives them).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .telemetry import read_lines, rebuild_summary, run_finished


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_telemetry(path: Path) -> list[dict[str, Any]]:
    """The records of ``telemetry.jsonl`` (a torn last line after a crash is skipped)."""
    return read_lines(path)


def load_summary(out: Path) -> tuple[dict[str, Any], list[str]]:
    """The summary a report is built from, and notes on it: ``summary.json`` when the last boot wrote it;
    else (a run rebooted, interrupted or killed) one rebuilt from ``telemetry.jsonl`` and ``queue/index.json``
    (:func:`.telemetry.rebuild_summary`), the notes naming what was missing. Raises ``MissionError`` when the
    folder holds none of them or a damaged summary of a finished run."""
    from .mission import MissionError

    lines = read_lines(out / "telemetry.jsonl")
    have = [n for n in ("summary.json", "telemetry.jsonl", "queue/index.json") if (out / n).is_file()]
    if not have:
        raise MissionError(
            f"{out} holds no summary.json, telemetry.jsonl or queue/index.json: is it the --out folder of "
            "firmware-sim run?"
        )
    if "summary.json" in have and (not lines or run_finished(lines)):
        path = out / "summary.json"
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:  # a damaged summary would make a report of "mission ?" with 0 frames
            raise MissionError(f"{path} is not readable JSON ({exc}); run the mission again to rewrite it") from None
        if not isinstance(doc, dict) or "frames" not in doc:
            raise MissionError(f"{path} is not a firmware-sim run summary (no 'frames' record)")
        return doc, []
    summary, missing = rebuild_summary(out)
    notes = ["run incomplete (rebooted or interrupted): rebuilt from " + ", ".join(
        n for n in ("telemetry.jsonl", "queue/index.json", "mission.json") if n not in missing)]  # fmt: skip
    if missing:
        notes.append("missing: " + ", ".join(missing))
    return summary, notes


def _any_summary(out: Path) -> dict[str, Any]:
    """:func:`load_summary`, or whatever ``summary.json`` holds when that refuses the folder (a report is
    still written)."""
    from .mission import MissionError

    try:
        return load_summary(out)[0]
    except MissionError:
        doc = _read_json(out / "summary.json")
        return doc if isinstance(doc, dict) else {}


def decode_patches(downlink_dir: Path) -> list[dict[str, Any]]:
    """Anomaly patches rebuilt from the downlink packet files: frame_id, x, y, size, score, pixels (H, W, C)."""
    try:
        from edgeae.wire.parse import WireError, parse_packet
    except ImportError:  # spacepackets missing: the gallery falls back to the summary's list
        return []
    from .queue import split_packets

    pieces: dict[tuple[int, int], dict[str, Any]] = {}
    for f in sorted(downlink_dir.glob("pass_*.bin")):
        try:
            packets = split_packets(f.read_bytes())  # a pass file: CCSDS packets back to back
        except (OSError, ValueError):
            continue
        for data in packets:
            try:
                pkt = parse_packet(data)
            except WireError:
                continue
            if pkt.kind != "patch":
                continue
            h = pkt.header
            key = (pkt.frame_id, int(h["index"]))
            size, ch = int(h["size"]), int(h["channels"])
            entry = pieces.setdefault(
                key,
                {
                    "frame_id": pkt.frame_id,
                    "x": int(h["x"]),
                    "y": int(h["y"]),
                    "size": size,
                    "score": float(h["score"]),
                    "bit_depth": int(h["bit_depth"]),
                    "flat": np.zeros(size * size * ch, pkt.samples.dtype),
                    "got": 0,
                    "channels": ch,
                },
            )
            e0, n = int(h["e0"]), int(h["n"])
            entry["flat"][e0 : e0 + n] = pkt.samples[:n]
            entry["got"] += n
    out = []
    for e in pieces.values():
        e["complete"] = e["got"] >= e["flat"].size
        e["pixels"] = e.pop("flat").reshape(e["size"], e["size"], e["channels"])
        out.append(e)
    return sorted(out, key=lambda e: (e["frame_id"], -e["score"]))
