"""The command line of ``edgeae reconstruct``: its flags (:func:`register`), the frame size up to which the
cross-check runs by default (:data:`AUTO_CROSS_CHECK_MAX_PIXELS`), and the CAE-only flags a classical ``--method``
ignores (:func:`ignored_options`).

Light imports only: ``edgeae --help`` stays fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from edgeae._optional import source_ref
from edgeae.adapt import AdaptConfig
from edgeae.cli import non_negative_int, positive_int
from edgeae.reconstruct import DEFAULT_MODELS, METHODS

# The cross-check is the default up to this frame size: it rebuilds a frame 4× with the CAE and 4× with linear
# interpolation, ~4× the CAE's time (session 14, 2 cores: a 0.47 Mpx frame 9-10 s vs 2 s, 16 Mpx 490 s vs 90 s);
# a larger frame gets the CAE alone unless asked for.
AUTO_CROSS_CHECK_MAX_PIXELS = 4_000_000


def register(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "reconstruct",
        help="rebuild an image from a seeded sparse sample of its pixels (CAE or classical inpainting)",
        description=(
            "Keep a fraction of the pixels of IMAGE (a deterministic mask from --seed and --pattern), rebuild "
            "the rest with the CAE or a classical baseline, and write the image and its metrics "
            "(PSNR, SSIM, MAE, error variance) against the original."
        ),
    )
    p.add_argument(
        "image",
        type=Path,
        help=f"PNG, JPEG, PGM or TIFF, or a planetary product ({source_ref('docs/archive.md')}); grey or RGB",
    )
    p.add_argument(
        "--model",
        help="zoo name or checkpoint/artifact path for --method cae "
        f"(default: {DEFAULT_MODELS[3]} for RGB, {DEFAULT_MODELS[1]} for grey images)",
    )
    p.add_argument("--keep", type=float, default=0.1, help="fraction of pixels kept, in (0, 1] (default 0.1)")
    p.add_argument("--seed", type=int, default=0, help="mask seed, 0 <= seed < 2**64 (default 0)")
    p.add_argument("--pattern", default="uniform", help="mask pattern: uniform or jittered (default uniform)")
    p.add_argument(
        "--method", default="cae", metavar="|".join(METHODS),
        help="cae (the CAE), telea or ns (OpenCV inpainting), linear (Delaunay), nearest, normconv (normalised "
        "convolution), normconv-wide (the same with a coarser scale, for keep 0.02), blend (the mean of "
        "normconv-wide and linear: the best classical fill on the validation frames); default cae",
    )  # fmt: skip
    p.add_argument(
        "-o", "--output", "--out", dest="output", type=Path, required=True, help="reconstructed image (PNG/TIFF/...)"
    )
    p.add_argument("--metrics-json", type=Path, help="write metrics, settings and timing as JSON here")
    p.add_argument(
        "--save-masked", nargs="?", type=Path, const=True, default=None, metavar="PATH",
        help="also write the masked input (destroyed pixels black); default: OUTPUT with .masked.png in place of "
        "its extension",
    )  # fmt: skip
    p.add_argument(
        "--save-error-map", nargs="?", type=Path, const=True, default=None, metavar="PATH",
        help="also write a colour map of |error| (0 to 0.25 of full scale); default: OUTPUT with .error.png in "
        "place of its extension",
    )  # fmt: skip
    p.add_argument("--tile", type=positive_int, help="CAE tile size when the model does not fix it (default 128)")
    p.add_argument("--overlap", type=non_negative_int, help="CAE tile overlap in pixels (default tile/4: 32)")
    p.add_argument(
        "--batch",
        "--batch-size",
        dest="batch",
        type=positive_int,
        help="CAE tiles per batch (default 8; lowered to fit the memory)",
    )
    p.add_argument("--threads", type=positive_int, help="inference threads (default: library default)")
    p.add_argument(
        "--bayer",
        choices=["RGGB", "BGGR", "GRBG", "GBRG"],
        help="the image is a raw colour-filter mosaic of this pattern: demosaic it first (as the flight does)",
    )
    p.add_argument(
        "--adapt", nargs="?", type=int, const=AdaptConfig().steps, default=0, metavar="STEPS",
        help="before filling, fine-tune a copy of the CAE on this frame's own samples for STEPS steps (default "
        f"{AdaptConfig().steps} when given without a number; 0 = off, the default): hides some received samples "
        "and learns to predict them; a held-out tenth of the samples in 16 tiles picks the best state, or the model as "
        "shipped (edgeae.adapt; a PyTorch model only, ~1 s a step on 2 cores)",
    )  # fmt: skip
    p.add_argument(
        "--cross-check", nargs="?", const="linear", default=None, metavar="METHOD",
        help="mix the CAE with a classical fill (default linear when given without a name) region by region: "
        "three disjoint tenths of the received samples are set aside in turn, both methods rebuild each from the "
        "rest, and each region takes the weighted mix that predicts its set-aside samples best "
        "(edgeae.crosscheck; 4 CAE passes). On by default (linear) for frames of up to "
        f"{AUTO_CROSS_CHECK_MAX_PIXELS / 1e6:.0f} Mpx: the CAE alone loses to linear interpolation on images unlike "
        f"its training frames ({source_ref('docs/training.md')})",
    )  # fmt: skip
    p.add_argument(
        "--no-cross-check", action="store_true",
        help="the CAE alone (one pass; the default above the cross-check's size limit)",
    )  # fmt: skip
    p.add_argument(
        "--convert-channels", action="store_true",
        help="allow a grey model on RGB (per channel) or an RGB model on grey (replicated) images",
    )  # fmt: skip
    return p


def ignored_options(args: argparse.Namespace) -> list[str]:
    """The CAE-only options given with a classical --method."""
    if args.method == "cae":
        return []
    given = {
        "--model": args.model, "--tile": args.tile, "--overlap": args.overlap, "--batch": args.batch,
        "--threads": args.threads, "--convert-channels": args.convert_channels, "--adapt": args.adapt,
        "--cross-check": args.cross_check, "--no-cross-check": args.no_cross_check,
    }  # fmt: skip
    return [flag for flag, value in given.items() if value not in (None, False, 0)]
