"""Session-36 fixer f1: the anomaly gallery of ``report.html`` reads only the pass files written since the last
report (its index, ``report_img/gallery_index.json``), with the same page as reading them all."""

from __future__ import annotations

import contextlib
import io
import json
import re
import runpy
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("spacepackets")
from edgeae.firmware_sim import report_gallery
from edgeae.firmware_sim.report_gallery_index import INDEX_NAME, gallery_read
from edgeae.firmware_sim.report_packets import load_samples

from edgeae.wire.layout import APIDS, COMMON, PATCH
from edgeae.wire.packets import build_packet

ROOT = Path(__file__).resolve().parents[1]


def patch_packet(
    frame: int, index: int, e0: int, n: int, score: float, *, x: int = 0, part: int = 0, parts: int = 1, v: int = 200
) -> bytes:
    """A valid 8x8 8-bit patch packet carrying ``n`` samples of value ``v`` from ``e0``."""
    body = COMMON.pack(2, 0, frame, part, parts) + PATCH.pack(x, 0, 8, 1, 8, index, score, e0, n)
    return build_packet(APIDS["patch"], 0, body + bytes(np.full(n, v, np.uint8)))


def _passes() -> list[bytes]:
    """Pass files with what the gallery must get right: a patch split over two passes, a stray outvoted, a resend
    with other values, a packet failing its CRC, bytes forming no packet, NaN scores."""
    bad = bytearray(patch_packet(5, 0, 0, 64, 1.5))
    bad[-1] ^= 1
    return [
        patch_packet(0, 0, 0, 64, 3.0) + patch_packet(1, 0, 0, 32, 7.0, part=0, parts=2) + bytes(bad),
        patch_packet(1, 0, 0, 16, 9.0, x=99, parts=2) + patch_packet(2, 0, 0, 64, float("nan")) + b"\x00" * 9,
        patch_packet(1, 0, 32, 32, 7.0, part=1, parts=2) + patch_packet(0, 0, 0, 64, 3.0, v=7)  # resend, other values
        + patch_packet(3, 1, 0, 64, 5.0, x=8),
        patch_packet(4, 0, 0, 64, 8.0) + patch_packet(4, 1, 0, 64, 0.5, x=16),
    ]  # fmt: skip


def _folder(root: Path, passes: list[bytes]) -> Path:
    (root / "downlink").mkdir(parents=True, exist_ok=True)
    for i, data in enumerate(passes, 1):
        (root / "downlink" / f"pass_{i:05d}.bin").write_bytes(data)
    return root


def _page(out: Path) -> tuple[str, dict[str, bytes]]:
    """The gallery section and its images."""
    body, _ = report_gallery._gallery(out, {})
    return body, {n: (out / "report_img" / n).read_bytes() for n in re.findall(r"src='report_img/([^']+)'", body)}


def _read_all(out: Path, tmp: Path) -> tuple[str, dict[str, bytes]]:
    """The same folder's gallery read the way every report did before session 36: every pass file, no index."""
    fresh = tmp / "fresh"
    shutil.rmtree(fresh, ignore_errors=True)
    shutil.copytree(out / "downlink", fresh / "downlink")
    return _page(fresh)


def test_a_report_reads_only_the_pass_files_new_since_the_last_one(tmp_path: Path) -> None:
    """Every report, so every boot's, read and decoded every pass file of the mission again (500 passes of 16
    patches: 2-4 s a boot, growing with the mission); the page is the same, the files read only the new ones."""
    passes = _passes()
    out = _folder(tmp_path / "out", passes[:3])
    first = gallery_read(out / "downlink", out / "report_img" / INDEX_NAME, 96)
    assert first.read == [f"downlink/pass_0000{i}.bin" for i in (1, 2, 3)]
    assert _page(out) == _read_all(out, tmp_path)
    (out / "downlink" / "pass_00004.bin").write_bytes(passes[3])  # pass 4 comes
    again = gallery_read(out / "downlink", out / "report_img" / INDEX_NAME, 96)
    assert again.read == ["downlink/pass_00004.bin"]
    page = _page(out)
    assert page == _read_all(out, tmp_path)
    body = page[0]
    assert "frame 4 (0, 0)<br>score 8" in body and "disagree with the 2 kept" in body and "other values" in body
    assert "failed their check" in body and "formed no packet" in body and "score nan" in body


def test_a_pass_file_rewritten_or_a_damaged_index_makes_it_read_them_all(tmp_path: Path) -> None:
    passes = _passes()
    out = _folder(tmp_path / "out", passes)
    index = out / "report_img" / INDEX_NAME
    gallery_read(out / "downlink", index, 96)
    (out / "downlink" / "pass_00002.bin").write_bytes(patch_packet(6, 0, 0, 64, 4.0))  # a pass sent again
    assert len(gallery_read(out / "downlink", index, 96).read) == 4
    assert _page(out) == _read_all(out, tmp_path)
    for damage in (b"{", b"[]", json.dumps({"version": 1, "groups": 3}).encode()):
        index.write_bytes(damage)
        assert len(gallery_read(out / "downlink", index, 96).read) == 4
        assert _page(out) == _read_all(out, tmp_path)
    assert json.loads(index.read_text())["doc"]["version"] == 2  # written anew


def test_the_index_keeps_in_full_only_the_patches_it_may_show(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A long mission's index would otherwise grow by every patch's pieces: it keeps the 2 x GALLERY_MAX highest
    and those not whole, the others by key (to count them and name their frames), and the page is the same."""
    monkeypatch.setattr(report_gallery, "GALLERY_MAX", 2)
    passes = [b"".join(patch_packet(f, i, 0, 64, float(10 * f + i), x=8 * i) for i in range(5)) for f in range(6)]
    passes[2] += patch_packet(9, 0, 0, 32, 0.1, parts=2)  # not whole (its second packet never came): kept in full
    out = _folder(tmp_path / "out", passes[:4])
    _page(out)
    (out / "downlink" / "pass_00005.bin").write_bytes(passes[4])
    (out / "downlink" / "pass_00006.bin").write_bytes(passes[5] + patch_packet(0, 0, 0, 64, 0.0, v=1))
    page = _page(out)
    want = _read_all(out, tmp_path)
    late = "downlink/pass_00006.bin: a packet of frame 0 patch 0 came after that patch was whole in an earlier pass"
    assert late in page[0] and late not in want[0]  # read all, it is a resend with other values instead
    assert page[0].replace(late, "").split("<ul")[0] == want[0].split("<ul")[0] and page[1] == want[1]
    left = "29 lower-scoring patches not shown, of frame(s) 0, 1, 2, 3, 4, 5, 9; none of frame(s) 0, 1, 2, 3, 4, 9"
    assert left in page[0]
    doc = json.loads((out / "report_img" / INDEX_NAME).read_text())["doc"]
    kept = {(fid, index) for fid, index, _ in doc["groups"]}
    assert kept == {(5, 4), (5, 3), (5, 2), (5, 1), (9, 0)} and len(doc["closed"]) == 2 * 26


def test_a_piece_that_cannot_be_read_again_is_named_not_shown_as_received(tmp_path: Path) -> None:
    out = _folder(tmp_path / "out", _passes())
    read = gallery_read(out / "downlink", out / "report_img" / INDEX_NAME, 96)
    [p] = [p for p in read.patches if p["frame_id"] == 4 and p["x"] == 0]
    (out / "downlink" / "pass_00004.bin").write_bytes(b"")  # gone from storage since
    notes = load_samples(out / "downlink", p)
    assert p["pieces"] == {} and len(notes) == 1 and notes[0][0] == "downlink/pass_00004.bin"
    assert notes[0][1].startswith("1 piece(s) of frame 4 patch at (0, 0) could not be read again (")


def test_the_cost_script_measures_the_report_with_and_without_its_index() -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert runpy.run_path(str(ROOT / "scripts" / "report_gallery_cost.py"))["main"](["--passes", "20"]) == 0
    m: dict[str, Any] = json.loads(out.getvalue())
    assert m["first_report_files_read"] == 20 and m["next_report_files_read"] == 1
    assert m["next_report_without_index_files_read"] == 21
    text = " ".join((ROOT / "docs" / "firmware_sim.md").read_text().split())
    assert "scripts/report_gallery_cost.py" in text and "`report_img/gallery_index.json`" in text
