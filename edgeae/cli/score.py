"""``edgeae score``: anomaly scores of every patch of one or more images (any size, streamed) to a CSV.

The input checks are in :mod:`edgeae.cli.score_checks`, what it writes and prints in
:mod:`edgeae.cli.score_outputs`."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from edgeae._headers import ImageReadError
from edgeae._optional import MissingDependencyError, source_ref
from edgeae.cli import CLIError, add_views_argument, err_line, positive_int, seed_arg
from edgeae.cli.score_checks import (
    DEFAULT_MODELS,
    _check_local_z_size,
    _check_set_size,
    _default_model,
    _groups,
    _no_valid_pixel,
    _warn_channels,
)
from edgeae.cli.score_outputs import MAP_SUFFIXES as MAP_SUFFIXES
from edgeae.cli.score_outputs import SCORE_MEANING as SCORE_MEANING
from edgeae.cli.score_outputs import (
    SHOW_TOP,
    _below_min_valid,
    _check_outputs,
    _print_top,
    _remove_earlier,
    _replace_earlier,
    _write_csv,
    _write_maps,
)
from edgeae.printable import printable

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "score",
        help="anomaly scores of image patches (β-VAE or CAE) to CSV",
        description="Score every patch of the images with a β-VAE (a(x) = ||x - x_hat||^2 + λ||μ||^2) or a "
        "CAE (masked-reconstruction error). Writes file,x,y,score,valid_frac (x, y: top-left pixel) to the CSV "
        "and what the score is (model, --score, patch, stride, ...) to CSV.json beside it. Outputs that would "
        "overwrite an input or each other are refused before any work.",
    )
    p.add_argument(
        "images", nargs="+", metavar="IMAGE",
        help="image files (PNG, JPEG, TIFF/BigTIFF) or planetary products (PDS3/PDS4 label or data, ISIS3 .cub, "
        "VICAR, JP2, GeoTIFF); map-projected ones add map_x,map_y,lon,lat columns",
    )  # fmt: skip
    p.add_argument(
        "--model", default=None,
        help="zoo name, .pt checkpoint, or .onnx/.ort/.tflite artifact (default: the zoo VAE chosen by the FIRST "
        f"image: {DEFAULT_MODELS[1]} for grey images and planetary products, {DEFAULT_MODELS[3]} for colour ones "
        "and --bayer mosaics; images of other channels than the model are converted, colour to grey or grey "
        "copied to RGB, with a warning)",
    )  # fmt: skip
    p.add_argument(
        "--patch", type=int, default=None,
        help="patch size (default: a VAE's fixed input; 64 for a CAE, whose larger fixed input, e.g. 128, is "
        "reflect-padded around the patch, and for a VAE with a dynamic input)",
    )  # fmt: skip
    p.add_argument("--stride", type=int, default=None, help="patch stride (default: the patch size)")
    p.add_argument(
        "-o", "--output", "--out", dest="output", required=True, metavar="OUT.csv",
        help="output CSV (a .csv name); OUT.csv.json beside it records the model, --score, patch, stride, "
        "--min-valid, --views and the edgeae version",
    )  # fmt: skip
    p.add_argument(
        "--map",
        default=None,
        metavar="OUT.png",
        help="whole-image anomaly heat map beside the image (one image) or OUT_<stem>.png per image (numbered by "
        "place in the list given when stems repeat); a .tif name writes a float GeoTIFF aligned with the product "
        "instead (georeferenced when the product is)",
    )
    p.add_argument("--batch", "--batch-size", dest="batch", type=int, default=256, help="patches per model call")
    p.add_argument(
        "--min-valid",
        type=float,
        default=1.0,
        help="skip patches with a smaller valid (not no-data) fraction (default 1.0: only whole patches; edgeae scan "
        "and the flight missions use 0.9)",
    )
    p.add_argument(
        "--bayer",
        default=None,
        choices=["RGGB", "BGGR", "GRBG", "GBRG"],
        help="the images are raw colour-filter mosaics of this pattern: demosaic them before scoring",
    )
    p.add_argument(
        "--margin",
        default=None,
        metavar="N|T,B,L,R",
        help="fixed margin in pixels counted as no-data (dark and no-data margins are also detected)",
    )
    p.add_argument(
        "--score",
        default="a",
        choices=["a", "terms-max", "frame-z-knn", "local-z", "context-knn"],
        help="VAE score (default a): a = a(x), reconstruction error + lambda * ||mu||^2; terms-max = the larger of "
        "the two terms, each over its image's median (texture as well as brightness; the orbital flight score); "
        "frame-z-knn = distance to the 20 nearest patches of all the images given, latents scaled within each "
        "image (a ranking of a set); local-z = how far a patch stands from its neighbours within 96 px (features "
        "small against the frame); context-knn = frame-z-knn plus the distance with latents scaled over the set "
        "(crops of one product; see --group, --views). What each measured, and the limits of the set-wide ones: "
        f"{source_ref('docs/anomaly.md')}",
    )
    p.add_argument(
        "--group",
        default=None,
        metavar="REGEX",
        help="--score context-knn: images whose file names give the same match of REGEX share a product context "
        "(e.g. 'ESP_[0-9]+_[0-9]+' for HiRISE crops of several products; default: all images given are one)",
    )
    add_views_argument(
        p,
        "--score context-knn: average the latents of each patch's first N rotations and flips (8: all of "
        "them, 8x the model calls; default 1)",
    )
    p.add_argument(
        "--cae-keep", type=float, default=None, help="CAE scoring only: fraction of pixels the model sees (default 0.5)"
    )
    p.add_argument(
        "--cae-seed",
        type=seed_arg(2**64 - 1),
        default=None,
        help="CAE scoring only: mask seed (0 to 2**64 - 1; default 0)",
    )
    p.add_argument("--threads", type=positive_int, default=None, help="interpreter / torch threads")
    p.add_argument(
        "--no-progress", action="store_true", help="no progress bar (it is drawn only when stderr is a terminal)"
    )
    return p


def needs(args: argparse.Namespace) -> dict[str, str]:
    """Optional packages this command imports (checked before any work)."""
    out = {"cv2": "ground", "tifffile": "ground", "tqdm": "ground"}
    if args.map:
        out["matplotlib"] = "ground"
    return out


def run(args: argparse.Namespace) -> int:
    from edgeae.anomaly.score import make_scorer, score_file
    from edgeae.predictor import load_predictor
    from edgeae.scan.archive import link_loop

    files = [Path(f) for f in args.images]
    for f in files:
        if not f.is_file():
            what = (
                "is a folder (edgeae scan takes a folder)"
                if f.is_dir()
                else "is not a regular file (a FIFO, device or socket)"
                if f.exists()
                else f"is {loop}" if (loop := link_loop(f)) is not None  # "does not exist" until session 37
                else "does not exist"
            )  # fmt: skip
            raise CLIError(f"image {f} {what}")
    files = _once(files)
    if args.batch <= 0:
        raise CLIError(f"--batch must be positive, got {args.batch}")
    for flag, value in (("--patch", args.patch), ("--stride", args.stride)):
        if value is not None and value <= 0:
            raise CLIError(f"{flag} must be a positive number of pixels, got {value}")
    from edgeae.nodata import Margin

    try:
        margin = Margin.parse(args.margin)
    except ValueError as exc:
        raise CLIError(f"--margin: {exc}") from None
    if not 0.0 <= args.min_valid <= 1.0:  # also refuses nan
        raise CLIError(f"--min-valid must be a fraction in [0, 1], got {args.min_valid}")
    if args.cae_keep is not None and not 0.0 < args.cae_keep <= 1.0:
        raise CLIError(f"--cae-keep must be a fraction in (0, 1], got {args.cae_keep}")
    maps = _check_outputs(args, files)
    chosen_by = None
    if args.model is None:
        args.model, chosen_by = _default_model(files, args.bayer)
        log.info(
            "no --model: scoring with the zoo's %s (chosen by %s: kind, channels)",
            args.model,
            printable(chosen_by.name),
        )
    predictor = load_predictor(args.model, threads=args.threads)
    meta = predictor.metadata
    if meta.kind not in ("vae", "cae"):
        raise CLIError(f"{args.model}: a {meta.kind!r} model cannot score patches; use a vae or cae model")
    fixed = meta.input_shape[2] if meta.layout == "NCHW" else meta.input_shape[1]
    patch = args.patch or (fixed if fixed > 0 and meta.kind == "vae" else 64)
    if meta.kind == "vae" and fixed > 0 and patch != fixed:
        raise CLIError(f"{args.model} scores {fixed}x{fixed} patches; got --patch {patch}")
    if meta.kind == "cae" and fixed > 0 and patch > fixed:
        raise CLIError(f"{args.model} takes {fixed}x{fixed} inputs; --patch must be at most {fixed}")
    if meta.kind == "cae" and patch % 16:
        raise CLIError(f"CAE scoring needs a patch that is a multiple of 16, got {patch}")
    stride = args.stride or patch
    if stride <= 0:
        raise CLIError(f"--stride must be positive, got {stride}")
    if args.score != "a" and meta.kind != "vae":
        raise CLIError(f"--score {args.score} needs a VAE (its score terms or latents); {args.model} is a {meta.kind}")
    given = [o for o, v in (("--cae-keep", args.cae_keep), ("--cae-seed", args.cae_seed)) if v is not None]
    if given and meta.kind != "cae":  # they shape the CAE's masked input only: silently ignored with a VAE before
        raise CLIError(f"{' and '.join(given)} set the CAE's masked input; {args.model} is a {meta.kind}")
    # the options default to None (to tell a given one apart, above); from here on they are the effective values
    args.cae_keep = 0.5 if args.cae_keep is None else args.cae_keep
    args.cae_seed = 0 if args.cae_seed is None else args.cae_seed
    if args.views > 1 and args.score != "context-knn":
        raise CLIError(f"--views {args.views} averages latents for --score context-knn only (got --score {args.score})")
    if args.group is not None and args.score != "context-knn":  # before the names are matched against it
        raise CLIError(f"--group sets the product context of --score context-knn only (got --score {args.score})")
    groups = _groups(files, args.group) if args.group is not None else None
    _warn_channels(files, meta.channels, args, chosen_by)
    knn = args.score in ("frame-z-knn", "context-knn")
    if knn:  # every image's latents are held until the set is ranked: bounded first
        _check_set_size(files, meta, patch, stride, args.views, args.score)
    latents = knn or args.score == "local-z"
    scorer = make_scorer(
        predictor,
        cae_keep=args.cae_keep,
        cae_seed=args.cae_seed,
        keep_latents=latents,
        views=args.views,
    )
    results = []
    unread: list[str] = []
    needed: list[MissingDependencyError] = []  # of the files in unread, those a package not installed here stopped
    kept: list[int] = []
    bars = _show_progress(args)
    many = len(files) > 1 and bars  # one bar over the images, each image's bar cleared when done
    over: Any = None
    if many:
        from tqdm import tqdm

        over = tqdm(total=len(files), desc="images", unit="image")
    for i, f in enumerate(files):
        if over is not None and i:
            over.update(1)
        if args.score == "local-z":  # every patch's latents are held until the image is scored: bounded first
            _check_local_z_size(f, meta, patch, stride)
        try:
            r = score_file(
                f,
                scorer,
                patch,
                stride,
                min_valid=args.min_valid,
                bayer=args.bayer,
                margin=margin,
                batch=args.batch,
                progress=bars,
                leave=not many,
            )
        except (ImageReadError, MissingDependencyError) as exc:  # one bad file does not lose the others' scores, nor
            if len(files) == 1:  # one a package stops (an LZW TIFF's imagecodecs: exit 2 and no CSV, early in s39)
                raise
            err_line(f"skipped: {printable(str(exc))}")  # a stderr that fails (a full disk) loses no result (s37)
            unread.append(str(f))
            needed += [exc] if isinstance(exc, MissingDependencyError) else []
            continue
        kept.append(i)
        if not len(r):
            from edgeae.imageio import image_shape

            h, w, _ = image_shape(f)
            kind = None
            if min(h, w) >= patch:
                kind = _no_valid_pixel(f, patch, stride, scorer.channels, args.bayer, margin)
            if kind == "declared":  # "lower --min-valid" until session 37
                from edgeae.scan.report_text import NO_VALID_PIXEL

                log.warning("%s: no valid pixel (%s): nothing to score", printable(f.name), NO_VALID_PIXEL)
            elif kind == "dark":  # said "no valid pixel ... nothing to score" in session 37 (review r8 #1)
                from edgeae.scan.report_text import DARK_THROUGHOUT

                log.warning(
                    "%s: no patch holds a valid pixel (%s): --min-valid 0 scores it anyway",
                    printable(f.name),
                    DARK_THROUGHOUT,
                )
            elif min(h, w) >= patch:  # an image smaller than a patch: score_file has said so, with the min_valid
                why = ("a blank or dark image (12-bit data stored as 16-bit without an sBIT chunk reads dark), mostly "
                       "no-data, or a wide --margin")  # fmt: skip
                log.warning(
                    "%s: no patch has --min-valid %g of valid pixels, so none is scored: %s; lower --min-valid to "
                    "score it anyway",
                    printable(f.name),
                    args.min_valid,
                    why,
                )
        if args.score == "terms-max" and len(r.score):
            from edgeae.anomaly.terms import frame_terms_max

            r.score = frame_terms_max(r.extras["rec"], r.extras["mu2"])
        if args.score == "local-z" and len(r.score):
            from edgeae.anomaly.context import local_novelty

            try:
                r.score = local_novelty(r.extras["mu"], r.extras["rec"], r.xy)
            except ValueError as exc:
                raise CLIError(f"--score local-z on {f}: {exc}") from None
            r.extras.pop("mu", None)  # (N, D) per image: not kept once its scores are known
        results.append(r)
    if over is not None:
        over.update(1)
        over.close()
    why = f"; {len(needed)} of them for a package not installed here: {needed[0]}" if needed else ""
    if not results:
        if len(needed) == len(unread):  # the install's fault only: its one line, status 2, as for one image
            raise needed[0]
        raise CLIError(f"no image could be read ({len(unread)} skipped, reasons above){why}")
    if unread:  # the set is what could be read; each kept image keeps the map name the whole list gave it
        files = [files[i] for i in kept]
        groups = None if groups is None else [groups[i] for i in kept]
        maps = [maps[i] for i in kept] if maps else []
    if knn:  # a ranking of the whole set: every image's latents are needed before any score is known
        from edgeae.anomaly.baselines import LATENT_MAD_FLOOR, context_knn, frame_z_knn

        scored = [r for r in results if len(r.score)]
        if sum(len(r.score) for r in scored) < 2:
            raise CLIError(f"--score {args.score} ranks patches against each other: it needs at least 2 valid patches")
        try:
            if args.score == "context-knn":
                labels = None if groups is None else [groups[i] for i, r in enumerate(results) if len(r.score)]
                ranked = context_knn([r.extras.pop("mu_views", r.extras["mu"]) for r in scored], labels)
            else:
                ranked = frame_z_knn([r.extras["mu"] for r in scored], floor=LATENT_MAD_FLOOR)
        except ValueError as exc:
            raise CLIError(f"--score {args.score}: {exc}") from None
        for r, s in zip(scored, ranked, strict=True):
            r.score = s
    kind = "cae" if meta.kind == "cae" else args.score
    threshold = meta.score.get("threshold") if meta.kind == "vae" and args.score == "a" else None
    stale, replaced = _replace_earlier(args, maps, files)
    _write_maps(files, results, maps, kind, threshold)
    n = _write_csv(args, results, unread, meta, kind, patch, stride, threshold, maps)
    _remove_earlier(stale, replaced)  # only now: a run that failed above leaves the earlier one whole
    below = sum(_below_min_valid(results, patch, stride))
    # every console line through printable: a name that is not UTF-8 as \xfe (a strict stdout failed on it, status 2,
    # after the CSV was written; stderr showed \udcfe)
    print(
        printable(
            f"{n} patches from {len(files)} image(s) scored with {meta.kind} {args.model} "
            f"(patch {patch}, stride {stride}) -> {args.output}"
            + (f"; {below} patch(es) below --min-valid {args.min_valid:g} not scored" if below else "")
        )
    )
    if maps:
        print(printable(f"maps -> {maps[0]}" + (f" ... {maps[-1].name} ({len(maps)} files)" if len(maps) > 1 else "")))
    _print_top(results, SHOW_TOP)
    if unread:
        err_line(printable(f"{len(unread)} image(s) could not be read and were skipped: {', '.join(unread)}{why}"))
        return 1
    return 0


def _once(files: list[Path]) -> list[Path]:
    """Each file once, under the name it was first given, in the order given, with a warning counting the repeats: a
    file named twice (overlapping shell globs, a file and a link to it) was scored twice, its rows written twice, and
    with a set-relative score (frame-z-knn, context-knn) its copy was each of its patches' nearest neighbour, changing
    every image's scores (audit s36 a2 #3; ``edgeae scan`` de-duplicates the same way)."""
    from edgeae.printable import printable

    seen: dict[Path, Path] = {}  # the file (resolved) -> the name it was first given
    repeats: list[Path] = []
    for f in files:
        first = seen.setdefault(f.resolve(), f)
        if first is not f:
            repeats.append(f)
    if repeats:
        f = repeats[0]
        log.warning(
            "%d image(s) given again (the same name, or another name of a file given before) are scored once (e.g. %s, "
            "scored as %s)",
            len(repeats), printable(str(f)), printable(str(seen[f.resolve()])),
        )  # fmt: skip
    return list(seen.values())


def _show_progress(args: argparse.Namespace) -> bool:
    """The bars redraw their lines with carriage returns: on a terminal only, not into a log file (as ``scan``)."""
    try:
        return not args.no_progress and sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stderr
        return False
