"""The downlink queue's files on storage, checked before they are trusted: the item files of CCSDS space packets
(cut apart, each packet's CRC-16 and the whole file's CRC-32 checked before a packet is re-stamped and sent) and the
index document ``index.json`` (its structure checked, and a state folder that holds earlier boots' files but no
index refused). Pure functions over bytes and paths; :mod:`.queue` uses them.
"""

from __future__ import annotations

import errno
import os
import re
import struct
import zlib
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from edgeae.atomic import remove_files

DAMAGED = "storage corruption"  # how the reason of an item evicted because its file is damaged begins

_HEADER = 6  # CCSDS primary header bytes; a packet is 7 + its length field bytes long
_ITEM_FILE = re.compile(r"^\d{8}\.pkt$")
_PASS_FILE = re.compile(r"^pass_\d{5}\.bin$")
_STATE_KEYS = {"next_id": int, "passes": int, "seq": dict, "frames": dict, "next_frame_id": int}
_STATUSES = ("pending", "sent", "evicted")
_APID_MAX, _SEQ_MAX = 0x7FF, 0x3FFF  # an APID is 11 bits, a packet sequence count 14 (CCSDS 133.0-B)
_ITEM_REQUIRED = frozenset({"id", "kind", "priority", "frame_id", "n_packets", "wire_bytes"})
_ITEM_INTS = ("id", "priority", "frame_id", "n_packets", "wire_bytes", "sent_packets", "sent_bytes")


class PacketDamaged(ValueError):
    """A stored packet whose CRC-16 does not match its bytes: re-stamping it would sign the damage as valid."""


def split_packets(data: bytes) -> list[bytes]:
    """Cut concatenated CCSDS space packets apart using each primary header's length field; ``ValueError`` naming
    the byte where the data stops being whole packets."""
    out, i = [], 0
    while i + _HEADER <= len(data):
        n = 7 + struct.unpack_from(">H", data, i + 4)[0]
        if i + n > len(data):  # (until session 35 a negative count of "trailing bytes")
            raise ValueError(
                f"the packet at byte {i:,} claims {n:,} B but only {len(data) - i:,} B are left (cut short or damaged)"
            )
        out.append(data[i : i + n])
        i += n
    if i != len(data):
        raise ValueError(f"{len(data) - i} trailing bytes at byte {i:,} are not a whole space packet")
    return out


def crc_ok(packet: bytes) -> bool:
    """Whether a packet's last two bytes are the CRC-16 of the bytes before them (docs/wire-format.md)."""
    from edgeae.wire.packets import crc16  # (spacepackets) so reading a queue index needs numpy and stdlib only

    return len(packet) > 2 and struct.unpack_from(">H", packet, len(packet) - 2)[0] == crc16(packet[:-2])


def restamp(packet: bytes, seq_count: int, *, check: bool = True) -> bytes:
    """The packet with its 14-bit sequence count replaced and its CRC-16 recomputed. ``check``: its stored CRC is
    verified first, :class:`PacketDamaged` when it does not match (until session 35 a bit flipped in storage was
    re-signed as valid); ``check=False`` only for bytes the caller verified another way."""
    from edgeae.wire.packets import crc16

    if check and not crc_ok(packet):
        word = struct.unpack_from(">H", packet, 0)[0] if len(packet) >= 2 else 0
        raise PacketDamaged(f"packet of {len(packet):,} B (APID {word & 0x7FF}) fails its CRC-16: not re-stamped")
    b = bytearray(packet)
    word = struct.unpack_from(">H", b, 2)[0]
    struct.pack_into(">H", b, 2, (word & 0xC000) | (seq_count & 0x3FFF))
    struct.pack_into(">H", b, len(b) - 2, crc16(bytes(b[:-2])))
    return bytes(b)


def item_packets(
    data: bytes, *, wire_bytes: int, n_packets: int, crc32: int | None, sent_packets: int
) -> tuple[list[bytes], str]:
    """The packets of an item file still to send (from ``sent_packets`` on) that can be trusted, and what is damaged
    ('' when nothing is). A file whose CRC-32 is the one recorded when it was queued is whole; otherwise (damaged,
    cut short, or queued before session 35 without a CRC-32) its packets are walked and each one still to send
    checked against its CRC-16: those before the first damaged one are returned, so a product damaged at its end
    still sends its beginning (every packet decodes on its own). The walk stops at the ``n_packets`` packets and
    ``wire_bytes`` bytes queued: what a file grown in storage holds past them was never queued, so it is damage
    (until review r10 of session 36 it was sent, and the item's sent bytes over its queued bytes then refused the
    index at every later boot once the item was compacted)."""
    if crc32 is not None and len(data) == wire_bytes and zlib.crc32(data) == crc32:
        try:
            return split_packets(data)[sent_packets:], ""
        except ValueError as exc:  # queued whole but not as packets (never by the flight loop)
            return [], str(exc)
    out: list[bytes] = []
    i = k = 0
    while i < len(data):
        if k == n_packets or i >= wire_bytes:  # grown in storage: what follows was never queued
            return out, (
                f"the file holds {len(data):,} B, {n_packets} packets in {wire_bytes:,} B were queued: "
                f"the {len(data) - i:,} B from byte {i:,} on were never queued (not sent)"
            )
        if i + _HEADER > len(data):
            return out, f"{len(data) - i} trailing bytes at byte {i:,} are not a whole space packet"
        n = 7 + struct.unpack_from(">H", data, i + 4)[0]
        if i + n > len(data):
            return out, (
                f"packet {k} at byte {i:,} claims {n:,} B but only {len(data) - i:,} B are left "
                f"(the file is {len(data):,} B, {wire_bytes:,} B were queued)"
            )
        if i + n > wire_bytes:
            return out, f"packet {k} at byte {i:,} claims {n:,} B, past the {wire_bytes:,} B queued (not sent)"
        p = data[i : i + n]
        if k >= sent_packets:
            if not crc_ok(p):
                return out, f"packet {k} (at byte {i:,}) fails its CRC-16"
            out.append(p)
        i, k = i + n, k + 1
    if len(data) != wire_bytes or k != n_packets:
        return (
            out,
            f"the file holds {k} packets in {len(data):,} B, {n_packets} packets in {wire_bytes:,} B were queued",
        )
    return out, ""


def packets_to_send(path: Path, item: Any) -> tuple[list[bytes], str]:
    """The packets of a queue item (``item``: its :class:`.queue.Item`, its file at ``path``) still to send that
    the file holds intact (:func:`item_packets`), and the damage found (``storage corruption: ...``, '' when
    none). A read error other than a file gone or an I/O error of the medium is raised (the pass fails with nothing
    changed, and the next pass tries again)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], f"{DAMAGED}: item file {path} is missing"
    except OSError as exc:
        if exc.errno != errno.EIO:
            raise
        return [], f"{DAMAGED}: item file {path} cannot be read ({exc.strerror or exc})"
    rest, why = item_packets(
        data, wire_bytes=item.wire_bytes, n_packets=item.n_packets, crc32=item.crc32, sent_packets=item.sent_packets
    )
    return rest, (f"{DAMAGED}: item file {path}: {why}" if why else "")


def _check_entry(fid: str, entry: dict[str, Any], ledger: dict[str, Any]) -> str:
    """What is wrong with a ledger entry's ``boot`` (an integer >= 1) and ``retaken_as`` (the id of a later entry of
    the same source: until review r16 of session 36 any value turned the drop into ``retaken``, out of the counts)."""
    boot = entry.get("boot")
    if boot is not None and (type(boot) is not int or boot < 1):
        return f"boot {boot!r} is not an integer >= 1"
    later = entry.get("retaken_as")
    if later is None:
        return ""
    other = ledger.get(str(later)) if type(later) is int else None
    src = other.get("source") if isinstance(other, dict) else None
    same = isinstance(src, str) and (  # the same file written another way is the same source
        src == entry["source"] or os.path.realpath(src) == os.path.realpath(entry["source"])
    )
    if not (fid.isdecimal() and type(later) is int and later > int(fid) and same):
        return f"retaken_as {later!r} is not the id of a later frame of its source {entry['source']!r}"
    return ""


def check_index(doc: Any, item_fields: Collection[str], kinds: Collection[str]) -> str:
    """What is wrong with a parsed ``index.json`` document's structure ('' when nothing is): a ``state`` object with
    its counters, ledger (keyed by frame ids), sequence counts (:func:`_check_state`) and fired faults, and
    ``items``, each an object of exactly ``item_fields`` with a known ``kind`` and ``status`` (until session 35 a
    wrong structure was a traceback, exit 1)."""
    if not isinstance(doc, dict):
        return f"not an object but {type(doc).__name__}"
    state, items = doc.get("state"), doc.get("items")
    if not isinstance(state, dict):
        return "no 'state' object"
    for key, kind in _STATE_KEYS.items():
        value = state.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            return f"state {key!r} is {value!r}, not {'an integer' if kind is int else 'an object'}"
    wrong_state = _check_state(state)
    if wrong_state:
        return wrong_state
    for fid, entry in state["frames"].items():
        if not isinstance(entry, dict) or not isinstance(entry.get("source"), str) or "status" not in entry:
            return f"frame {fid} of the ledger is {entry!r}, not an object with 'source' and 'status'"
        wrong_entry = _check_entry(fid, entry, state["frames"])
        if wrong_entry:
            return f"frame {fid} of the ledger: {wrong_entry}"
    if not isinstance(items, list):
        return "no 'items' list"
    need = frozenset(item_fields)
    for n, d in enumerate(items):
        if not isinstance(d, dict):
            return f"item #{n} is {d!r}, not an object"
        wrong: list[str] = []
        if d.keys() <= need and d.keys() >= _ITEM_REQUIRED:
            wrong += [k for k in _ITEM_INTS if type(d.get(k, 0)) is not int]
            if type(d.get("reason", "")) is not str:
                wrong.append("reason")
            if d.get("crc32") is not None and type(d["crc32"]) is not int:
                wrong.append("crc32")
            if d["kind"] in kinds and d.get("status", "pending") in _STATUSES and not wrong:
                continue
        name = f"item {d.get('id')!r}" if "id" in d else f"item #{n}"
        unknown, missing = sorted(set(d) - need), sorted(_ITEM_REQUIRED - set(d))
        if unknown or missing:
            what = f"unknown field(s) {', '.join(unknown)}" if unknown else f"no field(s) {', '.join(missing)}"
            return f"{name}: {what}"
        if wrong:
            return f"{name}: field {wrong[0]!r} is {d.get(wrong[0])!r}, of the wrong type"
        return f"{name}: kind {d.get('kind')!r} / status {d.get('status')!r} unknown"
    return ""


def _check_state(state: dict[str, Any]) -> str:
    """What is wrong with the ``state`` object's sequence counts, ledger keys and fired faults ('' when nothing is):
    ``seq`` maps APIDs (digit strings, 0..2047) to 14-bit counts, the ledger ``frames`` is keyed by frame ids
    (digit strings), ``faults_fired`` (when present) is a list of strings (until session 35 each was a traceback
    at the first pass or frame, exit 1, or an ``int()`` error naming no file)."""
    for apid, count in state["seq"].items():
        if not (apid.isdigit() and apid.isascii() and int(apid) <= _APID_MAX):
            return f"state 'seq' has the key {apid!r}, not an APID (0..{_APID_MAX})"
        if type(count) is not int or not 0 <= count <= _SEQ_MAX:
            return f"state 'seq' of APID {apid} is {count!r}, not a sequence count (0..{_SEQ_MAX})"
    for fid in state["frames"]:
        if not (fid.isdigit() and fid.isascii()):
            return f"state 'frames' has the key {fid!r}, not a frame id (digits)"
    fired = state.get("faults_fired", [])
    if not isinstance(fired, list) or not all(isinstance(f, str) for f in fired):
        return f"state 'faults_fired' is {fired!r}, not a list of strings"
    return ""


def remove_item_files(folder: Path, gone: Callable[[int], bool]) -> list[str]:
    """Remove the item files (``NNNNNNNN.pkt``) in ``folder`` of the items whose id ``gone`` accepts (one
    ``scandir``, not a call per item); returns their names, sorted. Best effort: a file that cannot be removed is
    left as it is."""
    return sorted(remove_files(folder, lambda name: bool(_ITEM_FILE.match(name)) and gone(int(name[:8]))))


def state_without_index(root: Path) -> list[str]:
    """What a queue folder ``root`` without ``index.json`` holds of earlier boots: item files in ``root/items``,
    and, beside it in the output folder, pass files in ``downlink/`` or ``telemetry.jsonl`` lines of frames,
    passes or recoveries. Empty for a new state (a boot's own empty ``telemetry.jsonl`` and its ``mission.json``,
    written before any index, are not signs of one: a first boot that could not save its index, a full disk, goes
    on from a fresh state)."""
    found: list[str] = []
    for folder, pattern, what in (
        (root / "items", _ITEM_FILE, "item file"),
        (root.parent / "downlink", _PASS_FILE, "pass file"),
    ):
        try:
            n = sum(1 for p in folder.iterdir() if pattern.match(p.name))
        except OSError:
            n = 0
        if n:
            found.append(f"{n} {what}{'s' if n != 1 else ''} in {folder}")
    telemetry = root.parent / "telemetry.jsonl"
    try:
        sized = telemetry.stat().st_size > 0
    except OSError:
        sized = False
    if sized:
        from .telemetry_lines import read_lines_with  # the lines module imports no queue

        kinds = {"frame", "pass", "recovery"}
        wanted = tuple(f'"{k}"'.encode() for k in kinds)  # only lines naming one are parsed (a long mission's file)
        n = sum(r.get("type") in kinds for r in read_lines_with(telemetry, wanted))
        if n:
            found.append(f"{n} frame, pass or recovery line{'s' if n != 1 else ''} in {telemetry}")
    return found
