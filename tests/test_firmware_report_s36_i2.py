"""``firmware-sim report`` beside a run, and its console on a strict UTF-8 console (session 36, fixer i2; review r7
#1-#4, r8 #5): the report holds the folder before it removes gallery images, every console and error line of
firmware-sim goes through ``printable``, a rebuilt page names only the sources it had, late frames' advice."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("spacepackets")
from _helpers_firmware import one_frame_run, run_frames, save_frames, write_mission
from edgeae.firmware_sim.cli import main
from edgeae.firmware_sim.report import write_report

from edgeae.folder_lock import hold


@pytest.fixture
def run_folder(tmp_path: Path) -> Path:
    return one_frame_run(tmp_path, "i2")


def test_a_report_beside_a_run_that_holds_the_folder_is_refused_and_removes_nothing(
    run_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """r7 #1: `firmware-sim report OUT` beside a running mission pruned the gallery images of the run's own page."""
    img = run_folder / "report_img"
    old = img / "anomaly_f77_x0_y32.png"  # an image the running mission's page (written last) may show
    old.write_bytes(b"run's")
    temp = img / ".anomaly_f1_x0_y0.png.tmp-999999999"  # a writer's in another PID namespace: its pid looks gone
    temp.write_bytes(b"half")
    page = (run_folder / "report.html").read_bytes()
    capsys.readouterr()
    with hold(run_folder, "flight run"):
        rc = main(["report", str(run_folder)])
    err = capsys.readouterr().err
    assert rc == 2
    assert len(err.strip().splitlines()) == 1
    assert "in use by another flight run" in err and "run firmware-sim report" in err
    assert old.read_bytes() == b"run's" and temp.exists()
    assert (run_folder / "report.html").read_bytes() == page  # nothing written either
    assert main(["report", str(run_folder)]) == 0  # once the run is over: the report holds it and prunes
    assert not old.exists() and not temp.exists()
    assert not (run_folder / ".edgeae.lock").exists()


def test_two_interleaved_reports_leave_every_image_the_last_page_shows(run_folder: Path) -> None:
    """r7 #1: a report that does not hold the folder removes nothing, so the last page keeps its images."""
    img = run_folder / "report_img"
    earlier = img / "anomaly_f77_x0_y32.png"
    earlier.write_bytes(b"x")
    write_report(run_folder)  # written without the folder held (a library caller): prunes nothing
    assert earlier.exists()
    html = (run_folder / "report.html").read_text()
    for name in {p.name for p in img.glob("anomaly_*.png")} & set(html.split("report_img/")):
        assert (img / name).exists()
    shown = [part.split("'")[0].split('"')[0] for part in html.split("report_img/")[1:]]
    assert shown and all((img / name).exists() for name in shown)


def _strict(monkeypatch: pytest.MonkeyPatch) -> tuple[io.BytesIO, io.BytesIO]:
    raw_out, raw_err = io.BytesIO(), io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(raw_out, encoding="utf-8", errors="strict"))
    monkeypatch.setattr(sys, "stderr", io.TextIOWrapper(raw_err, encoding="utf-8", errors="strict"))
    return raw_out, raw_err


def _text(raw: io.BytesIO) -> str:
    sys.stdout.flush()
    sys.stderr.flush()
    return raw.getvalue().decode("utf-8")


def test_a_reboot_into_an_out_that_is_not_utf8_exits_3_on_a_strict_console(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """r7 #2: the reboot line printed --out with plain print: UnicodeEncodeError, exit 2 instead of 3."""
    mission = write_mission(tmp_path, "i2")
    save_frames(tmp_path, 2)
    out = tmp_path / os.fsdecode(b"out\xff")
    raw_out, raw_err = _strict(monkeypatch)
    rc = run_frames(mission, [tmp_path / "f0.npy", tmp_path / "f1.npy"], out, "--inject", "reboot@frame1")
    text = _text(raw_out) + _text(raw_err)
    assert rc == 3, text
    assert "out\\xff: run again with the same --out" in text
    rc = main(["report", str(out)])
    assert rc == 0, _text(raw_err)
    assert "out\\xff/report.html" in _text(raw_out)


def test_firmware_sims_own_error_lines_write_bytes_that_are_not_utf8_as_escapes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """r8 #5: `firmware-sim report no\\xffsuch` printed no\\udcffsuch (a strict console: a crash)."""
    _, raw_err = _strict(monkeypatch)
    rc = main(["report", str(tmp_path / os.fsdecode(b"no\xffsuch"))])
    err = _text(raw_err)
    assert rc == 2
    assert "no\\xffsuch does not exist" in err and "\udcff" not in err


def test_the_out_of_memory_line_imports_nothing_and_says_no_type_twice(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """r9 #5: the MemoryError handler imported .memory_room (numpy) while memory was short: a second MemoryError, a
    double traceback, exit 1; and a bare MemoryError read 'out of memory (MemoryError)'."""
    import argparse

    from edgeae.firmware_sim import cli

    def short(args: argparse.Namespace) -> int:
        raise MemoryError

    for name in [n for n in sys.modules if n.endswith("firmware_sim.memory_room")] or ["firmware_sim.memory_room"]:
        monkeypatch.setitem(sys.modules, name, None)  # an import of it now fails, as it would out of memory
    rc = cli._dispatch(cli.build_parser(), argparse.Namespace(_fn=short, command="run"))
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("firmware-sim run: error: out of memory") and "MemoryError" not in err
    assert len(err.strip().splitlines()) == 1


def test_a_rebuilt_page_names_only_the_sources_it_had(tmp_path: Path) -> None:
    """r7 #3: the first line said 'rebuilt from telemetry.jsonl, queue/index.json and mission.json' with both
    missing."""
    import re

    s = {"mission": "t", "frames": {}, "incomplete": {"why": "x", "missing": ["queue/index.json", "mission.json"]}}
    note = re.search(r"<p class='note'>From .*?</p>", write_report(tmp_path, s).read_text()).group(0)
    assert "rebuilt from telemetry.jsonl (the last boot wrote no summary)" in note
    assert "queue/index.json" not in note and "mission.json" not in note
    s["incomplete"]["missing"] = ["mission.json"]
    note = re.search(r"<p class='note'>From .*?</p>", write_report(tmp_path, s).read_text()).group(0)
    assert "rebuilt from telemetry.jsonl and queue/index.json (the last boot" in note
