"""Measure how the flight queue's index (``OUT/queue/index.json``) grows with a mission: bytes per frame of the
ledger, per product while it waits, and per frame once its products are sent (what a long mission keeps).

    .venv/bin/python scripts/queue_index_growth.py [--frames 1000] [--source-len 48]

Each frame has a ledger entry (its source path ``--source-len`` characters long) and three products (an anomaly
patch, its telemetry record and its sparse pixels: one small packet each); they are queued, then sent in one pass,
then the index is saved twice (a finished item is compacted one save after it finished). Prints one JSON object;
docs/firmware_sim.md quotes its figures and tests/test_queue_s36_f1.py runs it.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

KINDS = ("patch", "telemetry", "sparse")


def _size(root: Path) -> int:
    return (root / "index.json").stat().st_size


def measure(folder: Path, frames: int = 1000, source_len: int = 48) -> dict[str, Any]:
    """The index's size per frame and per product of a synthetic mission of ``frames`` frames in ``folder``."""
    from edgeae.firmware_sim.queue import DownlinkQueue

    from edgeae.wire.packets import WireConfig, packetise
    from edgeae.wire.products import TelemetryRecord

    wire = WireConfig(max_packet_size=256)
    packets = packetise(TelemetryRecord(0, b"x" * 64), config=wire)
    ledger_only, q = DownlinkQueue(folder / "ledger", 1 << 40), DownlinkQueue(folder / "queue", 1 << 40)
    for d in (ledger_only, q):
        d.save()
    empty = _size(q.root)
    for fid in range(frames):
        entry = {"source": "/" + f"data/frame_{fid:08d}.tif".rjust(source_len - 1, "x"), "status": "processed"}
        for d in (ledger_only, q):
            d.state["frames"][str(fid)] = {**entry, "reason": ""}
            d.state["next_frame_id"] = fid + 1
        for kind in KINDS:
            q.put(kind, fid, packets)
    ledger_only.save()
    q.save()
    ledger = (_size(ledger_only.root) - empty) / frames
    waiting = _size(q.root)
    q.downlink_pass(1 << 40, folder / "downlink")  # every product sent (the pass saves the index)
    q.save()  # finished items are compacted one save after they finished
    doc = json.loads((q.root / "index.json").read_text())
    return {
        "frames": frames,
        "products": frames * len(KINDS),
        "source_len": source_len,
        "ledger_bytes_per_frame": round(ledger, 1),
        "bytes_per_waiting_product": round((waiting - empty - ledger * frames) / (frames * len(KINDS)), 1),
        "index_bytes_all_sent": _size(q.root),
        "bytes_per_frame_all_sent": round((_size(q.root) - empty) / frames, 1),
        "items_in_index_all_sent": len(doc["items"]),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=1000, help="frames of the synthetic mission (default 1000)")
    ap.add_argument("--source-len", type=int, default=48, help="characters of each frame's source path (48)")
    args = ap.parse_args(argv)
    if args.frames < 1 or args.source_len < 24:
        print("error: --frames must be at least 1 and --source-len at least 24", file=sys.stderr)
        return 2
    shm = Path("/dev/shm")  # each queued item is fsynced: on a RAM disk 1000 frames take seconds, not half a minute
    with tempfile.TemporaryDirectory(dir=shm if shm.is_dir() else None) as tmp:
        print(json.dumps(measure(Path(tmp), args.frames, args.source_len), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
