"""What waiting for the scoring engine costs a frame: interleaved ``firmware-sim run`` rounds on one real strip.

Since session 39 (fixers h12, h13) the flight loop may wait for the engine's batches in flight before each strip's
pixel check and no-data mask (``firmware_sim.strip_scoring.score_wait``), which keeps them from being live beside the
loop's own temporaries; it waits only when the frame's memory needs it (``firmware_sim.frame_work.needs_wait``). This
script measures what the wait costs in time: each round runs the frame once per mode in a fresh process,

- ``never``: ``needs_wait`` patched to False (the loop overlaps the engine, as before fixer h12);
- ``always``: ``needs_wait`` patched to True (as fixer h12 shipped it);
- ``auto``: unpatched (the shipped rule; at a roomy budget it never waits),

in an order that rotates by round, in each ``--runtimes`` interpreter, and reads the frame line's ``timing_ms``.
The patches, scores and ranked patch list must be identical in every run of an interpreter (checked, else exit 1).
A mode's cost is the median over rounds of its total ms over ``never``'s in the same round (ratios in one run: the
machine is shared).

    .venv/bin/python benchmarks/score_wait_timing.py --out runs/score_wait [--rounds 5] [--runtimes onnx,tflite]
        [--frame orbital_gray/hirise_browse/ESP_073435_1870_RED.NOMAP.browse.jpg] [--memory 268435456]

Needs the shared data (``$EDGEAE_DATA`` or ``../shared/data``). Writes ``results.json`` and ``results.md`` under
``--out``, with the machine, versions and the 1-minute load before and after: quote a table only when both are
below 1.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from any folder
from benchmarks.machine import machine_info

MODES = ("never", "always", "auto")
FRAME = "orbital_gray/hirise_browse/ESP_073435_1870_RED.NOMAP.browse.jpg"  # 3190 x 2048 grey JPEG
CHILD = """
import sys
import edgeae.firmware_sim.frame_work as fw
mode = sys.argv[1]
if mode != "auto":
    fw.needs_wait = lambda *a, **k: mode == "always"
from edgeae.firmware_sim.cli import main
raise SystemExit(main(sys.argv[2:]))
"""


def data_root() -> Path:
    env = os.environ.get("EDGEAE_DATA")
    return Path(env) if env else Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def frame_size(path: Path) -> tuple[int, int]:
    """(height, width) of the frame, from its header."""
    from PIL import Image

    with Image.open(path) as im:
        return im.height, im.width


def one_run(frame: Path, mode: str, runtime: str, out: Path, memory: int) -> dict[str, Any]:
    """One ``firmware-sim run`` of ``frame`` in a fresh process; the frame line's timings and what it scored."""
    h, w = frame_size(frame)
    argv = ["run", "--mission", "orbital_nac", "--frames", str(frame), "--out", str(out), "--set",
            f"camera.width={w}", "--set", f"camera.height={h}", "--set", f"budget.memory_bytes={memory}", "--set",
            "budget.frame_ms=600000", "--set", f'anomaly.prefer=["{runtime}"]', "--set",
            "budget.board_memory=budget-only"]  # fmt: skip
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    r = subprocess.run([sys.executable, "-c", CHILD, mode, *argv], capture_output=True, text=True, env=env, timeout=600)
    if r.returncode != 0:
        raise SystemExit(f"{mode} / {runtime}: firmware-sim run exited {r.returncode}: {r.stderr[-1500:]}")
    lines = [json.loads(x) for x in (out / "telemetry.jsonl").read_text().splitlines()]
    (rec,) = [x for x in lines if "status" in x and "source" in x]
    return {
        "mode": mode,
        "runtime": runtime,
        "timing_ms": rec["timing_ms"],
        "score_wait": rec["score_wait"],
        "level": rec["level"]["name"],
        "scored": rec["patches"]["scored"],
        "ranked": [(p["x"], p["y"], p["score"]) for p in rec["anomaly"]["patches"]],
        "rss_growth_peak": rec["memory"]["rss_growth_peak"],
    }


def summarise(runs: list[dict[str, Any]], runtimes: list[str], rounds: int) -> dict[str, Any]:
    """Per runtime and mode: median total ms, and the median over rounds of total / ``never``'s total."""
    out: dict[str, Any] = {}
    for rt in runtimes:
        out[rt] = {}
        by = {(r["round"], r["mode"]): r for r in runs if r["runtime"] == rt}
        for m in MODES:
            totals = [by[(k, m)]["timing_ms"]["total"] for k in range(rounds)]
            ratios = [by[(k, m)]["timing_ms"]["total"] / by[(k, "never")]["timing_ms"]["total"] for k in range(rounds)]
            out[rt][m] = {
                "median_total_ms": round(statistics.median(totals), 1),
                "min_total_ms": round(min(totals), 1),
                "max_total_ms": round(max(totals), 1),
                "median_ratio_to_never": round(statistics.median(ratios), 3),
                "rounds_slower_than_never": sum(x > 1 for x in ratios),
                "waited": sorted({by[(k, m)]["score_wait"] for k in range(rounds)}),
                "median_rss_growth_peak_mib": round(
                    statistics.median(by[(k, m)]["rss_growth_peak"] for k in range(rounds)) / 2**20, 1
                ),
            }
    return out


def markdown(doc: dict[str, Any]) -> str:
    s = io.StringIO()
    m = doc["meta"]
    s.write(f"`firmware-sim run --mission orbital_nac` on {m['frame']} at {m['memory']:,} B, {m['rounds']} interleaved "
            f"rounds (a fresh process per run); 1-minute load {doc['load_1min']['before']} before, "
            f"{doc['load_1min']['after']} after.\n\n")  # fmt: skip
    s.write("| runtime | mode | waited | median total ms (min-max) | median ratio to never | rounds slower | "
            "peak MiB |\n|---|---|---|---|---|---|---|\n")  # fmt: skip
    for rt, modes in doc["summary"].items():
        for mode, v in modes.items():
            s.write(f"| {rt} | {mode} | {v['waited']} | {v['median_total_ms']} ({v['min_total_ms']}-"
                    f"{v['max_total_ms']}) | {v['median_ratio_to_never']} | {v['rounds_slower_than_never']}/"
                    f"{m['rounds']} | {v['median_rss_growth_peak_mib']} |\n")  # fmt: skip
    s.write(f"\nSame patches, scores and ranking in every run of an interpreter: {doc['identical']}. "
            f"{m['seconds']} s; commit {doc['machine'].get('commit')}; `{m['command']}`\n")  # fmt: skip
    return s.getvalue()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python benchmarks/score_wait_timing.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runtimes", default="onnx,tflite", help="interpreters, comma-separated (onnx, tflite)")
    ap.add_argument("--frame", default=FRAME, help="a frame under the shared data folder, or a path")
    ap.add_argument("--memory", type=int, default=256 * 2**20, help="[budget] memory_bytes (default 256 MiB)")
    args = ap.parse_args(argv)
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    runtimes = [x.strip() for x in args.runtimes.split(",") if x.strip()]
    if not runtimes or any(x not in ("onnx", "tflite") for x in runtimes):
        ap.error(f"--runtimes: onnx and/or tflite, not {args.runtimes!r}")
    frame = Path(args.frame) if Path(args.frame).is_file() else data_root() / args.frame
    if not frame.is_file():
        ap.error(f"the frame is not there: {frame} (set EDGEAE_DATA to the shared data folder)")
    args.out.mkdir(parents=True, exist_ok=True)
    load_before, t0 = round(os.getloadavg()[0], 2), time.time()
    runs: list[dict[str, Any]] = []
    for k in range(args.rounds):
        order = MODES[k % 3 :] + MODES[: k % 3]  # rotate which mode goes first
        for rt in runtimes:
            for mode in order:
                with tempfile.TemporaryDirectory(dir=args.out) as tmp:  # a fresh --out: one in use resumes its run
                    r = one_run(frame, mode, rt, Path(tmp) / "run", args.memory)
                runs.append({"round": k, **r})
                print(f"[{time.time() - t0:6.1f} s] round {k} {rt} {mode}: {r['timing_ms']['total']:.1f} ms "
                      f"(waited {r['score_wait']})", flush=True)  # fmt: skip
    identical = all(  # per interpreter: onnxruntime and LiteRT round differently
        len({json.dumps([r["scored"], r["ranked"]]) for r in runs if r["runtime"] == rt}) == 1 for rt in runtimes
    )
    cmd = "benchmarks/score_wait_timing.py " + " ".join(sys.argv[1:] if argv is None else argv)
    doc = {
        "machine": machine_info(),
        "load_1min": {"before": load_before, "after": round(os.getloadavg()[0], 2)},
        "meta": {
            "frame": args.frame,
            "memory": args.memory,
            "rounds": args.rounds,
            "runtimes": runtimes,
            "command": cmd.strip(),
            "seconds": round(time.time() - t0, 1),
        },
        "identical": identical,
        "summary": summarise(runs, runtimes, args.rounds),
        "runs": runs,
    }
    (args.out / "results.json").write_text(json.dumps(doc, indent=2))
    (args.out / "results.md").write_text(markdown(doc))
    print(markdown(doc))
    if not identical:
        print("the runs did not score the same patches: the modes changed what the loop found", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
