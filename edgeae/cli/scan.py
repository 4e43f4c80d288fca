"""``edgeae scan``: score every patch of an image archive into Parquet, resumably, locally or on Ray."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeae.cli import err_line, positive_int

DEFAULT_MODEL = "orbital-gray-vae"
DEFAULT_WORKERS = 2


def register(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "scan",
        help="scan an image archive for anomalous patches (local cores or Ray)",
        description=(
            "Walk ARCHIVE (folders, manifest files with one path a line, globs), stream each image in strips, "
            "score every patch and write OUT/results.parquet (one row per patch), OUT/images.parquet (one row "
            "per image, failures with their reason), OUT/topk/ (thumbnails and gallery.png), OUT/report.md "
            "and OUT/report.json. Rerunning the same command resumes an interrupted scan."
        ),
    )
    p.add_argument("archive", nargs="+", help="folder, manifest file (.txt/.lst/.csv), image file or glob")
    p.add_argument(
        "--model", default=DEFAULT_MODEL, help=f"zoo name, .pt checkpoint or artifact (default {DEFAULT_MODEL})"
    )
    p.add_argument("--out", "-o", required=True, help="results folder (created; reused to resume)")
    p.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local processes (default) or Ray (its progress bar moves once per finished image)",
    )
    p.add_argument(
        "--address",
        default=None,
        help="Ray cluster address HOST:PORT or auto (default: $RAY_ADDRESS, else start a local Ray instance; "
        "ray:// Ray Client addresses are not supported)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help=f"local worker processes (0 = this process; default {DEFAULT_WORKERS})",
    )
    p.add_argument("--num-cpus", type=positive_int, default=None, help="CPUs of a local Ray instance (default: all)")
    p.add_argument(
        "--actors", type=positive_int, default=None, help="Ray model actors (default: one per CPU, or per GPU)"
    )
    p.add_argument("--threads", type=positive_int, default=1, help="interpreter threads per worker/actor (default 1)")
    p.add_argument("--stride", type=positive_int, default=None, help="patch stride in pixels (default: the patch size)")
    p.add_argument("--batch-size", type=positive_int, default=64, help="patches per model call (default 64)")
    p.add_argument(
        "--min-valid",
        type=float,
        default=0.9,
        help="skip patches with a smaller valid (not no-data) fraction (default 0.9, as the flight missions; a "
        "patch part margin otherwise ranks by its black edge; a scan made before 0.9 was the default resumes "
        "with --min-valid 0.5)",
    )
    p.add_argument("--top-k", type=positive_int, default=16, help="anomalies kept as thumbnails (default 16)")
    p.add_argument(
        "--score", choices=("a", "terms-max", "local-z", "context-knn"), default="a",
        help="ranking: a = the model's score a(x) (default); terms-max = each of a VAE's two terms over its median "
        "in the image, the larger (what the orbital mission flies: it also sees unusual texture); local-z = each "
        "patch's VAE latents and error against the patches within ~96 px of it on its image (a ground ranking: a "
        "crater on plains stands out from its surroundings; holds 4(D+1) bytes a patch until the image is done); "
        "context-knn = each patch's VAE latents, scaled within its image and within its product, against those of "
        "every patch scanned (a ground ranking of the whole set, made once every image is in and again on each "
        "resume; HiRISE dev split scanned as an archive: crater vs other ROC AUC 0.814 with --views 8 and products "
        "given by --group, 0.787 with one view; keeps 4(views*D+1) bytes a patch on disk)",
    )  # fmt: skip
    p.add_argument(
        "--group", default=None, metavar="REGEX",
        help="--score context-knn: images whose names in the archive (paths below its root) give the same match of "
        "REGEX share a product context (e.g. 'ESP_[0-9]+_[0-9]+' for HiRISE crops of several products, '^[^/]+' for "
        "one folder a product; default: all images scanned are one); a name without a match is refused before "
        "scanning",
    )  # fmt: skip
    from edgeae.cli import add_views_argument

    add_views_argument(
        p,
        "--score context-knn: average the latents of each patch's first N rotations and flips (8: all of them, "
        "8x the model calls; helps HiRISE crops, hurts LROC NAC frames; default 1)",
    )
    p.add_argument(
        "--precision", choices=("int8", "fp32"), default="int8",
        help="for a zoo name: its shipped int8 artifact (default; fast) or its fp32 checkpoint (the numbers of "
        "edgeae score and the evaluation; slower)",
    )  # fmt: skip
    p.add_argument(
        "--runtime", choices=("auto", "tflite", "onnx"), default="auto",
        help="which int8 artifact of a zoo name: auto (default) = the faster on this CPU (LiteRT on x86 with VNNI "
        "and elsewhere, onnxruntime on x86 without VNNI, e.g. AVX2-only); tflite or onnx pins one, so the "
        "scores do not depend on the machine",
    )  # fmt: skip
    p.add_argument(
        "--bayer", default=None, choices=["RGGB", "BGGR", "GRBG", "GBRG"],
        help="the images are raw colour-filter mosaics of this pattern: demosaic them before scoring",
    )  # fmt: skip
    p.add_argument(
        "--margin", default=None, metavar="N|T,B,L,R",
        help="fixed margin in pixels counted as no-data (dark and no-data margins are also detected)",
    )  # fmt: skip
    p.add_argument("--retry-failed", action="store_true", help="scan images recorded as failed again")
    p.add_argument("--force", action="store_true", help="discard earlier results in OUT and start over")
    p.add_argument("--max-images", type=positive_int, default=None, help="stop after this many images (resume later)")
    p.add_argument(
        "--no-progress", action="store_true", help="no progress bar (it is drawn only when stderr is a terminal)"
    )
    q = p.add_argument_group("quality filters from the label (products outside are skipped and recorded)")
    q.add_argument(
        "--min-incidence", type=float, default=None, metavar="DEG", help="skip products lit more steeply (degrees)"
    )
    q.add_argument(
        "--max-incidence", type=float, default=None, metavar="DEG", help="skip products lit more obliquely (degrees)"
    )
    q.add_argument(
        "--max-emission", type=float, default=None, metavar="DEG", help="skip products viewed more obliquely (degrees)"
    )
    q.add_argument(
        "--min-resolution", type=float, default=None, metavar="M", help="skip products with finer pixels (m/px)"
    )
    q.add_argument(
        "--max-resolution", type=float, default=None, metavar="M", help="skip products with coarser pixels (m/px)"
    )
    q.add_argument(
        "--max-missing", type=float, default=None, metavar="FRAC", help="skip products with more no-data (fraction)"
    )
    p.add_argument(
        "--geo", default=None, metavar="OUT.gpkg",
        help="write each map-projected product's best patches as a map layer (.gpkg or .geojson) for QGIS",
    )  # fmt: skip
    p.add_argument("--geo-geometry", choices=("point", "polygon"), default="point", help="layer geometry")
    p.add_argument(
        "--geo-crs", choices=("body", "product"), default="body",
        help="a layer per body in its planetocentric lon/lat (default; a product PROJ would misplace there goes to "
        "a layer in its own geographic or map CRS, the report saying why) or a layer per product CRS in map x/y",
    )  # fmt: skip
    return p


def needs(args: argparse.Namespace) -> dict[str, str]:
    """Optional packages this command imports (checked before any image is read)."""
    out = {"pyarrow": "scan", "cv2": "ground", "tifffile": "ground", "tqdm": "ground"}
    if args.engine == "ray":
        out["ray"] = "scan"
    if args.geo:
        out.update({"rasterio": "archive", "pyproj": "archive"})
        if str(args.geo).lower().endswith(".gpkg"):
            out["pyogrio"] = "archive"
    return out


def run(args: argparse.Namespace) -> int:
    from edgeae.cli import CLIError
    from edgeae.printable import printable
    from edgeae.scan.errors import ActorsDiedError, ClusterLostError, ModelLoadError
    from edgeae.scan.quality import QualityFilter
    from edgeae.scan.report_text import report_markdown, report_summary
    from edgeae.scan.run import EngineOptions, scan_archive
    from edgeae.scan.state import ScanStateError

    _check_engine_options(args)
    if args.views > 1 and args.score != "context-knn":
        raise CLIError(f"--views {args.views} averages latents for --score context-knn only (got --score {args.score})")
    if args.group is not None and args.score != "context-knn":
        raise CLIError(f"--group sets the product context of --score context-knn only (got --score {args.score})")
    if args.runtime != "auto" and args.precision != "int8":
        raise CLIError(f"--runtime {args.runtime} picks an int8 artifact; it does not go with --precision fp32")
    if args.margin is not None:
        from edgeae.nodata import Margin

        try:
            Margin.parse(args.margin)
        except ValueError as exc:
            raise CLIError(f"--margin: {exc}") from None
    restore = _sigterm_as_interrupt(getattr(args, "_sigterm", None))
    try:
        opts = EngineOptions(
            engine=args.engine, workers=DEFAULT_WORKERS if args.workers is None else args.workers,
            address=args.address, num_cpus=args.num_cpus, actors=args.actors, threads=args.threads,
        )  # fmt: skip
        report = scan_archive(
            args.archive, args.model, args.out, engine=opts, stride=args.stride, batch_size=args.batch_size,
            min_valid=args.min_valid, top_k=args.top_k, retry_failed=args.retry_failed, force=args.force,
            max_images=args.max_images, progress=_show_progress(args), geo=args.geo, geo_geometry=args.geo_geometry,
            geo_crs=args.geo_crs, score=args.score, precision=args.precision, runtime=args.runtime, bayer=args.bayer,
            margin=args.margin, views=args.views, group=args.group,
            quality=QualityFilter(
                min_incidence=args.min_incidence, max_incidence=args.max_incidence, max_emission=args.max_emission,
                min_resolution_m=args.min_resolution, max_resolution_m=args.max_resolution,
                max_missing=args.max_missing,
            ),
        )  # fmt: skip
    except ScanStateError as exc:
        raise CLIError(str(exc)) from exc
    except ModelLoadError as exc:  # the model cannot be loaded: one line, status 2 (Ray's traceback left out)
        raise CLIError(str(exc)) from None
    except (ActorsDiedError, ClusterLostError) as exc:  # workers, or the cluster, lost: one line, status 1 (README)
        if not getattr(exc, "said", False):  # a lost cluster is said when found (Ray may block the driver after it)
            err_line(f"edgeae scan: error: {exc}")
        return 1
    finally:
        restore()
    # a few lines (counts, rates, the best patches, where the report is); the whole report.md with -v
    text = report_markdown(report) if getattr(args, "verbose", False) else report_summary(report, args.out)
    print(printable(text), end="")  # a stdout that takes UTF-8 only (report texts are escaped already)
    if report.get("failed"):  # the rest is scanned and recorded; a script still needs to see it
        deps = [f["error"] for f in report.get("failures", []) if f["error"].startswith("MissingDependencyError: ")]
        why = (  # the install's fault, not the files': said here, not in report.md only (a plain rerun retakes them)
            f"; {len(deps)} for a package not installed, which a plain rerun takes again: {deps[0].split(': ', 1)[1]}"
            if deps
            else ""
        )
        err_line(  # a stderr that fails (a log on a full disk) leaves the status as it is
            f"edgeae scan: {report['failed']} image(s) could not be read (listed in {Path(args.out) / 'report.md'}; "
            f"--retry-failed scans them again){why}"
        )
        return 1
    return 0


def _check_engine_options(args: argparse.Namespace) -> None:
    """Refuse an option of the other engine (it would be ignored): --address, --num-cpus and --actors are Ray's,
    --workers the local engine's; --num-cpus sizes a Ray instance this command starts, not a cluster's."""
    from edgeae.cli import CLIError

    if args.engine != "ray":
        given = [f for f, v in (("--address", args.address), ("--num-cpus", args.num_cpus), ("--actors", args.actors))
                 if v is not None]  # fmt: skip
        if given:
            raise CLIError(f"{' and '.join(given)} {'needs' if len(given) == 1 else 'need'} --engine ray")
        return
    if args.workers is not None:
        raise CLIError("--workers sets the local engine's processes; with --engine ray use --actors (and --num-cpus)")
    if args.address and args.num_cpus is not None:
        raise CLIError(
            "--num-cpus sizes the local Ray instance this command starts; the cluster at --address uses its own CPUs"
        )


def _show_progress(args: argparse.Namespace) -> bool:
    """The progress bar redraws a line with carriage returns: a terminal only, not a log file (as the demo)."""
    return not args.no_progress and sys.stderr is not None and sys.stderr.isatty()


def _sigterm_as_interrupt(received: list[str] | None = None) -> Callable[[], object]:
    """SIGTERM (``kill``, a batch system's stop) ends the scan as Ctrl-C does: finished images kept, queued ones
    dropped, the "interrupted (SIGTERM)" line (``received``, the CLI's ``args._sigterm``, gets ``"SIGTERM"``: until
    session 38 the line said only "interrupted", as for Ctrl-C); returns what puts the previous handler back (a no-op
    off the main thread). A SIGTERM the caller set to be ignored (``trap '' TERM``, inherited) stays ignored:
    firmware-sim's installer (:func:`edgeae.firmware_sim.cli_preflight._sigterm_as_ctrl_c`), which holds that check
    for every command."""
    from edgeae.firmware_sim.cli_preflight import _sigterm_as_ctrl_c

    return _sigterm_as_ctrl_c([] if received is None else received)
