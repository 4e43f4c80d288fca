"""Session-36 fixer i3 in the flight runtime (review s36 r10 #3, #5, #7, #8): a frame dropped memory_unavailable and
taken again stayed counted (every attempt an acquired frame and a drop); the "taken again" line named the oldest
drop and called a repeat within one run a retake; a rebuilt summary had no machine; the docs said telemetry
writes names through printable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _helpers_firmware import runs_refused_by_memory, save_frames

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "firmware_sim.md"


# ------------------------------------------------------------ r10 #3: a retaken frame's earlier drop superseded
def _runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, refused: list[bool]) -> list[tuple[dict[str, Any], Any]]:
    """Runs of the same command on two frames into one folder, each under a room refusal or not."""
    return runs_refused_by_memory(tmp_path, monkeypatch, save_frames(tmp_path, 2), refused)


def test_a_frame_taken_again_is_counted_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two camera frames, refused twice by the board's memory then downlinked, were '6 frames acquired:
    2 downlinked, 4 dropped (memory_unavailable x4)'."""
    from edgeae.firmware_sim.cli_advice import retaken_lines
    from edgeae.firmware_sim.telemetry import read_history

    (s1, _), (s2, rt2), (s3, rt3) = _runs(tmp_path, monkeypatch, [True, True, False])
    assert (s1["frames"]["acquired"], s1["frames"]["dropped"]) == (2, 2)
    assert (s2["frames"]["acquired"], s2["frames"]["dropped"], s2["frames"]["retaken"]) == (2, 2, 2)
    f = s3["frames"]
    assert (f["acquired"], f["downlinked"], f["dropped"], f["retaken"], f["accounted"]) == (2, 2, 0, 4, True)
    assert f["drop_reasons"] == {}
    ledger = {e["frame_id"]: e for e in s3["ledger"]}
    assert [ledger[i].get("retaken_as") for i in range(6)] == [2, 3, 4, 5, None, None]
    assert ledger[0]["outcome"] == "retaken" and ledger[0]["code"] == "memory_unavailable"
    # the pairing: the most recent drop of the source, not the oldest
    assert retaken_lines(s3, rt3.records) == [
        f"  frame 4 taken again: the board's memory could not hold it (frame 2, dropped memory_unavailable): "
        f"{tmp_path / 'f0.npy'}",
        f"  frame 5 taken again: the board's memory could not hold it (frame 3, dropped memory_unavailable): "
        f"{tmp_path / 'f1.npy'}",
    ]
    assert retaken_lines(s2, rt2.records)[0].startswith(
        "  frame 2 taken again: the board's memory could not hold it (frame 0,"
    )
    # the history stays in telemetry: every attempt's frame line, and an event per retake
    h = read_history(tmp_path / "out" / "telemetry.jsonl")
    assert sorted(h.frames) == list(range(6))
    assert [(e["frame_id"], e["retakes"]) for e in h.events if e.get("kind") == "frame_retaken"] == [
        (2, 0), (3, 1), (4, 2), (5, 3)
    ]  # fmt: skip


def test_a_source_given_twice_in_one_run_is_no_retake(tmp_path: Path) -> None:
    """``--frames f0 f0`` in one run, the first dropped memory_unavailable and the second processed: the second was
    said 'frame 1 taken again ... (frame 0, ...)'."""
    from edgeae.firmware_sim.cli_advice import retaken_lines

    src = str(tmp_path / "f0.npy")
    drop = {"source": src, "outcome": "dropped", "code": "memory_unavailable", "reason": "memory_unavailable: x"}
    summary = {"ledger": [{**drop, "frame_id": 0}, {"frame_id": 1, "source": src, "outcome": "downlinked"}]}
    assert retaken_lines(summary, [{"frame_id": 0}, {"frame_id": 1}]) == []
    # an older run's ledger without retaken_as: the most recent drop not taken again since is named
    summary = {"ledger": [{**drop, "frame_id": 0}, {**drop, "frame_id": 2}, {"frame_id": 4, "source": src}]}
    assert retaken_lines(summary, [{"frame_id": 4}]) == [
        f"  frame 4 taken again: the board's memory could not hold it (frame 2, dropped memory_unavailable): {src}"
    ]


def test_retake_candidates_skip_drops_taken_again(tmp_path: Path) -> None:
    from edgeae.firmware_sim.state import retake_candidates, take_retake

    src = str(tmp_path / "f0.npy")
    mem = {"source": src, "status": "dropped", "reason": "memory_unavailable: x", "code": "memory_unavailable"}
    ledger = {"0": {**mem, "retaken_as": 2}, "1": mem, "2": mem, "3": {"source": src, "status": "processed"}, "4": mem}
    c = retake_candidates(ledger)
    assert take_retake(c, src) == 4 and take_retake(c, src) is None  # 1 was taken again by 2, 2 by 3


def test_the_docs_say_a_retaken_frame_is_counted_once() -> None:
    text = " ".join(DOCS.read_text().split())
    assert "counted once: its earlier entry is marked `retaken_as`" in text


# ------------------------------------------------------------ r10 #7, #8
def test_a_rebuilt_summary_names_the_last_boots_machine(tmp_path: Path) -> None:
    """``firmware-sim report`` on an incomplete run rebuilt a summary with no ``machine``, though every start line
    carries it; frames taken again (``frame_retaken`` events) are not counted when the index is gone."""
    import json

    from edgeae.firmware_sim.telemetry import rebuild_summary

    lines = [
        {"type": "start", "resumed": False, "machine": {"cpu": "old"}},
        {"type": "frame", "frame_id": 0, "status": "dropped", "reason": "memory_unavailable", "source": "f0"},
        {"type": "start", "resumed": True, "machine": {"cpu": "new", "cores": 2}},
        {"type": "event", "kind": "frame_retaken", "frame_id": 1, "retakes": 0},
        {"type": "frame", "frame_id": 1, "status": "dropped", "reason": "unreadable", "source": "f0"},
    ]
    (tmp_path / "telemetry.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    s, _ = rebuild_summary(tmp_path)
    assert s["machine"] == {"cpu": "new", "cores": 2}
    assert (s["frames"]["acquired"], s["frames"]["drop_reasons"]) == (1, {"unreadable": 1})


def test_the_docs_say_telemetry_keeps_names_as_escapes_not_printable() -> None:
    text = " ".join(DOCS.read_text().split())
    assert "written as `\\xff` on the console and the report; telemetry keeps them as JSON `\\udcff` escapes" in text
    assert "the console, the report and telemetry" not in text
