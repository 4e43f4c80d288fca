"""``python -m edgeae.strips make-frame OUT.tif SRC...`` | ``stream FRAME.tif``: the command line of
:mod:`edgeae.strips` (the memory figure of docs/io.md), kept out of the library module."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from edgeae.strips import iter_patches, write_tiled_bigtiff


def _peak_rss_mb() -> float:
    import resource  # POSIX only; this helper backs the memory figure in docs/io.md

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def _fraction(text: str) -> float:
    """argparse type: a number in [0, 1] (a valid fraction)."""
    import argparse

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m edgeae.strips make-frame OUT.tif SRC...`` | ``stream FRAME.tif``: the memory figure.

    Exit status: 0 done, 2 a user error (one line on stderr: a missing or unreadable image, a bad size), 130
    interrupted."""
    import argparse

    from edgeae.cli import non_negative_int, positive_int

    ap = argparse.ArgumentParser(prog="python -m edgeae.strips", description=main.__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    mk = sub.add_parser("make-frame", help="write a huge tiled grey BigTIFF from real images")
    mk.add_argument("out")
    mk.add_argument("sources", nargs="+")
    mk.add_argument("--shape", type=positive_int, nargs=2, default=(52224, 5064), metavar=("H", "W"))
    mk.add_argument("--tile", type=positive_int, default=512, help="tile side, a multiple of 16 (default 512)")
    mk.add_argument("--seed", type=non_negative_int, default=0)
    mk.add_argument("--nodata-margin", type=non_negative_int, default=40)
    st = sub.add_parser("stream", help="stream every patch of FRAME and print JSON with the peak RSS")
    st.add_argument("frame")
    st.add_argument("--patch", type=positive_int, default=64)
    st.add_argument("--stride", type=positive_int, default=None)
    st.add_argument("--band-rows", type=positive_int, default=256)
    st.add_argument("--min-valid", type=_fraction, default=0.0)
    args = ap.parse_args(argv)
    try:
        result = _make_frame(args) if args.cmd == "make-frame" else _stream(args)
    except KeyboardInterrupt:
        print(f"\n{ap.prog} {args.cmd}: interrupted", file=sys.stderr)
        return 130
    except (OSError, ValueError, ImportError) as exc:  # ImageReadError and TiffFileError are ValueErrors
        print(f"{ap.prog} {args.cmd}: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


def _make_frame(args: Any) -> dict[str, Any]:
    start_rss, t0 = _peak_rss_mb(), time.perf_counter()
    p = write_tiled_bigtiff(
        args.out, tuple(args.shape), sorted(args.sources), tile=args.tile, seed=args.seed,
        nodata_margin=args.nodata_margin, progress=True,
    )  # fmt: skip
    return _timed({"frame": str(p), "bytes": p.stat().st_size}, start_rss, t0)


def _stream(args: Any) -> dict[str, Any]:
    from edgeae.imageio import image_shape

    start_rss, t0 = _peak_rss_mb(), time.perf_counter()
    h, w, c = image_shape(args.frame)
    n = kept = 0
    valid_sum = 0.0
    for q in iter_patches(args.frame, args.patch, args.stride, band_rows=args.band_rows):
        n += 1
        valid_sum += q.valid_frac
        kept += q.valid_frac >= args.min_valid
    result = {
        "frame": args.frame, "shape": [h, w, c], "frame_mb": h * w * c / 1e6,
        "patch": args.patch, "stride": args.stride or args.patch, "band_rows": args.band_rows,
        "patches": n, "kept": kept, "mean_valid_frac": valid_sum / max(n, 1),
    }  # fmt: skip
    return _timed(result, start_rss, t0)


def _timed(result: dict[str, Any], start_rss: float, t0: float) -> dict[str, Any]:
    result["seconds"] = round(time.perf_counter() - t0, 2)
    result["rss_before_mb"] = round(start_rss, 1)
    result["peak_rss_mb"] = round(_peak_rss_mb(), 1)
    return result
