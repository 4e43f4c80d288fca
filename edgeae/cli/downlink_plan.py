"""``edgeae downlink plan``: the science-per-byte table (:mod:`edgeae.ground.science`), its option checks and
its reports; the rest of ``edgeae downlink`` is in :mod:`edgeae.cli.downlink`."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from edgeae.cli import CLIError, check_writable


def plan(args: argparse.Namespace) -> int:
    """``edgeae downlink plan``: the science-per-byte table (edgeae.ground.science)."""
    from edgeae.ground import science
    from edgeae.ground.feature_sets import SETS, LabelledFrame
    from edgeae.ground.link import load_link

    budgets = []
    for b in (b.strip() for b in args.budgets.split(",") if b.strip()):
        try:
            budgets.append(float(b))
        except ValueError:
            raise CLIError(
                f"--budgets: {b!r} is not a number (fractions of the raw frame, e.g. 0.02,0.05,0.1)"
            ) from None
    try:
        cfg = science.PlanConfig(
            budgets=tuple(budgets),
            max_packet=args.max_packet,
            patch_share=args.patch_share,
            patch_copies=args.copies,
            codec_head_copies=args.head_copies,
        )
    except ValueError as exc:
        raise CLIError(f"{_PLAN_FLAGS.get(str(exc).split(' ')[0], 'downlink plan')}: {exc}") from None
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    if not methods:
        raise CLIError(f"--methods names no method; choose from {', '.join(science.METHODS)}")
    bad = [m for m in methods if m not in science.METHODS]
    if bad:
        raise CLIError(f"--methods: unknown {bad}; choose from {', '.join(science.METHODS)}")
    names = [n.strip() for n in args.links.split(",") if n.strip()]
    if not names:
        raise CLIError(f"--links {args.links!r} names no link; give presets (edgeae links) or TOML files")
    links = {name: load_link(_preset(name)) for name in names}
    if args.image is None and args.patch is not None:
        raise CLIError("--patch applies to --image (the labelled sets score on their own patch grid)")
    _check_plan_out(args)
    # -v: one debug line per frame, budget and method, on stderr (the logger) with the other debug messages; the
    # markdown table alone on stdout. Bars only on a terminal, and not beside the -v lines
    log = logging.getLogger(__name__).debug if args.verbose else None
    progress = log is None and not getattr(args, "no_progress", False) and _stderr_is_terminal()
    if args.image is not None:
        import numpy as np

        from edgeae.ground.sources import image_samples

        if not args.image.is_file():
            what = "is a folder: --image takes one image file" if args.image.is_dir() else "does not exist"
            raise CLIError(f"--image {args.image} {what}")
        samples, bits = image_samples(args.image)
        model, scorer = science.models_for(samples.shape[2], args.model, args.scorer)
        fill, score = science.load_models(model, scorer, args.threads)
        patch = _plan_patch(args.patch, score, scorer)
        frame = LabelledFrame(args.image.stem, "image", samples, patch, np.zeros((0, 2), np.int64), "-", bits=bits)
        mode = args.score or science.SCORES[samples.shape[2]]
        rows = science.evaluate([frame], score, fill, cfg, links, args.seeds, methods, log, score=mode,
                                progress=args.image.name if progress else None)  # fmt: skip
        # a deeper frame is planned at its own depth: budgets are fractions of its packed raw size, PSNR on its scale
        rows = [{**r, "bit_depth": bits, "input": f"{bits}-bit"} for r in rows]
    else:
        sets = args.sets or list(SETS)
        unknown = [s for s in sets if s not in SETS]
        if unknown:
            raise CLIError(f"--set: unknown {unknown}; choose from {', '.join(SETS)}")
        over = {c: args.model for c in (1, 3)} if args.model else None
        sc = {c: args.scorer for c in (1, 3)} if args.scorer else None
        rows = science.run_sets(sets, quick=args.quick, cfg=cfg, links=links, seeds=args.seeds, models=over,
                                scorers=sc, methods=methods, threads=args.threads, log=log,
                                score=args.score, progress=progress)  # fmt: skip
    md = science.markdown(rows)
    deeper = sorted({int(r["bit_depth"]) for r in rows if int(r.get("bit_depth", 8)) > 8})
    if deeper:
        md = (f"Input: a {deeper[0]}-bit frame (budgets are fractions of its raw size at {deeper[0]} bits per "
              f"sample; PSNR on its own scale).\n\n{md}")  # fmt: skip
    print(md)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        from edgeae.ground.station import strict_json

        (args.out / "report.json").write_text(strict_json({"config": {**cfg.__dict__}, "rows": rows}))
        (args.out / "report.md").write_text(md)
        print(f"wrote {args.out / 'report.json'} and report.md")
    return 0


_PLAN_FLAGS = {
    "budgets": "--budgets",
    "patch_share": "--patch-share",
    "patch_copies": "--copies",
    "codec_head_copies": "--head-copies",
}
"""The ``downlink plan`` flag of each :class:`PlanConfig` field, to name it in an error."""
PLAN_FILES = ("report.json", "report.md")


def _check_plan_out(args: argparse.Namespace) -> None:
    """Refuse, before any work, an --out that is a file, or one holding an earlier report (without --force)."""
    if args.out is None:
        if args.force:
            raise CLIError("--force overwrites the reports in --out: give --out")
        return
    if args.out.exists() and not args.out.is_dir():
        raise CLIError(f"--out {args.out} is a file; name a folder for {' and '.join(PLAN_FILES)}")
    held = [n for n in PLAN_FILES if (args.out / n).exists()]
    if held and not args.force:
        raise CLIError(f"--out {args.out} already holds {', '.join(held)}: give --force to overwrite, or name another")
    check_writable(args.out / PLAN_FILES[0], "--out")


def _plan_patch(patch: int | None, scorer_fn: object, scorer: str) -> int:
    """The scoring patch side for ``plan --image``: ``--patch`` checked against the scorer's input (a VAE with a
    fixed input scores only patches of that side; a CAE with a fixed input any side up to it, padded; one with a
    dynamic input multiples of 16), else the VAE's side or 64."""
    meta = getattr(getattr(scorer_fn, "predictor", None), "metadata", None)
    if meta is None:  # a scorer without model metadata: nothing to check against
        return patch or 64
    fixed = int(meta.input_shape[2] if meta.layout == "NCHW" else meta.input_shape[1])
    side = patch or (fixed if fixed > 0 and meta.kind == "vae" else 64)
    if meta.kind == "vae" and fixed > 0 and side != fixed:
        raise CLIError(f"--patch {side}: the scorer {scorer} scores {fixed}x{fixed} patches; give --patch {fixed}")
    if meta.kind == "cae" and fixed > 0 and side > fixed:
        raise CLIError(f"--patch {side}: the scorer {scorer} takes {fixed}x{fixed} inputs; give at most {fixed}")
    if meta.kind == "cae" and fixed <= 0 and side % 16:  # a fixed-input CAE pads a smaller patch to its input
        raise CLIError(f"--patch {side}: CAE scoring ({scorer}) needs a multiple of 16")
    return side


def _stderr_is_terminal() -> bool:
    """Whether stderr is a terminal: progress bars only there (a redirected log gets no carriage-return redraws)."""
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stderr
        return False


def _preset(name: str) -> Path | str:
    """A shipped link preset (edgeae/ground/links/NAME.toml) by name, else the name as given (a file)."""
    from edgeae.ground import link as link_module

    shipped = Path(link_module.__file__).parent / "links" / f"{name}.toml"
    return shipped if shipped.is_file() else name
