"""Session 37 fixer q1: archive scan and score items of the audits (a missing [archive] extra refused up front and an
older run's missing-dependency failures taken again; a symbolic link loop recorded as failed; Ctrl-C without the
workers' tracebacks; an unwritable stderr that does not lose score's CSV; "no valid pixel" for all-no-data products;
the synthetic archive's usage errors; a streamed bomb's declared patches not counted)."""

from __future__ import annotations

from pathlib import Path

import pytest

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
