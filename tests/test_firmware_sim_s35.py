"""Session-35 audit a1 fixes in ``firmware-sim``'s state folder over many boots: the summary lists the faults of
every boot, an unreadable ``mission.json`` is refused, bytes that are not UTF-8 in ``telemetry.jsonl`` are skipped
and counted, a boot names the frame a power loss dropped, the console lists this boot's anomalous frames, the
``start`` line carries the UTC time, and the disk-full boot message says its errno once."""

from __future__ import annotations

import errno
import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from edgeae.firmware_sim.mission import MissionError
from edgeae.firmware_sim.telemetry import read_history, read_lines

DOCS = Path(__file__).resolve().parents[1] / "docs" / "firmware_sim.md"


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from edgeae.firmware_sim.testing import tiny_models

    return tiny_models(tmp_path_factory.mktemp("models"))


def _mission(models: dict[str, Path]) -> Any:
    from edgeae.firmware_sim.testing import small_mission

    return small_mission(models, reconstruction={"mode": "off"})


def _frames(d: Path, n: int) -> list[Path]:
    from edgeae.firmware_sim.testing import textured_frame

    out = []
    for i in range(n):
        np.save(d / f"f{i}.npy", textured_frame(i))
        out.append(d / f"f{i}.npy")
    return out


def _lines(out: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (out / "telemetry.jsonl").read_text().splitlines()]


def _boot(models: dict[str, Path], out: Path, **kw: Any) -> Any:
    from edgeae.firmware_sim.loop import FlightRuntime

    return FlightRuntime(_mission(models), out, **kw)


# ----------------------------------------------------------------- item 1: the faults fired in every boot
def test_the_summary_lists_the_faults_fired_in_every_boot(tmp_path: Path, models: dict[str, Path]) -> None:
    """The audit's repro: four faults fired over two boots, then a boot asking for reboot@frame9 only. The summary
    said faults ['reboot@frame9'] and the four fired earlier were nowhere in it."""
    from edgeae.firmware_sim.faults import SimulatedReboot

    files, out = _frames(tmp_path, 6), tmp_path / "out"
    inject = ["reboot@frame2,seu@frame1,late@frame3:50000,bad-frame@frame0:nan"]
    rt = _boot(models, out, inject=inject)
    with pytest.raises(SimulatedReboot):
        rt.run(files[:4])
    _boot(models, out, inject=inject).run(files[:4])
    s = _boot(models, out, inject=["reboot@frame9"]).run(files)
    assert s["boots"] == 3 and s["faults"] == ["reboot@frame9"] and s["this_boot"]["faults_fired"] == []
    assert s["faults_fired"] == ["bad-frame@frame0:nan", "seu@frame1", "reboot@frame2", "late@frame3:50000"]
    assert s["faults_not_fired"] == ["reboot@frame9"]
    assert sum(e.get("kind") == "fault_injected" for e in _lines(out)) == 4
    assert "`faults_fired` lists them" in DOCS.read_text()


# ----------------------------------------------------------------- item 2: an unreadable mission.json
# the last three: JSON objects without a mission record (review r2: they were accepted, and the state taken over)
@pytest.mark.parametrize(
    "content",
    [b"{garbage\n", b"", b"[1, 2]\n", b'{"name": "test", "settings": 3}', b"\xff\xfe", b"{}", b'{"settings": {}}',
     b'{"nme": "typo", "settings": {}}'],
)  # fmt: skip
def test_an_unreadable_mission_state_is_refused_naming_it(
    tmp_path: Path, models: dict[str, Path], content: bytes
) -> None:
    """It was ignored: exit 0, the another-mission check and the settings-changed list skipped, the file rewritten."""
    out = tmp_path / "out"
    _boot(models, out).finish()
    (out / "mission.json").write_bytes(content)
    with pytest.raises(MissionError) as err:
        _boot(models, out)
    msg = str(err.value)
    assert msg.startswith(f"{out / 'mission.json'} is unreadable (") and "\n" not in msg
    assert "--fresh" in msg and "remove that file" in msg
    assert (out / "mission.json").read_bytes() == content  # left as it was
    assert sum(r.get("type") == "start" for r in read_lines(out / "telemetry.jsonl")) == 1  # nothing written


def test_an_unreadable_mission_state_is_one_line_from_the_command(
    tmp_path: Path, models: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from edgeae.firmware_sim.cli import main

    frames = _frames(tmp_path, 1)
    toml = tmp_path / "m.toml"
    toml.write_text(
        f'name = "s35"\n[camera]\nchannels = 1\n[anomaly]\nmodel = "{models["vae"]}"\npatch = 32\nstride = 32\n'
    )
    out = tmp_path / "out"
    args = ["run", "--mission", str(toml), "--frames", str(frames[0]), "--out", str(out)]
    assert main(args) == 0
    (out / "mission.json").write_text("{garbage\n")
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(out / "mission.json") in err[0] and "unreadable" in err[0], err
    assert main([*args, "--fresh"]) == 0  # the way forward it names
    assert json.loads((out / "mission.json").read_text())["name"] == "s35"


# ----------------------------------------------------------------- item 3: bytes that are not UTF-8 in telemetry
def test_read_records_skips_and_counts_lines_that_are_not_utf8(tmp_path: Path) -> None:
    from edgeae.firmware_sim.telemetry import read_records

    path = tmp_path / "telemetry.jsonl"
    path.write_bytes(b'{"type":"start","resumed":false}\n\xb3\xff garbage\n{"type":"event","kind":"x"}\n[1]\n{"ty')
    records, skipped = read_records(path)
    assert [r["type"] for r in records] == ["start", "event"] and skipped == 3
    assert read_lines(path) == records and read_history(path).unreadable_lines == 3
    assert read_records(tmp_path / "none.jsonl") == ([], 0)


def test_a_boot_on_telemetry_with_random_bytes_flies_and_counts_them(tmp_path: Path, models: dict[str, Path]) -> None:
    """`head -c 3000 /dev/urandom >> OUT/telemetry.jsonl` refused every later boot: 'utf-8' codec can't decode."""
    files, out = _frames(tmp_path, 2), tmp_path / "out"
    _boot(models, out).run(files[:1])
    with (out / "telemetry.jsonl").open("ab") as f:
        f.write(np.random.default_rng(7).integers(128, 256, 3000, dtype=np.uint8).tobytes())  # none is UTF-8
    s = _boot(models, out).run(files)
    assert s["frames"]["acquired"] == 2 and s["frames"]["processed"] == 2 and s["frames"]["accounted"]
    assert s["boots"] == 2 and s["telemetry_lines_unreadable"] == 1  # no newline among the bytes: one line


def test_the_console_says_how_many_telemetry_lines_were_skipped(
    tmp_path: Path, models: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Audit a5: counted in summary.json only, while their frames and events dropped out of every total."""
    from edgeae.firmware_sim.cli_outputs import _print_summary

    files, out = _frames(tmp_path, 2), tmp_path / "out"
    s = _boot(models, out).run(files[:1])
    capsys.readouterr()
    _print_summary(s, str(out))
    assert "telemetry.jsonl could not be read" not in capsys.readouterr().err
    with (out / "telemetry.jsonl").open("ab") as f:
        f.write(b'{"type": "frame", "x": "\xff"}\nnot json\n')
    s = _boot(models, out).run(files)
    capsys.readouterr()
    _print_summary(s, str(out))
    assert f"WARNING: 2 lines of {out}/telemetry.jsonl could not be read" in capsys.readouterr().err


# ----------------------------------------------------------------- item 4: the frame a power loss dropped
def _power_loss_during_next_frame(rt: Any, source: Path) -> int:
    """What ``kill -9`` mid-frame leaves: the frame entered in the ledger ``in_progress`` and saved (as acquire
    does), then the process gone without a word."""
    fid = int(rt.queue.state["next_frame_id"])
    rt.queue.state["next_frame_id"] = fid + 1
    rt.queue.state["frames"][str(fid)] = {"source": str(source), "status": "in_progress", "reason": ""}
    rt.queue.save()
    rt.close()
    return fid


def test_the_boot_after_a_power_loss_names_the_frame_it_dropped(
    tmp_path: Path, models: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from edgeae.firmware_sim.cli_outputs import _print_summary

    files, out = _frames(tmp_path, 4), tmp_path / "out"
    rt = _boot(models, out)
    rt.process(str(files[0]))
    assert _power_loss_during_next_frame(rt, files[1]) == 1
    s = _boot(models, out).run(files[2:3])
    recovery = [r for r in _lines(out) if r["type"] == "recovery"]
    assert recovery[-1]["reboot_during_processing"] == [1]
    assert s["this_boot"]["reboot_during_processing"] == [1]
    assert {e["frame_id"]: e["code"] for e in s["ledger"]}[1] == "reboot_during_processing"
    _print_summary(s, str(out))
    err = capsys.readouterr().err
    assert "WARNING: this boot recovered from a power loss (or kill -9) during frame 1: dropped" in err
    s = _boot(models, out).run(files[3:])  # the next boot found nothing new: says nothing of it
    assert [r for r in _lines(out) if r["type"] == "recovery"][-1]["reboot_during_processing"] == []
    assert s["this_boot"]["reboot_during_processing"] == []
    _print_summary(s, str(out))
    assert "power loss" not in capsys.readouterr().err


# ----------------------------------------------------------------- item 5: this boot's anomalous frames
def _anomalies(ids: range) -> list[dict[str, Any]]:
    return [{"frame_id": i, "source": f"f{i}", "patches": [{"x": 0, "y": 0, "score": 1.0}]} for i in ids]


def _anomaly_lines(s: dict[str, Any]) -> list[str]:
    from edgeae.firmware_sim.cli_outputs import _anomaly_lines as lines

    return lines(s)


def _shown(lines: list[str]) -> list[int]:
    return [int(x.split()[1].rstrip(":")) for x in lines if x.startswith("  frame ")]


def test_the_console_lists_this_boots_anomalous_frames() -> None:
    """At boot 32 it listed frames 1..5 of boot 1, then '... in 44 more frames'."""
    s = {"boots": 32, "anomalies": _anomalies(range(50)), "this_boot": {"anomalous_frames": [42, 43, 44, 45, 46, 47]}}
    lines = _anomaly_lines(s)
    assert _shown(lines) == [42, 43, 44, 45, 46]
    assert lines[-1] == "  ... highest-scoring patches in 1 more frame of this boot and 44 frames of earlier boots " + (
        "(report.html, summary.json)"
    )
    s["this_boot"] = {"anomalous_frames": []}  # none this boot: the most recent, said so
    lines = _anomaly_lines(s)
    assert lines[0] == (
        "  no patch was chosen for the downlink in this boot's frames; the last 5 frames of earlier boots:"
    )
    assert _shown(lines) == [45, 46, 47, 48, 49] and lines[-1].startswith(
        "  ... highest-scoring patches in 45 earlier frames"
    )
    one = {"boots": 1, "anomalies": _anomalies(range(7)), "this_boot": {"anomalous_frames": list(range(7))}}
    lines = _anomaly_lines(one)  # a single boot: as before
    assert _shown(lines) == [0, 1, 2, 3, 4] and lines[-1].startswith("  ... highest-scoring patches in 2 more frames (")


def test_the_summary_names_this_boots_anomalous_frames(tmp_path: Path, models: dict[str, Path]) -> None:
    files, out = _frames(tmp_path, 3), tmp_path / "out"
    _boot(models, out).run(files[:2])
    s = _boot(models, out).run(files)
    assert [a["frame_id"] for a in s["anomalies"]] == [0, 1, 2] and s["this_boot"]["top_patch_frames"] == [2]
    assert s["this_boot"]["anomalous_frames"] == []  # no threshold: none judged anomalous (session 36)


# ----------------------------------------------------------------- item 6: the boot's UTC time
def test_the_start_line_carries_the_utc_time_of_t_zero(tmp_path: Path, models: dict[str, Path]) -> None:
    before = time.time()
    _boot(models, tmp_path / "out").finish()
    after = time.time()
    start = next(r for r in _lines(tmp_path / "out") if r["type"] == "start")
    assert start["utc"].endswith("Z") and len(start["utc"]) == len("2025-03-01T12:34:56.789Z")
    utc = datetime.fromisoformat(start["utc"]).timestamp()
    assert before - 0.001 <= utc <= after and isinstance(start["t"], float)
    assert "`utc`, the UTC wall-clock time at which that boot's `t` is 0" in DOCS.read_text()


# ----------------------------------------------------------------- item 7: the errno said once
@pytest.mark.parametrize("named", [True, False])
def test_a_mission_state_that_cannot_be_written_says_its_errno_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, named: bool
) -> None:
    import edgeae.firmware_sim.queue as queue_mod
    from edgeae.firmware_sim.mission import mission_from_dict
    from edgeae.firmware_sim.state import StateNotSaved, write_mission_state

    def full(path: Path, data: bytes) -> None:  # as atomic_write raises it (named), or as a bare OSError
        raise OSError(errno.ENOSPC, f"cannot write {path}: No space left on device" if named else "No space left")

    monkeypatch.setattr(queue_mod, "atomic_write", full)
    with pytest.raises(StateNotSaved) as err:
        write_mission_state(tmp_path, mission_from_dict({"name": "x"}))
    why = "No space left on device" if named else "No space left"
    assert str(err.value) == f"[Errno 28] cannot write {tmp_path / 'mission.json'}: {why}"
    assert err.value.errno == errno.ENOSPC


def test_the_report_verdict_lists_the_faults_fired_in_earlier_boots() -> None:
    """A later boot that asked for one fault that did not fire still shows the faults earlier boots fired."""
    from edgeae.firmware_sim.report import _verdict

    s = {
        "frames": {"acquired": 2, "downlinked": 2},
        "faults": ["reboot@frame9"],
        "faults_not_fired": ["reboot@frame9"],
        "faults_fired": ["reboot@frame2", "seu@frame1"],
    }
    v = _verdict(s)
    assert "Faults injected (--inject): reboot@frame2, seu@frame1; asked for but never fired: reboot@frame9" in v
    assert "Faults injected (--inject): seu@frame0" in _verdict({"faults": ["seu@frame0"], "frames": {}})


@pytest.mark.parametrize("content", [b"[1, 2]\n", b'{"name": "test", "settings": 3}', b"{garbage", b"7"])
def test_the_report_of_a_folder_with_a_damaged_mission_state_is_written(
    tmp_path: Path, models: dict[str, Path], content: bytes
) -> None:
    """`firmware-sim report` read mission.json's settings with .get: a list or a number crashed it (review r2)."""
    from edgeae.firmware_sim.report_gallery import _scoring_note

    out = tmp_path / "out"
    _boot(models, out).finish()
    (out / "mission.json").write_bytes(content)
    assert isinstance(_scoring_note(out), str)


# ----------------------------------------------------------------- review r6 of session 35
def test_a_boot_says_what_the_recovered_queue_lost_and_a_capacity_lowered_below_it(
    tmp_path: Path, models: dict[str, Path]
) -> None:
    """``DownlinkQueue.over_capacity`` was set at load and read by nothing; an item lost at recovery was only an
    id in the ``recovery`` line. The boot writes an ``evicted`` event for each (its reason) and a
    ``storage_over_capacity`` event, and says the lowered capacity among its console warnings."""
    from edgeae.firmware_sim.loop import FlightRuntime
    from edgeae.firmware_sim.testing import small_mission

    files, out = _frames(tmp_path, 2), tmp_path / "out"
    no_pass = {"downlink_bytes_per_pass": 0}
    FlightRuntime(small_mission(models, reconstruction={"mode": "off"}, budget=no_pass), out).run(files)
    index = json.loads((out / "queue" / "index.json").read_text())
    pending = [d for d in index["items"] if d["status"] == "pending"]
    gone = pending[0]
    (out / "queue" / "items" / f"{gone['id']:08d}.pkt").unlink()
    stored = sum(d["wire_bytes"] - d["sent_bytes"] for d in pending[1:])
    assert stored > 4096
    low = small_mission(models, reconstruction={"mode": "off"}, budget={**no_pass, "queue_capacity_bytes": 4096})
    rt = FlightRuntime(low, out)
    rt.close()
    lines = _lines(out)
    start = max(i for i, r in enumerate(lines) if r["type"] == "start")
    events = [r for r in lines[start:] if r["type"] == "event"]
    evicted = [e for e in events if e["kind"] == "evicted"]
    assert [(e["item"], e["product"], e["frame_id"], e["reason"]) for e in evicted] == [
        (gone["id"], gone["kind"], gone["frame_id"], "item file missing after reboot")
    ]
    assert evicted[0]["bytes"] == gone["wire_bytes"]
    over = [e for e in events if e["kind"] == "storage_over_capacity"]
    assert len(over) == 1 and (over[0]["stored_bytes"], over[0]["capacity_bytes"]) == (stored, 4096)
    assert over[0]["detail"].startswith(f"{stored:,} B of queued products are stored, over queue_capacity_bytes")
    assert f"{out / 'queue'}: {over[0]['detail']}" in rt.boot_warnings
    assert "leftover_item_files" not in next(r for r in lines[start:] if r["type"] == "recovery")


def test_the_boot_after_a_power_loss_parses_only_the_start_and_recovery_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A frame a power loss stopped stays ``in_progress`` for good, so every later boot parsed the whole
    telemetry.jsonl twice (44 MB: 3.65 s and +390 MB RSS at boot): the boot parses only the lines it needs."""
    import edgeae.firmware_sim.telemetry_lines as tl
    from edgeae.firmware_sim.boot import power_loss_frames
    from edgeae.firmware_sim.queue import DownlinkQueue
    from edgeae.firmware_sim.telemetry import retake_unsaved

    path = tmp_path / "telemetry.jsonl"
    frame = {"type": "frame", "frame_id": 0, "status": "processed", "flags": ["recovery_mode"], "timing_ms": {}}
    lines = [{"type": "start", "resumed": True}, *[{**frame, "frame_id": i} for i in range(500)]]
    lines += [{"type": "recovery", "reboot_during_processing": [5]}, {"type": "start", "resumed": True}]
    lines += [{"type": "event", "kind": "interrupted", "frame_id": 9}]
    path.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in lines) + "{cut short\n")
    parsed: list[bytes | str] = []
    real = json.loads
    monkeypatch.setattr(tl, "json", type("J", (), {"loads": staticmethod(lambda s: parsed.append(s) or real(s))}))
    assert power_loss_frames({"5", "7"}, path) == [7]  # 5 named by an earlier boot's recovery line
    assert len(parsed) == 3  # the two start lines and the recovery line
    q = DownlinkQueue(tmp_path / "other" / "queue", 1 << 20)
    q.state["frames"] = {str(i): {"source": "f", "status": "in_progress", "reason": ""} for i in (7, 9)}
    parsed.clear()
    assert retake_unsaved(q, path) == [9] and q.state["frames"]["9"]["status"] == "interrupted"
    assert len(parsed) == 4  # and the interrupted event
