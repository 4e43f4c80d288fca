"""``firmware-sim report`` reads the summary holding the folder (session 36, fixer i4; review r13 #2): read before
the lock, a run ending in between had its fresh page replaced by one built from what was read while it still ran."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("spacepackets")
from _helpers_firmware import one_frame_run
from edgeae.firmware_sim import report
from edgeae.firmware_sim.cli import main

from edgeae.folder_lock import FolderBusy, hold


@pytest.fixture
def run_folder(tmp_path: Path) -> Path:
    return one_frame_run(tmp_path, "i4", sampling=False, downlink=False)


def test_the_report_reads_the_summary_while_it_holds_the_folder(
    run_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = report.load_summary
    held: list[bool] = []

    def load(out: Path) -> tuple[dict[str, object], list[str]]:
        try:
            with hold(out, "probe"):  # a second flock of the folder: refused only while the report holds it
                held.append(False)
        except FolderBusy:
            held.append(True)
        return real(out)

    monkeypatch.setattr(report, "load_summary", load)
    assert main(["report", str(run_folder)]) == 0
    assert held == [True]


def test_a_run_that_ends_while_the_report_starts_keeps_its_page(
    run_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reviewer's race: a run holds the folder when the report starts and ends (its page written) while the
    report would read the summary. The report is refused instead of writing a page of a stale summary."""
    page = (run_folder / "report.html").read_bytes()
    real = report.load_summary
    run = hold(run_folder, "flight run")
    run.__enter__()

    def load(out: Path) -> tuple[dict[str, object], list[str]]:
        run.__exit__(None, None, None)  # the run ends here
        got = real(out)
        return {**got[0], "mission": "STALE"}, got[1]

    monkeypatch.setattr(report, "load_summary", load)
    try:
        assert main(["report", str(run_folder)]) == 2
    finally:
        run.__exit__(None, None, None)
    assert (run_folder / "report.html").read_bytes() == page
