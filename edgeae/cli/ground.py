"""``edgeae ground``: decode received packets into images (file mode), or serve live over UDP."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
from pathlib import Path

from edgeae.cli import CLIError, positive_int, positive_seconds, udp_port

from .ground_output import capture_list, exit_status, file_list, print_report


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, required=True, help="directory for images and reports")
    p.add_argument(
        "--model",
        help="CAE to fill missing pixels: zoo name (rover-rgb-gtunet), .pt, .onnx, .ort or .tflite "
        "(default: classical inpainting)",
    )
    p.add_argument(
        "--method",
        default="telea",
        choices=("telea", "ns", "linear", "nearest", "normconv"),
        help="classical fill without --model, and for a frame the --model cannot fill (default telea)",
    )
    p.add_argument(
        "--decoder", help="decoder for latent frames: zoo:NAME/NAME-decoder.int8.onnx or a cae-decoder artifact"
    )
    p.add_argument("--original", type=Path, help="original image (or directory by frame id) for PSNR")
    p.add_argument(
        "--bayer",
        default=None,
        choices=["RGGB", "BGGR", "GRBG", "GBRG"],
        help="the --original images are raw colour-filter mosaics of this pattern: demosaic them (as the rover "
        "mission does onboard) before comparing",
    )
    p.add_argument("--threads", type=positive_int, help="interpreter threads")
    p.add_argument(
        "--no-progress", action="store_true",
        help="no progress bars (they are drawn only when stderr is a terminal: a frame's CAE tiles, cross-check "
        "fills and --adapt steps)",
    )  # fmt: skip
    p.add_argument(
        "--adapt", type=int, default=0, metavar="STEPS",
        help="adapt a copy of the --model CAE to each frame's received samples for STEPS steps before filling "
        "(edgeae.adapt; a .pt or zoo model; ~1 s a step on 2 cores; default 0 = off)",
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
        help="operator limit, repeatable, e.g. max_frame_pixels=1e8 or max_session_bytes=4G (docs/ground.md)",
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


def _station(args: argparse.Namespace, make_out: bool = True, claim: _OutClaim | None = None):
    """The station of the options, every option checked first; ``make_out`` False: ``--out`` is neither
    created nor set (``serve`` binds its socket first). ``claim``: hold ``--out`` for this session (an existing one
    before its session files are checked, a new one once created)."""
    from edgeae.ground.limits import GroundLimits
    from edgeae.ground.station import GroundStation, make_filler

    _check_out(args)
    if claim is not None and args.out.is_dir():
        claim.hold()
    _check_session(args.out)
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

    try:
        progress = False if args.no_progress else None  # None: bars when stderr is a terminal
        fill, name = make_filler(args.model, args.method, args.threads, args.adapt, args.cross_check, progress)
    except ModelKindError as exc:  # a VAE or a CAE half: known from its metadata, before any packet is read
        raise CLIError(f"--model {exc}") from None
    except CrossCheckError as exc:  # an unknown classical method
        raise CLIError(f"--cross-check: {exc}") from None
    except ValueError as exc:  # AdaptationError, an invalid step count
        raise CLIError(f"--adapt: {exc}") from None
    # a frame the CAE cannot fill (another channel count) is filled by the classical --method instead
    fallback, fallback_name = make_filler(None, args.method) if args.model else (None, "")
    decoder = None
    if args.decoder:
        from edgeae.predictor import load_predictor

        decoder = load_predictor(args.decoder, threads=args.threads)
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
            _make_out(args.out)
        gs.out = args.out
    return gs


class _OutClaim:
    """``--out`` held for one ground session (:func:`edgeae.folder_lock.hold`) until ``stack`` closes: a second
    session into the same folder is refused at once (exit status 2), before it checks or writes anything there."""

    def __init__(self, out: Path, stack: contextlib.ExitStack) -> None:
        self.out, self.stack, self.held = out, stack, False

    def hold(self) -> None:
        from edgeae.folder_lock import FolderBusy, hold

        try:
            self.stack.enter_context(hold(self.out, "ground session"))
        except FolderBusy as exc:
            raise CLIError(str(exc)) from None
        except OSError as exc:  # a folder this process cannot write in (no lock file can be made there)
            raise CLIError(f"--out {self.out}: cannot write there ({exc.strerror or exc})") from None
        self.held = True

    def claim(self) -> None:
        """Create ``--out`` when missing and hold it; a folder that did not exist at the first check is checked
        again once held (another session may have made it meanwhile)."""
        _make_out(self.out)
        if not self.held:
            self.hold()
            _check_session(self.out)


def _check_out(args: argparse.Namespace) -> None:
    """Refuse an ``--out`` that cannot be a folder (a file, or below one) or that is an input folder, with one line
    saying so (mkdir says only "Not a directory" or "File exists")."""
    out = args.out
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {out} is an existing file; name a directory for the images and reports")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise CLIError(f"cannot create the output folder --out {out}: {parent} is a file, not a folder")
            break
    inputs = [("packet folder", p) for p in getattr(args, "packets", []) if p.is_dir()]
    if args.original is not None and args.original.is_dir():
        inputs.append(("--original folder", args.original))
    for what, folder in inputs:
        if out.resolve() == folder.resolve():  # its images and reports would mix with (or overwrite) the inputs
            raise CLIError(
                f"--out {out} is the {what} {folder}: the images and reports would be written among its files; name "
                "another folder"
            )


def _make_out(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CLIError(f"cannot create the output folder --out {out}: {exc.strerror or exc}") from None


def _check_session(out: Path) -> None:
    """Refuse an ``--out`` that holds a ground session already (:data:`SESSION_FILES`; ``.edgeae.lock``, the
    lock of a session running there, is not one)."""
    held = [n for n in SESSION_FILES if (out / n).exists()]
    unfinished = _unfinished(out) if "stream.json" in held else None
    if unfinished:  # its outputs are partial: say so, and how to decode again
        raise CLIError(
            f"--out {out} holds a ground session that did not finish ({unfinished}): its outputs are partial; "
            "to decode again, remove that folder (or move it away) and rerun the same command, or name a new folder"
        )
    if held:  # a second session would overwrite the first's recording and mix its frames with stale ones
        raise CLIError(
            f"--out {out} already holds a ground session ({', '.join(held)}): name a new folder, or move "
            "that one away first"
        )


SESSION_FILES = ("stream.json", "received.bin")
"""Files that mark a folder as holding a ground session already."""


def _unfinished(out: Path) -> str | None:
    """Why the session whose ``stream.json`` is in ``out`` did not finish (interrupted, its disk full, killed),
    or None when it did (or wrote no ``complete`` field: an older edgeae's)."""
    import json

    try:
        stream = json.loads((out / "stream.json").read_text())["stream"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"its stream.json cannot be read: {exc}"
    if not isinstance(stream, dict) or stream.get("complete", True) is not False:
        return None
    how = (
        f"interrupted by {stream['interrupted']}"
        if stream.get("interrupted")
        else "stopped before its end (killed, or its disk full)"
    )
    return f"{how}; stream.json says complete: false, {stream.get('products_not_decoded', '?')} products not decoded"


def _originals(gs, path: Path, frame_ids: list[int], bayer: str | None = None) -> None:
    """``--original`` for the frames ``frame_ids`` of ``gs``: read when a frame is compared (a frame refused for its
    size or the memory it needs never reads it), not all at once before the first frame. ``serve`` (no frame ids
    known in advance) reads its one image now."""
    from edgeae.ground.sources import as_float, image_samples, original_files

    if path.is_file():
        _one_original(path, frame_ids)
        if not frame_ids:
            gs.default_original = as_float(*image_samples(path, bayer=bayer))
            return
        files = dict.fromkeys(frame_ids, path)
    else:  # a frame without its original (or with one that cannot be read) says so in its report
        found = original_files(path, check=False)
        files = {i: found[i] for i in frame_ids if i in found}
        for i in frame_ids:
            if i not in found:
                gs.original_notes[i] = f"no original for frame {i} in {path} (a file whose name ends in {i})"
    gs.originals = _LazyOriginals(files, bayer, gs.original_notes)


def _one_original(path: Path, frame_ids: list[int]) -> None:
    if len(frame_ids) > 1:  # one image for several frames would give each frame a PSNR against the wrong one
        shown = ", ".join(map(str, frame_ids[:8])) + (" ..." if len(frame_ids) > 8 else "")
        raise CLIError(
            f"--original {path} is one image but the packets hold {len(frame_ids)} frames (ids {shown}): give "
            "a folder of originals whose names end in the frame id (frame_3.png, img_0003.tif)"
        )


class _LazyOriginals(dict):
    """Frame id -> original (float32 in [0, 1]) for ``GroundStation.originals``: each file is read when the station
    asks for its frame (``get``), after that frame's size and memory checks, and not kept (a 52,224 × 5,064 strip
    is 1 GB as float32); a file whose pixels cannot be read is noted in ``notes`` (the frame's ``psnr_error``)."""

    def __init__(self, files: dict[int, Path], bayer: str | None, notes: dict[int, str]) -> None:
        super().__init__()
        self.files, self.bayer, self.notes = files, bayer, notes

    def get(self, key, default=None):
        from edgeae.ground.sources import as_float, image_samples

        path = self.files.get(key)
        if path is None:
            return default
        try:
            return as_float(*image_samples(path, bayer=self.bayer))
        except (OSError, ValueError, MemoryError) as exc:  # the header read fine at start, the pixels did not
            self.notes[key] = f"original {path} could not be read: {exc or type(exc).__name__}"
            return default


def needs(args: argparse.Namespace) -> dict[str, str]:
    """Optional packages this command imports (checked before any packet is read)."""
    return {"cv2": "ground", "scipy": "ground", "tifffile": "ground"}


def run(args: argparse.Namespace) -> int:
    from edgeae.ground.sources import check_packet_files, original_files

    if args.ground_command == "decode":
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
        if args.original is not None and args.original.is_dir():
            original_files(args.original)  # two files for one frame id, or one that is no image: refused now
        elif args.original is not None:  # one image: its header read now, not after every packet
            from edgeae.imageio import image_shape

            image_shape(args.original)
        with contextlib.ExitStack() as stack:  # --out held to the end: a second session into it is refused
            gs = _station(args, claim=_OutClaim(args.out, stack))
            signal_name = ["SIGINT"]  # which signal stopped the run, for stream.json
            restore = _sigterm_as_interrupt(signal_name)
            try:
                return _decode(args, gs, signal_name)
            finally:
                restore()
    with contextlib.ExitStack() as stack:
        return _serve(args, _OutClaim(args.out, stack))


def _serve(args: argparse.Namespace, claim: _OutClaim) -> int:
    """``ground serve``: checks, bind, then ``--out`` is created and held, and the session runs."""
    from edgeae.ground.transport import BindError, bind_udp, serve_udp

    gs = _station(args, make_out=False, claim=claim)  # --out is created once the socket is bound
    if args.original:
        if not args.original.is_file():
            raise CLIError("serve takes --original as one image file (frame ids are not known in advance)")
        _originals(gs, args.original, [], args.bayer)

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

    def ready(port: int) -> None:
        print(f"listening on udp://{args.host}:{port}", flush=True)
        if args.ready_file:
            args.ready_file.write_text(str(port))

    report = serve_udp(gs, args.host, args.port, args.idle_timeout, args.max_time, ready, sock=sock)
    print_report(report)
    stopped = report["serve"]["stopped"]
    if stopped == "interrupted":
        print(f"interrupted: everything received so far is in {args.out} (stream.json, received.bin)")
        return 130
    return 1 if stopped.startswith("error") else exit_status(report)


def _decode(args: argparse.Namespace, gs, signal_name: list[str]) -> int:
    """``ground decode`` after its options are checked: every capture's products and ``stream.json``."""
    from edgeae.ground.sources import feed_captures

    # streamed: packets go to the receivers as they are read, so a huge file costs no more memory than the
    # packets the stations keep (their --limit caps); a file whose sequence counts restart is a capture of
    # its own (OUT/capture_<k>), so frames of two captures under one id are both rebuilt
    caps = feed_captures(args.packets, gs)
    if args.original:
        _originals_of_captures(caps, args.original, args.bayer)
    listing = capture_list(caps, args.out) if len(caps) > 1 else None
    status = 0
    for k, cap in enumerate(caps, 1):
        if listing:
            print(f"capture {k} ({file_list(cap.files)}) -> {cap.station.out}")
        try:
            report = cap.station.finish(write=False)  # written below, with what only this command knows
        except KeyboardInterrupt:  # the products decoded so far, and the stream totals, are kept
            report = cap.station.report()  # complete: false, and the products not decoded
            report["stream"]["interrupted"] = signal_name[0]
            report["stream"]["bytes_outside_packets"] = cap.skipped
            written = _write_final(cap.station, report)
            print(
                f"interrupted ({signal_name[0]}): {len(report['products'])} products written to {cap.station.out}, "
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
            f"edgeae ground: error: {exc}: the session report was not written ({left}); the products' files and "
            "reports are written as they say",
            file=sys.stderr,
        )
        return False
    return True


def _sigterm_as_interrupt(signal_name: list[str]):
    """SIGTERM (``kill``, a batch system's stop) stops ``ground decode`` as Ctrl-C does: the products decoded so far
    are kept and stream.json says the run was interrupted; ``signal_name[0]`` becomes ``"SIGTERM"``. Returns what
    puts the previous handler back (a no-op off the main thread)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def interrupt(signum: int, frame) -> None:
        signal_name[0] = "SIGTERM"
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, interrupt)
    return lambda: signal.signal(signal.SIGTERM, old)


def _originals_of_captures(caps: list, path: Path, bayer: str | None) -> None:
    """``--original`` for every capture; a frame id found in two captures gets none (which one it shows is
    not known), and its report says so."""
    ids = [sorted({k[1] for k in cap.station.receiver.products}) for cap in caps]
    if path.is_file():
        _one_original(path, [i for cap_ids in ids for i in cap_ids])
        for cap, cap_ids in zip(caps, ids, strict=True):
            if cap_ids:  # no frame id: nothing to compare (an empty list would read the image now, as serve does)
                _originals(cap.station, path, cap_ids, bayer)
        return
    holding = {i: sum(i in c for c in ids) for cap_ids in ids for i in cap_ids}  # frame id -> captures with it
    shared = {i for i, n in holding.items() if n > 1}
    for cap, cap_ids in zip(caps, ids, strict=True):
        gs = cap.station
        for i in shared & set(cap_ids):
            gs.original_notes[i] = f"frame id {i} is in {holding[i]} captures: which of them {path} shows is not known"
        _originals(gs, path, [i for i in cap_ids if i not in shared], bayer)
