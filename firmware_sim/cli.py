"""``firmware-sim``: run a mission on frames, or benchmark an artifact on this board.

    firmware-sim run --mission rover_mastcamz --frames FRAME.png ... --out runs/fw/rover
    firmware-sim run --mission orbital_nac.toml --frames strip.tif --out runs/fw/nac --inject seu@frame0
    firmware-sim bench --model orbital-gray-vae --threads 1,2,4
    firmware-sim missions

Exit status: 0 done, 1 every frame was dropped, 2 user error, 3 a simulated reboot stopped the run (run
again with the same ``--out``), 130 interrupted (Ctrl-C; the summary and report of the frames so far are written
and the same command goes on).
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .faults import FaultSpecError, SimulatedReboot
from .mission import MissionError, load_mission

EXIT_ALL_DROPPED = 1
EXIT_REBOOT = 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a Ctrl-C


def _run(args: argparse.Namespace) -> int:
    from .frames import collect_frames
    from .loop import FlightRuntime, RunInterrupted
    from .state import discard_state

    mission = _mission_with_overrides(args)
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise MissionError(f"--out {args.out} is an existing file; name a folder for the run's output and state")
    found = collect_frames(args.frames)
    for note in found.empty:
        print(f"firmware-sim: --frames {note}", file=sys.stderr)
    if not found.files:
        raise MissionError("no frames: --frames names no frame files")
    if args.fresh:
        discard_state(Path(args.out))
    rt = FlightRuntime(mission, args.out, inject=args.inject or (), progress=args.progress)
    try:
        summary = rt.run(found.files, inputs=found.notes())
    except SimulatedReboot as exc:
        print(f"firmware-sim: {exc}; state kept in {args.out}: run again with the same --out to recover")
        return EXIT_REBOOT
    except RunInterrupted as stop:
        _write_outputs(stop.summary, args.out)
        print(
            f"firmware-sim: interrupted after {stop.frames_done} frame(s) of this run; state kept in {args.out}: "
            "run the same command again to go on (the interrupted frame is taken again)",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    _write_outputs(summary, args.out)
    f = summary["frames"]
    if f["acquired"] and f["dropped"] == f["acquired"]:
        hint = ""
        if any(str(k).startswith("invalid_shape") for k in f.get("drop_reasons") or {}):
            hint = " (for frames of another size: --set camera.height=H --set camera.width=W, or 0 for any size)"
        print(f"firmware-sim: every frame was dropped ({_reasons(f)}); nothing to downlink{hint}", file=sys.stderr)
        return EXIT_ALL_DROPPED
    return 0


def _write_outputs(summary: dict[str, Any], out: str) -> None:
    """report.html and the console summary of a run."""
    from .report import write_report

    report = write_report(out, summary)
    _print_summary(summary, out)
    print(f"  report: {report}")


def _mission_with_overrides(args: argparse.Namespace) -> Any:
    """The mission file with ``--anomaly-model``, ``--recon-model``, ``--threads``, ``--frame-ms`` and ``--set``
    applied (each checked like the file's own fields)."""
    mission = load_mission(args.mission)
    overrides: dict[str, dict[str, Any]] = {}
    if args.anomaly_model is not None:
        _check_named_model("--anomaly-model", args.anomaly_model)
        overrides["anomaly"] = {"model": args.anomaly_model}
    if args.recon_model is not None:
        _check_named_model("--recon-model", args.recon_model)
        overrides["reconstruction"] = {"model": args.recon_model}
    if args.threads is not None:
        overrides["runtime"] = {"threads": args.threads}
    if args.frame_ms is not None:
        overrides["budget"] = {"frame_ms": args.frame_ms}
    for item in args.set or ():
        section, key, value = _parse_set(item)
        overrides.setdefault(section, {})[key] = _check_set_type(mission, section, key, value, item)
    return mission.with_overrides(**overrides) if overrides else mission


def _check_named_model(flag: str, spec: str) -> None:
    """A model named on the command line must exist, be what its suffix says (not empty, not a TFLite file named
    .onnx) and match the hash its export recorded (a ``.sha256`` sidecar or ``parity.json`` beside it): refused
    here (exit 2), not flown without scoring as a mission's own damaged model is (the flight loop's fault
    tolerance is for what happens in flight). Nothing is loaded here: an interpreter opened before the boot
    would sit inside the RSS baseline the memory budget is measured from."""
    import hashlib

    from .guard import golden_hash
    from .onboard import resolve_model_file
    from .runtime import ArtifactError, check_artifact_file

    path = resolve_model_file(spec)  # unknown zoo names: MissionError
    if not path.is_file():
        raise MissionError(f"{flag} {spec}: no such file")
    try:
        check_artifact_file(path)
    except ArtifactError as exc:
        raise MissionError(f"{flag} {exc}") from None
    expected, source = golden_hash(path, "")
    if source != "first-load":
        got = hashlib.sha256(path.read_bytes()).hexdigest()
        if got != expected:
            raise MissionError(
                f"{flag} {path}: SHA-256 {got[:12]}… differs from the {expected[:12]}… its {source} records: the "
                "file was damaged or changed after export"
            )


def _check_set_type(mission: Any, section: str, key: str, value: Any, item: str) -> Any:
    """``--set`` with an unknown key or a value of the wrong kind (``sampling.keep=abc``) is refused with one clear
    line; returns the value (a TOML array as the tuple a list field holds)."""
    import dataclasses

    part = getattr(mission, section, None)
    if dataclasses.is_dataclass(part):
        known = [f.name for f in dataclasses.fields(part)]
        if key not in known:
            raise MissionError(f"--set {item}: [{section}] has no key {key!r}; its keys: {', '.join(known)}")
    current = getattr(part, key, None)
    if isinstance(value, bool) and current is not None and not isinstance(current, bool):
        raise MissionError(f"--set {item}: [{section}] {key} takes a {type(current).__name__}, not {value!r}")
    if isinstance(current, tuple) and isinstance(value, list):
        return tuple(value)  # TOML arrays are lists; the mission keeps tuples
    if isinstance(current, tuple) and isinstance(value, int) and not isinstance(value, bool):
        return value  # camera.margin=N: the mission's own check reads a number as every side
    if isinstance(current, tuple) and isinstance(value, str) and (section, key) == ("runtime", "inject"):
        return value  # runtime.inject=seu@frame1,late@frame2: the mission splits the list
    if current is None or isinstance(value, type(current)):
        return value
    number = (int, float)
    if isinstance(current, bool) or not isinstance(current, number):
        if isinstance(current, bool) != isinstance(value, bool) or isinstance(current, str | tuple | list):
            raise MissionError(f"--set {item}: [{section}] {key} takes a {type(current).__name__}, not {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, number):
        raise MissionError(f"--set {item}: [{section}] {key} takes a number (now {current!r}), not {value!r}")
    if value != value or value in (float("inf"), float("-inf")):
        raise MissionError(f"--set {item}: [{section}] {key} must be a finite number")
    return value


def _reasons(f: dict[str, Any]) -> str:
    return "; ".join(f"{k} x{v}" for k, v in (f.get("drop_reasons") or {}).items()) or "no reason recorded"


def _ms(v: Any) -> str:
    return "n/a" if v is None else f"{float(v):.0f} ms"


def _parse_set(item: str) -> tuple[str, str, Any]:
    """``section.key=value`` with a TOML value (bare words are strings): ``anomaly.top_k=4``."""
    lhs, sep, rhs = item.partition("=")
    section, dot, key = lhs.strip().partition(".")
    if not sep or not dot or not key:
        raise MissionError(f"--set {item!r}: expected SECTION.KEY=VALUE, e.g. anomaly.top_k=4")
    try:
        value = tomllib.loads(f"v = {rhs.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = rhs.strip()
    return section, key, value


def _print_summary(s: dict[str, Any], out: str) -> None:
    f, q, t = s["frames"], s["queue"], s.get("timing_ms", {})
    for r in s.get("models_refused") or []:
        print(f"WARNING: the {r['role']} model was refused at boot, so {r['consequence']}: {r['detail']}")
    for w in s.get("warnings") or []:
        print(f"WARNING: {w}")
    skipped = (s.get("inputs") or {}).get("skipped_in_folders") or []
    if skipped:
        names = ", ".join(Path(x.removesuffix("/ (a folder)")).name for x in skipped[:3])
        more = ", ..." if len(skipped) > 3 else ""
        print(f"  {len(skipped)} entries of --frames folders are not frame files, skipped ({names}{more}; all in "
              "summary.json inputs)")  # fmt: skip
    if s.get("skipped_already_acquired"):
        print(
            f"resumed the mission state in {out}: {s['skipped_already_acquired']} frame(s) already acquired there "
            "were not taken again (--fresh starts over)"
        )
    if s.get("mission_settings_changed"):
        print(
            f"  settings changed since that state began (new frames only): {'; '.join(s['mission_settings_changed'])}"
        )
    dropped = f" ({_reasons(f)})" if f["dropped"] else ""
    partial = f", {f['partial']} downlinked in part (products evicted for room)" if f.get("partial") else ""
    boots = f" (over {s['boots']} boots)" if int(s.get("boots") or 1) > 1 else ""
    print(
        f"mission {s['mission']}: {f['acquired']} frames acquired{boots}: {f['downlinked']} downlinked{partial}, "
        f"{f['queued']} queued, {f['dropped']} dropped{dropped}"
    )
    full = int(q.get("evicted_items") or 0) - int(q.get("withdrawn_items") or 0)  # not those of a dropped frame
    if full:
        print(
            f"  queue full: {full} products evicted or refused (each an 'evicted' or 'queue_refused' "
            "event in telemetry.jsonl; raise budget.queue_capacity_bytes or the pass budget)"
        )
    if t.get("p50") is not None:
        levels = ", ".join(f"{k} x{v}" for k, v in (s.get("degradations") or {}).items()) or "none"
        print(
            f"  frame time p50 {_ms(t['p50'])}, max {_ms(t.get('max'))}, deadlines missed "
            f"{t.get('deadline_missed', 0)}; degradation levels: {levels}"
        )
    else:
        print("  no frame was processed: no frame times")
    mem = s.get("memory", {})
    rate = s.get("patches_per_s")
    rate_text = f"; {rate:.1f} patches/s" if isinstance(rate, int | float) else ""
    mib = 2**20
    traced = mem.get("traced_peak_bytes")
    traced_text = f", traced Python peak {traced / mib:.1f} MiB" if isinstance(traced, int) else ""
    within = "within it" if mem.get("within_budget", True) else "OVER it"
    print(
        f"  memory: peak RSS growth over boot {mem.get('rss_growth_peak_bytes', 0) / mib:.1f} MiB of the "
        f"{s['budgets']['memory_bytes'] / mib:.0f} MiB budget ({within}), RSS peak "
        f"{mem.get('rss_peak_bytes', 0) / mib:.0f} MiB{' (this boot)' if boots else ''}{traced_text}{rate_text}"
    )
    print(f"  downlink: {q['sent_bytes']:,} B sent in {q['passes']} passes, {q['pending_bytes']:,} B pending")
    if s.get("faults_not_fired"):
        print(f"  faults asked for but never injected: {', '.join(s['faults_not_fired'])}")
    for a in s["anomalies"][:5]:
        top = ", ".join(f"({p['x']},{p['y']}) {p['score']:.4g}" for p in a["patches"][:4])
        print(f"  frame {a['frame_id']}: anomalous patches (x,y) score: {top}")
    if len(s["anomalies"]) > 5:
        print(f"  ... anomalous patches in {len(s['anomalies']) - 5} more frames (report.html, summary.json)")
    passes = ", downlink/pass_*.bin" if q.get("passes") else ""
    print(f"  wrote {out}/summary.json, telemetry.jsonl{passes}")


def _bench(args: argparse.Namespace) -> int:
    from .bench import format_table, run_bench

    try:
        threads = [int(t) for t in str(args.threads).split(",") if t.strip()]
    except ValueError:
        raise MissionError(f"--threads takes comma-separated whole numbers, e.g. 1,2; got {args.threads!r}") from None
    if not threads or min(threads) < 1:
        raise MissionError(f"--threads takes thread counts of at least 1, got {args.threads!r}")
    if args.json and not Path(args.json).parent.is_dir():  # before the benchmark, not after
        raise MissionError(f"--json {args.json}: folder {Path(args.json).parent} does not exist")
    result = run_bench(
        args.model,
        threads=threads,
        batch=args.batch,
        iters=args.iters,
        frame=(args.frame_height, args.frame_width),
        keep=args.keep,
    )
    print(format_table(result))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(result, indent=2) + "\n")
        print(f"JSON: {args.json}")
    return 0


def _missions(args: argparse.Namespace) -> int:
    import textwrap

    from edgeae.resolve import preset_summary, presets

    from .mission import MISSIONS_DIR

    found = presets(MISSIONS_DIR)
    width = max(map(len, found), default=4)
    for name, path in found.items():
        m = load_mission(path)
        cam = m.camera
        size = f"{cam.width}x{cam.height}" if cam.height and cam.width else "any size"
        head = f"{name:<{width}}  {size:>11} x{cam.channels}  "
        first = preset_summary(path).replace("`", "").split(". ")[0].rstrip(".") + "."
        print(textwrap.fill(first, 100, initial_indent=head, subsequent_indent=" " * len(head)))
    print(f"(in {MISSIONS_DIR}; pass a name or a TOML path to --mission)")
    return 0


def _report(args: argparse.Namespace) -> int:
    from .report import load_summary, write_report

    out = Path(args.out)
    summary, notes = load_summary(out)
    print(f"report: {write_report(out, summary)}")
    for note in notes:
        print(f"  {note}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="firmware-sim",
        description="The flight-like runtime: run a mission's frame loop (sample, score, queue, downlink) within "
        "its memory, time and downlink budgets, or benchmark a model artifact on this board. numpy and one "
        "interpreter (onnxruntime or ai-edge-litert); never PyTorch.",
        epilog="Exit status: 0 done, 1 every frame was dropped, 2 user error, 3 a simulated reboot stopped the "
        "run (run it again with the same --out), 130 interrupted by Ctrl-C (state kept; the same command goes on).",
    )
    p.add_argument(
        "-v", "--verbose", action="store_true",
        help="show debug messages and the warnings and logs of third-party libraries (hidden by default)",
    )  # fmt: skip
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
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
        "--mission", required=True, metavar="MISSION",
        help="a shipped mission name (rover_mastcamz, orbital_nac; see firmware-sim missions) or a mission TOML file",
    )  # fmt: skip
    r.add_argument(
        "--frames", nargs="+", required=True, metavar="PATH",
        help="frame files or folders: PNG, JPEG, TIFF/BigTIFF (streamed in strips), or .npy arrays",
    )  # fmt: skip
    r.add_argument(
        "--out", required=True, metavar="DIR",
        help="output folder; also the persistent state (queue, ledger): reuse it after a reboot",
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
    r.add_argument("--threads", type=int, help="interpreter threads (replaces [runtime] threads)")
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
    r.add_argument("--progress", action="store_true", help="show a progress bar for each streamed frame")
    r.add_argument(
        "--fresh",
        action="store_true",
        help="discard the mission state in --out (queue, frame ledger, passes, telemetry) and start over; without "
        "it a rerun into the same folder continues that mission (frames already acquired are not taken again)",
    )
    r.set_defaults(_fn=_run)
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
    b.add_argument("--threads", default="1,2", help="comma-separated thread counts to compare (default 1,2)")
    b.add_argument("--batch", type=int, default=16, help="patches per model call (default 16)")
    b.add_argument("--iters", type=int, default=30, help="timed repetitions of each stage (default 30)")
    b.add_argument("--frame-height", type=int, default=1200, help="frame height for the sampling stage (default 1200)")
    b.add_argument("--frame-width", type=int, default=1648, help="frame width for the sampling stage (default 1648)")
    b.add_argument("--keep", type=float, default=0.05, help="fraction of pixels sampled (default 0.05)")
    b.add_argument("--json", metavar="FILE", help="also write the full result as JSON to this file")
    b.set_defaults(_fn=_bench)
    m = sub.add_parser(
        "missions",
        help="list the shipped missions (names that --mission accepts)",
        description="List the mission files shipped with the runtime: name, camera size and channels, and what "
        "each is for. --mission takes these names or a path to a TOML file of your own.",
    )
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
    parser = build_parser()
    args = parser.parse_args(argv)
    from edgeae import logs

    with logs.session(args.verbose):  # third-party warnings and logs hidden unless -v
        return _dispatch(parser, args)


def _dispatch(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if not getattr(args, "_fn", None):
        parser.print_help()
        return 2
    try:
        return int(args._fn(args))
    except (MissionError, FaultSpecError, OSError, ValueError, ImportError) as exc:
        print(f"firmware-sim {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # before the frame loop started (loading models, calibrating): nothing to keep
        print(f"firmware-sim {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
