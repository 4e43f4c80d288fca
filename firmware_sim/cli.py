"""``firmware-sim``: run a mission on frames, or benchmark an artifact on this board.

    firmware-sim run --mission rover_mastcamz --frames FRAME.png ... --out runs/fw/rover
    firmware-sim run --mission orbital_nac.toml --frames strip.tif --out runs/fw/nac --inject seu@frame0
    firmware-sim bench --model orbital-gray-vae --threads 1,2,4
    firmware-sim check --mission orbital_nac.toml --set runtime.threads=4
    firmware-sim missions

Exit status: 0 done, 1 every frame was dropped (``check``: the mission boots degraded, without a model it
names) or stdout could not be written in a command otherwise done (one line says so; a status of its own (3, 4,
130) stays, its line on stderr), 2 user error, 3 a simulated reboot stopped the run (run again with the same
``--out``), 130 interrupted (Ctrl-C or SIGTERM, any command; ``run``: the summary and report of the frames so far
are written and the same command goes on; at its end the console summary comes first, and a report.html not written
names ``firmware-sim report``), 4 the run stopped on a write it cannot go on without (the queue index on a full or
read-only disk: the file is named; the state is kept and the same command goes on). A file ``run`` cannot write at
its end (report.html, summary.json) is a WARNING naming it, and the status stays the run's: the frames are in
telemetry.jsonl and the queue. A signal after the result keeps that status; a SIGTERM the caller ignores stays
ignored.

This module holds the parser, ``main``, ``run`` and ``check``; the other commands are in :mod:`.cli_commands`,
``run``'s mission overrides in :mod:`.cli_overrides`, what it settles before the boot (``--inject``, ``--out``,
SIGTERM) in :mod:`.cli_preflight`, what it prints and writes at the end in :mod:`.cli_outputs`, how a command ends
(its status and one line) in :mod:`.cli_dispatch`, the console itself (stdout, encoding, signals) in
:mod:`.cli_console`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from edgeae._version import __version__
from edgeae.cli_conventions import VERBOSE_HELP, CommandParser

from .cli_commands import _bench, _missions, _report
from .cli_console import escape_unencodable, ignore_signals_at_exit, keep_status
from .cli_dispatch import EXIT_INTERRUPTED, _dispatch, _how
from .cli_outputs import (
    _write_outputs,
    advice_lines,
    check_lines,
    interrupted_by,
    passes_skipped_lines,
    print_lines,
    say,
)
from .cli_overrides import _check_named_model as _check_named_model  # tests call it from here
from .cli_overrides import _mission_for
from .cli_preflight import _check_inject, _check_out_folder, _frame_types, _sigterm_as_ctrl_c
from .cli_run_end import EXIT_ALL_DROPPED as EXIT_ALL_DROPPED
from .cli_run_end import run_status
from .faults import SimulatedReboot
from .mission import Mission, MissionError
from .mission_sections import ARTIFACT_FORMATS

if TYPE_CHECKING:
    from .frames import FrameList
    from .loop import FlightRuntime

EXIT_DEGRADED = 1  # check: the mission boots, but without a model it names (refused, or no interpreter for it)
EXIT_REBOOT = 3
EXIT_STORAGE = 4  # run: a write the loop cannot go on without failed (a full or read-only disk), after it began


def _run(args: argparse.Namespace) -> int:
    received = getattr(args, "_received", None)  # main's SIGTERM handler records into it
    if received is not None:
        return _run_mission(args, received)
    received = []
    restore = _sigterm_as_ctrl_c(received)  # called without main (a test's Namespace)
    try:
        return _run_mission(args, received)
    finally:
        restore()


def _run_mission(args: argparse.Namespace, signals: list[str]) -> int:
    from .boot_memory import largest_files, tiff_reader_bytes
    from .frames import collect_frames
    from .loop import FlightRuntime
    from .queue import IndexNotSaved
    from .state import StateNotSaved
    from .telemetry import TelemetryNotWritten

    _check_inject(args)
    mission = _mission_for(args)
    _check_out_folder(Path(args.out))
    found = collect_frames(args.frames)
    for note in found.empty:
        say(f"firmware-sim: --frames {note}", err=True)
    if not found.files:
        raise MissionError("no frames: --frames names no frame files")
    if len(found.missing) == len(found.files):  # refused before the boot: nothing created, nothing in a ledger
        n = len(found.missing)
        gone = ", ".join(found.missing[:3]) + (f" and {n - 3} more" if n > 3 else "")
        raise MissionError(f"no frames: --frames names no file that exists ({gone} {_does(n)} not exist)")
    try:  # the folder stays held until the report is written (rt.release below): no other run writes it meanwhile
        types = {Path(f).suffix.lower() for f in found.files}  # only their decoders are loaded at boot
        largest = largest_files(found.files)  # their decode is planned with the largest file's bytes (stat only)
        tiff_held = tiff_reader_bytes(found.files)  # a TIFF's reader as its header says (headers only)
        rt = FlightRuntime(
            mission,
            args.out,
            inject=args.inject or (),
            progress=args.progress,
            keep_held=True,
            frame_types=types,
            frame_bytes=largest,
            reader_bytes=tiff_held,
            fresh=args.fresh,  # the state removed once the boot holds the folder
        )
    except (IndexNotSaved, TelemetryNotWritten, StateNotSaved) as exc:  # the state cannot be written: not a user error
        say(
            f"firmware-sim: the boot could not write its state in {args.out}: {exc}; once there is room, run the "
            "same command again to go on",
            err=True,
        )
        return EXIT_STORAGE
    try:
        return _fly(rt, args, found, mission, signals)
    finally:
        rt.release()


def _fly(rt: FlightRuntime, args: argparse.Namespace, found: FrameList, mission: Mission, signals: list[str]) -> int:
    """Run the booted mission on the frames and write its outputs (the caller holds the folder throughout)."""
    from .loop import RunInterrupted, StorageFailed

    for warning in rt.boot_warnings:
        say(f"WARNING: {warning}", err=True)
    try:
        summary = rt.run(found.files, inputs=found.notes())
    except SimulatedReboot as exc:  # on stderr, as every status line: a stdout closed or full cannot lose it
        say(f"firmware-sim: {exc}; state kept in {args.out}: run again with the same --out to recover", err=True)
        return EXIT_REBOOT
    except StorageFailed as failed:  # the run began: not a user error
        _write_outputs(failed.summary, args.out, prune=rt.held)
        say(
            f"firmware-sim: stopped after {failed.frames_done} frame(s) of this run: {failed}; state kept in "
            f"{args.out}: once there is room, run the same command again to go on",
            err=True,
        )
        return EXIT_STORAGE
    except RunInterrupted as stop:
        _write_outputs(stop.summary, args.out, prune=rt.held)
        say(
            f"firmware-sim: interrupted{' by ' + signals[0] if signals else ''} after {stop.frames_done} frame(s) of "
            f"this run; state kept in {args.out}: "
            "run the same command again to go on (the interrupted frame is taken again)",
            err=True,
        )
        return EXIT_INTERRUPTED
    stopped = None
    try:
        advice = advice_lines(summary, rt.records, mission, rt.rss_loaded - rt.rss_boot)
        advice += passes_skipped_lines(rt.queue.passes_skipped)
    except KeyboardInterrupt as stop:  # every frame done: the summary is printed, the page not written (named)
        advice, stopped = [], interrupted_by(stop)
    held: list[str] = []  # a signal while the console summary prints: it ends first
    not_written = _write_outputs(summary, args.out, advice, prune=rt.held, stopped=stopped, held=held) or {}
    return run_status(summary, args.out, not_written, early=stopped is not None, held=held)


def _does(n: int) -> str:
    return "does" if n == 1 else "do"


def _prefer(text: str) -> str:
    """``bench --prefer``: comma-separated artifact formats, each once."""
    names = [f.strip() for f in text.split(",") if f.strip()]
    bad = [f for f in names if f not in ARTIFACT_FORMATS]
    if not names or bad or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(
            f"takes comma-separated artifact formats of {', '.join(ARTIFACT_FORMATS)}, each once, e.g. tflite,onnx; "
            f"got {text!r}"
        )
    return ",".join(names)


def _check(args: argparse.Namespace) -> int:
    """``firmware-sim check``: boot the mission in a temporary folder, print the plan, keep nothing."""
    import tempfile

    from .boot_memory import told_file_bytes
    from .loop import FlightRuntime

    _check_inject(args)
    types = _frame_types(args.frame_type)
    sizes, mission = told_file_bytes(args.frame_bytes, types), _mission_for(args)
    with tempfile.TemporaryDirectory(prefix="firmware-sim-check-") as tmp:
        rt = FlightRuntime(mission, Path(tmp) / "out", inject=args.inject or (), frame_types=types, frame_bytes=sizes)
        try:
            print_lines(check_lines(rt))  # WARNING lines on stderr, the report on stdout
        finally:
            rt.close()
    return EXIT_DEGRADED if rt.models.refused else 0  # a run would fly, without the refused model


def _mission_arguments(r: argparse.ArgumentParser) -> None:
    """The options that choose and change a mission (``run`` and ``check``)."""
    r.add_argument(
        "--mission", required=True, metavar="MISSION",
        help="a shipped mission name (rover_mastcamz, orbital_nac; see firmware-sim missions) or a mission TOML file",
    )  # fmt: skip
    r.add_argument(
        "--anomaly-model", metavar="MODEL",
        help="replace the mission's anomaly model: a zoo name (orbital-gray-vae, rover-rgb-gtcae) or an "
        ".onnx / .ort / .tflite artifact",
    )  # fmt: skip
    r.add_argument(
        "--recon-model", metavar="MODEL",
        help="replace the mission's onboard reconstruction model: a zoo name or an artifact path",
    )  # fmt: skip
    r.add_argument(
        "--threads",
        type=int,
        help="threads (replaces [runtime] threads): VAE scoring runs that many one-thread interpreters, the other "
        "models one interpreter of that many threads",
    )
    r.add_argument("--frame-ms", type=float, help="per-frame deadline in ms (replaces [budget] frame_ms)")
    r.add_argument(
        "--set", action="append", metavar="SECTION.KEY=VALUE",
        help="replace any mission field, e.g. --set camera.height=591 or --set anomaly.top_k=4 (repeatable)",
    )  # fmt: skip
    r.add_argument(
        "--inject", action="append", metavar="FAULTS",
        help="inject faults: seu, corrupt-model, late, bad-frame or reboot at a frame, e.g. "
        "seu@frame3,late@frame5:800 (repeatable)",
    )  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="firmware-sim",
        description="The flight-like runtime: run a mission's frame loop (sample, score, queue, downlink) within "
        "its memory, time and downlink budgets, or benchmark a model artifact on this board. numpy and one "
        "interpreter (onnxruntime or ai-edge-litert); never PyTorch.",
        epilog="Exit status: 0 done, 1 every frame was dropped (check: boots degraded) or stdout closed or full "
        "in a command otherwise done (one line says so: 'stdout closed' / 'cannot write to stdout'; run's files are "
        "written first; a status of its own (3, 4, 130) stays, its line on stderr), 2 user error, 3 a simulated "
        "reboot stopped the run (run it again with the same --out), 130 interrupted by Ctrl-C or SIGTERM, any "
        "command (one 'interrupted' line; run: state kept, the same command goes on; at the run's end the summary "
        "is printed first, and when report.html is not written firmware-sim report DIR writes it), 4 run stopped on "
        "a storage error it cannot go on without (a full or read-only disk; the file is named; state kept). A file "
        "run cannot write at its end (report.html, summary.json) is a WARNING naming it; the status stays the run's. "
        "A signal after the command's result is decided ends it with that status; a SIGTERM the caller ignores stays "
        "ignored.",
    )
    p.add_argument("--version", action="version", version=f"firmware-sim (edgeae {__version__})")
    p.add_argument("-v", "--verbose", action="store_true", help=VERBOSE_HELP)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=CommandParser)
    r = sub.add_parser(
        "run",
        help="run a mission's frame loop on frames; writes summary.json, telemetry and report.html",
        description="Run the mission's frame loop on the frames: validate each frame, sample its pixels with "
        "the seeded mask, score its patches, queue the products by priority and downlink them in passes, "
        "degrading when a frame would miss its deadline. Writes OUT/summary.json (every frame downlinked, "
        "queued or dropped, with the reason), OUT/telemetry.jsonl, OUT/downlink/pass_*.bin (CCSDS packets) "
        "and OUT/report.html. The camera size is set by the mission ([camera] height and width); use "
        "--set camera.height=H --set camera.width=W for other frames, or 0 for any size.",
    )
    r.add_argument(
        "--frames", nargs="+", required=True, metavar="PATH",
        help="frame files or folders: PNG, JPEG, PGM/PPM/PNM, TIFF/BigTIFF (streamed in strips), or .npy arrays",
    )  # fmt: skip
    r.add_argument(
        "--out", required=True, metavar="DIR",
        help="output folder; also the persistent state (queue, ledger): reuse it after a reboot",
    )  # fmt: skip
    _mission_arguments(r)
    r.add_argument("--progress", action="store_true", help="show a progress bar for each streamed frame")
    r.add_argument(
        "--fresh",
        action="store_true",
        help="discard the mission state in --out (queue, frame ledger, passes, telemetry) and start over; without "
        "it a rerun into the same folder continues that mission (frames already acquired are not taken again)",
    )
    r.set_defaults(_fn=_run)
    c = sub.add_parser(
        "check",
        help="validate a mission without running it: every boot-time check, then the plan; writes nothing",
        description="Do every check a run does at boot without taking a frame: parse the mission and its "
        "overrides, load and verify the models (golden hash, kind, channels, patch and tile size), measure what "
        "the loaded interpreters hold, and for a fixed-size camera check the buffers against [budget] "
        "memory_bytes and the packets a frame needs. Prints the plan; exit status 0 when the mission would "
        "boot (also under a WARNING that frames would be dropped), 1 when it would boot degraded (a model it "
        "names refused, e.g. no installed interpreter runs it: a run flies without it), 2 when it would be "
        "refused. Writes nothing (the boot runs in a temporary folder).",
    )
    _mission_arguments(c)
    c.add_argument(
        "--frame-type", action="append", metavar="SUFFIX",
        help="the frame file types the run will read, e.g. --frame-type .jpg (repeatable; a run takes them from "
        "--frames): only their decoders load, as in the run, and the plan is theirs (PNG, JPEG and PNM frames are "
        "decoded whole); default: every type, each verdict shown",
    )  # fmt: skip
    c.add_argument(
        "--frame-bytes", type=int, metavar="N",
        help="the largest PNG, JPEG or PNM frame file's bytes (a run takes them from --frames), held beside its "
        "decoded image; default: that image's bytes + 1/64 + 64 KiB (no compression), as the plan says",
    )  # fmt: skip
    c.set_defaults(_fn=_check)
    b = sub.add_parser(
        "bench",
        help="benchmark a model artifact: latency per stage, throughput, memory",
        description="Benchmark one model on this board at each thread count: the time of every onboard stage "
        "(sample, normalise, infer, score, scrub, packetise) as p50/p90/p99, patches per second and the "
        "memory peak. Prints a table; --json also writes every number to a file.",
    )
    b.add_argument(
        "--model", required=True, metavar="MODEL",
        help="a zoo name (its shipped artifact for the installed interpreter) or an .onnx / .ort / .tflite file",
    )  # fmt: skip
    b.add_argument(
        "--threads",
        default="1,2",
        help="comma-separated thread counts to compare (default 1,2): intra-op threads of ONE interpreter; a "
        "mission's [runtime] threads = N scores with a VAE on N one-thread interpreters instead (firmware-sim run)",
    )
    b.add_argument("--batch", type=int, default=16, help="patches per model call (1-1024, default 16)")
    b.add_argument("--iters", type=int, default=30, help="timed repetitions of each stage (1-10000, default 30)")
    b.add_argument(
        "--frame-height", type=int, default=1200,
        help="frame height for the sampling stage (default 1200; each side at most 65536 px, 2^28 px in all)",
    )  # fmt: skip
    b.add_argument("--frame-width", type=int, default=1648, help="frame width for the sampling stage (default 1648)")
    b.add_argument("--keep", type=float, default=0.05, help="fraction of pixels sampled, in (0, 1] (default 0.05)")
    b.add_argument(
        "--prefer", type=_prefer, metavar="FORMATS",
        help="for a zoo name: the artifact formats to take first, e.g. tflite,onnx (default: the order of the "
        "shipped mission that flies it, else onnx,tflite,ort)",
    )  # fmt: skip
    b.add_argument("--json", metavar="FILE", help="also write the full result as JSON to this file")
    b.set_defaults(_fn=_bench)
    m = sub.add_parser(
        "missions",
        help="list the shipped missions (names that --mission accepts)",
        description="List the mission files shipped with the runtime: name, camera size and channels, and what "
        "each is for. --mission takes these names or a path to a TOML file of your own.",
    )
    m.add_argument("--json", action="store_true", help="every setting of each mission as JSON")
    m.set_defaults(_fn=_missions)
    rp = sub.add_parser(
        "report",
        help="rebuild report.html of an earlier run",
        description="Write DIR/report.html again from the outputs of a firmware-sim run in DIR.",
    )
    rp.add_argument("out", metavar="DIR", help="the --out folder of a firmware-sim run")
    rp.set_defaults(_fn=_report)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """The command line (``argv``: the arguments; None: this process's own, the console entry point, which keeps
    the status once decided until the process ends: :func:`.cli_console.keep_status`)."""
    escape_unencodable()  # before argparse prints any help (its text holds ×)
    if argv is None:  # this process's command line: the status stays once the interpreter ends
        ignore_signals_at_exit()
    parser = build_parser()
    args = parser.parse_args(argv)
    from edgeae import logs

    received: list[str] = []
    restore = _sigterm_as_ctrl_c(received)  # every command: SIGTERM stops it as Ctrl-C does (130, one line)
    args._received = received
    keep: Callable[[], None] = lambda: None  # noqa: E731
    code: int | None = None
    try:
        with logs.session(args.verbose):  # third-party warnings and logs hidden unless -v
            code = _dispatch(parser, args, received)
            keep = keep_status(code)  # from here a signal ends the process with this status
        return code
    except KeyboardInterrupt:  # in the instant between the result and keep_status, or while an error line printed
        if code is None:
            say(f"firmware-sim {args.command}: interrupted{_how(received)}", err=True)
            return EXIT_INTERRUPTED
        return code
    finally:
        if argv is not None:  # called in-process (a test, a script): its own handlers back
            keep()
            restore()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
