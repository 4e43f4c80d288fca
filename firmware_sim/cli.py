"""``firmware-sim``: run a mission on frames, or benchmark an artifact on this board.

    firmware-sim run --mission rover_mastcamz --frames FRAME.png ... --out runs/fw/rover
    firmware-sim run --mission orbital_nac.toml --frames strip.tif --out runs/fw/nac --inject seu@frame0
    firmware-sim bench --model vae.onnx --threads 1,2,4

Exit status: 0 done, 2 user error, 3 a simulated reboot stopped the run (run again with the same ``--out``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from collections.abc import Sequence
from typing import Any

from .faults import FaultSpecError, SimulatedReboot
from .mission import MissionError, load_mission

EXIT_REBOOT = 3


def _run(args: argparse.Namespace) -> int:
    from .frames import expand_frames
    from .loop import FlightRuntime

    mission = load_mission(args.mission)
    overrides: dict[str, dict[str, Any]] = {}
    if args.anomaly_model is not None:
        overrides["anomaly"] = {"model": args.anomaly_model}
    if args.recon_model is not None:
        overrides["reconstruction"] = {"model": args.recon_model}
    if args.threads is not None:
        overrides["runtime"] = {"threads": args.threads}
    if args.frame_ms is not None:
        overrides["budget"] = {"frame_ms": args.frame_ms}
    for item in args.set or ():
        section, key, value = _parse_set(item)
        overrides.setdefault(section, {})[key] = value
    if overrides:
        mission = mission.with_overrides(**overrides)
    frames = expand_frames(args.frames)
    if not frames:
        raise MissionError("no frames: --frames names no files")
    rt = FlightRuntime(mission, args.out, inject=args.inject or (), progress=args.progress)
    try:
        summary = rt.run(frames)
    except SimulatedReboot as exc:
        print(f"firmware-sim: {exc}; state kept in {args.out}: run again with the same --out to recover")
        return EXIT_REBOOT
    _print_summary(summary, args.out)
    return 0


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
    f, q, t = s["frames"], s["queue"], s["timing_ms"]
    print(
        f"mission {s['mission']}: {f['acquired']} frames acquired: {f['downlinked']} downlinked, "
        f"{f['queued']} queued, {f['dropped']} dropped {f['drop_reasons'] or ''}"
    )
    print(
        f"  frame time p50 {t['p50']} ms, max {t['max']} ms, deadlines missed {t['deadline_missed']}; "
        f"levels {s['degradations']}"
    )
    mem = s["memory"]
    print(
        f"  memory peak (traced) {mem['traced_peak_bytes']:,} B of {s['budgets']['memory_bytes']:,} B, "
        f"RSS peak {mem['rss_peak_bytes']:,} B (+{mem['rss_growth_in_frames_bytes']:,} B after model load); "
        f"patches/s {s['patches_per_s']}"
    )
    print(f"  downlink: {q['sent_bytes']:,} B sent in {q['passes']} passes, {q['pending_bytes']:,} B pending")
    for a in s["anomalies"]:
        top = ", ".join(f"({p['x']},{p['y']}) {p['score']:.4g}" for p in a["patches"][:8])
        print(f"  frame {a['frame_id']} {a['source']}: anomalous patches (x,y) score: {top}")
    print(f"  wrote {out}/telemetry.jsonl, {out}/summary.json, {out}/downlink/pass_*.bin")


def _bench(args: argparse.Namespace) -> int:
    from .bench import format_table, run_bench

    threads = [int(t) for t in str(args.threads).split(",") if t.strip()]
    result = run_bench(
        args.model,
        threads=threads,
        batch=args.batch,
        iters=args.iters,
        frame=(args.frame_height, args.frame_width),
        keep=args.keep,
    )
    print(format_table(result))
    text = json.dumps(result, indent=2)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    else:
        print(text)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="firmware-sim", description=(__doc__ or "").splitlines()[0])
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    r = sub.add_parser("run", help="run a mission's frame loop on frames")
    r.add_argument("--mission", required=True, help="mission TOML file, or a shipped mission name")
    r.add_argument("--frames", nargs="+", required=True, help="frame files or folders (.npy, .tif, .png, .jpg)")
    r.add_argument("--out", required=True, help="output folder (also the persistent state: reuse it after a reboot)")
    r.add_argument("--anomaly-model", help="override [anomaly] model")
    r.add_argument("--recon-model", help="override [reconstruction] model")
    r.add_argument("--threads", type=int, help="override [runtime] threads")
    r.add_argument("--frame-ms", type=float, help="override [budget] frame_ms")
    r.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override any mission field")
    r.add_argument("--inject", action="append", help="faults, e.g. seu@frame3,late@frame5:800 (repeatable)")
    r.add_argument("--progress", action="store_true", help="progress bar per streamed frame (needs tqdm)")
    r.set_defaults(_fn=_run)
    b = sub.add_parser("bench", help="benchmark an artifact: latency per stage, throughput, memory")
    b.add_argument("--model", required=True, help=".onnx / .ort / .tflite artifact")
    b.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    b.add_argument("--batch", type=int, default=16)
    b.add_argument("--iters", type=int, default=30)
    b.add_argument("--frame-height", type=int, default=1200)
    b.add_argument("--frame-width", type=int, default=1648)
    b.add_argument("--keep", type=float, default=0.05)
    b.add_argument("--json", help="write the JSON result here instead of printing it")
    b.set_defaults(_fn=_bench)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_fn", None):
        parser.print_help()
        return 2
    try:
        return int(args._fn(args))
    except (MissionError, FaultSpecError, FileNotFoundError, ValueError, ImportError) as exc:
        print(f"firmware-sim {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
