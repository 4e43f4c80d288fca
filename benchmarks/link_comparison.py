"""Sparse-pixel downlink vs JPEG / JPEG 2000 / WebP at equal bytes over the same lossy link.

For each unseen rover test image (``edgeae.datasets`` rover_rgb ``test``, a centre crop): sample ``keep``
of the pixels, packetise (CCSDS, ``--max-packet`` bytes), send over the simulated link, rebuild on the ground
(classical inpainting, or the CAE with ``--model``). Each codec compresses the same crop to at most the
sparse frame's sample bytes; its file is packetised with the same packet size (telemetry APID: a flat byte
product) and sent over the same link with the same seed. A codec decoder gets the received bytes two ways —
the prefix before the first lost packet (as a truncated file) and the full length with lost ranges
zero-filled — and is credited with the better of the two (generous to the codecs); if neither decodes to
an image of the right shape, the frame is lost and scored as a flat mid-grey frame.

    .venv/bin/python benchmarks/link_comparison.py --out runs/link_comparison [--model MODEL] [--limit N]

Writes ``results.json`` and ``results.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from edgeae.wire.packets import SequenceCounters, WireConfig, overhead, packetise
from edgeae.wire.products import TelemetryRecord

from edgeae.datasets import split_files
from edgeae.ground.decode import decode_flat
from edgeae.ground.link import LinkConfig, simulate
from edgeae.ground.pipeline import downlink_frame, downlink_latents, encode_latents
from edgeae.ground.reassembly import Receiver
from edgeae.ground.sources import as_float, image_samples, sparse_from_samples
from edgeae.ground.station import make_filler
from edgeae.metrics import psnr

LINKS: dict[str, LinkConfig] = {
    "perfect": LinkConfig(),
    "loss 5%": LinkConfig(loss=0.05),
    "loss 20%": LinkConfig(loss=0.20),
    "burst (GE, ~9%)": LinkConfig(burst_p=0.02, burst_r=0.2),
}
CODECS = ("jpeg", "jpeg-rst", "jpeg2000", "webp")
"""``jpeg-rst``: baseline JPEG with a restart marker every MCU row, the standard way to let a JPEG decoder
resynchronise after damage (costs a few bytes per row)."""


# ------------------------------------------------------------------------------------------ codecs
def encode(img: np.ndarray, codec: str, q: float) -> bytes:
    """Encode uint8 (H, W, 3) at quality ``q`` (JPEG/WebP 1-100; JPEG 2000 target PSNR in dB)."""
    import imagecodecs

    if codec in ("jpeg", "jpeg-rst"):
        import cv2

        params = [cv2.IMWRITE_JPEG_QUALITY, int(q)]
        if codec == "jpeg-rst":
            params += [cv2.IMWRITE_JPEG_RST_INTERVAL, -(-img.shape[1] // 16)]  # one MCU row (4:2:0)
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(img[..., ::-1]), params)
        if not ok:
            raise RuntimeError("cv2 could not encode JPEG")
        return buf.tobytes()
    if codec == "jpeg2000":
        return bytes(imagecodecs.jpeg2k_encode(img, level=float(q)))  # type: ignore[arg-type]  # float dB works
    return bytes(imagecodecs.webp_encode(img, level=float(q), lossless=False))


def decode(data: bytes, codec: str, shape: tuple[int, ...]) -> np.ndarray | None:
    """Decode as far as the decoder can; None when it refuses or the shape is wrong."""
    import imagecodecs

    fn: Any = {
        "jpeg": imagecodecs.jpeg8_decode,
        "jpeg-rst": imagecodecs.jpeg8_decode,
        "jpeg2000": imagecodecs.jpeg2k_decode,
        "webp": imagecodecs.webp_decode,
    }[codec]
    try:
        out = np.asarray(fn(data))
    except Exception:
        return None
    return out if out.shape == shape else None


def at_bytes(img: np.ndarray, codec: str, budget: int) -> tuple[bytes, float]:
    """The highest-quality encoding of at most ``budget`` bytes (bisection on the quality parameter)."""
    lo, hi = (1.0, 100.0) if codec != "jpeg2000" else (10.0, 80.0)
    best = encode(img, codec, lo), lo
    for _ in range(14 if codec == "jpeg2000" else 8):
        mid = (lo + hi) / 2 if codec == "jpeg2000" else float(int((lo + hi) / 2))
        d = encode(img, codec, mid)
        if len(d) <= budget:
            best, lo = (d, mid), mid
        else:
            hi = mid
        if codec != "jpeg2000" and hi - lo <= 1:
            break
    if len(best[0]) > budget:
        raise RuntimeError(f"{codec} cannot reach {budget} bytes")
    return best


def codec_over_link(data: bytes, codec: str, orig: np.ndarray, link: LinkConfig, max_packet: int) -> dict:
    pkts = packetise(TelemetryRecord(1, data), config=WireConfig(max_packet), counters=SequenceCounters())
    out, _ = simulate(pkts, link)
    r = Receiver()
    for _, p in out:
        r.receive(p)
    asm = r.products.get(("telemetry", 1, 0))
    ref = as_float(orig, 8)
    grey = float(psnr(ref, np.full_like(ref, 0.5)))
    res: dict[str, Any] = {"wire_bytes": sum(map(len, pkts)), "packets": len(pkts)}
    if asm is None:
        return {**res, "psnr": grey, "lost": True, "bytes_received": 0.0, "how": "nothing"}
    flat = decode_flat(asm)
    got = flat.received
    res["bytes_received"] = float(got.mean())
    cands = []
    if got.all():
        cands.append(("complete", decode(data, codec, orig.shape)))
    else:
        first = int(np.argmin(got))
        cands.append(("prefix", decode(flat.values[:first].tobytes(), codec, orig.shape) if first else None))
        cands.append(("zero-fill", decode(flat.values.tobytes(), codec, orig.shape)))
    scored = [(float(psnr(ref, as_float(im, 8))), how) for how, im in cands if im is not None]
    if not scored:
        return {**res, "psnr": grey, "lost": True, "how": "undecodable"}
    best_psnr, how = max(scored)
    return {**res, "psnr": best_psnr, "lost": False, "how": how}


# ------------------------------------------------------------------------------------------ sparse
def sparse_over_link(img: np.ndarray, i: int, keep: float, link: LinkConfig, max_packet: int, fill, name: str):
    r = downlink_frame(
        img,
        8,
        keep=keep,
        seed=1000 + i,
        link=link,
        wire=WireConfig(max_packet),
        fill=fill,
        fill_name=name,
        frame_id=i,
    )
    return {
        "psnr": r.report["psnr"],
        "pixels_received": r.report["pixel_fraction_received"],
        "lost": bool(r.report.get("frame_lost", False)),
        "packets": r.packets,
        "wire_bytes": r.wire_bytes,
    }


def latent_rows(img: np.ndarray, i: int, enc, dec, args: argparse.Namespace, fill_named, name: str) -> list[dict]:
    """Latent frames (int8 + deflate) over every link, and sparse pixels at the latents' byte size."""
    fr = encode_latents(img, 8, enc, frame_id=i, input_keep=args.latent_input_keep, seed=2000 + i)
    wire = WireConfig(args.max_packet, "deflate")
    _, _, wb = downlink_latents(fr, dec, wire=wire)
    keep_eq = min(1.0, wb / (img.size))
    out = []
    for lname, base in LINKS.items():
        for s in range(args.seeds if lname != "perfect" else 1):
            link = dataclasses.replace(base, seed=17 * i + s)
            rep, _, _ = downlink_latents(fr, dec, link=link, wire=wire, original=as_float(img, 8))
            lost = "psnr" not in rep
            p = rep["psnr"] if not lost else float(psnr(as_float(img, 8), np.full(img.shape, 0.5, np.float32)))
            out.append(
                {
                    "image": name,
                    "link": lname,
                    "seed": link.seed,
                    "method": "latent int8 + deflate",
                    "psnr": p,
                    "lost": lost,
                    "wire_bytes": wb,
                }
            )
            r = sparse_over_link(img, i, keep_eq, link, args.max_packet, *fill_named)
            out.append(
                {
                    "image": name,
                    "link": lname,
                    "seed": link.seed,
                    "keep": keep_eq,
                    "method": f"sparse at latent bytes + {fill_named[1]}",
                    **r,
                }
            )
    return out


def centre_crop(a: np.ndarray, size: int) -> np.ndarray:
    h, w = a.shape[:2]
    ch, cw = min(size, h), min(size, w)
    y, x = (h - ch) // 2, (w - cw) // 2
    return np.ascontiguousarray(a[y : y + ch, x : x + cw])


def bytes_table(frame, max_packet: int) -> dict:
    """Raw, sample and wire bytes of a sparse frame, plain and delta-deflate coded."""
    out: dict[str, Any] = {"raw_bytes": frame.raw_bytes, "sample_bytes": int(frame.values.nbytes)}
    for codec in ("none", "delta-deflate"):
        pk = packetise(frame, config=WireConfig(max_packet, codec))
        out[codec] = {
            "packets": len(pk),
            "wire_bytes": sum(map(len, pk)),
            "overhead_bytes": len(pk) * overhead("sparse"),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/link_comparison"))
    ap.add_argument("--keep", type=float, default=0.1)
    ap.add_argument("--crop", type=int, default=512)
    ap.add_argument("--max-packet", type=int, default=1024)
    ap.add_argument("--seeds", type=int, default=2, help="link seeds per condition")
    ap.add_argument("--limit", type=int, default=0, help="use only the first N test images")
    ap.add_argument("--model", help="also rebuild with this CAE (zoo name or artifact)")
    ap.add_argument("--encoder", help="cae-encoder artifact: also send latent frames (with --decoder)")
    ap.add_argument("--decoder", help="cae-decoder artifact for the latent frames")
    ap.add_argument(
        "--latent-input-keep",
        type=float,
        default=0.5,
        help="the encoder sees the frame sampled at this keep (a gt-CAE never saw complete inputs)",
    )
    ap.add_argument("--methods", default="telea,linear", help="classical fills to run, comma-separated")
    ap.add_argument("--render", type=Path, help="only rewrite results.md from this results.json")
    args = ap.parse_args(argv)
    if args.render:
        d = json.loads(args.render.read_text())
        md = markdown(d["rows"], d["sizes"], d["meta"])
        (args.render.parent / "results.md").write_text(md)
        print(md)
        return 0

    fills = [make_filler(None, m) for m in args.methods.split(",") if m]
    if args.model:
        fills.append(make_filler(args.model))
    files = split_files("rover_rgb", "test")
    if args.limit:
        files = files[: args.limit]
    enc = dec = None
    if args.encoder or args.decoder:
        from edgeae.predictor import load_predictor

        if not (args.encoder and args.decoder):
            ap.error("--encoder and --decoder go together")
        enc, dec = load_predictor(args.encoder), load_predictor(args.decoder)
    rows: list[dict] = []
    sizes: list[dict] = []
    t0 = time.time()
    for i, path in enumerate(files):
        samples, bits = image_samples(path, channels=3)
        if bits != 8:
            continue
        img = centre_crop(samples, args.crop)
        frame = sparse_from_samples(img, 8, args.keep, seed=1000 + i, frame_id=i)
        budget = int(frame.values.nbytes)
        sizes.append({"image": path.name, "shape": list(img.shape), **bytes_table(frame, args.max_packet)})
        files_at = {c: at_bytes(img, c, budget) for c in CODECS}
        for c, (d, q) in files_at.items():
            sizes[-1][c] = {"bytes": len(d), "quality": q, "bpp": 8 * len(d) / (img.shape[0] * img.shape[1])}
        for lname, base in LINKS.items():
            for s in range(args.seeds if lname != "perfect" else 1):
                link = dataclasses.replace(base, seed=17 * i + s)
                for fill, name in fills:
                    r = sparse_over_link(img, i, args.keep, link, args.max_packet, fill, name)
                    meth = f"sparse {args.keep} + {name}"
                    rows.append({"image": path.name, "link": lname, "seed": link.seed, "method": meth, **r})
                for c, (d, _) in files_at.items():
                    r = codec_over_link(d, c, img, link, args.max_packet)
                    rows.append({"image": path.name, "link": lname, "seed": link.seed, "method": c, **r})
        if enc is not None:
            rows += latent_rows(img, i, enc, dec, args, fills[-1], path.name)
        print(f"[{time.time() - t0:6.1f} s] {path.name} {img.shape} budget {budget} B", flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    cmd = " ".join(sys.argv[1:] if argv is None else argv)
    meta = {
        "command": f"benchmarks/link_comparison.py {cmd}".strip(),
        "keep": args.keep,
        "crop": args.crop,
        "max_packet": args.max_packet,
        "seeds": args.seeds,
        "fills": [n for _, n in fills],
        "links": {k: v.to_dict() for k, v in LINKS.items()},
        "machine": platform.platform(),
        "python": platform.python_version(),
        "commit": _commit(),
        "seconds": round(time.time() - t0, 1),
    }
    (args.out / "results.json").write_text(json.dumps({"meta": meta, "sizes": sizes, "rows": rows}, indent=2))
    md = markdown(rows, sizes, meta)
    (args.out / "results.md").write_text(md)
    print(md)
    return 0


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        return "unknown"


def markdown(rows: list[dict], sizes: list[dict], meta: dict) -> str:
    out = io.StringIO()
    n = len(sizes)
    raw = np.mean([s["raw_bytes"] for s in sizes])
    smp = np.mean([s["sample_bytes"] for s in sizes])
    wn = np.mean([s["none"]["wire_bytes"] for s in sizes])
    wd = np.mean([s["delta-deflate"]["wire_bytes"] for s in sizes])
    oh = np.mean([s["none"]["overhead_bytes"] for s in sizes])
    out.write(f"Bytes per frame (mean of {n} crops, keep {meta['keep']}, {meta['max_packet']}-byte packets)\n\n")
    out.write("| | bytes | vs raw | \n|---|---|---|\n")
    out.write(f"| raw frame | {raw:,.0f} | 1.000 |\n| sampled values (payload) | {smp:,.0f} | {smp / raw:.3f} |\n")
    out.write(f"| on the wire, codec none | {wn:,.0f} | {wn / raw:.3f} (overhead {oh / smp:.1%} of payload) |\n")
    out.write(f"| on the wire, delta-deflate | {wd:,.0f} | {wd / raw:.3f} (payload ratio {wn / wd:.2f}×) |\n")
    for c in CODECS:
        b = np.mean([s[c]["bytes"] for s in sizes])
        out.write(f"| {c} file at ≤ payload bytes | {b:,.0f} | {b / raw:.3f} |\n")
    links = list(dict.fromkeys(r["link"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    out.write("\nMean PSNR (dB) over images and link seeds; in brackets: frames lost (undecodable)\n\n")
    out.write("| method | wire bytes | " + " | ".join(links) + " |\n|---|---|" + "---|" * len(links) + "\n")
    for m in methods:
        wb = [r["wire_bytes"] for r in rows if r["method"] == m and "wire_bytes" in r]
        cells = [f"{np.mean(wb):,.0f}" if wb else "-"]
        for lk in links:
            sel = [r for r in rows if r["method"] == m and r["link"] == lk]
            lost = sum(r["lost"] for r in sel)
            cells.append(f"{np.mean([r['psnr'] for r in sel]):.2f} ({lost}/{len(sel)})")
        out.write(f"| {m} | " + " | ".join(cells) + " |\n")
    fills = ", ".join(meta.get("fills", []))
    out.write(f"\nfills {fills}; {meta['seconds']} s; commit {meta['commit']}; `{meta['command']}`\n")
    return out.getvalue()


if __name__ == "__main__":
    raise SystemExit(main())
