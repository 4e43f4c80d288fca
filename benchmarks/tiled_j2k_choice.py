"""How the link benchmark's tiled JPEG 2000 row was set up: tile side, share rule and concealment, chosen on the rover
train and validation crops (never the test crops the benchmark reports).

Each crop is the link benchmark's (``benchmarks/link_comparison.py``: a 512-px centre crop, its sparse frame at
``--keep`` with mask seed 1000 + i, payload layout 2, ccsds121, ``--max-packet``-byte packets) and the tiles share
that frame's wire bytes (:func:`edgeae.ground.tiled_j2k.at_wire_bytes`). Each ``--rules`` entry is a way to cut
them:

- ``N`` (e.g. ``64``): N-px tiles, each tile's share held to whole packets (a share a little over one packet gives
  one full packet, not a packet and a sliver: :func:`edgeae.ground.tiled_j2k.share_budget`);
- ``packet``: per crop, :func:`edgeae.ground.tiled_j2k.packet_tile`'s side (a tile per packet: of every side, each
  share held to one packet, the one whose full tile gets the most coded bytes per pixel), its budget held to a
  packet a tile as :func:`edgeae.ground.tiled_j2k.within` holds it; the rule of every tiled row since session 39
  h10 (64 px on every 512-px crop here at keep 0.1 and 0.11, 128 at keep 0.02);
- ``fit``: per crop, the largest side whose share fits one packet (the science stage's rule until session 39 h10);

each optionally followed by how the tiles share the bytes (default: equal shares, the shipped rule):

- ``-spill``: equal shares as they are (a tile may end in a partial packet; the rule until session 39 h10);
- ``-area``: a tile's share proportional to its pixels (an edge sliver no longer takes a full share); ``packet-area``
  picks its side as ``packet_tile`` does under area shares (:func:`area_tile`) and holds each tile to one packet;
- ``-eq``: one target PSNR for every tile, the highest whose packets all fit the same wire bytes, each tile held to
  the packets its equal share gives it (one for ``packet``) and at its best within them when the common target
  does not fit (:func:`split_streams`): flat tiles spend less, busy ones up to their packets;
- ``-eq2``: the same, each tile held to twice those packets (a busy tile may take a second packet).

Every rule and ``--fills`` concealment is sent over ``--links`` (the link benchmark's links, 30 % and 40 %
independent loss among them, :data:`CHOICE_LINKS`; ``--seeds`` seeds per lossy link)
with link seeds 10,000 + 17 i + s: disjoint from the stage's own (17 i + s), so no loss pattern of the selection
recurs in the test run. Per rule, fill, keep and link: mean PSNR (dB, the link benchmark's), the tiles lost and the
seconds the concealment took; then each rule's gain over the first rule per link seed (the same loss draws), against
the first rule's seed-to-seed spread (:func:`spread`).

    .venv/bin/python benchmarks/tiled_j2k_choice.py --out runs/tiled_j2k_choice [--keeps 0.1,0.02] \\
        [--rules packet,packet-area,packet-eq,packet-eq2] [--fills telea] [--max-packet 1024] [--seeds 3] \\
        [--links all] [--crop 512] [--crops 0]

What session 39 (``--rules 32,64,128,packet,fit,64-spill`` at keeps 0.1 and 0.11; ``--keeps 0.1 --rules 64 --fills
telea,blend,linear,normconv-wide`` for the fills) and session 40 (the share rules, 512- and 480-px crops) gave is
quoted in ``edgeae/ground/tiled_j2k.py`` (TILE, FILL, packet_tile, at_wire_bytes) and docs/wire-format.md.

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
from edgeae.ground.baselines import QUALITY_RANGE
from edgeae.ground.link import LinkConfig
from edgeae.ground.sources import as_float, image_samples, sparse_from_samples
from edgeae.ground.tiled_j2k import (
    MIN_TILE,
    at_wire_bytes,
    encode_tile,
    header_bytes,
    over_link_tiled,
    packet_tile,
    share_budget,
    tile_at_bytes,
    tile_boxes,
    tile_packets,
)
from edgeae.metrics import psnr
from edgeae.wire.codec import DEFAULT_SAMPLE_CODEC
from edgeae.wire.layout import overhead
from edgeae.wire.packets import WireConfig, packetise

SEED0 = 10_000
"""Link seeds of the selection: SEED0 + 17 i + s (the link stage uses 17 i + s, i and s small)."""
CHOICE_LINKS: dict[str, LinkConfig] = dict(LINKS)
"""The link stage's links, 30 % and 40 % loss among them (the link stage measures them on the test crops since
session 43; this script chose the tile rule on training/validation crops before that)."""
SPLITS = ("equal", "area", "eq", "eq2")
"""How the tiles share the wire bytes: ``equal`` shares (the shipped rule), ``area``-proportional shares, ``eq``:
one target PSNR for every tile (the highest whose tiles' packets fit the budget; a tile capped at the packets its
equal share gives it, at its best within them), ``eq2``: the same capped at twice those packets."""


def parse_links(spec: str) -> list[str]:
    """The :data:`CHOICE_LINKS` names of a comma-separated ``--links`` (a name may hold a comma: pieces are joined
    until they name a link); ``all``: every link. ValueError naming what is not a link."""
    if spec == "all":
        return list(CHOICE_LINKS)
    out, piece = [], ""
    for part in spec.split(","):
        piece = f"{piece},{part}" if piece else part
        if piece.strip() in CHOICE_LINKS:
            out.append(piece.strip())
            piece = ""
    if piece or not out:
        raise ValueError(f"--links: {piece or spec!r} is not one of {', '.join(CHOICE_LINKS)} (or all)")
    return out


def parse_rule(rule: str) -> tuple[int, bool, str]:
    """(tile side, 0 for ``packet`` and -1 for ``fit``; whether shares are held to whole packets; the split of
    :data:`SPLITS`) of a ``--rules`` entry: ``BASE`` or ``BASE-MOD``, BASE N (>= MIN_TILE px), packet or fit, MOD
    spill (shares as they are) or a split."""
    base, sep, mod = rule.partition("-")
    if (sep and mod not in ("spill", *SPLITS)) or not (
        base in ("packet", "fit") or (base.isdigit() and int(base) >= MIN_TILE)
    ):
        raise ValueError(f"--rules: {rule!r} is not N, packet or fit (N >= {MIN_TILE} px), optionally followed by "
                         f"-spill or -{'/-'.join(SPLITS[1:])}")  # fmt: skip
    side = 0 if base == "packet" else -1 if base == "fit" else int(base)
    return side, mod != "spill", mod if mod in SPLITS else "equal"


def area_tile(height: int, width: int, wire_budget: int, max_packet: int, channels: int = 3) -> int:
    """``packet_tile`` under area shares: of every side, the full tile's area share held to one packet, the one
    whose full tile gets the most coded bytes per pixel (an edge sliver costs its header, not a full share)."""
    per = max_packet - overhead("telemetry")
    best, rate = MIN_TILE, -np.inf
    for side in range(MIN_TILE, -(-max(height, width) // MIN_TILE) * MIN_TILE + 1, MIN_TILE):
        th, tw = min(side, height), min(side, width)
        b = min(share_budget(wire_budget * th * tw // (height * width), max_packet), per)
        r = (b - header_bytes(th, tw, channels)) / (th * tw)
        if r > rate:
            best, rate = side, r
    return best


def split_streams(img: np.ndarray, side: int, wire: int, max_packet: int, split: str, cap: int = 0) -> list[bytes]:
    """The tiles' codestreams (raster order) under ``split`` (:data:`SPLITS` less ``equal``) within ``wire`` wire
    bytes; ``cap``: no tile over that many codestream bytes (0: none beyond the split's). ValueError when the lowest
    quality does not fit."""
    h, w = img.shape[:2]
    boxes = tile_boxes(h, w, side)
    tiles = [np.ascontiguousarray(img[y : y + th, x : x + tw]) for y, x, th, tw in boxes]
    if split == "area":
        shares = [share_budget(wire * t.shape[0] * t.shape[1] // (h * w), max_packet) for t in tiles]
        return [tile_at_bytes(t, min(b, cap or b))[0] for t, b in zip(tiles, shares, strict=True)]
    per = max_packet - overhead("telemetry")
    top = -(-share_budget(wire // len(boxes), max_packet) // per) * per * (2 if split == "eq2" else 1)
    top = min(top, cap) if cap else top
    best = [tile_at_bytes(t, top) for t in tiles]  # each tile at its best within its cap
    lo, hi = QUALITY_RANGE["jpeg2000"]

    def at(q: float) -> list[bytes]:
        return [cs if qb <= q else min(cs, encode_tile(t, q), key=len) for t, (cs, qb) in zip(tiles, best, strict=True)]

    out = at(lo)
    if sum(map(len, tile_packets(out, max_packet))) > wire:
        raise ValueError(f"{split}: {len(boxes)} {side}-px tiles at the lowest quality are over {wire:,} wire bytes")
    for _ in range(10):
        mid = (lo + hi) / 2
        got = at(mid)
        if sum(map(len, tile_packets(got, max_packet))) <= wire:
            out, lo = got, mid
        else:
            hi = mid
    return out


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
        side, whole, split = parse_rule(rule)
        cap = 0
        if side == 0:  # a tile per packet, as every tiled row sends it (tiled_j2k.within)
            pick = area_tile if split == "area" else packet_tile
            side, cap = (
                pick(img.shape[0], img.shape[1], wire, args.max_packet, img.shape[2]),
                (args.max_packet - overhead("telemetry")) * (2 if split == "eq2" else 1),
            )
        elif side < 0:
            side = fit_tile(img.shape[0], img.shape[1], wire, args.max_packet)
        base = {"image": name, "keep": keep, "rule": rule, "tile": side, "budget": wire}
        try:
            if split == "equal":
                budget = min(wire, len(tile_boxes(img.shape[0], img.shape[1], side)) * args.max_packet) if cap else wire
                streams, _, _ = at_wire_bytes(img, side, budget, args.max_packet, whole_packets=whole)
            else:
                streams = split_streams(img, side, wire, args.max_packet, split, cap)
        except ValueError as exc:
            rows.append({**base, "error": str(exc)})
            continue
        pk = tile_packets(streams, args.max_packet)
        sent = {"tiles": len(streams), "packets": len(pk), "wire_bytes": sum(map(len, pk))}
        for lname in parse_links(args.links):
            for s in range(args.seeds if lname != "perfect" else 1):
                link = dataclasses.replace(CHOICE_LINKS[lname], seed=SEED0 + 17 * i + s)
                for fill in args.fills.split(","):
                    t0 = time.perf_counter()
                    r = over_link_tiled(streams, img.shape, side, link, args.max_packet, fill)
                    took = time.perf_counter() - t0
                    p = float(psnr(as_float(img, 8), as_float(r.image, 8)))
                    rows.append({**base, **sent, "link": lname, "seed": link.seed, "s": s, "fill": fill, "psnr": p,
                                 "tiles_lost": int(r.tiles_lost.sum()), "seconds": took})  # fmt: skip
    return rows


def seed_means(rows: list[dict], keep: float, rule: str, fill: str, link: str) -> dict[int, float]:
    """Mean PSNR over the crops per link seed index ``s`` of one keep, rule, fill and link."""
    sel = [r for r in rows if "link" in r and (r["keep"], r["rule"], r["fill"], r["link"]) == (keep, rule, fill, link)]
    return {s: float(np.mean([r["psnr"] for r in sel if r["s"] == s])) for s in sorted({r["s"] for r in sel})}


def spread(rows: list[dict], links: list[str]) -> str:
    """Per keep and fill, each rule's gain over the keep's first rule (mean over crops, per seed: the mean of the
    per-seed gains [their range]) against the first rule's seed-to-seed spread (range of its per-seed means); a
    rule that failed on some crop is left out."""
    failed = {(r["keep"], r["rule"]) for r in rows if "error" in r}  # on some crop: its means cover fewer crops
    good = [r for r in rows if "link" in r and (r["keep"], r["rule"]) not in failed]
    out = io.StringIO()
    out.write("\nGain (dB) over the first rule: mean of the per-seed gains [min, max]; last row per keep: the first "
              "rule's seed-to-seed spread (max - min of its per-seed means over the crops).\n\n")  # fmt: skip
    out.write("| keep | rule | fill | " + " | ".join(links) + " |\n|---|---|---|" + "---|" * len(links) + "\n")
    for keep, fill in dict.fromkeys((r["keep"], r["fill"]) for r in good):
        rules = list(dict.fromkeys(r["rule"] for r in good if (r["keep"], r["fill"]) == (keep, fill)))
        ref = {lk: seed_means(good, keep, rules[0], fill, lk) for lk in links}
        for rule in rules[1:]:
            cells = []
            for lk in links:
                m = seed_means(good, keep, rule, fill, lk)
                d = [m[s] - ref[lk][s] for s in m if s in ref[lk]]
                cells.append(f"{np.mean(d):+.2f} [{min(d):+.2f}, {max(d):+.2f}]" if d else "-")
            out.write(f"| {keep} | {rule} | {fill} | " + " | ".join(cells) + " |\n")
        cells = [f"{max(v.values()) - min(v.values()):.2f}" if v else "-" for v in ref.values()]
        out.write(f"| {keep} | {rules[0]}: spread | {fill} | " + " | ".join(cells) + " |\n")
    return out.getvalue()


def markdown(rows: list[dict], meta: dict) -> str:
    out = io.StringIO()
    links = list(dict.fromkeys(r["link"] for r in rows if "link" in r))
    out.write(f"Tiled JPEG 2000 on the rover train + validation crops ({', '.join(meta['crops'])}; "
              f"{meta.get('crop', 512)}-px centre crops), at the sparse frame's wire bytes ({meta['max_packet']}-byte "
              f"packets), link seeds {SEED0:,} + 17 i + s, {meta['seeds']} per lossy link.\n\nMean PSNR (dB) over "
              "crops and seeds; in brackets: tiles lost of sent. Tiles: side (px) per crop, tiles, packets, wire "
              "bytes (means); s: mean seconds to conceal a frame.\n\n")  # fmt: skip
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
    out.write(spread(rows, links))
    out.write(f"\n{meta['seconds']} s; commit {meta['commit']}; `{meta['command']}`\n")
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python benchmarks/tiled_j2k_choice.py", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/tiled_j2k_choice"))
    ap.add_argument("--keeps", default="0.1", help="sparse keeps whose wire bytes the tiles share (comma-separated)")
    ap.add_argument(
        "--rules",
        default="packet,packet-area,packet-eq,packet-eq2",
        help="N, packet or fit, each optionally -spill, -area, -eq or -eq2 (comma-separated)",
    )
    ap.add_argument("--fills", default="telea", help="classical fills that conceal lost tiles (comma-separated)")
    ap.add_argument("--max-packet", type=int, default=1024)
    ap.add_argument("--seeds", type=int, default=3, help="link seeds per lossy link")
    names = ", ".join(CHOICE_LINKS).replace("%", "%%")  # argparse formats help with %: 'loss 20%' would break it
    ap.add_argument("--links", default=",".join(CHOICE_LINKS), help="links (comma-separated): " + names)
    ap.add_argument("--crop", type=int, default=512, help="centre crop side (px; the link benchmark's: 512)")
    ap.add_argument("--crops", type=int, default=0, help="the first N train + validation crops only (0: all)")
    args = ap.parse_args(argv)
    from edgeae.inpaint import METHODS

    try:
        keeps = [float(k) for k in args.keeps.split(",")]
        for rule in args.rules.split(","):
            parse_rule(rule)
        parse_links(args.links)
    except ValueError as exc:
        ap.error(str(exc))
    bad = [f for f in args.fills.split(",") if f not in METHODS]
    if bad or args.seeds < 1 or not all(0 < k <= 1 for k in keeps):
        ap.error(f"--fills: some of {', '.join(METHODS)}; --seeds at least 1; --keeps in (0, 1] (got {bad or ''})")
    if args.crop < MIN_TILE or args.crops < 0:
        ap.error(f"--crop at least {MIN_TILE} px, --crops at least 0 (got {args.crop}, {args.crops})")
    files = split_files("rover_rgb", "train") + split_files("rover_rgb", "val")
    files = files[: args.crops or len(files)]
    t0, rows = time.time(), []
    for i, path in enumerate(files):
        img = centre_crop(image_samples(path, channels=3)[0], args.crop)
        for keep in keeps:
            rows += crop_rows(img, i, path.name, keep, args)
        print(f"[{time.time() - t0:6.1f} s] {path.name} {img.shape}", flush=True)
    cmd = " ".join(["benchmarks/tiled_j2k_choice.py", *(sys.argv[1:] if argv is None else argv)])
    meta = {"crops": [p.name for p in files], "crop": args.crop, "max_packet": args.max_packet, "seeds": args.seeds,
            "seconds": round(time.time() - t0, 1), "commit": machine_info()["commit"], "command": cmd}  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    md = markdown(rows, meta)
    (args.out / "results.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
