"""``firmware-sim report`` on a folder that is not a run folder says so in one line before it makes its lock file
there (session 36, fixer i6; review r18 #3): since c1f3a71 a non-run folder that cannot be written (``/proc/self``)
gave the lock file's errno instead of "holds no summary.json ..."."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from edgeae.firmware_sim.cli import main
from edgeae.firmware_sim.mission import MissionError
from edgeae.firmware_sim.report_inputs import check_run_folder

NOT_RUN = "holds no summary.json, telemetry.jsonl or queue/index.json"


def test_a_folder_with_no_run_files_is_refused_before_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    taken: list[Path] = []

    @contextlib.contextmanager
    def unwritable(out: Path, who: str) -> Iterator[None]:  # a folder whose lock file cannot be made
        taken.append(out)
        raise FileNotFoundError(2, "No such file or directory", str(out / ".edgeae.lock"))
        yield None

    monkeypatch.setattr("edgeae.folder_lock.hold", unwritable)
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert NOT_RUN in err and ".edgeae.lock" not in err and len(err.splitlines()) == 1
    assert taken == []
    assert list(tmp_path.iterdir()) == []


def test_check_run_folder_names_the_run_files(tmp_path: Path) -> None:
    with pytest.raises(MissionError, match=NOT_RUN):
        check_run_folder(tmp_path)
    (tmp_path / "queue").mkdir()
    with pytest.raises(MissionError, match=NOT_RUN):  # a queue folder without its index is not a run's
        check_run_folder(tmp_path)
    (tmp_path / "queue" / "index.json").write_text("{}")
    check_run_folder(tmp_path)


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs Linux's /proc")
def test_report_on_proc_self_says_it_is_not_a_run_folder(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "/proc/self"]) == 2
    err = capsys.readouterr().err
    assert NOT_RUN in err and "Errno" not in err
