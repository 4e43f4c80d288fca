"""Session 37 v1 (review r8 #1, #2, #4): a frame dark throughout is told that --min-valid 0 scores it (not "no
valid pixel, whatever --min-valid", kept for all-NaN / label-declared no-data); a failure for a missing package is
retaken only once the package can be found; the refusal of planetary products without rasterio says how to scan the
rest."""

from __future__ import annotations

from pathlib import Path

import pytest
from _helpers_scan import nan_archive, score_log


def _dark_archive(root: Path) -> Path:
    """``dark.png`` (128² uint8 of values 1..3: all read as a dark no-data margin), ``nan.tif`` (all NaN) and
    ``good.png`` (random grey)."""
    import numpy as np

    from edgeae.imageio import write_image

    nan_archive(root)
    write_image(root / "dark.png", np.random.default_rng(3).integers(1, 4, (128, 128), dtype=np.uint8))
    return root


def test_scan_tells_a_dark_frame_that_min_valid_0_scores_it(tmp_path: Path) -> None:
    # r8 #1: dark.png was listed with nan.tif under "nothing to score, whatever --min-valid"; --min-valid 0 scores it
    from test_scan_support import mean_scorer_factory

    from edgeae.scan.report_text import DARK_THROUGHOUT, NO_VALID_PIXEL, report_summary
    from edgeae.scan.run import EngineOptions, scan_archive

    arc = _dark_archive(tmp_path / "arc")
    kw = dict(engine=EngineOptions(workers=0), progress=False, scorer_factory=mean_scorer_factory)
    report = scan_archive(arc, "orbital-gray-vae", tmp_path / "out", **kw)  # type: ignore[arg-type]
    assert report["images_without_patches"] == ["dark.png", "nan.tif"]
    assert report["images_without_valid_pixels"] == ["nan.tif"]
    assert report["images_dark_throughout"] == ["dark.png"]
    md = (tmp_path / "out" / "report.md").read_text()
    blank = md.split("## 1 image with no valid pixel\n", 1)[1].split("\n## ", 1)[0]
    assert "dark" not in blank and "`nan.tif`" in blank and NO_VALID_PIXEL in blank
    low = md.split("## 1 image without a scored patch\n", 1)[1].split("\n## ", 1)[0]
    assert "`dark.png`" in low and "--min-valid 0" in low and DARK_THROUGHOUT in low
    summary = report_summary(report, "out")
    assert f"- 1 image with no valid pixel ({NO_VALID_PIXEL})\n" in summary
    assert f"- 1 image without a scored patch ({DARK_THROUGHOUT}: --min-valid 0 scores it)\n" in summary
    # and the advice holds: --min-valid 0 scores every patch of it
    out0 = tmp_path / "out0"
    zero = scan_archive(arc / "dark.png", "orbital-gray-vae", out0, min_valid=0.0, **kw)  # type: ignore[arg-type]
    assert zero["done"] == 1 and zero["images_without_patches"] == [] and zero["patches_in_results"] == 4


def test_score_tells_a_dark_frame_that_min_valid_0_scores_it(tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    from edgeae.scan.report_text import DARK_THROUGHOUT, NO_VALID_PIXEL

    arc, csv = _dark_archive(tmp_path / "arc"), tmp_path / "s.csv"
    said = score_log(arc / "dark.png", csv, caplog)
    assert f"dark.png: no patch holds a valid pixel ({DARK_THROUGHOUT}): --min-valid 0 scores it anyway" in said
    assert "nothing to score" not in said
    said = score_log(arc / "nan.tif", csv, caplog)  # declared no-data: nothing to score
    assert f"nan.tif: no valid pixel ({NO_VALID_PIXEL}): nothing to score" in said
    assert "dark" not in NO_VALID_PIXEL and "min-valid" not in said
    said = score_log(arc / "dark.png", csv, caplog, "--min-valid", "0")
    rows = csv.read_text().splitlines()[1:]
    assert len(rows) == 4 and "no patch" not in said


_GONE = "edgeae_v1_no_such_package"


def _needs_a_package(batch):  # type: ignore[no-untyped-def]
    import numpy as np

    from edgeae._optional import MissingDependencyError

    if np.all(batch > 0.9):
        raise MissingDependencyError(f"{_GONE!r} is needed here but is not installed: run  pip install 'edgeae[x]'")
    return batch.reshape(len(batch), -1).mean(axis=1).astype(np.float64)


def _factory():  # type: ignore[no-untyped-def]
    return _needs_a_package


def test_a_failure_for_a_package_still_missing_is_not_retaken(tmp_path: Path, caplog, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # r8 #2: w.png was read again, failed again and warned again at every plain rerun while the package was missing
    import importlib.util

    import numpy as np
    from test_scan_support import mean_scorer_factory, noise_archive

    from edgeae.imageio import write_image
    from edgeae.scan.run import EngineOptions, scan_archive

    arc = noise_archive(tmp_path / "arc", ["a.png"])
    write_image(arc / "w.png", np.full((64, 64), 240, np.uint8))
    kw = dict(engine=EngineOptions(workers=0), progress=False)
    for _ in range(2):
        r = scan_archive(arc, "orbital-gray-vae", tmp_path / "out", scorer_factory=_factory, **kw)  # type: ignore[arg-type]
        assert (r["done"], r["failed"]) == (1, 1)
    assert r["images_scanned"] == 0 and "scanned again" not in caplog.text
    assert f"{_GONE!r} is needed here" in r["failures"][0]["error"]  # still failed, with its pip line
    # once the package can be found, a plain rerun takes it again
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: real("numpy") if n == _GONE else real(n, *a))
    again = scan_archive(arc, "orbital-gray-vae", tmp_path / "out", scorer_factory=mean_scorer_factory, **kw)  # type: ignore[arg-type]
    assert (again["images_scanned"], again["done"], again["failed"]) == (1, 2, 0)
    assert "1 image(s) recorded as failed for a package that was not installed are scanned again (e.g. w.png)" in (
        caplog.text
    )


def test_the_refusal_of_products_without_rasterio_says_how_to_scan_the_rest(tmp_path: Path, monkeypatch) -> None:
    # r8 #4: the line offered no way to scan the PNGs of a mixed archive
    import edgeae._optional as opt
    from edgeae.scan.run import _check_product_reader

    arc = tmp_path / "arc"
    (arc / "sub").mkdir(parents=True)
    for n in ("a.png", "sub/X.IMG", "sub/Y.IMG"):
        (arc / n).write_bytes(b"")
    real = opt.require

    def require(m: str):  # type: ignore[no-untyped-def]
        if m == "rasterio":
            raise opt.MissingDependencyError("'rasterio' is needed here but is not installed: run  pip install 'x'")
        return real(m)

    monkeypatch.setattr(opt, "missing", lambda mods: list(mods.items()))
    monkeypatch.setattr(opt, "require", require)
    from edgeae.scan.archive import ArchiveEntry

    entries = [ArchiveEntry(arc / n, n) for n in ("a.png", "sub/X.IMG", "sub/Y.IMG")]
    with pytest.raises(opt.MissingDependencyError) as err:
        _check_product_reader(entries, [arc])
    msg = str(err.value)
    assert "2 planetary products" in msg and "sub/X.IMG" in msg and "pip install" in msg
    assert "to scan the other images without them" in msg and f"'{arc}/**/*.png'" in msg
