"""Session-37 fixer l1 (review r2 #1): a TIFF frame whose compression tifffile decodes only with imagecodecs (LZW,
JPEG, ...) was dropped `unreadable` for good on a flight install (no flight extra installs imagecodecs): "TIFF data
unreadable (ValueError: <COMPRESSION.LZW: 5> requires the 'imagecodecs' package)", and a rerun once imagecodecs
was installed did not take it again (only --fresh). It is now dropped `decoder_unavailable` with the pip line, and
taken again once imagecodecs is installed (as a frame whose pyspng/simplejpeg/tifffile was missing, b0fbda0).

imagecodecs is hidden as tifffile sees it when it is not installed: None in ``sys.modules`` (an import fails), and
tifffile's codec tables rebuilt over its pure-Python fallback (tifffile imports imagecodecs once, when it is first
imported: the real hiding, before that import, is checked in a subprocess)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _helpers_decoders import TIFF_PIP as PIP
from _helpers_decoders import boot_no_imagecodecs, flight_mission, hide_imagecodecs, ledger, mark_unreadable, tiff_frame

ROOT = Path(__file__).resolve().parents[1]


def test_the_hiding_is_as_tifffile_sees_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tifffile

    lzw, deflate = tiff_frame(tmp_path / "a.tif", "lzw"), tiff_frame(tmp_path / "b.tif", "zlib")
    hide_imagecodecs(monkeypatch)
    with pytest.raises((KeyError, ValueError), match="requires the 'imagecodecs' package"):
        tifffile.imread(lzw)
    assert tifffile.imread(deflate).shape == (128, 192)


def test_an_lzw_frame_without_imagecodecs_is_taken_again_once_it_is_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The review's run: `dropped unreadable x1` for good. Now `decoder_unavailable` with the pip line, and the same
    frames run again once imagecodecs is there are taken again (same ids); a deflate TIFF, which tifffile decodes
    itself, flies without it."""
    from edgeae.firmware_sim.loop import FlightRuntime

    mission, out = flight_mission(tmp_path), tmp_path / "out"
    frames = [tiff_frame(tmp_path / "a.tif", "lzw", 0), tiff_frame(tmp_path / "b.tif", "zlib", 1)]
    s1, _ = boot_no_imagecodecs(monkeypatch, mission, out, frames)
    assert (s1["frames"]["acquired"], s1["frames"]["drop_reasons"]) == (2, {"decoder_unavailable": 1}), s1["frames"]
    entry = ledger(out)["0"]
    assert entry["code"] == "decoder_unavailable" and PIP in entry["reason"], entry
    assert "'imagecodecs' is needed here" in entry["reason"] and "LZW" in entry["reason"], entry
    rt = FlightRuntime(mission, out)  # imagecodecs installed now
    s2 = rt.run(frames)
    f = s2["frames"]
    assert (f["acquired"], f["dropped"], f["processed"], f["accounted"]) == (2, 0, 2, True), f
    assert [r["frame_id"] for r in rt.records] == [0] and rt.skipped_already_acquired == 1
    assert "retried_after_missing_decoder" in rt.records[0]["flags"]


def test_an_lzw_frame_still_without_imagecodecs_stays_dropped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeae.firmware_sim.loop import FlightRuntime

    mission, out = flight_mission(tmp_path), tmp_path / "out"
    frames = [tiff_frame(tmp_path / "a.tif", "lzw")]
    hide_imagecodecs(monkeypatch)
    FlightRuntime(mission, out).run(frames)
    rt = FlightRuntime(mission, out)
    s = rt.run(frames)
    assert s["frames"]["drop_reasons"] == {"decoder_unavailable": 1} and rt.skipped_already_acquired == 1


def test_an_older_runs_unreadable_lzw_frame_is_taken_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The state the review's run left (before this fix): `unreadable`, "TIFF data unreadable (ValueError:
    <COMPRESSION.LZW: 5> requires the 'imagecodecs' package)". Not reopened while imagecodecs is still missing; taken
    again once it is installed; a really damaged TIFF is not."""
    from edgeae.firmware_sim.loop import FlightRuntime

    mission, out = flight_mission(tmp_path), tmp_path / "out"
    frames = [tiff_frame(tmp_path / "a.tif", "lzw", 0), tiff_frame(tmp_path / "b.tif", None, 1)]
    FlightRuntime(mission, out).run(frames)
    needs = "TIFF data unreadable (ValueError: <COMPRESSION.LZW: 5> requires the 'imagecodecs' package)"
    mark_unreadable(out, {"0": needs, "1": "TIFF data unreadable (ValueError: corrupted strip)"})
    _, rt = boot_no_imagecodecs(monkeypatch, mission, out, frames)
    assert rt.records == [] and rt.skipped_already_acquired == 2
    rt = FlightRuntime(mission, out)
    s = rt.run(frames)
    assert [r["frame_id"] for r in rt.records] == [0] and rt.skipped_already_acquired == 1
    assert s["frames"]["drop_reasons"] == {"unreadable": 1} and s["frames"]["acquired"] == 2


def test_imagecodecs_missing_before_tifffile_is_imported(tmp_path: Path) -> None:
    """The real case, in a fresh interpreter: imagecodecs cannot be imported when tifffile first is."""
    lzw, raw = tiff_frame(tmp_path / "a.tif", "lzw"), tiff_frame(tmp_path / "b.tif", None)
    code = (
        "import sys; sys.modules['imagecodecs'] = None\n"
        "from edgeae.firmware_sim.frame_decoders import tiff_codec_missing\n"
        f"print(tiff_codec_missing({str(lzw)!r})); print(tiff_codec_missing({str(raw)!r}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("'imagecodecs' is needed here") and lines[0].endswith(PIP), lines
    assert lines[1] == "None", lines


def test_a_tiff_whose_predictor_needs_imagecodecs_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A deflate TIFF of floats with the floating-point predictor: tifffile inflates it itself, but undoes the
    predictor only with imagecodecs."""
    import tifffile
    from edgeae.firmware_sim.frame_decoders import tiff_codec_missing

    path = tmp_path / "f.tif"
    tifffile.imwrite(path, np.ones((16, 16), np.float32), compression="zlib", predictor=3)
    assert tiff_codec_missing(path) is None
    hide_imagecodecs(monkeypatch)
    exc = tiff_codec_missing(path)
    assert exc is not None and "FLOATINGPOINT predictor" in str(exc) and str(exc).endswith(PIP), exc
