"""`edgeae scan` after the session-29 audit: images.parquet's schema, a results folder inside the archive, stamps
taken before reading, a dead worker, foreign --out folders, settings checked up front, CSV manifests, --geo, the
same file under two names, the CAE's score in the report, PDS4 data files in the walk."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pyarrow")
import pyarrow.parquet as pq
from test_scan_support import mean_scorer_factory

from edgeae.scan.archive import walk_archive
from edgeae.scan.pipeline import ScanConfig
from edgeae.scan.scoring import ModelSpec
from edgeae.scan.state import ScanStateError, ScanStore

SPEC = ModelSpec(path="m.onnx", model_id="m", artifact_hash="0" * 64, kind="cae", patch=32, channels=1)
SCORE_COLS = ["score_mean", "score_max", "score_p99", "max_x", "max_y"]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch")
    from test_scan_support import tiny_cae

    return tiny_cae(tmp_path_factory.mktemp("model") / "tiny.pt")


def _crops(root: Path, moon: np.ndarray, names: tuple[str, ...] = ("b.png", "c.png")) -> Path:
    from edgeae.imageio import write_image

    root.mkdir(parents=True, exist_ok=True)
    for i, n in enumerate(names):
        (root / n).parent.mkdir(parents=True, exist_ok=True)
        write_image(root / n, np.ascontiguousarray(moon[40 * i : 40 * i + 70, 30 * i : 30 * i + 90]))
    return root


def _scan(archive: object, model: Path, out: Path, **kw: object) -> dict:
    from edgeae.scan.run import EngineOptions, scan_archive

    kw.setdefault("engine", EngineOptions(workers=0))
    kw.setdefault("scorer_factory", mean_scorer_factory)
    return scan_archive(archive, model, out, progress=False, **kw)  # type: ignore[arg-type]


# -- 1: images.parquet --------------------------------------------------------------------------------------------
def test_images_parquet_keeps_the_score_columns_when_the_first_image_failed(moon, model, tmp_path) -> None:
    root = _crops(tmp_path / "arc", moon)
    (root / "a_bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40))  # first by name, and unreadable
    r = _scan(root, model, tmp_path / "out")
    assert r["done"] == 2 and r["failed"] == 1
    t = pq.read_table(tmp_path / "out" / "images.parquet")
    assert set(SCORE_COLS) <= set(t.column_names)
    rows = {x["file"]: x for x in t.to_pylist()}
    assert all(rows["a_bad.png"][c] is None for c in SCORE_COLS) and rows["a_bad.png"]["status"] == "failed"
    assert rows["b.png"]["score_max"] > 0 and rows["b.png"]["max_x"] >= 0


# -- 2: --out inside the archive -----------------------------------------------------------------------------------
def test_a_results_folder_inside_the_archive_is_not_scanned(moon, model, tmp_path) -> None:
    root = _crops(tmp_path / "arc", moon)
    first = _scan(root, model, root / "res", top_k=2)
    assert first["images"] == 2 and (root / "res" / "topk" / "gallery.png").exists()
    again = _scan(root, model, root / "res", top_k=2)
    assert again["images"] == 2 and again["images_scanned"] == 0
    assert all(not t["file"].startswith("res/") for t in again["top"])
    assert [e.name for e in walk_archive(f"{root}/**/*.png", exclude=root / "res")] == ["b.png", "c.png"]
    # results in the archive's own folder (an earlier version's scan): its images count, the scan's output not
    shutil.rmtree(root / "res")
    for n in ("scan.json", "report.md", "topk/000_b_x0_y0.png", "topk/gallery.png", "parts/b-0123456789ab.top.npz"):
        (root / n).parent.mkdir(exist_ok=True)
        (root / n).write_bytes(b"x")
    assert [e.name for e in walk_archive(root, exclude=root)] == ["b.png", "c.png"]
    # another scan's results folder in the archive (not this run's --out): its thumbnails are not images either
    old = root / "old_scan"
    for n in ("scan.json", "topk/000_b_x0_y0.png", "topk/gallery.png", "parts/x.top.npz"):
        (old / n).parent.mkdir(parents=True, exist_ok=True)
        (old / n).write_bytes(b"x")
    assert [e.name for e in walk_archive(root, exclude=tmp_path / "elsewhere")] == ["b.png", "c.png"]


# -- 3: stamps taken before reading --------------------------------------------------------------------------------
@pytest.mark.parametrize("fails", [False, True])
def test_an_image_that_changes_while_it_is_scanned_is_scanned_again(moon, model, tmp_path, monkeypatch, fails):
    import edgeae.scan.local as local

    root = _crops(tmp_path / "arc", moon)
    target = root / "b.png"
    full = target.read_bytes()
    if fails:  # a copy still being written: truncated when the scan reads it, complete by the time it is recorded
        target.write_bytes(full[:100])
    real = local.scan_image

    def scan_then_change(path, name, *a, **k):  # type: ignore[no-untyped-def]
        try:
            return real(path, name, *a, **k)
        finally:
            if name == "b.png":
                st = target.stat()
                target.write_bytes(full)
                os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))

    monkeypatch.setattr(local, "scan_image", scan_then_change)
    r = _scan(root, model, tmp_path / "out")
    assert r["failed"] == int(fails)
    monkeypatch.setattr(local, "scan_image", real)
    again = _scan(root, model, tmp_path / "out")  # stamped as it was before the read: scanned again, complete
    assert again["images_scanned"] == 1 and again["failed"] == 0 and again["done"] == 2
    assert _scan(root, model, tmp_path / "out")["images_scanned"] == 0


# -- 4: a dead worker process --------------------------------------------------------------------------------------
class _DeadPool:
    """A process pool whose every task dies with its worker (as a process killed by the OOM killer)."""

    def __init__(self, *a: object, **k: object) -> None:
        pass

    def submit(self, fn: object, *a: object) -> object:
        from concurrent.futures import Future
        from concurrent.futures.process import BrokenProcessPool

        f: Future[object] = Future()
        f.set_exception(BrokenProcessPool("A process in the process pool was terminated abruptly"))
        return f

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        pass


def test_a_dead_worker_process_ends_the_scan_as_a_broken_executor(moon, model, tmp_path, monkeypatch) -> None:
    """The command reports a BrokenExecutor in one line with status 1 (tests/test_cli_help.py); the scan raised a
    RuntimeError instead, which ended the command with a traceback."""
    from concurrent.futures import BrokenExecutor

    import edgeae.scan.local as local
    from edgeae.scan.run import EngineOptions

    root = _crops(tmp_path / "arc", moon)
    monkeypatch.setattr(local.cf, "ProcessPoolExecutor", _DeadPool)
    with pytest.raises(BrokenExecutor, match=r"^out of memory, or killed; the images finished before it are saved$"):
        _scan(root, model, tmp_path / "out", engine=EngineOptions(workers=2))


# -- 5: --out that is not a scan's folder ----------------------------------------------------------------------------
@pytest.mark.parametrize("force", [False, True])
def test_a_folder_that_holds_no_scan_is_refused(tmp_path: Path, force: bool) -> None:
    user = tmp_path / "userdir"
    (user / "topk").mkdir(parents=True)
    (user / "report.md").write_text("mine")
    (user / "topk" / "myfigure.png").write_bytes(b"x")
    with pytest.raises(ScanStateError, match=r"userdir is not empty and holds no scan \(no scan.json"):
        ScanStore(user, ScanConfig(SPEC, stride=32), force=force)
    assert (user / "report.md").read_text() == "mine" and not (user / "scan.json").exists()
    ScanStore(tmp_path / "new", ScanConfig(SPEC, stride=32))  # a new folder, and an empty one, are fine
    (tmp_path / "empty").mkdir()
    ScanStore(tmp_path / "empty", ScanConfig(SPEC, stride=32))
    logged = tmp_path / "logged"  # mkdir out; edgeae scan A --out out 2> out/scan.log; and hidden files
    logged.mkdir()
    (logged / "scan.log").write_text("")
    (logged / ".gitkeep").write_text("")
    ScanStore(logged, ScanConfig(SPEC, stride=32))


def test_force_and_the_gallery_remove_only_what_a_scan_writes(moon, model, tmp_path) -> None:
    root = _crops(tmp_path / "arc", moon)
    out = tmp_path / "out"
    _scan(root, model, out, top_k=2)
    (out / "topk" / "myfigure.png").write_bytes(b"x")
    (out / "parts" / "mydata.parquet").write_bytes(b"x")
    (out / "parts" / "keep").mkdir()
    r = _scan(root, model, out, top_k=2, force=True)
    assert r["images_scanned"] == 2
    assert (out / "topk" / "myfigure.png").exists() and (out / "parts" / "mydata.parquet").exists()
    assert (out / "parts" / "keep").is_dir()
    assert sorted(p.name for p in (out / "topk").glob("0*.png")) == [t["thumbnail"] for t in r["top"]]


# -- 7: settings checked before any image ----------------------------------------------------------------------------
def test_a_stride_that_leaves_gaps_and_a_huge_batch_are_refused_up_front(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="stride 10000 > patch 32 would leave gaps"):
        ScanConfig(SPEC, stride=10000)
    with pytest.raises(ValueError, match=r"batch_size 100000000 would hold 381.5 GiB .*at most 262144 patches"):
        ScanConfig(SPEC, stride=32, batch_size=100_000_000)
    ScanConfig(SPEC, stride=32, batch_size=262144)
    # a scan.json an earlier version wrote with such a stride: refused with the folder named, not a traceback
    out = tmp_path / "out"
    ScanStore(out, ScanConfig(SPEC, stride=32))
    cfg = json.loads((out / "scan.json").read_text())
    cfg["config"]["stride"] = 10000
    (out / "scan.json").write_text(json.dumps(cfg))
    with pytest.raises(ScanStateError, match=r"scan.json holds settings this version cannot resume \(stride 10000"):
        ScanStore(out, ScanConfig(SPEC, stride=32))


# -- 8: CSV manifests ------------------------------------------------------------------------------------------------
def test_csv_manifest_reads_quoted_paths_and_commas(tmp_path: Path) -> None:
    m = tmp_path / "list.csv"
    m.write_text('path,site\n"a,b.png",apollo\n"quoted.png",luna\nplain.png\n# note,x\n')
    entries = walk_archive(m)
    assert [e.name for e in entries] == ["a,b.png", "plain.png", "quoted.png"]
    assert entries[0].path == tmp_path / "a,b.png"


# -- 9: --geo ----------------------------------------------------------------------------------------------------------
def test_geo_layer_name_is_checked_before_scanning(moon, model, tmp_path) -> None:
    root = _crops(tmp_path / "arc", moon)
    with pytest.raises(ValueError, match=r"x\.shp: the layer must be \.gpkg or \.geojson"):
        _scan(root, model, tmp_path / "out", geo=tmp_path / "x.shp")
    assert not (tmp_path / "out").exists()  # nothing scanned


def test_geo_without_map_projected_products_says_so_and_keeps_the_old_layer(moon, model, tmp_path) -> None:
    root = _crops(tmp_path / "arc", moon)
    old = tmp_path / "x.gpkg"
    old.write_bytes(b"an earlier layer")
    r = _scan(root, model, tmp_path / "out", geo=old)
    assert r["geo_layers"] == [] and old.read_bytes() == b"an earlier layer"
    md = (tmp_path / "out" / "report.md").read_text()
    from edgeae.scan.report_text import _text

    assert _text(f"no map layer written to {old} (the file there is left as it was)") in md  # ``_`` escaped (s37)
    assert "map-projected" in json.loads((tmp_path / "out" / "report.json").read_text())["geo_note"]


# -- 10: one file under two names ------------------------------------------------------------------------------------
def test_the_same_file_under_two_names_is_scanned_once(tmp_path: Path, caplog) -> None:
    arch = tmp_path / "arch"
    (arch / "sub").mkdir(parents=True)
    for n in ("img0.png", "sub/img1.png"):
        (arch / n).write_bytes(b"x")
    with caplog.at_level(logging.WARNING, logger="edgeae.scan.archive"):
        entries = walk_archive([arch, arch / "sub"])
    assert [e.name for e in entries] == ["img0.png", "sub/img1.png"]
    assert "1 archive file(s) listed under two names are scanned once" in caplog.text
    m = tmp_path / "lists" / "m.txt"
    m.parent.mkdir()
    m.write_text("../arch/img0.png\n../arch/sub/../img0.png\n")
    assert [e.name for e in walk_archive(m)] == ["../arch/img0.png"]


# -- 11: the CAE's score in the report -------------------------------------------------------------------------------
def test_the_report_describes_a_cae_score_as_the_cae_error(moon, model, tmp_path) -> None:
    root = _crops(tmp_path / "arc", moon)
    r = _scan(root, model, tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    assert r["model_kind"] == "cae" and "the CAE's masked-reconstruction error" in md and "VAE's a(x)" not in md
    from edgeae.scan.report_text import report_markdown

    assert "the VAE's a(x)" in report_markdown({**r, "model_kind": "vae"})


# -- 12: PDS4 data files ---------------------------------------------------------------------------------------------
def test_pds4_data_files_read_through_their_label_are_not_reported_as_other_files(tmp_path: Path, caplog) -> None:
    (tmp_path / "y.xml").write_text(
        '<?xml version="1.0"?>\n<Product_Observational xmlns="http://pds.nasa.gov/pds4/pds/v1">'
        "<File_Area_Observational><File><file_name>y.dat</file_name></File></File_Area_Observational>"
        "</Product_Observational>\n"
    )
    (tmp_path / "y.dat").write_bytes(bytes(8))
    (tmp_path / "z.dat").write_bytes(bytes(8))  # named by no label: not scanned, and said so
    with caplog.at_level(logging.WARNING, logger="edgeae.scan.archive"):
        assert [e.name for e in walk_archive(tmp_path)] == ["y.xml"]
    assert "1 file(s) of other types" in caplog.text and ".dat 1" in caplog.text


def test_real_pds4_products_leave_no_other_files(formats: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="edgeae.scan.archive"):
        walk_archive(formats / "pds4")
    assert "other types" not in caplog.text


# -- 6: the driver killed ----------------------------------------------------------------------------------------------
def test_a_worker_leaves_when_its_driver_is_gone() -> None:
    from edgeae.scan.local import _watch_parent

    ppids = iter([7, 7, 1])  # the driver, then init (or a subreaper) once the driver died
    left: list[int] = []
    _watch_parent(7, 0.0, getppid=lambda: next(ppids), leave=left.append)
    assert left == [1]


def test_sigterm_ends_a_scan_as_ctrl_c_does(tmp_path, monkeypatch, capsys) -> None:
    import signal

    import edgeae.scan.run as scan_run
    from edgeae.cli import main

    def terminated(*a: object, **k: object) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM did not stop the scan")

    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(scan_run, "scan_archive", terminated)
    (tmp_path / "a").mkdir()
    assert main(["scan", str(tmp_path / "a"), "--out", str(tmp_path / "o"), "--no-progress"]) == 130
    assert "interrupted (SIGTERM) (run the same command again to resume)" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) == before
