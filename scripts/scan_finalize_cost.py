"""Time the end of an archive scan and take its peak memory over K copies of a real scan's parts.

    .venv/bin/python scripts/scan_finalize_cost.py [--data ../shared/data] [--archive orbital_gray] [--work DIR]
        [--copies 1 4 8] [--stride 16] [--runtime auto]

The end of a run (``edgeae.scan.report.finalize``: results.parquet, images.parquet, topk/ and the reports, written
from the parts) is what grows with the archive. This scans the real orbital images of the data folder
(``orbital_gray/``: 12 LRO NAC mosaics, 3 HiRISE browse strips, the pycda tiles, Tycho; 23 images, ~149,000 patches
at stride 16) once with the zoo ``orbital-gray-vae`` (int8, ``--runtime auto`` unless given: onnxruntime on an
``edgeae[scan]`` install; 2 local workers) into ``WORK/base`` (kept: a rerun with the same ``--work``, archive,
stride and runtime reuses it, one with other settings scans it again), then, for each K, makes a results folder of K
copies of its parts (hard links under other names, ``c0000/...``) and runs ``finalize`` on it ``--repeat`` times,
each in a fresh folder and process, which reports its seconds, its peak resident memory (``ru_maxrss``) and that peak
before ``finalize`` (the imports). Prints one JSON object: the machine, versions, commit (``git describe --dirty``),
what the base was scanned with (the model file and the options that pick it again), and per K the parts, patches,
each run's seconds and their median, the largest peaks, and the 1-minute load before each run. docs/scan.md quotes
it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def scan_base(
    archive: Path, work: Path, stride: int, runtime: str = "auto", model: str = "orbital-gray-vae", **scan_kw: Any
) -> Path:
    """``WORK/base``: one scan of ``archive`` with ``model`` at ``stride``; ``runtime`` "auto" (the default): the zoo's
    own choice, onnxruntime on an ``edgeae[scan]`` install (LiteRT comes only with the flight-tflite and export
    extras). What it was made with is kept in ``WORK/base.json``: a finished base made with the same archive, stride,
    model and runtime is reused as it is, one made with others (or before base.json) is scanned again (it reused
    any base, and the JSON gave this run's stride and archive for the parts of another scan). ``scan_kw``: more
    :func:`edgeae.scan.run.scan_archive` arguments (the tests' scorer and engine)."""
    from edgeae.scan.run import EngineOptions, scan_archive

    base, record = work / "base", work / "base.json"
    wanted = {"archive": str(Path(archive).resolve()), "stride": stride, "model": model, "runtime": runtime}
    have = json.loads(record.read_text()) if record.is_file() else None
    if base.exists() and (have is None or {k: have.get(k) for k in wanted} != wanted):
        was = "unknown settings" if have is None else ", ".join(f"{k} {have.get(k)}" for k in wanted)
        print(f"{base} was scanned with {was}; scanning again with " + ", ".join(f"{k} {v}" for k, v in wanted.items()),
              file=sys.stderr)  # fmt: skip
        shutil.rmtree(base)
    work.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(wanted, indent=2) + "\n")
    if not (base / "report.json").exists():
        scan_kw.setdefault("engine", EngineOptions(workers=2))
        scan_archive(archive, model, base, stride=stride, progress=False, runtime=runtime, **scan_kw)
    return base


def base_settings(work: Path) -> dict[str, Any]:
    """What ``WORK/base`` was scanned with (``WORK/base.json``) and the model file that scored and the options that
    score with it again (its scan.json)."""
    model = json.loads((work / "base" / "scan.json").read_text())["config"]["model"]
    return {**json.loads((work / "base.json").read_text()), "file": model.get("file"), "options": model.get("options")}


def build_copies(base: Path, out: Path, k: int) -> int:
    """``out``: a results folder holding ``k`` copies of ``base``'s done images (their parts hard-linked, or copied
    across file systems, under the names ``c0000/NAME`` ...); returns the number of parts."""
    from edgeae.scan.archive import entry_key

    if out.exists():
        shutil.rmtree(out)
    (out / "parts").mkdir(parents=True)
    shutil.copy(base / "scan.json", out / "scan.json")
    last = {}
    for line in (base / "manifest.jsonl").read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            last[rec["name"]] = rec
    lines = []
    for c in range(k):
        for rec in last.values():
            if rec["status"] != "done":
                continue
            name = f"c{c:04d}/{rec['name']}"
            key = entry_key(name)
            for suffix in (".parquet", ".top.npz", ".meta.json"):
                src = base / "parts" / f"{rec['key']}{suffix}"
                if src.exists():
                    try:
                        os.link(src, out / "parts" / f"{key}{suffix}")
                    except OSError:
                        shutil.copy2(src, out / "parts" / f"{key}{suffix}")
            lines.append(json.dumps({**rec, "name": name, "key": key}))
    (out / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return len(lines)


def finalize_once(out: Path, paths: dict[str, str]) -> dict[str, Any]:
    """``finalize`` on the results folder ``out`` in this process: seconds, peak RSS before and after (MiB)."""
    from edgeae.scan.archive import ArchiveEntry
    from edgeae.scan.config import ScanConfig
    from edgeae.scan.report import finalize
    from edgeae.scan.state import ScanStore

    names = sorted(json.loads(line)["name"] for line in (out / "manifest.jsonl").read_text().splitlines() if line)
    entries = [ArchiveEntry(Path(paths[n.split("/", 1)[1]]), n) for n in names]
    config = ScanConfig.from_dict(json.loads((out / "scan.json").read_text())["config"])
    store = ScanStore(out, config)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    report = finalize(store, entries, {})
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "parts": len(entries),
        "patches": report["patches_in_results"],
        "seconds": round(seconds, 2),
        "peak_rss_mib": round(peak / 1024, 1),
        "rss_before_finalize_mib": round(before / 1024, 1),
    }


def measure(
    archive: Path, work: Path, copies: list[int], stride: int, repeat: int = 3, runtime: str = "auto"
) -> dict[str, Any]:
    """Scan ``archive`` once, then ``finalize`` over each number of copies ``repeat`` times, each in a fresh process;
    the JSON-ready result (the median of the seconds, the largest peak)."""
    from edgeae.scan.archive import walk_archive

    base = scan_base(archive, work, stride, runtime)
    # each image's name in the base scan -> its file (the copies name the same files)
    paths = {e.name: str(e.path) for e in walk_archive(archive)}
    (work / "paths.json").write_text(json.dumps(paths))
    rows = []
    for k in copies:
        out = work / f"copies_{k}"
        runs = []
        for _ in range(repeat):  # each in a fresh folder (no results to reuse) and a fresh process
            build_copies(base, out, k)
            load = os.getloadavg()[0]
            child = subprocess.run(
                [sys.executable, __file__, "--finalize", str(out), "--paths", str(work / "paths.json")],
                capture_output=True, text=True, check=True, cwd=ROOT,
            )  # fmt: skip
            runs.append({"load_1min_before": round(load, 2), **json.loads(child.stdout)})
            shutil.rmtree(out)
        seconds = sorted(r["seconds"] for r in runs)
        rows.append({
            "copies": k, "parts": runs[0]["parts"], "patches": runs[0]["patches"],
            "seconds_median": seconds[len(seconds) // 2], "seconds": [r["seconds"] for r in runs],
            "peak_rss_mib_max": max(r["peak_rss_mib"] for r in runs),
            "rss_before_finalize_mib_max": max(r["rss_before_finalize_mib"] for r in runs),
            "load_1min_before": [r["load_1min_before"] for r in runs],
        })  # fmt: skip
    return {
        "command": "python scripts/scan_finalize_cost.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()} {_cpu_name()}".strip(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "pyarrow": __import__("pyarrow").__version__,
        "commit": _commit(),
        "archive": str(archive),
        "stride": stride,
        "base": base_settings(work),  # what the parts were scanned with: the model file and the options that pick it
        "base_images": sum(1 for _ in (base / "parts").glob("*.parquet")),
        "runs": rows,
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "describe", "--always", "--dirty"], capture_output=True, text=True, check=True, cwd=ROOT
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=Path(os.environ.get("EDGEAE_DATA", ROOT.parent / "shared" / "data")))
    p.add_argument("--work", type=Path, default=None, help="where the scan and the copies go (default: a temp folder)")
    p.add_argument("--archive", default="orbital_gray", help="the folder of --data to scan (default orbital_gray)")
    p.add_argument("--copies", type=int, nargs="+", default=[1, 4, 8])
    p.add_argument("--stride", type=int, default=16)
    p.add_argument(
        "--runtime", choices=("auto", "tflite", "onnx"), default="auto",
        help="int8 runtime of the base scan (default auto: the zoo's choice; onnxruntime on an edgeae[scan] install)",
    )  # fmt: skip
    p.add_argument("--repeat", type=int, default=3, help="finalize runs per number of copies (default 3)")
    p.add_argument("--finalize", type=Path, help=argparse.SUPPRESS)  # the child: one finalize, its JSON on stdout
    p.add_argument("--paths", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.finalize is not None:
        print(json.dumps(finalize_once(args.finalize, json.loads(args.paths.read_text()))))
        return 0
    archive = args.data / args.archive
    if not archive.is_dir():
        print(f"no real images at {archive} (set --data or EDGEAE_DATA)", file=sys.stderr)
        return 2
    if args.work is None:
        with tempfile.TemporaryDirectory(prefix="scan_finalize_cost-") as tmp:
            result = measure(archive, Path(tmp), args.copies, args.stride, args.repeat, args.runtime)
    else:
        args.work.mkdir(parents=True, exist_ok=True)
        result = measure(archive, args.work, args.copies, args.stride, args.repeat, args.runtime)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
