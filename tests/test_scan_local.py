"""The local scan engine end to end: results, summaries, top-k, corrupt files, resume and idempotence."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pyarrow")
pytest.importorskip("torch")
import pyarrow.parquet as pq
from test_scan_support import build_small_archive, mean_scorer_factory, tiny_cae

from edgeae.scan.report import ARCHIVE_PATCHES, lro_extrapolation
from edgeae.scan.run import EngineOptions, scan_archive
from edgeae.scan.state import ScanStateError

INPROC = EngineOptions(workers=0)
GEO = ["map_x", "map_y", "lon", "lat"]


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory, moon: np.ndarray) -> tuple[Path, dict[str, list[str]]]:
    root = tmp_path_factory.mktemp("archive")
    return root, build_small_archive(root, moon)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_cae(tmp_path_factory.mktemp("model") / "tiny.pt")


def _manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def _scan(archive: Path, model: Path, out: Path, **kw) -> dict:
    kw.setdefault("engine", INPROC)
    return scan_archive(archive, model, out, progress=False, **kw)


def test_scan_writes_results_summaries_topk_and_records_corrupt_files(archive, model, tmp_path) -> None:
    root, names = archive
    report = _scan(root, model, tmp_path, top_k=5)
    assert report["done"] == len(names["good"]) and report["failed"] == 2 and report["pending"] == 0
    assert sorted(f["file"] for f in report["failures"]) == names["corrupt"]
    assert all("ImageReadError" in f["error"] for f in report["failures"])
    t = pq.read_table(tmp_path / "results.parquet")
    assert t.column_names == ["file", "x", "y", "score", "valid_frac", "model_id", "artifact_hash", *GEO, "key"]
    assert all(np.isnan(t.column(c).to_numpy()).all() for c in GEO)  # PNG/TIFF crops are not map-projected
    assert set(t.column("file").to_pylist()) == set(names["good"])
    assert set(t.column("model_id").to_pylist()) == {"tiny"}
    assert t.num_rows == report["patches"] == report["patches_in_results"]
    # the strip has 40 no-data columns on each side: edge patches below min_valid are counted, not scored
    assert report["patches_skipped_nodata"] > 0
    assert np.all(np.isfinite(t.column("score").to_numpy()))
    imgs = pq.read_table(tmp_path / "images.parquet").to_pylist()
    assert len(imgs) == len(names["good"]) + 2
    assert all((r["score_max"] is None) == (r["status"] != "done") for r in imgs)  # null for the failed ones
    best = max((r for r in imgs if r["status"] == "done"), key=lambda r: r["score_max"])
    top = sorted((tmp_path / "topk").glob("0*.png"))
    assert len(top) == 5 and (tmp_path / "topk" / "gallery.png").exists()
    assert report["top"][0]["file"] == best["file"]
    assert report["top"][0]["score"] == pytest.approx(t.column("score").to_numpy().max())
    assert report["lro_nac_extrapolation"]["days"] > 0
    # the report names what was scanned and lists every top patch with its thumbnail (it kept 10 in the JSON)
    assert len(report["top"]) == 5 and report["archive"] == [str(root)]
    md = (tmp_path / "report.md").read_text()
    assert f"- archive: `{root}`" in md and "## Top 5 patches" in md and f"topk/{report['top'][4]['thumbnail']}" in md


def test_scores_are_the_anomaly_library_scores(archive, model, tmp_path) -> None:
    from edgeae.anomaly.score import make_scorer
    from edgeae.predictor import load_predictor
    from edgeae.strips import iter_patches

    root, names = archive
    _scan(root / "a", model, tmp_path, min_valid=0.0)
    t = pq.read_table(tmp_path / "results.parquet")
    name = names["good"][0]
    rows = [r for r in t.to_pylist() if "a/" + r["file"] == name]
    patches = list(iter_patches(root / name, 32, 32, channels=1))
    batch = np.stack([p.pixels.transpose(2, 0, 1) for p in patches])
    want = make_scorer(load_predictor(model))(batch)["score"]
    assert [(r["x"], r["y"]) for r in rows] == [(p.x, p.y) for p in patches]
    np.testing.assert_allclose([r["score"] for r in rows], want, rtol=1e-5)


def test_interrupted_scan_resumes_to_the_same_results(archive, model, tmp_path) -> None:
    root, names = archive
    _scan(root, model, tmp_path / "full", scorer_factory=mean_scorer_factory)
    first = _scan(root, model, tmp_path / "cut", max_images=4, scorer_factory=mean_scorer_factory)
    assert first["done"] + first["failed"] == 4 and first["pending"] == len(names["good"]) + 2 - 4
    second = _scan(root, model, tmp_path / "cut", scorer_factory=mean_scorer_factory)
    assert second["images_scanned"] == len(names["good"]) + 2 - 4
    a = pq.read_table(tmp_path / "full" / "results.parquet")
    b = pq.read_table(tmp_path / "cut" / "results.parquet")
    assert a.equals(b)
    done = [r["name"] for r in _manifest(tmp_path / "cut") if r["status"] == "done"]
    assert sorted(done) == sorted(set(done)) and len(done) == len(names["good"])  # never scored twice
    third = _scan(root, model, tmp_path / "cut", scorer_factory=mean_scorer_factory)
    assert third["images_scanned"] == 0 and pq.read_table(tmp_path / "cut" / "results.parquet").equals(a)


def _no_scoring() -> object:
    raise AssertionError("an image was scored again")


def test_crash_between_part_and_manifest_is_harmless_and_lost_parts_are_rescanned(archive, model, tmp_path):
    root, _ = archive
    _scan(root, model, tmp_path, scorer_factory=mean_scorer_factory)
    want = pq.read_table(tmp_path / "results.parquet")
    lines = (tmp_path / "manifest.jsonl").read_text().splitlines()
    last_done = max(i for i, line in enumerate(lines) if '"done"' in line)
    crashed = json.loads(lines[last_done])["name"]
    # a crash after the part was renamed but before the manifest line: line lost (and a torn line left)
    (tmp_path / "manifest.jsonl").write_text("\n".join(lines[:last_done] + lines[last_done + 1 :]) + '\n{"na')
    r = _scan(root, model, tmp_path, scorer_factory=_no_scoring)
    assert r["images_scanned"] == 0 and pq.read_table(tmp_path / "results.parquet").equals(want)
    rec = [x for x in _manifest_lenient(tmp_path) if x["name"] == crashed]
    assert rec[-1]["status"] == "done" and rec[-1]["error"] == "recovered"
    # a part that disappeared after its done line: the image goes back to the queue, nothing is lost
    part = next((tmp_path / "parts").glob("crop_03*.parquet"))
    part.unlink()
    r = _scan(root, model, tmp_path, scorer_factory=mean_scorer_factory)
    assert r["images_scanned"] == 1 and pq.read_table(tmp_path / "results.parquet").equals(want)


def _manifest_lenient(out: Path) -> list[dict]:
    rows = []
    for line in (out / "manifest.jsonl").read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows


def test_an_image_changed_since_its_scan_is_scanned_again(archive, model, tmp_path, caplog) -> None:
    """A file replaced after its scan (size or modification time) is not left with stale scores; an unchanged
    one is not scored again; a corrupt file repaired in place is retried without --retry-failed."""
    import logging
    import os
    import shutil

    root = tmp_path / "arc"
    shutil.copytree(archive[0], root)  # the shared archive stays as it is
    out = tmp_path / "out"
    first = _scan(root, model, out, scorer_factory=mean_scorer_factory)
    assert first["failed"] == 2
    a, b = root / "a" / "crop_00.png", root / "b" / "crop_03.png"
    shutil.copyfile(b, a)
    st = a.stat()
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # another image under the same name
    with caplog.at_level(logging.WARNING, logger="edgeae"):
        again = _scan(root, model, out, scorer_factory=mean_scorer_factory)
    assert again["images_scanned"] == 1 and "changed since they were scanned" in caplog.text
    assert _scan(root, model, out, scorer_factory=_no_scoring)["images_scanned"] == 0
    shutil.copyfile(b, root / "bad_trunc.png")  # the truncated file repaired in place
    r = _scan(root, model, out, scorer_factory=mean_scorer_factory)
    assert r["images_scanned"] == 1 and r["failed"] == 1


def test_failed_images_are_kept_failed_unless_retried(archive, model, tmp_path) -> None:
    root, _ = archive
    _scan(root, model, tmp_path, scorer_factory=mean_scorer_factory)
    again = _scan(root, model, tmp_path, scorer_factory=mean_scorer_factory)
    assert again["images_scanned"] == 0 and again["failed"] == 2
    retry = _scan(root, model, tmp_path, scorer_factory=mean_scorer_factory, retry_failed=True)
    assert retry["images_scanned"] == 2 and retry["failed"] == 2


def test_other_settings_in_the_same_folder_are_refused(archive, model, tmp_path) -> None:
    root, _ = archive
    _scan(root / "b", model, tmp_path)
    with pytest.raises(ScanStateError, match=r"other settings \(stride: 32 -> 16\)"):  # names what changed
        _scan(root / "b", model, tmp_path, stride=16)
    r = _scan(root / "b", model, tmp_path, stride=16, force=True)
    assert r["done"] == r["images"]


def test_a_resume_with_the_other_int8_runtime_is_refused_and_says_why(archive, tmp_path) -> None:
    """A zoo name's int8 artifact depends on the CPU with --runtime auto: resuming a scan on a machine that picks
    the other runtime is refused with the two file names and the option that pins one."""
    pytest.importorskip("ai_edge_litert")
    pytest.importorskip("onnxruntime")
    root, _ = archive
    r = _scan(root / "b", "orbital-gray-vae", tmp_path, runtime="tflite")
    assert (
        r["artifact"] == "orbital-gray-vae.int8.tflite"
        and "orbital-gray-vae.int8.tflite" in (tmp_path / "report.md").read_text()
    )
    with pytest.raises(ScanStateError, match=r"scored with orbital-gray-vae\.int8\.tflite; this run would score with "
                       r"orbital-gray-vae\.int8\.onnx .*pin it with --runtime"):  # fmt: skip
        _scan(root / "b", "orbital-gray-vae", tmp_path, runtime="onnx")
    with pytest.raises(ScanStateError, match="other settings"):  # another setting too: the full comparison
        _scan(root / "b", "orbital-gray-vae", tmp_path, runtime="onnx", stride=32)


def test_process_pool_gives_the_same_results_as_in_process(archive, model, tmp_path) -> None:
    # the numpy stand-in keeps torch out of the spawned workers (seconds, not tens of seconds); the real
    # model across processes is covered by tests/test_scan_kill.py, tests/test_scan_ray.py and the benchmark
    root, _ = archive
    _scan(root, model, tmp_path / "one", scorer_factory=mean_scorer_factory)
    r = _scan(root, model, tmp_path / "pool", engine=EngineOptions(workers=2), scorer_factory=mean_scorer_factory)
    assert r["failed"] == 2
    a = pq.read_table(tmp_path / "one" / "results.parquet")
    assert a.equals(pq.read_table(tmp_path / "pool" / "results.parquet"))


def test_cli_scan_prints_the_report(archive, model, tmp_path, capsys) -> None:
    from edgeae.cli import main

    root, _ = archive
    rc = main(["scan", str(root / "a"), "--model", str(model), "--out", str(tmp_path), "--workers", "0",
               "--no-progress", "--top-k", "3"])  # fmt: skip
    assert rc == 0
    out = capsys.readouterr().out
    assert "patches/s" in out and "LRO NAC" in out
    assert main(["scan", str(root / "a"), "--model", str(model), "--out", str(tmp_path), "--stride", "8"]) == 2
    assert main(["scan", str(root), "--model", str(model), "--out", str(tmp_path), "--address", "x:1"]) == 2
    capsys.readouterr()
    # the archive's two corrupt files: everything else is scanned, and the exit status says some failed
    rc = main(["scan", str(root), "--model", str(model), "--out", str(tmp_path / "all"), "--workers", "0",
               "--no-progress"])  # fmt: skip
    assert rc == 1 and "2 image(s) could not be read" in capsys.readouterr().err


def test_lro_extrapolation_reproduces_the_paper_at_the_paper_rate() -> None:
    assert pytest.approx(173 * 86400 * 11.3e6 / 1800) == ARCHIVE_PATCHES
    ex = lro_extrapolation(11.3e6 / 1800)
    assert ex["days"] == pytest.approx(173.0, abs=0.1)
    assert lro_extrapolation(11.3e6 / 1800, stride=32)["days"] == pytest.approx(4 * 173.0, abs=0.5)


def test_worker_processes_keep_third_party_warnings_quiet(moon, model, tmp_path, capfd) -> None:
    """A spawned worker starts with no logging set up: tifffile's warning on a TIFF whose first page is out of
    the file reached stderr through Python's last-resort handler. Workers now take the parent's setting."""
    from edgeae.imageio import write_image

    root = tmp_path / "arc"
    root.mkdir()
    write_image(root / "good.png", np.ascontiguousarray(moon[:100, :120]))
    write_image(root / "good2.png", np.ascontiguousarray(moon[200:300, :120]))
    (root / "bad.tif").write_bytes(b"II*\x00" + (1_000_000).to_bytes(4, "little") + bytes(64))
    r = _scan(root, model, tmp_path / "out", engine=EngineOptions(workers=2), scorer_factory=mean_scorer_factory)
    assert r["done"] == 2 and r["failed"] == 1
    err = capfd.readouterr().err
    assert "tifffile" not in err and "invalid offset" not in err, err


def test_colour_images_under_a_grey_model_are_flagged_once(moon, model, tmp_path, caplog) -> None:
    import logging

    from edgeae.imageio import write_image

    root = tmp_path / "arc"
    root.mkdir()
    write_image(root / "grey.png", np.ascontiguousarray(moon[:96, :96]))
    write_image(root / "rgb.png", np.ascontiguousarray(np.stack([moon[:96, :96]] * 3, axis=-1)))
    with caplog.at_level(logging.WARNING, logger="edgeae.scan.run"):
        r = _scan(root, model, tmp_path / "out", scorer_factory=mean_scorer_factory)
    assert r["done"] == 2
    (rec,) = [m for m in caplog.messages if "colour" in m]
    assert rec.startswith("1 of the first 2 images are colour") and "rover-rgb-vae" in rec
