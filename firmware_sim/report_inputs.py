"""What a ``report.html`` is built from: the outputs a flight run leaves in its folder (``summary.json``, or
a summary rebuilt from ``telemetry.jsonl`` and ``queue/index.json`` when the run did not finish, and the
anomaly patches decoded from the ``downlink/pass_*.bin`` packet files, exactly as the ground receives them).
"""

from __future__ import annotations

import json
import math
import struct
from collections import Counter
from dataclasses import dataclass, field
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
    (:func:`.telemetry.rebuild_summary`), the notes naming what was missing. Raises ``MissionError`` when ``out``
    is not a folder, holds none of them or a damaged summary of a finished run."""
    from .mission import MissionError

    if not out.exists():
        raise MissionError(f"{out} does not exist: give the --out folder of a firmware-sim run")
    if not out.is_dir():
        raise MissionError(f"{out} is a file, not a run folder (the --out folder of firmware-sim run)")
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


MAX_PATCH_ELEMENTS = 1 << 24  # size × size × channels of one patch: the ground's default max_patch_elements
# (edgeae/ground/limits.py; not imported: the flight runtime loads no ground module). A 64-byte packet can claim
# 65,535² × 255 samples; a patch over this is not decoded, and the report says so.
# the header fields the packets of one patch must agree on (with their part count): the ground's
# _FRAME_KEYS["patch"] (edgeae/ground/reassembly.py, copied: the flight runtime loads no ground module)
_HEADER_KEYS = ("x", "y", "size", "channels", "bit_depth", "score")


@dataclass
class PatchRead:
    """What :func:`read_patches` found in the downlink packet files: the anomaly patches (highest score first,
    across all frames; their pixels not yet assembled, see :func:`assemble`) and notes ``(pass file, what)`` on
    what could not be used (a damaged length field, packets that failed their check, a patch over the size cap,
    packets outvoted by the other packets of their patch), one per pass file and kind, with counts."""

    patches: list[dict[str, Any]] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)


class _Notes:
    """Notes merged by (pass file, kind): the first one's words and how many more of that kind the file had, so a
    pass file of 20,000 bad packets makes one note, not 20,000."""

    def __init__(self) -> None:
        self._first: dict[tuple[str, str], list[Any]] = {}

    def add(self, file: str, kind: str, text: str) -> None:
        self._first.setdefault((file, kind), [text, 0])[1] += 1

    def merged(self) -> list[tuple[str, str]]:
        out = [(f, t + (f" (and {n - 1:,} more like it)" if n > 1 else "")) for (f, _), (t, n) in self._first.items()]
        return sorted(out, key=lambda note: note[0])  # stable: each file's notes in the order they were found


def _same(value: Any) -> Any:
    """A header value as a grouping key: NaN equals NaN (the ground's reassembly._same)."""
    return "nan" if isinstance(value, float) and value != value else value


def _score_key(p: dict[str, Any]) -> float:
    s = p["score"]
    return -s if s == s else math.inf  # highest first; a NaN score last


def _split(data: bytes, name: str, notes: _Notes) -> list[bytes]:
    """The packets of a pass file as the ground's plain-stream reader finds them (edgeae.wire.stream: a length
    field is trusted when the CRC then matches; after damage it resynchronises on the next packet header), damaged
    packets included (their check fails in :func:`read_patches`). A length field running past the end of the file
    and bytes that form no packet are noted."""
    from edgeae.wire.stream import CORRUPT, GARBAGE, stream_pieces

    out: list[bytes] = []
    garbage = 0
    for piece in stream_pieces(data):
        if piece.kind == GARBAGE:
            garbage += piece.nbytes
            continue
        # a damaged packet cut at the next packet header may be shorter than a primary header: its check fails
        end = piece.offset + 7 + struct.unpack_from(">H", piece.data, 4)[0] if len(piece.data) >= 6 else 0
        if piece.kind != CORRUPT or end <= len(data):
            out.append(piece.data)
            continue
        lost = "the rest of the file" if piece.offset + piece.nbytes == len(data) else "up to the next packet"
        notes.add(
            name,
            "length",
            f"the length field at byte {piece.offset:,} claims a packet of {end - piece.offset:,} bytes, past the end "
            f"of the file ({len(data):,} bytes: damaged, or the file was cut short); {lost} ({piece.nbytes:,} "
            "bytes) skipped",
        )
    if garbage:
        notes.add(name, "garbage", f"{garbage:,} bytes formed no packet (skipped to the next packet header)")
    return out


def read_patches(downlink_dir: Path) -> PatchRead:
    """The anomaly patches in the downlink packet files (``pass_*.bin``), as the ground receives them: frame_id,
    x, y, size, channels, score, bit_depth, dtype and the pieces ``[(e0, samples)]`` each packet carried. The
    packets of one patch are grouped by their header, and the group with the most pieces is the patch, as the
    ground's reassembly does (one stray packet cannot take a patch over by arriving first). Memory is that of the
    packet bytes read: pixels are assembled one patch at a time by :func:`assemble`."""
    try:
        from edgeae.wire.parse import WireError, parse_packet
        from edgeae.wire.products import sample_dtype
    except ImportError:  # spacepackets missing: the gallery falls back to the summary's list
        return PatchRead()
    notes = _Notes()
    groups: dict[tuple[int, int], dict[tuple[Any, ...], dict[str, Any]]] = {}  # (frame, index) -> header -> pieces
    for f in sorted(downlink_dir.glob("pass_*.bin")):
        name = f"{downlink_dir.name}/{f.name}"
        try:
            packets = _split(f.read_bytes(), name, notes)  # CCSDS packets back to back
        except OSError as exc:
            notes.add(name, "read", f"could not be read ({exc.strerror or exc}); its patches are not shown")
            continue
        failed: Counter[str] = Counter()
        for data in packets:
            try:
                pkt = parse_packet(data)
            except WireError as exc:
                if exc.reason != "idle":  # CCSDS fill is not damage
                    failed[exc.reason] += 1
                continue
            if pkt.kind != "patch":
                continue
            h = pkt.header
            key = (pkt.frame_id, int(h["index"]))
            what = f"a packet of frame {pkt.frame_id} patch {key[1]}"
            elements = int(h["size"]) ** 2 * int(h["channels"])
            if elements > MAX_PATCH_ELEMENTS:
                notes.add(
                    name,
                    "cap",
                    f"{what} claims {h['size']} x {h['size']} x {h['channels']} = {elements:,} samples, over the "
                    f"cap of {MAX_PATCH_ELEMENTS:,} (the ground's max_patch_elements): not decoded",
                )
                continue
            sig = (pkt.parts, *(_same(h[k]) for k in _HEADER_KEYS))
            entry = groups.setdefault(key, {}).get(sig)
            if entry is None:
                entry = groups[key][sig] = {
                    "frame_id": pkt.frame_id,
                    **{k: h[k] for k in _HEADER_KEYS},
                    "parts": pkt.parts,
                    "dtype": sample_dtype(int(h["bit_depth"])),
                    "pieces": {},
                    "file": name,
                }
            e0, n = int(h["e0"]), int(h["n"])
            samples = pkt.samples[:n]
            old = entry["pieces"].get((e0, n))
            if old is not None and not np.array_equal(old, samples):
                notes.add(name, "resend", f"{what} resends elements [{e0:,}, +{n:,}) with other values; skipped")
                continue
            entry["pieces"][(e0, n)] = samples  # a resend (a crash between pass file and index) is the same piece
        if failed:
            why = ", ".join(f"{k} ×{v}" for k, v in failed.most_common())
            notes.add(name, "check", f"{sum(failed.values()):,} packet(s) failed their check ({why}); skipped")
    patches = []
    for (fid, index), versions in groups.items():
        kept = max(versions.values(), key=lambda g: len(g["pieces"]))  # the first of the largest, as the ground
        patches.append(kept)
        others = [g for g in versions.values() if g is not kept]
        if others:
            diff = ", ".join(
                f"{k} {others[0][k]:.6g} (kept {kept[k]:.6g})"
                for k in ("parts", *_HEADER_KEYS)
                if _same(others[0][k]) != _same(kept[k])
            )
            notes.add(
                others[0]["file"],
                "outvoted",
                f"{sum(len(g['pieces']) for g in others):,} packet(s) of frame {fid} patch {index} disagree with the "
                f"{len(kept['pieces']):,} kept (first in {kept['file']}; {diff}): skipped, as the ground keeps the "
                "largest group of packets that agree",
            )
    return PatchRead(sorted(patches, key=_score_key), notes.merged())


def assemble(p: dict[str, Any]) -> tuple[np.ndarray, bool, int]:
    """A patch of :func:`read_patches` as pixels (size, size, channels), zero where no packet came; whether every
    sample came; and how many pieces overlapped an earlier one (skipped, as the ground does)."""
    size, ch = int(p["size"]), int(p["channels"])
    flat = np.zeros(size * size * ch, p["dtype"])
    got = np.zeros(flat.size, bool)
    overlapping = 0
    for (e0, n), samples in sorted(p["pieces"].items()):
        if got[e0 : e0 + n].any():
            overlapping += 1
            continue
        flat[e0 : e0 + len(samples)] = samples
        got[e0 : e0 + len(samples)] = True
    return flat.reshape(size, size, ch), bool(got.all()), overlapping


def decode_patches(downlink_dir: Path) -> list[dict[str, Any]]:
    """Anomaly patches rebuilt from the downlink packet files: frame_id, x, y, size, score, bit_depth, complete,
    pixels (H, W, C); highest score first. Assembles them all: :func:`read_patches` also says what was unusable."""
    out = []
    for p in read_patches(downlink_dir).patches:
        pixels, complete, _ = assemble(p)
        out.append({**{k: v for k, v in p.items() if k not in ("pieces", "dtype", "file", "parts")}, "pixels": pixels,
                    "complete": complete})  # fmt: skip
    return out
