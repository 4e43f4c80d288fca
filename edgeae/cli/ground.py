"""``edgeae ground``: decode received packets into images (file mode), or serve live over UDP."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
from pathlib import Path

from edgeae._optional import source_ref
from edgeae.adapt import AdaptConfig
from edgeae.cli import CLIError, positive_int, positive_seconds, udp_port
from edgeae.firmware_sim.cli_console import status_line

from .ground_originals import originals_of_captures, serve_originals
from .ground_out import OutClaim, check_out, check_session, create_out
from .ground_output import PassStatus, capture_list, exit_status, file_list, print_report, serve_stop


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, required=True, help="directory for images and reports")
    p.add_argument(
        "--model",
        help="CAE to fill missing pixels: zoo name (rover-rgb-unet2-ground), .pt, .onnx, .ort or .tflite "
        "(default: classical inpainting)",
    )
    p.add_argument(
        "--method",
        default="auto",
        choices=("auto", "telea", "ns", "linear", "nearest", "normconv", "normconv-wide", "blend"),
        help="classical fill without --model, and for a frame the --model cannot fill (default auto: per frame, "
        "blend, the mean of normconv-wide and linear and the best classical fill on the validation frames, or where "
        "its rebuild would not fit in the memory available the next best that fits, normconv-wide then telea; the "
        f"frame's report says which in 'reconstruction' and why in 'fill_auto': {source_ref('docs/ground.md')})",
    )
    p.add_argument(
        "--decoder", help="decoder for latent frames: zoo:NAME/NAME-decoder.int8.onnx or a cae-decoder artifact"
    )
    p.add_argument(
        "--original",
        type=Path,
        help="original image for PSNR, or a folder of them by frame id (frame_3.png); serve compares one image with "
        "the pass's first frame only",
    )
    p.add_argument(
        "--bayer",
        default=None,
        choices=["RGGB", "BGGR", "GRBG", "GBRG"],
        help="the --original images are raw colour-filter mosaics of this pattern: demosaic them (as the rover "
        "mission does onboard) before comparing (without it, a frame whose telemetry names the pattern the flight "
        "demosaiced it with has its original demosaiced so)",
    )
    p.add_argument("--threads", type=positive_int, help="interpreter threads")
    p.add_argument(
        "--no-progress", action="store_true",
        help="no progress bars (they are drawn only when stderr is a terminal: a frame's CAE tiles, cross-check "
        "fills and --adapt steps), and no serve status line on stderr every 10 s",
    )  # fmt: skip
    p.add_argument(
        "--adapt", nargs="?", type=int, const=AdaptConfig().steps, default=0, metavar="STEPS",
        help="adapt a copy of the --model CAE to each frame's received samples for STEPS steps before filling "
        f"({AdaptConfig().steps} when given without a number, as for edgeae reconstruct; edgeae.adapt; a .pt or zoo "
        "model; ~0.75 s a step on 2 cores, "
        f"{source_ref('docs/ground.md', 'Filling the pixels that did not arrive')}; default 0 = off)",
    )  # fmt: skip
    p.add_argument(
        "--cross-check", nargs="?", const="linear", default=None, metavar="METHOD",
        help="mix the --model CAE with a classical fill (default linear) region by region, weighted by how well "
        "each predicts received samples set aside (edgeae.crosscheck; 4 CAE passes)",
    )  # fmt: skip
    p.add_argument(
        "--limit",
        action="append",
        metavar="NAME=VALUE",
        help="operator limit, repeatable, e.g. max_frame_pixels=1e8 or max_session_bytes=4G "
        f"({source_ref('docs/ground.md')})",
    )


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "ground",
        help="ground station: rebuild images from received packets",
        description="The ground station: reassemble received packets in any order, account for every lost, "
        "corrupt or duplicate packet, and rebuild each frame (CAE or classical inpainting for the pixels it "
        "did not receive), from packet files (decode) or live over UDP (serve).",
    )
    sub = p.add_subparsers(dest="ground_command", metavar="ACTION", required=True)
    d = sub.add_parser(
        "decode",
        help="decode a packet file (or a directory of them)",
        description="Decode packet files into images: OUT/frame_*.png, a validity map of the received pixels "
        "and a JSON report per frame (packets expected, received, lost, corrupt, refused; PSNR with --original), and "
        "OUT/stream.json for the whole stream.",
    )
    d.add_argument("packets", type=Path, nargs="+", help="packet files (edgeae .bin records or raw CCSDS)")
    _common(d)
    s = sub.add_parser(
        "serve",
        help="receive packets over UDP and decode them as they arrive",
        description="Listen for packets over UDP and decode frames as they complete. Stops at the "
        "end-of-transmission datagram that edgeae downlink send ends with, after --idle-timeout seconds "
        "without packets, or after --max-time seconds; then writes the same outputs as decode.",
    )
    s.add_argument("--port", type=udp_port, required=True, help="UDP port (0 picks a free one)")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    s.add_argument(
        "--idle-timeout",
        type=positive_seconds,
        default=10.0,
        help="stop after this many seconds without packets (default 10)",
    )
    s.add_argument(
        "--max-time",
        type=positive_seconds,
        default=600.0,
        help="stop after this many seconds in any case (default 600; a relay pass with contact windows far apart "
        "needs more)",
    )
    s.add_argument("--ready-file", type=Path, help="write the bound port here once listening")
    _common(s)
    return p


def _station(args: argparse.Namespace, make_out: bool = True, claim: OutClaim | None = None):
    """The station of the options, every option checked first; ``make_out`` False: ``--out`` is neither
    created nor set (``serve`` binds its socket first). ``claim``: hold ``--out`` for this session (an existing one
    before its session files are checked, a new one once created)."""
    from edgeae.ground.limits import GroundLimits
    from edgeae.ground.station import GroundStation, make_filler

    check_out(args)
    if claim is not None and args.out.is_dir():
        claim.hold()
    check_session(args.out)
    if args.original is not None and not args.original.exists():
        raise CLIError(f"--original {args.original} does not exist")
    if args.bayer and args.original is None:
        raise CLIError("--bayer applies to the --original images: give --original")
    limits = GroundLimits.from_pairs(args.limit)
    if args.adapt and not args.model:
        raise CLIError("--adapt needs --model: it adapts the CAE, classical inpainting has nothing to adapt")
    if args.cross_check and not args.model:
        raise CLIError("--cross-check needs --model: it mixes the CAE with a classical fill")
    from edgeae.crosscheck import CrossCheckError
    from edgeae.ground.filler import ModelKindError
    from edgeae.resolve import NameNotFound

    try:
        progress = False if args.no_progress else None  # None: bars when stderr is a terminal
        fill, name = make_filler(args.model, args.method, args.threads, args.adapt, args.cross_check, progress)
    except ModelKindError as exc:  # a VAE or a CAE half: known from its metadata, before any packet is read
        raise CLIError(f"--model {exc}") from None
    except NameNotFound as exc:  # no such file or zoo model
        raise CLIError(f"--model: {exc}") from None
    except CrossCheckError as exc:  # an unknown classical method
        raise CLIError(f"--cross-check: {exc}") from None
    except ValueError as exc:  # AdaptationError, an invalid step count
        raise CLIError(f"--adapt: {exc}") from None
    # a frame the CAE cannot fill (another channel count) is filled by the classical --method instead
    fallback, fallback_name = make_filler(None, args.method) if args.model else (None, "")
    decoder = None
    if args.decoder:
        from edgeae.predictor import load_predictor

        try:
            decoder = load_predictor(args.decoder, threads=args.threads)
        except (OSError, ValueError) as exc:  # no such file or zoo model, an unreadable artifact
            raise CLIError(f"--decoder: {exc}") from None
    gs = GroundStation(  # the CLI writes each frame and never reads it back: keep none (memory per frame)
        fill=fill,
        fill_name=name,
        decoder=decoder,
        limits=limits,
        fallback=fallback,
        fallback_name=fallback_name,
        keep_images=False,
    )
    if make_out:
        if claim is not None:
            claim.claim()
        else:
            create_out(args.out)
        gs.out = args.out
    return gs


def needs(args: argparse.Namespace) -> dict[str, str]:
    """Optional packages this command imports (checked before any packet is read)."""
    return {"cv2": "ground", "scipy": "ground", "tifffile": "ground"}


def run(args: argparse.Namespace) -> int:
    if args.ground_command == "decode":
        received = getattr(args, "_sigterm", [])  # "SIGTERM" once it came: stream.json and the line name it
        restore = _sigterm_as_interrupt(received)  # from the start: a SIGTERM during the checks stops it as Ctrl-C
        try:
            return _decode_checked(args, received)
        finally:
            restore()
    with contextlib.ExitStack() as stack:
        return _serve(args, OutClaim(args.out, stack))


def _decode_checked(args: argparse.Namespace, received: list[str]) -> int:
    """``ground decode``: every plain mistake refused before --out is created or a packet read, then the decode
    (until session 38 the SIGTERM handler came after these checks, and a SIGTERM during them ended the process
    without a word: review r2)."""
    from edgeae.ground.sources import check_packet_files

    for p in args.packets:  # every plain mistake before --out is created or a packet read
        if not p.exists():
            raise CLIError(f"packet file {p} does not exist")
        if not p.is_file() and not p.is_dir():  # a pipe (cat x | ... /dev/stdin) or a device
            raise CLIError(
                f"packet file {p} is not a regular file (a pipe or a device): packet files are read in windows, "
                "back and forth; save the stream to a file first (e.g. cat ... > rx.bin) and decode that"
            )
        if p.is_file() and p.stat().st_size == 0:
            raise CLIError(f"packet file {p} is empty (0 bytes): nothing was recorded")
        check_packet_files(p)
    _check_original(args)
    with contextlib.ExitStack() as stack:  # --out held to the end: a second session into it is refused
        gs = _station(args, claim=OutClaim(args.out, stack))
        return _decode(args, gs, received)


def _check_original(args: argparse.Namespace) -> None:
    """Refuse a bad ``--original`` before any packet is read: a folder with two files for one frame id or a file
    that is no image, or one image whose header cannot be read (its pixels are read when a frame is compared)."""
    from edgeae.ground.sources import original_files

    if args.original is not None and args.original.is_dir():
        original_files(args.original)
    elif args.original is not None:
        from edgeae.imageio import image_shape

        image_shape(args.original)


def _serve(args: argparse.Namespace, claim: OutClaim) -> int:
    """``ground serve``: checks, bind, then ``--out`` is created and held, and the session runs."""
    from edgeae.ground.transport import BindError, bind_udp, serve_udp

    gs = _station(args, make_out=False, claim=claim)  # --out is created once the socket is bound
    _check_original(args)
    # a folder: looked up by frame id as each frame is compared; one image: with the pass's first frame only
    one_original = serve_originals(gs, args.original, args.bayer) if args.original else None

    if args.ready_file:
        try:  # checked before binding: a bad path must not surface as a traceback after the socket is up
            args.ready_file.write_text("")
        except OSError as exc:
            raise CLIError(f"--ready-file {args.ready_file}: cannot write it ({exc.strerror or exc})") from None
    try:
        sock = bind_udp(args.host, args.port)
    except BindError as exc:  # a busy port, an unknown host: the address and why, exit status 2
        raise CLIError(str(exc.strerror)) from None
    try:
        claim.claim()  # after binding: a busy port leaves no folder behind
    except BaseException:
        sock.close()
        raise
    gs.out = args.out

    status = PassStatus(gs)  # a line on stderr every 10 s while packets arrive or frames are decoded

    def ready(port: int) -> None:
        print(f"listening on udp://{args.host}:{port}", flush=True)
        if args.ready_file:
            args.ready_file.write_text(str(port))
        if not args.no_progress:
            status.start()  # here, after the receiver process is forked: no thread of ours is copied into it

    try:
        report = serve_udp(gs, args.host, args.port, args.idle_timeout, args.max_time, ready, sock=sock)
    finally:
        status.stop()
    print_report(report)
    warning = one_original.warning() if one_original is not None else None
    if warning:
        print(warning)
    interrupted = report.get("stream", {}).get("interrupted")
    line, code = serve_stop(report["serve"], args.idle_timeout, args.max_time, args.out, interrupted)
    print(line)
    return exit_status(report) if code is None else code


def _decode(args: argparse.Namespace, gs, received: list[str]) -> int:
    """``ground decode`` after its options are checked: every capture's products and ``stream.json``; ``received``
    holds ``"SIGTERM"`` once SIGTERM came (an interruption without it was Ctrl-C's SIGINT)."""
    from edgeae.ground.sources import feed_captures

    # streamed: packets go to the receivers as they are read, so a huge file costs no more memory than the
    # packets the stations keep (their --limit caps); a file whose sequence counts restart is a capture of
    # its own (OUT/capture_<k>), so frames of two captures under one id are both rebuilt
    caps = feed_captures(args.packets, gs)
    if args.original:
        originals_of_captures(caps, args.original, args.bayer)
    listing = capture_list(caps, args.out) if len(caps) > 1 else None
    status = 0
    for k, cap in enumerate(caps, 1):
        if listing:
            print(f"capture {k} ({file_list(cap.files)}) -> {cap.station.out}")
        try:
            report = cap.station.finish(write=False)  # written below, with what only this command knows
        except KeyboardInterrupt:  # the products decoded so far, and the stream totals, are kept
            signal_name = received[0] if received else "SIGINT"
            report = cap.station.report()  # complete: false, and the products not decoded
            report["stream"]["interrupted"] = signal_name
            report["stream"]["bytes_outside_packets"] = cap.skipped
            written = _write_final(cap.station, report)
            status_line(  # on stderr when the same Ctrl-C closed stdout (| tee): the line and 130 stay
                f"interrupted ({signal_name}): {len(report['products'])} products written to {cap.station.out}, "
                f"{report['stream']['products_not_decoded']} not decoded"
                + (" (stream.json says which)" if written else "")
            )
            return 130
        report["stream"]["bytes_outside_packets"] = cap.skipped
        if cap.damage:  # damaged record files: where, and what was skipped or repaired (first 100)
            report["stream"]["file_damage"] = [dataclasses.asdict(d) for d in cap.damage[:100]]
        if listing:
            report["stream"]["captures"] = listing
            report["stream"]["capture"] = k
        written = _write_final(cap.station, report)
        if cap.reason:
            print(f"WARNING: {cap.reason}; decoded as capture {k} of its own into {cap.station.out}")
        print_report(report)
        status = max(status, exit_status(report), 0 if written else 1)
    return status


def _write_final(station, report: dict) -> bool:
    """Write ``stream.json``; when it cannot be written (a full disk), one line on stderr says so and what the
    folder then holds, and False is returned (exit status 1): the products' own files and reports are written."""
    import sys

    try:
        station.write_report(report)
    except OSError as exc:
        early = Path(station.out) / "stream.json"
        left = (
            f"the {early} there is the first one, which says complete: false"
            if early.exists()
            else "the folder holds no stream.json"
        )
        print(
            f"edgeae ground decode: error: {exc}: the session report was not written ({left}); the products' files and "
            "reports are written as they say",
            file=sys.stderr,
        )
        return False
    return True


def _sigterm_as_interrupt(received: list[str]):
    """SIGTERM (``kill``, a batch system's stop) stops ``ground decode`` as Ctrl-C does: the products decoded so far
    are kept and stream.json says the run was interrupted; ``received`` (the CLI's ``args._sigterm``, which its
    "interrupted" line reads) gets ``"SIGTERM"``. Returns what puts the previous handler back (a no-op off the main
    thread). A SIGTERM the caller set to be ignored stays ignored, as in every other edgeae command (until session 37
    decode put its handler over it): the installer shared with them
    (:func:`edgeae.firmware_sim.cli_preflight._sigterm_as_ctrl_c`) holds that check."""
    from edgeae.firmware_sim import cli_preflight

    return cli_preflight._sigterm_as_ctrl_c(received)
