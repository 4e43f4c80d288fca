"""Session-37 fixer s1 (review r6 #2, #3): a ZSTD TIFF frame without imagecodecs passed the codec check (tifffile's
fallback ``zstd_decode`` needs Python 3.14's ``compression`` module) and was dropped ``unreadable`` for good, "No
module named 'compression'"; and where imagecodecs is installed but lacks a codec (or fails to import), the frame
was reopened, retaken and dropped again at every boot. Now both are ``decoder_unavailable``, and a drop is reopened
only once its codec resolves."""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any

import pytest
from _helpers_decoders import TIFF_PIP as PIP
from _helpers_decoders import boot_no_imagecodecs, flight_mission, hide_imagecodecs, ledger, mark_unreadable, tiff_frame

pytest.importorskip("imagecodecs", reason="imagecodecs writes the LZW and ZSTD frames: pip install 'edgeae[ground]'")


def _events(out: Path, kind: str) -> list[dict[str, Any]]:
    rows = [json.loads(line) for p in sorted(out.rglob("*.jsonl")) for line in p.read_text().splitlines() if line]
    return [r for r in rows if r.get("kind") == kind]


def _without(monkeypatch: pytest.MonkeyPatch, prefix: str) -> None:
    """tifffile as it is where imagecodecs is installed but built without the codecs named ``prefix*``."""
    import imagecodecs
    import tifffile
    import tifffile.tifffile as tf

    names = {k: getattr(imagecodecs, k) for k in dir(imagecodecs) if not k.startswith(prefix)}
    monkeypatch.setattr(tf, "imagecodecs", types.SimpleNamespace(**names))
    monkeypatch.setattr(tifffile.TIFF, "DECOMPRESSORS", tf.CompressionCodec(encode=False))


def test_a_zstd_frame_without_imagecodecs_is_found_and_taken_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from edgeae.firmware_sim.frame_decoders import tiff_codec_missing
    from edgeae.firmware_sim.loop import FlightRuntime

    mission, out = flight_mission(tmp_path), tmp_path / "out"
    frames = [tiff_frame(tmp_path / "z.tif", "zstd", 0)]
    assert tiff_codec_missing(frames[0]) is None
    with monkeypatch.context() as m:
        hide_imagecodecs(m)
        exc = tiff_codec_missing(frames[0])
    assert exc is not None and "z.tif's ZSTD compression" in str(exc) and str(exc).endswith(PIP), exc
    s1, _ = boot_no_imagecodecs(monkeypatch, mission, out, frames)
    assert s1["frames"]["drop_reasons"] == {"decoder_unavailable": 1}, s1["frames"]
    rt = FlightRuntime(mission, out)  # imagecodecs installed now
    s2 = rt.run(frames)
    assert [r["frame_id"] for r in rt.records] == [0] and s2["frames"]["dropped"] == 0, s2["frames"]


def test_an_older_runs_unreadable_zstd_frame_is_taken_again_once_imagecodecs_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgeae.firmware_sim.loop import FlightRuntime

    mission, out = flight_mission(tmp_path), tmp_path / "out"
    frames = [tiff_frame(tmp_path / "z.tif", "zstd", 0)]
    FlightRuntime(mission, out).run(frames)
    mark_unreadable(out, {"0": "TIFF data unreadable (ModuleNotFoundError: No module named 'compression')"})
    _, rt = boot_no_imagecodecs(monkeypatch, mission, out, frames)
    assert rt.records == [] and rt.skipped_already_acquired == 1
    rt = FlightRuntime(mission, out)
    rt.run(frames)
    assert [r["frame_id"] for r in rt.records] == [0]


def test_an_imagecodecs_without_the_codec_does_not_retake_the_frame_at_every_boot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The review's loop: boot 1 drops the LZW frame, boots 2 and 3 reopened and retook it. Now it is dropped
    ``decoder_unavailable`` saying imagecodecs lacks the codec, and stays so; taken again once the codec is there."""
    from edgeae.firmware_sim.loop import FlightRuntime

    mission, out = flight_mission(tmp_path), tmp_path / "out"
    frames = [tiff_frame(tmp_path / "a.tif", "lzw", 0)]
    with monkeypatch.context() as m:
        _without(m, "lzw")
        s1 = FlightRuntime(mission, out).run(frames)
        assert s1["frames"]["drop_reasons"] == {"decoder_unavailable": 1}, s1["frames"]
        reason = ledger(out)["0"]["reason"]
        assert (
            "'imagecodecs' is installed here but does not decode a.tif's LZW compression (built without that codec)"
            in reason
        ), reason
        for _ in range(2):
            rt = FlightRuntime(mission, out)
            s = rt.run(frames)
            assert rt.records == [] and rt.skipped_already_acquired == 1, rt.records
            assert s["frames"]["drop_reasons"] == {"decoder_unavailable": 1}
        assert ledger(out)["0"]["reason"] == reason and _events(out, "frame_reopened") == []
    rt = FlightRuntime(mission, out)
    rt.run(frames)
    assert [r["frame_id"] for r in rt.records] == [0] and len(_events(out, "frame_reopened")) == 1


def test_an_imagecodecs_that_fails_to_import_is_said_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Installed (found) but its import fails: tifffile falls back to its own codecs, LZW 'requires' it."""
    from edgeae.firmware_sim import frame_decoders

    path = tiff_frame(tmp_path / "a.tif", "lzw", 0)
    hide_imagecodecs(monkeypatch)
    monkeypatch.setattr(frame_decoders, "_installed", lambda module: True)
    exc = frame_decoders.tiff_codec_missing(path)
    assert exc is not None and "'imagecodecs' is installed here but does not decode a.tif's LZW" in str(exc), exc
    assert "(it fails to import: ModuleNotFoundError: import of imagecodecs halted" in str(
        exc
    ) and "pip install --force-reinstall imagecodecs" in str(exc)
    assert not frame_decoders._tiff_resolves(str(path))
