"""Session-37 fixer g1 (audit a1 #3): a flight install without a frame decoder (simplejpeg, pyspng, tifffile) dropped
every frame for good as `unreadable` ("the JPEG decoder refused the file (MissingDependencyError ...)"),
`firmware-sim check` said nothing, and after installing the decoder a rerun did not take the frames again (only
--fresh). The decoder is simulated missing by putting None in ``sys.modules`` (an import then fails as if the package
were not installed); OpenCV, the fallback decoder, is hidden with it."""

from __future__ import annotations

from pathlib import Path

import pytest
from _helpers_decoders import DECODER_PIP as PIP
from _helpers_decoders import flight_mission, hide_decoders, jpeg_frame, ledger, mark_unreadable

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------- the flight boot
def test_a_run_given_frames_without_their_decoder_is_refused_at_boot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The audit's rover run: `1 dropped (unreadable x1)`, status 1, and the frame lost for good."""
    from edgeae.firmware_sim.cli import main

    frame = jpeg_frame(tmp_path / "f.jpg")
    hide_decoders(monkeypatch, "simplejpeg")
    out = tmp_path / "fw"
    rc = main(["run", "--mission", "rover_mastcamz", "--frames", str(frame), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and not out.exists()
    assert err.count("\n") == 0 and "JPEG frames (.jpg)" in err and err.endswith(PIP), err


def test_the_boot_refuses_only_the_frame_types_it_is_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeae.firmware_sim.loop import FlightRuntime
    from edgeae.firmware_sim.mission import MissionError

    mission = flight_mission(tmp_path)
    hide_decoders(monkeypatch, "pyspng", "tifffile")
    with pytest.raises(MissionError, match=r"PNG frames \(\.png\).*TIFF frames \(\.tif, \.tiff\)") as info:
        FlightRuntime(mission, tmp_path / "a", frame_types={".png", ".npy", ".tif", ".TIFF"})
    assert str(info.value).count("pip install") == 2 and not (tmp_path / "a").exists()
    FlightRuntime(mission, tmp_path / "b", frame_types={".jpg", ".npy"}).close()  # simplejpeg is there


def test_check_warns_of_a_missing_decoder_of_its_cameras_frames(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`firmware-sim check` said nothing of frame decoders; a runtime told no frame types (check, the Python API)
    boots with a WARNING per decoder missing."""
    from edgeae.firmware_sim.cli_advice import check_lines
    from edgeae.firmware_sim.loop import FlightRuntime

    hide_decoders(monkeypatch, "simplejpeg")
    rt = FlightRuntime(flight_mission(tmp_path), tmp_path / "out")
    try:
        warned = [w for w in check_lines(rt) if w.startswith("WARNING") and "JPEG" in w]
    finally:
        rt.close()
    assert len(warned) == 1 and PIP in warned[0] and "refused" in warned[0], warned


# ----------------------------------------------------------------------------------- a frame meeting it at run time
def test_a_frame_without_its_decoder_is_taken_again_once_it_is_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A runtime told no frame types meets the missing decoder at the frame: dropped `decoder_unavailable` with the
    pip line, and the same frames run again once the decoder is installed are taken again (same ids), counted
    once."""
    from edgeae.firmware_sim.loop import FlightRuntime

    mission, out = flight_mission(tmp_path), tmp_path / "out"
    frames = [jpeg_frame(tmp_path / "a.jpg", 0), jpeg_frame(tmp_path / "b.jpg", 1)]
    with monkeypatch.context() as m:
        hide_decoders(m, "simplejpeg")
        s1 = FlightRuntime(mission, out).run(frames)
    assert (s1["frames"]["acquired"], s1["frames"]["drop_reasons"]) == (2, {"decoder_unavailable": 2})
    entry = ledger(out)["0"]
    assert entry["code"] == "decoder_unavailable" and PIP in entry["reason"]
    assert entry["reason"].endswith("the same command run again takes this frame again")
    rt = FlightRuntime(mission, out)
    s2 = rt.run(frames)
    f = s2["frames"]
    assert (f["acquired"], f["dropped"], f["processed"], f["accounted"]) == (2, 0, 2, True), f
    assert sorted(ledger(out)) == ["0", "1"] and rt.skipped_already_acquired == 0
    assert all("retried_after_missing_decoder" in r["flags"] for r in rt.records)


def test_a_frame_still_without_its_decoder_stays_dropped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeae.firmware_sim.loop import FlightRuntime

    mission, out = flight_mission(tmp_path), tmp_path / "out"
    frames = [jpeg_frame(tmp_path / "a.jpg")]
    hide_decoders(monkeypatch, "simplejpeg")
    FlightRuntime(mission, out).run(frames)
    rt = FlightRuntime(mission, out)
    s = rt.run(frames)
    assert s["frames"]["drop_reasons"] == {"decoder_unavailable": 1} and rt.skipped_already_acquired == 1


def test_an_older_runs_drop_for_a_missing_decoder_is_taken_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A state written before session 37: the frame dropped `unreadable`, "the JPEG decoder refused the file
    (MissingDependencyError: ...)". Taken again once the decoder is installed; a really bad file is not."""
    from edgeae.firmware_sim.loop import FlightRuntime

    mission, out = flight_mission(tmp_path), tmp_path / "out"
    frames = [jpeg_frame(tmp_path / "a.jpg", 0), jpeg_frame(tmp_path / "b.jpg", 1)]
    FlightRuntime(mission, out).run(frames)
    old = f"MissingDependencyError: 'simplejpeg' is needed here but is not installed: run  {PIP}"
    mark_unreadable(out, {"0": f"the JPEG decoder refused the file ({old})", "1": "truncated JPEG"})
    rt = FlightRuntime(mission, out)
    s = rt.run(frames)
    assert [r["frame_id"] for r in rt.records] == [0] and rt.skipped_already_acquired == 1
    assert s["frames"]["drop_reasons"] == {"unreadable": 1} and s["frames"]["acquired"] == 2


def test_the_docs_name_the_drop_code_and_the_refusal() -> None:
    text = " ".join((ROOT / "docs" / "firmware_sim.md").read_text().split())
    assert "`decoder_unavailable` (its decoder is not installed: a rerun once it is takes the frame again)" in text
    assert "cannot decode the frames given: JPEG frames (.jpg): 'simplejpeg' is needed here" in text
