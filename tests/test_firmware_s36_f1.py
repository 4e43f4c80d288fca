"""Session-36 fixer f1 in the flight runtime: frames are called anomalous only when a threshold judged them so
(the console, ``summary.this_boot``), and a boot that could not save its index does not write its recovery
``evicted`` events again at the next boot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs" / "firmware_sim.md"


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from edgeae.firmware_sim.testing import tiny_models

    return tiny_models(tmp_path_factory.mktemp("models"))


def _frames(d: Path, n: int) -> list[Path]:
    from edgeae.firmware_sim.testing import textured_frame

    out = []
    for i in range(n):
        np.save(d / f"f{i}.npy", textured_frame(i))
        out.append(d / f"f{i}.npy")
    return out


def _boot(models: dict[str, Path], out: Path, threshold: float | None = None) -> Any:
    from edgeae.firmware_sim.loop import FlightRuntime
    from edgeae.firmware_sim.testing import small_mission

    anomaly = {} if threshold is None else {"threshold": threshold}
    return FlightRuntime(small_mission(models, reconstruction={"mode": "off"}, anomaly=anomaly), out)


def _lines(out: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (out / "telemetry.jsonl").read_text().splitlines() if x.strip()]


def _anomaly_lines(s: dict[str, Any]) -> list[str]:
    from edgeae.firmware_sim.cli_outputs import _anomaly_lines as lines

    return lines(s)


def _entries(ids: range, threshold: float | None) -> list[dict[str, Any]]:
    return [
        {"frame_id": i, "source": f"f{i}", "threshold": threshold, "patches": [{"x": 0, "y": 0, "score": 1.0}]}
        for i in ids
    ]


# ------------------------------------------------------------ item 1: "anomalous" only over a threshold
def test_without_a_threshold_the_console_calls_them_highest_scoring_not_anomalous() -> None:
    """A mission without a threshold sends each frame's top k by rank: the console said "frame 0: anomalous
    patches" for every frame, though no patch was judged anomalous."""
    boot = {"top_patch_frames": list(range(7)), "anomalous_frames": []}
    s = {"anomalies": _entries(range(7), None), "this_boot": boot}
    lines = _anomaly_lines(s)
    assert not any("anomalous" in x for x in lines), lines
    assert lines[0] == "  frame 0: highest-scoring patches (no threshold set) (x,y) score: (0,0) 1"
    assert lines[-1] == "  ... highest-scoring patches in 2 more frames (report.html, summary.json)"


def test_with_a_threshold_the_console_calls_them_anomalous_and_says_over_what() -> None:
    boot = {"top_patch_frames": [0, 1, 2], "anomalous_frames": [0, 1, 2]}
    s = {"anomalies": _entries(range(3), 0.5), "this_boot": boot}
    lines = _anomaly_lines(s)
    assert lines == [f"  frame {i}: anomalous patches (scores over 0.5) (x,y) score: (0,0) 1" for i in range(3)]


def test_a_boot_with_no_patch_says_none_was_chosen_not_no_anomalous_patch() -> None:
    s = {"anomalies": _entries(range(3), None), "this_boot": {"top_patch_frames": [], "anomalous_frames": []}}
    lines = _anomaly_lines(s)
    assert lines[0] == (
        "  no patch was chosen for the downlink in this boot's frames; the last 3 frames of earlier boots:"
    )


def test_an_older_summary_with_only_anomalous_frames_still_lists_them() -> None:
    """Summaries before session 36 named every frame with top patches ``anomalous_frames``."""
    s = {"anomalies": _entries(range(50), None), "this_boot": {"anomalous_frames": [48, 49]}}
    assert [x.split(":")[0] for x in _anomaly_lines(s)[:2]] == ["  frame 48", "  frame 49"]


def test_the_summary_names_anomalous_frames_only_over_a_threshold(tmp_path: Path, models: dict[str, Path]) -> None:
    """Without a threshold ``this_boot.anomalous_frames`` listed every frame with top patches; it now lists those
    a threshold judged anomalous, and ``top_patch_frames`` every frame whose highest-scoring patches were sent."""
    files = _frames(tmp_path, 2)
    s = _boot(models, tmp_path / "none").run(files)
    assert [a["threshold"] for a in s["anomalies"]] == [None, None]
    assert s["this_boot"]["top_patch_frames"] == [0, 1] and s["this_boot"]["anomalous_frames"] == []
    low = min(p["score"] for a in s["anomalies"] for p in a["patches"])
    s = _boot(models, tmp_path / "low", threshold=low - 1e-6).run(files)
    assert s["this_boot"]["anomalous_frames"] == [0, 1] and s["anomalies"][0]["threshold"] is not None
    s = _boot(models, tmp_path / "high", threshold=1e30).run(files)
    assert s["anomalies"] == [] and s["this_boot"]["anomalous_frames"] == s["this_boot"]["top_patch_frames"] == []
    text = DOCS.read_text()
    assert "`top_patch_frames`" in text and "`anomalous_frames`: the frames of this boot whose patches" in text


# ------------------------------------------------------------ item 4: recovery events written once
def test_a_boot_that_cannot_save_its_index_does_not_repeat_its_recovery_evicted_events(
    tmp_path: Path, models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An item file gone at boot is an ``evicted`` event; when that boot could not save its index (a full disk)
    the next boot loaded the same index, found the same file gone and wrote the same event again: one lost
    product counted twice in telemetry."""
    import edgeae.firmware_sim.queue as queue_mod
    from edgeae.firmware_sim.loop import FlightRuntime, StorageFailed
    from edgeae.firmware_sim.testing import small_mission

    mission = small_mission(models, reconstruction={"mode": "off"}, budget={"downlink_bytes_per_pass": 0})
    out = tmp_path / "out"
    FlightRuntime(mission, out).run(_frames(tmp_path, 1))
    index = json.loads((out / "queue" / "index.json").read_text())
    gone = next(it for it in index["items"] if it["status"] == "pending")
    (out / "queue" / "items" / f"{gone['id']:08d}.pkt").unlink()
    real = queue_mod.atomic_write

    def full(path: Path, data: bytes) -> None:
        if path.name == "index.json":
            raise OSError(28, f"cannot write {path}: No space left on device")
        real(path, data)

    monkeypatch.setattr(queue_mod, "atomic_write", full)
    with pytest.raises(StorageFailed):
        FlightRuntime(mission, out).run(_frames(tmp_path, 2))
    saved = json.loads((out / "queue" / "index.json").read_text())["items"]
    assert next(it for it in saved if it["id"] == gone["id"])["status"] == "pending"  # the index is behind
    monkeypatch.undo()
    FlightRuntime(mission, out).finish()  # takes no frame, but saves what its recovery found (session 36, g3)
    FlightRuntime(mission, out).finish()
    lines = _lines(out)
    evicted = [x for x in lines if x.get("kind") == "evicted" and x.get("item") == gone["id"]]
    assert len(evicted) == 1 and evicted[0]["reason"] == "item file missing after reboot", evicted
    # what each boot found: the one that could not save its index and the next, which saved it
    assert [x["lost"] for x in lines if x["type"] == "recovery"] == [[gone["id"]], [gone["id"]], []]
    saved = json.loads((out / "queue" / "index.json").read_text())["items"]
    assert all(it["status"] != "pending" for it in saved if it["id"] == gone["id"])


def test_the_docs_say_the_recovery_event_is_written_once() -> None:
    assert "the\n   event is written once per item" in DOCS.read_text()
