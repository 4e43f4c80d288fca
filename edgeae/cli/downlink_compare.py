"""``edgeae downlink simulate --compare``: the sparse frame rebuilt on the ground next to each codec at the same
wire bytes over the same link, and its table (the comparison side of :mod:`edgeae.cli.downlink`)."""

from __future__ import annotations

import argparse
import math
from typing import Any


def compare_filler(model: str | None):
    """(fill, name) that rebuilds the sparse frame for --compare: the CAE ``model``, else classical Telea."""
    from edgeae.ground.station import make_filler

    return make_filler(model) if model else make_filler(None, "telea")


def strict_json(obj: Any) -> str:
    """Strict JSON (a non-finite number as null, not ``Infinity``/``NaN``), as the ground station writes it."""
    from edgeae.ground.station import strict_json

    return strict_json(obj)


def compare(
    args: argparse.Namespace, codecs: list[str], filler, samples, bits: int, received, wire_bytes: int, link
) -> list[dict]:
    """The sparse frame rebuilt on the ground, and each codec at the same wire bytes over the same link. A lost
    frame (sparse or codec) has ``psnr`` None and ``lost`` True; one identical to the original has ``identical``
    True and ``psnr`` the ground station's cap (``PSNR_CAP_DB``, 120 dB: its PSNR is infinite, which JSON cannot
    hold), as the ground station's own reports give it."""
    import numpy as np

    from edgeae.ground.baselines import same_bytes
    from edgeae.ground.sources import as_float
    from edgeae.ground.station import PSNR_CAP_DB, GroundStation

    fill, name = filler
    gs = GroundStation(fill=fill, fill_name=name, originals={args.frame_id: as_float(samples, bits)})
    for _, p in received:
        gs.receive(p)
    rep = gs.finish()["products"].get(f"frame_{args.frame_id}", {})
    rows = [{"method": f"sparse keep {args.keep} + {name}", "wire_bytes": wire_bytes, "psnr": rep.get("psnr"),
             "lost": "psnr" not in rep, "longest_row_gap": rep.get("longest_row_gap")}]  # fmt: skip
    img8 = samples if bits <= 8 else np.round(as_float(samples, bits) * 255).astype(np.uint8)
    if "psnr_note" in rep:  # the station's exact rebuild: PSNR reported at its cap
        rows[0]["psnr"], rows[0]["identical"] = PSNR_CAP_DB, True
    rows += same_bytes(img8, codecs, wire_bytes, link, args.max_packet)
    for r in rows[1:]:
        if isinstance(r.get("psnr"), float) and math.isinf(r["psnr"]):
            r["psnr"], r["identical"] = PSNR_CAP_DB, True
    return rows


def compare_table(rows: list[dict]) -> str:
    lines = ["| method | wire bytes | PSNR (dB) | decoded |", "|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['method']} | - | - | {r['error']} |")
            continue
        if r.get("identical"):
            p = "identical"
        else:
            p = "lost" if r.get("lost") or r.get("psnr") is None else f"{r['psnr']:.2f}"
        lines.append(f"| {r['method']} | {r['wire_bytes']:,} | {p} | {r.get('decoded', '')} |")
    return "\n".join(lines)
