"""The whole downlink path in one call: frame -> sparse product -> packets -> lossy link -> ground rebuild.

For demos and benchmarks (``edgeae demo`` can call :func:`downlink_frame`); the CLI runs the same steps
through files (``edgeae downlink simulate`` then ``edgeae ground decode``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeae.firmware_sim.wire.packets import SequenceCounters, WireConfig, packetise

from .link import LinkConfig, LinkStats, simulate
from .sources import as_float, sparse_from_samples
from .station import Filler, GroundStation


@dataclass(frozen=True, eq=False)
class DownlinkResult:
    """What the ground rebuilt: ``recon`` float32 (H, W, C), ``known`` bool (H, W) pixels received."""

    recon: np.ndarray
    known: np.ndarray
    report: dict
    link: LinkStats
    wire_bytes: int
    packets: int


def downlink_frame(
    samples: np.ndarray,
    bit_depth: int,
    *,
    keep: float = 0.1,
    seed: int = 0,
    pattern: str = "uniform",
    link: LinkConfig | None = None,
    wire: WireConfig | None = None,
    fill: Filler | None = None,
    fill_name: str = "none",
    frame_id: int = 0,
) -> DownlinkResult:
    """Sample integer ``samples`` (H, W, C), send them over ``link`` and rebuild them with ``fill``.

    The report is the ground station's per-frame report (packets expected/received/lost/corrupt, pixels
    received, PSNR against ``samples``). If every packet is lost the result is a flat mid-grey frame.
    """
    frame = sparse_from_samples(samples, bit_depth, keep, seed, pattern, frame_id)
    pkts = packetise(frame, config=wire or WireConfig(), counters=SequenceCounters())
    out, stats = simulate(pkts, link or LinkConfig())
    gs = GroundStation(fill=fill, fill_name=fill_name, originals={frame_id: as_float(samples, bit_depth)})
    for _, p in out:
        gs.receive(p)
    reports = gs.finish()["products"]
    name = f"frame_{frame_id}"
    h, w, c = samples.shape
    if name not in reports or frame_id not in gs.images:
        recon = np.full((h, w, c), 0.5, np.float32)
        from edgeae.metrics import psnr

        rep = {
            "packets_expected": len(pkts),
            "packets_received": 0,
            "pixel_fraction_received": 0.0,
            "psnr": float(psnr(as_float(samples, bit_depth), recon)),
            "frame_lost": True,
        }
        return DownlinkResult(recon, np.zeros((h, w), bool), rep, stats, sum(map(len, pkts)), len(pkts))
    recon = gs.images[frame_id]
    known = gs.known[frame_id]
    return DownlinkResult(recon, known, reports[name], stats, sum(map(len, pkts)), len(pkts))
