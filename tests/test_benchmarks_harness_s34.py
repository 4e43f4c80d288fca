"""The benchmark harness (`python -m benchmarks`) of the session-34 audit: a stage runs in a staging folder and is
published only when it succeeded; a failure, Ctrl-C, a quick run over a full-size record, missing data, an
unwritable or corrupt --out leave the published results as they were. Stages here are tiny `python -c` commands."""

from __future__ import annotations

import errno
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

import benchmarks.__main__ as bm
from benchmarks.__main__ import PY, Stage, main
from benchmarks.machine import COMMIT_ENV, THREAD_VARS, _commit, thread_settings
from benchmarks.report import write_results

ROOT = Path(__file__).resolve().parents[1]


def _fake_machine() -> dict:
    return {"date": "2026-12-08T00:00:00+00:00", "commit": "abc1234", "cpu": "Test CPU", "logical_cores": 2,
            "gpu": None, "cpu_flags": ["avx", "avx2", "fma"], "versions": {"numpy": "2.0"}}  # fmt: skip


def _code(*lines: str) -> str:
    """A `python -c` body with ``out`` (the folder the harness gives the stage) and ``Path`` defined."""
    return "\n".join(["import os, sys, signal", "from pathlib import Path", "out = Path(sys.argv[1])", *lines])


WRITE = _code(
    "out.mkdir(parents=True, exist_ok=True)",
    "(out / 'results.md').write_text(sys.argv[2])",
    "(out / 'cases.json').write_text('{\"cases\": ' + sys.argv[3] + '}')",
    "print('stage says hello')",
)


@pytest.fixture
def stages(monkeypatch: pytest.MonkeyPatch):
    """Replace the stage table with the given stages (name -> Stage); the machine record is a fixed fake."""
    monkeypatch.setattr(bm, "machine_info", _fake_machine)
    monkeypatch.setattr("benchmarks.stage_run.wait_for_quiet", lambda **kw: {"load_at_start": 0.2, "quiet": True})

    def make(**table: Stage) -> None:
        monkeypatch.setattr(bm, "STAGES", table)

    return make


def _stage(code: str, *args: str, **flags: bool) -> Stage:
    cmd = (PY, "-c", code, "{out}", *args)
    return Stage("Demo stage", (cmd,), (cmd,), **flags)


def _good_run(out: Path, stages, table: str = "| good | 60 cases |") -> None:
    stages(demo=_stage(WRITE, table, "60"))
    assert main(["--only", "demo", "--out", str(out)]) == 0


def _published(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and ".work" not in p.parts}  # fmt: skip


# ------------------------------------------------------------------------------------------ items 1, 2, 13
def test_a_failed_rerun_keeps_the_good_results_and_record_and_says_so(
    tmp_path: Path, stages, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "results"
    _good_run(out, stages)
    before = _published(out)
    good = json.loads((out / "stages.json").read_text())["demo"]
    # the rerun deletes its old table first (as frame_costs and edgeae evaluate do), writes a partial JSON, fails
    fail = _code("(out / 'results.md').unlink()", "(out / 'cases.json').write_text('{\"cases\": 12}')",
                 "print('48 cases failed')", "sys.exit(3)")  # fmt: skip
    stages(demo=_stage(fail))
    capsys.readouterr()
    assert main(["--only", "demo", "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert "stages that failed: ['demo']" in captured.err and "its published results are unchanged" in captured.err
    after = _published(out)
    for rel in ("demo/results.md", "demo/cases.json"):
        assert after[rel] == before[rel]  # neither overwritten by the partial run nor deleted
    record = json.loads((out / "stages.json").read_text())["demo"]
    failure = record.pop("last_failure")
    assert record == good  # the good run's record as it was
    assert failure["returncode"] == 3 and failure["commit"] == "abc1234" and failure["size"] == "quick"
    assert failure["commands"] == [f"python -c {fail} {out / 'demo'}"]
    log = Path(failure["log"])
    assert log.is_file() and "48 cases failed" in log.read_text()  # the log the banner names exists
    assert "48 cases failed" in captured.out  # and the output was shown too
    staging = Path(failure["staging"])
    assert (staging / "cases.json").read_text() == '{"cases": 12}'  # left for inspection
    page = (out / "RESULTS.md").read_text()
    assert "| good | 60 cases |" in page  # the good table stays on the page
    assert "**FAILED: the last run of this stage exited with status 3** (the quick run of" in page
    assert f"its output is in `{log}`" in page and "Everything below is from the last run that succeeded" in page
    # a good rerun clears the note
    _good_run(out, stages, "| good again |")
    assert "last_failure" not in json.loads((out / "stages.json").read_text())["demo"]
    assert "FAILED" not in (out / "RESULTS.md").read_text()


def test_a_failed_first_run_is_recorded_failed_with_its_log(tmp_path: Path, stages) -> None:
    out = tmp_path / "results"
    stages(demo=_stage(_code("out.mkdir(parents=True, exist_ok=True)", "(out / 'results.md').write_text('| p |')",
                             "sys.exit(1)")))  # fmt: skip
    assert main(["--only", "demo", "--out", str(out)]) == 1
    record = json.loads((out / "stages.json").read_text())["demo"]
    assert record["returncode"] == 1 and record["files"] == [] and Path(record["log"]).is_file()
    assert not (out / "demo" / "results.md").exists()
    page = (out / "RESULTS.md").read_text()
    assert "**FAILED: the last run of this stage exited with status 1** (its output is in `" in page
    assert page.count("| p |") == 1  # in its command only: nothing it wrote is shown


# ------------------------------------------------------------------------------------------ item 3
@pytest.mark.parametrize("how", ["the command gets SIGINT", "Ctrl-C in the harness"])
def test_an_interrupted_stage_leaves_everything_as_it_was_and_exits_130(
    tmp_path: Path, stages, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], how: str
) -> None:
    out = tmp_path / "results"
    _good_run(out, stages)
    (out / "machine.json").write_text('{"commit": "old"}')  # the previous run's
    before = _published(out)
    stages(demo=_stage(_code("(out / 'results.md').unlink()", "(out / 'cases.json').write_text('{}')",
                             "os.kill(os.getpid(), signal.SIGINT)")))  # fmt: skip
    if how == "Ctrl-C in the harness":

        def ctrl_c(*args: object) -> int:
            raise KeyboardInterrupt

        monkeypatch.setattr("benchmarks.stage_run.run_command", ctrl_c)
    capsys.readouterr()
    assert main(["--only", "demo", "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert (
        err.strip()
        .splitlines()[-1]
        .startswith("interrupted during stage demo: its published results and record are unchanged")
    )
    after = _published(out)
    assert after.pop("RESULTS.md").endswith(b"\n\n| good | 60 cases |\n")  # the good table, still shown
    assert after == {k: v for k, v in before.items() if k != "RESULTS.md"}  # machine.json and stages.json too


def test_ctrl_c_outside_a_stage_is_one_line(stages, monkeypatch: pytest.MonkeyPatch, capsys, tmp_path: Path) -> None:
    def ctrl_c(*args: object, **kw: object) -> None:
        raise KeyboardInterrupt

    stages(demo=_stage(WRITE, "t", "1"))
    monkeypatch.setattr(bm, "machine_info", ctrl_c)
    assert main(["--only", "demo", "--out", str(tmp_path)]) == 130
    assert capsys.readouterr().err.strip() == "interrupted: no stage was running; published results are unchanged"


# ------------------------------------------------------------------------------------------ item 4
def test_a_quick_run_never_replaces_a_full_size_record(tmp_path: Path, stages, capsys) -> None:
    out = tmp_path / "results"
    stages(demo=_stage(WRITE, "| full |", "60"))
    assert main(["--only", "demo", "--full", "--out", str(out)]) == 0
    before = _published(out)
    marker = tmp_path / "ran"
    quick = _code(f"Path({str(marker)!r}).write_text('x')", "(out / 'results.md').write_text('| quick |')")
    stages(demo=_stage(quick))
    capsys.readouterr()
    # a plain run (every stage) does not even run it
    assert main(["--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "kept the full-size results of demo (give --full to replace them" in said and not marker.exists()
    # --only runs it, and leaves its output in the staging folder
    assert main(["--only", "demo", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    staging = out / ".work" / "staging" / "demo"
    assert f"this quick run's output is in {staging}" in said and marker.exists()
    assert (staging / "results.md").read_text() == "| quick |"
    assert _published(out)["demo/results.md"] == before["demo/results.md"]
    assert json.loads((out / "stages.json").read_text())["demo"]["size"] == "full"
    assert "| full |" in (out / "RESULTS.md").read_text()
    # --full replaces it
    assert main(["--only", "demo", "--full", "--out", str(out)]) == 0
    assert (out / "demo" / "results.md").read_text() == "| quick |"


# ------------------------------------------------------------------------------------------ item 6
def test_stages_that_need_the_data_are_skipped_without_it(
    tmp_path: Path, stages, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "results"
    _good_run(out, stages)
    record = (out / "stages.json").read_text()
    monkeypatch.setenv("EDGEAE_DATA", str(tmp_path / "no-data"))
    stages(demo=_stage(WRITE, "| new |", "1", data=True), other=_stage(WRITE, "| other |", "1"))
    capsys.readouterr()
    assert main(["--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert f"== demo: skipped: it reads the data folder, not found at {tmp_path / 'no-data'} (set EDGEAE_DATA" in said
    assert "2 stage(s): 1 published, 0 failed, 1 skipped without the data, 0 kept at full size" in said
    assert json.loads((out / "stages.json").read_text())["demo"] == json.loads(record)["demo"]
    assert (out / "demo" / "results.md").read_text() == "| good | 60 cases |"


def test_every_real_stage_is_flagged_as_reading_the_data() -> None:
    # the speed suite too: its int8 artifacts are calibrated on the data (benchmarks/artifacts.py)
    assert all(s.data for s in bm.STAGES.values())
    timed = {n for n, s in bm.STAGES.items() if s.timed}
    assert {"speed", "ratios", "lossless", "frame", "nac", "scan", "vae_form", "model_costs", "quantisation"} <= timed
    assert "gt_vs_fixed" not in timed and "anomaly" not in timed


# ------------------------------------------------------------------------------------------ item 5
@pytest.mark.parametrize(("load", "warned"), [(2.37, True), (0.4, False)])
def test_a_timed_stage_under_load_is_marked_not_to_be_quoted(
    tmp_path: Path, stages, monkeypatch: pytest.MonkeyPatch, load: float, warned: bool
) -> None:
    asked: list[dict] = []

    def wait(**kw: float) -> dict:
        asked.append(kw)
        return {"load_at_start": load, "quiet": load <= 1.0}

    out = tmp_path / "results"
    stages(demo=_stage(WRITE, "| t |", "1", timed=True), plain=_stage(WRITE, "| p |", "1"))
    monkeypatch.setattr("benchmarks.stage_run.wait_for_quiet", wait)
    assert main(["--out", str(out)]) == 0
    assert asked == [{"max_load": 1.0, "timeout_s": bm.QUIET_WAIT_S}]  # once: before the timed stage only
    status = json.loads((out / "stages.json").read_text())
    assert status["demo"].get("under_load") == (load if warned else None) and "under_load" not in status["plain"]
    page = (out / "RESULTS.md").read_text()
    assert (f"**Measured at 1-minute load {load}: timings not to be quoted.**" in page) is warned


# ------------------------------------------------------------------------------------------ item 7
@pytest.mark.parametrize("report_only", [False, True])
def test_a_read_only_out_is_refused_in_one_line(
    tmp_path: Path, stages, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], report_only: bool
) -> None:
    out = tmp_path / "ro"
    out.mkdir()
    (out / "stages.json").write_text("{}")
    stages(demo=_stage(WRITE, "t", "1"))
    out.chmod(0o555)
    if os.geteuid() == 0:  # root writes anyway: make the probe meet what a user would
        real_open = os.open

        def refusing(path: object, *a: object, **kw: object) -> int:
            if ".write-probe-" in str(path):
                raise PermissionError(errno.EACCES, "Permission denied", str(path))
            return real_open(path, *a, **kw)  # type: ignore[arg-type]

        monkeypatch.setattr(os, "open", refusing)
    try:
        with pytest.raises(SystemExit) as e:
            main(["--report-only", "--out", str(out)] if report_only else ["--only", "demo", "--out", str(out)])
    finally:
        out.chmod(0o755)
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err
    assert err.splitlines()[-1] == (
        f"python -m benchmarks: error: cannot write into {out} (Permission denied): give an --out you can write to"
    )
    assert sorted(p.name for p in out.iterdir()) == ["stages.json"]


# ------------------------------------------------------------------------------------------ item 8
@pytest.mark.parametrize(("text", "said"), [("", "cannot be read as JSON"), ("{", "cannot be read as JSON"),
                                            ("[]", "holds a JSON list, not an object"),
                                            ('{"demo": []}', "the record of demo is not an object")])  # fmt: skip
def test_a_corrupt_stages_json_is_refused_in_one_line(
    tmp_path: Path, stages, capsys: pytest.CaptureFixture[str], text: str, said: str
) -> None:
    (tmp_path / "stages.json").write_text(text)
    stages(demo=_stage(WRITE, "t", "1"))
    for argv in (["--only", "demo"], ["--report-only"]):
        with pytest.raises(SystemExit) as e:
            main([*argv, "--out", str(tmp_path)])
        err = capsys.readouterr().err
        assert e.value.code == 2 and "Traceback" not in err
        last = err.splitlines()[-1]
        assert last.startswith(f"python -m benchmarks: error: {tmp_path / 'stages.json'}") and said in last
        assert "restore it from git" in last
    assert (tmp_path / "stages.json").read_text() == text and not (tmp_path / "demo").exists()


def test_a_corrupt_machine_json_is_refused_by_report_only(tmp_path: Path, capsys) -> None:
    (tmp_path / "stages.json").write_text("{}")
    (tmp_path / "machine.json").write_text('{"commit": ')
    with pytest.raises(SystemExit) as e:
        main(["--report-only", "--out", str(tmp_path)])
    last = capsys.readouterr().err.splitlines()[-1]
    assert e.value.code == 2 and f"{tmp_path / 'machine.json'} cannot be read as JSON" in last
    assert "delete it (the next `python -m benchmarks` run writes it again)" in last


def test_stages_json_is_replaced_atomically_under_a_lock(tmp_path: Path) -> None:
    (tmp_path / "stages.json").write_text(json.dumps({"a": {"title": "A"}}))
    inode = (tmp_path / "stages.json").stat().st_ino
    done = threading.Event()

    def update() -> None:
        bm.update_record(tmp_path, "b", lambda cur: {"title": "B"})
        done.set()

    with bm.locked(tmp_path / bm.WORK / "stages.lock"):  # another run holds the lock
        t = threading.Thread(target=update)
        t.start()
        time.sleep(0.3)
        assert not done.is_set()  # it waits for the lock
    t.join(5)
    assert done.is_set()
    assert json.loads((tmp_path / "stages.json").read_text()) == {"a": {"title": "A"}, "b": {"title": "B"}}
    assert (tmp_path / "stages.json").stat().st_ino != inode  # a new file renamed into place, not rewritten
    assert sorted(p.name for p in tmp_path.iterdir()) == [".work", "stages.json"]  # no temporary file left


# ------------------------------------------------------------------------------------------ item 9
def test_runs_from_another_folder_with_the_repository_as_the_stages_working_folder(
    tmp_path: Path, stages, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "docs"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    # the stage names a script path relative to the repository, as the real stages do
    here = "(out / 'results.md').write_text(str(Path('benchmarks/__main__.py').is_file()))"
    stages(demo=_stage(_code("out.mkdir(parents=True, exist_ok=True)", here)))
    assert main(["--only", "demo", "--out", "rel"]) == 0
    assert (elsewhere / "rel" / "demo" / "results.md").read_text() == "True"
    assert sorted(p.name for p in elsewhere.iterdir()) == ["rel"]  # nothing else made in the current folder
    assert bm.DEFAULT_OUT == ROOT / "benchmarks" / "results" and bm._parser().parse_args([]).out is None


# ------------------------------------------------------------------------------------------ items 10, 11
def test_the_commit_is_taken_once_and_passed_to_the_stages(tmp_path: Path, stages) -> None:
    out = tmp_path / "results"
    probe = _code("out.mkdir(parents=True, exist_ok=True)", "from benchmarks.machine import _commit",
                  "mj = out.parents[2] / 'machine.json'",
                  "(out / 'seen.json').write_text(f'[\"{_commit()}\", {str(mj.exists()).lower()}]')")  # fmt: skip
    stages(demo=_stage(probe))
    assert main(["--only", "demo", "--out", str(out)]) == 0
    # the stage saw the harness's commit, and machine.json was not yet written while it ran
    assert json.loads((out / "demo" / "seen.json").read_text()) == ["abc1234", False]
    assert json.loads((out / "machine.json").read_text())["commit"] == "abc1234"


def test_commit_env_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(COMMIT_ENV, "f00ba47")
    assert _commit() == "f00ba47"


def test_thread_settings_are_recorded(tmp_path: Path, stages, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in THREAD_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    ts = thread_settings()
    assert ts["env"] == {"OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": None, "OPENBLAS_NUM_THREADS": None}
    assert ts["cpu_count"] == os.cpu_count() and ts["affinity"] == len(os.sched_getaffinity(0))
    out = tmp_path / "results"
    stages(demo=_stage(WRITE, "t", "1"))
    assert main(["--only", "demo", "--out", str(out)]) == 0
    assert json.loads((out / "stages.json").read_text())["demo"]["machine"]["threads"] == ts
    page = (out / "RESULTS.md").read_text()
    assert f"Threads: OMP_NUM_THREADS=3, MKL_NUM_THREADS unset, OPENBLAS_NUM_THREADS unset; {os.cpu_count()}" in page
    # the machine section shows it where machine.json recorded it, and pages of older records do not change
    (out / "machine.json").write_text(json.dumps({**_fake_machine(), "thread_settings": ts}))
    assert "- Threads: OMP_NUM_THREADS=3" in write_results(out, tmp_path / "R.md").read_text()


# ------------------------------------------------------------------------------------------ item 12
def test_exit_status_counts_only_this_commands_stages(tmp_path: Path, stages, capsys) -> None:
    out = tmp_path / "results"
    stages(demo=_stage(WRITE, "t", "1"), bad=_stage(_code("sys.exit(2)")))
    assert main(["--only", "bad", "--out", str(out)]) == 1
    capsys.readouterr()
    assert main(["--only", "demo", "--out", str(out)]) == 0
    said = capsys.readouterr()
    assert "stages that failed" not in said.err and "note: the last recorded run of bad failed" in said.out
    assert main(["--report-only", "--out", str(out)]) == 0


# ------------------------------------------------------------------------------------------ item 15
def test_help_lists_the_stages_and_a_stage_named_twice_runs_once(
    tmp_path: Path, stages, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "(default: this repository's benchmarks/results," in " ".join(text.split())  # --out's default
    for name, stage in bm.STAGES.items():
        assert f"  {name:<16}" in text and stage.title in text
    counter = tmp_path / "count"
    stages(demo=_stage(_code(f"open({str(counter)!r}, 'a').write('x')")))
    assert main(["--only", "demo", "demo", "--out", str(tmp_path / "o")]) == 0
    assert counter.read_text() == "x"


def test_help_shows_the_recorded_wall_time(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "stages.json").write_text(json.dumps({"demo": {"size": "full", "seconds": 380.2}}))
    monkeypatch.setattr(bm, "DEFAULT_OUT", tmp_path)
    monkeypatch.setattr(bm, "STAGES", {"demo": _stage("pass", timed=True), "new": _stage("pass")})
    epilog = bm._epilog()
    assert "  demo            timed  Demo stage [full 380 s]" in epilog
    assert "  new                    Demo stage [no run]" in epilog
    (tmp_path / "stages.json").write_text("[")  # unreadable: the list without times, no traceback
    assert "[no run]" in bm._epilog()


# ------------------------------------------------------------------------------------------ staging paths
def test_a_stage_that_records_its_own_command_names_the_published_folder(
    tmp_path: Path, stages, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "results"
    own = "(out / 'results.md').write_text(f'--out {sys.argv[1]} ({out.resolve()})')"
    stages(demo=_stage(_code("out.mkdir(parents=True, exist_ok=True)", own)))
    assert main(["--only", "demo", "--out", str(out)]) == 0
    assert (out / "demo" / "results.md").read_text() == f"--out {out / 'demo'} ({(out / 'demo').resolve()})"
    # inside the repository the stage is given a relative staging path; its absolute form is replaced as well
    monkeypatch.setattr("benchmarks.publish.ROOT", tmp_path)  # shown_path's ROOT
    staging, published = out / ".work" / "staging" / "demo", out / "demo"
    staging.mkdir(parents=True)
    (staging / "cmd.json").write_text(json.dumps(["--out results/.work/staging/demo", str(staging / "x.png")]))
    assert bm.promote(staging, published, {}) == (["cmd.json"], [])
    assert json.loads((published / "cmd.json").read_text()) == ["--out results/demo", str(published / "x.png")]


def test_ctrl_c_while_waiting_for_quiet_names_the_stage(
    tmp_path: Path, stages, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def ctrl_c(**kw: float) -> dict:
        raise KeyboardInterrupt

    stages(demo=_stage(WRITE, "t", "1", timed=True))
    monkeypatch.setattr("benchmarks.stage_run.wait_for_quiet", ctrl_c)
    assert main(["--only", "demo", "--out", str(tmp_path)]) == 130
    assert capsys.readouterr().err.splitlines()[-1].startswith("interrupted during stage demo: its published results")
    assert not (tmp_path / "demo").exists() and not (tmp_path / "stages.json").exists()


def test_ctrl_c_while_a_stage_is_published_publishes_it_whole_and_stops(
    tmp_path: Path, stages, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = bm.update_record

    def ctrl_c_first(*args: object) -> None:
        os.kill(os.getpid(), signal.SIGINT)  # arrives between the files and the record
        real(*args)  # type: ignore[arg-type]

    stages(demo=_stage(WRITE, "| t |", "1"), later=_stage(WRITE, "| l |", "1"))
    monkeypatch.setattr("benchmarks.stage_run.update_record", ctrl_c_first)
    assert main(["--out", str(tmp_path)]) == 130
    assert capsys.readouterr().err.splitlines()[-1] == (
        "interrupted while stage demo was being published: it was published whole; the stages after it were not run"
    )
    assert json.loads((tmp_path / "stages.json").read_text())["demo"]["files"] == ["cases.json", "results.md"]
    assert (tmp_path / "demo" / "results.md").read_text() == "| t |" and not (tmp_path / "later").exists()


# ------------------------------------------------------------------------------------------ review r2
def test_a_publishing_error_is_one_line_and_recorded(
    tmp_path: Path, stages, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A full disk while the files move into place: no traceback; the good record stays, the failure is noted."""
    import benchmarks.publish as pub

    out = tmp_path / "results"
    _good_run(out, stages)

    real = pub.shutil.copy2

    def full(src: object, dst: object, **kw: object) -> object:
        if ".tmp-" in str(dst):  # the copies beside the published files (not the staging copy's)
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real(src, dst, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(pub.shutil, "copy2", full)
    stages(demo=_stage(WRITE, "| new |", "61"))
    assert main(["--only", "demo", "--out", str(out)]) == 1
    assert "FAILED: publishing failed: No space left on device" in capsys.readouterr().err
    rec = json.loads((out / "stages.json").read_text())["demo"]
    assert rec["returncode"] == 0 and "No space left" in rec["last_failure"]["error"]
    assert "| good | 60 cases |" in (out / "demo" / "results.md").read_text()


def test_the_stages_get_the_data_folder_the_harness_found(
    tmp_path: Path, stages, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "somewhere" / "data"
    data.mkdir(parents=True)
    monkeypatch.setattr(bm, "find_data_root", lambda: data)
    monkeypatch.setattr("benchmarks.stage_run.find_data_root", lambda: data)
    monkeypatch.delenv("EDGEAE_DATA", raising=False)
    monkeypatch.setenv("EDGEAE_BENCH_ARTIFACTS", "rel/artifacts")
    said = _code(
        "out.mkdir(parents=True, exist_ok=True)",
        "env = os.environ",
        "(out / 'results.md').write_text(env['EDGEAE_DATA'] + ' ' + env['EDGEAE_BENCH_ARTIFACTS'])",
    )
    stages(demo=_stage(said, data=True))
    out = tmp_path / "results"
    assert main(["--only", "demo", "--out", str(out)]) == 0
    got, art = (out / "demo" / "results.md").read_text().split()
    assert got == str(data.resolve()) and art == os.path.abspath("rel/artifacts")


# ------------------------------------------------------------------------------------------ review r3, item 4
OLD_AND_NEW = _code(
    "out.mkdir(parents=True, exist_ok=True)",
    "(out / 'results.md').write_text(sys.argv[2] + ' --out ' + sys.argv[1])",  # names its own folder: rewritten
    "(out / 'cases.json').write_text('{\"cases\": ' + sys.argv[3] + '}')",
    "(out / 'plots').mkdir(exist_ok=True)",
    "(out / 'plots' / 'curve.png').write_bytes(sys.argv[3].encode() * 100)",
    "if sys.argv[3] == '60': (out / 'old.md').write_text('the first run only')",
    "else: (out / 'old.md').unlink(); (out / 'extra').mkdir(); (out / 'extra' / 'more.json').write_text('[]')",
)


def _failing(monkeypatch: pytest.MonkeyPatch, name: str, nth: int | None) -> list[str]:
    """Make ``pub.shutil.<name>`` / ``pub.os.<name>`` fail (a full disk) on its ``nth`` call (None: the last) that
    touches a publishing copy (``.NAME.tmp-<pid>``); returns the names of the copies it was called for."""
    import benchmarks.publish as pub

    module = pub.shutil if name == "copy2" else pub.os
    real = getattr(module, name)
    seen: list[str] = []

    def flaky(src: object, dst: object, **kw: object) -> object:
        if f".tmp-{os.getpid()}" in f"{src} {dst}":
            seen.append(Path(str(dst)).name)
            if len(seen) == (nth or 4):  # the new run publishes 4 files
                raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real(src, dst, **kw)

    monkeypatch.setattr(module, name, flaky)
    return seen


@pytest.mark.parametrize("nth", [1, 2, None], ids=["first file", "second file", "last file"])
def test_a_publishing_error_leaves_the_published_folder_exactly_as_it_was(
    tmp_path: Path, stages, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], nth: int | None
) -> None:
    out = tmp_path / "results"
    stages(demo=_stage(OLD_AND_NEW, "| good |", "60"))
    assert main(["--only", "demo", "--out", str(out)]) == 0
    before = {k: v for k, v in _published(out).items() if k.startswith("demo/")}
    assert sorted(before) == ["demo/cases.json", "demo/old.md", "demo/plots/curve.png", "demo/results.md"]
    good = json.loads((out / "stages.json").read_text())["demo"]
    copied = _failing(monkeypatch, "copy2", nth)
    stages(demo=_stage(OLD_AND_NEW, "| new |", "61"))
    capsys.readouterr()
    assert main(["--only", "demo", "--out", str(out)]) == 1
    assert len(copied) == (nth or 4)
    err = capsys.readouterr().err
    assert f"== demo: FAILED: publishing failed: No space left on device ({out / 'demo'}" in err
    assert f"; {out / 'demo'} is as it was; this run's files are in {out / '.work' / 'staging' / 'demo'}" in err
    # byte for byte, no copy left beside them, no folder made for them (extra/), the deletion not applied
    assert {k: v for k, v in _published(out).items() if k.startswith("demo/")} == before
    assert sorted(p.name for p in (out / "demo").iterdir()) == ["cases.json", "old.md", "plots", "results.md"]
    record = json.loads((out / "stages.json").read_text())["demo"]
    failure = record.pop("last_failure")
    assert record == good and failure["returncode"] == 0 and failure["partial"] is False
    assert failure["error"].startswith("publishing failed: No space left on device")
    staging = out / ".work" / "staging" / "demo"  # a whole copy of the run, for inspection
    assert (staging / "cases.json").read_text() == '{"cases": 61}' and (staging / "extra" / "more.json").is_file()
    page = (out / "RESULTS.md").read_text()
    assert "exited with status 0" not in page and "\n| good | --out" in page and "\n| new | --out" not in page
    assert "**FAILED: the last run of this stage succeeded, but publishing failed: No space left on device" in page
    assert "Everything below is from the last run that succeeded, which that failure left as it was." in page
    # the next run publishes whole, with the folder named in its text files the published one
    monkeypatch.undo()
    stages(demo=_stage(OLD_AND_NEW, "| new |", "61"))
    assert main(["--only", "demo", "--out", str(out)]) == 0
    assert (out / "demo" / "results.md").read_text() == f"| new | --out {out / 'demo'}"
    assert not (out / "demo" / "old.md").exists() and (out / "demo" / "extra" / "more.json").read_text() == "[]"
    assert "FAILED" not in (out / "RESULTS.md").read_text()


def test_a_first_publish_that_fails_is_recorded_failed(tmp_path: Path, stages, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "results"
    _failing(monkeypatch, "copy2", 2)
    stages(demo=_stage(OLD_AND_NEW, "| first |", "60"))
    assert main(["--only", "demo", "--out", str(out)]) == 1
    record = json.loads((out / "stages.json").read_text())["demo"]
    assert record["returncode"] == 1 and record["files"] == [] and record["partial"] is False
    assert record["error"].startswith("publishing failed: No space left on device") and "last_failure" not in record
    assert not (out / "demo").exists()  # the folder made for the copies is removed with them
    page = (out / "RESULTS.md").read_text()
    assert "**FAILED: the last run of this stage succeeded, but publishing failed: No space left on device" in page
    assert "exit status 0, then publishing failed: No space left on device" in page
    assert "\n| first |" not in page  # nothing of it shown


def test_an_error_while_renaming_into_place_says_the_folder_may_be_mixed(
    tmp_path: Path, stages, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "results"
    stages(demo=_stage(OLD_AND_NEW, "| good |", "60"))
    assert main(["--only", "demo", "--out", str(out)]) == 0
    _failing(monkeypatch, "replace", 2)
    stages(demo=_stage(OLD_AND_NEW, "| new |", "61"))
    assert main(["--only", "demo", "--out", str(out)]) == 1
    failure = json.loads((out / "stages.json").read_text())["demo"]["last_failure"]
    assert failure["partial"] is True
    assert not [p for p in (out / "demo").rglob("*") if ".tmp-" in p.name]  # no copy left behind
    page = (out / "RESULTS.md").read_text()
    assert "Some of its files may have replaced those of the last run that succeeded: rerun the stage." in page
    assert "which that failure left as it was" not in page


def test_promote_replaces_a_file_with_a_folder_and_a_folder_with_a_file(tmp_path: Path) -> None:
    staging, published = tmp_path / "staging", tmp_path / "published"
    for root in (staging, published):
        (root / "c").mkdir(parents=True)
        (root / "a").write_text("a file")
        (root / "c" / "d.md").write_text("in a folder")
    before = bm.snapshot(staging)
    (staging / "a").unlink()
    (staging / "a" / "b").mkdir(parents=True)
    (staging / "a" / "b" / "x.md").write_text("now a folder")
    (staging / "c" / "d.md").unlink()
    (staging / "c").rmdir()
    (staging / "c").write_text("now a file")
    assert bm.promote(staging, published, before) == (["a/b/x.md", "c"], ["a", "c/d.md"])
    assert _published(published) == {"a/b/x.md": b"now a folder", "c": b"now a file"}
    assert (staging / "a" / "b" / "x.md").is_file()  # copied, not moved
