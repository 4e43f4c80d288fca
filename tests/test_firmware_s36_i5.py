"""Session-36 fixer i5 in the flight runtime (review s36 r16 #1, #5, #6): one run given the same source twice, both
refused by memory, left one drop counted for good (the second frame of that run was taken for a retake of the
first); a damaged ``retaken_as`` in the queue index was not checked at load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _helpers_firmware import runs_refused_by_memory, save_frames

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "firmware_sim.md"


def _runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, refused: list[bool]) -> list[tuple[dict[str, Any], Any]]:
    """Runs of ``--frames f0 f0`` into one folder, each under a room refusal or not."""
    return runs_refused_by_memory(tmp_path, monkeypatch, save_frames(tmp_path, 1) * 2, refused)


def test_one_source_given_twice_refused_then_fitting_counts_two_frames(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """run1 f0 f0 refused, run2 f0 f0 fits: it said '3 frames acquired: 2 downlinked, 1 dropped' for good, and
    named one retake."""
    from edgeae.firmware_sim.cli_advice import retaken_lines

    (s1, _), (s2, rt2), (s3, _) = _runs(tmp_path, monkeypatch, [True, False, False])
    assert (s1["frames"]["acquired"], s1["frames"]["dropped"]) == (2, 2)
    for s in (s2, s3):
        f = s["frames"]
        assert (f["acquired"], f["downlinked"], f["dropped"], f.get("retaken"), f["accounted"]) == (2, 2, 0, 2, True)
    ledger = {e["frame_id"]: e for e in s2["ledger"]}
    assert [ledger[i].get("retaken_as") for i in range(4)] == [3, 2, None, None]  # most recent first
    src = tmp_path / "f0.npy"
    assert retaken_lines(s2, rt2.records) == [
        f"  frame 2 taken again: the board's memory could not hold it (frame 1, dropped memory_unavailable): {src}",
        f"  frame 3 taken again: the board's memory could not hold it (frame 0, dropped memory_unavailable): {src}",
    ]


def test_retake_candidates_pair_entries_of_earlier_boots_only(tmp_path: Path) -> None:
    from edgeae.firmware_sim.state import retake_candidates, take_retake

    src = str(tmp_path / "f0.npy")
    mem = {"source": src, "status": "dropped", "reason": "memory_unavailable: x", "code": "memory_unavailable"}
    # one boot's two frames of one source, both refused: both wait for a retake
    c = retake_candidates({"0": {**mem, "boot": 1}, "1": {**mem, "boot": 1}})
    assert take_retake(c, src) == 1 and take_retake(c, src) == 0 and take_retake(c, src) is None
    # a later boot's frame of the source that took none again (a retried interrupted frame) takes none away
    c = retake_candidates({"0": {**mem, "boot": 1}, "1": {"source": src, "status": "processed", "boot": 2}})
    assert take_retake(c, src) == 0


def test_missing_files_given_twice_are_two_retakes_in_the_console() -> None:
    """Two frames of one source dropped because the file did not exist, in one boot; both taken again by the next."""
    from edgeae.firmware_sim.cli_advice import retaken_lines

    src = "/nowhere/f0.png"
    gone = {"source": src, "outcome": "dropped", "code": "unreadable", "reason": f"unreadable: {src} does not exist"}
    summary = {
        "ledger": [
            {**gone, "frame_id": 0, "boot": 1},
            {**gone, "frame_id": 1, "boot": 1},
            {"frame_id": 2, "source": src, "outcome": "downlinked", "boot": 2},
            {"frame_id": 3, "source": src, "outcome": "downlinked", "boot": 2},
        ]
    }
    lines = retaken_lines(summary, [{"frame_id": 2}, {"frame_id": 3}])
    assert [line.split(" (frame ")[1][:1] for line in lines] == ["1", "0"]


def _index(tmp_path: Path, frames: dict[str, Any]) -> Path:
    import json

    from edgeae.firmware_sim.queue import DownlinkQueue

    q = DownlinkQueue(tmp_path / "queue", 1 << 20)
    q.state["frames"].update(frames)
    q.state["next_frame_id"] = len(frames)
    q.save()
    doc = json.loads((tmp_path / "queue" / "index.json").read_text())
    assert doc["state"]["frames"] == frames
    return tmp_path / "queue"


@pytest.mark.parametrize("bad", ["1", 0, 5, 2, True])
def test_a_damaged_retaken_as_refuses_the_index(tmp_path: Path, bad: Any) -> None:
    """'1' (a string), 0 (its own id), 5 (no such frame), 2 (another source's frame), True: each turned a drop
    into 'retaken' and out of the counts unchecked."""
    from edgeae.firmware_sim.queue import DownlinkQueue

    mem = {"source": "/a/f0.npy", "status": "dropped", "reason": "memory_unavailable: x", "code": "memory_unavailable"}
    frames = {
        "0": {**mem, "retaken_as": bad},
        "1": {"source": "/a/f0.npy", "status": "processed", "reason": ""},
        "2": {"source": "/a/f1.npy", "status": "processed", "reason": ""},
    }
    root = _index(tmp_path, frames)
    with pytest.raises(ValueError, match=r"queue index unreadable \(frame 0 of the ledger: retaken_as"):
        DownlinkQueue(root, 1 << 20)


def test_a_sound_retaken_as_and_boot_load(tmp_path: Path) -> None:
    from edgeae.firmware_sim.queue import DownlinkQueue

    mem = {"source": "/a/f0.npy", "status": "dropped", "reason": "memory_unavailable: x", "code": "memory_unavailable"}
    frames = {"0": {**mem, "boot": 1, "retaken_as": 1}, "1": {"source": "/a/f0.npy", "status": "processed", "boot": 2}}
    q = DownlinkQueue(_index(tmp_path, frames), 1 << 20)
    assert q.state["frames"]["0"]["retaken_as"] == 1


# ------------------------------------------------------------ fixer i4's note: no pruning without the folder held
def test_a_run_that_cannot_lock_its_folder_prunes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a file system that cannot lock (``hold`` gives None) the run's report still removed report_img/'s
    temporary files, which a report writing beside it may own."""
    from contextlib import nullcontext

    import edgeae.firmware_sim.cli as cli
    import edgeae.firmware_sim.loop as loop
    from test_firmware_state_s32 import MISSION, P

    pytest.importorskip("onnxruntime")
    from edgeae.firmware_sim.testing import textured_frame, tiny_vae_onnx

    (tmp_path / "m.toml").write_text(MISSION.format(model=tiny_vae_onnx(tmp_path / "vae.onnx", 1, P)))
    np.save(tmp_path / "f0.npy", textured_frame(0))
    seen: list[bool] = []
    real = cli._write_outputs

    def probe(*args: Any, prune: bool = True, **kwargs: Any) -> dict[str, str]:
        seen.append(prune)
        return real(*args, prune=prune, **kwargs)

    monkeypatch.setattr(cli, "_write_outputs", probe)
    monkeypatch.setattr(loop, "hold", lambda *a, **k: nullcontext(None))
    out = tmp_path / "out"
    (out / "report_img").mkdir(parents=True)
    temp = out / "report_img" / ".anomaly_f0_x0_y0.png.tmp-1"
    temp.write_bytes(b"another writer's")
    assert (
        cli.main(
            ["run", "--mission", str(tmp_path / "m.toml"), "--frames", str(tmp_path / "f0.npy"), "--out", str(out)]
        )
        == 0
    )
    assert seen == [False] and temp.exists() and (out / "report.html").is_file()


# ------------------------------------------------------------ r16 #3: a grown item file is no product lost
def test_a_grown_item_sent_whole_is_no_product_lost_on_the_console(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every queued packet of a grown item file was sent, yet the console said 'WARNING: 1 product lost to storage
    corruption'."""
    from edgeae.firmware_sim.cli_outputs import _print_summary
    from edgeae.firmware_sim.loop import FlightRuntime

    real_pass = FlightRuntime.downlink_pass

    def grow_then_pass(self: FlightRuntime) -> None:
        for it in self.queue.pending():  # a valid packet more on flash past each queued item (a duplicated block)
            f = self.queue.items_dir / it.file
            data = f.read_bytes()
            f.write_bytes(data + data[: 7 + int.from_bytes(data[4:6], "big")])
        real_pass(self)

    monkeypatch.setattr(FlightRuntime, "downlink_pass", grow_then_pass)
    ((s, _),) = _runs(tmp_path, monkeypatch, [False])
    f, q = s["frames"], s["queue"]
    assert (f["acquired"], f["downlinked"], f["dropped"]) == (2, 2, 0)
    grown = s["storage_grown_items"]
    assert grown >= 2 and (q["evicted_items"], q["corrupted_items"]) == (0, 0)
    assert all(e["reason"] == "" for e in s["ledger"])  # no 'lost' product in a downlinked frame's reason
    capsys.readouterr()
    _print_summary(s, str(tmp_path / "out"))
    err = capsys.readouterr().err
    assert "lost to storage corruption" not in err
    assert f"WARNING: {grown} products sent whole, but their item files in " in err and "nothing lost" in err
