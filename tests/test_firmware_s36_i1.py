"""Session-36 fixer i1 in the flight runtime: the docs name every module of edgeae the flight imports (commit
1ea7db8 added ``edgeae.printable`` to the test's list and not to docs/firmware_sim.md), ..."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "firmware_sim.md"


def _section(text: str, title: str) -> str:
    return text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_the_docs_name_every_module_of_edgeae_the_flight_may_import() -> None:
    """``tests/test_firmware_cli.py`` fails on any module of edgeae the flight imports outside its list; the docs'
    list of what a board copy needs beside ``firmware_sim/`` must hold the same modules."""
    block = (ROOT / "tests" / "test_firmware_cli.py").read_text().split("FLIGHT_IMPORTS_FROM_EDGEAE = {", 1)[1]
    allowed = set(re.findall(r'"(edgeae\.[a-z_.]+)"', block.split("\n}\n", 1)[0]))
    assert "edgeae.printable" in allowed
    section = " ".join(_section(DOCS.read_text(), "What the flight runtime imports").split())
    missing = sorted(m for m in allowed if f"`{m}`" not in section and f"`{m}." not in section)
    assert missing == [], missing


# ------------------------------------------------------------ fixer g3's leftovers
def test_a_frame_dropped_memory_unavailable_is_taken_again(tmp_path: Path) -> None:
    """A frame dropped because the board's memory could not hold it (``memory_unavailable``, not the budget) was
    skipped for good as already acquired: the same command run again, with more memory, never took it."""
    from edgeae.firmware_sim.state import frames_to_take

    f = tmp_path / "f0.npy"
    f.write_bytes(b"x")
    ledger = {
        "0": {"source": str(f), "status": "dropped", "reason": "memory_unavailable: ...", "code": "memory_unavailable"},
        "1": {"source": str(f), "status": "dropped", "reason": "memory_budget: ...", "code": "memory_budget"},
    }
    skipped: list[str] = []
    assert list(frames_to_take(ledger, [f, f], skipped.append)) == [(f, None)]  # the budget's drop stays
    assert skipped == [str(f)]


def test_the_console_has_a_hint_for_frames_dropped_memory_unavailable() -> None:
    from edgeae.firmware_sim.cli_outputs import DROP_HINTS

    assert "memory_unavailable" in DROP_HINTS and "more memory" in DROP_HINTS["memory_unavailable"]
    assert "memory_bytes" not in DROP_HINTS["memory_unavailable"]  # raising the budget would not help


def test_the_timeline_draws_the_no_data_mask_as_its_own_stage() -> None:
    """``timing_ms.nodata`` (26b0dc6) was drawn as 'other': the chart's stages did not name it."""
    from edgeae.firmware_sim.report_charts import STAGE_COLOURS, STAGES

    assert "nodata" in STAGES and STAGES.index("nodata") == STAGES.index("sample") + 1 and "nodata" in STAGE_COLOURS


class _Room:
    bytes = 64 * 2**20
    source = "rlimit_as"
    text = "64.0 MiB (RLIMIT_AS)"


def test_check_does_not_say_fits_at_nominal_when_the_board_gives_less(monkeypatch: pytest.MonkeyPatch) -> None:
    """``firmware-sim check`` printed 'fits at nominal' against the budget under a WARNING that this process can
    get less than a frame needs: the level it names is now that of the smaller of the budget and the room."""
    from types import SimpleNamespace

    from edgeae.firmware_sim import cli_advice, frame_intake, memory_room
    from edgeae.firmware_sim.budget import MemoryPlan

    mib = 2**20
    plan = MemoryPlan((("frame_f32", 60 * mib), ("patch_batch_f32", 30 * mib), ("sparse_values_strip", mib)))
    rt = SimpleNamespace(m=SimpleNamespace(budget=SimpleNamespace(memory_bytes=1024 * mib)))
    monkeypatch.setattr(memory_room, "room_cap", lambda m, held: None)
    monkeypatch.setattr(frame_intake, "biggest_buffers", lambda m, plan, n: "frame_f32 60 MiB")
    assert cli_advice._memory_level_lines(rt, plan, 10 * mib) == [
        "  held + buffers: 104.5 MiB (with 3.5 MiB the loop's heap grows by over the first frames): fits at nominal"
    ]
    monkeypatch.setattr(memory_room, "room_cap", lambda m, held: (held + 80 * mib, _Room()))
    [line] = cli_advice._memory_level_lines(rt, plan, 10 * mib)
    assert "fits at nominal" not in line and "does not fit at nominal" in line, line
    assert "this process can get only 64.0 MiB (RLIMIT_AS) more" in line and "memory_bytes" not in line, line
    monkeypatch.setattr(memory_room, "room_cap", lambda m, held: (held + 10 * mib, _Room()))
    [line] = cli_advice._memory_level_lines(rt, plan, 10 * mib)
    assert line.startswith("WARNING:") and "(memory_unavailable)" in line and "more memory" in line, line


def test_the_console_names_a_frame_taken_again_after_a_memory_unavailable_drop() -> None:
    from edgeae.firmware_sim.cli_advice import retaken_lines

    ledger = [
        {"frame_id": 0, "source": "/d/f0.png", "outcome": "dropped", "code": "memory_unavailable"},
        {"frame_id": 1, "source": "/d/f1.png", "outcome": "downlinked", "code": ""},
        {"frame_id": 2, "source": "/d/f0.png", "outcome": "downlinked", "code": ""},
    ]
    assert retaken_lines({"ledger": ledger}, [{"frame_id": 2}]) == [
        "  frame 2 taken again: the board's memory could not hold it (frame 0, dropped memory_unavailable): /d/f0.png"
    ]


def test_summary_json_records_the_machine_of_the_start_line(tmp_path: Path) -> None:
    """The start line carried the machine (26b0dc6: CPU, cores, load, versions) but summary.json did not: a summary
    read alone could not say what a frame time was measured on."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    import json

    import numpy as np
    from edgeae.firmware_sim.loop import FlightRuntime
    from edgeae.firmware_sim.testing import small_mission, textured_frame, tiny_models

    models = tiny_models(tmp_path / "models")
    np.save(tmp_path / "f0.npy", textured_frame(0))
    out = tmp_path / "out"
    summary = FlightRuntime(small_mission(models, reconstruction={"mode": "off"}), out).run([tmp_path / "f0.npy"])
    start = next(json.loads(x) for x in (out / "telemetry.jsonl").read_text().splitlines() if '"start"' in x)
    saved = json.loads((out / "summary.json").read_text())
    assert saved["machine"] == start["machine"] == summary["machine"]
    assert {"cpu", "cpus", "usable_cores", "loadavg_1min", "versions"} <= set(saved["machine"])


# ------------------------------------------------------------ fixer g4's leftovers
@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from edgeae.firmware_sim.testing import tiny_models

    return tiny_models(tmp_path_factory.mktemp("models"))


def test_scoring_buffers_no_batch_can_fit_say_to_raise_the_memory_and_by_how_much(models: dict[str, Path]) -> None:
    """The refusal advised 'lower [anomaly] batch to at most 1' when even one patch's buffers and the model files
    did not fit: it now says to raise memory_bytes to at least what they need."""
    from edgeae.firmware_sim.boot import scoring_buffers_refusal
    from edgeae.firmware_sim.testing import small_mission

    per_patch = 11_264  # 32 x 32 x 1: float32 input and weight, the raw batches in flight (46,137,344 B / 4096)
    big = models["vae"].parent / "big-i1.onnx"  # the model file (not loaded before this check: its size counts)
    big.write_bytes(bytes(2 * 2**20))
    files = big.stat().st_size
    budget = 2 * 2**20  # a patch's buffers fit, not with the model file beside them
    m = small_mission(models, camera={"height": 0, "width": 0}, anomaly={"batch": 4096, "model": str(big)},
                      reconstruction={"mode": "off"}, budget={"memory_bytes": budget})  # fmt: skip
    why = scoring_buffers_refusal(m)
    assert why is not None and "at most" not in why, why
    assert f"raise [budget] memory_bytes to at least {files + per_patch:,} B" in why, why
    assert f"one patch's scoring buffers ({per_patch:,} B) and the model files ({files:,} B)" in why, why


def test_the_loaded_memory_refusal_does_not_say_lower_threads_at_one_thread(models: dict[str, Path]) -> None:
    """'raise [budget] memory_bytes ... or lower [runtime] threads' was said at one thread too (as the run's advice
    was until 5410f70): now only above one (cli_advice.fewer_threads)."""
    from types import SimpleNamespace

    from edgeae.firmware_sim.frame_intake import check_loaded_memory
    from edgeae.firmware_sim.mission import MissionError
    from edgeae.firmware_sim.testing import small_mission

    for threads, told in ((1, False), (2, True)):
        m = small_mission(models, reconstruction={"mode": "off"}, runtime={"threads": threads},
                          camera={"height": 0, "width": 0}, budget={"memory_bytes": 2**20})  # fmt: skip
        tm = SimpleNamespace(write=lambda *a, **k: None)
        rt = SimpleNamespace(m=m, rss_loaded=16 * 2**20, rss_boot=0, _model_bytes=lambda: 0, tm=tm)
        with pytest.raises(MissionError) as err:
            check_loaded_memory(rt)  # type: ignore[arg-type]
        assert "raise [budget] memory_bytes to at least 20 MiB" in str(err.value)  # 16 + 3.5 + buffers
        assert ("lower [runtime] threads (now 2)" in str(err.value)) == told, str(err.value)


def test_firmware_sim_report_prints_a_non_utf8_folder_name_on_a_strict_console(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``firmware-sim report`` printed the page's path with plain print: a folder whose name is not UTF-8 stopped
    it with UnicodeEncodeError on a strict UTF-8 console after the page was written; it is now printed as \\xff
    (cli_outputs.say)."""
    import argparse
    import io
    import os

    from edgeae.firmware_sim.cli_commands import _report

    out = tmp_path / os.fsdecode(b"run\xff")
    out.mkdir()
    (out / "summary.json").write_text('{"mission": "m", "frames": {"acquired": 0}}')
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict", write_through=True)
    monkeypatch.setattr("sys.stdout", stdout)
    assert _report(argparse.Namespace(out=str(out))) == 0
    text = stdout.buffer.getvalue().decode()  # type: ignore[attr-defined]
    assert "run\\xff/report.html" in text and (out / "report.html").is_file()
