"""report.html and the console of a flight run (session 36, fixer g4; audit s36 a1 #1, #5, #8.1-8.5): names that are
not UTF-8, the boots and recoveries among the events, text columns, bytes with a unit, the gallery of a run that
processed no frame, the summary.json beside a rebuilt page, the bounded lists of the last section, telemetry read
once and the gallery's old images removed."""

from __future__ import annotations

import json
import os
import re
from html import unescape
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("spacepackets")
from _helpers_firmware import one_frame_run, run_frames, save_frames, write_mission
from edgeae.firmware_sim import report, telemetry_lines
from edgeae.firmware_sim.report import load_summary, write_report
from edgeae.firmware_sim.report_html import _detail, _table
from edgeae.firmware_sim.testing import textured_frame

from edgeae.printable import printable

BAD = os.fsdecode(b"bad\xff\xfe.npy")  # a Linux file name that is not UTF-8, as Python hands it over


def _rows(html: str, section: str) -> list[list[str]]:
    """The cells of the table rows in a section of the page, as text."""
    body = html.split(f"<h2>{section}")[1].split("</section>")[0]
    rows = [
        [unescape(re.sub("<[^>]+>", "", c)) for c in re.findall(r"<td[^>]*>(.*?)</td>", r)]
        for r in re.findall(r"<tr>(.*?)</tr>", body)
    ]
    return [r for r in rows if r]  # not the header


# ------------------------------------------------------------------ a1 #1: names that are not UTF-8
def test_printable_escapes_bytes_that_are_not_utf8() -> None:
    assert printable(BAD) == "bad\\xff\\xfe.npy" and printable("moon ∞ <b>") == "moon ∞ <b>"
    assert printable("x\ud800y") == "x\\ud800y" and printable(printable(BAD)) == printable(BAD)


def test_a_frame_named_in_bytes_that_are_not_utf8_gets_its_report_and_console_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every frame ran, then report.html failed ('surrogates not allowed'): no page, no console summary, exit 2
    ("user error, nothing run"), and ``firmware-sim report`` failed the same way."""
    mission = write_mission(tmp_path, "g4")
    frames = tmp_path / "frames"
    frames.mkdir()
    np.save(frames / "ok.npy", textured_frame(0))
    np.save(frames / BAD, textured_frame(1))
    out = tmp_path / os.fsdecode(b"out\xff")  # the --out folder's name is not UTF-8 either
    assert run_frames(mission, [frames], out) == 0
    printed = capsys.readouterr().out  # strict UTF-8: a lone surrogate could not be printed
    assert "mission g4: 2 frames acquired: 2 downlinked" in printed and "report: " in printed
    assert "out\\xff" in printed
    html = (out / "report.html").read_bytes().decode("utf-8")  # strict: every byte of the page is UTF-8
    assert "bad\\xff\\xfe.npy" in html and "out\\xff" in html
    os.remove(out / "report.html")
    assert write_report(out).read_bytes().decode("utf-8") == html  # what `firmware-sim report` writes


def test_a_report_that_cannot_be_written_is_a_warning_and_the_run_keeps_its_status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ValueError out of the page (the encoder's 'surrogates not allowed' was one) ended the run with exit 2 and
    no console summary; any such failure is now the not-written WARNING, after the summary."""
    mission = write_mission(tmp_path, "g4")
    save_frames(tmp_path, 1)

    def fails(*args: Any, **kwargs: Any) -> None:
        raise UnicodeEncodeError("utf-8", "\udcff", 0, 1, "surrogates not allowed")

    monkeypatch.setattr(report, "write_report", fails)
    assert run_frames(mission, [tmp_path / "f0.npy"], tmp_path / "out") == 0
    cap = capsys.readouterr()
    assert "1 frame acquired: 1 downlinked" in cap.out and "report: " not in cap.out
    written = r"WARNING: \S*report.html was not written: .*surrogates not allowed; .*firmware-sim report"
    assert re.search(written, cap.err)


# ------------------------------------------------------------------ a1 #5: boots and recoveries among the events
def test_the_events_number_the_boots_and_show_the_recoveries(tmp_path: Path) -> None:
    """After a reboot the events' t column restarted at 0 with no boot marker, and no start or recovery line was
    shown ("recovery rows: 0"), so a frame a power loss stopped was in the ledger alone."""
    from edgeae.firmware_sim.loop import FlightRuntime
    from edgeae.firmware_sim.mission import load_mission

    mission = write_mission(tmp_path, "g4")
    frames = save_frames(tmp_path, 2)
    out = tmp_path / "out"
    rt = FlightRuntime(load_mission(mission), out)
    rt.process(str(frames[0]))
    # what kill -9 mid-frame leaves: the next frame in the ledger in progress, saved, the process gone
    rt.queue.state["next_frame_id"] = 2
    rt.queue.state["frames"]["1"] = {"source": str(frames[1]), "status": "in_progress", "reason": ""}
    rt.queue.save()
    rt.close()
    assert run_frames(mission, frames, out) == 0
    rows = _rows((out / "report.html").read_text(), "Events")
    boots = [r for r in rows if r[2].startswith("boot ")]
    assert [(r[0], r[2]) for r in boots] == [("1", "boot 1 (a new state)"), ("2", "boot 2 (resumed)")]
    assert all(re.search(r"utc \d{4}-\d\d-\d\dT", r[3]) for r in boots)
    [rec] = [r for r in rows if r[2] == "recovery"]
    assert rec[0] == "2" and "frames dropped reboot_during_processing: 1" in rec[3]
    assert {r[0] for r in rows} == {"1", "2"}  # every row says its boot
    assert rows.index(boots[0]) == 0 and rows.index(boots[1]) < rows.index(rec)


# ------------------------------------------------------------------ a1 #8.1: text columns left-aligned
def test_text_columns_are_left_aligned_and_number_columns_right() -> None:
    html = _table(["item", "bytes lost", "why"], [["a", "1,024", "storage corruption: cut short"], ["b", "–", "x"]])
    assert "<th class='l'>item</th><th>bytes lost</th><th class='l'>why</th>" in html
    assert "<td class='l'>a</td><td>1,024</td><td class='l'>storage corruption: cut short</td>" in html


# ------------------------------------------------------------------ a1 #8.2: bytes with a unit
def test_byte_lists_in_event_details_have_a_unit() -> None:
    assert _detail("rss_added", [9609216, 5496832, 0]) == "rss added 9.2 MiB, 5.2 MiB, 0 B"
    assert _detail("tiles", [1, 2]) == "tiles 1, 2"  # not bytes


# ------------------------------------------------------------------ a1 #8.3: gallery of a run that processed nothing
def test_the_gallery_of_a_run_that_processed_no_frame_says_so(tmp_path: Path) -> None:
    s = {"mission": "t", "frames": {"acquired": 2, "dropped": 2, "processed": 0, "drop_reasons": {"unreadable": 2}}}
    (tmp_path / "summary.json").write_text(json.dumps(s))
    html = write_report(tmp_path, s).read_text()
    assert "No frame was processed (2 dropped: see the ledger), so no patch was scored." in html
    assert "none above the threshold" not in html


# ------------------------------------------------------------------ a1 #8.4: the summary.json beside a rebuilt page
def test_a_rebuilt_page_says_what_it_was_built_from(tmp_path: Path) -> None:
    s = {"mission": "t", "frames": {"acquired": 9}, "incomplete": {"why": "killed", "missing": []}}
    (tmp_path / "summary.json").write_text(json.dumps({"mission": "t", "boots": 1, "frames": {"acquired": 8}}))
    (tmp_path / "telemetry.jsonl").write_text('{"type": "start", "t": 0, "resumed": true}\n')  # no "end" line
    note = re.search(r"<p class='note'>From .*?</p>", write_report(tmp_path, s).read_text()).group(0)
    assert "rebuilt from telemetry.jsonl" in note and "the summary.json there is of an earlier boot" in note
    assert "From " in note and ": summary.json" not in note and "(1 boot(s), 8 frames acquired): not used" in note
    assert load_summary(tmp_path)[1][-1] == "the summary.json there is of an earlier boot: not used"  # the console


# ------------------------------------------------------------------ a1 #8.5: bounded lists in the last section
def test_long_lists_of_the_last_section_are_cut(tmp_path: Path) -> None:
    s = {"mission": "t", "frames": {}, "this_boot": {"top_patch_frames": list(range(300)), "faults_fired": []}}
    html = write_report(tmp_path, s).read_text()
    other = html.split("Everything else in summary.json")[1]
    assert "300 items: 0, 1, 2, 3, 4 … 295, 296, 297, 298, 299" in unescape(other)
    assert other.count("\n") < 30 and "1 list(s) of more than 12 items cut" in other
    short = write_report(tmp_path, {**s, "this_boot": {"top_patch_frames": list(range(12))}}).read_text()
    assert "list(s) of more" not in short and "items:" not in short


# ------------------------------------------------------------------ telemetry read once; old gallery images removed
def test_a_report_reads_telemetry_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = {"mission": "t", "frames": {"acquired": 0}}
    lines = [{"type": "start", "t": 0, "resumed": False, "utc": "x"}, {"type": "pass", "t": 1, "index": 1}]
    (tmp_path / "telemetry.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    reads: list[str] = []
    real = Path.read_bytes

    def counted(self: Path) -> bytes:
        if self.name == "telemetry.jsonl":
            reads.append(str(self))
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", counted)
    monkeypatch.setattr(telemetry_lines, "read_lines_with", lambda *a: pytest.fail("read line by line"))
    html = write_report(tmp_path, s).read_text()
    assert len(reads) == 1
    assert _rows(html, "Downlink queue")[0][0] == "1"  # its pass record is in the pass table


def test_gallery_images_no_longer_shown_are_removed_once_the_page_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """report_img/ kept the image of every patch ever shown: those the page no longer shows are removed, after it."""
    out = one_frame_run(tmp_path, "g4")
    img = out / "report_img"
    shown = sorted(p.name for p in img.glob("anomaly_*.png"))
    assert len(shown) == 3
    old = img / "anomaly_f77_x0_y32.png"  # an earlier page's
    old.write_bytes(b"old")
    (img / "notes.txt").write_text("keep")  # not the gallery's: left alone
    (img / "anomaly_f78_x0_y0.png").symlink_to(tmp_path / "f0.npy")  # a link, whatever its name: left alone
    (img / "anomaly_f79_x0_y0.png.d").mkdir()  # a folder: left alone

    def full_disk(*args: Any, **kwargs: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report, "write_text", full_disk)
    with pytest.raises(OSError):
        write_report(out, prune=True)
    assert old.exists()  # the earlier page, still there, shows it
    monkeypatch.undo()
    write_report(out)  # a caller that does not hold the folder removes nothing (review r7 of session 36)
    assert old.exists()
    write_report(out, prune=True)
    assert not old.exists()
    left = sorted(p.name for p in img.iterdir())
    assert left == sorted(
        [*shown, "anomaly_f78_x0_y0.png", "anomaly_f79_x0_y0.png.d", "gallery_index.json", "notes.txt"]
    )
