"""``edgeae evaluate``: the lunar VAE paper's evaluation (AP vs random, KS, baselines, plots), one command."""

from __future__ import annotations

import argparse
from pathlib import Path

from edgeae.cli import CLIError, add_views_argument, check_writable, positive_int, seed_arg

MIN_COUNT = 10  # edgeae.anomaly.evaluate.MIN_COUNT (not imported here: --help stays fast; a test pins the two)
MAX_WINDOW = 1024  # edgeae.anomaly.multiscale.MAX_WINDOW (the same; a test pins the two)

DATASETS = ("lroc_nac_craters", "hirise_landmarks", "msl_surface")


def _windows(text: str) -> tuple[int, ...]:
    try:
        w = tuple(int(v) for v in text.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"windows must be comma-separated pixel sizes, got {text!r}") from exc
    if not w or min(w) < 4 or max(w) > MAX_WINDOW:
        raise argparse.ArgumentTypeError(f"window sizes must be 4 to {MAX_WINDOW} px, got {text!r}")
    return w


SEED_MAX = 2**32 - 1  # scikit-learn's random_state (isolation forest, t-SNE) takes 0 .. 2**32 - 1


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "evaluate",
        help="anomaly ranking on labelled data (AP, random AP, KS, baselines, plots)",
        description="Score a labelled evaluation set and write table.md, results.json (with the run settings) and "
        "plots to OUT/DATASET/, and the issue-12 target checks to OUT/summary.md. The default scorer combines the "
        "model's score of 32 and 64 px windows per location (--windows 32,64,128 adds 128), normalised per frame; "
        "baselines: patch std, RX, isolation forest on μ. msl_surface is a validation benchmark (MSL images of the "
        f"val sols). A target is 'indicative' rather than met or MISSED under a --limit that leaves items out or "
        f"with fewer than {MIN_COUNT} positives or negatives, and 'not evaluated' with none. A new run into the "
        "same OUT replaces summary.md and, in each dataset folder it evaluates, the tables, JSON and plots of the "
        "run before (other files, and the folders of datasets it does not evaluate, are left).",
    )
    p.add_argument(
        "--dataset", required=True, choices=[*DATASETS, "all"], help="labelled evaluation set, or all of them"
    )
    p.add_argument(
        "--model",
        default=None,
        help="zoo name, .pt checkpoint, or .onnx/.ort/.tflite artifact (default: orbital-gray-vae for the grey "
        "orbital sets, rover-rgb-vae for msl_surface; with 'all', datasets of other channels keep their default)",
    )
    p.add_argument("--out", required=True, help="output folder (made if missing; checked before any scoring)")
    p.add_argument(
        "--windows",
        type=_windows,
        default=None,
        help=f"window sizes of the default scorer, 4 to {MAX_WINDOW} px (default 32,64; a window larger than a "
        "frame is mostly reflection, and the run says how many frames it exceeds)",
    )
    p.add_argument(
        "--normalise",
        choices=("robust_z", "pooled", "none"),
        default=None,
        help="per-frame robust z (orbital default), pooled over all frames (MSL default), or none",
    )
    p.add_argument("--combine", choices=("mean", "max"), default=None, help="combine window scores (default mean)")
    p.add_argument(
        "--batch",
        "--batch-size",
        dest="batch",
        type=positive_int,
        default=256,
        help="patches per model call (default 256)",
    )
    p.add_argument(
        "--limit", type=positive_int, default=None, help="only the first N files (LROC) / N random crops or images"
    )
    p.add_argument(
        "--seed", type=seed_arg(SEED_MAX), default=0,
        help=f"seed of random-16 gallery, isolation forest, t-SNE, --limit (0 to {SEED_MAX})",
    )  # fmt: skip
    p.add_argument(
        "--cae-keep",
        type=float,
        default=None,
        help="CAE scoring only: fraction of pixels the model sees, in (0, 1] (default 0.5)",
    )
    p.add_argument(
        "--fill-nodata", action="store_true",
        help="fill a partial patch's no-data pixels with the mean of its valid ones before scoring, as edgeae "
        "score and edgeae scan do (default: scored as read, the published evaluation; the 32-px windows of the "
        "default scorer are not filled)",
    )  # fmt: skip
    add_views_argument(
        p,
        "VAE latents of each patch's first N rotations and flips, averaged in the 'two-context kNN (mu)' "
        "candidate (8: every one, 8x the model calls; default 1)",
    )
    p.add_argument("--no-plots", action="store_true", help="write tables and JSON only, no plots")
    p.add_argument("--threads", type=positive_int, default=None, help="interpreter / torch threads")
    p.add_argument("--data-root", default=None, help="data folder (default: $EDGEAE_DATA or ../shared/data)")
    p.add_argument(
        "--no-progress", action="store_true", help="no progress bar (it is drawn only when stderr is a terminal)"
    )
    p.add_argument(
        "-q", "--quiet", action="store_true",
        help="print one line per dataset and the summary's count of verdicts with where summary.md is, not every "
        "table.md and summary.md (the default)",
    )  # fmt: skip
    return p


def needs(args: argparse.Namespace) -> dict[str, str]:
    """Optional packages this command imports (checked before any work)."""
    return {"cv2": "ground", "scipy": "ground", "sklearn": "ground", "matplotlib": "ground", "tqdm": "ground"}


def _check_out(out: Path, datasets: tuple[str, ...]) -> None:
    """Refuse, before loading any model or data, an ``--out`` that is a file or whose dataset folders cannot be
    made and written."""
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {out} is a file; name a folder (made if missing)")
    for ds in datasets:
        check_writable(out / ds / "results.json", "--out")


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from edgeae.anomaly.evaluate import (
        CHANNELS,
        DEFAULT_MODELS,
        acceptance_markdown,
        data_note,
        default_scorer,
        evaluate,
    )
    from edgeae.anomaly.score import make_scorer
    from edgeae.data import data_root
    from edgeae.predictor import load_predictor

    datasets = DATASETS if args.dataset == "all" else (args.dataset,)
    if args.cae_keep is not None and not 0.0 < args.cae_keep <= 1.0:  # also refuses nan
        raise CLIError(f"--cae-keep must be a fraction in (0, 1], got {args.cae_keep}")
    cae_keep = 0.5 if args.cae_keep is None else args.cae_keep
    if args.cae_keep is not None and args.model is None:  # the default models are VAEs: it would do nothing
        raise CLIError("--cae-keep sets a CAE's masked input: give the CAE with --model (the default models are VAEs)")
    out = Path(args.out)
    _check_out(out, datasets)
    scorers: dict[str, object] = {}

    def scorer_for(spec: str) -> object:
        if spec not in scorers:
            predictor = load_predictor(spec, threads=args.threads)
            if predictor.metadata.kind not in ("vae", "cae"):
                raise CLIError(f"{spec}: a {predictor.metadata.kind!r} model cannot score patches")
            kind = predictor.metadata.kind
            if args.views > 1 and kind != "vae":
                raise CLIError(f"--views {args.views}: views average VAE latents; {spec} is a {kind}")
            if args.cae_keep is not None and kind != "cae" and spec == args.model:  # silently ignored before
                raise CLIError(f"--cae-keep sets the CAE's masked input; {spec} is a {kind}")
            scorers[spec] = make_scorer(predictor, cae_keep=cae_keep, keep_latents=True, views=args.views)
        return scorers[spec]

    root = data_root(args.data_root)
    checks, used, cae = [], {}, False
    data: dict[str, str] = {}
    for ds in datasets:
        spec = args.model or DEFAULT_MODELS[ds]
        scorer = scorer_for(spec)
        if scorer.channels != CHANNELS[ds]:  # type: ignore[attr-defined]
            if args.dataset != "all":
                raise CLIError(f"{ds} needs a {CHANNELS[ds]}-channel model; {spec} has {scorer.channels}")  # type: ignore[attr-defined]
            spec = DEFAULT_MODELS[ds]
            print(f"{ds}: {args.model} has other channels; using {spec}")
            scorer = scorer_for(spec)
        changes = {
            k: v
            for k, v in (("windows", args.windows), ("normalise", args.normalise), ("combine", args.combine))
            if v is not None
        }
        ms = dataclasses.replace(default_scorer(ds), **changes)
        (out / "summary.md").unlink(missing_ok=True)  # a run that stops from here on leaves no summary of the last
        res = evaluate(
            ds,
            scorer,  # type: ignore[arg-type]
            root,
            out / ds,
            batch=args.batch,
            limit=args.limit,
            seed=args.seed,
            plots=not args.no_plots,
            progress=not args.no_progress,
            ms=ms,
            model=spec,
            fill=args.fill_nodata,
        )
        checks += res["acceptance"]
        used[ds] = spec
        cae |= res["info"]["settings"]["model_kind"] == "cae"
        sampled = bool(res["info"].get("sampled", True))
        data[ds] = data_note(ds, res["rows"], res["acceptance"], args.limit, sampled, res["info"]["settings"])
        if not args.quiet:
            print((out / ds / "table.md").read_text())
        print(f"{ds}: {len(res['rows'])} table rows (score method × feature) -> {out / ds}")
    run = f"--views {args.views}, --seed {args.seed}" + (f", --cae-keep {cae_keep:g}" if cae else "")
    (out / "summary.md").write_text(acceptance_markdown(checks, used, data, run))
    if args.quiet:
        print(_verdict_line(checks, out / "summary.md"))
    else:
        print((out / "summary.md").read_text())
    return 0


def _verdict_line(checks: list[dict[str, object]], where: Path) -> str:
    """``-q``'s last line: how many target checks got each verdict of summary.md, and where it is."""
    from edgeae.anomaly.evaluate import verdict

    counts: dict[str, int] = {}
    for c in checks:
        v = verdict(c).strip("*").split(" (")[0]  # "indicative (n=...)" -> "indicative", "**MISSED**" -> "MISSED"
        counts[v] = counts.get(v, 0) + 1
    text = ", ".join(f"{n} {v}" for v, n in counts.items()) or "no target checked"
    return f"targets: {text} -> {where}"
