"""The end of a run's merge, bounded by one row group rather than by the archive: every done image's part streamed
into results.parquet with the image's summary (:func:`write_results`), and the gallery's top-k (:func:`gallery_top`),
which reads the best patches of only the images whose best score can reach it.

results.parquet holds the rows, in the order, that concatenating every part and sorting by file, y, x gives (what
:func:`edgeae.scan.report.finalize` did until session 36, holding every row twice: ~600 B a patch, so ~40 GB at the
end of a scan of 1,000 NAC frames): the parts are read one at a time in the order of their ``file`` text (a part
holds one image's rows, written in y, x order; one that is not is sorted alone; the parts of names written as the
same text, ``\\xff`` and the byte 0xff, are merged together, each row keeping its image's ``key`` column) and
written :data:`ROW_GROUP_ROWS` rows a row group, under a temporary name renamed at the end
(:func:`edgeae.atomic.atomic_path`). A sidecar, ``.results.digest.json`` (:data:`DIGEST_FILE`, written after both
files), holds a digest of the parts they came from (:func:`parts_digest`: names, sizes, times, inodes) and which
results.parquet and images.parquet it was written with: a rerun that finds the same parts and the same two files
keeps results.parquet (its pages' CRCs verified) and takes the summaries from images.parquet, reading no part. The
digest is kept out of the two files, so identical scans write identical bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeae._optional import require
from edgeae.atomic import atomic_path
from edgeae.printable import printable
from edgeae.scan.archive import ArchiveEntry
from edgeae.scan.out_checks import part_damage, read_part
from edgeae.scan.pipeline import TopK
from edgeae.scan.state import ScanStore

ROW_GROUP_ROWS = 1 << 16  # rows held before they are written as a row group (~10-20 MB; a NAC frame's patches)
DIGEST_FILE = ".results.digest.json"  # the parts results.parquet and images.parquet came from (record_digest)
DIGEST_VERSION = b"edgeae scan results v3\n"  # a change to what results.parquet holds or its order: a new version
# (v2, session 36: the ``key`` column, each row's image's parts key: two names written as one text stay apart;
# v3: the parts' ctime in the digest, the digest in DIGEST_FILE rather than in the files' footers)
_SUMMARY = ("score_mean", "score_max", "score_p99", "max_x", "max_y")  # an image's summary (images.parquet)


def summary(table: Any) -> dict[str, Any]:
    """One part's score_mean, score_max, score_p99 and where the (first) maximum is; NaN and -1 without rows."""
    s = table.column("score").to_numpy() if table.num_rows else np.zeros(0, np.float32)
    if not len(s):
        nan = float("nan")
        return {"score_mean": nan, "score_max": nan, "score_p99": nan, "max_x": -1, "max_y": -1}
    i = int(np.argmax(s))
    return {
        "score_mean": float(s.mean()),
        "score_max": float(s[i]),
        "score_p99": float(np.percentile(s, 99)),
        "max_x": int(table.column("x")[i].as_py()),
        "max_y": int(table.column("y")[i].as_py()),
    }


def _groups(done: list[ArchiveEntry]) -> list[list[ArchiveEntry]]:
    """``done`` in the order of the text of their parts' ``file`` column (:func:`edgeae.printable.printable`; a stable
    sort, as the rows' was: Python orders text by code point, Arrow by UTF-8 bytes, the same order), equal texts in one
    group."""
    groups: list[list[ArchiveEntry]] = []
    for e in sorted(done, key=lambda e: printable(e.name)):
        if groups and printable(groups[-1][0].name) == printable(e.name):
            groups[-1].append(e)
        else:
            groups.append([e])
    return groups


def _raster(table: Any) -> bool:
    """Whether ``table``'s rows are in y, x order (as a part's are written)."""
    if table.num_rows < 2:
        return True
    y, x = table.column("y").to_numpy(), table.column("x").to_numpy()
    dy = np.diff(y.astype(np.int64))
    return bool(np.all((dy > 0) | ((dy == 0) & (np.diff(x.astype(np.int64)) >= 0))))


class _Wider(Exception):
    """A part holds a column the schema taken from the first part lacks (that part written by an older version)."""


def _conform(table: Any, schema: Any) -> Any:
    """``table`` with ``schema``'s columns, in its order: a column the part lacks as nulls (a part written before
    the map columns existed), one of another type cast to it; :class:`_Wider` when the part has a column it lacks."""
    pa = require("pyarrow")
    if table.schema.equals(schema):
        return table
    if set(table.schema.names) - set(schema.names):
        raise _Wider
    cols = [
        table.column(f.name).cast(f.type) if f.name in table.schema.names else pa.nulls(table.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(cols, schema=schema)


def with_key(table: Any, key: str) -> Any:
    """``table`` (a part's rows) with a last column ``key``, the image's parts key in every row, so that two images
    whose names are written as one ``file`` text (``x\\xfe.png`` and the byte 0xFE) stay apart."""
    pa = require("pyarrow")
    if "key" in table.schema.names:
        return table
    return table.append_column(pa.field("key", pa.string()), pa.array([key] * table.num_rows, pa.string()))


def _key_schema(schema: Any) -> Any:
    """``schema`` (the parts') with :func:`with_key`'s column."""
    pa = require("pyarrow")
    if "key" in schema.names:
        return schema
    return schema.append(pa.field("key", pa.string()))


def _image_rows(store: ScanStore, group: list[ArchiveEntry], summaries: dict[str, dict[str, Any]]) -> Any:
    """The rows of one group's parts (:func:`_groups`) in y, x order, each with its image's ``key`` (:func:`with_key`),
    each image's summary put in ``summaries``."""
    pa = require("pyarrow")
    tables = []
    for e in group:
        t = read_part(store.part_path(e.key))  # one damaged inside: ScanStateError naming it and what to do
        summaries[e.name] = {**summary(t), "n": t.num_rows}
        tables.append(with_key(t, e.key))
    t = tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="default")
    return t if _raster(t) else t.sort_by([("y", "ascending"), ("x", "ascending")])  # stable, as the old sort


def _write(store: ScanStore, groups: list[list[ArchiveEntry]], path: Path, schema: Any,
           summaries: dict[str, dict[str, Any]]) -> int:  # fmt: skip
    """Stream ``groups`` into a Parquet file at ``path`` (``schema``: None, the first part's); returns its rows, -1
    when there is no part (nothing written)."""
    pa = require("pyarrow")
    pq = require("pyarrow.parquet")
    writer = None
    held: list[Any] = []  # rows read, not yet written: fewer than ROW_GROUP_ROWS after each part
    rows = n_held = 0
    try:
        for group in groups:
            t = _image_rows(store, group, summaries)
            if writer is None:
                schema = t.schema if schema is None else schema
                writer = pq.ParquetWriter(path, schema, write_page_checksum=True)  # a CRC per page, as the parts
            held.append(_conform(t, schema))
            n_held += t.num_rows
            if n_held >= ROW_GROUP_ROWS:
                batch = pa.concat_tables(held)  # no copy: its chunks are the parts'
                full = n_held - n_held % ROW_GROUP_ROWS
                writer.write_table(batch.slice(0, full), row_group_size=ROW_GROUP_ROWS)
                held, n_held = [batch.slice(full)], n_held - full
            rows += t.num_rows
        if writer is None:
            return -1
        if n_held:
            writer.write_table(pa.concat_tables(held), row_group_size=ROW_GROUP_ROWS)
        writer.close()
        writer = None
        return rows
    finally:
        if writer is not None:  # a failed write: its error is the one raised (the file is discarded)
            with contextlib.suppress(Exception):
                writer.close()


@contextlib.contextmanager
def parquet_target(path: Path) -> Iterator[Path]:
    """A temporary path to write the Parquet file ``path`` to, renamed over it at the end
    (:func:`edgeae.atomic.atomic_path`); a failed write keeps the file there was and is one line naming it: ``cannot
    write PATH: No space left on device`` (pyarrow says ``Error writing bytes to file. Detail: [errno 28] ...``)."""
    with atomic_path(path) as tmp:
        try:
            yield tmp
        except OSError as exc:
            if exc.errno is None or exc.filename is not None:
                raise
            raise OSError(exc.errno, os.strerror(exc.errno)) from exc  # atomic_path adds the file's name


@dataclass
class Merged:
    """What :func:`write_results` gives the report: results.parquet's rows, each done image's :func:`summary` and
    highest score (-inf without rows: what :func:`gallery_top` reads from) by name, the parts' :func:`parts_digest`
    (for :func:`record_digest`), and whether results.parquet was already theirs (not written again)."""

    rows: int
    summaries: dict[str, dict[str, Any]]
    best_of: dict[str, float]
    digest: str
    reused: bool = False


def parts_digest(store: ScanStore, groups: list[list[ArchiveEntry]]) -> tuple[str, int]:
    """A SHA-256 of what results.parquet is made from: each done image's name and its part's size, modification and
    change times (ns) and inode, in the results' order (``groups``: :func:`_groups`), and the newest part's
    modification time. A part rewritten (scanned again, re-ranked: written under a temporary name and renamed)
    changes it; so does one written over in place with its size and modification time kept (``cp -p``, ``touch
    -r``, a backup restored in place): the kernel sets the ctime on every write, and no tool can set it back."""
    h = hashlib.sha256(DIGEST_VERSION)
    newest = 0
    for group in groups:
        for e in group:
            key = e.key  # (a hash of the name, computed once per entry)
            st = os.stat(store.part_path(key))
            line = f"{printable(e.name)}\0{key}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\0{st.st_ino}\n"
            h.update(line.encode())
            newest = max(newest, st.st_mtime_ns)
    return h.hexdigest(), newest


def _identity(path: Path) -> list[int]:
    """What tells one file from another at ``path`` (a file put in its place, one written over in place)."""
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def record_digest(out: Path, digest: str) -> None:
    """Write ``out``/:data:`DIGEST_FILE` (atomically): the parts' ``digest`` (:func:`parts_digest`) and which
    results.parquet and images.parquet were written from them. Called once both are written."""
    record = {
        "version": DIGEST_VERSION.decode().strip(),
        "digest": digest,
        "results": _identity(out / "results.parquet"),
        "images": _identity(out / "images.parquet"),
    }
    with atomic_path(out / DIGEST_FILE) as tmp:
        tmp.write_text(json.dumps(record), encoding="utf-8")


def _verified(path: Path) -> int:
    """``path``'s rows, each page's CRC verified one row group at a time (memory: one row group); a damaged page,
    bit rot or a bad restore that leaves the ends and footer whole, raises (OSError or an Arrow error). ~0.15 s for
    262,350 rows, against ~0.73 s to merge their 68 parts again."""
    pq = require("pyarrow.parquet")
    with pq.ParquetFile(path, page_checksum_verification=True) as f:
        for i in range(f.num_row_groups):
            f.read_row_group(i, use_threads=False)
        return int(f.metadata.num_rows)


def _earlier(done: list[ArchiveEntry], digest: str, newest: int, path: Path, images: Path) -> Merged | None:
    """The last run's results when they are these parts' (:data:`DIGEST_FILE` holds ``digest`` and names the
    results.parquet and images.parquet there are, both written after the newest part, ``newest`` ns, every page of
    results.parquet whole, and images.parquet holds every done image's summary): nothing is read again. None
    otherwise (read them all)."""
    pa = require("pyarrow")
    pq = require("pyarrow.parquet")
    cols = ["key", "n_patches", *_SUMMARY]
    try:
        record = json.loads((path.parent / DIGEST_FILE).read_text(encoding="utf-8"))
        if (
            not isinstance(record, dict)
            or record.get("version") != DIGEST_VERSION.decode().strip()
            or record.get("digest") != digest
            or record.get("results") != _identity(path)
            or record.get("images") != _identity(images)
            or any(part_damage(p) or p.stat().st_mtime_ns <= newest for p in (path, images))
        ):
            return None
        rows_in_results = _verified(path)
        rows = pq.read_table(images, columns=cols, page_checksum_verification=True).to_pylist()
    except (OSError, ValueError, pa.ArrowException):  # missing (a first run), damaged: read the parts
        return None
    by_key = {r["key"]: r for r in rows}
    if not all(by_key.get(e.key, {}).get("score_max") is not None for e in done):
        return None  # an image without its summary: read the parts
    summaries = {e.name: {k: by_key[e.key][k] for k in _SUMMARY} for e in done}
    best_of = {e.name: -math.inf if by_key[e.key]["n_patches"] == 0 else by_key[e.key]["score_max"] for e in done}
    return Merged(rows_in_results, summaries, best_of, digest, reused=True)


def write_results(store: ScanStore, done: list[ArchiveEntry], path: Path, empty: Any, images: Path) -> Merged:
    """Write ``path`` (results.parquet) from the parts of ``done``, atomically (``empty``: the table written when no
    image is done). Memory: one row group and one part, whatever the archive. When the last run's results.parquet
    and ``images`` (its images.parquet) are those parts' (:func:`parts_digest`, :func:`record_digest`), they are kept
    and nothing is read; otherwise the digest's record is removed first, so that a run stopped before
    :func:`record_digest` leaves none."""
    pq = require("pyarrow.parquet")
    pa = require("pyarrow")
    groups = _groups(done)
    digest, newest = parts_digest(store, groups)
    earlier = _earlier(done, digest, newest, path, images)
    if earlier is not None:
        return earlier
    (path.parent / DIGEST_FILE).unlink(missing_ok=True)
    summaries: dict[str, dict[str, Any]] = {}
    with parquet_target(path) as tmp:
        try:
            rows = _write(store, groups, tmp, None, summaries)
        except _Wider:  # the first part lacks columns a later one has: every part's columns, as concatenating
            schemas = []  # them did (in the walk's order, which gave the columns' order)
            for e in done:
                try:
                    schemas.append(pq.read_schema(store.part_path(e.key)))
                except (OSError, pa.ArrowException):
                    read_part(store.part_path(e.key))  # its footer damaged: the error naming the part
                    raise
            rows = _write(store, groups, tmp, _key_schema(pa.unify_schemas(schemas)), summaries)
        if rows < 0:
            _write_table(with_key(empty, ""), tmp)
            rows = 0
    best_of = {name: -math.inf if s["n"] == 0 else s["score_max"] for name, s in summaries.items()}
    return Merged(rows, {name: {k: s[k] for k in _SUMMARY} for name, s in summaries.items()}, best_of, digest)


def _write_table(table: Any, path: Path) -> None:
    pq = require("pyarrow.parquet")
    with pq.ParquetWriter(path, table.schema, write_page_checksum=True) as writer:  # a CRC per page, as the parts
        writer.write_table(table)


def write_images(table: Any, path: Path) -> None:
    """Write images.parquet (``table``) atomically (then :func:`record_digest`)."""
    with parquet_target(path) as tmp:
        _write_table(table, tmp)


def gallery_top(store: ScanStore, done: list[ArchiveEntry], best_of: dict[str, float], k: int
                ) -> tuple[list[str], TopK]:  # fmt: skip
    """The ``k`` best patches of every image's own best patches (best first; ties by name, y, x), and their images'
    names. ``best_of``: each image's highest score (its :func:`summary`); images are read from the highest down
    until one's best cannot reach the k-th so far (an image whose best is unknown, NaN, is read first), so a scan
    reads a few best-patches files, not one per image. Memory: 2k thumbnails."""
    cfg = store.config
    best = TopK.empty(cfg.model.channels, cfg.patch)
    names = np.zeros(0, dtype=object)
    if k <= 0:
        return [], best

    def rank(e: ArchiveEntry) -> tuple[int, float]:
        b = best_of.get(e.name, math.nan)
        return (0, 0.0) if math.isnan(b) else (1, -b)

    for e in sorted(done, key=rank):
        b = best_of.get(e.name, math.nan)
        if len(best.scores) >= k and b < best.scores[-1]:  # nor can any image after it (False for a NaN)
            break
        if not store.top_path(e.key).exists():
            continue
        t = store.load_top(e.key)
        both_names = np.concatenate([names, np.array([e.name] * len(t.scores), dtype=object)])
        both = TopK(
            np.concatenate([best.scores, t.scores]),
            np.concatenate([best.xs, t.xs]),
            np.concatenate([best.ys, t.ys]),
            np.concatenate([best.thumbs, t.thumbs]),
        )
        order = np.lexsort((both.xs, both.ys, both_names.astype(str), -both.scores.astype(np.float64)))[:k]
        best = TopK(both.scores[order], both.xs[order], both.ys[order], both.thumbs[order])
        names = both_names[order]
    return [str(n) for n in names], best
