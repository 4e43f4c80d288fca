"""``edgeae reconstruct``: sample an image with a seeded mask, rebuild it, write the result and its metrics."""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

from edgeae.adapt import AdaptConfig
from edgeae.cli import positive_int
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
    p.add_argument("--tile", type=int, default=None, help="CAE tile size when the model does not fix it (default 128)")
    p.add_argument("--overlap", type=int, help="CAE tile overlap in pixels (default tile/4: 32)")
    p.add_argument("--batch", type=int, default=32, help="CAE tiles per batch (default 32)")
    p.add_argument("--threads", type=positive_int, help="inference threads (default: library default)")
    p.add_argument(
        "--bayer",
        choices=["RGGB", "BGGR", "GRBG", "GBRG"],
        help="the image is a raw colour-filter mosaic of this pattern: demosaic it (OpenCV) first",
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


def _side_path(output: Path, value: Any, suffix: str) -> Path | None:
    if value is None:
        return None
    if value is True:
        return output.with_name(f"{output.stem}.{suffix}.png")
    return Path(value)


def finite_or_none(d: dict[str, Any]) -> dict[str, Any]:
    """JSON cannot hold inf/NaN: replace them by None (a perfect reconstruction has PSNR = inf)."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def _check_outputs(args: argparse.Namespace) -> None:
    """Every file the command will write: a format it can write, none the input image, no two the same."""
    from edgeae.cli import CLIError, check_writable
    from edgeae.imageio import WRITE_EXTENSIONS

    images = [p for p in (args.output, _side_path(args.output, args.save_masked, "masked"),
                          _side_path(args.output, args.save_error_map, "error")) if p is not None]  # fmt: skip
    for p in images:
        if p.suffix.lower() not in WRITE_EXTENSIONS:
            raise CLIError(
                f"{p}: cannot write {p.suffix or 'no extension'!r}; use one of {', '.join(WRITE_EXTENSIONS)}"
            )
    every = [*images, *([Path(args.metrics_json)] if args.metrics_json else [])]
    where = [p.resolve() for p in every]
    if args.image.resolve() in where:
        raise CLIError(f"{every[where.index(args.image.resolve())]} is the input image: name another output file")
    if len(set(where)) < len(where):
        raise CLIError(f"two outputs name the same file ({', '.join(str(p) for p in every)}): give each its own")
    if args.metrics_json and Path(args.metrics_json).is_dir():
        raise CLIError(f"--metrics-json {args.metrics_json} is a folder: name the JSON file to write")
    for p in every:
        check_writable(p, "--metrics-json" if p.suffix.lower() == ".json" else "-o")


def _ssim_text(value: float) -> str:
    return f"{value:.4f}" if math.isfinite(value) else "n/a (image under 3 px high or wide)"


def output_depth(source_bits: int, path: Path) -> int:
    """Bits per sample to write a reconstruction of a ``source_bits`` image with: 16 for a source deeper than 8
    bits (PNG, TIFF, PGM/PPM), else 8; JPEG holds 8 only (a note says the samples are cut to 8 bits)."""
    if source_bits <= 8:
        return 8
    if path.suffix.lower() in (".jpg", ".jpeg"):
        print(
            f"note: {path.name}: JPEG holds 8 bits per sample; the {source_bits}-bit image is written at 8 "
            "(use .png or .tif)"
        )
        return 8
    return 16


def needs(args: argparse.Namespace) -> dict[str, str]:
    """Optional packages this command imports (checked before any work)."""
    return {"cv2": "ground", "scipy": "ground", "skimage": "ground", "tifffile": "ground"}


def _keep_georef(path: Path, georef: Any) -> bool:
    """Stamp a map-projected product's CRS and transform on a TIFF output (other formats cannot hold them)."""
    if not georef or path.suffix.lower() not in (".tif", ".tiff"):
        return False
    from edgeae.archive.geo import stamp_georef

    return stamp_georef(path, georef)


def run(args: argparse.Namespace) -> int:
    from edgeae.cli import CLIError
    from edgeae.imageio import read_image, write_image
    from edgeae.masks import PRNG_VERSION, make_mask
    from edgeae.reconstruct import METHODS, run_method

    if args.method not in METHODS:
        raise CLIError(f"unknown --method {args.method!r}; choose one of {', '.join(METHODS)}")
    if args.cross_check is not None and args.no_cross_check:
        raise CLIError("--cross-check and --no-cross-check contradict each other: give one")
    xcfg = None
    if args.method == "cae" and not args.no_cross_check:
        from edgeae.crosscheck import CrossCheckConfig, CrossCheckError

        try:
            xcfg = CrossCheckConfig(method=args.cross_check or "linear", seed=args.seed)
        except CrossCheckError as exc:
            raise CLIError(f"--cross-check: {exc}") from None
    _check_outputs(args)  # before minutes of filling, not after
    t0 = time.perf_counter()
    data = read_image(args.image, bayer=args.bayer)
    original = data.pixels
    if original.shape[2] == 3 and args.output.suffix.lower() == ".pgm":
        raise CLIError(f"-o {args.output}: PGM is grey only and {args.image.name} is RGB; write .ppm, .png or .tif")
    t_read = time.perf_counter() - t0
    pixels = original.shape[0] * original.shape[1]
    if xcfg is not None and args.cross_check is None and pixels > AUTO_CROSS_CHECK_MAX_PIXELS:
        print(
            f"note: {pixels / 1e6:.1f} Mpx is above the {AUTO_CROSS_CHECK_MAX_PIXELS / 1e6:.0f} Mpx the cross-check "
            "runs on by default: the CAE alone (give --cross-check to mix it with linear interpolation anyway)"
        )
        xcfg = None
    known = make_mask(args.seed, original.shape[:2], args.keep, args.pattern)
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
    elif args.model:
        print(f"note: --model is ignored by --method {args.method}")
    for flag, value in (("--adapt", args.adapt), ("--cross-check", args.cross_check)):
        if value and args.method != "cae":
            print(f"note: {flag} is ignored by --method {args.method}")
    opts = {"tile": args.tile, "overlap": args.overlap, "batch": args.batch, "convert_channels": args.convert_channels}
    xreport: dict[str, Any] = {}
    if xcfg is not None:
        from edgeae.crosscheck import cross_checked_fill
        from edgeae.metrics import compare
        from edgeae.reconstruct import Reconstruction

        t_fill = time.perf_counter()
        filled = cross_checked_fill(original, known, predictor, xcfg, report=xreport, **opts)
        result = Reconstruction("cae", filled, time.perf_counter() - t_fill, compare(original, filled, known))
    else:
        result = run_method(original, known, args.method, predictor, **opts)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    depth = output_depth(data.bit_depth, args.output)
    write_image(args.output, result.image, bit_depth=depth)
    georef = data.extra.get("georef")
    geo_written = _keep_georef(args.output, georef)
    masked_path = _side_path(args.output, args.save_masked, "masked")
    if masked_path:
        from edgeae.masks import apply_mask

        write_image(masked_path, apply_mask(original, known), bit_depth=output_depth(data.bit_depth, masked_path))
        _keep_georef(masked_path, georef)
    error_path = _side_path(args.output, args.save_error_map, "error")
    if error_path:
        from edgeae.report import error_map

        write_image(error_path, error_map(original, result.image))
        _keep_georef(error_path, georef)
    if georef and not geo_written:
        print(f"note: {args.image.name} is map-projected; write -o *.tif to keep its map coordinates in the output")
    m = result.metrics
    scope = ""
    if not data.valid.all():  # no-data margins, NaN samples: their "truth" is a fill value, not the scene
        from edgeae.metrics import compare

        m = compare(original, result.image, known, valid=data.valid)
        scope = f" over the {m['valid_fraction']:.1%} of the pixels with data (no-data and non-finite left out)"
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
    summary = (
        f"{args.image.name}: {args.method}{adapted} from {known.mean():.2%} of {known.size} pixels -> "
        f"PSNR{scope} {m['psnr']:.2f} dB, SSIM {_ssim_text(m['ssim'])}, MAE {m['mae']:.4f}, "
        f"error variance {m['error_variance']:.3g} ({result.seconds:.2f} s); wrote {args.output}"
    )
    print(summary)
    if args.metrics_json:
        record = {
            **finite_or_none(m),
            "keep": args.keep,
            "method": args.method,
            "seed": args.seed,
            "pattern": args.pattern,
            "prng_version": PRNG_VERSION,
            "model": None if predictor is None else str(model_name),
            "adapt_steps": chosen,
            "adapt_check": [[int(st), float(e)] for st, e in adapt_report.get("check", [])],  # type: ignore[attr-defined]
            "cross_check": {"method": xcfg.method, **xreport} if xcfg is not None else None,
            "image": str(args.image),
            "shape": list(original.shape),
            "bit_depth": data.bit_depth,
            "output": str(args.output),
            "masked": str(masked_path) if masked_path else None,
            "error_map": str(error_path) if error_path else None,
            "timing": {
                "read_s": round(t_read, 4),
                "adapt_s": round(adapt_s, 4),
                "reconstruct_s": round(result.seconds, 4),
                "total_s": round(time.perf_counter() - t0, 4),
            },
        }
        args.metrics_json.parent.mkdir(parents=True, exist_ok=True)
        args.metrics_json.write_text(json.dumps(record, indent=2) + "\n")
    return 0
