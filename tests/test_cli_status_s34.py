"""Session 34 (p1): what an ``edgeae`` command does when it is stopped or cannot talk: SIGTERM interrupts it as
Ctrl-C does (cleanup, one line, exit 130; train, scan and ground keep their own handling), a closed or full stdout
is said as such after every file is written, ``-`` is refused as a file, an unreadable input is a data error (1),
``reconstruct`` says what it replaced, and ``ground`` prints its rejection counts as words."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeae.cli import main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def tiny(tmp_path: Path) -> Path:
    pytest.importorskip("cv2")
    from edgeae.imageio import write_image

    rng = np.random.default_rng(0)
    return write_image(tmp_path / "tiny.png", rng.integers(0, 255, (32, 32), dtype=np.uint8))


def _recon(tiny: Path, out: Path, *more: str) -> list[str]:
    return ["reconstruct", str(tiny), "--method", "nearest", "--keep", "0.5", "-o", str(out), *more]


# ----------------------------------------------------------------------------------------- SIGTERM (item 2)
SLOW_RECONSTRUCT = """
import sys, time
import edgeae.cli.reconstruct as r
def slow(*a, **k):
    print("ready", file=sys.stderr, flush=True)
    time.sleep(60)
r.check_memory = slow
from edgeae.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_sigterm_interrupts_a_command_as_ctrl_c_does(tmp_path: Path, tiny: Path) -> None:
    """The command's cleanup runs (the output folders it made are removed), one line names SIGTERM, exit 130
    (it was killed at 143 with the empty folders left)."""
    out = tmp_path / "made" / "deeper" / "x.png"
    p = subprocess.Popen(
        [sys.executable, "-c", SLOW_RECONSTRUCT, *_recon(tiny, out)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert p.stderr is not None
    try:
        assert p.stderr.readline().strip() == "ready"  # past the output checks: the folders are made
        assert out.parent.is_dir()
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=30)
    finally:
        p.kill()
    assert p.returncode == 130, err
    assert "edgeae reconstruct: interrupted (SIGTERM)" in err and "Traceback" not in err
    assert not (tmp_path / "made").exists()


@pytest.mark.parametrize("command", ["train", "scan", "ground"])
def test_commands_with_their_own_sigterm_handling_keep_it(command: str) -> None:
    from edgeae.cli import _sigterm_as_interrupt

    before = signal.getsignal(signal.SIGTERM)
    restore = _sigterm_as_interrupt(command, [])
    assert signal.getsignal(signal.SIGTERM) is before  # train exits 143 by design; scan and ground install theirs
    restore()
    restore = _sigterm_as_interrupt("score", [])
    assert signal.getsignal(signal.SIGTERM) is not before
    restore()
    assert signal.getsignal(signal.SIGTERM) is before


# ------------------------------------------------------------------------------------------- stdout (item 5)
class _Broken:
    """A stdout that fails every write as ``exc`` does."""

    def __init__(self, exc: OSError) -> None:
        self.exc = exc

    def write(self, text: str) -> int:
        raise self.exc

    def flush(self) -> None:
        pass


@pytest.mark.parametrize(
    ("exc", "said"),
    [
        (OSError(28, "No space left on device"), "cannot write to stdout: No space left on device"),
        (BrokenPipeError(32, "Broken pipe"), "stdout closed"),
    ],
)
def test_a_full_or_closed_stdout_is_said_and_loses_no_file(
    tmp_path: Path,
    tiny: Path,
    exc: OSError,
    said: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out, js = tmp_path / "o" / "x.png", tmp_path / "o" / "m.json"
    monkeypatch.setattr(sys, "stdout", _Broken(exc))
    assert main(_recon(tiny, out, "--metrics-json", str(js))) == 1
    err = capsys.readouterr().err
    assert f"edgeae reconstruct: error: {said}" in err and "Errno" not in err
    assert out.is_file() and js.is_file()  # the JSON was lost when the summary came first


RUN_MAIN = "import sys; from edgeae.cli import main; sys.exit(main(sys.argv[1:]))"


def test_a_closed_pipe_on_stdout_in_a_real_process(tmp_path: Path, tiny: Path) -> None:
    read, write = os.pipe()
    os.close(read)  # the reader stopped before the first line (| true)
    js = tmp_path / "m.json"
    cmd = [sys.executable, "-c", RUN_MAIN, *_recon(tiny, tmp_path / "x.png", "--metrics-json", str(js))]
    try:
        done = subprocess.run(cmd, cwd=REPO, stdout=write, stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write)
    assert done.returncode == 1 and "stdout closed" in done.stderr and js.is_file()
    assert "Exception ignored" not in done.stderr


# --------------------------------------------------------------------------------------------- "-" (item 6)
@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["score", "-", "-o", "s.csv"], "IMAGE"),
        (["score", "g.png", "-o", "-"], "-o/--output/--out"),
        (["reconstruct", "g.png", "--method", "nearest", "-o", "x.png", "--metrics-json", "-"], "--metrics-json"),
        (["reconstruct", "-", "-o", "x.png"], "IMAGE"),
        (["ground", "decode", "-", "--out", "d"], "PACKETS"),
        (["scan", "-", "--out", "d"], "ARCHIVE"),
    ],
)
def test_dash_is_refused_naming_stdin_and_stdout(
    tmp_path: Path, argv: list[str], flag: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "-").write_bytes(b"\x00" * 64)  # a file named "-" was read (ground decode) or written over
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"error: {flag} -: reading stdin or writing stdout is not supported: give a file" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["-"] and (tmp_path / "-").read_bytes() == b"\x00" * 64


# ------------------------------------------------------------------------------ unreadable input (item 7)
def test_an_unreadable_sole_input_is_a_data_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("cv2")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"notapng")
    assert main(["reconstruct", str(bad), "--method", "nearest", "-o", str(tmp_path / "o" / "x.png")]) == 1
    assert main(["downlink", "simulate", "--image", str(bad), "--out", str(tmp_path / "d" / "rx.bin")]) == 1
    err = capsys.readouterr().err
    assert err.count("bad.png: not a PNG, JPEG, PNM or TIFF file") == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.png"]  # the folders made are removed again
    # a missing file stays a usage error
    assert main(["reconstruct", str(tmp_path / "none.png"), "--method", "nearest", "-o", "x.png"]) == 2


# ---------------------------------------------------------------------------- reconstruct reruns (item 10)
def test_reconstruct_says_what_it_replaced_and_names_an_earlier_runs_extras(
    tmp_path: Path, tiny: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, js = tmp_path / "x.png", tmp_path / "m.json"
    assert main(_recon(tiny, out, "--metrics-json", str(js), "--save-masked")) == 0
    assert "replaced" not in capsys.readouterr().err
    assert main(_recon(tiny, out, "--metrics-json", str(js))) == 0
    err = capsys.readouterr().err
    assert f"replaced {out} and {js} of an earlier run" in err
    assert f"kept {tmp_path / 'x.masked.png'} (--save-masked): left by an earlier run" in err
    assert (tmp_path / "x.masked.png").is_file()  # named, not removed


# --------------------------------------------------------------------------------- ground counts (item 11)
def test_ground_prints_rejections_as_words(capsys: pytest.CaptureFixture[str]) -> None:
    from edgeae.cli.ground_output import print_report

    stream = {
        "packets_received": 5, "packets_accepted": 3, "duplicates": 0, "rejected": {"crc": 1, "length": 1},
        "sequence": {},
    }  # fmt: skip
    print_report({"stream": stream, "products": {}})
    line = capsys.readouterr().out.splitlines()[0]
    assert line.endswith("rejected: crc 1, length 1") and "{" not in line


def test_a_missing_original_is_a_usage_error_not_a_data_error(
    tmp_path: Path, tiny: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A wrong path is refused before any work (2), as the exit-status table says; an unreadable file is 1 (review
    r5: ground decode --original of a missing file had become 1)."""
    from edgeae.wire.packets import packetise
    from edgeae.wire.products import SparseFrame
    from edgeae.wire.stream import write_packet_file

    frame = SparseFrame(0, 4, 4, 1, 8, 1.0, "uniform", 3, 1, np.arange(16, dtype=np.uint8).reshape(16, 1))
    rx = tmp_path / "rx.bin"
    write_packet_file(rx, [(0.0, p) for p in packetise(frame)])
    args = ["ground", "decode", str(rx), "--out", str(tmp_path / "g")]
    assert main([*args, "--original", str(tmp_path / "nonexistent.png")]) == 2
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.png"
    bad.write_bytes(tiny.read_bytes()[:40])  # truncated: a data error
    assert main([*args, "--original", str(bad)]) == 1


def test_ground_warning_lines_print_their_counts_as_words(capsys: pytest.CaptureFixture[str]) -> None:
    from edgeae.cli.ground_output import print_report

    stream = {
        "packets_received": 9, "packets_accepted": 3, "duplicates": 0, "rejected": {"session_limit": 4},
        "sequence": {"sparse": {"count_conflicts": 2}},
    }  # fmt: skip
    print_report({"stream": stream, "products": {}})
    warnings = [line for line in capsys.readouterr().out.splitlines() if line.startswith("WARNING")]
    assert any("station's limits (session_limit 4)" in w for w in warnings)
    assert any("other contents (sparse 2)" in w for w in warnings)
    assert not any("{" in w for w in warnings)


def test_firmware_sim_refuses_dash_and_takes_verbose_after_its_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from edgeae.firmware_sim.cli import build_parser
    from edgeae.firmware_sim.cli import main as fsim

    (tmp_path / "-").write_text("not a frame")  # an existing file named - is neither read nor overwritten
    assert fsim(["bench", "--model", "orbital-gray-vae", "--json", "-"]) == 2
    assert fsim(["report", "-"]) == 2
    err = capsys.readouterr().err
    assert "--json -: reading stdin or writing stdout is not supported" in err and "report: error: DIR -:" in err
    assert (tmp_path / "-").read_text() == "not a frame"
    p = build_parser()
    assert p.parse_args(["missions", "-v"]).verbose is True and p.parse_args(["-v", "missions"]).verbose is True
    assert p.parse_args(["missions"]).verbose is False
