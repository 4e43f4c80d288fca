"""Session 37 fixer q1: archive scan and score items of the audits (a missing [archive] extra refused up front and an
older run's missing-dependency failures taken again; a symbolic link loop recorded as failed; Ctrl-C without the
workers' tracebacks; an unwritable stderr that does not lose score's CSV; "no valid pixel" for all-no-data products;
the synthetic archive's usage errors; a streamed bomb's declared patches not counted)."""

from __future__ import annotations

from pathlib import Path

import pytest
from _helpers_scan import GRAY_ONNX, nan_archive, score_log

from edgeae.scan.synth import main as synth_main


def test_synth_too_few_files_is_a_usage_error_not_a_traceback(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    # python -m edgeae.scan.synth --out a --n 2 ended in build_archive's ValueError traceback
    with pytest.raises(SystemExit) as exc:
        synth_main(["--out", str(tmp_path / "a"), "--n", "2"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "error: --n 2 must be more than --huge + --corrupt = 6" in err and "Traceback" not in err
    assert not (tmp_path / "a").exists()
    with pytest.raises(SystemExit) as exc:
        synth_main(["--out", str(tmp_path / "a"), "--huge", "-1"])
    assert exc.value.code == 2 and "--huge and --corrupt must be 0 or more" in capsys.readouterr().err


# -- a symbolic link loop in the archive ------------------------------------------------------------------------------
def _loop_archive(root: Path) -> Path:
    """``root`` holding a good 64-px image, ``M.IMG -> M.IMG`` and ``a.png <-> b.png`` (skipped where links cannot be
    made)."""
    from test_scan_support import noise_archive

    noise_archive(root, ["good.png"])
    try:
        (root / "M.IMG").symlink_to("M.IMG")
        (root / "a.png").symlink_to("b.png")
        (root / "b.png").symlink_to("a.png")
    except OSError as exc:
        pytest.skip(f"no symbolic links here: {exc}")
    return root


def test_a_link_loop_is_recorded_failed_with_its_reason_and_the_scan_goes_on(tmp_path: Path) -> None:
    # M.IMG -> M.IMG aborted the whole walk with "RuntimeError: Symlink loop from ..." before any product was scanned
    from test_scan_support import mean_scorer_factory

    from edgeae.scan.archive import link_loop, walk_archive
    from edgeae.scan.run import EngineOptions, scan_archive

    arc = _loop_archive(tmp_path / "arc")
    assert [e.name for e in walk_archive(arc)] == ["M.IMG", "a.png", "b.png", "good.png"]
    assert link_loop(arc / "M.IMG") == "a symbolic link loop (M.IMG -> M.IMG)"
    assert link_loop(arc / "good.png") is None and link_loop(arc / "missing.png") is None
    kw = dict(engine=EngineOptions(workers=0), progress=False, scorer_factory=mean_scorer_factory)
    report = scan_archive(arc, "orbital-gray-vae", tmp_path / "out", **kw)  # type: ignore[arg-type]
    assert (report["done"], report["failed"], report["images_scanned"]) == (1, 3, 4)
    errors = {f["file"]: f["error"] for f in report["failures"]}
    assert errors == {
        "M.IMG": "a symbolic link loop (M.IMG -> M.IMG): not read",
        "a.png": "a symbolic link loop (a.png -> b.png): not read",
        "b.png": "a symbolic link loop (b.png -> a.png): not read",
    }
    assert "- `M.IMG`: a symbolic link loop (M.IMG -> M.IMG): not read" in (tmp_path / "out" / "report.md").read_text()
    with pytest.raises(FileNotFoundError, match=r"archive '.*M.IMG' is a symbolic link loop \(M.IMG -> M.IMG\)"):
        walk_archive(arc / "M.IMG")


def test_score_names_a_link_loop_instead_of_saying_it_does_not_exist(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from edgeae.cli import main

    arc = _loop_archive(tmp_path / "arc")
    assert main(["score", str(arc / "M.IMG"), "-o", str(tmp_path / "s.csv"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"image {arc / 'M.IMG'} is a symbolic link loop (M.IMG -> M.IMG)" in err, err
    assert not (tmp_path / "s.csv").exists()


# -- planetary products without the [archive] extra -------------------------------------------------------------------
def test_scan_refuses_products_without_rasterio_before_recording_anything(tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    # without the [archive] extra every product was recorded as failed (status 1, the reason in report.md only), and
    # a plain rerun once it was installed scanned nothing: now one line, status 2, the pip line, no results folder
    import sys

    from test_scan_support import noise_archive

    from edgeae.cli import main

    arc = noise_archive(tmp_path / "arc", ["a.png"])
    (arc / "sub").mkdir()
    (arc / "sub" / "X.IMG").write_bytes(b"PDS_VERSION_ID = PDS3\r\nEND\r\n")
    monkeypatch.setitem(sys.modules, "rasterio", None)  # not installed, as find_spec and import see it
    out = tmp_path / "out"
    assert main(["scan", str(arc), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "edgeae scan: error: the archive holds a planetary product, read through GDAL (e.g. sub/X.IMG): 'rasterio' is "
        "needed here but is not installed: run  pip install 'edgeae[archive]'; to scan the other images without it, "
        f"give a glob or manifest that leaves it out: '{arc}/**/*.png'"  # since s37 v1 (review r8 #4)
    ), err
    assert not out.exists()
    (arc / "sub" / "X.IMG").unlink()  # images alone need no GDAL: scanned as before
    assert main(["scan", str(arc), "--out", str(out), "--no-progress", "--workers", "0"]) == 0


_DEP = "'rasterio' is needed here but is not installed: run  pip install 'edgeae[archive]'"


def _white_needs_a_package(batch):  # type: ignore[no-untyped-def]
    """The mean scorer, but a white image's batch fails as a product read without its package would."""
    import numpy as np

    from edgeae._optional import MissingDependencyError

    if np.all(batch > 0.9):
        raise MissingDependencyError(_DEP)
    return batch.reshape(len(batch), -1).mean(axis=1).astype(np.float64)


def _white_factory():  # type: ignore[no-untyped-def]
    return _white_needs_a_package


def test_a_failure_for_a_missing_package_is_taken_again_by_a_plain_rerun(tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    import numpy as np
    from test_scan_support import mean_scorer_factory, noise_archive

    from edgeae.imageio import write_image
    from edgeae.scan.run import EngineOptions, scan_archive

    arc = noise_archive(tmp_path / "arc", ["a.png"])
    write_image(arc / "w.png", np.full((64, 64), 240, np.uint8))
    kw = dict(engine=EngineOptions(workers=0), progress=False)
    first = scan_archive(arc, "orbital-gray-vae", tmp_path / "out", scorer_factory=_white_factory, **kw)  # type: ignore[arg-type]
    assert first["failures"] == [{"file": "w.png", "error": f"MissingDependencyError: {_DEP}"}]
    again = scan_archive(arc, "orbital-gray-vae", tmp_path / "out", scorer_factory=mean_scorer_factory, **kw)  # type: ignore[arg-type]
    assert (again["images_scanned"], again["done"], again["failed"]) == (1, 2, 0)
    assert "1 image(s) recorded as failed for a package that was not installed are scanned again (e.g. w.png)" in (
        caplog.text
    )
    third = scan_archive(arc, "orbital-gray-vae", tmp_path / "out", scorer_factory=mean_scorer_factory, **kw)  # type: ignore[arg-type]
    assert third["images_scanned"] == 0 and third["done"] == 2


def test_scan_says_on_the_console_when_failures_were_a_missing_package(tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    from test_scan_support import noise_archive, scan_report

    import edgeae.scan.run as run
    from edgeae.cli import main

    failures = [{"file": "x.IMG", "error": f"MissingDependencyError: {_DEP}"}, {"file": "y.png", "error": "bad"}]
    monkeypatch.setattr(run, "scan_archive", lambda *a, **k: scan_report(failed=2, done=0, images=2, failures=failures))
    arc = noise_archive(tmp_path / "arc", ["a.png"])
    assert main(["scan", str(arc), "--out", str(tmp_path / "o"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert (
        "--retry-failed scans them again); 1 for a package not installed, which a plain rerun takes again: "
        f"{_DEP}\n" in err
    ), err


# -- a streamed bomb's declared patches ------------------------------------------------------------------------------
def test_an_image_over_the_streaming_limit_counts_no_patch_and_fails_alone(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # a 4.9 MB sparse GeoTIFF declaring 200,000² px counted its 9.8 M patches in the progress total and in
    # context-knn's set size (the whole set refused, naming it) though its read is refused by EDGEAE_MAX_STREAM_PIXELS
    import numpy as np
    from test_scan_support import mean_scorer_factory, noise_archive

    from edgeae.imageio import write_image
    from edgeae.scan.archive import walk_archive
    from edgeae.scan.context import check_set_size
    from edgeae.scan.pipeline import ScanConfig, count_patches
    from edgeae.scan.run import EngineOptions, scan_archive
    from edgeae.scan.scoring import ModelSpec

    arc = noise_archive(tmp_path / "arc", ["good.png"])  # 64² px: 16 patches of 16
    write_image(arc / "big.png", np.random.default_rng(1).integers(0, 256, (128, 128), dtype=np.uint8))  # 64 patches
    vae = ModelSpec(path="v.onnx", model_id="v", artifact_hash="1" * 64, kind="vae", patch=16, channels=1, latent=8)
    config = ScanConfig(vae, 16, score="context-knn")
    assert (count_patches(arc / "good.png", config), count_patches(arc / "big.png", config)) == (16, 64)
    monkeypatch.setattr("edgeae.anomaly.baselines.KNN_MAX", 20)
    with pytest.raises(ValueError, match=r"give 80 patches"):
        check_set_size(walk_archive(arc), config)
    monkeypatch.setenv("EDGEAE_MAX_STREAM_PIXELS", "5000")  # good.png's 4,096 px stream, big.png's 16,384 do not
    assert (count_patches(arc / "good.png", config), count_patches(arc / "big.png", config)) == (16, 0)
    check_set_size(walk_archive(arc), config)  # 16 patches: the set is not refused for the image that will fail
    geo = Path("/work/shared/data/formats/geotiff/mars.tif")  # a real product, read through GDAL: the same rule
    if geo.is_file():
        assert count_patches(geo, config) == 0
        monkeypatch.delenv("EDGEAE_MAX_STREAM_PIXELS")
        assert count_patches(geo, config) > 0
        monkeypatch.setenv("EDGEAE_MAX_STREAM_PIXELS", "5000")
    kw = dict(engine=EngineOptions(workers=0), progress=False, scorer_factory=mean_scorer_factory, stride=16)
    report = scan_archive(arc, "orbital-gray-vae", tmp_path / "out", **kw)  # type: ignore[arg-type]
    assert report["done"] == 1 and [f["file"] for f in report["failures"]] == ["big.png"]
    assert "over the streaming limit of 5,000 pixels" in report["failures"][0]["error"]


# -- an unwritable stderr ----------------------------------------------------------------------------------------------
class _FullStream:
    """A stderr on a full disk: every write fails with ENOSPC (no descriptor to point at /dev/null)."""

    def write(self, text: str) -> int:
        raise OSError(28, "No space left on device")

    def flush(self) -> None:
        raise OSError(28, "No space left on device")

    def isatty(self) -> bool:
        return False


def test_score_with_an_unwritable_stderr_keeps_its_csv_and_status(tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    # edgeae score good.png trunc.png -o s.csv 2>/dev/full: the "skipped:" line failed mid-run, the exception discarded
    # every score (no CSV, no JSON) and the status was 2; now the CSV is written and the status is 1, as documented
    import sys

    from test_scan_support import noise_archive

    from edgeae.cli import main

    arc = noise_archive(tmp_path / "arc", ["good.png"])
    (arc / "trunc.png").write_bytes((arc / "good.png").read_bytes()[:300])
    monkeypatch.setattr(sys, "stderr", _FullStream())
    out = tmp_path / "s.csv"
    rc = main(["score", str(arc / "good.png"), str(arc / "trunc.png"), "--model", str(GRAY_ONNX), "-o", str(out),
               "--no-progress"])  # fmt: skip
    monkeypatch.undo()
    assert rc == 1
    assert out.is_file() and (tmp_path / "s.csv.json").is_file()
    rows = out.read_text().splitlines()
    assert rows[0].startswith("file,") and len(rows) > 1 and all("good.png" in r for r in rows[1:] if r)


# -- Ctrl-C on the local engine ----------------------------------------------------------------------------------------
_SLOW = '''"""A scorer that sleeps: imported by the driver, and by each spawned worker as it unpickles its arguments
(before the pool's initializer runs), and says each time how SIGINT is handled there."""
import os
import signal
import time

import numpy as np


def _say(what):
    with open(os.environ["Q1_MARK"], "a") as f:
        f.write(f"{what} {int(signal.getsignal(signal.SIGINT) is signal.SIG_IGN)}\\n")


if os.environ["Q1_DRIVER"] != str(os.getpid()):
    _say("import")


def _score(batch):
    _say("score")
    time.sleep(1.0)
    return batch.reshape(len(batch), -1).mean(axis=1).astype(np.float64)


def load(*args, **kwargs):
    return _score
'''
_DRIVE = """import os
import signal
import sys

if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as on a terminal, whatever the test runner ignores
    os.environ["Q1_DRIVER"] = str(os.getpid())
    import q1_slow

    import edgeae.scan.run as run
    from edgeae.cli import main

    run.load_scorer = q1_slow.load  # what the workers unpickle and call: the slow scorer
    sys.exit(main(sys.argv[1:]))
"""


def test_ctrl_c_on_the_local_engine_prints_no_worker_traceback_and_resumes(tmp_path: Path) -> None:
    # Ctrl-C signals the whole process group: workers kept the default SIGINT handler, and one waiting for work (or
    # still importing) printed "Process SpawnProcess-1: Traceback ... KeyboardInterrupt" under the interrupted line
    import os
    import signal
    import subprocess
    import sys
    import time

    from test_scan_support import mean_scorer_factory, noise_archive

    from edgeae.scan.run import EngineOptions, scan_archive

    if not hasattr(os, "killpg"):
        pytest.skip("no process groups here")
    arc = noise_archive(tmp_path / "arc", [f"i{i}.png" for i in range(6)])
    (tmp_path / "q1_slow.py").write_text(_SLOW)
    (tmp_path / "drive.py").write_text(_DRIVE)
    mark = tmp_path / "mark"
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "Q1_MARK": str(mark)}
    argv = [sys.executable, str(tmp_path / "drive.py"), "scan", str(arc), "--out", str(tmp_path / "out"),
            "--workers", "2", "--no-progress"]  # fmt: skip
    # a session (and process group) of its own, as a terminal's foreground job: killpg reaches driver and workers
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    try:
        end = time.monotonic() + 60
        # both workers imported and one scoring: a Ctrl-C sent before the second one's import reached it mid-start-up
        # (session 46: one CI run in six signalled after the first worker's score, before the second's import)
        while time.monotonic() < end:
            text = mark.read_text() if mark.exists() else ""
            if "score" in text and text.count("import") >= 2:
                break
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, err
    assert err.strip() == "edgeae scan: interrupted (run the same command again to resume)", err
    seen = mark.read_text().split("\n")
    # both workers ignored SIGINT from their first import on (inherited), and while they scored (the initializer)
    assert sorted(line for line in seen if line.startswith("import")) == ["import 1", "import 1"], seen
    assert {line for line in seen if line.startswith("score")} == {"score 1"}, seen
    manifest = tmp_path / "out" / "manifest.jsonl"
    before = manifest.read_text().count('"status": "done"') if manifest.exists() else 0  # kept by the interrupted run
    kw = dict(engine=EngineOptions(workers=0), progress=False, scorer_factory=mean_scorer_factory)
    report = scan_archive(arc, "orbital-gray-vae", tmp_path / "out", **kw)  # type: ignore[arg-type]
    assert report["done"] == 6 and report["failed"] == 0 and report["images_scanned"] == 6 - before


# -- a product with no valid pixel -------------------------------------------------------------------------------------
def _blank_archive(root: Path) -> Path:
    """``nan.tif`` (128² float32, all NaN), ``part.png`` (a 128² image dark but for its last 24 columns: no patch of
    64 reaches --min-valid 0.9, some hold valid pixels) and ``good.png`` (random grey)."""
    import numpy as np

    from edgeae.imageio import write_image

    nan_archive(root)
    part = np.zeros((128, 128), np.uint8)
    part[:, 104:] = np.random.default_rng(2).integers(60, 256, (128, 24), dtype=np.uint8)
    write_image(root / "part.png", part)
    return root


def test_scan_report_says_no_valid_pixel_instead_of_lower_min_valid(tmp_path: Path) -> None:
    # an all-NaN product was reported as "Every patch had less than --min-valid 0.9 valid ...: Lower --min-valid to
    # score them", which cannot help when no pixel is valid
    from test_scan_support import mean_scorer_factory

    from edgeae.scan.report_text import NO_VALID_PIXEL, report_summary
    from edgeae.scan.run import EngineOptions, scan_archive

    arc = _blank_archive(tmp_path / "arc")
    kw = dict(engine=EngineOptions(workers=0), progress=False, scorer_factory=mean_scorer_factory)
    report = scan_archive(arc, "orbital-gray-vae", tmp_path / "out", **kw)  # type: ignore[arg-type]
    assert report["done"] == 3 and report["images_without_patches"] == ["nan.tif", "part.png"]
    assert report["images_without_valid_pixels"] == ["nan.tif"]
    md = (tmp_path / "out" / "report.md").read_text()
    blank = md.split("## 1 image with no valid pixel\n", 1)[1].split("\n## ", 1)[0]
    assert f"No valid pixel ({NO_VALID_PIXEL}): nothing to score (--min-valid 0 would give every patch" in blank
    assert report["images_dark_throughout"] == []  # part.png has valid pixels: below --min-valid, not dark (s37 v1)
    assert "`nan.tif`" in blank and "part.png" not in blank and "Lower --min-valid" not in blank
    low = md.split("## 1 image without a scored patch\n", 1)[1].split("\n## ", 1)[0]
    assert "Lower --min-valid" in low and "`part.png`" in low and "nan.tif" not in low
    summary = report_summary(report, "out")
    assert f"- 1 image with no valid pixel ({NO_VALID_PIXEL})\n" in summary
    assert "- 1 image without a scored patch (below --min-valid)\n" in summary


def test_the_chunks_largest_valid_fraction_is_the_same_on_both_tiling_paths(tmp_path: Path) -> None:
    from edgeae.scan.pipeline import ScanConfig, tile_image, tile_image_reference
    from edgeae.scan.scoring import ModelSpec

    arc = _blank_archive(tmp_path / "arc")
    spec = ModelSpec(path="m.pt", model_id="m", artifact_hash="0" * 64, kind="vae", patch=16, channels=1)
    for name, want in (("part.png", 1.0), ("nan.tif", 0.0)):
        cfg = ScanConfig(spec, stride=16, batch_size=3, min_valid=0.9)
        fast = [c.valid_max for c in tile_image(arc / name, cfg)]
        assert fast == [c.valid_max for c in tile_image_reference(arc / name, cfg)], name
        assert max(fast) == want and len(fast) > (1 if want else 0), name  # several chunks where any is scored


def test_score_says_no_valid_pixel_instead_of_lower_min_valid(tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    from edgeae.scan.report_text import NO_VALID_PIXEL

    arc, csv = _blank_archive(tmp_path / "arc"), tmp_path / "s.csv"
    said = score_log(arc / "nan.tif", csv, caplog)
    assert f"nan.tif: no valid pixel ({NO_VALID_PIXEL}): nothing to score" in said
    assert "lower --min-valid" not in said
    said = score_log(arc / "part.png", csv, caplog)  # some valid pixels: the advice stays
    assert "lower --min-valid to score it anyway" in said and "no valid pixel" not in said
