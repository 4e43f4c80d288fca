"""report.html of a flight run against hostile or long inputs (audit a4): the gallery decoder's size cap, patch
packets that disagree, pass files cut short, the gallery's order across frames, long runs' charts and tables cut
with a note, readable pass and event figures, injected faults in the verdict, and the report command's path
errors."""

from __future__ import annotations

import json
import logging
import re
import tracemalloc
from html import unescape
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("spacepackets")
from edgeae.firmware_sim import report_gallery
from edgeae.firmware_sim.cli import main
from edgeae.firmware_sim.report import write_report

from edgeae.wire.layout import APIDS, COMMON, PATCH
from edgeae.wire.packets import build_packet

SUMMARY = {"mission": "t", "frames": {"acquired": 1, "downlinked": 1, "processed": 1}}


def patch_packet(
    frame: int, index: int, size: int, e0: int, n: int, score: float = 1.0, x: int = 0, part: int = 0, parts: int = 1
) -> bytes:
    """A valid CCSDS patch packet (raw 8-bit codec, CRC right) carrying ``n`` samples of value 200 from ``e0``."""
    body = COMMON.pack(2, 0, frame, part, parts) + PATCH.pack(x, 0, size, 1, 8, index, score, e0, n)
    return build_packet(APIDS["patch"], 0, body + bytes(np.full(n, 200, np.uint8)))


def run_folder(tmp_path: Path, *passes: bytes) -> Path:
    (tmp_path / "summary.json").write_text(json.dumps(SUMMARY))
    (tmp_path / "downlink").mkdir()
    for i, data in enumerate(passes, 1):
        (tmp_path / "downlink" / f"pass_{i:05d}.bin").write_bytes(data)
    return tmp_path


def figures(html: str) -> list[str]:
    return re.findall(r"<figcaption>(.*?)</figcaption>", html)


def test_a_patch_claiming_a_huge_size_is_not_decoded(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A 64-byte packet claiming 8192 x 8192 samples allocated 64 MB and wrote a PNG of zeros shown as "partly
    sent" (16384: 560 MB peak); now it is over the ground's max_patch_elements cap: named, not decoded."""
    out = run_folder(tmp_path, patch_packet(0, 0, 8, 0, 64, 2.0) + patch_packet(7, 0, 8192, 0, 16))
    tracemalloc.start()
    with caplog.at_level(logging.WARNING, logger="edgeae.firmware_sim"):
        html = write_report(out, SUMMARY).read_text()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 16 << 20, peak
    assert [p.name for p in (out / "report_img").glob("*.png")] == ["anomaly_f0_x0_y0.png"]  # beside its index
    assert len(figures(html)) == 1
    said = "downlink/pass_00001.bin: a packet of frame 7 patch 0 claims 8192 x 8192 x 1 = 67,108,864 samples"
    assert said in html and said in caplog.text and "max_patch_elements" in caplog.text


def test_packets_that_disagree_on_a_patch_are_skipped_by_name(tmp_path: Path) -> None:
    """A second packet of the same (frame, index) claiming another size crashed the report with a numpy
    broadcast error naming no file; now it is skipped, the pass file named, and the report written."""
    first = patch_packet(0, 0, 8, 0, 32, 2.0) + patch_packet(0, 0, 8, 32, 32, 2.0)
    out = run_folder(tmp_path, first, patch_packet(0, 0, 16, 64, 16, 2.0))
    html = write_report(out, SUMMARY).read_text()
    assert figures(html) == ["frame 0 (0, 0)<br>score 2"]  # whole: both pieces of the first file
    assert (
        "downlink/pass_00002.bin: 1 packet(s) of frame 0 patch 0 disagree with the 2 kept (first in "
        "downlink/pass_00001.bin; size 16 (kept 8)): skipped, as the ground keeps the largest group" in html
    )
    assert main(["report", str(out)]) == 0  # the command too (it exited 2)


def test_a_pass_file_cut_short_keeps_its_whole_packets(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """One byte missing lost every patch of the file without a word; now the whole packets before the cut are
    read and the file and the bytes lost are named on the page and the console."""
    data = b"".join(patch_packet(0, i, 8, 0, 64, float(3 - i), x=8 * i) for i in range(3))
    out = run_folder(tmp_path, data[:-1])
    with caplog.at_level(logging.WARNING, logger="edgeae.firmware_sim"):
        html = write_report(out, SUMMARY).read_text()
    assert len(figures(html)) == 2
    said = (
        "downlink/pass_00001.bin: the length field at byte 224 claims a packet of 112 bytes, past the end of the "
        "file (335 bytes: damaged, or the file was cut short); the rest of the file (111 bytes) skipped"
    )
    assert said in html and said in caplog.text
    # every file damaged: the page does not claim that nothing was downlinked
    (out / "downlink" / "pass_00001.bin").write_bytes(data[:50])
    html = write_report(out, {**SUMMARY, "anomalies": [{"frame_id": 0, "patches": [{"x": 0, "y": 0, "score": 3.0}]}]})
    text = html.read_text()
    assert "No patch packet was downlinked yet" not in text
    assert "No patch could be decoded from the downlink packet files" in text and "past the end of the file" in text


def test_the_gallery_shows_the_highest_scores_across_frames(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The gallery sorted by frame, then score, and took the first GALLERY_MAX: a later frame's best patches were
    never shown. Now the highest scores of the run come first and the frames left out are named."""
    monkeypatch.setattr(report_gallery, "GALLERY_MAX", 2)
    packets = [patch_packet(0, 0, 8, 0, 64, 1.0), patch_packet(0, 1, 8, 0, 64, 2.0, x=8)]
    packets += [patch_packet(1, 0, 8, 0, 64, 3.0), patch_packet(3, 0, 8, 0, 64, 6.9)]
    html = write_report(run_folder(tmp_path, b"".join(packets)), SUMMARY).read_text()
    assert figures(html) == ["frame 3 (0, 0)<br>score 6.9", "frame 1 (0, 0)<br>score 3"]
    assert "2 lower-scoring patches not shown, of frame(s) 0; none of frame(s) 0 is shown." in html


def test_a_long_run_cuts_its_charts_and_tables_and_says_so(tmp_path: Path) -> None:
    """5,000 frames made a 7.5 MB page with a 110,040 px timeline; now the last frames and the earlier ones worth
    a look (dropped, late) are drawn, and a note says how many are not shown and where they are."""
    n = 1000
    lines = [{"type": "start", "t": 0, "resumed": False}]
    for i in range(n):
        late = i == 10
        lines.append(
            {"type": "frame", "frame_id": i, "status": "dropped" if i == 5 else "processed", "deadline_missed": late,
             "timing_ms": {"score": 1.0, "total": 2.0}, "memory": {"rss_growth_peak": 1000}}
        )  # fmt: skip
    lines += [{"type": "pass", "index": i, "bytes": 10} for i in range(n)]
    (tmp_path / "telemetry.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    ledger = [{"frame_id": i, "outcome": "dropped" if i == 5 else "downlinked"} for i in range(n)]
    s = {**SUMMARY, "ledger": ledger, "budgets": {"frame_ms": 100.0, "memory_bytes": 1 << 20}}
    html = write_report(tmp_path, s).read_text()
    assert len(html) < 400_000
    heights = [int(h) for h in re.findall(r"viewBox='0 0 \d+ (\d+)'", html)]
    assert len(heights) == 2 and max(heights) < 3000, heights
    assert html.count("of 1,000 frames shown") == 3  # timeline, memory, ledger
    assert "the other 898 are in telemetry.jsonl" in html and "the other 899 are in summary.json" in html
    assert ">frame 5 · dropped<" in html and "frame 10 · nominal" not in html  # no level recorded: '?'
    assert ">frame 10 · ?<" in html and ">frame 500 · " not in html and ">frame 999 · ?<" in html
    assert "100 of 1,000 passes shown" in html


def test_pass_shares_event_details_and_injected_faults_read_plainly() -> None:
    """ "of budget 0%" for 64,701 of 16,000,000 B; event details as raw dicts and bytes; a run with --inject
    read like a clean one."""
    from edgeae.firmware_sim.report import _events, _verdict
    from edgeae.firmware_sim.report_html import _percent

    assert [_percent(64_701, 16_000_000), _percent(1, 16_000_000), _percent(0, 10), _percent(5, 10)] == [
        "0.4%", "<0.1%", "0%", "50%"]  # fmt: skip
    ev = {"type": "event", "t": 1.5, "kind": "memory_loaded", "held": 25677824, "budget": 67108864,
          "sparse_only_plan": {"frame_strip_raw": 0, "total": 4096}}  # fmt: skip
    text = _events([(1, ev)])
    assert "held 24.5 MiB (25,677,824 B)" in text and "budget 64.0 MiB (67,108,864 B)" in text
    assert "sparse only plan (frame strip raw 0 B, total 4,096 B)" in text and "{" not in text
    clean = {"frames": {"acquired": 2, "downlinked": 2}, "timing_ms": {"p50": 1.0, "max": 1.0, "deadline_missed": 0}}
    assert "class='verdict'" in _verdict(clean) and "Fault" not in _verdict(clean)
    hit = {**clean, "faults": ["seu@frame0", "late@frame9"], "faults_not_fired": ["late@frame9"], "scrub_reloads": 1}
    v = _verdict(hit)
    assert "verdict warn" in v and "Faults injected (--inject): seu@frame0; asked for but never fired: late@frame9" in v
    assert "1 model reload(s) after a scrub found corrupted weights" in v


def test_report_command_says_what_is_wrong_with_its_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Both said "... holds no summary.json, telemetry.jsonl or queue/index.json"."""
    assert main(["report", str(tmp_path / "nonexist")]) == 2
    assert f"{tmp_path / 'nonexist'} does not exist" in capsys.readouterr().err
    (tmp_path / "some_file").write_text("x")
    assert main(["report", str(tmp_path / "some_file")]) == 2
    assert "some_file is a file, not a run folder" in capsys.readouterr().err
    assert main(["report", str(tmp_path)]) == 2
    assert "holds no summary.json" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ review r1
def test_the_largest_group_of_agreeing_packets_is_the_patch(tmp_path: Path) -> None:
    """One stray packet (x 999, score 5) in an early pass file took the patch over, shown at the wrong place with
    the wrong score "partly sent", and both real pieces were named "skipped" (the same line twice); the ground
    keeps the largest group of packets that agree (x 0, score 2, complete), and so does the report now."""
    stray = patch_packet(0, 0, 8, 0, 16, 5.0, x=999, parts=2)
    real = patch_packet(0, 0, 8, 0, 32, 2.0, parts=2) + patch_packet(0, 0, 8, 32, 32, 2.0, part=1, parts=2)
    html = write_report(run_folder(tmp_path, stray, real), SUMMARY).read_text()
    assert figures(html) == ["frame 0 (0, 0)<br>score 2"]
    said = (
        "downlink/pass_00001.bin: 1 packet(s) of frame 0 patch 0 disagree with the 2 kept (first in "
        "downlink/pass_00002.bin; x 999 (kept 0), score 5 (kept 2)): skipped"
    )
    assert html.count(said) == 1 and html.count("<li>") == 1
    # a NaN score is one header, not a group per packet (the ground's NaN-equal rule)
    nan = patch_packet(1, 0, 8, 0, 32, float("nan"), parts=2) + patch_packet(
        1, 0, 8, 32, 32, float("nan"), part=1, parts=2
    )
    (tmp_path / "nan").mkdir()
    html = write_report(run_folder(tmp_path / "nan", nan), SUMMARY).read_text()
    assert figures(html) == ["frame 1 (0, 0)<br>score nan"] and "<li>" not in html


def test_notes_are_merged_by_pass_file_and_kind_and_capped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One note (and one console warning) per packet: a 1.28 MB pass file made a 3.8 MB page and 20,000 warnings.
    Now a pass file's notes of one kind are one, with a count; the page shows NOTES_MAX and says how many more; the
    console says one line per pass file."""
    monkeypatch.setattr(report_gallery, "NOTES_MAX", 5)
    huge = b"".join(patch_packet(i, 0, 8192, 0, 16) for i in range(1000))
    bad = bytearray(patch_packet(0, 1, 8, 0, 64))
    bad[-1] ^= 1  # a CRC error: a second kind of note in the same file
    out = run_folder(tmp_path, huge + bytes(bad), *[patch_packet(i, 0, 8192, 0, 16) for i in range(7)])
    with caplog.at_level(logging.WARNING, logger="edgeae.firmware_sim"):
        html = unescape(write_report(out, SUMMARY).read_text())
    assert len(html) < 20_000
    assert html.count("claims 8192 x 8192 x 1") == 4  # passes 1-4 (pass 1 has two notes); 5-8 are not shown
    assert (
        "downlink/pass_00001.bin: a packet of frame 0 patch 0 claims 8192 x 8192 x 1 = 67,108,864 samples, over "
        "the cap of 16,777,216 (the ground's max_patch_elements): not decoded (and 999 more like it)" in html
    )
    assert "downlink/pass_00001.bin: 1 packet(s) failed their check (crc ×1); skipped" in html
    assert "… and 4 more, on 4 pass file(s)" in html
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 8, lines  # one per pass file
    assert "(and 999 more like it); 1 packet(s) failed their check" in lines[0]


def test_a_rebooted_runs_report_lists_its_injected_faults(tmp_path: Path) -> None:
    """The summary rebuilt for a rebooted run set no faults and no scrub reloads: its report read like a clean
    run's. Now they come from the events."""
    from edgeae.firmware_sim.report import _verdict
    from edgeae.firmware_sim.report_inputs import load_summary

    lines = [
        {"type": "start", "t": 0, "resumed": False},
        {"type": "frame", "t": 0.1, "frame_id": 0, "status": "processed", "timing_ms": {"total": 5.0}},
        {"type": "event", "t": 0.2, "kind": "fault_injected", "fault": "seu@frame0", "flips": 3},
        {"type": "event", "t": 0.3, "kind": "seu_detected", "detail": "2 blocks", "role": "anomaly"},
        {"type": "event", "t": 0.4, "kind": "fault_injected", "fault": "reboot@frame1"},
    ]
    (tmp_path / "telemetry.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    s, _ = load_summary(tmp_path)
    assert s["faults"] == ["seu@frame0", "reboot@frame1"] and s["scrub_reloads"] == 1
    v = _verdict(s)
    assert "Faults injected (--inject): seu@frame0, reboot@frame1 (see Events)" in v and "never fired" not in v
    assert "1 model reload(s) after a scrub found corrupted weights" in v


def test_the_fallback_table_shows_the_last_frames(tmp_path: Path) -> None:
    """With no patch decoded, the chosen patches' table had a row per frame: 5,000 frames made 1.5 MB."""
    anomalies = [
        {"frame_id": i, "source": f"f{i}.png", "patches": [{"x": 0, "y": 0, "score": 1.0}]} for i in range(500)
    ]
    html = write_report(tmp_path, {**SUMMARY, "anomalies": anomalies}).read_text()
    assert "No patch packet was downlinked yet" in html and ">f499.png<" in html and ">f399.png<" not in html
    said = "100 of 500 frames shown (the last ones); the other 400 are in summary.json (&#x27;anomalies&#x27;)"
    assert said in html and html.count("<span title='f") == 100


def test_a_damaged_length_field_is_named_and_the_packets_after_it_read(tmp_path: Path) -> None:
    """A first packet whose length field runs past the end of the file made the whole file "cut short" and lost
    every patch; now the field is named with its byte, and the packets after it are read, as the ground's stream
    reader resynchronises on the next packet header."""
    data = bytearray(b"".join(patch_packet(0, i, 8, 0, 64, float(3 - i), x=8 * i) for i in range(3)))
    data[4:6] = (0xEFFF).to_bytes(2, "big")
    html = write_report(run_folder(tmp_path, bytes(data)), SUMMARY).read_text()
    assert figures(html) == ["frame 0 (8, 0)<br>score 2", "frame 0 (16, 0)<br>score 1"]
    assert (
        "downlink/pass_00001.bin: the length field at byte 0 claims a packet of 61,446 bytes, past the end of the "
        "file (336 bytes: damaged, or the file was cut short); up to the next packet (112 bytes) skipped" in html
    )
    assert "cut short:" not in html
