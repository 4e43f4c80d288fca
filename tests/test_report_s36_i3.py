"""Session-36 fixer i3 (review s36 r10 #2): since df482e4 a report removes the temporary files of ``report_img/``
only when it holds the folder (``prune=True``), so the docs' "which the next report removes" said when no longer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("spacepackets")
from edgeae.firmware_sim.report import write_report
from edgeae.firmware_sim.report_gallery_index import INDEX_NAME

from edgeae.wire.layout import APIDS, COMMON, PATCH
from edgeae.wire.packets import build_packet

DOCS = Path(__file__).resolve().parents[1] / "docs" / "firmware_sim.md"


def _out(tmp_path: Path) -> tuple[Path, list[Path]]:
    """A run's folder with one pass file and two temporary index files a killed report left (whatever their pid)."""
    out = tmp_path / "out"
    body = COMMON.pack(2, 0, 0, 0, 1) + PATCH.pack(0, 0, 8, 1, 8, 0, 1.0, 0, 64)
    (out / "downlink").mkdir(parents=True)
    (out / "downlink" / "pass_00001.bin").write_bytes(build_packet(APIDS["patch"], 0, body + bytes(np.full(64, 9))))
    (out / "report_img").mkdir()
    temps = [out / "report_img" / f".{INDEX_NAME}.tmp-{pid}" for pid in (999999999, 1)]
    for t in temps:
        t.write_bytes(b"{" * 100)
    return out, temps


def test_a_report_that_holds_the_folder_removes_a_killed_index_writes_temporary_file(tmp_path: Path) -> None:
    out, temps = _out(tmp_path)
    write_report(out, {"mission": "m"}, prune=True)
    assert not any(t.exists() for t in temps) and (out / "report_img" / INDEX_NAME).is_file()


def test_a_report_that_does_not_hold_the_folder_removes_nothing(tmp_path: Path) -> None:
    """Another report's or a run's half-written file, whatever its pid says from here (another PID namespace)."""
    out, temps = _out(tmp_path)
    write_report(out, {"mission": "m"})
    assert all(t.exists() for t in temps) and (out / "report_img" / INDEX_NAME).is_file()


def test_the_docs_say_which_report_removes_the_temporary_file() -> None:
    text = " ".join(DOCS.read_text().split())
    assert (
        "which the next report that holds the folder (a run's, when its boot ends, or `firmware-sim report` once it "
        "gets the folder's lock) removes with the other temporary files of `report_img/`"
    ) in text
