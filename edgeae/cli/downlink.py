"""``edgeae downlink``: send products through the simulated link into a packet file, or replay it over UDP."""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

from edgeae.cli import CLIError, check_writable, positive_int, udp_port

from .downlink_compare import compare, compare_filler, compare_table, strict_json

IMAGE_OPTIONS: dict[str, object] = {
    "keep": 0.1,
    "seed": 0,
    "pattern": "uniform",
    "frame_id": 0,
    "channels": None,
    "bayer": None,
    "max_packet": 1024,
    "codec": "ccsds121",  # edgeae.wire.codec.DEFAULT_SAMPLE_CODEC
    "layout": 2,
    "band_rows": 0,
}
"""``downlink simulate`` options that shape the product made from ``--image`` (their defaults): refused with
``--products``, whose packet files are sent as they are. Parsed with default None so a given one is seen."""

SAMPLE_CODEC_CHOICES = ("ccsds121", "delta-deflate", "none", "auto")
"""``--codec`` values: ``edgeae.wire.codec.SAMPLE_CODECS`` and ``auto`` (not imported here: the CLI starts
without numpy; a test checks they agree)."""


def packet_size(text: str) -> int:
    """argparse type: a packet size limit in bytes, header and CRC included (128 to the CCSDS maximum)."""
    from edgeae.wire.layout import MAX_PACKET

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of bytes, got {text!r}") from None
    if not 128 <= value <= MAX_PACKET:
        raise argparse.ArgumentTypeError(f"a packet is 128 to {MAX_PACKET} bytes, got {value}")
    return value


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "downlink",
        help="simulate the lossy downlink of packetised products",
        description="Send products through a simulated bandwidth-limited, lossy link into a packet file "
        "(simulate), compare what each downlink method returns per byte (plan), or replay a packet file over UDP "
        "to a live ground station (send).",
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
    s.add_argument("--keep", type=float, help="--image: fraction of pixels kept (default 0.1)")
    s.add_argument("--seed", type=int, help="--image: mask seed (default 0)")
    s.add_argument("--pattern", help="--image: mask pattern (uniform|jittered; default uniform)")
    s.add_argument("--frame-id", type=int, help="--image: frame id (default 0)")
    s.add_argument("--channels", type=int, choices=(1, 3), help="--image: convert to 1 or 3 channels")
    s.add_argument(
        "--bayer",
        default=None,
        choices=["RGGB", "BGGR", "GRBG", "GBRG"],
        help="--image is a raw colour-filter mosaic of this pattern: demosaic it first (as the rover mission does)",
    )
    s.add_argument("--max-packet", type=packet_size, help="--image: packet size limit in bytes (default 1024)")
    s.add_argument(
        "--codec", choices=SAMPLE_CODEC_CHOICES,
        help="--image: lossless sample coding: ccsds121 (CCSDS 121.0-B, libaec; default), delta-deflate (zlib), "
        "none, or auto (ccsds121 when libaec is installed, else delta-deflate, as the missions do)",
    )  # fmt: skip
    s.add_argument(
        "--layout", type=int, choices=(1, 2),
        help="--image: payload layout: 2 interleaves each packet's samples over the frame (default), 1 sends "
        "bands of rows",
    )  # fmt: skip
    s.add_argument(
        "--band-rows", type=int,
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
    s.add_argument("--force", action="store_true", help="overwrite an existing --out and its report")
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
    pl.add_argument(
        "--budgets", default="0.02,0.05,0.1", help="budgets as fractions of the raw frame (default 0.02,0.05,0.1)"
    )
    pl.add_argument(
        "--links", default="perfect,loss20,burst",
        help="comma-separated link presets (edgeae links) or TOML files (default perfect,loss20,burst)",
    )  # fmt: skip
    pl.add_argument(
        "--seeds", type=positive_int, default=1,
        help="link seeds per lossy link (default 1): run s of frame n uses the link's own seed (a link file's "
        "seed, 0 for the presets) + 1000n + 17s + 1",
    )  # fmt: skip
    pl.add_argument(
        "--methods", default="jpeg2000,sparse,prioritised,prioritised-j2k",
        help="comma-separated, of jpeg2000, sparse, prioritised, prioritised-j2k (default all four)",
    )  # fmt: skip
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
    pl.add_argument("--copies", type=int, default=1, help="send each full-resolution patch this many times (default 1)")
    pl.add_argument(
        "--head-copies",
        type=int,
        default=0,
        help="extra copies of a codec file's first packet (its header; default 0)",
    )
    pl.add_argument(
        "--patch", type=positive_int,
        help="--image: scoring patch size in pixels (default 64; a scorer with a fixed input needs its own size)",
    )  # fmt: skip
    pl.add_argument("--max-packet", type=packet_size, default=1024, help="packet size limit in bytes (1024)")
    pl.add_argument("--threads", type=positive_int, help="inference threads")
    pl.add_argument("--out", type=Path, help="write report.json and report.md to this folder")
    pl.add_argument("--force", action="store_true", help="overwrite report.json and report.md in --out")
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
    u.add_argument(
        "--speed", type=float, default=0.0, help="replay arrival times at this speed-up (default 0: no timing)"
    )
    return p


def _link(args: argparse.Namespace):
    import dataclasses

    from edgeae.ground.link import LinkConfig, load_link

    cfg = load_link(args.link) if args.link else LinkConfig()
    if getattr(args, "link_seed", None) is not None:
        try:
            cfg = dataclasses.replace(cfg, seed=args.link_seed)
        except ValueError as exc:
            raise CLIError(f"--link-seed {args.link_seed}: {exc}") from None
    return cfg


def needs(args: argparse.Namespace) -> dict[str, str]:
    """Optional packages this command imports (checked before any work)."""
    out: dict[str, str] = {}
    if getattr(args, "image", None) is not None:
        out.update(cv2="ground", tifffile="ground")
    image_codec = getattr(args, "codec", None) or (IMAGE_OPTIONS["codec"] if getattr(args, "image", None) else None)
    if image_codec == "ccsds121" or getattr(args, "compare", None):
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
                f"link: {st.delivered_packets} of {st.offered_packets} packets delivered (of which "
                f"{st.duplicated_packets} duplicates), {st.lost_packets} lost, {st.corrupted_packets} corrupted, "
                f"{st.unsent_packets} unsent (no contact window left)"
            )
        n = send_udp(recs, args.host, args.port, speed=args.speed)
        print(f"sent {n} packets to udp://{args.host}:{args.port}")
        return 0

    if args.downlink_command == "plan":
        from edgeae.cli.downlink_plan import plan

        return plan(args)
    from edgeae.wire.codec import resolve_sample_codec
    from edgeae.wire.packets import SequenceCounters, TooManyPackets, WireConfig, packetise

    codecs = _check_simulate(args)
    report = args.out.with_suffix(".json")
    cfg = _link(args)
    filler = None
    summary: dict = {}
    if args.image is not None:
        from edgeae.ground.sources import image_samples, sparse_from_samples

        samples, bits = image_samples(args.image, args.channels, args.bayer)
        # loaded (and so checked, its kind and channels against the frame's) before any work
        filler = compare_filler(args.model, samples.shape[2]) if codecs else None
        frame = sparse_from_samples(samples, bits, args.keep, args.seed, args.pattern, args.frame_id)
        args.codec = resolve_sample_codec(args.codec)  # auto: the codec the packets carry, in the report too
        wire = WireConfig(args.max_packet, args.codec, args.layout, args.band_rows)
        try:
            packets = packetise(frame, config=wire, counters=SequenceCounters())
        except TooManyPackets as exc:
            raise CLIError(f"{exc} (--max-packet, --keep, --codec)") from None
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
            "band_rows": args.band_rows if args.layout == 2 else None,  # layout 1 has no bands
            "max_packet": args.max_packet,
        }
    else:
        from edgeae.ground.sources import read_packets

        recs, skipped = read_packets(args.products)
        packets = [p for _, p in recs]
        if not packets:
            raise CLIError(
                f"--products {args.products}: no packets found ({skipped:,} bytes formed no valid packet); "
                "give the flight runtime's pass_*.bin files or a folder of them"
            )
        summary["product"] = {"products": str(args.products), "bytes_skipped": skipped}
    out, stats = simulate(packets, cfg)
    summary.update(
        packets=len(packets),
        wire_bytes=sum(map(len, packets)),
        link=cfg.to_dict(),
        link_stats=stats.to_dict(),
    )
    if filler is not None:
        summary["compare"] = compare(args, codecs, filler, samples, bits, out, summary["wire_bytes"], cfg)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    _write_outputs(args.out, out, report, strict_json(summary))
    print(
        f"{_n(len(packets), 'packet')} ({_n(summary['wire_bytes'], 'byte')}) offered; "
        f"{stats.delivered_packets} delivered (of which {stats.duplicated_packets} duplicates), "
        f"{stats.lost_packets} lost, {stats.corrupted_packets} corrupted, {stats.unsent_packets} unsent "
        f"-> {args.out} (report {report})"
    )
    if filler is not None:
        print(compare_table(summary["compare"]))
    return 0


def _n(count: int, noun: str) -> str:
    """``1 packet``, ``2 packets``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _check_simulate(args: argparse.Namespace) -> list[str]:
    """Refuse, before any work, options the run would ignore, unknown --compare codecs, missing inputs and outputs
    that would overwrite an input or (without --force) earlier results; fill in the --image defaults. Returns
    the --compare codecs (empty without --compare)."""
    from edgeae.ground.baselines import CODECS

    if args.image is None:
        if args.compare is not None:
            raise CLIError("--compare needs --image (the codecs encode the image itself)")
        if args.bayer:
            raise CLIError("--bayer applies to --image (a raw mosaic to demosaic before sampling)")
        given = [f"--{k.replace('_', '-')}" for k in IMAGE_OPTIONS if getattr(args, k) is not None]
        if given:
            raise CLIError(
                f"{', '.join(given)} appl{'ies' if len(given) == 1 else 'y'} to --image; --products sends its "
                "packet files as they are"
            )
        if not args.products.exists():
            raise CLIError(f"--products {args.products} does not exist")
        # the packet files --products reads are the folder's own *.bin (not its subfolders'): an --out among them
        # would be sent as a product by a later run
        if (
            args.products.is_dir()
            and args.out.name
            and args.out.suffix == ".bin"
            and args.out.resolve().parent == args.products.resolve()
        ):
            raise CLIError(
                f"--out {args.out} is one of the --products folder's packet files ({args.products}/*.bin): a later "
                "run would send it as a product too; write it elsewhere"
            )
    else:
        for name, default in IMAGE_OPTIONS.items():
            if getattr(args, name) is None:
                setattr(args, name, default)
        if args.layout == 1 and args.band_rows:
            raise CLIError(
                f"--band-rows {args.band_rows} applies to layout 2 (interleaved bands); layout 1 sends row rectangles"
            )
        if not args.image.is_file():
            what = "is a folder: --image takes one image file" if args.image.is_dir() else "does not exist"
            raise CLIError(f"image {args.image} {what}")
        if not (0.0 < args.keep <= 1.0):  # NaN too
            raise CLIError(f"--keep {args.keep}: the fraction of pixels kept must be in (0, 1]")
        if not 0 <= args.seed < 2**64:
            raise CLIError(f"--seed {args.seed}: the mask seed must be a whole number in [0, 2**64)")
        if not 0 <= args.frame_id < 2**32:
            raise CLIError(f"--frame-id {args.frame_id}: a frame id is a whole number in [0, 2**32)")
    if args.link_seed is not None and args.link is None:
        raise CLIError("--link-seed overrides the seed of a --link file; without --link the link is perfect (no draws)")
    if not args.out.name or args.out.name == "..":
        raise CLIError(f"--out {str(args.out)!r}: name the packet file to write (e.g. rx.bin)")
    if args.model and args.compare is None:
        raise CLIError("--model rebuilds the sparse frame for --compare; without --compare nothing is rebuilt")
    codecs: list[str] = []
    if args.compare is not None:
        codecs = [c.strip() for c in args.compare.split(",") if c.strip()]
        unknown = [c for c in codecs if c not in CODECS]
        if unknown or not codecs:
            what = f"unknown codec(s) {unknown}" if unknown else "names no codec"
            raise CLIError(f"--compare: {what}; choose from {', '.join(CODECS)}")
    report = args.out.with_suffix(".json")
    if report == args.out:  # the report would overwrite the packets just written
        raise CLIError(f"--out {args.out}: name the packet file .bin (its report is written beside it as .json)")
    for flag, path in (("--out", args.out), ("--out (its report)", report)):
        if path.is_dir():
            raise CLIError(f"{flag} {path} is a folder; name the packet file to write (e.g. rx.bin)")
        for what, source in _inputs(args):
            if path.resolve() == source.resolve():
                raise CLIError(f"{flag} {path} is the {what} {source}: it would be overwritten; name another file")
    held = [str(p) for p in (args.out, report) if p.exists()]
    if held and not args.force:
        verb = "exists" if len(held) == 1 else "exist"
        raise CLIError(f"{' and '.join(held)} already {verb}: give --force to overwrite, or name another --out")
    check_writable(args.out, "--out")
    return codecs


def _write_outputs(out: Path, records: list, report: Path, text: str) -> None:
    """The packet file and its report, both or neither: written only now (a refused or failed run leaves no
    half-finished output), each atomically (a full disk leaves no cut-off file, and the error names it); the
    report is committed after the packets, and a report that cannot be written takes the packet file with it."""
    from edgeae.atomic import atomic_path
    from edgeae.wire.stream import write_packet_file

    written = False
    try:
        with atomic_path(report) as tmp:
            tmp.write_text(text)
            try:
                write_packet_file(out, records)
            except OSError as exc:  # named as the packet file's error, not (by atomic_path) as the report's
                raise OSError(exc.errno, os.strerror(exc.errno) if exc.errno else str(exc), str(out)) from exc
            written = True
    except BaseException:
        if written:  # the packets are in place but the report's own commit failed: not one without the other
            out.unlink(missing_ok=True)
        raise


def _inputs(args: argparse.Namespace) -> list[tuple[str, Path]]:
    """(what, path) of every file ``downlink simulate`` reads: the image or packet files, and the link file."""
    from edgeae.ground.sources import packet_files

    out: list[tuple[str, Path]] = []
    if args.image is not None:
        out.append(("--image", args.image))
    elif args.products.is_file() or any(args.products.glob("*.bin")):
        out += [("--products file", f) for f in packet_files(args.products)]
    if args.link is not None and Path(args.link).is_file():
        out.append(("--link file", Path(args.link)))
    return out
