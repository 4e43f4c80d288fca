"""``edgeae downlink simulate``: an image's sparse sample or the flight runtime's packet files sent through the
simulated link into a packet file with its JSON report: the option checks, the run and its outputs (the rest of
``edgeae downlink`` is in :mod:`edgeae.cli.downlink`)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from edgeae._headers import READ_EXTENSIONS
from edgeae.cli import CLIError, DataError, check_writable

from .downlink_compare import StepBar, compare, compare_filler, compare_table, strict_json

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


def run_simulate(args: argparse.Namespace) -> int:
    """``edgeae downlink simulate``: packetise ``--image`` (or read ``--products``), pass the packets through the
    link and write what arrives to ``--out``, with its report beside it."""
    from edgeae.ground.link import simulate
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
        filler = compare_filler(args.model, samples.shape[2], getattr(args, "fill", None)) if codecs else None
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
        if not packets:  # a corrupt input, as in ground decode: status 1 (until session 37 a usage error, 2)
            raise DataError(
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
        from edgeae.ground.validity import file_valid, original_valid

        # every row's PSNR over the pixels with data, by reconstruct's rule (its report says which); from the samples
        # already read where they are the file's own (the file decoded once: no second warning, no second float copy)
        as_read = args.channels is None
        valid = original_valid(args.image, samples, bits, args.bayer) if as_read else file_valid(args.image, args.bayer)
        with StepBar(1 + len(codecs), not getattr(args, "no_progress", False)) as step:
            summary["compare"] = compare(
                args, codecs, filler, samples, bits, out, summary["wire_bytes"], cfg, valid, step
            )
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


PICTURE_SUFFIXES = (*READ_EXTENSIONS, ".webp", ".jp2", ".j2k", ".jxl", ".bmp", ".gif")
"""Names an image would have (the ones edgeae reads, and the codecs' --compare writes): refused for the packet file."""


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
    if getattr(args, "fill", None):
        if args.compare is None:
            raise CLIError("--fill rebuilds the sparse frame for --compare; without --compare nothing is rebuilt")
        if args.model:
            raise CLIError(f"--fill {args.fill} and --model {args.model}: the sparse frame is rebuilt by one of them")
    codecs: list[str] = []
    if args.compare is not None:
        codecs = [c.strip() for c in args.compare.split(",") if c.strip()]
        unknown = [c for c in codecs if c not in CODECS]
        if unknown or not codecs:
            what = f"unknown codec(s) {unknown}" if unknown else "names no codec"
            raise CLIError(f"--compare: {what}; choose from {', '.join(CODECS)}")
    _check_tile(getattr(args, "j2k_tile", None), codecs)
    report = args.out.with_suffix(".json")
    if report == args.out:  # the report would overwrite the packets just written
        raise CLIError(f"--out {args.out}: name the packet file .bin (its report is written beside it as .json)")
    for flag, path in (("--out", args.out), ("--out (its report)", report)):
        if path.is_dir():
            raise CLIError(f"{flag} {path} is a folder; name the packet file to write (e.g. rx.bin)")
        for what, source in _inputs(args):
            if path.resolve() == source.resolve():
                raise CLIError(f"{flag} {path} is the {what} {source}: it would be overwritten; name another file")
    if args.out.suffix.lower() in PICTURE_SUFFIXES:  # a packet file under an image's name would fool every viewer
        raise CLIError(
            f"--out {args.out}: this is the packet file (CCSDS packets, not a picture); name it .bin (e.g. "
            f"{args.out.with_suffix('.bin').name}); edgeae ground decode rebuilds the image from it"
        )
    held = [str(p) for p in (args.out, report) if p.exists()]
    if held and not args.force:
        verb = "exists" if len(held) == 1 else "exist"
        raise CLIError(f"{' and '.join(held)} already {verb}: give --force to overwrite, or name another --out")
    check_writable(args.out, "--out")
    return codecs


def _check_tile(tile: int | None, codecs: list[str]) -> None:
    """Refuse a --j2k-tile that nothing would use (no j2k-tiled in --compare) or under the coder's least side."""
    from edgeae.ground.baselines import TILED
    from edgeae.ground.tiled_j2k import MIN_TILE

    if tile is None:
        return
    if TILED not in codecs:
        raise CLIError(f"--j2k-tile sets the tile side of --compare {TILED}, which --compare does not name: add "
                       f"{TILED} to --compare, or leave --j2k-tile out")  # fmt: skip
    if tile < MIN_TILE:
        raise CLIError(f"--j2k-tile {tile}: a JPEG 2000 tile side is at least {MIN_TILE} px")


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
