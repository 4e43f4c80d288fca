"""``edgeae downlink``: send products through the simulated link into a packet file, or replay it over UDP."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgeae.cli import CLIError


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "downlink",
        help="simulate the lossy downlink of packetised products",
        description=__doc__.splitlines()[0],
    )
    sub = p.add_subparsers(dest="downlink_command", metavar="ACTION", required=True)
    s = sub.add_parser("simulate", help="send products over a simulated link into a packet file")
    src = s.add_mutually_exclusive_group(required=True)
    src.add_argument("--products", type=Path, help="directory of packet files (flight runtime pass_*.bin)")
    src.add_argument("--image", type=Path, help="make a sparse product straight from this image")
    s.add_argument("--keep", type=float, default=0.1, help="--image: fraction of pixels kept (default 0.1)")
    s.add_argument("--seed", type=int, default=0, help="--image: mask seed (default 0)")
    s.add_argument("--pattern", default="uniform", help="--image: mask pattern (uniform|jittered)")
    s.add_argument("--frame-id", type=int, default=0, help="--image: frame id (default 0)")
    s.add_argument("--channels", type=int, choices=(1, 3), help="--image: convert to 1 or 3 channels")
    s.add_argument("--max-packet", type=int, default=1024, help="--image: packet size limit in bytes")
    s.add_argument("--codec", default="none", help="--image: sample coding (none|delta-deflate)")
    s.add_argument("--link", type=Path, help="link TOML ([link] table); default a perfect 2 Mbit/s link")
    s.add_argument("--link-seed", type=int, help="override the link file's seed")
    s.add_argument("--out", type=Path, required=True, help="packet file to write (report beside it, .json)")
    u = sub.add_parser("send", help="replay a packet file over UDP to a ground station (edgeae ground serve)")
    u.add_argument("packets", type=Path, help="packet file or directory of packet files")
    u.add_argument("--port", type=int, required=True)
    u.add_argument("--host", default="127.0.0.1")
    u.add_argument("--link", type=Path, help="pass the packets through this simulated link first")
    u.add_argument("--speed", type=float, default=0.0, help="replay arrival times at this speed-up (0: no timing)")
    return p


def _link(args: argparse.Namespace):
    import dataclasses

    from edgeae.ground.link import LinkConfig, load_link

    cfg = load_link(args.link) if args.link else LinkConfig()
    if getattr(args, "link_seed", None) is not None:
        cfg = dataclasses.replace(cfg, seed=args.link_seed)
    return cfg


def run(args: argparse.Namespace) -> int:
    from edgeae.ground.link import simulate

    if args.downlink_command == "send":
        from edgeae.ground.sources import read_packets
        from edgeae.ground.transport import send_udp

        recs, _ = read_packets(args.packets)
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

    from edgeae.wire.packets import SequenceCounters, WireConfig, packetise
    from edgeae.wire.stream import write_packet_file

    summary: dict = {}
    if args.image is not None:
        from edgeae.ground.sources import image_samples, sparse_from_samples

        if not args.image.is_file():
            raise CLIError(f"image {args.image} does not exist")
        samples, bits = image_samples(args.image, args.channels)
        frame = sparse_from_samples(samples, bits, args.keep, args.seed, args.pattern, args.frame_id)
        packets = packetise(frame, config=WireConfig(args.max_packet, args.codec), counters=SequenceCounters())
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
            "max_packet": args.max_packet,
        }
    else:
        from edgeae.ground.sources import read_packets

        if not args.products.is_dir():
            raise CLIError(f"products directory {args.products} does not exist")
        recs, skipped = read_packets(args.products)
        packets = [p for _, p in recs]
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
    report = args.out.with_suffix(".json")
    report.write_text(json.dumps(summary, indent=2))
    print(
        f"{len(packets)} packets ({summary['wire_bytes']} bytes) offered; "
        f"{stats.delivered_packets} delivered, {stats.lost_packets} lost, "
        f"{stats.corrupted_packets} corrupted, {stats.unsent_packets} unsent "
        f"-> {args.out} (report {report})"
    )
    return 0
