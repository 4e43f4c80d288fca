"""Storage faults and signals in ``firmware-sim run`` (session-31 audit: a full or read-only disk, SIGTERM).

A pass file that cannot be written is a downlink event (the frame stays processed, its products queued for the
next pass); a product that cannot be queued drops its frame with a reason naming the file; a report.html or
summary.json that cannot be written at the end is a WARNING, never a half-written file or a "user error"; a
queue index that cannot be saved stops the run with status 4 and the state kept; SIGTERM stops it as Ctrl-C does.
The disk is faked (the errors a full or read-only disk raises), so the tests need no root and no mount."""

from __future__ import annotations

import errno
import json
import os
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
import edgeae.firmware_sim.loop as loop_mod
import edgeae.firmware_sim.queue as queue_mod
from edgeae.firmware_sim.cli import EXIT_INTERRUPTED, EXIT_STORAGE, main
from edgeae.firmware_sim.loop import FlightRuntime
from edgeae.firmware_sim.queue import DownlinkQueue
from edgeae.firmware_sim.testing import small_mission, textured_frame, tiny_models, tiny_vae_onnx

P = 32
MISSION = """
name = "storage"
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


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return tiny_models(tmp_path_factory.mktemp("models"), 1, P)


def _frames(d: Path, n: int) -> list[Path]:
    out = []
    for i in range(n):
        np.save(d / f"f{i}.npy", textured_frame(i))
        out.append(d / f"f{i}.npy")
    return out


def _lines(out: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (out / "telemetry.jsonl").read_text().splitlines()]


def _events(out: Path, kind: str) -> list[dict[str, Any]]:
    return [x for x in _lines(out) if x["type"] == "event" and x.get("kind") == kind]


@pytest.fixture
def cli_setup(tmp_path: Path) -> tuple[Path, list[str]]:
    model = tiny_vae_onnx(tmp_path / "vae.onnx", 1, P)
    (tmp_path / "m.toml").write_text(MISSION.format(model=model))
    return tmp_path, [str(p) for p in _frames(tmp_path, 3)]


# ------------------------------------------------------------------------ 1: a pass file that cannot be written
def test_a_pass_that_cannot_be_written_keeps_the_frame_processed_and_its_products_queued(
    tmp_path: Path, models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The downlink folder read-only for frames 1 and 2's passes: both frames stay processed with one frame line
    each (frame 1 was withdrawn, dropped frame_error, and the second failure stopped the run); each failed pass
    is a downlink_failed event naming the file and the errno, and the next pass that can be written sends it all."""
    real = queue_mod.atomic_write
    calls = {"pass": 0}

    def read_only_downlink(path: Path, data: bytes) -> None:
        if path.name.startswith("pass_"):
            calls["pass"] += 1
            if calls["pass"] in (2, 3):
                raise OSError(errno.EROFS, "Read-only file system", str(path.with_name(f".{path.name}.tmp-1")))
        real(path, data)

    monkeypatch.setattr(queue_mod, "atomic_write", read_only_downlink)
    out = tmp_path / "out"
    s = FlightRuntime(small_mission(models, reconstruction={"mode": "off"}), out).run(_frames(tmp_path, 4))
    frames = [x for x in _lines(out) if x["type"] == "frame"]
    assert [(x["frame_id"], x["status"]) for x in frames] == [(i, "processed") for i in range(4)]
    assert s["frames"]["processed"] == 4 and s["frames"]["dropped"] == 0 and s["frames"]["downlinked"] == 4
    assert s["queue"]["withdrawn_items"] == 0 and s["queue"]["pending_bytes"] == 0
    failed = _events(out, "downlink_failed")
    assert [e["index"] for e in failed] == [2, 2] and {e["errno"] for e in failed} == {"EROFS"}
    assert failed[0]["file"] == str(out / "downlink" / "pass_00002.bin") and failed[0]["pending_bytes"] > 0
    assert s["downlink_passes_failed"] == 2 and s["queue"]["passes"] == 2  # pass 2 sent frames 1-3's products
    assert sorted(p.name for p in (out / "downlink").iterdir()) == ["pass_00001.bin", "pass_00002.bin"]


def test_a_read_only_downlink_folder_is_a_warning_and_the_products_stay_queued(
    cli_setup: tuple[Path, list[str]], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every pass refused (the real error of a read-only folder, from the atomic writer): exit 0, all frames
    processed and queued, a console WARNING; once the folder is writable the next run's pass sends them."""
    d, frames = cli_setup
    real = queue_mod.atomic_write

    def refuse(path: Path, data: bytes) -> None:
        if path.name.startswith("pass_"):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        real(path, data)

    monkeypatch.setattr(queue_mod, "atomic_write", refuse)
    args = ["run", "--mission", str(d / "m.toml"), "--out", str(d / "out"), "--frames", *frames]
    assert main(args) == 0
    printed = capsys.readouterr()
    assert "3 frames acquired: 0 downlinked, 3 queued, 0 dropped" in printed.out
    assert "WARNING: 3 downlink pass(es) could not be written" in printed.err
    monkeypatch.setattr(queue_mod, "atomic_write", real)
    np.save(d / "f3.npy", textured_frame(3))
    assert main([*args, str(d / "f3.npy")]) == 0
    s = json.loads((d / "out" / "summary.json").read_text())
    assert s["frames"]["downlinked"] == 4 and s["queue"]["passes"] == 1 and s["downlink_passes_failed"] == 3


def test_a_product_that_cannot_be_stored_drops_its_frame_naming_the_file(
    tmp_path: Path, models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC while frame 1's sparse pixels are written to the queue (a write error carries no file name): that
    frame is dropped frame_error, the reason names the queue item, nothing of it is left queued or on storage,
    and the loop goes on."""
    real = DownlinkQueue.put

    def disk_full(self: DownlinkQueue, kind: str, frame_id: int, packets: Any) -> Any:
        if kind == "sparse" and frame_id == 1:

            def fill(it: Any) -> Any:
                yield next(iter(it))
                raise OSError(errno.ENOSPC, "No space left on device")

            packets = fill(packets)
        return real(self, kind, frame_id, packets)

    monkeypatch.setattr(DownlinkQueue, "put", disk_full)
    out = tmp_path / "out"
    s = FlightRuntime(small_mission(models, reconstruction={"mode": "off"}), out).run(_frames(tmp_path, 3))
    ledger = {e["frame_id"]: e for e in s["ledger"]}
    assert [ledger[i]["outcome"] for i in range(3)] == ["downlinked", "dropped", "downlinked"]
    assert ledger[1]["code"] == "frame_error"
    assert "cannot write queue item" in ledger[1]["reason"] and "No space left on device" in ledger[1]["reason"]
    assert str(out / "queue" / "items") in ledger[1]["reason"]
    assert [x["frame_id"] for x in _lines(out) if x["type"] == "frame"] == [0, 1, 2]
    assert not list((out / "queue" / "items").iterdir())  # sent, withdrawn, or never kept (no .tmp)


# ------------------------------------------------------------------------ 2, 3: outputs written at the end
def _half_written(limit: int) -> Any:
    """Path.write_text that stops after ``limit`` characters with ENOSPC, as a full disk does (no file name)."""
    real = Path.write_text

    def write_text(self: Path, data: str, *a: Any, **k: Any) -> int:
        if "report.html" in self.name:
            real(self, data[:limit], *a, **k)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data, *a, **k)

    return write_text


def test_a_report_that_cannot_be_written_is_a_warning_and_no_half_page(
    cli_setup: tuple[Path, list[str]], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """report.html hits a full disk after the run: the console summary is printed, a WARNING names the file,
    the status is the run's (0, not 2 "user error"), and no partial report.html (nor its temporary) is left."""
    d, frames = cli_setup
    out = d / "out"
    monkeypatch.setattr(Path, "write_text", _half_written(16_384))
    assert main(["run", "--mission", str(d / "m.toml"), "--frames", *frames, "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert "mission storage: 3 frames acquired: 3 downlinked" in printed.out
    assert f"WARNING: {out / 'report.html'} was not written" in printed.err and "No space left" in printed.err
    assert f"firmware-sim report {out} writes it again" in printed.err
    assert not [p.name for p in out.iterdir() if "report.html" in p.name]
    assert json.loads((out / "summary.json").read_text())["frames"]["downlinked"] == 3
    monkeypatch.undo()
    assert main(["report", str(out)]) == 0
    good = (out / "report.html").read_text()
    assert good.rstrip().endswith("</html>")
    monkeypatch.setattr(Path, "write_text", _half_written(100))
    assert main(["report", str(out)]) == 2  # the report command itself failed: its error names the file
    assert "cannot write" in capsys.readouterr().err and (out / "report.html").read_text() == good


def test_a_summary_that_cannot_be_written_is_a_warning_and_no_end_line(
    cli_setup: tuple[Path, list[str]], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """summary.json refused at the end: the run's status (0), the console summary, a WARNING naming the file;
    telemetry has no "end" line (the boot wrote no summary), so a report rebuilds from telemetry and the index."""
    d, frames = cli_setup
    out = d / "out"

    def refuse(path: Any, summary: Any) -> None:
        raise OSError(errno.ENOSPC, f"cannot write {path}: No space left on device")

    monkeypatch.setattr("edgeae.firmware_sim.run_finish.write_summary", refuse)
    assert main(["run", "--mission", str(d / "m.toml"), "--frames", *frames, "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert "3 frames acquired: 3 downlinked" in printed.out and "wrote " + f"{out}/telemetry.jsonl" in printed.out
    assert f"WARNING: {out / 'summary.json'} was not written" in printed.err
    assert not (out / "summary.json").exists() and (out / "report.html").is_file()
    lines = _lines(out)
    assert "end" not in [x["type"] for x in lines]
    assert [e["file"] for e in _events(out, "output_not_written")] == [str(out / "summary.json")]


def test_a_queue_index_that_cannot_be_saved_stops_the_run_with_status_4_and_a_rerun_goes_on(
    cli_setup: tuple[Path, list[str]], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The queue index refused while frame 1 is taken in: the loop cannot go on (status 4, not 2), the error
    names the file, the frames so far are summarised on the console, frame 1 is ``interrupted`` (not dropped
    for good) and the same command, once there is room, takes it and frame 2."""
    d, frames = cli_setup
    out = d / "out"
    real = DownlinkQueue.save
    full = {"on": False}

    def save(self: DownlinkQueue) -> None:
        if full["on"]:
            raise OSError(errno.ENOSPC, f"cannot write {self.root / 'index.json'}: No space left on device")
        if self.state["frames"].get("1", {}).get("status") == "in_progress":
            full["on"] = True
            raise OSError(errno.ENOSPC, f"cannot write {self.root / 'index.json'}: No space left on device")
        real(self)

    monkeypatch.setattr(DownlinkQueue, "save", save)
    args = ["run", "--mission", str(d / "m.toml"), "--frames", *frames, "--out", str(out)]
    assert main(args) == EXIT_STORAGE
    printed = capsys.readouterr()
    assert "stopped after 1 frame(s) of this run" in printed.err and str(out / "queue" / "index.json") in printed.err
    assert "error:" not in printed.err and "2 frames acquired: 1 downlinked, 0 queued, 1 dropped (interrupted" in (
        printed.out
    )
    monkeypatch.setattr(DownlinkQueue, "save", real)
    assert main(args) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["frames"]["acquired"] == 3 and s["frames"]["downlinked"] == 3


# ------------------------------------------------------------------------ 4: SIGTERM
def test_sigterm_stops_a_run_as_ctrl_c_does(
    cli_setup: tuple[Path, list[str]], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """SIGTERM during frame 1: status 130, the summary and report of the frames so far, the frame marked
    interrupted and taken again by the same command (it was killed and the frame dropped for good); the
    handler that was there before is back after the run."""
    d, frames = cli_setup
    out = d / "out"
    real = FlightRuntime._queue_products

    def terminated(self: FlightRuntime, work: Any, rec: dict[str, Any]) -> dict[str, int]:
        queued = real(self, work, rec)
        if rec["frame_id"] == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return queued

    class NotHandled(Exception):
        pass

    def guard(signum: int, frame: Any) -> None:  # without the CLI's handler, SIGTERM would end pytest
        raise NotHandled("SIGTERM reached the handler that was there before firmware-sim run")

    before = signal.signal(signal.SIGTERM, guard)
    try:
        monkeypatch.setattr(FlightRuntime, "_queue_products", terminated)
        args = ["run", "--mission", str(d / "m.toml"), "--frames", *frames, "--out", str(out)]
        assert main(args) == EXIT_INTERRUPTED
        assert signal.getsignal(signal.SIGTERM) is guard
    finally:
        signal.signal(signal.SIGTERM, before)
    printed = capsys.readouterr()
    assert "interrupted by SIGTERM after 1 frame(s)" in printed.err and (out / "report.html").is_file()
    s = json.loads((out / "summary.json").read_text())
    assert {e["frame_id"]: e["code"] for e in s["ledger"]}[1] == "interrupted"
    monkeypatch.setattr(FlightRuntime, "_queue_products", real)
    assert main(args) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["frames"]["acquired"] == 3 and s["frames"]["downlinked"] == 3


# ------------------------------------------------------------------------ review r1: the index, telemetry, finish
def _index_full_once(when: Any) -> tuple[dict[str, bool], Any]:
    """queue.atomic_write refusing index.json (ENOSPC, as the atomic writer names it) from the first index whose
    content ``when`` accepts on; the flag turns it off."""
    real = queue_mod.atomic_write
    full = {"on": False}

    def write(path: Path, data: bytes) -> None:
        if path.name == "index.json" and (full["on"] or when(json.loads(data))):
            full["on"] = True
            raise OSError(errno.ENOSPC, f"cannot write {path}: No space left on device")
        real(path, data)

    return full, write


def test_an_index_save_that_fails_after_the_products_are_queued_keeps_the_frame_for_a_rerun(
    cli_setup: tuple[Path, list[str]], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The index refused when it would record frame 1 processed (its products queued): not a frame_error (its
    products were withdrawn and a frame line written for a frame the rerun then dropped for good as
    reboot_during_processing); the frame is interrupted, its event in telemetry, so the report of the folder and
    the same command, once there is room, take it again."""
    from edgeae.firmware_sim.telemetry import rebuild_summary

    d, frames = cli_setup
    out = d / "out"
    _, write = _index_full_once(lambda doc: doc["state"]["frames"].get("1", {}).get("status") == "processed")
    monkeypatch.setattr(queue_mod, "atomic_write", write)
    args = ["run", "--mission", str(d / "m.toml"), "--frames", *frames, "--out", str(out)]
    assert main(args) == EXIT_STORAGE
    printed = capsys.readouterr()
    assert "stopped after 1 frame(s) of this run: [Errno 28] cannot write " + str(out / "queue" / "index.json") in (
        printed.err
    )
    assert f"WARNING: {out / 'queue' / 'index.json'} was not written" in printed.err
    assert "2 frames acquired: 1 downlinked, 0 queued, 1 dropped (interrupted x1)" in printed.out
    assert not _events(out, "frame_error") and [x["frame_id"] for x in _lines(out) if x["type"] == "frame"] == [0]
    [stop] = _events(out, "interrupted")
    assert stop["frame_id"] == 1 and "index.json" in stop["error"]
    assert {e["reason"] for e in _events(out, "evicted")} == {"frame_interrupted"}
    on_disk = json.loads((out / "queue" / "index.json").read_text())["state"]["frames"]
    assert on_disk["1"]["status"] == "in_progress"  # the mark is in telemetry only
    rebuilt, _ = rebuild_summary(out)
    assert {e["frame_id"]: e["code"] for e in rebuilt["ledger"]}[1] == "interrupted"
    monkeypatch.undo()
    assert main(args) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["frames"]["acquired"] == 3 and s["frames"]["downlinked"] == 3, s["ledger"]
    retried = [x for x in _lines(out) if x["type"] == "frame" and x["frame_id"] == 1]
    assert len(retried) == 1 and "retried_after_interrupt" in retried[0]["flags"]


def test_a_frame_in_progress_is_taken_again_only_when_the_last_boot_marked_it(tmp_path: Path) -> None:
    """At boot an ``in_progress`` frame is retried when the last boot's telemetry marked it interrupted (its
    index could not be saved), or its recovery line carried it on; one a power loss stopped (no mark in the last
    boot, whatever earlier boots said) stays reboot_during_processing."""
    from edgeae.firmware_sim.telemetry import frame_outcomes, retake_unsaved

    q = DownlinkQueue(tmp_path / "queue", 1 << 20)
    q.state["frames"] = {str(i): {"source": f"f{i}", "status": "in_progress", "reason": ""} for i in range(4)}
    lines = [
        {"type": "start", "resumed": False},
        {"type": "event", "kind": "interrupted", "frame_id": 0, "error": "index.json"},  # an earlier boot
        {"type": "start", "resumed": True},
        {"type": "recovery", "interrupted_unsaved": [2]},
        {"type": "event", "kind": "interrupted", "frame_id": 1, "error": "index.json"},
    ]
    (tmp_path / "telemetry.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert retake_unsaved(q, tmp_path / "telemetry.jsonl") == [1, 2]
    codes = {k: o.code for k, o in frame_outcomes(q).items()}
    assert codes == {0: "reboot_during_processing", 1: "interrupted", 2: "interrupted", 3: "reboot_during_processing"}


def test_a_boot_that_cannot_save_the_retaken_frame_carries_it_to_the_next_boot(
    tmp_path: Path, models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Frame 1 stopped with the index unsaved; the next boot still cannot save it (the disk still full) and is
    stopped before it reaches the frame: its recovery line names the frame, so the boot after takes it again."""
    mission = small_mission(models, reconstruction={"mode": "off"})
    out = tmp_path / "out"
    frames = _frames(tmp_path, 3)
    _, write = _index_full_once(lambda doc: doc["state"]["frames"].get("1", {}).get("status") == "processed")
    monkeypatch.setattr(queue_mod, "atomic_write", write)
    with pytest.raises(loop_mod.StorageFailed):
        FlightRuntime(mission, out).run(frames)
    FlightRuntime(mission, out).finish()  # a boot that writes nothing but its start and recovery lines
    [recovery] = [x for x in _lines(out) if x["type"] == "recovery"]
    assert recovery["interrupted_unsaved"] == [1]
    monkeypatch.undo()
    s = FlightRuntime(mission, out).run(frames)
    assert s["frames"]["acquired"] == 3 and s["frames"]["downlinked"] == 3, s["ledger"]


def test_a_full_disk_at_the_end_of_a_run_keeps_its_status_and_names_the_files(
    cli_setup: tuple[Path, list[str]], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """summary.json refused, then every telemetry line (output_not_written, end): the run's own status (0, not 2
    with a bare "[Errno 28]"), the console summary, a WARNING naming each file."""
    from edgeae.firmware_sim.telemetry import TelemetryWriter

    d, frames = cli_setup
    out = d / "out"
    full = {"on": False}
    real = TelemetryWriter.write

    def refuse(path: Any, summary: Any) -> None:
        full["on"] = True
        raise OSError(errno.ENOSPC, f"cannot write {path}: No space left on device")

    def tm_write(self: TelemetryWriter, *a: Any, **k: Any) -> dict[str, Any]:
        if full["on"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, *a, **k)

    monkeypatch.setattr("edgeae.firmware_sim.run_finish.write_summary", refuse)
    monkeypatch.setattr(TelemetryWriter, "write", tm_write)
    assert main(["run", "--mission", str(d / "m.toml"), "--frames", *frames, "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert "3 frames acquired: 3 downlinked" in printed.out and "error:" not in printed.err
    assert f"WARNING: {out / 'summary.json'} was not written" in printed.err
    assert f"WARNING: {out / 'telemetry.jsonl'} was not written: [Errno 28] No space left on device" in printed.err


def test_a_stop_where_telemetry_and_the_index_both_fail_still_summarises(
    tmp_path: Path, models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C during frame 1 on a disk that refuses telemetry and the index: RunInterrupted (not a bare OSError
    from the stop, which lost the summary), the summary of the frames so far from memory naming both files."""
    from edgeae.firmware_sim.telemetry import TelemetryWriter

    full = {"on": False}
    real_write, real_products = TelemetryWriter.write, FlightRuntime._queue_products

    def tm_write(self: TelemetryWriter, *a: Any, **k: Any) -> dict[str, Any]:
        if full["on"]:
            raise OSError(errno.ENOSPC, f"cannot write {self.path}: No space left on device")
        return real_write(self, *a, **k)

    def stop(self: FlightRuntime, work: Any, rec: dict[str, Any]) -> dict[str, int]:
        queued = real_products(self, work, rec)
        if rec["frame_id"] == 1:
            full["on"] = True
            raise KeyboardInterrupt
        return queued

    _, index = _index_full_once(lambda doc: full["on"])
    monkeypatch.setattr(queue_mod, "atomic_write", index)
    monkeypatch.setattr(TelemetryWriter, "write", tm_write)
    monkeypatch.setattr(FlightRuntime, "_queue_products", stop)
    out = tmp_path / "out"
    with pytest.raises(loop_mod.RunInterrupted) as stopped:
        FlightRuntime(small_mission(models, reconstruction={"mode": "off"}), out).run(_frames(tmp_path, 3))
    s = stopped.value.summary
    assert set(s["not_written"]) == {str(out / "telemetry.jsonl"), str(out / "queue" / "index.json")}
    assert {e["frame_id"]: e["code"] for e in s["ledger"]} == {0: "", 1: "interrupted"}
    assert json.loads((out / "summary.json").read_text())["not_written"] == s["not_written"]  # it had room


def test_a_telemetry_line_a_full_disk_cuts_short_names_the_file_and_stays_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A line refused part-way (ENOSPC after 10 bytes): the error names telemetry.jsonl and keeps its errno; the
    next line starts on a line of its own (read back; the torn one skipped), also in a writer opened after."""
    from edgeae.firmware_sim.telemetry import TelemetryNotWritten, TelemetryWriter, read_lines

    path = tmp_path / "telemetry.jsonl"
    w = TelemetryWriter(path)
    w.write("start", n=0)
    real = w._f
    assert real is not None

    class Full:
        def write(self, data: Any) -> int:
            real.write(bytes(data[:10]))
            raise OSError(errno.ENOSPC, "No space left on device")

        def fileno(self) -> int:
            return real.fileno()

    monkeypatch.setattr(w, "_f", Full())
    with pytest.raises(TelemetryNotWritten) as refused:
        w.write("event", kind="lost")
    assert refused.value.errno == errno.ENOSPC and str(path) in str(refused.value) and refused.value.path == str(path)
    monkeypatch.setattr(w, "_f", real)
    w.write("event", kind="after")
    w.close()
    with path.open("a") as f:
        f.write('{"type":"ev')  # a line a crash cut short before the next boot
    w2 = TelemetryWriter(path)
    w2.write("start", n=1)
    w2.close()
    assert [(x["type"], x.get("kind", x.get("n"))) for x in read_lines(path)] == [
        ("start", 0),
        ("event", "after"),
        ("start", 1),
    ]


def test_a_boot_that_cannot_write_its_state_exits_4_not_2(
    cli_setup: tuple[Path, list[str]], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A rerun on a disk still full stopped at the boot's start line with exit 2, "user error" (review r4)."""
    from edgeae.firmware_sim import telemetry

    def full(self: Any, *a: Any, **k: Any) -> Any:
        raise telemetry.TelemetryNotWritten(self.path, OSError(errno.ENOSPC, "No space left on device"))

    d, frames = cli_setup
    monkeypatch.setattr(telemetry.TelemetryWriter, "write", full)
    rc = main(["run", "--mission", str(d / "m.toml"), "--frames", *frames, "--out", str(d / "o")])
    err = capsys.readouterr().err
    assert rc == EXIT_STORAGE and "telemetry.jsonl" in err and "error:" not in err, err


def test_a_mission_state_that_cannot_be_written_at_boot_exits_4(
    cli_setup: tuple[Path, list[str]], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """mission.json needs a new block on a full disk where the telemetry start line still fits: it exited 2 (r6)."""
    d, frames = cli_setup
    real = queue_mod.atomic_write

    def refuse_mission_json(path: Path, data: bytes) -> None:
        if path.name == "mission.json":
            raise OSError(errno.ENOSPC, f"cannot write {path}: No space left on device")
        real(path, data)

    monkeypatch.setattr(queue_mod, "atomic_write", refuse_mission_json)
    rc = main(["run", "--mission", str(d / "m.toml"), "--frames", *frames, "--out", str(d / "o")])
    err = capsys.readouterr().err
    assert rc == EXIT_STORAGE and "mission.json" in err and "error:" not in err, err


def test_a_frame_line_written_again_by_a_stop_counts_once(models: dict[str, Path], tmp_path: Path) -> None:
    """write_record appended the record again when a stop path rewrote a refused frame line: summary counted 3."""
    from edgeae.firmware_sim.frame_outcome import write_record

    rt = FlightRuntime(small_mission(models, patch=P), tmp_path / "o")
    rec: dict[str, Any] = {"frame_id": 0}
    write_record(rt, rec)
    write_record(rt, rec)
    assert rt.records == [rec]
    rt.close()
