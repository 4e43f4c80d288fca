"""``edgeae reconstruct``: sample an image with a seeded mask, rebuild it, write the result and its metrics.

The command's flags live in :mod:`edgeae.cli.reconstruct_flags`, what it writes (and checks before the fill) in
:mod:`edgeae.cli.reconstruct_outputs`, its memory estimate in :mod:`edgeae.cli.reconstruct_memory`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeae.adapt import AdaptConfig
from edgeae.cli.reconstruct_flags import AUTO_CROSS_CHECK_MAX_PIXELS as AUTO_CROSS_CHECK_MAX_PIXELS
from edgeae.cli.reconstruct_flags import ignored_options
from edgeae.cli.reconstruct_flags import register as register
from edgeae.cli.reconstruct_memory import check_memory
from edgeae.cli.reconstruct_outputs import (
    cae_tiling,
    check_outputs,
    earlier_outputs,
    finite_or_none,
    keep_georef,
    side_path,
    stale_valid_map,
    write_output,
)
from edgeae.metadata import run_provenance
from edgeae.reconstruct import DEFAULT_BATCH, DEFAULT_MODELS

if TYPE_CHECKING:
    pass


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
    from edgeae.received import declared_valid, left_out

    declared = declared_valid(data)
    why = left_out(data.valid, declared)
    if (declared & ~data.valid).any() and data.raw_dtype == "uint16" and data.bit_depth == 16:
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


def run(args: argparse.Namespace) -> int:
    from edgeae.cli import CLIError, DataError
    from edgeae.imageio import read_image
    from edgeae.masks import PRNG_VERSION, make_mask
    from edgeae.metrics import compare
    from edgeae.received import NoData, NothingReceived, declared_valid, received_pixels
    from edgeae.reconstruct import METHODS, Reconstruction, reconstruct, show_progress

    if args.method not in METHODS:
        raise CLIError(f"unknown --method {args.method!r}; choose one of {', '.join(METHODS)}")
    if args.cross_check is not None and args.no_cross_check:
        raise CLIError("--cross-check and --no-cross-check contradict each other: give one")
    if args.tile is not None and args.overlap is not None and args.overlap >= args.tile and args.method == "cae":
        raise CLIError(f"--overlap {args.overlap} must be smaller than --tile {args.tile}")
    ignored = ignored_options(args)
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
    has_data = declared_valid(data)
    try:  # a frame with no pixel of data, a mask that sampled none, or no sampled pixel with data: one line each
        known = received_pixels(sampled, has_data, str(args.image), args.keep, args.seed)
    except NoData as exc:  # nothing usable in the file, no option can help: a data error (README), status 1
        raise DataError(str(exc)) from None
    except NothingReceived as exc:  # raise --keep or change --seed: a usage error
        raise CLIError(str(exc)) from None
    sampled_no_data = int(np.count_nonzero(sampled)) - int(np.count_nonzero(known))
    if known.all() and xcfg is not None:  # nothing to fill, so nothing to cross-check (4 CAE passes saved)
        xcfg = None
    predictor, model_name, model_source = None, None, None
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
        model_source = predictor.source  # the file (an adapted model's source names the file and its steps)
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
    replaced = earlier_outputs(args, masked_path, error_path)  # before the writes: what an earlier run left
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
            **run_provenance(model_source, args.threads),
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
