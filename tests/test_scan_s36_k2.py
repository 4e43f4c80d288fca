"""Reviews s36 r11 and r12 of the scan's end (edgeae.scan.merge) and its part checks (edgeae.scan.out_checks).

r11 #1: a results.parquet damaged inside its pages (bit rot, a bad restore) was kept by every rerun: the reuse check
read only its ends and footer. Its page CRCs are now verified, one row group at a time, before it is kept.
r11 #2: a part rewritten in place with its size and modification time kept (``cp -p``, ``touch -r``) left a stale
results.parquet: the parts' digest now holds each part's ctime too, which no tool can set back.
r11 #3: images.parquet's write is atomic (76f7d68): a failed write keeps the earlier one and names it.
r11 #4: results.parquet's footer held the parts' digest (inodes, times), so two identical scans wrote different
bytes: the digest is now a sidecar (``.results.digest.json``) and identical scans write identical files.
r12 #8: a part that could not be read for lack of memory was called damaged ("delete it").
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_scan_s36_h2 import _file_size_limit, _grid, _reference, _store, _table

from edgeae.scan.archive import ArchiveEntry

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


def _counting(monkeypatch) -> list[Path]:
    from edgeae.scan import merge

    reads: list[Path] = []
    read_part = merge.read_part
    monkeypatch.setattr(merge, "read_part", lambda p, **kw: (reads.append(p), read_part(p, **kw))[1])
    return reads


def _as_bit_rot_leaves_it(out: Path) -> None:
    """The digest sidecar's record of results.parquet set to the file's (bit rot changes no ctime, as the write of
    the test did)."""
    sidecar = out / ".results.digest.json"
    d = json.loads(sidecar.read_text())
    st = (out / "results.parquet").stat()
    d["results"] = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
    sidecar.write_text(json.dumps(d))


def test_a_results_parquet_damaged_inside_its_pages_is_written_again(tmp_path: Path, monkeypatch) -> None:
    from edgeae.scan import merge
    from edgeae.scan.report import finalize

    monkeypatch.setattr(merge, "ROW_GROUP_ROWS", 256)  # several row groups: each is verified
    parts = {f"{i}.png": _table(f"{i}.png", *_grid(300, i)) for i in range(3)}
    store, entries = _store(tmp_path, parts)
    finalize(store, entries, {}, write_gallery=False)
    results = store.out / "results.parquet"
    assert pq.ParquetFile(results).num_row_groups > 1
    st = results.stat()
    data = bytearray(results.read_bytes())
    data[len(data) // 2] ^= 0xFF  # bit rot inside a page: the ends and the footer whole
    results.write_bytes(bytes(data))
    os.utime(results, ns=(st.st_atime_ns, st.st_mtime_ns))
    _as_bit_rot_leaves_it(store.out)
    with pytest.raises(OSError, match="CRC"):
        pq.read_table(results, page_checksum_verification=True)
    reads = _counting(monkeypatch)
    finalize(store, entries, {}, write_gallery=False)  # was: kept as it was, reading no part
    assert len(reads) == 3
    assert pq.read_table(results, page_checksum_verification=True).equals(_reference(store, entries))


def test_a_part_rewritten_in_place_with_its_size_and_time_kept_is_read_again(tmp_path: Path, monkeypatch) -> None:
    from edgeae.scan.out_checks import write_part
    from edgeae.scan.report import finalize

    xs, ys, _ = _grid(60, 0)
    scores = np.random.default_rng(0).random(60)  # no two alike, not compressible
    parts = {f"{i}.png": _table(f"{i}.png", xs, ys, scores + i) for i in range(3)}
    store, entries = _store(tmp_path, parts)
    finalize(store, entries, {}, write_gallery=False)
    part = store.part_path(entries[1].key)
    st = part.stat()
    other = tmp_path / "other.parquet"
    swapped = scores + 1
    swapped[[0, 1]] = swapped[[1, 0]]  # two patches' scores swapped: the same size (as `cp -p` of a rescan)
    write_part(_table("1.png", xs, ys, swapped), other)
    assert other.stat().st_size == st.st_size
    with open(part, "r+b") as f:  # in place: the same inode
        f.write(other.read_bytes())
    os.utime(part, ns=(st.st_atime_ns, st.st_mtime_ns))  # touch -r / cp -p: its time set back
    now = part.stat()
    assert (now.st_ino, now.st_size, now.st_mtime_ns) == (st.st_ino, st.st_size, st.st_mtime_ns)
    reads = _counting(monkeypatch)
    finalize(store, entries, {}, write_gallery=False)  # was: the stale results.parquet kept
    assert len(reads) == 3
    assert pq.read_table(store.out / "results.parquet").equals(_reference(store, entries))


def test_a_failed_write_of_images_parquet_keeps_the_earlier_one_and_names_it(tmp_path: Path) -> None:
    """Was (before 76f7d68): images.parquet written in place, so a full disk left a torn one."""
    from edgeae.scan.report import finalize

    store, entries = _store(tmp_path, {f"{i}.png": _table(f"{i}.png", *_grid(20, i)) for i in range(2)})
    pending = [
        ArchiveEntry(tmp_path / "arch" / f"{'n' * 150}{i:03d}.png", f"{'n' * 150}{i:03d}.png") for i in range(200)
    ]
    entries = entries + pending  # not scanned yet: a row each in images.parquet only
    finalize(store, entries, {}, write_gallery=False)
    images = store.out / "images.parquet"
    before = images.read_bytes()
    small = max(p.stat().st_size for p in store.out.iterdir() if p.is_file() and p.name != "images.parquet")
    assert len(before) > 2 * small  # images.parquet the one file past the limit below
    with (
        _file_size_limit((len(before) + small) // 2),
        pytest.raises(OSError, match=r"cannot write .*images\.parquet: File too large"),
    ):
        finalize(store, entries, {}, write_gallery=False)
    assert images.read_bytes() == before
    assert not [p.name for p in store.out.iterdir() if ".tmp-" in p.name]


def test_two_identical_scans_write_identical_results_and_images(tmp_path: Path, monkeypatch) -> None:
    """Was: results.parquet's (and images.parquet's) footer held the parts' digest, with their inodes and times."""
    from edgeae.scan.report import finalize

    parts = {f"{i}.png": _table(f"{i}.png", *_grid(40 + i, i)) for i in range(3)}
    a, ea = _store(tmp_path / "a", parts)
    b, eb = _store(tmp_path / "b", parts)
    finalize(a, ea, {}, write_gallery=False)
    finalize(b, eb, {}, write_gallery=False)
    for name in ("results.parquet", "images.parquet"):
        assert (a.out / name).read_bytes() == (b.out / name).read_bytes(), name
    before = (a.out / "results.parquet").read_bytes()
    os.utime(a.part_path(ea[0].key))  # touched: read again, written again, the same bytes
    reads = _counting(monkeypatch)
    finalize(a, ea, {}, write_gallery=False)
    assert len(reads) == 3 and (a.out / "results.parquet").read_bytes() == before
    digest = json.loads((a.out / ".results.digest.json").read_text())
    assert set(digest) >= {"digest", "results", "images"}
    reads.clear()
    finalize(a, ea, {}, write_gallery=False)  # unchanged: kept, nothing read
    assert reads == []


def test_results_are_read_again_when_the_digest_sidecar_or_a_file_is_not_theirs(tmp_path: Path, monkeypatch) -> None:
    from edgeae.scan.report import finalize

    parts = {f"{i}.png": _table(f"{i}.png", *_grid(40, i)) for i in range(2)}
    store, entries = _store(tmp_path, parts)
    finalize(store, entries, {}, write_gallery=False)
    reads = _counting(monkeypatch)
    sidecar = store.out / ".results.digest.json"
    sidecar.unlink()  # a run killed after results.parquet was written: no sidecar
    finalize(store, entries, {}, write_gallery=False)
    assert len(reads) == 2 and sidecar.exists()
    results = store.out / "results.parquet"
    shutil.copy2(results, tmp_path / "r.parquet")
    os.replace(tmp_path / "r.parquet", results)  # another file put in its place (another inode)
    finalize(store, entries, {}, write_gallery=False)
    assert len(reads) == 4
    store.reset()
    assert not sidecar.exists()


def test_a_part_unreadable_for_lack_of_memory_is_not_called_damaged(tmp_path: Path, monkeypatch) -> None:
    from edgeae.scan import out_checks
    from edgeae.scan.out_checks import PartDamagedError, PartUnreadableError, read_part, write_part

    path = tmp_path / "p.parquet"
    write_part(_table("a.png", *_grid(10, 0)), path)

    class Boom:
        def __init__(self, *a, **kw) -> None:
            raise pa.ArrowMemoryError("malloc of size 1073741824 failed")

    monkeypatch.setattr(out_checks.require("pyarrow.parquet"), "ParquetFile", Boom)
    with pytest.raises(PartUnreadableError, match="memory") as err:
        read_part(path)
    assert "delete it" not in str(err.value) and not isinstance(err.value, PartDamagedError)
    assert path.exists()


# -- review s36 r12 #1: the head-loss limit taken from Ray's own reconnect timeout ---------------------------------
def test_the_head_loss_limit_follows_rays_reconnect_timeout() -> None:
    """Was a fixed 20 s: a cluster with GCS fault tolerance (KubeRay: 600 s) had its scan ended while the GCS
    restarted, which Ray itself would have survived."""
    from edgeae.scan.ray_connect import RAY_RECONNECT_ENV, head_lost_s

    assert head_lost_s({}) == 20.0  # Ray's default, 60 s
    assert head_lost_s({RAY_RECONNECT_ENV: "600"}) == 560.0
    assert head_lost_s({RAY_RECONNECT_ENV: "25"}) == 10.0  # said before Ray ends the driver at 25 s
    assert head_lost_s({RAY_RECONNECT_ENV: "nonsense"}) == 20.0


def test_a_gcs_restarting_under_fault_tolerance_is_not_the_cluster_lost(monkeypatch) -> None:
    from edgeae.scan import ray_connect
    from edgeae.scan.errors import ClusterLostError

    monkeypatch.setenv(ray_connect.RAY_RECONNECT_ENV, "600")
    now = [0.0]
    watch = ray_connect.HeadWatch("10.0.0.1:6379", accepts=lambda address: False, clock=lambda: now[0])
    for t in (0.0, 5.0, 25.0, 120.0):  # the GCS restarting (KubeRay: back within ~120 s)
        now[0] = t
        watch.poll()
        watch.check()
        watch.failed(BrokenPipeError(32, "Broken pipe"))  # not the cluster lost: the caller raises its own error
    now[0] = 560.0
    watch.poll()
    with pytest.raises(ClusterLostError, match="refused connections for 560 s"):
        watch.check()


# -- review s36 r12 #3: a link to a folder above the archive ----------------------------------------------------------
def test_a_link_to_a_folder_above_the_archive_is_not_walked(tmp_path: Path, caplog) -> None:
    """Was: ``arch/up -> ..`` walked the archive's siblings (``up/other/b.png``); a link to ``/`` the whole system."""
    import logging

    from edgeae.scan.archive import walk_archive

    arch, other = tmp_path / "p" / "arch", tmp_path / "p" / "other"
    arch.mkdir(parents=True)
    other.mkdir()
    (arch / "a.png").write_bytes(b"x")
    (other / "b.png").write_bytes(b"x")
    (arch / "up").symlink_to("..")
    (arch / "root").symlink_to("/")
    caplog.set_level(logging.WARNING, "edgeae")
    assert [e.name for e in walk_archive(arch)] == ["a.png"]
    assert sum("a folder holding the archive: not walked" in r.getMessage() for r in caplog.records) == 2
