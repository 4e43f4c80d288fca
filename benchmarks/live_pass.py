"""Does the ground's live decoder keep up with the link? ``edgeae ground serve`` with each fill on a real-time pass.

    python -m benchmarks.live_pass --out DIR [--frames 12] [--rounds 2] [--methods auto,blend,telea] [--link perfect]

The flight runtime flies ``--frames`` copies of the demo frame (a 591 × 795 Mastcam-Z RGB frame) with the rover
mission (``firmware-sim run --mission rover_mastcamz``: sparse pixels at keep 0.05, six full-resolution anomaly
patches and a telemetry record a frame); ``edgeae downlink send --link LINK --speed 1`` sends the pass in real time
(the ``perfect`` preset: 2 Mbit/s, no loss) to ``edgeae ground serve --method M``, each method once a round,
interleaved. Per run: the seconds from the end of sending (its end-of-transmission datagrams included) to the
station's exit, which is the decode it still owed; the sparse frames by fill (``frames_by_fill``); the mean
``decode_s`` of the frames; the 1-minute load. Timings: a 2-core machine runs the sender, the receiver and the
decoder at once, so read the ratios between methods of one run. Writes ``results.json`` and ``results.md``; the
frames, the pass and each station's folder and log go to a temporary folder (``--work DIR`` keeps them there).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from any folder

METHODS = ("auto", "blend", "telea")


def _bin(name: str) -> str:
    """The console script ``name`` of this interpreter's environment."""
    return str(Path(sys.executable).with_name(name))


def make_pass(work: Path, n: int, root: Path) -> Path:
    """The rover mission's downlink of ``n`` copies of the demo frame (``work/fw/downlink``)."""
    from edgeae.datasets import DEMO_FRAME

    frames = work / "frames"
    frames.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        shutil.copyfile(root / DEMO_FRAME, frames / f"f{i:03d}{Path(DEMO_FRAME).suffix}")
    fw = work / "fw"
    shutil.rmtree(fw, ignore_errors=True)
    cmd = [_bin("firmware-sim"), "run", "--mission", "rover_mastcamz", "--frames", str(frames), "--out", str(fw)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return fw / "downlink"


def one_pass(downlink: Path, work: Path, method: str, link: str, tag: str) -> dict[str, Any]:
    """Serve with ``method``, send the pass in real time, and time the station's tail after the send."""
    out, ready = work / f"serve_{tag}", work / f"ready_{tag}"
    shutil.rmtree(out, ignore_errors=True)
    ready.unlink(missing_ok=True)
    serve = [_bin("edgeae"), "ground", "serve", "--port", "0", "--ready-file", str(ready), "--out", str(out),
             "--method", method, "--idle-timeout", "30", "--no-progress"]  # fmt: skip
    with open(work / f"serve_{tag}.log", "w") as log:
        station = subprocess.Popen(serve, stdout=log, stderr=subprocess.STDOUT)
        t_ready = time.monotonic()
        while not (ready.exists() and ready.read_text().strip()):
            if station.poll() is not None or time.monotonic() - t_ready > 60:
                raise RuntimeError(f"ground serve did not start (see {work / f'serve_{tag}.log'})")
            time.sleep(0.05)
        send = [_bin("edgeae"), "downlink", "send", str(downlink), "--port", ready.read_text().strip(),
                "--link", link, "--speed", "1"]  # fmt: skip
        t0 = time.monotonic()
        subprocess.run(send, check=True, capture_output=True, text=True)
        t1 = time.monotonic()
        station.wait(timeout=600)
        t2 = time.monotonic()
    report = json.loads((out / "stream.json").read_text())
    frames = {k: r for k, r in report["products"].items() if k.startswith("frame_")}
    decode = [r["decode_s"] for r in frames.values() if "decode_s" in r]
    return {
        "method": method,
        "send_s": round(t1 - t0, 2),
        "after_send_s": round(t2 - t1, 2),
        "frames": len(frames),
        "frames_by_fill": report["stream"].get("frames_by_fill", {}),
        "mean_decode_s": round(sum(decode) / len(decode), 3) if decode else None,
        "load_1min_after": round(os.getloadavg()[0], 2),
        "returncode": station.returncode,
    }


def markdown(res: dict[str, Any]) -> str:
    m = res["machine"]
    lines = [
        "# Live pass: does `edgeae ground serve` keep up with the link?",
        "",
        f"`{res['command']}`; {m.get('cpu')}, {m.get('logical_cores')} logical cores, commit {m.get('commit')}; "
        f"{res['frames']} demo frames flown by the rover mission, sent over `{res['link']}` in real time; 1-minute "
        f"load {res['load_before']} before. After send: seconds from the end of sending to the station's exit.",
        "",
        "| round | method | send s | after send s | frames by fill | mean decode_s | load after |",
        "|---:|---|---:|---:|---|---:|---:|",
    ]
    for r in res["runs"]:
        fills = ", ".join(f"{k} {v}" for k, v in sorted(r["frames_by_fill"].items()))
        lines.append(
            f"| {r['round']} | {r['method']} | {r['send_s']:.2f} | {r['after_send_s']:.2f} | {fills} | "
            f"{r['mean_decode_s']} | {r['load_1min_after']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.live_pass", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="folder for results.json, results.md and the runs")
    ap.add_argument("--frames", type=int, default=12, help="frames in the pass (default 12)")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds of every method (default 2)")
    ap.add_argument("--methods", default=",".join(METHODS), help="ground fills (default auto,blend,telea)")
    ap.add_argument("--link", default="perfect", help="link preset or TOML (default perfect: 2 Mbit/s)")
    ap.add_argument("--data", default=None, help="shared data folder (default $EDGEAE_DATA or ../shared/data)")
    ap.add_argument("--work", type=Path, default=None, help="keep the frames, pass and station folders here")
    args = ap.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if args.frames < 1 or args.rounds < 1 or not methods:
        ap.error("--frames and --rounds must be at least 1, --methods name one fill or more")
    from benchmarks.machine import machine_info
    from edgeae.data import data_root

    tmp = None if args.work else tempfile.TemporaryDirectory(prefix="edgeae-live-pass-")
    work = args.work or Path(tmp.name)  # type: ignore[union-attr]
    work.mkdir(parents=True, exist_ok=True)
    res: dict[str, Any] = {
        "command": "python -m benchmarks.live_pass " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine_info(),
        "frames": args.frames,
        "link": args.link,
        "load_before": round(os.getloadavg()[0], 2),
        "runs": [],
    }
    downlink = make_pass(work, args.frames, Path(data_root(args.data)))
    for rnd in range(1, args.rounds + 1):
        for m in methods:
            r = one_pass(downlink, work, m, args.link, f"{m}_{rnd}")
            res["runs"].append({"round": rnd, **r})
            print(f"round {rnd} {m}: {r['after_send_s']} s after the send, {r['frames_by_fill']}", flush=True)
    if tmp is not None:
        tmp.cleanup()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(res, indent=1) + "\n")
    md = markdown(res)
    (args.out / "results.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
