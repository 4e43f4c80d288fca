"""``edgeae downlink``: its options, and the ``send`` action that replays a packet file over UDP; ``simulate`` (send
products through the simulated link into a packet file) is in :mod:`edgeae.cli.downlink_simulate`, ``plan`` in
:mod:`edgeae.cli.downlink_plan`."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from edgeae.cli import CLIError, DataError, positive_int, udp_port

from .downlink_simulate import IMAGE_OPTIONS as IMAGE_OPTIONS
from .downlink_simulate import _link, run_simulate

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
        help="--image: also send the image with these codecs (comma-separated: jpeg2000, j2k-tiled, jpeg, "
        "jpeg-rst, webp, jpegxl), each at the sparse frame's wire bytes over the same link, and report every PSNR; "
        "jpeg2000 is one codestream (a lost packet truncates it), j2k-tiled JPEG 2000 as a mission sends it over a "
        "lossy link: independent tiles, each its own codestream in its own packet (--j2k-tile), lost tiles concealed",
    )  # fmt: skip
    s.add_argument(
        "--j2k-tile", type=int, metavar="PX",
        help="--compare j2k-tiled: the tile side in px (at least 16); default a tile per packet, the side per frame "
        "(64 px for a 512-px RGB frame at --keep 0.1)",
    )  # fmt: skip
    s.add_argument(
        "--model",
        help="--compare: rebuild the sparse frame with this CAE (zoo name or artifact); default the classical --fill",
    )
    s.add_argument(
        "--fill", choices=("telea", "ns", "linear", "nearest", "normconv", "normconv-wide", "blend"),
        help="--compare without --model: the classical fill that rebuilds the sparse frame (default blend, the "
        "mean of the normconv-wide and linear fills: the best classical fill of the reconstruction benchmark)",
    )  # fmt: skip
    s.add_argument(
        "--link", type=Path, metavar="LINK",
        help="a link preset name (perfect, loss5, loss20, loss40, burst, mars_relay; see edgeae links) or a link TOML "
        "file; default a perfect 2 Mbit/s link",
    )  # fmt: skip
    s.add_argument("--link-seed", type=int, help="override the link file's seed")
    s.add_argument("--out", type=Path, required=True, help="packet file to write (report beside it, .json)")
    s.add_argument("--force", action="store_true", help="overwrite an existing --out and its report")
    s.add_argument(
        "--no-progress", action="store_true",
        help="--compare: no progress bar over its steps (drawn only when stderr is a terminal)",
    )  # fmt: skip
    pl = sub.add_parser(
        "plan",
        help="science per byte: JPEG 2000 vs sparse + CAE vs prioritised patches at per-frame byte budgets",
        description="For per-frame downlink budgets (fractions of the raw frame, in wire bytes), compare sending "
        "the whole frame as JPEG 2000 (one codestream, jpeg2000; or independent tiles, each its own codestream in "
        "its own packets, lost tiles concealed, j2k-tiled), its sparse samples rebuilt with the CAE, and the "
        "prioritised downlink "
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
        "--methods", default="jpeg2000,j2k-tiled,sparse,prioritised,prioritised-j2k",
        help="comma-separated, of jpeg2000, j2k-tiled, sparse, prioritised, prioritised-j2k (default all five); "
        "j2k-tiled sends a tile per packet, its side per frame and budget (--j2k-tile fixes it)",
    )  # fmt: skip
    pl.add_argument(
        "--j2k-tile", type=int, metavar="PX",
        help="j2k-tiled: the tile side in px (at least 16); default per frame and budget, a tile per packet",
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
    pl.add_argument(
        "--no-progress", action="store_true", help="no progress bar (it is drawn only when stderr is a terminal)"
    )
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


def _address(host: str, port: int) -> str:
    """The IPv4 address ``send`` sends to (its socket is IPv4): ``--host`` resolved once, or refused in one line
    naming it (until session 37 "[Errno -2] Name or service not known", naming neither the host nor --host)."""
    import socket

    try:
        return str(socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_DGRAM)[0][4][0])
    except (OSError, UnicodeError) as exc:  # socket.gaierror; a name IDNA cannot encode
        why = getattr(exc, "strerror", None) or exc
        raise CLIError(f"--host {host}: no IPv4 address found for it ({why}); nothing sent") from None


def run(args: argparse.Namespace) -> int:
    from edgeae.ground.link import simulate

    if args.downlink_command == "send":
        from edgeae.ground.sources import read_packets
        from edgeae.ground.transport import send_udp

        if not (args.speed >= 0 and math.isfinite(args.speed)):
            raise CLIError(f"--speed must be a finite number >= 0 (0: no timing), got {args.speed}")
        address = _address(args.host, args.port)  # before the file is read: a host that does not resolve, named
        recs, skipped = read_packets(args.packets)
        if not recs:  # nothing to send: say so rather than end a live station's session with an empty pass
            raise DataError(
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
                f"{st.unsent_packets} unsent" + (" (no contact window left)" if st.unsent_packets else "")
            )
        n = send_udp(recs, address, args.port, speed=args.speed)  # resolved once, not for every datagram
        print(f"sent {n} packets to udp://{args.host}:{args.port}")
        return 0

    if args.downlink_command == "plan":
        from edgeae.cli.downlink_plan import plan

        return plan(args)
    return run_simulate(args)
