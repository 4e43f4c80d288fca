"""``edgeae downlink``: send products through the simulated link into a packet file, or replay it over UDP."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from edgeae.cli import CLIError, positive_int, udp_port


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "downlink",
        help="simulate the lossy downlink of packetised products",
        description="Send products through a simulated bandwidth-limited, lossy link into a packet file "
        "(simulate), or replay a packet file over UDP to a live ground station (send).",
    )
    sub = p.add_subparsers(dest="downlink_command", metavar="ACTION", required=True)
    s = sub.add_parser(
        "simulate",
        help="send products over a simulated link into a packet file",
        description="Packetise an image's sparse sample (--image) or take the flight runtime's packet files "
        "(--products), pass them through a simulated link (rate, contact windows, loss, bursts, bit errors, "
        "reordering) and write what arrives to OUT, with a JSON report beside it (OUT with .json).",
    )
    src = s.add_mutually_exclusive_group(required=True)
    src.add_argument("--products", type=Path, help="packet file or folder of them (flight runtime pass_*.bin)")
    src.add_argument("--image", type=Path, help="make a sparse product straight from this image")
    s.add_argument("--keep", type=float, default=0.1, help="--image: fraction of pixels kept (default 0.1)")
    s.add_argument("--seed", type=int, default=0, help="--image: mask seed (default 0)")
    s.add_argument("--pattern", default="uniform", help="--image: mask pattern (uniform|jittered)")
    s.add_argument("--frame-id", type=int, default=0, help="--image: frame id (default 0)")
    s.add_argument("--channels", type=int, choices=(1, 3), help="--image: convert to 1 or 3 channels")
    s.add_argument(
        "--bayer",
        default=None,
        choices=["RGGB", "BGGR", "GRBG", "GBRG"],
        help="--image is a raw colour-filter mosaic of this pattern: demosaic it first (as the rover mission does)",
    )
    s.add_argument("--max-packet", type=int, default=1024, help="--image: packet size limit in bytes")
    s.add_argument(
        "--codec", default="ccsds121",
        help="--image: lossless sample coding: ccsds121 (CCSDS 121.0-B, libaec; default), delta-deflate or none",
    )  # fmt: skip
    s.add_argument(
        "--layout", type=int, choices=(1, 2), default=2,
        help="--image: payload layout: 2 interleaves each packet's samples over the frame (default), 1 sends "
        "bands of rows",
    )  # fmt: skip
    s.add_argument(
        "--band-rows", type=int, default=0,
        help="--image, layout 2: interleave within bands of this many rows (default 0: the whole frame)",
    )  # fmt: skip
    s.add_argument(
        "--compare", metavar="CODECS",
        help="--image: also send the image with these codecs (comma-separated: jpeg2000, jpeg, jpeg-rst, webp, "
        "jpegxl), each at the sparse frame's wire bytes over the same link, and report every PSNR",
    )  # fmt: skip
    s.add_argument(
        "--model",
        help="--compare: rebuild the sparse frame with this CAE (zoo name or artifact); default classical Telea",
    )
    s.add_argument(
        "--link", type=Path, metavar="LINK",
        help="a link preset name (perfect, loss5, loss20, burst, mars_relay; see edgeae links) or a link TOML "
        "file; default a perfect 2 Mbit/s link",
    )  # fmt: skip
    s.add_argument("--link-seed", type=int, help="override the link file's seed")
    s.add_argument("--out", type=Path, required=True, help="packet file to write (report beside it, .json)")
    pl = sub.add_parser(
        "plan",
        help="science per byte: JPEG 2000 vs sparse + CAE vs prioritised patches at per-frame byte budgets",
        description="For per-frame downlink budgets (fractions of the raw frame, in wire bytes), compare sending "
        "the whole frame as JPEG 2000, its sparse samples rebuilt with the CAE, and the prioritised downlink "
        "(top-ranked anomaly patches at full resolution plus sparse context), over each link: feature recall "
        "and PSNR on labelled feature patches (--set) and whole-frame PSNR.",
    )
    what = pl.add_mutually_exclusive_group()
    what.add_argument(
        "--set", dest="sets", action="append", metavar="NAME",
        help="a labelled frame set: lroc-nac, rover-planted, hirise-landmarks (repeatable; default all three)",
    )  # fmt: skip
    what.add_argument("--image", type=Path, help="plan for this image instead (no labels: whole-frame PSNR only)")
    pl.add_argument("--budgets", default="0.02,0.05,0.1", help="budgets as fractions of the raw frame")
    pl.add_argument(
        "--links", default="perfect,loss20,burst",
        help="comma-separated link presets (edgeae links) or TOML files (default perfect,loss20,burst)",
    )  # fmt: skip
    pl.add_argument("--seeds", type=positive_int, default=1, help="link seeds per lossy link (default 1)")
    pl.add_argument("--methods", default="jpeg2000,sparse,prioritised,prioritised-j2k", help="comma-separated")
    pl.add_argument("--quick", action="store_true", help="one small frame per set")
    pl.add_argument("--model", help="CAE that rebuilds the frames (default: the reconstruct default per channels)")
    pl.add_argument("--scorer", help="anomaly scorer (default orbital-gray-vae for grey, rover-rgb-vae for RGB)")
    pl.add_argument(
        "--score",
        default=None,
        choices=["a", "terms-max"],
        help="how a VAE scorer ranks patches: terms-max (the orbital mission's flight score; default for grey "
        "frames) or a(x) (default for colour)",
    )
    pl.add_argument("--patch-share", type=float, default=0.5, help="most of a budget spent on patches (0.5)")
    pl.add_argument("--copies", type=int, default=1, help="send each full-resolution patch this many times")
    pl.add_argument(
        "--head-copies", type=int, default=0, help="extra copies of a codec file's first packet (its header)"
    )
    pl.add_argument("--patch", type=int, default=64, help="--image: scoring patch size in pixels (64)")
    pl.add_argument("--max-packet", type=int, default=1024, help="packet size limit in bytes (1024)")
    pl.add_argument("--threads", type=positive_int, help="inference threads")
    pl.add_argument("--out", type=Path, help="write report.json and report.md to this folder")
    u = sub.add_parser(
        "send",
        help="replay a packet file over UDP to a ground station (edgeae ground serve)",
        description="Send the packets of a packet file as UDP datagrams to a ground station (edgeae ground "
        "serve), then the end-of-transmission datagram (three times, spread over about a second), on which the "
        "station decodes what it has and exits.",
    )
    u.add_argument("packets", type=Path, help="packet file or directory of packet files")
    u.add_argument("--port", type=udp_port, required=True, help="UDP port the ground station listens on")
    u.add_argument("--host", default="127.0.0.1", help="ground station address (default 127.0.0.1)")
    u.add_argument(
        "--link", type=Path, metavar="LINK",
        help="pass the packets through this simulated link first: a preset name (edgeae links) or a TOML file",
    )  # fmt: skip
    u.add_argument("--speed", type=float, default=0.0, help="replay arrival times at this speed-up (0: no timing)")
    return p


def _link(args: argparse.Namespace):
    import dataclasses

    from edgeae.ground.link import LinkConfig, load_link

    cfg = load_link(args.link) if args.link else LinkConfig()
    if getattr(args, "link_seed", None) is not None:
        cfg = dataclasses.replace(cfg, seed=args.link_seed)
    return cfg


def needs(args: argparse.Namespace) -> dict[str, str]:
    """Optional packages this command imports (checked before any work)."""
    out = {"spacepackets": "ground"}
    if getattr(args, "image", None) is not None:
        out.update(cv2="ground", tifffile="ground")
    if getattr(args, "codec", None) == "ccsds121" or getattr(args, "compare", None):
        out.update(imagecodecs="ground")
    if args.downlink_command == "plan":
        out.update(cv2="ground", imagecodecs="ground", scipy="ground")
    return out


def run(args: argparse.Namespace) -> int:
    from edgeae.ground.link import simulate

    if args.downlink_command == "send":
        from edgeae.ground.sources import read_packets
        from edgeae.ground.transport import send_udp

        if not (args.speed >= 0 and math.isfinite(args.speed)):
            raise CLIError(f"--speed must be a finite number >= 0 (0: no timing), got {args.speed}")
        recs, skipped = read_packets(args.packets)
        if not recs:  # nothing to send: say so rather than end a live station's session with an empty pass
            raise CLIError(
                f"{args.packets} holds no packets ({skipped:,} bytes formed none): nothing sent, no end of transmission"
            )
        if skipped:
            print(f"{skipped:,} bytes of {args.packets} formed no packet and are not sent")
        if args.link:
            out, st = simulate([p for _, p in recs], _link(args))
            recs = out
            print(
                f"link: {st.delivered_packets}/{st.offered_packets} packets delivered, "
                f"{st.lost_packets} lost, {st.corrupted_packets} corrupted"
            )
        n = send_udp(recs, args.host, args.port, speed=args.speed)
        print(f"sent {n} packets to udp://{args.host}:{args.port}")
        return 0

    if args.downlink_command == "plan":
        return _plan(args)
    from edgeae.wire.packets import SequenceCounters, WireConfig, packetise
    from edgeae.wire.stream import write_packet_file

    if args.compare and args.image is None:
        raise CLIError("--compare needs --image (the codecs encode the image itself)")

    report = args.out.with_suffix(".json")
    if report == args.out:  # the report would overwrite the packets just written
        raise CLIError(f"--out {args.out}: name the packet file .bin (its report is written beside it as .json)")
    if args.bayer and args.image is None:
        raise CLIError("--bayer applies to --image (a raw mosaic to demosaic before sampling)")
    summary: dict = {}
    if args.image is not None:
        from edgeae.ground.sources import image_samples, sparse_from_samples

        if not args.image.is_file():
            what = "is a folder: --image takes one image file" if args.image.is_dir() else "does not exist"
            raise CLIError(f"image {args.image} {what}")
        samples, bits = image_samples(args.image, args.channels, args.bayer)
        frame = sparse_from_samples(samples, bits, args.keep, args.seed, args.pattern, args.frame_id)
        wire = WireConfig(args.max_packet, args.codec, args.layout, args.band_rows)
        packets = packetise(frame, config=wire, counters=SequenceCounters())
        summary["product"] = {
            "image": str(args.image),
            "shape": list(samples.shape),
            "bit_depth": bits,
            "keep": args.keep,
            "seed": args.seed,
            "pattern": args.pattern,
            "frame_id": args.frame_id,
            "raw_bytes": frame.raw_bytes,
            "sample_bytes": int(frame.values.nbytes),
            "codec": args.codec,
            "layout": args.layout,
            "band_rows": args.band_rows,
            "max_packet": args.max_packet,
        }
    else:
        from edgeae.ground.sources import read_packets

        if not args.products.exists():
            raise CLIError(f"--products {args.products} does not exist")
        recs, skipped = read_packets(args.products)
        packets = [p for _, p in recs]
        if not packets:
            raise CLIError(
                f"--products {args.products}: no packets found ({skipped:,} bytes formed no valid packet); "
                "give the flight runtime's pass_*.bin files or a folder of them"
            )
        summary["product"] = {"products": str(args.products), "bytes_skipped": skipped}
    cfg = _link(args)
    out, stats = simulate(packets, cfg)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_packet_file(args.out, out)
    summary.update(
        packets=len(packets),
        wire_bytes=sum(map(len, packets)),
        link=cfg.to_dict(),
        link_stats=stats.to_dict(),
    )
    if args.compare:
        summary["compare"] = _compare(args, samples, bits, out, summary["wire_bytes"], cfg)
    report.write_text(json.dumps(summary, indent=2))
    print(
        f"{len(packets)} packets ({summary['wire_bytes']} bytes) offered; "
        f"{stats.delivered_packets} delivered (of which {stats.duplicated_packets} duplicates), "
        f"{stats.lost_packets} lost, {stats.corrupted_packets} corrupted, {stats.unsent_packets} unsent "
        f"-> {args.out} (report {report})"
    )
    if args.compare:
        print(_compare_table(summary["compare"]))
    return 0


def _compare(args: argparse.Namespace, samples, bits: int, received, wire_bytes: int, link) -> list[dict]:
    """The sparse frame rebuilt on the ground, and each codec at the same wire bytes over the same link."""
    import numpy as np

    from edgeae.ground.baselines import CODECS, same_bytes
    from edgeae.ground.sources import as_float
    from edgeae.ground.station import GroundStation, make_filler

    codecs = [c.strip() for c in args.compare.split(",") if c.strip()]
    unknown = [c for c in codecs if c not in CODECS]
    if unknown:
        raise CLIError(f"--compare: unknown codec(s) {unknown}; choose from {', '.join(CODECS)}")
    fill, name = make_filler(args.model) if args.model else make_filler(None, "telea")
    gs = GroundStation(fill=fill, fill_name=name, originals={args.frame_id: as_float(samples, bits)})
    for _, p in received:
        gs.receive(p)
    rep = gs.finish()["products"].get(f"frame_{args.frame_id}", {})
    rows = [{"method": f"sparse keep {args.keep} + {name}", "wire_bytes": wire_bytes, "psnr": rep.get("psnr"),
             "lost": "psnr" not in rep, "longest_row_gap": rep.get("longest_row_gap")}]  # fmt: skip
    img8 = samples if bits <= 8 else np.round(as_float(samples, bits) * 255).astype(np.uint8)
    return rows + same_bytes(img8, codecs, wire_bytes, link, args.max_packet)


def _compare_table(rows: list[dict]) -> str:
    lines = ["| method | wire bytes | PSNR (dB) | decoded |", "|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['method']} | - | - | {r['error']} |")
            continue
        p = "lost" if r.get("lost") or r.get("psnr") is None else f"{r['psnr']:.2f}"
        lines.append(f"| {r['method']} | {r['wire_bytes']:,} | {p} | {r.get('decoded', '')} |")
    return "\n".join(lines)


def _plan(args: argparse.Namespace) -> int:
    """``edgeae downlink plan``: the science-per-byte table (edgeae.ground.science)."""
    from edgeae.ground import science
    from edgeae.ground.feature_sets import SETS, LabelledFrame
    from edgeae.ground.link import load_link

    try:
        cfg = science.PlanConfig(
            budgets=tuple(float(b) for b in args.budgets.split(",")),
            max_packet=args.max_packet,
            patch_share=args.patch_share,
            patch_copies=args.copies,
            codec_head_copies=args.head_copies,
        )
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    if not methods:
        raise CLIError(f"--methods names no method; choose from {', '.join(science.METHODS)}")
    bad = [m for m in methods if m not in science.METHODS]
    if bad:
        raise CLIError(f"--methods: unknown {bad}; choose from {', '.join(science.METHODS)}")
    links = {name: load_link(_preset(name)) for name in (n.strip() for n in args.links.split(",")) if name}
    log = (lambda m: print(m, flush=True)) if args.verbose else None
    if args.image is not None:
        import numpy as np

        from edgeae.ground.sources import image_samples

        if not args.image.is_file():
            raise CLIError(f"image {args.image} does not exist")
        samples, bits = image_samples(args.image)
        if bits > 8:
            samples = np.round(samples.astype(np.float64) / (2**bits - 1) * 255).astype(np.uint8)
        frame = LabelledFrame(args.image.stem, "image", samples, args.patch, np.zeros((0, 2), np.int64), "-")
        model, scorer = science.models_for(samples.shape[2], args.model, args.scorer)
        fill, score = science.load_models(model, scorer, args.threads)
        mode = args.score or science.SCORES[samples.shape[2]]
        rows = science.evaluate([frame], score, fill, cfg, links, args.seeds, methods, log, score=mode,
                                progress=None if log else args.image.name)  # fmt: skip
    else:
        sets = args.sets or list(SETS)
        unknown = [s for s in sets if s not in SETS]
        if unknown:
            raise CLIError(f"--set: unknown {unknown}; choose from {', '.join(SETS)}")
        over = {c: args.model for c in (1, 3)} if args.model else None
        sc = {c: args.scorer for c in (1, 3)} if args.scorer else None
        rows = science.run_sets(sets, quick=args.quick, cfg=cfg, links=links, seeds=args.seeds, models=over,
                                scorers=sc, methods=methods, threads=args.threads, log=log,
                                score=args.score, progress=log is None)  # fmt: skip
    md = science.markdown(rows)
    print(md)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "report.json").write_text(json.dumps({"config": {**cfg.__dict__}, "rows": rows}, indent=2))
        (args.out / "report.md").write_text(md)
        print(f"wrote {args.out / 'report.json'} and report.md")
    return 0


def _preset(name: str) -> Path | str:
    """A shipped link preset (edgeae/ground/links/NAME.toml) by name, else the name as given (a file)."""
    from edgeae.ground import link as link_module

    shipped = Path(link_module.__file__).parent / "links" / f"{name}.toml"
    return shipped if shipped.is_file() else name
