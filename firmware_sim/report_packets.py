"""The anomaly patches in a run's downlink packet files (``downlink/pass_*.bin``), exactly as the ground receives
them: :class:`PassScan` reads pass files in order into patches (grouped by their header, as the ground's reassembly
does) and notes on what could not be used; :func:`read_patches` reads them all, :func:`assemble` makes a patch's
pixels. A scan keeps each piece's place, size and CRC-32, and its samples only when asked (``keep_samples``): the
gallery's index (:mod:`.report_gallery_index`) stores a scan without samples, so a report reads only the pass
files written since the last one, then the few that hold the pieces of the patches it shows.

numpy and the standard library only (and edgeae.wire, imported when a file is read), like the flight runtime.
"""

from __future__ import annotations

import math
import re
import struct
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

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
    packets outvoted by the other packets of their patch), one per pass file and kind, with counts. ``read``: the
    pass files read to find them (a gallery with its index reads only those new since the last report)."""

    patches: list[dict[str, Any]] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)
    read: list[str] = field(default_factory=list)
    # (frame_id, index) of the patches a gallery's index keeps by their key only: whole, with one version, ranked
    # below those it keeps in full (:mod:`.report_gallery_index`); not in ``patches``
    closed: list[tuple[int, int]] = field(default_factory=list)


@dataclass(slots=True)
class Piece:
    """One packet's piece of a patch: how many samples it carried, their CRC-32 (a resend is compared by it), the
    pass file it came in first and the packet's byte offset there and, when the scan keeps them, the samples
    (:func:`load_samples` reads them again by the offset)."""

    length: int
    crc: int
    file: str
    offset: int
    samples: np.ndarray | None = None


class _Notes:
    """Notes merged by (pass file, kind): the first one's words and how many more of that kind the file had, so a
    pass file of 20,000 bad packets makes one note, not 20,000."""

    def __init__(self) -> None:
        self._first: dict[tuple[str, str], list[Any]] = {}

    def add(self, file: str, kind: str, text: str) -> None:
        self._first.setdefault((file, kind), [text, 0])[1] += 1

    def merged(self, extra: Sequence[tuple[str, str, str]] = ()) -> list[tuple[str, str]]:
        first = dict(self._first)
        for file, kind, text in extra:  # notes made at the end (outvoted packets): not kept in a scan
            first.setdefault((file, kind), [text, 0])[1] += 1
        out = [(f, t + (f" (and {n - 1:,} more like it)" if n > 1 else "")) for (f, _), (t, n) in first.items()]
        return sorted(out, key=lambda note: note[0])  # stable: each file's notes in the order they were found

    def rows(self) -> list[list[Any]]:
        return [[f, k, t, n] for (f, k), (t, n) in self._first.items()]

    @classmethod
    def from_rows(cls, rows: list[list[Any]]) -> _Notes:
        notes = cls()
        for f, k, t, n in rows:
            notes._first[(str(f), str(k))] = [str(t), int(n)]
        return notes


def _same(value: Any) -> Any:
    """A header value as a grouping key: NaN equals NaN (the ground's reassembly._same)."""
    return "nan" if isinstance(value, float) and value != value else value


def _score_key(p: dict[str, Any]) -> float:
    s = p["score"]
    return -s if s == s else math.inf  # highest first; a NaN score last


def _split(data: bytes, name: str, notes: _Notes) -> list[tuple[int, bytes]]:
    """The packets of a pass file, each with its byte offset, as the ground's plain-stream reader finds them
    (edgeae.wire.stream: a length field is trusted when the CRC then matches; after damage it resynchronises on the
    next packet header), damaged packets included (their check fails in :meth:`PassScan.add_file`). A length field
    running past the end of the file and bytes that form no packet are noted."""
    from edgeae.wire.stream import CORRUPT, GARBAGE, stream_pieces

    out: list[tuple[int, bytes]] = []
    garbage = 0
    for piece in stream_pieces(data):
        if piece.kind == GARBAGE:
            garbage += piece.nbytes
            continue
        # a damaged packet cut at the next packet header may be shorter than a primary header: its check fails
        end = piece.offset + 7 + struct.unpack_from(">H", piece.data, 4)[0] if len(piece.data) >= 6 else 0
        if piece.kind != CORRUPT or end <= len(data):
            out.append((piece.offset, piece.data))
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


class PassScan:
    """Pass files read in order into patch groups: ``groups[(frame_id, index)][signature]`` is one version of a
    patch (its header, part count, first pass file and :class:`Piece` s by ``(e0, n)``); the version with the most
    pieces is the patch (:meth:`result`), as the ground's reassembly keeps the largest group that agrees."""

    def __init__(self, keep_samples: bool) -> None:
        self.keep_samples = keep_samples
        self.groups: dict[tuple[int, int], dict[tuple[Any, ...], dict[str, Any]]] = {}
        self.notes = _Notes()
        self.closed: set[tuple[int, int]] = set()  # patches kept by their key only (.report_gallery_index)

    def read_error(self, name: str, exc: OSError) -> None:
        self.notes.add(name, "read", f"could not be read ({exc.strerror or exc}); its patches are not shown")

    def add_file(self, data: bytes, name: str) -> None:
        """Add one pass file's packets (``data``; ``name`` as notes call it, ``downlink/pass_NNNNN.bin``)."""
        from edgeae.wire.parse import WireError, parse_packet

        failed: Counter[str] = Counter()
        for offset, raw in _split(data, name, self.notes):  # CCSDS packets back to back
            try:
                pkt = parse_packet(raw)
            except WireError as exc:
                if exc.reason != "idle":  # CCSDS fill is not damage
                    failed[exc.reason] += 1
                continue
            if pkt.kind == "patch":
                self._add_packet(pkt, name, offset)
        if failed:
            why = ", ".join(f"{k} ×{v}" for k, v in failed.most_common())
            self.notes.add(name, "check", f"{sum(failed.values()):,} packet(s) failed their check ({why}); skipped")

    def _add_packet(self, pkt: Any, name: str, offset: int) -> None:
        h = pkt.header
        key = (pkt.frame_id, int(h["index"]))
        what = f"a packet of frame {pkt.frame_id} patch {key[1]}"
        elements = int(h["size"]) ** 2 * int(h["channels"])
        if elements > MAX_PATCH_ELEMENTS:
            self.notes.add(
                name,
                "cap",
                f"{what} claims {h['size']} x {h['size']} x {h['channels']} = {elements:,} samples, over the "
                f"cap of {MAX_PATCH_ELEMENTS:,} (the ground's max_patch_elements): not decoded",
            )
            return
        if key in self.closed:  # whole in an earlier pass file, its pieces no longer kept: not merged
            self.notes.add(name, "late", f"{what} came after that patch was whole in an earlier pass file; skipped")
            return
        sig = (pkt.parts, *(_same(h[k]) for k in _HEADER_KEYS))
        entry = self.groups.setdefault(key, {}).get(sig)
        if entry is None:
            entry = self.groups[key][sig] = {
                "frame_id": pkt.frame_id,
                "index": key[1],
                **{k: h[k] for k in _HEADER_KEYS},
                "parts": pkt.parts,
                "pieces": {},
                "file": name,
            }
        e0, n = int(h["e0"]), int(h["n"])
        samples = np.ascontiguousarray(pkt.samples[:n])
        crc = zlib.crc32(samples.tobytes())
        old = entry["pieces"].get((e0, n))
        if old is not None and (old.length, old.crc) != (len(samples), crc):
            self.notes.add(name, "resend", f"{what} resends elements [{e0:,}, +{n:,}) with other values; skipped")
            return
        if old is None:  # a resend (a crash between pass file and index) is the same piece: the first is kept
            entry["pieces"][(e0, n)] = Piece(len(samples), crc, name, offset, samples if self.keep_samples else None)
            entry.pop("row", None)  # the index's row of this version (.report_gallery_index) is out of date

    def result(self) -> PatchRead:
        """The patches (the largest version of each, highest score first; ``pieces``: :class:`Piece` by
        ``(e0, n)``) and the notes, with those on packets outvoted by the other packets of their patch."""
        from edgeae.wire.products import sample_dtype

        patches, outvoted = [], []
        for (fid, index), versions in self.groups.items():
            if len(versions) == 1:
                patches.append(next(iter(versions.values())))
                continue
            kept = max(versions.values(), key=lambda g: len(g["pieces"]))  # the first of the largest, as the ground
            patches.append(kept)
            others = [g for g in versions.values() if g is not kept]
            if others:
                diff = ", ".join(
                    f"{k} {others[0][k]:.6g} (kept {kept[k]:.6g})"
                    for k in ("parts", *_HEADER_KEYS)
                    if _same(others[0][k]) != _same(kept[k])
                )
                outvoted.append(
                    (
                        others[0]["file"],
                        "outvoted",
                        f"{sum(len(g['pieces']) for g in others):,} packet(s) of frame {fid} patch {index} disagree "
                        f"with the {len(kept['pieces']):,} kept (first in {kept['file']}; {diff}): skipped, as the "
                        "ground keeps the largest group of packets that agree",
                    )
                )
        for p in patches:
            p["dtype"] = sample_dtype(int(p["bit_depth"]))
        return PatchRead(sorted(patches, key=_score_key), self.notes.merged(outvoted), closed=sorted(self.closed))


def pass_files(downlink_dir: Path) -> list[Path]:
    """The pass files of ``downlink_dir`` (``pass_*.bin``) in the order they were written: by the number in their
    name (``pass_{n:05d}.bin``: as text, ``pass_100000.bin`` sorted between ``pass_10000.bin`` and
    ``pass_10001.bin``), a name with no number (ASCII digits: until review r13 of session 36 ``pass_².bin`` raised)
    after the others, by name."""

    def key(f: Path) -> tuple[float, str]:
        m = re.fullmatch(r"pass_([0-9]+)", f.stem)  # ASCII digits: str.isdigit takes '²', which int() refuses
        return (int(m.group(1)) if m else math.inf), f.name

    return sorted(downlink_dir.glob("pass_*.bin"), key=key)


def read_patches(downlink_dir: Path) -> PatchRead:
    """The anomaly patches in the downlink packet files (``pass_*.bin``), as the ground receives them: frame_id,
    x, y, size, channels, score, bit_depth, dtype and the pieces ``{(e0, n): Piece}`` each packet carried, with
    their samples. The packets of one patch are grouped by their header, and the group with the most pieces is the
    patch, as the ground's reassembly does (one stray packet cannot take a patch over by arriving first). Memory is
    that of the packet samples read: pixels are assembled one patch at a time by :func:`assemble`."""
    try:
        import edgeae.wire.parse  # noqa: F401
    except ImportError:  # spacepackets missing: the gallery falls back to the summary's list
        return PatchRead()
    scan = PassScan(keep_samples=True)
    read = []
    for f in pass_files(downlink_dir):
        name = f"{downlink_dir.name}/{f.name}"
        try:
            data = f.read_bytes()
        except OSError as exc:
            scan.read_error(name, exc)
            continue
        read.append(name)
        scan.add_file(data, name)
    out = scan.result()
    out.read = read
    return out


def _changed_header(pkt: Any, p: dict[str, Any], key: tuple[int, int]) -> str:
    """What of packet ``pkt``'s header is not that of patch ``p`` and its piece ``key`` (``(e0, n)``); '' when
    it all is (a packet that is no longer a patch's: 'kind')."""
    if pkt.kind != "patch":
        return f"kind {pkt.kind} not patch"
    h = pkt.header
    got = {"frame_id": pkt.frame_id, "index": h["index"], "parts": pkt.parts, **{k: h[k] for k in _HEADER_KEYS},
           "e0": h["e0"], "n": h["n"]}  # fmt: skip
    want = {"frame_id": p["frame_id"], "index": p.get("index", h["index"]), "parts": p["parts"],
            **{k: p[k] for k in _HEADER_KEYS}, "e0": key[0], "n": key[1]}  # fmt: skip
    return ", ".join(f"{k} {got[k]:.6g} not {want[k]:.6g}" for k in got if _same(got[k]) != _same(want[k]))


def load_samples(downlink_dir: Path, p: dict[str, Any]) -> list[tuple[str, str]]:
    """Read again the samples of patch ``p``'s pieces (those a scan without samples found), each from its packet
    at its offset in its pass file (``downlink_dir``: the folder the pass files' names are in); returns notes on
    the pieces that could not be read back as they were scanned (the file changed or cannot be read), which are
    left out of the patch (shown as not received). A packet whose header is no longer the patch's (frame, index,
    part count, place, size, score, ...: a bit flipped in storage) is such a piece: until session 36 only its
    samples were compared, and the page showed the scanned header."""
    from edgeae.wire.parse import WireError, parse_packet

    gone: dict[str, int] = {}
    why: dict[str, str] = {}
    handles: dict[str, Any] = {}
    try:
        for key, piece in list(p["pieces"].items()):
            if piece.samples is not None:
                continue
            try:
                if piece.file not in handles:
                    handles[piece.file] = open(downlink_dir / Path(piece.file).name, "rb")  # noqa: SIM115
                f = handles[piece.file]
                f.seek(piece.offset)
                head = f.read(6)
                pkt = parse_packet(head + f.read(1 + struct.unpack(">H", head[4:6])[0]))
                changed = _changed_header(pkt, p, key)
                if changed:
                    raise ValueError(f"its header differs from the one read before: {changed}")
                samples = np.ascontiguousarray(pkt.samples[: key[1]])
                if (len(samples), zlib.crc32(samples.tobytes())) != (piece.length, piece.crc):
                    raise ValueError("its samples differ from those read before")
                piece.samples = samples
            except (OSError, ValueError, struct.error, WireError) as exc:  # WireError is a ValueError
                del p["pieces"][key]
                gone[piece.file] = gone.get(piece.file, 0) + 1
                why.setdefault(piece.file, str(getattr(exc, "strerror", None) or exc))
    finally:
        for f in handles.values():
            f.close()
    return [
        (file, f"{n} piece(s) of frame {p['frame_id']} patch at ({p['x']}, {p['y']}) could not be read again "
               f"({why[file]}): shown as not received")
        for file, n in gone.items()
    ]  # fmt: skip


def assemble(p: dict[str, Any]) -> tuple[np.ndarray, bool, int]:
    """A patch of :func:`read_patches` as pixels (size, size, channels), zero where no packet came; whether every
    sample came; and how many pieces overlapped an earlier one (skipped, as the ground does). Its pieces must hold
    their samples."""
    size, ch = int(p["size"]), int(p["channels"])
    flat = np.zeros(size * size * ch, p["dtype"])
    got = np.zeros(flat.size, bool)
    overlapping = 0
    for (e0, _), piece in sorted(p["pieces"].items()):
        samples = piece.samples
        if samples is None:
            raise ValueError(f"frame {p['frame_id']} patch at ({p['x']}, {p['y']}): a piece without its samples")
        if got[e0 : e0 + len(samples)].any():
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
        out.append({**{k: v for k, v in p.items() if k not in ("pieces", "dtype", "file", "parts", "index")},
                    "pixels": pixels,
                    "complete": complete})  # fmt: skip
    return out
