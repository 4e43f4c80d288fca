"""``firmware-sim report`` reads the summary holding the folder (session 36, fixer i4; review r13 #2): read before
the lock, a run ending in between had its fresh page replaced by one built from what was read while it still ran."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("spacepackets")
from edgeae.firmware_sim import report
from edgeae.firmware_sim.cli import main
from edgeae.firmware_sim.testing import textured_frame, tiny_vae_onnx

from edgeae.folder_lock import FolderBusy, hold

MISSION = """
name = "i4"
[camera]
channels = 1
strip_rows = 64
[anomaly]
model = "{model}"
patch = 32
stride = 32
top_k = 3
[budget]
frame_ms = 60000.0
"""


@pytest.fixture
def run_folder(tmp_path: Path) -> Path:
    model = tiny_vae_onnx(tmp_path / "vae.onnx", 1, 32)
    (tmp_path / "m.toml").write_text(MISSION.format(model=model))
    np.save(tmp_path / "f0.npy", textured_frame(0))
    out = tmp_path / "out"
    args = ["run", "--mission", str(tmp_path / "m.toml"), "--frames", str(tmp_path / "f0.npy"), "--out", str(out)]
    assert main(args) == 0
    return out


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
