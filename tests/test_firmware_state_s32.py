"""Session-32 audit fixes in ``firmware-sim``'s state and boot (audits a2 and a5).

A rerun knows a frame by the file its path resolves to, not the string it was given; the queue's writes use
per-process temporary names and a boot removes those a power loss left; a frame over the memory budget is a summary
warning; ``~`` in a mission's model path is the home folder and a missing model names where it was looked for; an
``--out`` that cannot be created is one clear line."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from edgeae.firmware_sim.mission import MissionError, load_mission
from edgeae.firmware_sim.queue import DownlinkQueue
from edgeae.firmware_sim.state import frames_to_take

DOCS = Path(__file__).resolve().parents[1] / "docs" / "firmware_sim.md"
NO_PID = (1 << 22) + 1  # above the largest pid_max Linux allows: never a running process
P = 32
MISSION = """
name = "s32"
[camera]
channels = 1
[sampling]
keep = 0.1
[anomaly]
model = "{model}"
patch = 32
stride = 32
top_k = 2
[budget]
frame_ms = 5000.0
downlink_bytes_per_pass = 100000
"""


def _take(ledger: dict[str, dict[str, Any]], frames: list[Any]) -> tuple[list[tuple[Any, int | None]], list[str]]:
    skipped: list[str] = []
    return list(frames_to_take(ledger, frames, skipped.append)), skipped


# ------------------------------------------------------------------ a2-4: frames matched by their resolved path
def test_a_rerun_from_another_folder_knows_the_frames_already_acquired(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--frames rover/r0.png`` from the parent, then ``cd rover && --frames r0.png`` (and ``$PWD/rover/r0.png``,
    ``./rover/r1.png``): the same files, not new frames (until session 32 taken again under new ids)."""
    (tmp_path / "rover").mkdir()
    monkeypatch.chdir(tmp_path)
    first, _ = _take({}, [Path("rover/r0.png"), "rover/r1.png"])
    assert [f for f, _ in first] == [tmp_path / "rover" / "r0.png", str(tmp_path / "rover" / "r1.png")]
    ledger = {str(i): {"source": str(f), "status": "processed"} for i, (f, _) in enumerate(first)}
    monkeypatch.chdir(tmp_path / "rover")
    again, skipped = _take(ledger, [Path("r0.png"), Path("r1.png")])
    assert again == [] and skipped == ["r0.png", "r1.png"]
    monkeypatch.chdir(tmp_path)
    again, skipped = _take(ledger, [str(tmp_path / "rover" / "r0.png"), "./rover/r1.png", "rover/r2.png"])
    assert [f for f, _ in again] == [str(tmp_path / "rover" / "r2.png")] and len(skipped) == 2


def test_a_symlinked_frame_is_the_file_it_points_to_and_repeats_still_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ledger is a multiset: a frame given twice is taken twice, then both are known."""
    (tmp_path / "r0.png").write_bytes(b"x")
    (tmp_path / "link.png").symlink_to(tmp_path / "r0.png")
    ledger = {"0": {"source": str(tmp_path / "r0.png"), "status": "processed"}}
    taken, skipped = _take(ledger, [tmp_path / "link.png", tmp_path / "r0.png"])
    assert skipped == [str(tmp_path / "link.png")] and [f for f, _ in taken] == [tmp_path / "r0.png"]


def test_state_an_older_run_recorded_as_given_strings_still_matches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs before session 32 recorded the path string as given (relative to a folder the ledger does not know):
    that string still matches, and a frame such a run left interrupted is retried under its id."""
    monkeypatch.chdir(tmp_path)
    ledger = {
        "0": {"source": "rover/r0.png", "status": "processed"},
        "1": {"source": "rover/r1.png", "status": "interrupted"},
    }
    taken, skipped = _take(ledger, ["rover/r0.png", "rover/r1.png"])
    assert skipped == ["rover/r0.png"] and taken == [(str(tmp_path / "rover" / "r1.png"), 1)]
    arrays, _ = _take(ledger, [np.zeros((2, 2))])  # an in-memory frame is never matched
    assert len(arrays) == 1 and arrays[0][1] is None


def test_an_interrupted_frame_is_retried_from_another_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "rover").mkdir()
    ledger = {"4": {"source": str(tmp_path / "rover" / "r0.png"), "status": "interrupted"}}
    monkeypatch.chdir(tmp_path / "rover")
    taken, skipped = _take(ledger, ["r0.png"])
    assert taken == [(str(tmp_path / "rover" / "r0.png"), 4)] and skipped == []


# --------------------------------------------------------------------- a2-1: the queue's per-process temp names
def test_the_queue_writes_through_per_process_temporary_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Until session 32 every process wrote ``index.json.tmp`` / ``NNNNNNNN.pkt.tmp`` / ``pass_NNNNN.bin.tmp``: two
    runs on one folder renamed each other's half-written file."""
    renamed: list[str] = []
    real = os.replace

    def spy(src: Any, dst: Any) -> None:
        renamed.append(Path(src).name)
        real(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    q = DownlinkQueue(tmp_path / "q", 1 << 20)
    q.put("telemetry", 0, [bytes([0x08, 0x04, 0xC0, 0x00, 0x00, 0x63]) + bytes(100)])
    q.save()
    q.downlink_pass(1024, tmp_path / "dl")
    pid = os.getpid()
    names = [".00000000.pkt.tmp", ".index.json.tmp", ".index.json.tmp", ".pass_00001.bin.tmp"]
    assert sorted(renamed) == sorted(f"{n}-{pid}" for n in names)


def test_a_boot_removes_the_temporaries_a_power_loss_left_whatever_their_pid(tmp_path: Path) -> None:
    """``.NAME.tmp-PID`` and an older version's ``NAME.tmp`` of the queue's and the passes' names are removed by the
    boot's sweep, which runs holding the folder: no other run writes them then, so a temporary under a running pid
    (1; a writer in another PID namespace looks like that, or looks gone) is stale too. Other files stay."""
    q = DownlinkQueue(tmp_path / "q", 1 << 20)
    item, _ = q.put("telemetry", 0, [bytes([0x08, 0x04, 0xC0, 0x00, 0x00, 0x63]) + bytes(100)])
    q.save()
    root, items, dl = tmp_path / "q", tmp_path / "q" / "items", tmp_path / "dl"
    dl.mkdir()
    stale = [
        root / f".index.json.tmp-{NO_PID}",
        root / "index.json.tmp",
        root / f".index.json.tmp-{os.getpid()}",  # an earlier boot under this process's number (a board's firmware)
        items / f".00000001.pkt.tmp-{NO_PID}",
        items / "00000001.pkt.tmp",
        dl / f".pass_00001.bin.tmp-{NO_PID}",
        dl / "pass_00001.bin.tmp",
        root / ".index.json.tmp-1",
        items / ".00000001.pkt.tmp-1",
    ]
    kept = [root / "notes.tmp", root / ".notes.tmp-1", dl / "mine.bin.tmp"]
    for p in stale + kept:
        p.write_bytes(b"half")
    q2 = DownlinkQueue(root, 1 << 20)
    assert q2.items[item.id].status == "pending" and not q2.lost_on_recovery
    assert q2.stale_temps == [] and all(p.exists() for p in stale)  # opening the queue removes nothing
    assert sorted(q2.sweep_stale_temps(dl)) == sorted(p.name for p in stale) == sorted(q2.stale_temps)
    assert [p.name for p in stale if p.exists()] == [] and all(p.exists() for p in kept)


def test_firmware_sim_report_removes_no_file(tmp_path: Path) -> None:
    """``firmware-sim report`` opens the queue "read only" but removed the temporaries of every pid ``os.kill``
    could not see, a live run's in another PID namespace among them (review s32)."""
    from edgeae.firmware_sim.telemetry import rebuild_summary

    q = DownlinkQueue(tmp_path / "q" / "queue", 1 << 20)
    q.save()
    (tmp_path / "q" / "telemetry.jsonl").write_text("")
    temps = [tmp_path / "q" / "queue" / f".index.json.tmp-{NO_PID}", tmp_path / "q" / "queue" / "items" / "1.pkt.tmp"]
    for p in temps:
        p.write_bytes(b"half")
    rebuild_summary(tmp_path / "q")
    assert all(p.exists() for p in temps)


def test_the_mission_state_write_removes_a_dead_process_s_summary_temporary(tmp_path: Path) -> None:
    """``summary.json`` and ``mission.json`` are written beside the user's files: only their temporaries go."""
    from edgeae.firmware_sim.queue import remove_stale_temps

    (tmp_path / f".summary.json.tmp-{NO_PID}").write_text("{")
    (tmp_path / f".mine.json.tmp-{NO_PID}").write_text("{")
    assert remove_stale_temps(tmp_path, lambda n: n in ("summary.json", "mission.json")) == [
        f".summary.json.tmp-{NO_PID}"
    ]
    assert (tmp_path / f".mine.json.tmp-{NO_PID}").exists()


# ----------------------------------------------------------------------------------- runs on the tiny models
@pytest.fixture
def cli_setup(tmp_path: Path) -> tuple[Path, list[str]]:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from edgeae.firmware_sim.testing import textured_frame, tiny_vae_onnx

    model = tiny_vae_onnx(tmp_path / "vae.onnx", 1, P)
    (tmp_path / "m.toml").write_text(MISSION.format(model=model))
    frames = []
    for i in range(2):
        np.save(tmp_path / f"f{i}.npy", textured_frame(i))
        frames.append(str(tmp_path / f"f{i}.npy"))
    return tmp_path, frames


def test_frames_over_the_memory_budget_are_a_summary_warning(
    cli_setup: tuple[Path, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A frame whose RSS growth passed the budget was scored and downlinked with no trace in the ledger or the
    warnings (audit a5-8): now one warning names the frames and the peak; the ledger keeps its outcome."""
    from edgeae.firmware_sim.loop import FlightRuntime
    from edgeae.firmware_sim.memory_meter import MemoryMeter

    folder, frames = cli_setup
    mission = load_mission(folder / "m.toml")
    budget = mission.budget.memory_bytes
    real = MemoryMeter.sample

    def over(self: MemoryMeter) -> dict[str, Any]:  # frame 1 peaks 3 MiB over the budget
        out = real(self)
        if len(seen) == 1:
            out["rss_frame_peak"] = rt.rss_boot + budget + 3 * 2**20
        seen.append(1)
        return out

    seen: list[int] = []
    monkeypatch.setattr(MemoryMeter, "sample", over)
    rt = FlightRuntime(mission, folder / "out")
    s = rt.run(frames)
    assert s["memory"]["within_budget"] is False
    assert [e["outcome"] for e in s["ledger"]] == ["downlinked", "downlinked"]
    mib = budget / 2**20
    assert s["warnings"] == [
        f"1 frame went over the {mib:.0f} MiB memory budget (frame 1; peak growth over boot {mib + 3:.1f} MiB): "
        f"raise [budget] memory_bytes to at least {mib + 3:.0f} MiB"  # not "or lower [runtime] threads": it is 1
    ]


def test_a_rerun_from_another_folder_takes_no_frame_again(
    cli_setup: tuple[Path, list[str]], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The audit's commands: ``--frames rover/r0 rover/r1 --out fwcwd``, then from ``rover/`` ``--frames r0 r1
    --out ../fwcwd``: "4 frames acquired (over 2 boots): 4 downlinked" until session 32."""
    from edgeae.firmware_sim.cli import main

    folder, frames = cli_setup
    (folder / "rover").mkdir()
    for f in frames:
        Path(f).rename(folder / "rover" / Path(f).name)
    monkeypatch.chdir(folder)
    args = ["run", "--mission", str(folder / "m.toml")]
    assert main([*args, "--frames", "rover/f0.npy", "rover/f1.npy", "--out", "fwcwd"]) == 0
    monkeypatch.chdir(folder / "rover")
    capsys.readouterr()
    assert main([*args, "--frames", "f0.npy", "f1.npy", "--out", "../fwcwd"]) == 0
    out = capsys.readouterr().out
    assert "2 frame(s) already acquired there were not taken again" in out
    assert "2 frames acquired (over 2 boots): 2 downlinked" in out


# ------------------------------------------------------------------- a2-9: ~ in a mission's paths, where looked
def test_a_tilde_in_a_mission_model_path_is_the_home_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeae.firmware_sim.onboard import resolve_model_file

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "m.toml").write_text(
        MISSION.format(model="~/anom.onnx").replace("[budget]", 'fallback = "~/b.onnx"\n[budget]')
    )
    m = load_mission(tmp_path / "m.toml")
    assert m.anomaly.model == str(tmp_path / "home" / "anom.onnx")
    assert m.anomaly.fallback == str(tmp_path / "home" / "b.onnx")
    assert resolve_model_file("~/x.onnx") == tmp_path / "home" / "x.onnx"  # a quoted --anomaly-model '~/x.onnx'


def test_a_missing_mission_model_names_the_folders_it_was_looked_for_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("onnxruntime")
    from edgeae.firmware_sim.loop import FlightRuntime

    (tmp_path / "missions").mkdir()
    (tmp_path / "here").mkdir()
    (tmp_path / "missions" / "m.toml").write_text(MISSION.format(model="models/anom.onnx"))
    monkeypatch.chdir(tmp_path / "here")
    with pytest.raises(MissionError) as err:
        FlightRuntime(load_mission(tmp_path / "missions" / "m.toml"), tmp_path / "out")
    msg = str(err.value)
    assert "anomaly model models/anom.onnx does not exist" in msg
    assert f"beside the mission file, in {tmp_path / 'missions'}, and in the current folder {tmp_path / 'here'}" in msg
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- a2-10: an --out that cannot be
def test_an_out_below_a_file_is_one_clear_line(
    cli_setup: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    from edgeae.firmware_sim.cli import main

    folder, frames = cli_setup
    (folder / "same.png").write_bytes(b"x")
    out = folder / "same.png" / "x"
    assert main(["run", "--mission", str(folder / "m.toml"), "--frames", *frames, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"cannot create the results folder --out {out}: {folder / 'same.png'} is a file, not a folder" in err
    assert "Errno" not in err


def test_an_out_where_no_folder_can_be_made_is_one_clear_line(
    cli_setup: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    from edgeae.firmware_sim.cli import main

    if not Path("/proc/self").is_dir():
        pytest.skip("needs Linux's /proc")
    folder, frames = cli_setup
    assert main(["run", "--mission", str(folder / "m.toml"), "--frames", *frames, "--out", "/proc/edgeae_s32"]) == 2
    err = capsys.readouterr().err
    assert (
        "cannot create the results folder --out /proc/edgeae_s32: /proc does not let a folder be created in it" in err
    )
    assert "[Errno" not in err


def test_the_out_check_leaves_no_folder_behind(cli_setup: tuple[Path, list[str]]) -> None:
    """The check creates a new --out to see that it can be, then removes what it made (a refused run, here for
    having no frames, leaves nothing)."""
    from edgeae.firmware_sim.cli import main

    folder, _ = cli_setup
    empty = folder / "empty"
    empty.mkdir()
    out = folder / "new" / "deeper" / "out"
    assert main(["run", "--mission", str(folder / "m.toml"), "--frames", str(empty), "--out", str(out)]) == 2
    assert not (folder / "new").exists()


# ------------------------------------------------------------------------------ a5-7, a5-10: what the docs say
def test_the_docs_say_an_external_peak_is_the_last_frame_s_and_what_the_storage_budget_counts() -> None:
    text = " ".join(DOCS.read_text(encoding="utf-8").split())
    assert "is the last frame's only, while `summary.json`'s `memory.rss_peak_bytes` is the run's" in text
    assert "the index `queue/index.json` beside them" in text and "are not counted" in text


def test_fresh_does_not_discard_the_state_of_a_run_that_holds_the_folder(
    cli_setup: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    """``--fresh`` removed the state before the boot took the folder: started beside a live run it deleted that
    run's queue and ledger (review s32). Now it is refused while the folder is held, and removes nothing."""
    from edgeae.firmware_sim.cli import main

    from edgeae.folder_lock import hold

    folder, frames = cli_setup
    args = ["run", "--mission", str(folder / "m.toml"), "--frames", *frames, "--out", str(folder / "out")]
    assert main(args) == 0
    before = sorted(p.name for p in (folder / "out").iterdir())
    capsys.readouterr()
    with hold(folder / "out", "flight run"):
        assert main([*args, "--fresh"]) == 2
    assert "is in use by another flight run" in capsys.readouterr().err
    assert sorted(p.name for p in (folder / "out").iterdir()) == before
    assert main([*args, "--fresh"]) == 0  # once let go, --fresh starts over


def test_a_set_model_path_with_a_quoted_tilde_is_the_home_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--set anomaly.model=~/x.onnx``: the shell does not expand ``~`` after ``=``; the check did not either and
    refused a file that exists (review s32)."""
    from edgeae.firmware_sim.cli_overrides import _check_set_model

    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "x.onnx").write_bytes(b"")
    _check_set_model("anomaly.model", "~/x.onnx", "")  # exists: no error
    with pytest.raises(MissionError, match="no such file"):
        _check_set_model("anomaly.model", "~/missing.onnx", "")


# --------------------------------------------------------------- review s32: the folder held until the end
def _holder_probe(out: Path, seen: list[str]) -> None:
    """Whether another run could take ``out`` now (this process's own hold is refused, as another run's would be)."""
    from edgeae.folder_lock import FolderBusy, hold

    try:
        with hold(out, "flight run"):
            seen.append("free")
    except FolderBusy:
        seen.append("held")


def test_a_refused_first_boot_removes_its_state_before_it_lets_the_folder_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refused first boot let the folder go, then removed ``telemetry.jsonl`` and ``queue/``: a run that took the
    folder in between lost its state (review s32). Its files are now closed and removed while it holds the folder."""
    import edgeae.firmware_sim.loop as loop

    seen: list[str] = []
    real = loop.discard_state

    def probe(out: Path, keep: Any = ()) -> None:
        seen.append(f"telemetry {(out / 'telemetry.jsonl').exists()}")
        _holder_probe(out, seen)
        real(out, keep)

    monkeypatch.setattr(loop, "discard_state", probe)
    (tmp_path / "m.toml").write_text(MISSION.format(model=tmp_path / "missing.onnx"))
    out = tmp_path / "out"
    with pytest.raises(MissionError, match=r"missing\.onnx does not exist"):
        loop.FlightRuntime(load_mission(tmp_path / "m.toml"), out)
    assert seen == ["telemetry True", "held"] and not out.exists()


def test_run_holds_the_folder_until_its_report_is_written(
    cli_setup: tuple[Path, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``finish`` let the folder go before the CLI wrote ``report.html`` and ``report_img/`` (review s32); the boot
    removes a power loss's half file whatever its pid, since it holds the folder."""
    import edgeae.firmware_sim.cli as cli

    folder, frames = cli_setup
    out = folder / "out"
    seen: list[str] = []
    real = cli._write_outputs

    def probe(*args: Any, **kwargs: Any) -> None:
        _holder_probe(out, seen)
        real(*args, **kwargs)

    monkeypatch.setattr(cli, "_write_outputs", probe)
    (out / "queue" / "items").mkdir(parents=True)
    half = out / "queue" / ".index.json.tmp-1"  # pid 1 runs: os.kill alone would keep it
    half.write_bytes(b"half")
    assert cli.main(["run", "--mission", str(folder / "m.toml"), "--frames", *frames, "--out", str(out)]) == 0
    assert seen == ["held"] and (out / "report.html").is_file() and not half.exists()
    _holder_probe(out, seen)  # let go at the very end
    assert seen == ["held", "free"] and not (out / ".edgeae.lock").exists()


def test_without_a_lock_the_boot_s_sweep_keeps_a_live_process_s_temporaries(tmp_path: Path) -> None:
    """On a file system that cannot lock, the boot is not alone in the folder: a live run's half-written index
    is not stale (review s32: the sweep removed it, and that run's rename failed)."""
    import subprocess
    import sys

    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        q = DownlinkQueue(tmp_path / "q", 1 << 20)
        theirs = tmp_path / "q" / f".index.json.tmp-{live.pid}"
        dead = tmp_path / "q" / f".index.json.tmp-{NO_PID}"
        theirs.write_bytes(b"half")
        dead.write_bytes(b"half")
        assert q.sweep_stale_temps(held=False) == [dead.name]
        assert theirs.exists() and not dead.exists()
    finally:
        live.kill()
        live.wait()


@pytest.mark.parametrize("value", ["~s32nosuchuser/x.onnx", "~vae_s32.onnx"])
def test_a_set_model_path_with_a_tilde_naming_no_user_is_one_line(
    value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``Path.expanduser`` raised RuntimeError (a traceback) for ``~name`` of no user (review s32)."""
    from edgeae.firmware_sim.cli_overrides import _check_set_model

    monkeypatch.chdir(tmp_path)
    if "/" not in value:  # a file in the current folder really named ~vae_s32.onnx: taken as written
        (tmp_path / value).write_bytes(b"")
        _check_set_model("anomaly.model", value, "")
        return
    with pytest.raises(MissionError, match="no such file"):
        _check_set_model("anomaly.model", value, "")


@pytest.mark.parametrize("bands", [2, 4])
def test_an_array_frame_s_extra_bands_are_bands_and_refused_not_cut(bands: int, tmp_path: Path) -> None:
    """A 4-band .npy frame flew as RGB with its 4th band lost without a word (a 2-band one was 'unreadable'); the
    docs say a frame of another channel count is dropped as invalid_channels (audit s32-a6). A PNG's alpha is still
    alpha."""
    import cv2
    from edgeae.firmware_sim.frames import ImageFileFrame, open_frame
    from edgeae.firmware_sim.validate import check_header

    np.save(tmp_path / "b.npy", np.zeros((8, 10, bands), np.uint8))
    frame = open_frame(tmp_path / "b.npy")
    assert frame.header.channels == bands
    v = check_header(frame.header, load_mission("rover_mastcamz").camera)
    assert not v.ok and v.reason == "channels"
    rgba = np.zeros((8, 10, 4), np.uint8)
    rgba[..., 3] = 255
    cv2.imwrite(str(tmp_path / "a.png"), rgba)
    png = ImageFileFrame(tmp_path / "a.png")
    assert png.header.channels == 3 and next(iter(png.strips(8)))[1].shape == (8, 10, 3)


def test_messages_say_what_they_count(tmp_path: Path) -> None:
    """One NaN pixel of 98,304 was "0.0000 of pixels are NaN/inf"; a margin error showed the dataclass's repr; a
    bool for an integer key said "takes a int" (audit s32-a6)."""
    from edgeae.firmware_sim.cli_overrides import _kind
    from edgeae.firmware_sim.validate import check_pixels

    from edgeae.nodata import Margin

    strip = np.full((256, 384, 1), 0.5, np.float32)
    strip[3, 4] = np.nan
    v = check_pixels(strip, load_mission("orbital_nac").camera)
    assert not v.ok and v.reason == "nan" and v.detail.startswith("1 pixel(s), 1.02e-05 of them, are NaN/inf")
    with pytest.raises(ValueError, match=r"got top -1, bottom 0, left 0, right 0$"):
        Margin(-1)
    assert _kind(3) == "an integer" and _kind(True) == "true or false" and _kind(0.5) == "a number"
