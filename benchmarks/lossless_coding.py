"""Lossless sample coding on the wire: none vs delta+deflate vs CCSDS 121 (libaec), on every test image.

For each dataset's ``test`` split (whole images, 8-bit), the sparse samples of a seeded uniform mask (``--keeps``)
are packetised (``--max-packet`` bytes, payload layouts 2 and 1) with each sample codec, and parsed back
(bit-exact check). Anomaly patches (the grid patches of the image, ``--patch`` px) are packetised the same
way. Reported per dataset: coded sample bytes per sample (payload only, no packet headers), the ratio to raw,
wire bytes per raw byte of the frame, and encode (packetise) and decode (parse) time per million samples on
this CPU.

    python benchmarks/lossless_coding.py --out runs/lossless [--quick]

Writes ``results.json`` and ``results.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from any folder
from benchmarks.machine import machine_info
from edgeae.datasets import split_files
from edgeae.ground.sources import image_samples, sparse_from_samples
from edgeae.wire.interleave import packet_indices
from edgeae.wire.packets import WireConfig, overhead, packetise
from edgeae.wire.parse import parse_packet
from edgeae.wire.products import AnomalyPatch

DATASETS = {"rover_rgb": 3, "orbital_gray": 1}
CODECS = ("none", "delta-deflate", "ccsds121")


def _timed(fn: Any) -> tuple[Any, float]:
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def measure_sparse(samples: np.ndarray, keep: float, seed: int, codec: str, layout: int, max_packet: int) -> dict:
    """Bytes and times of one image's sparse frame under one codec and layout; checks the round trip."""
    frame = sparse_from_samples(samples, 8, keep, seed)
    cfg = WireConfig(max_packet, codec, layout)
    pkts, t_enc = _timed(lambda: packetise(frame, config=cfg))
    parsed, t_dec = _timed(lambda: [parse_packet(p) for p in pkts])
    if layout == 1:
        got = np.concatenate([q.samples for q in parsed])
    else:  # put every packet's samples back at their kept-pixel numbers (one band: the whole frame)
        got = np.zeros_like(frame.values)
        for q in parsed:
            h = q.header
            got[packet_indices(h["n_band"], h["seg"], h["band_parts"], h["step"], h["band_index"])] = q.samples
    if not np.array_equal(got, frame.values):
        raise AssertionError(f"{codec} layout {layout} round trip is not exact")
    head = overhead("sparse", layout)
    return {
        "samples": int(frame.values.shape[0]),
        "raw_bytes": int(frame.values.nbytes),
        "payload_bytes": int(sum(map(len, pkts)) - len(pkts) * head),
        "wire_bytes": int(sum(map(len, pkts))),
        "frame_bytes": int(samples.nbytes),
        "packets": len(pkts),
        "coded_packets": int(sum(q.codec != 0 for q in parsed)),
        "encode_s": t_enc,
        "decode_s": t_dec,
    }


def measure_patches(samples: np.ndarray, patch: int, codec: str, max_packet: int, limit: int) -> dict:
    """Bytes and times of full-resolution patches (every grid patch, up to ``limit``) under one codec."""
    from edgeae.tiling import tile_positions

    pos = tile_positions(samples.shape[0], samples.shape[1], patch, patch)[:limit]
    cfg = WireConfig(max_packet, codec)
    raw = enc = dec = pay = 0.0
    for i, (y, x) in enumerate(pos):
        ap = AnomalyPatch(0, x, y, patch, 1.0, np.ascontiguousarray(samples[y : y + patch, x : x + patch]), 8, i)
        pkts, te = _timed(lambda ap=ap: packetise(ap, config=cfg))
        parsed, td = _timed(lambda pkts=pkts: [parse_packet(p) for p in pkts])
        if not np.array_equal(np.concatenate([q.samples for q in parsed]), ap.pixels.reshape(-1)):
            raise AssertionError(f"{codec} patch round trip is not exact")
        raw += ap.pixels.nbytes
        pay += sum(map(len, pkts)) - len(pkts) * overhead("patch")
        enc += te
        dec += td
    return {"patches": len(pos), "raw_bytes": raw, "payload_bytes": pay, "encode_s": enc, "decode_s": dec}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.lossless_coding", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/lossless"))
    ap.add_argument("--keeps", default="0.1,0.02", help="keep fractions, comma-separated")
    ap.add_argument("--max-packet", type=int, default=1024)
    ap.add_argument("--patch", type=int, default=64, help="anomaly patch size for the patch rows")
    ap.add_argument("--patches-per-image", type=int, default=16)
    ap.add_argument("--quick", action="store_true", help="the first 3 images of each dataset")
    ap.add_argument("--render", action="store_true", help="only rewrite results.md from results.json")
    args = ap.parse_args(argv)
    out = args.out
    if args.render:
        (out / "results.md").write_text(markdown(json.loads((out / "results.json").read_text())))
        return 0
    keeps = [float(k) for k in args.keeps.split(",")]
    rows: list[dict] = []
    t0 = time.time()
    images: dict[str, list[str]] = {}
    for ds, ch in DATASETS.items():
        files = split_files(ds, "test")[: 3 if args.quick else None]
        images[ds] = [f.name for f in files]
        for i, f in enumerate(files):
            samples, bits = image_samples(f, ch)
            if bits != 8:
                continue
            for keep in keeps:
                for layout in (2, 1):
                    for codec in CODECS:
                        r = measure_sparse(samples, keep, 1000 + i, codec, layout, args.max_packet)
                        rows.append({"dataset": ds, "image": f.name, "what": "sparse", "keep": keep,
                                     "layout": layout, "codec": codec, **r})  # fmt: skip
            for codec in CODECS:
                r = measure_patches(samples, args.patch, codec, args.max_packet, args.patches_per_image)
                rows.append({"dataset": ds, "image": f.name, "what": "patch", "codec": codec, **r})
            print(f"[{time.time() - t0:6.1f} s] {ds} {f.name} {samples.shape}", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    result = {
        "benchmark": "lossless_coding",
        "command": " ".join(["python benchmarks/lossless_coding.py", *(sys.argv[1:] if argv is None else argv)]),
        "machine": machine_info(),
        "images": images,
        "keeps": keeps,
        "max_packet": args.max_packet,
        "patch": args.patch,
        "seconds": round(time.time() - t0, 1),
        "rows": rows,
    }
    (out / "results.json").write_text(json.dumps(result, indent=2))
    md = markdown(result)
    (out / "results.md").write_text(md)
    print(md)
    return 0


def summary(rows: list[dict]) -> dict[tuple, dict[str, float]]:
    """Totals per (dataset, what, keep, layout, codec): bytes per sample, ratio, wire per raw, ms per Msample."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        key = (r["dataset"], r["what"], r.get("keep"), r.get("layout"), r["codec"])
        groups.setdefault(key, []).append(r)
    out = {}
    for key, rs in groups.items():
        raw = sum(r["raw_bytes"] for r in rs)
        pay = sum(r["payload_bytes"] for r in rs)
        n = raw  # 8-bit images: one byte per sample (pixel and channel)
        out[key] = {
            "bytes_per_sample": pay / n,
            "ratio": raw / pay,
            "wire_per_frame": sum(r.get("wire_bytes", 0) for r in rs)
            / max(1, sum(r.get("frame_bytes", 0) for r in rs)),
            "encode_ms_per_msample": 1e3 * sum(r["encode_s"] for r in rs) / (n / 1e6),
            "decode_ms_per_msample": 1e3 * sum(r["decode_s"] for r in rs) / (n / 1e6),
        }
    return out


def markdown(result: dict) -> str:
    s = summary(result["rows"])
    lines = [
        "Lossless coding of the samples on the wire (payload bytes, no packet headers), "
        f"{result['max_packet']}-byte packets; images: "
        + "; ".join(f"{ds} test ({len(v)})" for ds, v in result["images"].items())
        + ". Bytes per sample counts one sample per pixel and channel (8-bit: raw = 1.000). Times: packetise "
        "(encode) and parse (decode) per million samples on this CPU, packet headers and CRC included.",
        "",
        "| dataset | samples | keep | layout | codec | bytes/sample | ratio | wire / raw frame | encode ms/Msample | "
        "decode ms/Msample |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def order(kv: tuple) -> tuple:
        ds, what, keep, layout, codec = kv[0]
        return ds, what == "patch", -(keep or 0), -(layout or 0), CODECS.index(codec)

    for (ds, what, keep, layout, codec), v in sorted(s.items(), key=order):
        wire = f"{v['wire_per_frame']:.4f}" if what == "sparse" else "-"
        lines.append(
            f"| {ds} | {what} | {keep if keep is not None else '-'} | {layout or '-'} | {codec} | "
            f"{v['bytes_per_sample']:.3f} | {v['ratio']:.3f} | {wire} | {v['encode_ms_per_msample']:.0f} | "
            f"{v['decode_ms_per_msample']:.0f} |"
        )
    best = []
    for ds in result["images"]:
        for keep in result["keeps"]:
            cand = {c: s[(ds, "sparse", keep, 2, c)]["ratio"] for c in CODECS if (ds, "sparse", keep, 2, c) in s}
            if cand:
                b = max(cand, key=lambda c: cand[c])
                best.append(f"{ds} keep {keep}: {b} ({cand[b]:.3f}× vs delta-deflate {cand['delta-deflate']:.3f}×)")
    lines += [
        "",
        "Best sample coder (layout 2): " + "; ".join(best) + f". {result['seconds']} s; `{result['command']}`",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    from edgeae.data import DataNotFoundError

    try:
        raise SystemExit(main())
    except DataNotFoundError as e:  # one line, not a traceback: the data folder is a setting, not a bug
        raise SystemExit(f"lossless_coding: {e}") from None
