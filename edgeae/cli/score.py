"""``edgeae score``: anomaly scores of every patch of one or more images (any size, streamed) to a CSV."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from edgeae._headers import ImageReadError
from edgeae.cli import CLIError, add_views_argument, check_writable, positive_int, seed_arg

log = logging.getLogger(__name__)
DEFAULT_MODELS = {1: "orbital-gray-vae", 3: "rover-rgb-vae"}  # by the first image's channels (--model not given)
# what the CSV's score column is, per --score (a CAE scores with its masked error): the maps and the settings JSON
SCORE_MEANING = {
    "a": "a(x) = ||x - x_hat||^2 + λ||μ||^2",
    "terms-max": "terms-max: the larger term over its image median",
    "frame-z-knn": "frame-z-knn: kNN distance of per-image z latents",
    "local-z": "local-z: novelty against the patches around it",
    "context-knn": "context-knn: kNN distance in image and product",
    "cae": "CAE masked-reconstruction error",
}


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
    p.add_argument("--patch", type=int, default=None, help="patch size (default: the model's input, else 64)")
    p.add_argument("--stride", type=int, default=None, help="patch stride (default: the patch size)")
    p.add_argument(
        "-o", "--output", required=True, metavar="OUT.csv",
        help="output CSV (a .csv name); OUT.csv.json beside it records the model, --score, patch, stride, "
        "--min-valid, --views and the edgeae version",
    )  # fmt: skip
    p.add_argument(
        "--map",
        default=None,
        metavar="OUT.png",
        help="whole-image anomaly heat map (one image) or OUT_<stem>.png per image (numbered by place in the list "
        "given when stems repeat); a .tif name writes a float GeoTIFF aligned with the product instead "
        "(georeferenced when the product is)",
    )
    p.add_argument("--batch", type=int, default=256, help="patches per model call")
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
        help="VAE score: a(x), or terms-max = max(rec / median, ||mu||^2 / median) over each image's patches "
        "(finds unusual texture as well as brightness), or frame-z-knn = each latent dimension robust-z scaled "
        "within its image, then the mean distance to the 20 nearest patches of all the images given (a ground "
        "ranking of a set of images; HiRISE craters 2.08x random AP vs 1.08x for patch contrast), or local-z = how "
        "far each patch's latents and reconstruction error stand from those of the patches within 96 px (or 2 "
        "strides) around it, each image on its own (a ground ranking for features small against the frame; "
        "docs/anomaly.md), or context-knn = the frame-z-knn distance plus the same distance with the latents "
        "scaled over all the images given (give the crops of one product together: a crater that fills its crop "
        "still stands out in the product; with --views 8, HiRISE crater vs other ROC AUC 0.804 on the dev split, "
        "docs/anomaly.md; a set of over 100,000 patches, up to 500,000, is measured against a seeded sample of 100,000 "
        "of them)",
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
    p.add_argument("--cae-keep", type=float, default=0.5, help="CAE scoring: fraction of pixels the model sees")
    p.add_argument("--cae-seed", type=seed_arg(2**64 - 1), default=0, help="CAE scoring: mask seed (0 to 2**64 - 1)")
    p.add_argument("--threads", type=positive_int, default=None, help="interpreter / torch threads")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _groups(files: list[Path], pattern: str) -> list[str]:
    """Each file's product label for ``--group``: the first match of ``pattern`` in its name."""
    from edgeae.anomaly.labels import group_label

    try:
        return [group_label(f.name, pattern) for f in files]
    except ValueError as exc:
        raise CLIError(f"--{exc}" if str(exc).startswith("group ") else str(exc)) from None


MAP_SUFFIXES = (".png", ".jpg", ".jpeg", ".pdf", ".svg", ".tif", ".tiff")


def _map_paths(base: str, images: list[Path]) -> list[Path]:
    """Where each image's ``--map`` goes: BASE itself for one image, else BASE_<stem> per image, numbered when
    two images share a stem (so no map overwrites another)."""
    b = Path(base)
    b = b if b.suffix else b.with_suffix(".png")
    if len(images) == 1:
        return [b]
    stems = [f.stem for f in images]
    tags = (
        stems if len(set(stems)) == len(stems) else [f"{i:0{len(str(len(stems)))}d}_{s}" for i, s in enumerate(stems)]
    )
    return [b.with_name(f"{b.stem}_{t}{b.suffix}") for t in tags]


def needs(args: argparse.Namespace) -> dict[str, str]:
    """Optional packages this command imports (checked before any work)."""
    out = {"cv2": "ground", "tifffile": "ground", "tqdm": "ground"}
    if args.map:
        out["matplotlib"] = "ground"
    return out


def run(args: argparse.Namespace) -> int:
    from edgeae.anomaly.score import make_scorer, score_file
    from edgeae.predictor import load_predictor

    files = [Path(f) for f in args.images]
    for f in files:
        if not f.is_file():
            what = "is a folder (edgeae scan takes a folder)" if f.is_dir() else "does not exist"
            raise CLIError(f"image {f} {what}")
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
    if not 0.0 < args.cae_keep <= 1.0:
        raise CLIError(f"--cae-keep must be a fraction in (0, 1], got {args.cae_keep}")
    maps = _check_outputs(args, files)
    auto = args.model is None
    if auto:
        args.model = _default_model(files[0], args.bayer)
        log.info("no --model: scoring with the zoo's %s (chosen by %s: kind, channels)", args.model, files[0].name)
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
    if args.views > 1 and args.score != "context-knn":
        raise CLIError(f"--views {args.views} averages latents for --score context-knn only (got --score {args.score})")
    groups = _groups(files, args.group) if args.group is not None else None
    if groups is not None and args.score != "context-knn":
        raise CLIError(f"--group sets the product context of --score context-knn only (got --score {args.score})")
    _warn_channels(files, meta.channels, args, auto)
    knn = args.score in ("frame-z-knn", "context-knn")
    if knn:  # every image's latents are held until the set is ranked: bounded first
        _check_set_size(files, meta, patch, stride, args.views, args.score)
    latents = knn or args.score == "local-z"
    scorer = make_scorer(
        predictor, cae_keep=args.cae_keep, cae_seed=args.cae_seed, keep_latents=latents, views=args.views
    )
    results = []
    unread: list[str] = []
    kept: list[int] = []
    many = len(files) > 1 and not args.no_progress  # one bar over the images, each image's bar cleared when done
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
                progress=not args.no_progress,
                leave=not many,
            )
        except ImageReadError as exc:  # one bad file does not lose the others' scores
            if len(files) == 1:
                raise
            print(f"skipped: {exc}", file=sys.stderr)
            unread.append(str(f))
            continue
        kept.append(i)
        if not len(r):
            from edgeae.imageio import image_shape

            h, w, _ = image_shape(f)
            if min(h, w) < patch:
                why = f"{w}x{h} px is smaller than one {patch}-px patch (the rest of it would be reflection)"
            else:
                why = ("a blank or dark image (12-bit data stored as 16-bit without an sBIT chunk reads dark), mostly "
                       "no-data, or a wide --margin")  # fmt: skip
            log.warning(
                "%s: no patch has --min-valid %g of valid pixels, so none is scored: %s; lower --min-valid to score "
                "it anyway",
                f.name,
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
    if not results:
        raise CLIError(f"no image could be read ({len(unread)} skipped, reasons above)")
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
    _write_maps(files, results, maps, kind, threshold)
    n = _write_csv(args, results, unread, meta, kind, patch, stride)
    print(
        f"{n} patches from {len(files)} image(s) scored with {meta.kind} {args.model} "
        f"(patch {patch}, stride {stride}) -> {args.output}"
    )
    if maps:
        print(f"maps -> {maps[0]}" + (f" ... {maps[-1].name} ({len(maps)} files)" if len(maps) > 1 else ""))
    _print_top(results, SHOW_TOP)
    if unread:
        print(f"{len(unread)} image(s) could not be read and were skipped: {', '.join(unread)}", file=sys.stderr)
        return 1
    return 0


def _check_outputs(args: argparse.Namespace, files: list[Path]) -> list[Path]:
    """Refuse, before any work, a CSV that is not a .csv, a bad --map suffix, and outputs (the CSV, its settings
    JSON, every image's map) that resolve to an input or to each other; make sure their folders can be written.
    Returns the map path of each image (empty without --map)."""
    from edgeae.anomaly.score import settings_path

    out = Path(args.output)
    if out.is_dir():
        raise CLIError(f"-o {args.output} is a directory; name the CSV file to write")
    if out.suffix.lower() != ".csv":
        raise CLIError(f"-o {args.output}: the scores are CSV; name a .csv file (e.g. scores.csv)")
    if args.map and Path(args.map).suffix.lower() not in (*MAP_SUFFIXES, ""):
        raise CLIError(f"--map {args.map}: write one of {', '.join(MAP_SUFFIXES)} (.tif: a float GeoTIFF)")
    maps = _map_paths(args.map, files) if args.map else []
    outputs = [("-o", out), ("-o (its settings)", Path(settings_path(out)))] + [("--map", m) for m in maps]
    seen: dict[Path, tuple[str, Path]] = {f.resolve(): ("input image", f) for f in files}
    for flag, path in outputs:
        key = path.resolve()
        if key in seen:
            what, other = seen[key]
            raise CLIError(f"{flag} {path} is the {what} {other}: it would be overwritten; name another file")
        seen[key] = (f"{flag} output", path)
    for flag, target in [("-o", out)] + ([("--map", maps[0])] if maps else []):
        check_writable(target, flag)  # before the scoring, not after
    return maps


def _write_maps(files: list[Path], results: list[Any], maps: list[Path], kind: str, threshold: Any) -> None:
    """Each image's ``--map``: a float GeoTIFF (.tif) or a picture titled with what the score is (``kind``: the
    --score, or "cae")."""
    meaning, label = SCORE_MEANING[kind], {"a": "a(x)", "cae": "CAE masked error"}.get(kind, kind) + " score"
    for f, r, where in zip(files, results, maps, strict=False):
        if where.suffix.lower() in (".tif", ".tiff"):
            from edgeae.scan.geo import save_score_geotiff

            out = save_score_geotiff(where, r, f)
        else:
            from edgeae.anomaly.plots import save_score_map

            out = save_score_map(where, r, threshold=threshold, title=f"{f.name}\nscore: {meaning}", score_label=label)
        log.info("map -> %s", out)


def _write_csv(
    args: argparse.Namespace, results: list[Any], unread: list[str], meta: Any, kind: str, patch: int, stride: int
) -> int:
    """The scores CSV (with map columns when any image is map-projected, even one with no scored patch) and the
    settings JSON beside it; returns the rows written."""
    from edgeae.anomaly.score import write_csv, write_settings
    from edgeae.scan.geo import write_scores_csv

    n = write_scores_csv(args.output, results)
    if n is None:  # no image is map-projected
        n = write_csv(args.output, results)
    settings = {
        "model": args.model, "model_kind": meta.kind, "model_channels": meta.channels,
        "score": kind, "score_meaning": SCORE_MEANING[kind],
        "patch": patch, "stride": stride, "x_y": "top-left pixel of the patch in the full image",
        "min_valid": args.min_valid, "views": args.views, "group": args.group, "bayer": args.bayer,
        "margin": args.margin, "cae_keep": args.cae_keep if meta.kind == "cae" else None,
        "cae_seed": args.cae_seed if meta.kind == "cae" else None,
        "images": [r.file for r in results], "skipped": unread, "patches": n,
    }  # fmt: skip
    write_settings(args.output, settings)
    return n


SHOW_TOP = 5  # the highest-scoring patches printed after the summary line (all of them are in the CSV)


def _print_top(results: list[Any], k: int) -> None:
    """The ``k`` highest-scoring patches over every image (ties by image order, y, x), one line each."""
    import numpy as np

    scored = [(i, r) for i, r in enumerate(results) if len(r.score)]
    if not scored or k <= 0:
        return
    score = np.concatenate([np.asarray(r.score, np.float64) for _, r in scored])
    img = np.concatenate([np.full(len(r.score), i) for i, r in scored])
    ys = np.concatenate([np.asarray(r.y) for _, r in scored])
    xs = np.concatenate([np.asarray(r.x) for _, r in scored])
    order = np.lexsort((xs, ys, img, -score))[:k]
    names = _display_names([r.file for r in results])
    width = max(len(names[i]) for i in img[order])
    print(f"highest {len(order)} of {len(score)}:")
    for rank, j in enumerate(order, 1):
        print(f"  {rank}. {names[img[j]]:<{width}}  x={xs[j]:<6d} y={ys[j]:<6d} score {score[j]:.6g}")


def _display_names(files: list[str]) -> list[str]:
    """Each file's name for the terminal: its file name, or the path as given where two files share a name."""
    base = [Path(f).name for f in files]
    return [f if base.count(b) > 1 else b for f, b in zip(files, base, strict=True)]


def _warn_channels(files: list[Path], channels: int, args: argparse.Namespace, auto: bool) -> None:
    """Warn (one line) when some images have other channels than the model: a grey model scores colour images as
    grey (their channels averaged), a colour one grey images copied to R, G, B (headers only; ``--bayer`` mosaics
    are colour; an unreadable header is left to the reader's own error). ``auto``: the model was chosen by the first
    image (no --model)."""
    from edgeae.imageio import image_shape

    odd = []
    for f in files:
        try:
            colour = bool(args.bayer) or image_shape(f)[2] >= 3
        except Exception:
            continue
        if colour != (channels >= 3):
            odd.append(f)
    if not odd:
        return
    names = ", ".join(_display_names([str(f) for f in odd][:5])) + (", ..." if len(odd) > 5 else "")
    what, model_is, done, other = (
        ("colour (3 channels)", "grey", "scored as grey (channels averaged)", DEFAULT_MODELS[3])
        if channels < 3
        else ("grey", "colour", "scored with the grey copied to R, G, B", DEFAULT_MODELS[1])
    )
    chosen = f" (no --model: chosen by the first image, {files[0].name})" if auto else ""
    one = len(odd) == 1
    log.warning(
        "%d of %d images %s %s and the model %s is %s%s; %s %s (for %s: --model %s): %s",
        len(odd), len(files), "is" if one else "are", what, args.model, model_is, chosen, "it is" if one else
        "they are", done, "it" if one else "them", other, names,
    )  # fmt: skip


def _header_patches(path: Path, patch: int, stride: int) -> int | None:
    """How many patches ``path`` gives on the scoring grid, from its header (None when the header cannot be read
    here: the reader's own error comes later)."""
    from edgeae.imageio import image_shape
    from edgeae.tiling import tile_positions

    try:
        h, w, _ = image_shape(path)
    except Exception:
        return None
    return len(tile_positions(h, w, patch, stride))


def _check_set_size(files: list[Path], meta: Any, patch: int, stride: int, views: int, score: str) -> None:
    """CLIError before scoring when a ranking of the whole set (``frame-z-knn``, ``context-knn``) would hold more
    patches than the kNN accepts (:data:`edgeae.anomaly.baselines.KNN_MAX`: it also bounds the scaled copies of the
    latents the ranking makes) or more latents than :data:`edgeae.anomaly.context.LOCAL_Z_MAX_BYTES` (header sizes;
    an unreadable header is left to the reader's own error)."""
    from edgeae.anomaly.baselines import KNN_MAX
    from edgeae.anomaly.context import LOCAL_Z_MAX_BYTES

    latent = int((meta.architecture or {}).get("latent", 0) or 0)
    n = sum(_header_patches(f, patch, stride) or 0 for f in files)
    nbytes = n * views * latent * 4
    if n > KNN_MAX or nbytes > LOCAL_Z_MAX_BYTES:
        raise CLIError(
            f"--score {score} ranks every patch of the {len(files)} images together: they give {n:,} patches "
            f"({nbytes / 2**20:,.0f} MiB of latents with --views {views}), over the limit of {KNN_MAX:,} patches and "
            f"{LOCAL_Z_MAX_BYTES >> 20} MiB: use a larger --stride, fewer views or fewer images per run"
        )


def _check_local_z_size(path: Path, meta: Any, patch: int, stride: int) -> None:
    """CLIError before scoring when ``path``'s local-z latents would pass the limit (header size; an unreadable
    header is left to the reader's own error)."""
    from edgeae.anomaly.context import check_local_z_size, local_z_bytes

    latent = int((meta.architecture or {}).get("latent", 0) or 0)
    n = _header_patches(path, patch, stride)
    if n is None:
        return
    try:
        check_local_z_size(str(path), local_z_bytes(n, latent))
    except ValueError as exc:
        raise CLIError(str(exc)) from None


def _default_model(first: Path, bayer: str | None) -> str:
    """The zoo VAE for ``first``: the RGB rover VAE for a colour image (or a raw colour mosaic), else the grey
    orbital one (also when the header cannot be read here: the reader's own error comes later)."""
    if bayer:
        return DEFAULT_MODELS[3]
    from edgeae.archive.formats import is_archive_path
    from edgeae.imageio import image_shape

    if is_archive_path(first):  # a planetary product: the orbital model, as the help and edgeae scan say
        return DEFAULT_MODELS[1]

    try:
        channels = image_shape(first)[2]
    except Exception:
        return DEFAULT_MODELS[1]
    return DEFAULT_MODELS[3] if channels >= 3 else DEFAULT_MODELS[1]
