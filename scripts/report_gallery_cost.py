"""Time the anomaly gallery of ``report.html`` on a run folder of many downlink passes, as each boot's report
builds it: the first report, then one more pass and the next report (what every later boot pays).

    .venv/bin/python scripts/report_gallery_cost.py [--passes 500] [--patches 16] [--size 32]

Writes ``--passes`` pass files of ``--patches`` anomaly patches each (``--size`` px square, uint16, as
``firmware-sim run`` packs them) into a temporary folder, then prints one JSON object: the seconds of the first
gallery, of the gallery after one more pass, and of that gallery again without its index (every pass file read, as
every report did before session 36), the pass files each read, and the index's size. docs/firmware_sim.md quotes
it.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def write_passes(downlink: Path, first: int, passes: int, patches: int, size: int) -> None:
    """Pass files ``pass_{first:05d}.bin`` on, each of ``patches`` anomaly patches of one frame."""
    from edgeae.wire.packets import WireConfig, packetise
    from edgeae.wire.products import AnomalyPatch

    downlink.mkdir(parents=True, exist_ok=True)
    wire = WireConfig(max_packet_size=1024)
    rng = np.random.default_rng(first)
    for n in range(first, first + passes):
        out = []
        for i in range(patches):
            px = rng.integers(0, 4096, (size, size, 1), dtype=np.uint16)
            score = float(rng.random() * 100)
            out += packetise(AnomalyPatch(n, 64 * i, 0, size, score, px, 12, i), config=wire)
        (downlink / f"pass_{n:05d}.bin").write_bytes(b"".join(out))


def measure(out: Path, passes: int, patches: int, size: int) -> dict[str, Any]:
    """The gallery's seconds and pass files read: first report, then one more pass and the next report."""
    from edgeae.firmware_sim import report_gallery

    reads: list[str] = []
    real = Path.read_bytes

    def counted(path: Path) -> bytes:
        if path.name.startswith("pass_"):
            reads.append(path.name)
        return real(path)

    write_passes(out / "downlink", 1, passes, patches, size)
    Path.read_bytes = counted  # type: ignore[method-assign]
    try:
        t0 = time.perf_counter()
        report_gallery._gallery(out, {})
        first, first_reads = time.perf_counter() - t0, len(reads)
        write_passes(out / "downlink", passes + 1, 1, patches, size)
        reads.clear()
        t0 = time.perf_counter()
        report_gallery._gallery(out, {})
        again, again_reads = time.perf_counter() - t0, len(reads)
        (out / "report_img" / "gallery_index.json").unlink()  # as every report before session 36: read them all
        reads.clear()
        t0 = time.perf_counter()
        report_gallery._gallery(out, {})
        full = time.perf_counter() - t0
    finally:
        Path.read_bytes = real  # type: ignore[method-assign]
    return {
        "passes": passes,
        "patches_per_pass": patches,
        "patch_px": size,
        "pass_bytes": sum(f.stat().st_size for f in (out / "downlink").glob("pass_*.bin")),
        "first_report_s": round(first, 3),
        "first_report_files_read": first_reads,
        "next_report_s": round(again, 3),
        "next_report_files_read": again_reads,
        "next_report_without_index_s": round(full, 3),
        "next_report_without_index_files_read": len(reads),
        "index_bytes": (out / "report_img" / "gallery_index.json").stat().st_size,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--passes", type=int, default=500, help="pass files before the second report (500)")
    ap.add_argument("--patches", type=int, default=16, help="anomaly patches a pass (16)")
    ap.add_argument("--size", type=int, default=32, help="patch side in px (32)")
    args = ap.parse_args(argv)
    if min(args.passes, args.patches, args.size) < 1:
        print("error: --passes, --patches and --size must be at least 1", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(measure(Path(tmp), args.passes, args.patches, args.size), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
