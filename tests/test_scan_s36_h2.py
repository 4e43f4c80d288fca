"""Audit s36 a2 #1 and #4: the end of a scan run (edgeae.scan.report.finalize).

#1: finalize read every part whole, concatenated and sorted them (~600 B a patch held at once: an archive of 1,000
NAC frames needed ~40 GB at its end) and loaded every image's best patches: it now streams the parts into
results.parquet (same rows, same order), reads the best patches of only the images that can reach the gallery, and
a rerun that finds the same parts reads none of them again.
#4: a full disk while results.parquet, images.parquet, report.json or report.md were written left a 0-byte or torn
file and an error naming no file: each is written under a temporary name and renamed, and the error names it.
"""

from __future__ import annotations

import json
import resource
import signal
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeae.printable import printable
from edgeae.scan.archive import ArchiveEntry
from edgeae.scan.manifest import Record
from edgeae.scan.out_checks import write_part
from edgeae.scan.pipeline import ScanConfig, TopK
from edgeae.scan.scoring import ModelSpec
from edgeae.scan.state import ScanStore, save_top

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

SPEC = ModelSpec(path="m.onnx", model_id="m", artifact_hash="0" * 64, kind="cae", patch=8, channels=1)
NOT_UTF8 = "z\udcff.png"  # a name whose bytes are not UTF-8 (x\xff on disk): "z\\xff.png" in the results


def _table(name: str, xs: np.ndarray, ys: np.ndarray, scores: np.ndarray, *, terms: bool = False,
           geo: bool = True) -> Any:  # fmt: skip
    """A part as :meth:`ScanStore.write_result` writes it (``geo=False``: as before the map columns existed)."""
    n = len(xs)
    cols: dict[str, Any] = {
        "file": pa.array([printable(name)] * n, pa.string()),
        "x": pa.array(xs, pa.int32()),
        "y": pa.array(ys, pa.int32()),
        "score": pa.array(scores, pa.float64()),
        "valid_frac": pa.array(np.ones(n), pa.float32()),
    }
    if terms:
        cols |= {"rec": pa.array(scores * 2, pa.float64()), "mu2": pa.array(scores / 2, pa.float64())}
    cols |= {"model_id": pa.array(["m"] * n, pa.string()), "artifact_hash": pa.array(["0" * 64] * n, pa.string())}
    if geo:
        cols |= {c: pa.array([None] * n, pa.float64()) for c in ("map_x", "map_y", "lon", "lat")}
    return pa.table(cols)


def _store(tmp_path: Path, parts: dict[str, Any], tops: dict[str, TopK] | None = None
           ) -> tuple[ScanStore, list[ArchiveEntry]]:  # fmt: skip
    """A results folder holding ``parts`` (name: table), recorded done (one manifest write, no fsync per image)."""
    store = ScanStore(tmp_path / "out", ScanConfig(SPEC, stride=8, top_k=5))
    entries, lines = [], []
    for name, table in parts.items():
        e = ArchiveEntry(tmp_path / "arch" / name, name)
        write_part(table, store.part_path(e.key))
        if tops and name in tops:
            save_top(store.top_path(e.key), tops[name])
        lines.append(json.dumps(Record(name, e.key, "done", n_patches=table.num_rows).__dict__))
        entries.append(e)
    store.manifest.write_text("\n".join(lines) + "\n")
    return store, sorted(entries, key=lambda e: e.name)


def _reference(store: ScanStore, entries: list[ArchiveEntry]) -> Any:
    """results.parquet as finalize wrote it until session 36: every part concatenated, then sorted by file, y, x (each
    row with its image's parts key, the last column since review s36 r6)."""
    tables = [pq.read_table(store.part_path(e.key)) for e in entries]
    table = pa.concat_tables(tables, promote_options="default")
    keys = [e.key for e, t in zip(entries, tables, strict=True) for _ in range(t.num_rows)]
    table = table.append_column("key", pa.array(keys, pa.string()))
    return table.sort_by([("file", "ascending"), ("y", "ascending"), ("x", "ascending")])


def _grid(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    xs = (np.arange(n) % 7 * 8).astype(np.int32)
    ys = (np.arange(n) // 7 * 8).astype(np.int32)
    return xs, ys, rng.integers(0, 4, n).astype(np.float64)  # few distinct scores: ties everywhere


@pytest.mark.parametrize("terms", [False, True])
def test_results_parquet_holds_the_rows_and_order_of_the_merged_parts(tmp_path: Path, monkeypatch, terms) -> None:
    """Same rows, same order and schema as concatenating and sorting every part: names that sort apart from their
    walk order (case, accents, bytes that are not UTF-8, two names written as the same text), a part whose rows are
    not in y, x order, an empty part, a part written before the map columns, row groups over several parts."""
    from edgeae.scan import merge, report

    monkeypatch.setattr(merge, "ROW_GROUP_ROWS", 20)  # several parts a row group, and parts split
    names = ["B.png", "a.png", "dir/é.png", NOT_UTF8, "z\\xff.png", "empty.png", "c.png", "A_old.png"]
    parts = {}
    for i, name in enumerate(names):
        xs, ys, s = _grid(0 if name == "empty.png" else 9 + 5 * i, i)
        if name == "c.png":  # rows not in raster order
            xs, ys, s = xs[::-1].copy(), ys[::-1].copy(), s[::-1].copy()
        geo = name != "A_old.png"  # the first part read lacks the map columns
        parts[name] = _table(name, xs, ys, s, terms=terms, geo=geo)
    store, entries = _store(tmp_path, parts)
    want = _reference(store, entries)
    rep = report.finalize(store, entries, {}, write_gallery=False)
    got = pq.read_table(store.out / "results.parquet")
    assert got.schema.names == want.schema.names and got.equals(want)
    assert rep["patches_in_results"] == want.num_rows
    assert pq.read_metadata(store.out / "results.parquet").num_row_groups > 1


def test_images_parquet_summaries_are_each_parts_own(tmp_path: Path) -> None:
    from edgeae.scan.report import finalize

    xs, ys, s = _grid(30, 1)
    s[[4, 17]] = 9.0  # two patches share the maximum: the first one read is the image's max
    store, entries = _store(tmp_path, {"a.png": _table("a.png", xs, ys, s), "e.png": _table("e.png", *_grid(0, 2))})
    finalize(store, entries, {}, write_gallery=False)
    rows = {r["file"]: r for r in pq.read_table(store.out / "images.parquet").to_pylist()}
    a, e = rows["a.png"], rows["e.png"]
    assert (a["score_max"], a["max_x"], a["max_y"]) == (9.0, int(xs[4]), int(ys[4]))
    assert a["score_mean"] == pytest.approx(s.mean()) and a["score_p99"] == pytest.approx(np.percentile(s, 99))
    assert np.isnan(e["score_max"]) and (e["max_x"], e["max_y"]) == (-1, -1)


def _top(scores: list[float], seed: int) -> TopK:
    rng = np.random.default_rng(seed)
    n = len(scores)
    thumbs = rng.integers(0, 255, (n, 1, 8, 8)).astype(np.uint8)
    return TopK(np.array(scores), np.arange(n, dtype=np.int32) * 8, np.zeros(n, np.int32), thumbs)


def _gallery_reference(store: ScanStore, entries: list[ArchiveEntry], k: int) -> list[tuple[str, int, int, float]]:
    """The gallery as finalize chose it until session 36: every image's best patches merged, best first, ties by
    name, y, x."""
    rows = []
    for e in entries:
        if store.top_path(e.key).exists():
            t = store.load_top(e.key)
            rows += [(e.name, int(x), int(y), float(s)) for s, x, y in zip(t.scores, t.xs, t.ys, strict=True)]
    return sorted(rows, key=lambda r: (-r[3], r[0], r[2], r[1]))[:k]


def test_the_gallery_reads_the_best_patches_of_only_the_images_that_can_reach_it(tmp_path: Path) -> None:
    """The top 5 of 60 images: the same patches, order and thumbnails as merging every image's best patches, with
    ties on the fifth score across images; best-patches files of images whose best score is below the fifth are
    not read."""
    from edgeae.scan.report import finalize

    parts, tops = {}, {}
    for i in range(60):
        name = f"img{59 - i:02d}.png"  # walk order differs from score order
        best = [7.0, 6.0, 5.0] if i in (10, 40) else [3.0 + (i % 3) * 0.5, 1.0]  # ties at 5.0 between images
        xs = np.arange(len(best), dtype=np.int32) * 8
        parts[name] = _table(name, xs, np.zeros(len(best), np.int32), np.array(best))
        tops[name] = _top(best, i)
    store, entries = _store(tmp_path, parts, tops)
    want = _gallery_reference(store, entries, 5)
    loaded: list[str] = []
    load_top = store.load_top
    store.load_top = lambda key: (loaded.append(key), load_top(key))[1]  # type: ignore[method-assign]
    rep = finalize(store, entries, {})
    assert [(t["file"], t["x"], t["y"], t["score"]) for t in rep["top"]] == want
    assert len(loaded) <= 3  # the two images with 7, 6, 5 (and no image whose best is 4.0 or less)
    cv2 = pytest.importorskip("cv2")
    for t in rep["top"]:  # each thumbnail is its image's own
        src = tops[t["file"]]
        th = src.thumbs[int(np.flatnonzero(src.xs == t["x"])[0])]
        got = cv2.imread(str(store.out / "topk" / t["thumbnail"]), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(got, th[0]), t


def test_a_rerun_with_no_part_changed_reads_no_part_again(tmp_path: Path, monkeypatch) -> None:
    """A rerun (a resume with nothing left, a --max-images slice that found nothing) keeps results.parquet and takes
    the images' summaries from images.parquet when both carry the digest of the same parts; a part written again, or
    images.parquet gone, reads them all."""
    from edgeae.scan import merge
    from edgeae.scan.report import finalize

    parts = {f"{i}.png": _table(f"{i}.png", *_grid(30 + i, i)) for i in range(4)}
    parts["e.png"] = _table("e.png", *_grid(0, 9))  # done, no patch scored
    tops = {name: _top([3.0 + i, 1.0], i) for i, name in enumerate(parts)}
    store, entries = _store(tmp_path, parts, tops)
    first = finalize(store, entries, {})
    results, images = store.out / "results.parquet", store.out / "images.parquet"
    st, rows = results.stat(), pq.read_table(images).to_pylist()
    reads: list[Path] = []
    read_part = merge.read_part
    monkeypatch.setattr(merge, "read_part", lambda p, **kw: (reads.append(p), read_part(p, **kw))[1])
    again = finalize(store, entries, {})
    assert reads == [] and (results.stat().st_ino, results.stat().st_mtime_ns) == (st.st_ino, st.st_mtime_ns)
    assert again["top"] == first["top"] and again["patches_in_results"] == first["patches_in_results"]
    assert str(pq.read_table(images).to_pylist()) == str(rows)  # (NaN == NaN as text)
    write_part(_table("2.png", *_grid(50, 5)), store.part_path(entries[2].key))  # scanned again
    finalize(store, entries, {})
    assert len(reads) == 5 and pq.read_table(results).equals(_reference(store, entries))
    images.unlink()
    finalize(store, entries, {})
    assert len(reads) == 10 and str(pq.read_table(images).to_pylist()) != str(rows)


# -- #1: memory ----------------------------------------------------------------------------------------------------
_POOLS: list[Any] = []  # each measuring pool outlives every buffer it gave (arrow frees into the pool it came from)


@contextmanager
def _peak() -> Iterator[dict[str, int]]:
    """Peak bytes held meanwhile by pyarrow (its default pool, proxied) and by Python and numpy (tracemalloc)."""
    pool = pa.proxy_memory_pool(pa.default_memory_pool())
    _POOLS.append(pool)
    before = pa.default_memory_pool()
    pa.set_memory_pool(pool)
    tracemalloc.start()
    out: dict[str, int] = {}
    try:
        yield out
    finally:
        out["python"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        pa.set_memory_pool(before)
        out["arrow"] = pool.max_memory()


def _finalize_peak(tmp_path: Path, n_parts: int) -> dict[str, int]:
    from edgeae.scan.report import finalize

    parts = {}
    for i in range(n_parts):
        name = f"d/{i:05d}.png"
        parts[name] = _table(name, *_grid(600, i))
    tops = {name: _top([3.0, 2.0], i) for i, name in enumerate(list(parts)[:20])}
    store, entries = _store(tmp_path / str(n_parts), parts, tops)
    with _peak() as peak:
        rep = finalize(store, entries, {})
    assert rep["patches_in_results"] == 600 * n_parts and len(rep["top"]) == min(5, 2 * n_parts)
    return peak


def test_finalize_memory_does_not_grow_with_the_number_of_parts(tmp_path: Path, monkeypatch) -> None:
    """Was: 20 parts of 600 patches peaked at ~4 MB of arrow memory and 200 at ~39 MB (every row at once, twice:
    the concatenation and its sorted copy). Now a bounded row group at a time: ~1.3 MB of arrow memory for both, and
    10x the parts (and rows) adds less than 1 MB in all (what remains per image: its record, summary and row of
    images.parquet, ~1.7 KB)."""
    from edgeae.scan import merge

    monkeypatch.setattr(merge, "ROW_GROUP_ROWS", 4096)
    _finalize_peak(tmp_path, 3)  # the modules a finalize imports (the gallery's) are not counted below
    small, large = _finalize_peak(tmp_path, 20), _finalize_peak(tmp_path, 200)
    rows_bytes = 180 * 600 * 100  # the 180 more parts' rows, at ~100 bytes a row in arrow
    assert large["arrow"] - small["arrow"] < rows_bytes / 20, (small, large)
    assert (large["arrow"] + large["python"]) - (small["arrow"] + small["python"]) < 2**20, (small, large)


# -- #4: a full disk while the end-of-run files are written ---------------------------------------------------------
@contextmanager
def _file_size_limit(nbytes: int) -> Iterator[None]:
    """Writes past ``nbytes`` fail (EFBIG, "File too large") as on a full disk: no root, no tmpfs needed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old)


def _files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file()}


def test_a_failed_write_of_results_parquet_keeps_the_earlier_one_and_names_it(tmp_path: Path) -> None:
    from edgeae.scan.report import finalize

    parts = {f"{i}.png": _table(f"{i}.png", *_grid(400, i)) for i in range(3)}
    store, entries = _store(tmp_path, parts)
    finalize(store, entries, {}, write_gallery=False)
    before = pq.read_table(store.out / "results.parquet")
    assert (store.out / "results.parquet").stat().st_size > 4000
    write_part(_table("1.png", *_grid(401, 7)), store.part_path(entries[1].key))  # scanned again: a new part
    with _file_size_limit(4000), pytest.raises(OSError, match=r"cannot write .*results\.parquet: File too large"):
        finalize(store, entries, {}, write_gallery=False)
    assert pq.read_table(store.out / "results.parquet").equals(before)  # was: a torn file in its place
    assert not [p.name for p in store.out.iterdir() if ".tmp-" in p.name]


def test_a_failed_write_of_the_reports_leaves_no_empty_report_and_names_it(tmp_path: Path) -> None:
    """Was (on a full disk): report.md at 0 bytes beside a whole report.json, '[Errno 28] No space left on device'."""
    from edgeae.scan.report import finalize, write_report

    store, entries = _store(tmp_path, {"a.png": _table("a.png", *_grid(40, 0))})
    rep = finalize(store, entries, {}, write_gallery=False)
    earlier = _files(store.out)
    sizes = sorted(len(earlier[n]) for n in ("report.json", "report.md"))
    with _file_size_limit(sizes[0] + 1), pytest.raises(OSError, match=r"cannot write .*report\.(json|md): File too"):
        write_report(store.out, {**rep, "extra": "x" * sizes[1]})  # (the run's second write, after a map layer)
    assert _files(store.out) == earlier  # both reports as they were, neither replaced alone, no temporary file
    with _file_size_limit(sizes[0] // 2), pytest.raises(OSError, match=f"cannot write {store.out}/"):
        finalize(store, entries, {}, write_gallery=False)  # finalize: the last run's reports go first
    left = _files(store.out)
    assert "report.md" not in left and "report.json" not in left  # none, never an empty one
    assert not [n for n in left if ".tmp-" in n]
