"""Scan throughput of both engines on one archive, whether they agree, and whether a killed scan resumes.

    .venv/bin/python -m edgeae.scan.synth --out runs/archive --n 300
    .venv/bin/python benchmarks/scan_throughput.py --archive runs/archive --model orbital-gray-vae \
        --out runs/scan_bench

For each engine (``local`` with ``--workers`` processes, ``ray`` on a local instance with ``--num-cpus``)
the archive is scanned from scratch; the JSON records wall time, patches/s, images/s, failures and the
extrapolated time for the full LRO NAC archive. ``identical`` says whether both engines wrote the same
``results.parquet``. With ``--kill-test`` a third scan runs as a subprocess, is killed with SIGKILL once
about half the images are done, is restarted, and its results are compared with the uninterrupted ones.
Writes ``OUT/scan_throughput.json`` and ``OUT/scan_throughput.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _tables_equal(a: Path, b: Path) -> bool:
    import pyarrow.parquet as pq

    return bool(pq.read_table(a).equals(pq.read_table(b)))


def _source_hashes() -> dict[str, str]:
    """SHA-256 of every edgeae source file (other engineers may edit the tree while a benchmark runs)."""
    import hashlib

    files = [*(ROOT / "edgeae").rglob("*.py"), *(ROOT / "export").rglob("*.py"), *(ROOT / "firmware_sim").rglob("*.py")]
    return {p.relative_to(ROOT).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(files)}


def _changed_sources(before: dict[str, str]) -> list[str]:
    """Source files that changed since the run started; any the scan imports would void the comparison."""
    after = _source_hashes()
    return sorted(f for f in after.keys() | before.keys() if before.get(f) != after.get(f))


def _peak_rss_mb() -> dict[str, float]:
    """Peak resident memory of this process and of its largest finished child (worker), in MB."""
    import resource

    def mb(who: int) -> float:
        return round(resource.getrusage(who).ru_maxrss / 1024, 1)

    return {"driver": mb(resource.RUSAGE_SELF), "largest_child": mb(resource.RUSAGE_CHILDREN)}


def _done_lines(out: Path) -> int:
    try:
        return sum('"done"' in line or '"failed"' in line for line in (out / "manifest.jsonl").read_text().splitlines())
    except OSError:
        return 0


def kill_test(archive: str, model: str, out: Path, workers: int, n_images: int, reference: Path) -> dict[str, Any]:
    """Run ``edgeae scan`` in a subprocess, SIGKILL it half-way, rerun it, compare with ``reference``."""
    cmd = [sys.executable, "-m", "edgeae", "scan", archive, "--model", model, "--out", str(out),
           "--workers", str(workers), "--no-progress", "--force", "--min-valid", "0.5"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    killed_at = 0
    while proc.poll() is None:
        killed_at = _done_lines(out)
        if killed_at >= n_images // 2:
            os.killpg(proc.pid, signal.SIGKILL)  # the scan and its worker processes, all started here
            break
        time.sleep(0.2)
    proc.wait()
    resume = [c for c in cmd if c != "--force"]
    t0 = time.perf_counter()
    rc = subprocess.run(resume, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
    # status 1: the scan finished and some images failed (the synthetic archive's corrupt files always do)
    finished = rc.returncode in (0, 1) and (out / "report.json").is_file()
    report = json.loads((out / "report.json").read_text()) if finished else {}
    lines = [json.loads(s) for s in (out / "manifest.jsonl").read_text().splitlines() if s.strip().endswith("}")]
    done = [r["name"] for r in lines if r["status"] == "done" and r.get("error") != "recovered"]
    return {
        "killed_after_images": killed_at,
        "resume_rc": rc.returncode,
        "resume_stderr_tail": rc.stderr[-500:],
        "resume_seconds": round(time.perf_counter() - t0, 2),
        "resumed_images": report.get("images_scanned"),
        "any_image_scored_twice": len(done) != len(set(done)),
        "identical_to_uninterrupted": finished and _tables_equal(out / "results.parquet", reference),
    }


def main(argv: list[str] | None = None) -> int:
    from benchmarks.machine import machine_info
    from edgeae.scan.archive import walk_archive
    from edgeae.scan.report_text import report_markdown
    from edgeae.scan.run import EngineOptions, scan_archive

    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.scan_throughput", description=__doc__.splitlines()[0] if __doc__ else None
    )
    ap.add_argument("--archive", default="runs/archive")
    ap.add_argument("--model", default="orbital-gray-vae")
    ap.add_argument("--out", default="runs/scan_bench")
    ap.add_argument("--engines", nargs="+", default=["local", "ray"], choices=["local", "ray"])
    ap.add_argument("--workers", type=int, default=2, help="local worker processes")
    ap.add_argument("--num-cpus", type=int, default=2, help="CPUs of the local Ray instance")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--kill-test", action="store_true", help="also SIGKILL a scan half-way and resume it")
    args = ap.parse_args(argv)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    entries = walk_archive(args.archive)
    synth = Path(args.archive) / "SYNTH.json"
    load_before = os.getloadavg()
    result: dict[str, Any] = {
        "machine": machine_info(threads=1),
        "load_average_at_start": [round(v, 2) for v in load_before],
        "archive": {
            "path": args.archive,
            "files": len(entries),
            "synth": json.loads(synth.read_text()) if synth.exists() else None,
        },
        "model": args.model,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "engines": {},
    }
    sources_at_start = _source_hashes()
    for engine in args.engines:
        opts = EngineOptions(engine=engine, workers=args.workers, num_cpus=args.num_cpus)
        t0 = time.perf_counter()
        rep = scan_archive(
            args.archive, args.model, out / engine, engine=opts, batch_size=args.batch_size, force=True, min_valid=0.5
        )  # min_valid: the published runs' value (the default until session 26)
        wall = time.perf_counter() - t0
        print(report_markdown(rep))
        result["engines"][engine] = {
            "workers_or_cpus": args.workers if engine == "local" else args.num_cpus,
            "wall_seconds_including_startup": round(wall, 2),
            **{k: rep[k] for k in ("seconds", "patches", "patches_skipped_nodata", "patches_per_s", "done", "failed")},
            **{k: rep.get(k) for k in ("startup_seconds", "scoring_seconds", "patches_per_s_scoring")},
            "load_1min_after": round(os.getloadavg()[0], 2),
            "images_per_s": round(rep["images_scanned"] / rep["seconds"], 3) if rep["seconds"] else None,
            "failures": rep["failures"],
            "lro_nac_extrapolation": rep["lro_nac_extrapolation"],
            "artifact_hash": rep["artifact_hash"],
            "peak_rss_mb_so_far": _peak_rss_mb(),
        }
    if {"local", "ray"} <= set(args.engines):
        result["identical"] = _tables_equal(out / "local" / "results.parquet", out / "ray" / "results.parquet")
    if args.kill_test:
        ref = out / args.engines[0] / "results.parquet"
        result["kill_test"] = kill_test(args.archive, args.model, out / "killed", args.workers, len(entries), ref)
    result["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    result["sources_changed_during_run"] = _changed_sources(sources_at_start)
    (out / "scan_throughput.json").write_text(json.dumps(result, indent=2))
    rows = [
        "| engine | images | failed | patches | seconds | start-up s | patches/s (scoring) | patches/s (wall) | "
        "LRO NAC archive (days, at the scoring rate) | load after |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, e in result["engines"].items():
        ex = e["lro_nac_extrapolation"] or {}
        rows.append(f"| {name} | {e['done']} | {e['failed']} | {e['patches']} | {e['seconds']} | "
                    f"{e['startup_seconds']} | {e['patches_per_s_scoring']} | {e['patches_per_s']} | "
                    f"{ex.get('days')} ({ex.get('rate_basis') or 'wall time'}) | {e['load_1min_after']} |")  # fmt: skip
    kill = "not run (--kill-test runs it)" if result.get("kill_test") is None else result["kill_test"]
    md = "\n".join(rows) + f"\n\nidentical results: {result.get('identical')}; kill test: {kill}\n"
    (out / "scan_throughput.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
