"""The anomaly gallery's index of the downlink packet files, ``OUT/report_img/gallery_index.json``: what the last
report's scan (:class:`.report_packets.PassScan`, without samples) found in the pass files it read, so the next
report reads only the pass files written since, then each shown patch's pieces by their offset
(:func:`.report_packets.load_samples`). Until session 36 every report, so every boot, read and decoded every pass
file of the mission again (2,000 passes of 16 patches: 8.3 s a boot, growing with the mission; 0.14 s with it).

The index grows with the mission, but by much less than the pass files: it keeps in full (header, and each
piece's place, size, CRC-32, pass file and offset) only the ``keep`` highest-scoring patches and those not yet
whole (a piece missing, or packets that disagree: kept so for good), every other patch by its key alone,
``(frame_id, index)``, to count it and name its frame among those not shown (about 10 B a patch), and each pass
file it read by its name, size, modification time and inode (about 45 B a pass file). A packet that comes for a
patch kept by key in a later pass file is noted and skipped (the pass file its other packets came in is not read
again). The index is used only when the files it names are the first of the folder's pass files (in the order of
their number: :func:`.report_packets.pass_files`), unchanged (a pass file rewritten or removed, or one that cannot
be read, makes the report read every file again and write a new index). Written atomically, its document inside a
CRC-32 of it: one that cannot be read, does not match its CRC (a digit changed in storage leaves valid JSON) or
cannot be written is only a slower report. A pass file changed in place without a change of size or time (a bit
flipped in storage) is found only in the patches shown, whose packets are read again and checked, header and
samples (:func:`.report_packets.load_samples`).
"""

from __future__ import annotations

import contextlib
import gc
import json
import re
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgeae.atomic import write_bytes

from .report_packets import (
    _HEADER_KEYS,
    MAX_PATCH_ELEMENTS,
    PassScan,
    PatchRead,
    Piece,
    _Notes,
    _same,
    _score_key,
    pass_files,
)

INDEX_NAME = "gallery_index.json"
VERSION = 2  # 2: the document inside a CRC-32 of it (session 36); a version-1 index is read as none
_HEAD = re.compile(rb'\{"crc32":(\d{1,10}),"doc":')


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """The cyclic garbage collector off for the block (on again after it, if it was on): the index makes many
    small objects, none cyclic, and the collector's passes over them would cost more than the rest."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _stat(f: Path) -> list[Any] | None:
    try:
        st = f.stat()
    except OSError:
        return None
    return [f.name, st.st_size, st.st_mtime_ns, st.st_ino]


def _whole(versions: dict[Any, dict[str, Any]]) -> bool:
    """Whether a patch is whole: one version, with a piece for each of its packets."""
    if len(versions) != 1:
        return False
    g = next(iter(versions.values()))
    return len(g["pieces"]) >= int(g["parts"])


def close(scan: PassScan, keep: int) -> None:
    """Keep in full only the ``keep`` highest-scoring patches of ``scan`` and those not whole; the others are kept
    by their key (:attr:`.report_packets.PassScan.closed`)."""
    kept = [
        (max(versions.values(), key=lambda g: len(g["pieces"])), key)  # the patch: as PassScan.result ranks it
        for key, versions in scan.groups.items()
    ]
    kept.sort(key=lambda t: _score_key(t[0]))
    for _, key in kept[keep:]:
        if _whole(scan.groups[key]):
            del scan.groups[key]
            scan.closed.add(key)


def _dump(scan: PassScan, files: list[list[Any]], folder: str, keep: int) -> bytes:
    """The index document of ``scan`` over ``files`` (their stat keys, in order); pass files named by index."""
    at = {f"{folder}/{row[0]}": i for i, row in enumerate(files)}

    def row(g: dict[str, Any]) -> list[Any]:  # a version's row: as loaded when no packet was added to it since
        if "row" not in g:
            pieces = [[e0, n, p.length, p.crc, at[p.file], p.offset] for (e0, n), p in g["pieces"].items()]
            g["row"] = [g["parts"], *(g[k] for k in _HEADER_KEYS), at[g["file"]], pieces]
        return g["row"]

    groups = [[fid, index, [row(g) for g in versions.values()]] for (fid, index), versions in scan.groups.items()]
    closed = [x for key in sorted(scan.closed) for x in key]
    doc = {"version": VERSION, "cap": MAX_PATCH_ELEMENTS, "keep": keep, "folder": folder, "files": files,
           "notes": scan.notes.rows(), "closed": closed, "groups": groups}  # fmt: skip
    body = json.dumps(doc, separators=(",", ":")).encode()
    return b'{"crc32":%d,"doc":%s}' % (zlib.crc32(body), body)


def _body(data: bytes) -> bytes:
    """The document of an index file (:func:`_dump`), checked against its CRC-32: a ``ValueError`` when it does
    not match (a digit changed in storage leaves valid JSON: until session 36 the page then showed it)."""
    head = _HEAD.match(data)
    if head is None or not data.endswith(b"}"):
        raise ValueError("not an index")
    body = data[head.end() : -1]
    if zlib.crc32(body) != int(head[1]):
        raise ValueError("CRC mismatch")
    return body


def _load(path: Path, files: list[Any], folder: str, keep: int) -> tuple[PassScan, int]:
    """The scan the index at ``path`` holds and how many of ``files`` (the folder's pass files now, stat keys in
    order) it covers; a fresh scan and 0 when it holds none that applies (missing, damaged, another version, cap
    or folder, fewer patches kept in full than ``keep``, or pass files that are not the first of ``files``
    unchanged)."""
    fresh = PassScan(keep_samples=False), 0
    try:
        doc = json.loads(_body(path.read_bytes()))
        same = (doc["version"], doc["cap"], doc["folder"]) == (VERSION, MAX_PATCH_ELEMENTS, folder)
        known = doc["files"]
        if not same or doc["keep"] < keep or not known or known != files[: len(known)]:
            return fresh
        names = [f"{folder}/{row[0]}" for row in known]
        scan = PassScan(keep_samples=False)
        scan.notes = _Notes.from_rows(doc["notes"])
        closed = doc["closed"]
        scan.closed = {(int(closed[i]), int(closed[i + 1])) for i in range(0, len(closed), 2)}
        for fid, index, versions in doc["groups"]:
            into = scan.groups.setdefault((int(fid), int(index)), {})
            for parts, *rest in versions:
                header, file, pieces = dict(zip(_HEADER_KEYS, rest[:-2], strict=True)), rest[-2], rest[-1]
                into[(parts, *rest[:-3], _same(rest[-3]))] = {  # the score last of the header: NaN equals NaN
                    "frame_id": int(fid),
                    "index": int(index),
                    **header,
                    "parts": parts,
                    "pieces": {(e0, n): Piece(ln, crc, names[fi], off) for e0, n, ln, crc, fi, off in pieces},
                    "file": names[file],
                    "row": [parts, *rest],  # written back as it is while no packet is added to it
                }
        return scan, len(known)
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):  # a damaged index: read all
        return fresh


def gallery_read(downlink_dir: Path, index_path: Path, keep: int) -> PatchRead:
    """:func:`.report_packets.read_patches` without the samples (their pieces read again by
    :func:`.report_packets.load_samples` for the patches shown), reading only the pass files the index at
    ``index_path`` does not cover, then writing it anew (not when a pass file could not be read); the patches
    past the ``keep`` highest that are whole are in the result's ``closed``, by key."""
    try:
        import edgeae.wire.parse  # noqa: F401
    except ImportError:  # spacepackets missing: the gallery falls back to the summary's list
        return PatchRead()
    paths = pass_files(downlink_dir)  # by their number: as text, from pass 100,000 on no index was a prefix
    keys = [_stat(f) for f in paths]
    with _no_gc():
        scan, done = _load(index_path, keys, downlink_dir.name, keep)
    read = []
    whole = all(k is not None for k in keys)  # a file that could not be listed: no index (read all next time)
    for f in paths[done:]:
        name = f"{downlink_dir.name}/{f.name}"
        try:
            data = f.read_bytes()
        except OSError as exc:
            scan.read_error(name, exc)
            whole = False
            continue
        read.append(name)
        scan.add_file(data, name)
    close(scan, keep)
    if read and whole:
        # a full or read-only disk, or a header value JSON cannot hold: the next report reads every file again
        with contextlib.suppress(OSError, TypeError, ValueError), _no_gc():
            doc = _dump(scan, keys, downlink_dir.name, keep)  # type: ignore[arg-type]  # none is None (whole)
            index_path.parent.mkdir(parents=True, exist_ok=True)
            write_bytes(index_path, doc, durable=False)
    out = scan.result()
    out.read = read
    return out
