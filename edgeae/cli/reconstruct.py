"""``edgeae reconstruct``: sample an image with a seeded mask, rebuild it, write the result and its metrics."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeae.adapt import AdaptConfig
from edgeae.cli import non_negative_int, positive_int
from edgeae.cli.reconstruct_memory import check_memory
from edgeae.cli.reconstruct_outputs import (
    cae_tiling,
    check_outputs,
    finite_or_none,
    keep_georef,
    side_path,
    stale_valid_map,
    write_output,
)
from edgeae.reconstruct import DEFAULT_BATCH, DEFAULT_MODELS, METHODS

if TYPE_CHECKING:
    pass

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
        "image", type=Path, help="PNG, JPEG, PGM or TIFF, or a planetary product (docs/archive.md); grey or RGB"
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
        "convolution); default cae",
    )  # fmt: skip
    p.add_argument("-o", "--output", type=Path, required=True, help="reconstructed image (PNG/TIFF/...)")
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
    p.add_argument("--batch", type=positive_int, help="CAE tiles per batch (default 8; lowered to fit the memory)")
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
        "its training frames (docs/training.md)",
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


def _ssim_text(value: float, shape: tuple[int, ...]) -> str:
    if math.isfinite(value):
        return f"{value:.4f}"
    return "n/a (image under 3 px high or wide)" if min(shape[:2]) < 3 else "n/a"


# a frame of more than this many pixels gets a line on stderr per step (read, fill, metrics), on a terminal only
STEP_LINE_PIXELS = 1_000_000


def _step(on: bool, text: str) -> None:
    if on:
        print(f"edgeae reconstruct: {text} ...", file=sys.stderr, flush=True)


def _header_shape(args: argparse.Namespace) -> tuple[int, int, int]:
    """(H, W, C) of the image from its header (or label) alone, as the read will return it."""
    from edgeae.imageio import image_shape

    h, w, c = image_shape(args.image)
    return h, w, 3 if args.bayer else c


def _left_out(data: Any, original: np.ndarray) -> str:
    """Which pixels the metrics leave out and why: the file's declared no-data, the margin rule's guessed dark or
    saturated margins, and the likely cause of a frame read as margin (12-bit counts in a 16-bit file, which
    :func:`edgeae.imageio.read_raw` warned about)."""
    size = data.valid.size
    declared = data.extra.get("declared_valid", data.valid)
    guessed = int(np.count_nonzero(declared & ~data.valid))
    missing = size - int(np.count_nonzero(declared))
    parts = []
    if missing:
        parts.append(f"{missing / size:.1%} of the frame declared no-data or non-finite")
    if guessed:
        parts.append(f"{guessed / size:.1%} read as a dark or saturated margin by the no-data margin rule")
    why = " and ".join(parts)
    if guessed and data.raw_dtype == "uint16" and data.bit_depth == 16:
        top = float(original.max(initial=0.0)) * data.scale
        if 0 < top < 4096:
            why += (
                f"; the 16-bit samples reach only {top:.0f} of 65535 (the warning above): if this is 12-bit data "
                "in a 16-bit file, store it with its bit depth (PNG sBIT, TIFF BitsPerSample) or rescale it"
            )
    return why


def needs(args: argparse.Namespace) -> dict[str, str]:
    """Optional packages this command imports (checked before any work)."""
    return {"cv2": "ground", "scipy": "ground", "skimage": "ground", "tifffile": "ground"}


def _ignored_options(args: argparse.Namespace) -> list[str]:
    """The CAE-only options given with a classical --method."""
    if args.method == "cae":
        return []
    given = {
        "--model": args.model, "--tile": args.tile, "--overlap": args.overlap, "--batch": args.batch,
        "--threads": args.threads, "--convert-channels": args.convert_channels, "--adapt": args.adapt,
        "--cross-check": args.cross_check, "--no-cross-check": args.no_cross_check,
    }  # fmt: skip
    return [flag for flag, value in given.items() if value not in (None, False, 0)]


def run(args: argparse.Namespace) -> int:
    from edgeae.cli import CLIError
    from edgeae.imageio import read_image
    from edgeae.masks import PRNG_VERSION, make_mask
    from edgeae.metrics import compare
    from edgeae.reconstruct import METHODS, Reconstruction, reconstruct, show_progress

    if args.method not in METHODS:
        raise CLIError(f"unknown --method {args.method!r}; choose one of {', '.join(METHODS)}")
    if args.cross_check is not None and args.no_cross_check:
        raise CLIError("--cross-check and --no-cross-check contradict each other: give one")
    if args.tile is not None and args.overlap is not None and args.overlap >= args.tile and args.method == "cae":
        raise CLIError(f"--overlap {args.overlap} must be smaller than --tile {args.tile}")
    ignored = _ignored_options(args)
    if ignored:
        print(f"note: {', '.join(ignored)} {'is' if len(ignored) == 1 else 'are'} ignored by --method {args.method}")
    xcfg = None
    if args.method == "cae" and not args.no_cross_check:
        from edgeae.crosscheck import CrossCheckConfig, CrossCheckError

        try:
            xcfg = CrossCheckConfig(method=args.cross_check or "linear", seed=args.seed)
        except CrossCheckError as exc:
            raise CLIError(f"--cross-check: {exc}") from None
    if not args.image.exists():  # a wrong path is a usage error (2); a file that cannot be read a data error (1)
        raise CLIError(f"image {args.image} does not exist")
    check_outputs(args)  # before minutes of filling, not after
    t0 = time.perf_counter()
    h, w, c = _header_shape(args)  # the size from the header: a frame too large is refused before it is read
    pixels = h * w
    if xcfg is not None and args.cross_check is None and pixels > AUTO_CROSS_CHECK_MAX_PIXELS:
        print(
            f"note: {pixels / 1e6:.1f} Mpx is above the {AUTO_CROSS_CHECK_MAX_PIXELS / 1e6:.0f} Mpx the cross-check "
            "runs on by default: the CAE alone (give --cross-check to mix it with linear interpolation anyway)"
        )
        xcfg = None
    if not (math.isfinite(float(args.keep)) and 0 < float(args.keep) <= 1):  # make_mask's words, before the estimate
        raise CLIError(f"--keep: keep fraction must be in (0, 1], got {args.keep}")
    kept_estimate = math.ceil(float(args.keep) * pixels)
    check_memory(args, (h, w, c), xcfg is not None and args.keep < 1, kept_estimate)
    steps = show_progress(None, pixels, more_than=STEP_LINE_PIXELS)
    _step(steps, f"reading {args.image.name} ({h}×{w}×{c})")
    data = read_image(args.image, bayer=args.bayer)
    original = data.pixels
    if original.shape[2] == 3 and args.output.suffix.lower() == ".pgm":
        raise CLIError(f"-o {args.output}: PGM is grey only and {args.image.name} is RGB; write .ppm, .png or .tif")
    valid_path = None if data.valid.all() else side_path(args.output, True, "valid")
    if valid_path is not None:
        check_outputs(args, (("the valid map", valid_path),))
    t_read = time.perf_counter() - t0
    sampled = make_mask(args.seed, original.shape[:2], args.keep, args.pattern)
    # a sampled pixel the file declares missing (NaN/inf, transparent, a product's no-data, --margin) carries
    # nothing: it is not received. Guessed dark margins of a plain image stay samples (dark content is content);
    # the metrics still leave them out.
    has_data = data.extra.get("declared_valid", data.valid)
    known = sampled & has_data
    sampled_no_data = int(np.count_nonzero(sampled)) - int(np.count_nonzero(known))
    if not sampled.any():  # a tiny image at a small --keep: the mask kept no pixel at all
        raise CLIError(
            f"{args.image}: the mask sampled none of its {sampled.size} pixel(s) at --keep {args.keep:g} (seed "
            f"{args.seed}): nothing to rebuild from (raise --keep or change --seed)"
        )
    if not known.any():
        raise CLIError(
            f"{args.image}: none of the {int(np.count_nonzero(sampled))} sampled pixels holds data (no-data or "
            "non-finite): nothing to rebuild from (raise --keep or change --seed)"
        )
    if known.all() and xcfg is not None:  # nothing to fill, so nothing to cross-check (4 CAE passes saved)
        xcfg = None
    predictor, model_name = None, None
    adapt_s = 0.0
    adapt_report: dict[str, object] = {}
    if args.method == "cae":
        from edgeae.predictor import load_predictor
        from edgeae.zoo import UnknownModelError

        model_name = args.model or DEFAULT_MODELS[original.shape[2]]
        try:
            predictor = load_predictor(model_name, threads=args.threads)
        except UnknownModelError as exc:
            raise CLIError(str(exc)) from None
        if args.adapt:
            from edgeae.adapt import AdaptationError, adapt_predictor

            try:
                cfg = AdaptConfig(steps=args.adapt, seed=args.seed)
                t_adapt = time.perf_counter()
                target = original
                want = predictor.metadata.channels
                if args.convert_channels and original.shape[2] != want:  # adapt on what the model will be given
                    from edgeae.imageio import convert_channels

                    target = convert_channels(original, want)
                tuned = adapt_predictor(predictor, target, known, cfg, report=adapt_report)
                # the model as shipped comes back when there is nothing to adapt to, or when no adapted state
                # beat it on the held-out samples (it logged why)
                adapt_s = time.perf_counter() - t_adapt if adapt_report else 0.0
                predictor = tuned
            except (AdaptationError, ValueError) as exc:
                raise CLIError(f"--adapt: {exc}") from None
    opts = {
        "tile": args.tile, "overlap": args.overlap, "batch": DEFAULT_BATCH if args.batch is None else args.batch,
        "convert_channels": args.convert_channels,
    }  # fmt: skip
    xreport: dict[str, Any] = {}
    _step(steps, f"filling {pixels / 1e6:.1f} Mpx with {args.method}{' and the cross-check' if xcfg else ''}")
    t_fill = time.perf_counter()
    if xcfg is not None:
        from edgeae.crosscheck import cross_checked_fill

        filled = cross_checked_fill(original, known, predictor, xcfg, report=xreport, **opts)
    else:
        filled = reconstruct(original, known, args.method, predictor=predictor, **opts)
    fill_s = time.perf_counter() - t_fill
    # once, over the pixels with data where the frame has no-data margins or NaN samples: their "truth" is a fill
    # value, not the scene
    _step(steps, "computing the metrics")
    m = compare(original, filled, known, valid=None if valid_path is None else data.valid)
    result = Reconstruction(args.method, filled, fill_s, m)
    rebuilt = result.image
    if not has_data.all():  # declared no-data stays no-data: 0 in every output, the valid map beside them
        rebuilt = np.where(has_data[..., None], rebuilt, np.float32(0.0))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    georef = data.extra.get("georef")
    lossy: list[str] = []
    _step(steps, f"writing {args.output.name}")
    stale, unsure = stale_valid_map(args, valid_path)
    masked_path = side_path(args.output, args.save_masked, "masked")
    error_path = side_path(args.output, args.save_error_map, "error")
    replaced = _earlier_outputs(args, masked_path, error_path)  # before the writes: what an earlier run left
    notes: list[str] = []  # printed once every file is written (a closed stdout cannot cost a file)
    written = write_output(args.output, data, rebuilt, georef, lossy)
    if stale is not None:
        stale.unlink(missing_ok=True)
        notes.append(
            f"note: removed {stale}: the valid map of the {args.output.name} this run replaced (no no-data now)"
        )
    elif unsure is not None:
        notes.append(
            f"note: kept {unsure}: it may be the valid map of another {args.output.stem}.* image beside it (or of "
            f"the {args.output.name} this run replaced, which has no no-data now: then remove it)"
        )
    if masked_path:
        from edgeae.masks import apply_mask

        write_output(masked_path, data, apply_mask(original, known), georef, lossy)
    if error_path:
        from edgeae.imageio import write_image
        from edgeae.report import error_map

        write_image(error_path, error_map(original, rebuilt))
        keep_georef(error_path, georef)
    if valid_path is not None:
        from edgeae.imageio import write_image

        write_image(valid_path, data.valid)
        keep_georef(valid_path, georef)
    if georef and not written["georef"]:
        notes.append(
            f"note: {args.image.name} is map-projected; write -o *.tif to keep its map coordinates in the output"
        )
    for text in lossy:
        notes.append(
            f"note: {text}; the metrics are of the rebuilt image before encoding (write .png or .tif for exact samples)"
        )
    scope = ""
    if valid_path is not None:
        scope = f" over the {m['valid_fraction']:.1%} of the pixels with data (left out: {_left_out(data, original)})"
    chosen = int(adapt_report.get("chosen_step", 0))  # type: ignore[call-overload]
    adapted = ""
    if adapt_report and chosen:
        adapted = f" adapted to the frame in {chosen} of {args.adapt} steps ({adapt_s:.1f} s),"
    elif adapt_report:
        adapted = f" as shipped (adapting for {args.adapt} steps did not help the held-out samples, {adapt_s:.1f} s),"
    if xreport and xcfg is not None and xreport.get("skipped"):
        adapted += f" alone (the cross-check was skipped: only {xreport['held']} received samples to set aside),"
    elif xreport and xcfg is not None:
        adapted += (
            f" mixed with {xcfg.method} by the held-out cross-check (CAE weight {xreport['alpha_mean']:.2f} on "
            f"average, {xreport['cae_share']:.0%} of the pixels mostly CAE),"
        )
    left_out = f" ({sampled_no_data} sampled pixels hold no data: not used)" if sampled_no_data else ""
    if m.get("valid_fraction") == 0.0:  # every pixel no-data: there is nothing to measure against
        measured = f"no pixel with data: metrics not computed ({_left_out(data, original)})"
    else:
        measured = (
            f"PSNR{scope} {m['psnr']:.2f} dB, SSIM {_ssim_text(m['ssim'], original.shape)}, MAE {m['mae']:.4f}, "
            f"error variance {m['error_variance']:.3g}"
        )
    summary = (
        f"{args.image.name}: {args.method}{adapted} from {known.mean():.2%} of {known.size} pixels{left_out} -> "
        f"{measured} ({result.seconds:.2f} s); wrote {args.output}"
        + (f" and its valid map {valid_path}" if valid_path is not None else "")
    )
    if args.metrics_json:
        record = {
            **finite_or_none(m),
            "keep": args.keep,
            "method": args.method,
            "seed": args.seed,
            "pattern": args.pattern,
            "prng_version": PRNG_VERSION,
            "sampled": int(np.count_nonzero(sampled)),
            "received": int(np.count_nonzero(known)),
            "sampled_no_data": sampled_no_data,
            "metrics_note": "no pixel with data: metrics not computed" if m.get("valid_fraction") == 0.0 else None,
            "model": None if predictor is None else str(model_name),
            "adapt_steps": chosen,
            "adapt_check": [[int(st), float(e)] for st, e in adapt_report.get("check", [])],  # type: ignore[attr-defined]
            "cross_check": {"method": xcfg.method, **xreport} if xcfg is not None else None,
            "tiling": cae_tiling(predictor, args.tile, opts) if predictor is not None else None,
            "image": str(args.image),
            "shape": list(original.shape),
            "bit_depth": data.bit_depth,
            "raw_dtype": data.raw_dtype,
            "scale": data.scale,
            "scaling": data.extra.get("scaling"),
            "output": str(args.output),
            "output_samples": written,
            "metrics_of": "the rebuilt image as float samples, before quantising and encoding",
            "masked": str(masked_path) if masked_path else None,
            "error_map": str(error_path) if error_path else None,
            "valid_map": str(valid_path) if valid_path else None,
            "timing": {
                "read_s": round(t_read, 4),
                "adapt_s": round(adapt_s, 4),
                "reconstruct_s": round(result.seconds, 4),
                "total_s": round(time.perf_counter() - t0, 4),
            },
        }
        args.metrics_json.parent.mkdir(parents=True, exist_ok=True)
        args.metrics_json.write_text(json.dumps(record, indent=2) + "\n")
    for line in notes:
        print(line)
    if replaced:
        print(replaced, file=sys.stderr)
    print(summary)
    return 0


def _earlier_outputs(args: argparse.Namespace, masked: Path | None, error: Path | None) -> str:
    """What this run replaces of an earlier one (-o, --metrics-json), and the extras an earlier run left beside
    -o under their default names (``OUTPUT.masked.png``, ``OUTPUT.error.png``) that this run does not write: kept,
    but named (they are not of this run's image). "" when there is none."""
    gone = [str(p) for p in (args.output, args.metrics_json) if p is not None and _is_file(Path(p))]
    text = f"replaced {' and '.join(gone)} of an earlier run" if gone else ""
    left = [
        f"{old} ({flag})"
        for flag, mine, old in (
            ("--save-masked", masked, side_path(args.output, True, "masked")),
            ("--save-error-map", error, side_path(args.output, True, "error")),
        )
        if old is not None and _is_file(old) and (mine is None or mine.resolve() != old.resolve())
    ]
    if left:
        text += (
            "; " if text else ""
        ) + f"kept {' and '.join(left)}: left by an earlier run (this run does not write it)"
    return text


def _is_file(p: Path) -> bool:
    """``p.is_file()``, False for a name its folder cannot hold (a side file named after a long -o)."""
    try:
        return p.is_file()
    except OSError:
        return False
