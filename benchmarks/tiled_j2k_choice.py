"""How the link benchmark's tiled JPEG 2000 row was set up: tile side, share rule and concealment, chosen on the rover
train and validation crops (never the test crops the benchmark reports).

Each crop is the link benchmark's (``benchmarks/link_comparison.py``: a 512-px centre crop, its sparse frame at
``--keep`` with mask seed 1000 + i, payload layout 2, ccsds121, ``--max-packet``-byte packets) and the tiles share
that frame's wire bytes (:func:`edgeae.ground.tiled_j2k.at_wire_bytes`). Each ``--rules`` entry is a way to cut
them:

- ``N`` (e.g. ``64``): N-px tiles, each tile's share held to whole packets (a share a little over one packet gives
  one full packet, not a packet and a sliver: :func:`edgeae.ground.tiled_j2k.share_budget`);
- ``N-spill``: N-px tiles, each tile's share as it is (a tile may end in a partial packet; the rule until session
  39 h10);
- ``packet``: per crop, :func:`edgeae.ground.tiled_j2k.packet_tile`'s side (a tile per packet: of every side, each
  share held to one packet, the one whose full tile gets the most coded bytes per pixel); the rule of every tiled row
  since session 39 h10 (64 px on every crop here at keep 0.1 and 0.11);
- ``fit``: per crop, the largest side whose share fits one packet (the science stage's rule until session 39 h10).

Every rule and ``--fills`` concealment is sent over the link benchmark's links (``--seeds`` seeds per lossy link)
with link seeds 10,000 + 17 i + s: disjoint from the stage's own (17 i + s), so no loss pattern of the selection
recurs in the test run. Per rule, fill, keep and link: mean PSNR (dB, the link benchmark's), the tiles lost and the
seconds the concealment took.

    .venv/bin/python benchmarks/tiled_j2k_choice.py --out runs/tiled_j2k_choice \\
        [--keeps 0.1,0.11] [--rules 32,64,128,packet,fit,64-spill] [--fills telea] [--max-packet 1024] [--seeds 3]

What the defaults (and ``--keeps 0.1 --rules 64 --fills telea,blend,linear,normconv-wide`` for the fills) gave in
session 39 is quoted in ``edgeae/ground/tiled_j2k.py`` (TILE, FILL, packet_tile) and docs/wire-format.md.

Writes ``results.json`` and ``results.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from any folder
from benchmarks.link_comparison import LINKS, centre_crop
from benchmarks.machine import machine_info
from edgeae.datasets import split_files
from edgeae.ground.sources import as_float, image_samples, sparse_from_samples
from edgeae.ground.tiled_j2k import MIN_TILE, at_wire_bytes, over_link_tiled, packet_tile, tile_packets
from edgeae.metrics import psnr
from edgeae.wire.codec import DEFAULT_SAMPLE_CODEC
from edgeae.wire.packets import WireConfig, packetise

SEED0 = 10_000
"""Link seeds of the selection: SEED0 + 17 i + s (the link stage uses 17 i + s, i and s small)."""


def parse_rule(rule: str) -> tuple[int, bool]:
    """(tile side, 0 for ``packet`` and -1 for ``fit``; whether shares are held to whole packets) of a ``--rules``
    entry."""
    if rule in ("packet", "fit"):
        return (0 if rule == "packet" else -1), True
    side, spill = (rule[: -len("-spill")], False) if rule.endswith("-spill") else (rule, True)
    if not side.isdigit() or int(side) < MIN_TILE:
        raise ValueError(f"--rules: {rule!r} is not N, N-spill (N >= {MIN_TILE} px), packet or fit")
    return int(side), spill


def fit_tile(height: int, width: int, wire_budget: int, max_packet: int) -> int:
    """The largest side (a multiple of MIN_TILE px) whose equal share of ``wire_budget`` fits one packet (the rule
    of ``packet_tile`` until session 39 h10); MIN_TILE when none does."""
    best = MIN_TILE
    for side in range(MIN_TILE, -(-max(height, width) // MIN_TILE) * MIN_TILE + 1, MIN_TILE):
        if wire_budget // (-(-height // side) * -(-width // side)) <= max_packet:
            best = side
    return best


def crop_rows(img: np.ndarray, i: int, name: str, keep: float, args: argparse.Namespace) -> list[dict]:
    """Every rule and fill of one crop at one keep, over every link and seed."""
    frame = sparse_from_samples(img, 8, keep, seed=1000 + i, frame_id=i)
    wire = sum(map(len, packetise(frame, config=WireConfig(args.max_packet, DEFAULT_SAMPLE_CODEC, 2))))
    rows = []
    for rule in args.rules.split(","):
        side, whole = parse_rule(rule)
        if side == 0:
            side = packet_tile(img.shape[0], img.shape[1], wire, args.max_packet, img.shape[2])
        elif side < 0:
            side = fit_tile(img.shape[0], img.shape[1], wire, args.max_packet)
        base = {"image": name, "keep": keep, "rule": rule, "tile": side, "budget": wire}
        try:
            streams, q, wb = at_wire_bytes(img, side, wire, args.max_packet, whole_packets=whole)
        except ValueError as exc:
            rows.append({**base, "error": str(exc)})
            continue
        sent = {"tiles": len(streams), "packets": len(tile_packets(streams, args.max_packet)), "wire_bytes": wb,
                "quality": q}  # fmt: skip
        for lname, cfg in LINKS.items():
            for s in range(args.seeds if lname != "perfect" else 1):
                link = dataclasses.replace(cfg, seed=SEED0 + 17 * i + s)
                for fill in args.fills.split(","):
                    t0 = time.perf_counter()
                    r = over_link_tiled(streams, img.shape, side, link, args.max_packet, fill)
                    took = time.perf_counter() - t0
                    p = float(psnr(as_float(img, 8), as_float(r.image, 8)))
                    rows.append({**base, **sent, "link": lname, "seed": link.seed, "fill": fill, "psnr": p,
                                 "tiles_lost": int(r.tiles_lost.sum()), "seconds": took})  # fmt: skip
    return rows


def markdown(rows: list[dict], meta: dict) -> str:
    out = io.StringIO()
    links = list(dict.fromkeys(r["link"] for r in rows if "link" in r))
    out.write(f"Tiled JPEG 2000 on the rover train + validation crops ({', '.join(meta['crops'])}; 512-px centre "
              f"crops), at the sparse frame's wire bytes ({meta['max_packet']}-byte packets), link seeds "
              f"{SEED0:,} + 17 i + s, {meta['seeds']} per lossy link.\n\nMean PSNR (dB) over crops and seeds; in "
              "brackets: tiles lost of sent. Tiles: side (px) per crop, tiles, packets, wire bytes (means); "
              "s: mean seconds to conceal a frame.\n\n")  # fmt: skip
    out.write("| keep | rule | fill | tiles | " + " | ".join(links) + " | s |\n|---|---|---|---|"
              + "---|" * len(links) + "---|\n")  # fmt: skip
    keys = list(dict.fromkeys((r["keep"], r["rule"], r.get("fill", "")) for r in rows))
    for keep, rule, fill in keys:
        sel = [r for r in rows if (r["keep"], r["rule"], r.get("fill", "")) == (keep, rule, fill)]
        if any("error" in r for r in sel):
            out.write(f"| {keep} | {rule} | - | {'; '.join(r['error'] for r in sel if 'error' in r)} |\n")
            continue
        per = {r["image"]: r for r in sel}.values()  # one entry per crop
        sides = "/".join(str(s) for s in dict.fromkeys(r["tile"] for r in per))
        tiles, pk = np.mean([r["tiles"] for r in per]), np.mean([r["packets"] for r in per])
        tiles = f"{sides} px, {tiles:.0f} tiles, {pk:.0f} pk, {np.mean([r['wire_bytes'] for r in per]):,.0f} B"
        cells = []
        for lk in links:
            at = [r for r in sel if r["link"] == lk]
            lost, sent = sum(r["tiles_lost"] for r in at), sum(r["tiles"] for r in at)
            cells.append(f"{np.mean([r['psnr'] for r in at]):.2f} ({lost}/{sent})")
        secs = np.mean([r["seconds"] for r in sel if r["link"] != "perfect"])
        out.write(f"| {keep} | {rule} | {fill} | {tiles} | " + " | ".join(cells) + f" | {secs:.2f} |\n")
    out.write(f"\n{meta['seconds']} s; commit {meta['commit']}; `{meta['command']}`\n")
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python benchmarks/tiled_j2k_choice.py", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/tiled_j2k_choice"))
    ap.add_argument("--keeps", default="0.1", help="sparse keeps whose wire bytes the tiles share (comma-separated)")
    ap.add_argument("--rules", default="32,64,128,packet,fit,64-spill", help="N, N-spill, packet or fit (comma-sep.)")
    ap.add_argument("--fills", default="telea", help="classical fills that conceal lost tiles (comma-separated)")
    ap.add_argument("--max-packet", type=int, default=1024)
    ap.add_argument("--seeds", type=int, default=3, help="link seeds per lossy link")
    args = ap.parse_args(argv)
    from edgeae.inpaint import METHODS

    try:
        keeps = [float(k) for k in args.keeps.split(",")]
        for rule in args.rules.split(","):
            parse_rule(rule)
    except ValueError as exc:
        ap.error(str(exc))
    bad = [f for f in args.fills.split(",") if f not in METHODS]
    if bad or args.seeds < 1 or not all(0 < k <= 1 for k in keeps):
        ap.error(f"--fills: some of {', '.join(METHODS)}; --seeds at least 1; --keeps in (0, 1] (got {bad or ''})")
    files = split_files("rover_rgb", "train") + split_files("rover_rgb", "val")
    t0, rows = time.time(), []
    for i, path in enumerate(files):
        img = centre_crop(image_samples(path, channels=3)[0], 512)
        for keep in keeps:
            rows += crop_rows(img, i, path.name, keep, args)
        print(f"[{time.time() - t0:6.1f} s] {path.name} {img.shape}", flush=True)
    cmd = " ".join(["benchmarks/tiled_j2k_choice.py", *(sys.argv[1:] if argv is None else argv)])
    meta = {"crops": [p.name for p in files], "max_packet": args.max_packet, "seeds": args.seeds,
            "seconds": round(time.time() - t0, 1), "commit": machine_info()["commit"], "command": cmd}  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    md = markdown(rows, meta)
    (args.out / "results.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
