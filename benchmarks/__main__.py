"""Run every benchmark and regenerate benchmarks/RESULTS.md.

    python -m benchmarks                  # quick sizes (tens of minutes on 2 cores)
    python -m benchmarks --full           # full sizes
    python -m benchmarks --only speed link
    python -m benchmarks --report-only    # rebuild RESULTS.md from the JSON already in --out

Each stage is one command (printed before it runs, so any number can be reproduced alone) that writes
JSON + a markdown table + plots under ``--out/<stage>/``. ``machine.json`` records machine, versions,
threads and commit; RESULTS.md is generated from those files by benchmarks/report.py.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.machine import machine_info
from benchmarks.report import write_results

PY = sys.executable


@dataclass(frozen=True)
class Stage:
    """One benchmark: ``quick``/``full`` are argument lists; ``{out}`` is replaced by the stage folder."""

    name: str
    title: str
    quick: tuple[str, ...]
    full: tuple[str, ...]
    needs: tuple[str, ...] = ()  # commands run first (same placeholders), e.g. building an archive


STAGES: dict[str, Stage] = {
    "speed": Stage(
        "speed",
        "Speed and memory per model and runtime",
        (
            PY,
            "-m",
            "pytest",
            "benchmarks/test_speed.py",
            "-m",
            "speed",
            "-q",
            "-p",
            "no:cacheprovider",
            "--benchmark-json={out}/benchmark.json",
            "--benchmark-columns=median,iqr,rounds",
        ),
        (
            PY,
            "-m",
            "pytest",
            "benchmarks/test_speed.py",
            "-m",
            "speed",
            "-q",
            "-p",
            "no:cacheprovider",
            "--benchmark-json={out}/benchmark.json",
            "--benchmark-columns=median,iqr,rounds",
            "--benchmark-min-rounds=50",
        ),
    ),
    "reconstruction": Stage(
        "reconstruction",
        "Reconstruction quality vs keep fraction (unseen rover images)",
        (PY, "benchmarks/reconstruction_sweep.py", "--out", "{out}", "--quick"),
        (PY, "benchmarks/reconstruction_sweep.py", "--out", "{out}"),
    ),
    "gt_vs_fixed": Stage(
        "gt_vs_fixed",
        "One gt-CAE vs CAEs trained at a fixed masking level",
        (
            PY,
            "benchmarks/gt_vs_fixed.py",
            "--out",
            "{out}",
            "--crops",
            "1000",
            "--epochs",
            "4",
            "--extra-model",
            "rover-rgb-gtcae",
        ),
        (
            PY,
            "benchmarks/gt_vs_fixed.py",
            "--out",
            "{out}",
            "--crops",
            "3000",
            "--epochs",
            "10",
            "--fixed",
            "0.5",
            "0.7",
            "0.9",
            "0.99",
            "--extra-model",
            "rover-rgb-gtcae",
        ),
    ),
    "link": Stage(
        "link",
        "Downlink: sparse pixels vs JPEG / JPEG 2000 / WebP at equal bytes over a lossy link",
        (
            PY,
            "benchmarks/link_comparison.py",
            "--out",
            "{out}",
            "--model",
            "rover-rgb-gtcae",
            "--limit",
            "4",
            "--seeds",
            "1",
        ),
        (PY, "benchmarks/link_comparison.py", "--out", "{out}", "--model", "rover-rgb-gtcae"),
    ),
    "anomaly": Stage(
        "anomaly",
        "Anomaly ranking on labelled data (the lunar paper's table)",
        (
            PY,
            "-m",
            "edgeae",
            "evaluate",
            "--dataset",
            "lroc_nac_craters",
            "--model",
            "orbital-gray-vae",
            "--out",
            "{out}/lroc_nac_craters",
        ),
        (
            PY,
            "-m",
            "edgeae",
            "evaluate",
            "--dataset",
            "lroc_nac_craters",
            "--model",
            "orbital-gray-vae",
            "--out",
            "{out}/lroc_nac_craters",
        ),
        needs=(),
    ),
    "scan": Stage(
        "scan",
        "Archive scan throughput, local engine vs Ray",
        (PY, "benchmarks/scan_throughput.py", "--archive", "runs/archive-quick", "--out", "{out}"),
        (PY, "benchmarks/scan_throughput.py", "--archive", "runs/archive", "--out", "{out}", "--kill-test"),
        needs=(PY, "-m", "edgeae.scan.synth", "--out", "runs/archive-{size}", "--n", "{n_archive}"),
    ),
}


def _fill(args: tuple[str, ...], out: Path, full: bool) -> list[str]:
    subs = {"{out}": str(out), "{size}": "full" if full else "quick", "{n_archive}": "300" if full else "60"}
    filled = []
    for a in args:
        for k, v in subs.items():
            a = a.replace(k, v)
        filled.append(a)
    return filled


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="full sizes (slow)")
    ap.add_argument("--only", nargs="+", choices=sorted(STAGES), help="run only these stages")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    ap.add_argument("--report-only", action="store_true", help="only regenerate RESULTS.md")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    status: dict[str, dict[str, object]] = {}
    status_path = args.out / "stages.json"
    if status_path.is_file():
        status = json.loads(status_path.read_text())
    if not args.report_only:
        (args.out / "machine.json").write_text(json.dumps(machine_info(), indent=2))
        for name in args.only or list(STAGES):
            stage = STAGES[name]
            out = args.out / name
            out.mkdir(parents=True, exist_ok=True)
            t0 = time.perf_counter()
            rc = 0
            cmds = [stage.needs] if stage.needs else []
            cmds.append(stage.full if args.full else stage.quick)
            shown = []
            for cmd in cmds:
                argv_ = _fill(cmd, out, args.full)
                shown.append(" ".join(["python" if a == PY else a for a in argv_]))
                print(f"\n== {name}: {shown[-1]}", flush=True)
                rc = subprocess.run(argv_, check=False).returncode
                if rc != 0:
                    break
            status[name] = {
                "title": stage.title,
                "commands": shown,
                "returncode": rc,
                "seconds": round(time.perf_counter() - t0, 1),
                "size": "full" if args.full else "quick",
            }
            status_path.write_text(json.dumps(status, indent=2))
    path = write_results(args.out, Path("benchmarks/RESULTS.md"))
    print(f"\nwrote {path}")
    failed = [n for n, s in status.items() if s.get("returncode")]
    if failed:
        print(f"stages that failed: {failed}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
