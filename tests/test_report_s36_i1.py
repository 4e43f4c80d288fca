"""Session-36 fixer i1, the gallery of ``report.html`` (review s36 r5 #1-3, #6): pass files in the order of their
number (from pass 100,000 on, text order put each new pass file in the middle and every report read them all),
an index damaged but still valid JSON is not trusted, a packet re-read for a shown patch is checked against the
patch's header, and the temporary file of an index write a power cut stopped is removed."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("spacepackets")
from edgeae.firmware_sim import report_gallery
from edgeae.firmware_sim.report_gallery_index import INDEX_NAME, gallery_read
from edgeae.firmware_sim.report_packets import load_samples, read_patches

from edgeae.wire.layout import APIDS, COMMON, PATCH
from edgeae.wire.packets import build_packet

DOCS = Path(__file__).resolve().parents[1] / "docs" / "firmware_sim.md"


def patch_packet(frame: int, index: int, score: float, *, x: int = 0, v: int = 200) -> bytes:
    """A valid, whole 8x8 8-bit patch packet (one part) of samples ``v``."""
    body = COMMON.pack(2, 0, frame, 0, 1) + PATCH.pack(x, 0, 8, 1, 8, index, score, 0, 64)
    return build_packet(APIDS["patch"], 0, body + bytes(np.full(64, v, np.uint8)))


def _write(out: Path, number: int, data: bytes) -> None:
    (out / "downlink").mkdir(parents=True, exist_ok=True)
    (out / "downlink" / f"pass_{number:05d}.bin").write_bytes(data)


def _page(out: Path) -> tuple[str, dict[str, bytes]]:
    body, _ = report_gallery._gallery(out, {})
    return body, {n: (out / "report_img" / n).read_bytes() for n in re.findall(r"src='report_img/([^']+)'", body)}


def _read_all(out: Path, tmp: Path) -> tuple[str, dict[str, bytes]]:
    fresh = tmp / "fresh"
    shutil.rmtree(fresh, ignore_errors=True)
    shutil.copytree(out / "downlink", fresh / "downlink")
    return _page(fresh)


# ------------------------------------------------------------ r5 #1: pass files in the order of their number
def test_from_pass_100000_on_a_report_reads_only_the_new_pass_file(tmp_path: Path) -> None:
    """``pass_100000.bin`` sorts between ``pass_10000.bin`` and ``pass_10001.bin`` as text: the index was never
    a prefix of the folder's files again and every report read every pass file."""
    out = tmp_path / "out"
    index = out / "report_img" / INDEX_NAME
    _write(out, 99_998, patch_packet(0, 0, 1.0))
    _write(out, 99_999, patch_packet(1, 0, 2.0))
    assert gallery_read(out / "downlink", index, 96).read == ["downlink/pass_99998.bin", "downlink/pass_99999.bin"]
    for n in (100_000, 100_001, 100_002):
        _write(out, n, patch_packet(n, 0, 3.0))
        assert gallery_read(out / "downlink", index, 96).read == [f"downlink/pass_{n}.bin"]
    assert _page(out) == _read_all(out, tmp_path)


def test_the_first_of_two_resends_is_that_of_the_earlier_pass_past_pass_99999(tmp_path: Path) -> None:
    """A resend with other values is skipped, the first kept: by text order pass 100,000 came before 99,999."""
    out = tmp_path / "out"
    _write(out, 99_999, patch_packet(0, 0, 5.0, v=200))
    _write(out, 100_000, patch_packet(0, 0, 5.0, v=7))
    read = read_patches(out / "downlink")
    assert read.read == ["downlink/pass_99999.bin", "downlink/pass_100000.bin"]
    [p] = read.patches
    assert p["file"] == "downlink/pass_99999.bin" and int(next(iter(p["pieces"].values())).samples[0]) == 200
    assert [n for n, _ in read.notes] == ["downlink/pass_100000.bin"]


# ------------------------------------------------------------ r5 #2: an index damaged but valid JSON
def test_an_index_changed_but_still_valid_json_is_not_trusted(tmp_path: Path) -> None:
    """One digit added to a patch's score in the index (still valid JSON) showed score 969.3 on the page, with no
    note: the index now carries a CRC-32 of its document and one that does not match is read as no index."""
    out = tmp_path / "out"
    _write(out, 1, patch_packet(0, 0, 69.328125) + patch_packet(0, 1, 12.5, x=8))
    _write(out, 2, patch_packet(1, 0, 3.0))
    index = out / "report_img" / INDEX_NAME
    want = _page(out)
    text = index.read_text()
    assert "69.328125" in text
    index.write_text(text.replace("69.328125", "969.328125"))
    json.loads(index.read_text())  # still valid JSON
    assert len(gallery_read(out / "downlink", index, 96).read) == 2  # not trusted: every pass file read
    index.write_text(text.replace("69.328125", "969.328125"))
    page = _page(out)
    assert page == want and "score 969.3" not in page[0]


def test_a_packet_read_again_whose_header_is_not_the_patch_s_is_not_shown_as_it(tmp_path: Path) -> None:
    """``load_samples`` compared only the samples' length and CRC-32: a packet whose header changed since the
    scan (a bit flipped in storage, size and time kept) was shown under the scanned header."""
    out = tmp_path / "out"
    _write(out, 1, patch_packet(4, 0, 8.0))
    read = gallery_read(out / "downlink", out / "report_img" / INDEX_NAME, 96)
    [p] = read.patches
    _write(out, 1, patch_packet(4, 0, 88.0))  # same size, same samples, another score (its CRC right)
    notes = load_samples(out / "downlink", p)
    assert p["pieces"] == {} and len(notes) == 1 and notes[0][0] == "downlink/pass_00001.bin"
    assert "could not be read again (its header differs from the one read before: score 88 not 8)" in notes[0][1]
    [q] = gallery_read(out / "downlink", out / "report_img" / "other.json", 96).patches
    _write(out, 1, patch_packet(5, 0, 88.0))  # another frame
    notes = load_samples(out / "downlink", q)
    assert q["pieces"] == {} and "frame_id 5 not 4" in notes[0][1]


def test_the_docs_say_what_a_change_in_place_is_found_by() -> None:
    text = " ".join(DOCS.read_text().split())
    assert "changed in place without a change of size or time is found only in the patches shown" in text


# ------------------------------------------------------------ r5 #3: an index write a power cut stopped
def test_the_temporary_file_of_an_index_write_a_power_cut_stopped_is_removed(tmp_path: Path) -> None:
    """``.gallery_index.json.tmp-PID`` of a report killed mid-write stayed for good (one per power cut, each as
    large as the index); the next report that holds the folder (``prune=True``: a run's end of boot, or
    ``firmware-sim report`` under the lock) removes it, as every other temporary of ``report_img/``: with the lock
    held no other writer is running, so a live pid's temporary is stale too (df482e4)."""
    from edgeae.firmware_sim.report import write_report

    out = tmp_path / "out"
    _write(out, 1, patch_packet(0, 0, 1.0))
    (out / "report_img").mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = out / "report_img" / f".{INDEX_NAME}.tmp-{int(dead.stdout)}"
    stale.write_bytes(b"{" * 1000)
    live = out / "report_img" / f".{INDEX_NAME}.tmp-{os.getppid()}"  # a running pid (another PID namespace?)
    live.write_bytes(b"{")
    write_report(out, {"mission": "m"})  # without the folder: removes nothing of another process
    assert stale.exists() and live.exists()
    write_report(out, {"mission": "m"}, prune=True)
    assert not stale.exists() and not live.exists() and (out / "report_img" / INDEX_NAME).is_file()
