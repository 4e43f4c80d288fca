"""``edgeae downlink plan``: the science-per-byte table (:mod:`edgeae.ground.science`), its option checks and
its reports; the rest of ``edgeae downlink`` is in :mod:`edgeae.cli.downlink`."""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from edgeae.cli import CLIError, check_writable


def plan(args: argparse.Namespace) -> int:
    """``edgeae downlink plan``: the science-per-byte table (edgeae.ground.science)."""
    from edgeae.ground import science
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
            j2k_tile=getattr(args, "j2k_tile", None) or 0,
        )
    except ValueError as exc:
        raise CLIError(f"{_PLAN_FLAGS.get(str(exc).split(' ')[0], 'downlink plan')}: {exc}") from None
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    if not methods:
        raise CLIError(f"--methods names no method; choose from {', '.join(science.METHODS)}")
    bad = [m for m in methods if m not in science.METHODS]
    if bad:
        raise CLIError(f"--methods: unknown {bad}; choose from {', '.join(science.METHODS)}")
    if getattr(args, "j2k_tile", None) is not None and "j2k-tiled" not in methods:
        raise CLIError("--j2k-tile sets the tile side of the j2k-tiled method, which --methods does not name: add "
                       "j2k-tiled to --methods, or leave --j2k-tile out")  # fmt: skip
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
        rows, used = _plan_image(args, cfg, links, methods, log, progress)
    else:
        rows, used = _plan_sets(args, cfg, links, methods, log, progress)
    md = science.markdown(rows)
    deeper = sorted({int(r["bit_depth"]) for r in rows if int(r.get("bit_depth", 8)) > 8})
    if deeper:
        md = (f"Input: a {deeper[0]}-bit frame (budgets are fractions of its raw size at {deeper[0]} bits per "
              f"sample; PSNR on its own scale).\n\n{md}")  # fmt: skip
    print(md)
    if args.out is not None:
        config = {
            **cfg.__dict__,
            "links": {name: lc.to_dict() for name, lc in links.items()},
            "methods": list(methods),
            "seeds": args.seeds,
            **used,
        }
        _write_reports(args.out, {"config": config, "rows": rows}, md)
        print(f"wrote {args.out / 'report.json'} and report.md")
    return 0


def _plan_image(args, cfg, links, methods, log, progress) -> tuple[list[dict], dict]:
    """``plan --image``: its rows and the settings it used (the report's config). Refuses before any work a model
    or scorer of another channel count and a budget under the frame's smallest send."""
    from edgeae.ground import science
    from edgeae.ground.feature_sets import LabelledFrame
    from edgeae.ground.sources import image_samples
    from edgeae.ground.validity import file_valid

    if not args.image.is_file():
        what = "is a folder: --image takes one image file" if args.image.is_dir() else "does not exist"
        raise CLIError(f"--image {args.image} {what}")
    samples, bits = image_samples(args.image)
    c = samples.shape[2]
    model, scorer = science.models_for(c, args.model, args.scorer)
    loaded = _check_channels(model, scorer, {f"--image {args.image.name}": c}, args.threads)
    fill, score = science.load_models(model, scorer, args.threads, loaded=loaded)  # the checked ones, not reloaded
    patch = _plan_patch(args.patch, score, scorer)
    frame = LabelledFrame(args.image.stem, "image", samples, patch, np.zeros((0, 2), np.int64), "-", bits=bits)
    floors = _check_budgets([frame], cfg, methods)
    mode = args.score or science.SCORES[c]
    # PSNR over the pixels with data, by reconstruct's rule (transparent pixels and no-data margins left out)
    valid = {frame.name: file_valid(args.image)}
    rows = science.evaluate([frame], score, fill, cfg, links, args.seeds, methods, log, score=mode,
                            progress=args.image.name if progress else None, valid=valid,
                            floors=floors)  # fmt: skip
    # a deeper frame is planned at its own depth: budgets are fractions of its packed raw size, PSNR on its scale
    rows = [{**r, "bit_depth": bits, "input": f"{bits}-bit", "model": model, "scorer": scorer} for r in rows]
    return rows, {"image": str(args.image), "model": model, "scorer": scorer, "score": mode, "patch": patch}


def _plan_sets(args, cfg, links, methods, log, progress) -> tuple[list[dict], dict]:
    """``plan`` on the labelled sets: their rows and the settings used. A --model or --scorer of another channel
    count than a set's (``feature_sets.SET_CHANNELS``) is refused before any set is built; every set is then built
    first, so a budget under a frame's smallest send is refused before any set is planned."""
    from edgeae.ground import science
    from edgeae.ground.feature_sets import SET_CHANNELS, SETS, build

    sets = args.sets or list(SETS)
    unknown = [s for s in sets if s not in SETS]
    if unknown:
        raise CLIError(f"--set: unknown {unknown}; choose from {', '.join(SETS)}")
    channels = {f"--set {name}": SET_CHANNELS[name] for name in sets}
    loaded = {}
    if args.model or args.scorer:  # until session 37 after the sets were built (~1 s of --quick work first)
        loaded = _check_channels(args.model, args.scorer, channels, args.threads)
    built = {name: build(name, quick=args.quick) for name in sets}
    floors = _check_budgets([f for frames in built.values() for f in frames], cfg, methods)
    over = {c: args.model for c in (1, 3)} if args.model else None
    sc = {c: args.scorer for c in (1, 3)} if args.scorer else None
    rows = science.run_sets(sets, quick=args.quick, cfg=cfg, links=links, seeds=args.seeds, models=over,
                            scorers=sc, methods=methods, threads=args.threads, log=log,
                            score=args.score, progress=progress, built=built, loaded=loaded,
                            floors=floors)  # fmt: skip
    used = {
        "sets": sets,
        "quick": args.quick,
        "models": {name: science.models_for(c, args.model, args.scorer)[0] for name, c in channels.items()},
        "scorers": {name: science.models_for(c, args.model, args.scorer)[1] for name, c in channels.items()},
        "score": args.score or {name: science.SCORES[c] for name, c in channels.items()},
    }
    return rows, used


def _check_channels(
    model: str | None, scorer: str | None, inputs: dict[str, int], threads: int | None
) -> dict[str, Any]:
    """Refuse (one line, before any work) a model or scorer whose channel count is not that of every input
    (``inputs``: what the user named -> its channels): the run would stop at that input, its rows lost. Returns
    the models it loaded, by name, for the run to use (each model is loaded once)."""
    from edgeae.ground.science import SCORERS
    from edgeae.predictor import load_predictor
    from edgeae.reconstruct import DEFAULT_MODELS

    kinds = {1: "grey (1 channel)", 3: "RGB (3 channels)"}
    loaded: dict[str, Any] = {}
    for flag, name, defaults in (("--model", model, DEFAULT_MODELS), ("--scorer", scorer, SCORERS)):
        if not name:
            continue
        if name not in loaded:
            loaded[name] = load_predictor(name, threads=threads)
        takes = getattr(getattr(loaded[name], "metadata", None), "channels", None)
        for what, c in inputs.items():
            if takes is not None and takes != c:
                hint = f"use {defaults[c]}" if c in defaults else "name one of that channel count"
                if len(inputs) > 1:
                    hint += f", or give only --set of {kinds.get(takes, f'{takes}-channel')} frames"
                raise CLIError(
                    f"{flag} {name} takes {kinds.get(takes, f'{takes}-channel')} frames; {what} is "
                    f"{kinds.get(c, f'{c}-channel')}: {hint}"
                )
    return loaded


def _check_budgets(frames, cfg, methods: tuple[str, ...]) -> list:
    """Refuse (one line, before any work) a budget under what every method needs to send a frame at all. Returns
    the frames' :class:`~edgeae.ground.budget_downlink.ContextFloors`, for the plan to reuse."""
    from edgeae.ground.budget_downlink import ContextFloors, budget_floor
    from edgeae.ground.science import budget_label

    floors = [ContextFloors(frame, cfg) for frame in frames]
    for frame, fl in zip(frames, floors, strict=True):
        floor, why = budget_floor(frame, methods, cfg, fl)
        for frac in cfg.budgets:
            got = int(frac * frame.raw_bytes)
            if got < floor:
                raise CLIError(
                    f"--budgets {frac:g} ({budget_label(frac)}): {got:,} bytes per frame for {frame.name} "
                    f"({frame.raw_bytes:,} raw bytes), less than {why}; {_least_budget(floor, frame.raw_bytes)}"
                )
    return floors


def _least_budget(floor: int, raw: int) -> str:
    """The end of a budget refusal: the least ``--budgets`` fraction (at most 1) whose bytes reach ``floor``, rounded
    up so that it passes the check itself (0.2875 of 7,120 B is 2,046 B, under 2,047), or that none can."""
    if floor > raw:
        return f"the frame is too small to plan at any budget (--budgets 1 is its {raw:,} raw bytes)"
    least = math.ceil(floor / raw * 1e6) / 1e6
    while int(least * raw) < floor:
        least = round(least + 1e-6, 6)
    return f"give at least {min(least, 1.0)!r}"


def _write_reports(out: Path, report: dict, md: str) -> None:
    """report.json and report.md, both or neither: each atomically (a full disk leaves no cut-off file), the
    markdown committed after the JSON is ready, and the JSON's own commit failing takes the markdown with it."""
    from edgeae.atomic import atomic_path
    from edgeae.ground.station import strict_json

    out.mkdir(parents=True, exist_ok=True)
    text = strict_json(report)
    md_path, committed = out / "report.md", False
    earlier = _keep_aside(md_path)  # the earlier run's markdown, put back if the new pair cannot be committed
    try:
        with atomic_path(out / "report.json") as tmp:
            tmp.write_text(text)
            with atomic_path(md_path) as tmd:
                tmd.write_text(md)
            committed = True
    except BaseException:
        if committed:  # the markdown is in place but the JSON's commit failed: the earlier pair, or neither
            if earlier is not None:
                os.replace(earlier, md_path)
            else:
                md_path.unlink(missing_ok=True)
        raise
    finally:
        if earlier is not None:
            earlier.unlink(missing_ok=True)


def _keep_aside(path: Path) -> Path | None:
    """A hard link to ``path`` beside it, or a copy where the file system cannot link (``.NAME.earlier-PID``; None
    where there is no such file): the earlier report stays whole on disk until the new one replaces both files. Such
    files a killed run left (their process gone) are removed first."""
    import shutil

    from edgeae.atomic import process_gone

    for old in path.parent.glob(f".{path.name}.earlier-*"):
        pid = old.name.rsplit("-", 1)[-1]
        if pid.isascii() and pid.isdigit() and process_gone(int(pid)):
            old.unlink(missing_ok=True)
    if not path.is_file():
        return None
    aside = path.with_name(f".{path.name}.earlier-{os.getpid()}")
    try:
        aside.unlink(missing_ok=True)
        try:
            os.link(path, aside)
        except OSError:  # no hard links here (some network and FAT file systems): a copy
            shutil.copy2(path, aside)
    except OSError:
        aside.unlink(missing_ok=True)
        return None
    return aside


_PLAN_FLAGS = {
    "budgets": "--budgets",
    "patch_share": "--patch-share",
    "patch_copies": "--copies",
    "codec_head_copies": "--head-copies",
    "j2k_tile": "--j2k-tile",
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
