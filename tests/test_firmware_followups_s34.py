"""Follow-ups of session 34's mission-authoring fixes (audit a2): a model mismatch at boot names the mission file, a
frame file that did not exist when first acquired is taken once it does, the console's counts read right, a pass
that can send nothing writes no empty file, and the command line's mission changes live in ``cli_overrides``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from edgeae.firmware_sim import cli, cli_overrides
from edgeae.firmware_sim.queue import DownlinkQueue
from edgeae.firmware_sim.state import frames_to_take

MISSION = """name = "followups"
[camera]
channels = 1
height = 128
width = 192
[sampling]
keep = 0.1
seed = 5
min_keep = 0.01
[anomaly]
model = "{model}"
patch = 32
stride = 32
batch = 8
top_k = 2
[budget]
frame_ms = 5000.0
memory_bytes = {memory}
downlink_bytes_per_pass = 1048576
pass_every_frames = 1
"""


def _onnx() -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path]:
    """A mission file on the stand-in VAE (a 2 GiB budget) and one frame, ``f0.npy``."""
    _onnx()
    from edgeae.firmware_sim.testing import textured_frame, tiny_vae_onnx

    model = tiny_vae_onnx(tmp_path / "vae.onnx", 1, 32)
    (tmp_path / "m.toml").write_text(MISSION.format(model=model, memory=2 * 2**30))
    np.save(tmp_path / "f0.npy", textured_frame(0))
    return tmp_path, tmp_path / "m.toml"


# ------------------------------------------------------------------------------ A: the mission file in the error
def test_a_model_mismatch_at_boot_names_the_mission_file(setup: tuple[Path, Path]) -> None:
    from edgeae.firmware_sim.loop import FlightRuntime
    from edgeae.firmware_sim.mission import load_mission
    from edgeae.firmware_sim.score import ScoringError

    folder, mission_file = setup
    mission_file.write_text(mission_file.read_text().replace("patch = 32\nstride = 32", "patch = 64\nstride = 64"))
    with pytest.raises(ScoringError) as info:
        FlightRuntime(load_mission(mission_file), folder / "out")
    assert f"but {mission_file} [anomaly] patch = 64: set patch = 32" in str(info.value), str(info.value)


# ------------------------------------------------------------------ B: a frame that did not exist when acquired
def _missing(source: str) -> dict[str, Any]:
    reason = f"unreadable: frame file {source} does not exist"
    return {"source": source, "status": "dropped", "reason": reason, "code": "unreadable"}


def test_a_frame_missing_when_acquired_is_taken_again_once_its_file_exists(tmp_path: Path) -> None:
    path = str(tmp_path / "late.png")
    ledger = {"0": _missing(path)}
    skipped: list[str] = []
    assert list(frames_to_take(ledger, [path], skipped.append)) == []  # still not there: acquired, not taken
    assert skipped == [path]
    Path(path).write_bytes(b"x")
    assert list(frames_to_take(ledger, [path], skipped.append)) == [(path, None)]  # a new frame, a new id
    ledger["1"] = {"source": path, "status": "processed", "reason": ""}
    assert list(frames_to_take(ledger, [path], skipped.append)) == []  # taken again once only
    other = {"0": {**_missing(path), "reason": "unreadable: frame file late.png is truncated"}}
    assert list(frames_to_take(other, [path], skipped.append)) == []  # read and found damaged: not again


def test_the_console_and_the_summary_account_for_a_frame_taken_again(
    setup: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The audit's ``--frames frames nothere.png``, then ``cp frames/ctx0.png nothere.png`` and a rerun: "4 frame(s)
    already acquired there were not taken again" until session 34, the file never taken."""
    folder, mission_file = setup
    monkeypatch.chdir(folder)
    args = ["run", "--mission", str(mission_file), "--out", "out", "--frames", "f0.npy", "nothere.npy"]
    assert cli.main(args) == 0
    assert "dropped unreadable x1" in capsys.readouterr().out
    (folder / "nothere.npy").write_bytes((folder / "f0.npy").read_bytes())
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "1 frame(s) already acquired there were not taken again" in out
    assert "3 frames acquired (over 2 boots): 2 downlinked, 0 queued, 1 dropped (unreadable x1)" in out
    late = folder / "nothere.npy"
    assert f"frame 2 taken again: it did not exist when first acquired (frame 1, dropped unreadable): {late}" in out
    ledger = json.loads((folder / "out" / "summary.json").read_text())["ledger"]
    assert [(e["frame_id"], e["source"], e["outcome"]) for e in ledger] == [
        (0, str(folder / "f0.npy"), "downlinked"),
        (1, str(late), "dropped"),
        (2, str(late), "downlinked"),
    ]
    assert cli.main(args) == 0  # a third run takes neither again and says nothing of it
    out = capsys.readouterr().out
    assert "2 frame(s) already acquired" in out and "taken again:" not in out


# ------------------------------------------------------------------------------------------ C: console counts
def test_the_console_says_one_frame_one_pass_and_a_budget_with_thousands(
    setup: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    folder, mission_file = setup
    frame = str(folder / "f0.npy")
    assert cli.main(["run", "--mission", str(mission_file), "--out", str(folder / "o"), "--frames", frame]) == 0
    out = capsys.readouterr().out
    assert "mission followups: 1 frame acquired: 1 downlinked" in out, out
    assert " B sent in 1 pass, 0 B pending" in out and "of the 2,048 MiB budget" in out
    assert cli.main(["check", "--mission", str(mission_file)]) == 0
    out = capsys.readouterr().out
    assert "MiB (RSS growth over the boot baseline) of the 2,048 MiB budget ([runtime] threads = " in out, out


# ------------------------------------------------------------------------------ D: a pass that can send nothing
def _packet(apid: int, size: int) -> bytes:
    """One space packet of ``size`` bytes (header and CRC included, contents zero)."""
    n = size - 7
    return bytes([0x08, apid, 0xC0, 0x00, n >> 8, n & 0xFF]) + bytes(size - 6)


def test_a_pass_whose_first_item_does_not_fit_writes_no_file_and_says_why(tmp_path: Path) -> None:
    """An item whose packets are larger than a whole pass (queued under other settings) was passed over and an empty
    ``pass_NNNNN.bin`` written, using a pass number, when nothing else waited (until session 34)."""
    q = DownlinkQueue(tmp_path / "q", 1 << 20)
    huge, _ = q.put("sparse", 3, [_packet(2, 2048)] * 2)
    rep = q.downlink_pass(1024, tmp_path / "dl")
    assert rep.packets_sent == 0 and rep.path == "" and rep.index == 0 and q.state["passes"] == 0
    assert not (tmp_path / "dl").exists() or not list((tmp_path / "dl").iterdir())
    assert (
        rep.skipped
        == q.passes_skipped[0]
        == (
            "the first item waiting does not fit a pass: item 0 (sparse of frame 3, 4,096 B to send) has a packet of "
            "2,048 B, over the pass budget of 1,024 B (it was queued under other packet settings: raise [budget] "
            "downlink_bytes_per_pass to at least 2048 to send it)"
        )
    )
    q.put("telemetry", 4, [_packet(4, 100)])
    rep = q.downlink_pass(1024, tmp_path / "dl")  # something fits: the first pass number
    assert rep.index == 1 and Path(rep.path).name == "pass_00001.bin" and Path(rep.path).stat().st_size == 100
    assert not rep.skipped and huge.sent_packets == 0


def test_the_loop_logs_a_pass_that_sent_nothing_and_the_console_warns(tmp_path: Path) -> None:
    _onnx()
    from edgeae.firmware_sim.cli_outputs import passes_skipped_lines
    from edgeae.firmware_sim.loop import FlightRuntime
    from edgeae.firmware_sim.testing import small_mission, textured_frame, tiny_models

    models = tiny_models(tmp_path / "models")
    m = small_mission(models, camera={"width": 192}, budget={"downlink_bytes_per_pass": 1024, "pass_every_frames": 1})
    rt = FlightRuntime(m, tmp_path / "out")
    rt.queue.put("sparse", 0, [_packet(2, 2048)])  # as a boot with 2 KiB packets left it
    rec = rt.process(textured_frame(0, w=160))  # dropped (another width): nothing new queued
    rt.finish()
    assert rec["status"] == "dropped" and rt.queue.state["passes"] == 0
    assert not list((tmp_path / "out" / "downlink").glob("pass_*"))
    lines = [json.loads(s) for s in (tmp_path / "out" / "telemetry.jsonl").read_text().splitlines()]
    skipped = [r for r in lines if r.get("kind") == "pass_skipped"]
    assert len(skipped) == 1 and skipped[0]["passes"] == 0 and skipped[0]["pending_bytes"] == 2048
    assert skipped[0]["reason"].startswith("the first item waiting does not fit a pass: item 0 (sparse of frame 0")
    assert passes_skipped_lines(rt.queue.passes_skipped) == [
        f"WARNING: 1 downlink pass sent nothing (no pass file written): {skipped[0]['reason']}"
    ]


# ------------------------------------------------------------------------------------- F: cli.py split
def test_the_mission_overrides_of_the_command_line_live_in_cli_overrides() -> None:
    assert cli._mission_for is cli_overrides._mission_for  # still importable from cli (tests call it there)
    for name in ("_name_the_option", "_check_model_path", "_OPTION_FIELDS"):
        assert hasattr(cli_overrides, name) and not hasattr(cli, name), name
