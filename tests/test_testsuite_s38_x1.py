"""Session 38, fixer x1: ``scripts/test.sh`` runs pytest on pytest-xdist workers (two by default), and the tests that
must not run at the same time as each other share a group of ``tests/conftest.py`` (``SERIAL_GROUPS``), scheduled
by the conftest's own ``--dist loadgroup`` scheduler (pytest-xdist 3.8.0's grouping does not work with pytest 9.2's
node ids, pytest-xdist issue #1386)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import conftest
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _defined(path: Path) -> set[str]:
    return set(re.findall(r"^(?:async )?def (test_\w+)", path.read_text(), re.M))


def test_every_serial_group_pattern_names_a_test_that_exists() -> None:
    """A renamed test or file would silently leave its group (and run beside the others of it again)."""
    assert all((ROOT / f).is_file() for f in conftest.WHOLE_FILES), sorted(conftest.WHOLE_FILES)
    for group, patterns in conftest.SERIAL_GROUPS.items():
        assert patterns, group
        for pattern in patterns:
            file, _, name = pattern.partition("::")
            path = ROOT / file
            assert path.is_file(), f"{group}: {pattern}: no file {file}"
            if name != "*":
                stem = name.rstrip("*")
                found = [t for t in _defined(path) if t == stem or (name.endswith("*") and t.startswith(stem))]
                assert found, f"{group}: {pattern}: no such test in {file}"


@pytest.mark.parametrize(
    ("nodeid", "group"),
    [
        ("tests/test_scan_ray.py::test_ray_engine_matches_the_local_engine", "ray"),
        ("tests/test_report_browser.py::test_demo_report_in_a_browser", "browser"),
        ("tests/test_streaming_s37_h2.py::test_a_stop_flag_already_set_reads_no_band", "wall-clock"),
        (
            "tests/test_hostile_ground.py::test_crafted_product_is_refused_and_counted_while_others_decode[len]",
            "wall-clock",
        ),
        ("tests/test_hostile_ground.py::test_crafted_stream_peak_rss_under_1gb", "memory"),
        ("tests/test_hostile_ground.py::test_bomb_headers_are_tiny", None),
        ("tests/test_scan_ray_s35.py::test_an_actor_that_cannot_start_gets_no_image", None),
    ],
)
def test_serial_group_of_a_node_id(nodeid: str, group: str | None) -> None:
    assert conftest.serial_group(nodeid) == group


def test_the_loadgroup_scheduler_puts_a_group_in_one_work_unit() -> None:
    """One scope per group (one worker runs all of it); any other test is a scope of its own, as in xdist's
    loadgroup, and an ``xdist_group`` suffix on a node id (where xdist's own grouping works) still groups."""
    pytest.importorskip("xdist")
    config = SimpleNamespace(getvalue=lambda name: {"dist": "loadgroup", "tx": ["popen", "popen"]}[name])
    sched = conftest.pytest_xdist_make_scheduler(config, None)  # type: ignore[arg-type]
    split = sched._split_scope
    a = split("tests/test_streaming_s37_h2.py::test_a_stop_flag_already_set_reads_no_band")
    b = split("tests/test_hostile_ground.py::test_many_corrupt_packets_and_products_stay_fast")
    assert a == b == "serial group wall-clock"
    assert split("tests/test_report_browser.py::test_firmware_report_in_a_browser") == "serial group browser"
    assert split("tests/test_x.py::test_y[1]") == "tests/test_x.py::test_y[1]"
    # a file of WHOLE_FILES is one unit (its module fixture built once), except its tests of a serial group
    assert split("tests/test_export.py::test_cli_export_and_predictor") == "tests/test_export.py"
    assert split("tests/test_scan_s31.py::test_the_report_counts_in_words") == "tests/test_scan_s31.py"
    name = "tests/test_scan_s31.py::test_a_cluster_address_that_does_not_answer_is_refused_in_one_line_at_once"
    assert split(name) == "serial group wall-clock"
    assert split("tests/test_x.py::test_y@mine") == "mine"
    other = SimpleNamespace(getvalue=lambda name: "load")
    assert conftest.pytest_xdist_make_scheduler(other, None) is None  # type: ignore[arg-type]


def _pytest_argv(tmp_path: Path, *args: str, workers: str | None = None) -> tuple[int, list[str], str]:
    """The pytest parts of scripts/test.sh (its worker arguments, its pytest line), run with a stand-in
    .venv/bin/python that prints its arguments."""
    text = (ROOT / "scripts" / "test.sh").read_text()
    start = text.index("WORKERS=${EDGEAE_TEST_WORKERS")
    workers_part = text[start : text.index("\ndone\n", start) + 6]
    script = tmp_path / "pytest_part.sh"
    script.write_text("set -euo pipefail\n" + workers_part + text[text.index('echo "== pytest"') :])
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True, exist_ok=True)
    python.write_text("#!/bin/sh\nshift 2\nprintf '%s\\n' \"$@\"\n")  # drops "-m pytest"
    python.chmod(0o755)
    env = {"PATH": "/usr/bin:/bin"} | ({"EDGEAE_TEST_WORKERS": workers} if workers is not None else {})
    done = subprocess.run(
        ["bash", str(script), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30
    )
    return done.returncode, done.stdout.splitlines()[1:], done.stderr  # after "== pytest"


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash not found")
def test_test_sh_runs_two_workers_and_a_users_choice_wins(tmp_path: Path) -> None:
    xdist = ["-n", "2", "--dist", "loadgroup", "--durations=25"]
    assert _pytest_argv(tmp_path) == (0, xdist, "")
    assert _pytest_argv(tmp_path, "-m", "not slow")[1] == [*xdist, "-m", "not slow"]
    assert _pytest_argv(tmp_path, "tests/test_x.py", "-x")[1] == [*xdist, "tests/test_x.py", "-x"]
    assert _pytest_argv(tmp_path, "-m", "not speed")[1] == [*xdist, "-m", "not speed"]
    assert _pytest_argv(tmp_path, "-n", "0")[1] == [*xdist, "-n", "0"]  # the last -n wins
    assert _pytest_argv(tmp_path, workers="3")[1] == ["-n", "3", "--dist", "loadgroup", "--durations=25"]
    # one process: no worker asked for, xdist turned off, a debugger, timing benchmarks or the slow suite
    for args, workers in [((), "0"), (("-p", "no:xdist"), None), (("-pno:xdist",), None), (("--pdb",), None),
                          (("-m", "speed"), None), (("-mspeed",), None), (("-m", "slow"), None)]:  # fmt: skip
        assert _pytest_argv(tmp_path, *args, workers=workers)[1] == ["--durations=25", *args], args
    rc, argv, err = _pytest_argv(tmp_path, workers="two")
    assert rc == 2 and argv == [] and "EDGEAE_TEST_WORKERS must be a number" in err and "'two'" in err
