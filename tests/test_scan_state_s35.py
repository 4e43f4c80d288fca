"""Audit a3 #4: corrupt resume state. A manifest line that is not UTF-8 or whose fields have the wrong types is a torn
line (ignored with a warning naming the file and line); a part or best-patches file cut short or overwritten is
treated as a missing part (its image is scanned again, with a warning); a damaged best-patches file read anyway is
refused naming it; a record appended after a torn last line gets a line of its own."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from edgeae.scan.archive import ArchiveEntry
from edgeae.scan.out_checks import part_damage
from edgeae.scan.pipeline import ImageResult, ScanConfig, TopK
from edgeae.scan.scoring import ModelSpec
from edgeae.scan.state import ScanStateError, ScanStore

SPEC = ModelSpec(path="m.onnx", model_id="m", artifact_hash="0" * 64, kind="cae", patch=32, channels=1)


def _done(tmp_path: Path, names: tuple[str, ...] = ("a.png", "b.png")) -> tuple[ScanStore, list[ArchiveEntry]]:
    """A results folder with each of ``names`` scanned (two patches each)."""
    store = ScanStore(tmp_path / "out", ScanConfig(SPEC, stride=32))
    entries = []
    for name in names:
        img = tmp_path / name
        img.write_bytes(b"x")
        e = ArchiveEntry(img, name)
        top = TopK(np.array([2.0, 1.0]), np.array([0, 32], np.int32), np.zeros(2, np.int32),
                   np.zeros((2, 1, 32, 32), np.uint8))  # fmt: skip
        xs, ys = np.array([0, 32], np.int32), np.zeros(2, np.int32)
        store.write_result(e, ImageResult(name, xs, ys, np.ones(2, np.float32), np.array([2.0, 1.0]), top, 0))
        entries.append(e)
    return store, entries


def test_a_manifest_line_that_is_not_utf8_is_a_torn_line(tmp_path: Path, caplog) -> None:
    store, entries = _done(tmp_path)
    with store.manifest.open("ab") as f:
        f.write(b"\x00\xff garbage\n")
    with caplog.at_level(logging.WARNING):
        recs = store.records()  # was: UnicodeDecodeError naming no file
    assert set(recs) == {"a.png", "b.png"} and store.pending(entries) == []
    assert f"{store.manifest} line 3 is not a scan record" in caplog.text


@pytest.mark.parametrize(
    ("field", "value"), [("n_patches", "x"), ("n_skipped", None), ("seconds", "1"), ("name", 3), ("status", [])]
)
def test_a_manifest_line_with_a_field_of_the_wrong_type_is_a_torn_line(tmp_path: Path, caplog, field, value) -> None:
    """Was: the line was taken, and images.parquet failed ("Could not convert 'x' with type str"), naming no file."""
    store, entries = _done(tmp_path)
    lines = store.manifest.read_text().splitlines()
    bad = {**json.loads(lines[0]), field: value}
    store.manifest.write_text("\n".join([json.dumps(bad), lines[1]]) + "\n")
    with caplog.at_level(logging.WARNING):
        recs = store.records()
    assert "a.png" not in recs and recs["b.png"].n_patches == 2
    assert f"{store.manifest} line 1 is not a scan record ({field!r} is {value!r})" in caplog.text
    recs = store.reconcile(entries)  # its part is whole: recovered as done, not lost
    assert recs["a.png"].status == "done" and recs["a.png"].n_patches == 2 and recs["a.png"].error == "recovered"
    assert caplog.text.count("line 1 is not a scan record") == 1  # once per store, however often it is read


@pytest.mark.parametrize("which", ["part cut short", "part overwritten", "top overwritten"])
def test_a_damaged_part_sends_its_image_back_to_the_queue(tmp_path: Path, caplog, which) -> None:
    """Was: the resume stopped with pyarrow's "Parquet magic bytes not found" or numpy's "pickled (object) data"."""
    store, entries = _done(tmp_path)
    key = entries[0].key
    path = store.top_path(key) if which.startswith("top") else store.part_path(key)
    data = path.read_bytes()
    path.write_bytes(data[:100] if which.endswith("cut short") else bytes(range(256)) * 8)
    with caplog.at_level(logging.WARNING):
        todo = store.pending(entries)
    assert todo == [entries[0]]
    assert f"a.png: {path} is not a whole" in caplog.text and "it is scanned again" in caplog.text
    assert "b.png" not in caplog.text


def test_intact_parts_are_intact(tmp_path: Path) -> None:
    """part_damage() passes what pyarrow and numpy write, empty tables and top-k included."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from edgeae.scan.state import save_top

    p, t = tmp_path / "k-0123456789ab.parquet", tmp_path / "k-0123456789ab.top.npz"
    for n in (0, 3):
        pq.write_table(pa.table({"x": pa.array(range(n), pa.int32())}), p)
        z = np.zeros(n, np.int32)
        save_top(t, TopK(np.ones(n), z, z.copy(), np.ones((n, 3, 16, 16), np.uint8)))
        assert part_damage(p) is None and part_damage(t) is None
    p.write_bytes(p.read_bytes()[:-1])
    assert "not a whole Parquet file" in (part_damage(p) or "")


def test_a_damaged_top_file_read_anyway_is_refused_naming_it(tmp_path: Path) -> None:
    store, entries = _done(tmp_path, ("a.png",))
    path = store.top_path(entries[0].key)
    path.write_bytes(b"\x80\x04garbage" * 20)
    with pytest.raises(ScanStateError, match=r"top\.npz is damaged .*rerun the scan"):
        store.load_top(entries[0].key)


def test_a_record_after_a_torn_last_line_is_kept(tmp_path: Path) -> None:
    """A crash mid-write leaves a line without its newline; the next record used to be glued onto it and lost."""
    store, entries = _done(tmp_path, ("a.png",))
    with store.manifest.open("a") as f:
        f.write('{"name": "b.png", "ke')
    store.mark_failed(entries[0], "ImageReadError: x")
    assert store.records()["a.png"].status == "failed"


# -- review r5 of 6bedb66: a damaged part found by the resume stays not done for the whole run -------------------------
def _cut_short(store: ScanStore, e: ArchiveEntry) -> None:
    p = store.part_path(e.key)
    p.write_bytes(p.read_bytes()[:100])


def test_a_damaged_part_the_run_does_not_reach_is_reported_pending(tmp_path: Path, caplog) -> None:
    """Was: pending() said "it is scanned again", but finalize() of a run that stopped before it (--max-images, an
    interruption) counted it done from the damaged part and failed with pyarrow's "Parquet magic bytes not found"."""
    from edgeae.scan.report import finalize

    store, entries = _done(tmp_path)
    _cut_short(store, entries[0])
    with caplog.at_level(logging.WARNING):
        assert store.pending(entries) == [entries[0]]
    assert set(store.reconcile(entries)) == {"b.png"}  # later reconciles of this run: still not done
    report = finalize(store, entries, {}, write_gallery=False)
    assert (report["done"], report["pending"], report["patches_in_results"]) == (1, 1, 2)
    assert caplog.text.count("it is scanned again") == 1
    # once scanned again (its part rewritten), it is done
    top = TopK(np.array([3.0]), np.zeros(1, np.int32), np.zeros(1, np.int32), np.zeros((1, 1, 32, 32), np.uint8))
    xs = np.zeros(1, np.int32)
    store.write_result(entries[0], ImageResult("a.png", xs, xs.copy(), np.ones(1, np.float32), np.ones(1), top, 0))
    assert finalize(store, entries, {}, write_gallery=False)["done"] == 2


def test_scan_max_images_that_stops_before_a_damaged_part(tmp_path: Path, caplog) -> None:
    """The audit's case end to end: a new image (a.png) comes first, ``--max-images 1`` scans only it."""
    pytest.importorskip("pyarrow")
    from test_scan_support import mean_scorer_factory

    from edgeae.imageio import write_image
    from edgeae.scan.run import EngineOptions, scan_archive

    rng = np.random.default_rng(0)
    arc, out = tmp_path / "arc", tmp_path / "out"
    kw = dict(engine=EngineOptions(workers=0), progress=False, scorer_factory=mean_scorer_factory)
    for name in ("b.png", "c.png"):
        write_image(arc / name, rng.integers(0, 256, (64, 64), dtype=np.uint8))
    assert scan_archive(arc, "orbital-gray-vae", out, **kw)["done"] == 2
    part = next((out / "parts").glob("c-*.parquet"))
    part.write_bytes(part.read_bytes()[:100])
    write_image(arc / "a.png", rng.integers(0, 256, (64, 64), dtype=np.uint8))
    with caplog.at_level(logging.WARNING):
        r = scan_archive(arc, "orbital-gray-vae", out, max_images=1, **kw)
    assert f"c.png: {part} is not a whole Parquet file" in caplog.text
    assert (r["images_scanned"], r["done"], r["pending"]) == (1, 2, 1)
    r = scan_archive(arc, "orbital-gray-vae", out, **kw)  # the resume scans it again
    assert (r["images_scanned"], r["done"], r["pending"]) == (1, 3, 0)


def test_context_knn_ranking_leaves_a_damaged_part_pending(tmp_path: Path, caplog) -> None:
    """Was: rank_set() took the damaged part as done and recorded its image as failed ("part unreadable"), right
    after the resume had said it is scanned again; it is now left out of the ranking, pending."""
    pytest.importorskip("pyarrow")
    from edgeae.scan.context import rank_set

    vae = ModelSpec(path="m.pt", model_id="m", artifact_hash="0" * 64, kind="vae", patch=32, channels=1, latent=4)
    store = ScanStore(tmp_path / "out", ScanConfig(vae, stride=32, score="context-knn"))
    entries = []
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png", "c.png"):
        (tmp_path / name).write_bytes(b"x")  # not an image: the ranking keeps its scores, without thumbnails
        e = ArchiveEntry(tmp_path / name, name)
        xs, ys = np.array([0, 32], np.int32), np.zeros(2, np.int32)
        top = TopK.empty(1, 32)
        lat = rng.normal(size=(2, 1, 4)).astype(np.float32)
        store.write_result(e, ImageResult(name, xs, ys, np.ones(2, np.float32), np.ones(2), top, 0, latents=lat))
        entries.append(e)
    _cut_short(store, entries[0])
    with caplog.at_level(logging.WARNING):
        assert store.pending(entries) == [entries[0]]
        info = rank_set(store, entries)
    assert (info["images"], info["patches"], info["images_failed"]) == (2, 4, 0)
    assert "a.png" not in store.reconcile(entries) and store.records()["a.png"].status == "done"


def test_a_manifest_line_with_an_unknown_status_is_a_torn_line(tmp_path: Path, caplog) -> None:
    """Was: accepted, and the image's part then recorded it as done again ("recovered") on every resume."""
    store, entries = _done(tmp_path)
    lines = store.manifest.read_text().splitlines()
    store.manifest.write_text("\n".join([json.dumps({**json.loads(lines[0]), "status": "weird"}), lines[1]]) + "\n")
    with caplog.at_level(logging.WARNING):
        recs = store.records()
    assert "a.png" not in recs and recs["b.png"].status == "done"
    assert f"{store.manifest} line 1 is not a scan record ('status' is 'weird')" in caplog.text
    assert store.reconcile(entries)["a.png"].error == "recovered"  # recovered from its part once, as a torn line


def test_a_failed_or_skipped_image_keeps_no_outputs_of_an_earlier_scan(tmp_path: Path) -> None:
    """mark_failed / mark_skipped removed the part and latents only: the map layer (geo._features reads top.npz and
    meta.json whatever the status) and the report's per-image facts kept an earlier scan's detections of it."""
    store, entries = _done(tmp_path)
    a, b = entries
    store.meta_path(a.key).write_text('{"georef": null}')
    store.meta_path(b.key).write_text('{"georef": null}')
    store.mark_failed(a, "ImageReadError: truncated")
    store.mark_skipped(b, "quality: too dark")
    for e in entries:
        for path in (store.part_path(e.key), store.top_path(e.key), store.meta_path(e.key)):
            assert not path.exists(), path
    assert {r.status for r in store.records().values()} == {"failed", "skipped"}


@pytest.mark.parametrize("damaged", ["part", "top"])
def test_the_map_layer_leaves_out_an_image_pending_after_damage(tmp_path: Path, formats: Path, damaged: str) -> None:
    """Review r9: --geo took every entry with a meta.json and a top.npz: a pending image's (damaged part) earlier
    detections were published, and a damaged top.npz failed the command after the report was written."""
    pytest.importorskip("rasterio")
    pytest.importorskip("pyarrow")
    import json
    import shutil

    from test_scan_support import mean_scorer_factory, tiny_cae

    from edgeae.imageio import write_image
    from edgeae.scan.run import EngineOptions, scan_archive

    model = tiny_cae(tmp_path / "tiny.pt")
    arc = tmp_path / "arc"
    arc.mkdir()
    shutil.copy(formats / "isis3" / "ldem_4_reduced.cub", arc / "z.cub")
    kw = dict(engine=EngineOptions(workers=0), progress=False, scorer_factory=mean_scorer_factory, min_valid=0.0)
    layer = tmp_path / "l.geojson"
    assert scan_archive(arc, model, tmp_path / "out", geo=layer, **kw)["done"] == 1
    assert json.loads(layer.read_text())["features"]
    f = next((tmp_path / "out" / "parts").glob("z-*.top.npz" if damaged == "top" else "z-*.parquet"))
    f.write_bytes(f.read_bytes()[:100])
    write_image(arc / "a.png", np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8))
    layer.unlink()
    r = scan_archive(arc, model, tmp_path / "out", geo=layer, max_images=1, **kw)
    assert (r["done"], r["pending"], r["geo_layers"]) == (1, 1, []) and not layer.exists()
    import pyarrow.parquet as pq

    rows = {row["file"]: row for row in pq.read_table(tmp_path / "out" / "images.parquet").to_pylist()}
    assert rows["z.cub"]["status"] == "pending" and not rows["z.cub"]["product_id"]  # no earlier scan's facts
