"""Science per byte: for a per-frame downlink budget, how much of a frame's science reaches the ground.

Each method (``jpeg2000``, ``j2k-tiled``, ``sparse``, ``prioritised``, ``prioritised-j2k``) spends the same wire
bytes on one frame; :mod:`.budget_downlink` says what each sends and how the ground rebuilds it. This module
measures the result and runs it over whole frame sets.

Measured per frame with labelled features (:mod:`.feature_sets`): feature recall (the fraction of labelled
feature patches that arrive whole at full resolution), PSNR over the feature patches' pixels (pooled; 100 dB
stands for lossless) and PSNR of the whole frame, on each link condition.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from edgeae.metrics import psnr_db

from .budget_downlink import METHODS as METHODS
from .budget_downlink import ContextFloors
from .budget_downlink import Downlink as Downlink
from .budget_downlink import PlanConfig as PlanConfig
from .budget_downlink import Received as Received
from .budget_downlink import plan as plan
from .budget_downlink import receive as receive
from .budget_downlink import score_grid as score_grid
from .budget_downlink import sparse_within as sparse_within
from .feature_sets import LabelledFrame
from .link import LinkConfig
from .station import Filler

# how a VAE scorer ranks patches, by channel count: grey frames as the orbital mission flies (terms-max,
# edgeae.anomaly.terms), colour frames by a(x) (the rover VAE's validated score: the rover mission flies the CAE,
# and terms-max lowered the rover frame's feature recall here, 0.62 -> 0.38 at 10 %)
SCORES = {1: "terms-max", 3: "a"}
MAX_PSNR = 100.0
"""PSNR reported for an exact (lossless) reconstruction."""


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return psnr_db(a, b, cap=MAX_PSNR)


def metrics(frame: LabelledFrame, got: Received, valid: np.ndarray | None = None) -> dict[str, Any]:
    """Feature recall, feature-patch PSNR (pooled), share of feature pixels at full resolution, frame PSNR. The
    PSNRs cover the ``valid`` pixels only (bool (H, W): the pixels with data by ``edgeae reconstruct``'s rule,
    :mod:`.validity`; None: every pixel), as reconstruct's PSNR does: a no-data margin's "truth" is no scene."""
    ref = frame.samples.astype(np.float32) / np.float32(frame.top)
    fm = frame.feature_mask()
    whole = set(got.whole)
    feats = [(int(x), int(y)) for x, y in frame.features]
    frame_psnr: float | None
    if valid is None or valid.all():
        scored, frame_psnr = fm, _psnr(ref, got.image)
    else:
        scored = fm & valid
        frame_psnr = _psnr(ref[valid], got.image[valid]) if valid.any() else None
    return {
        "features": len(feats),
        "feature_recall": (sum(f in whole for f in feats) / len(feats)) if feats else None,
        "feature_fullres_pixels": float(got.exact[fm].mean()) if fm.any() else None,
        "feature_psnr": _psnr(ref[scored], got.image[scored]) if scored.any() else None,
        "frame_psnr": frame_psnr,
        "lost": got.lost,
        # patches that ran past the frame (never from flight or the budget plan): only their pixels inside it
        **({"patches_clipped": got.patches_clipped} if got.patches_clipped else {}),
        # a sparse frame the decoder refused (corrupted packets that passed the CRC): taken as not received
        **({"sparse_refused": got.sparse_refused} if got.sparse_refused else {}),
    }


# ------------------------------------------------------------------------------------------- the table
LINKS: dict[str, LinkConfig] = {
    "perfect": LinkConfig(),
    "loss 20%": LinkConfig(loss=0.20),
    "burst (GE, ~9%)": LinkConfig(burst_p=0.02, burst_r=0.2),
}


def evaluate(
    frames: Iterable[LabelledFrame],
    scorer: Callable[[np.ndarray], dict] | None,
    fill: Filler | None,
    cfg: PlanConfig | None = None,
    links: dict[str, LinkConfig] | None = None,
    seeds: int = 1,
    methods: tuple[str, ...] = METHODS,
    log: Callable[[str], None] | None = None,
    oracle: bool = False,
    score: str = "a",
    progress: str | None = None,
    valid: dict[str, np.ndarray] | None = None,
    floors: Iterable[ContextFloors] = (),
) -> list[dict[str, Any]]:
    """One row per (frame, budget, method, link, seed): bytes sent, what was sent and :func:`metrics`.
    ``score``: how a VAE scorer ranks the patches (:func:`score_grid`). ``progress``: a label for a progress
    bar over the (frame, budget, method) cells (drawn only when stderr is a terminal), or None for none.
    ``valid``: frame name -> its pixels with data (bool (H, W)); a frame not in it gets
    :func:`.validity.samples_valid` of its samples (the no-data rule of ``edgeae reconstruct``); the PSNRs cover
    those pixels only (each row's ``psnr_valid_fraction`` says how many). ``floors``: context floors already
    computed (:class:`~.budget_downlink.ContextFloors`, e.g. by ``downlink plan``'s budget check), used for their
    frames; every other frame's are computed once for all its budgets.

    ``oracle``: rank the grid by the labels instead of ``scorer`` (feature patches first, in grid order): what the
    prioritised downlink would deliver with a perfect anomaly ranking, an upper bound for any scorer."""
    from .validity import samples_valid

    cfg = cfg or PlanConfig()
    links = links or LINKS
    frames = list(frames)
    known = {id(f.frame): f for f in floors}  # each holds its frame: no id is reused while this runs
    rows: list[dict[str, Any]] = []
    bar = None
    if progress is not None:
        from edgeae.reconstruct import show_progress

        if show_progress(True, 0):  # a redirected stderr (a log file) gets no carriage-return redraws
            from edgeae._optional import require

            cells = len(frames) * len(cfg.budgets) * len(methods)
            bar = require("tqdm").tqdm(total=cells, desc=progress, unit="cell")
    try:
        for n, frame in enumerate(frames):
            ok = (valid or {}).get(frame.name)
            ok = samples_valid(frame.samples, frame.bits) if ok is None else ok
            fl = known.get(id(frame))
            fl = fl if fl is not None and fl.cfg == cfg else ContextFloors(frame, cfg)
            rows += _frame_rows(n, frame, scorer, fill, cfg, links, seeds, methods, log, oracle, score, ok, bar, fl)
    finally:
        if bar is not None:
            bar.close()
    return rows


def _frame_rows(
    n, frame, scorer, fill, cfg, links, seeds, methods, log, oracle, score, valid, bar, floors
) -> list[dict]:
    """:func:`evaluate`'s rows of frame number ``n``; ``bar`` (or None) advances one cell per budget and method;
    ``floors``: the frame's :class:`~.budget_downlink.ContextFloors` (one for all its budgets)."""
    rows: list[dict[str, Any]] = []
    if oracle:
        features = {(int(x), int(y)) for x, y in frame.features}
        scores: np.ndarray | None = np.array([float((int(x), int(y)) in features) for x, y in frame.grid()])
    else:
        prioritised = any(m.startswith("prioritised") for m in methods)
        scores = score_grid(frame, scorer, score=score) if scorer is not None and prioritised else None
    raw = frame.raw_bytes  # bits per sample, as the camera packs them (8-bit: the array's bytes)
    for frac in cfg.budgets:
        budget = int(frac * raw)
        for method in methods:
            if bar is not None:
                bar.set_postfix_str(f"{frame.name} {budget_label(frac)} {method}", refresh=False)
            sent = plan(frame, scores, budget, method, cfg, floors)
            base = {
                "set": frame.set,
                "frame": frame.name,
                "split": frame.split,
                "shape": list(frame.samples.shape),
                "budget": frac,
                "budget_bytes": budget,
                "method": method,
                "wire_bytes": sent.wire_bytes,
                "keep": sent.keep,
                "patches_sent": len(sent.patches),
                "features_in_sent": sum((int(x), int(y)) in set(sent.patches) for x, y in frame.features),
                "psnr_valid_fraction": round(float(valid.mean()), 6),
                **({"tile": sent.tile} if sent.tile else {}),  # j2k-tiled: the tile side it was sent in
            }
            for lname, lc in links.items():
                for s in range(1 if lname == "perfect" else seeds):
                    link = dataclasses.replace(lc, seed=run_seed(lc.seed, n, s))
                    got = receive(frame, sent, link, fill)
                    rows.append({**base, "link": lname, "seed": link.seed, **metrics(frame, got, valid)})
            if log is not None:
                last = rows[-1]
                fp = "-" if last["frame_psnr"] is None else f"{last['frame_psnr']:.2f}"
                log(f"{frame.name} {budget_label(frac)} {method}: {sent.wire_bytes} B, feature PSNR "
                    f"{last['feature_psnr']}, frame PSNR {fp}")  # fmt: skip
            if bar is not None:
                bar.update(1)
    return rows


def run_seed(link_seed: int, frame: int, seed: int) -> int:
    """The link seed of frame number ``frame``'s ``seed``-th run: offsets from the link's own seed (a link file's
    ``seed``; 0 for the presets), so a file's seed changes every run and the presets keep their figures."""
    return (link_seed + 1000 * frame + 17 * seed + 1) % 2**63


def budget_label(frac: float) -> str:
    """A budget as a percentage with the precision it was given in: 0.02 -> 2%, 0.025 -> 2.5%, 0.005 -> 0.5%."""
    return f"{frac * 100:.10g}%"


def _f(v: float | None, fmt: str = ".1f") -> str:
    if v is None:
        return "-"
    if v >= MAX_PSNR and fmt == ".1f":
        return "exact"
    return format(v, fmt)


def markdown(rows: list[dict[str, Any]]) -> str:
    """Per set: a table of budgets × methods with, per link, feature recall · feature PSNR · frame PSNR."""
    out: list[str] = []
    links = list(dict.fromkeys(r["link"] for r in rows))
    for st in dict.fromkeys(r["set"] for r in rows):
        sel = [r for r in rows if r["set"] == st]
        frames = list(dict.fromkeys(r["frame"] for r in sel))
        split = sel[0]["split"]
        label = " (validation figures: built from training/validation data)" if split == "validation" else ""
        out += [
            f"**{st}**{label}: {len(frames)} frame(s) ({', '.join(frames)}), {_nfeat(sel)} "
            "labelled feature patches. Cells: feature recall · feature-patch PSNR / whole-frame PSNR (dB), means "
            "over frames and link seeds; lost: nothing usable arrived (the ground has a mid-grey frame; (k/n lost): "
            "k of the n frames and seeds averaged, their mid-grey counted)." + _coverage(sel, frames),
            "",
            "| budget | method | wire bytes | patches sent (features) | " + " | ".join(links) + " |",
            "|---|---|---|---|" + "---|" * len(links),
        ]
        for frac in dict.fromkeys(r["budget"] for r in sel):
            for m in dict.fromkeys(r["method"] for r in sel):
                rs = [r for r in sel if r["budget"] == frac and r["method"] == m]
                per = [r for r in rs if r["link"] == links[0]]
                wb = np.mean([r["wire_bytes"] for r in per])
                ps = sum(r["patches_sent"] for r in per)
                fs = sum(r["features_in_sent"] for r in per)
                cells = []
                for lk in links:
                    lr = [r for r in rs if r["link"] == lk]
                    rec = _mean([r["feature_recall"] for r in lr])
                    lost = sum(bool(r.get("lost")) for r in lr)
                    if lr and lost == len(lr):
                        cells.append("lost" if lost == 1 else f"lost ({lost}/{lost})")
                        continue
                    cells.append(
                        f"{_f(rec, '.2f')} · {_f(_mean([r['feature_psnr'] for r in lr]))} / "
                        f"{_f(_mean([r['frame_psnr'] for r in lr]))}" + (f" ({lost}/{len(lr)} lost)" if lost else "")
                    )
                out.append(f"| {budget_label(frac)} | {m} | {wb:,.0f} | {ps} ({fs}) | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def _coverage(sel: list[dict[str, Any]], frames: list[str]) -> str:
    """What the set's PSNRs cover: the pixels with data (edgeae reconstruct's rule), named when a frame has no-data."""
    part = {r["frame"]: r["psnr_valid_fraction"] for r in sel if r.get("psnr_valid_fraction", 1.0) < 1.0}
    if not part:
        return " PSNR over every pixel (no frame has no-data pixels)."
    shown = ", ".join(f"{f} {100 * part[f]:.1f}%" for f in frames if f in part)
    return f" PSNR over the pixels with data (no-data margins left out, as edgeae reconstruct: {shown})."


def _nfeat(sel: list[dict[str, Any]]) -> int:
    seen: dict[str, int] = {}
    for r in sel:
        seen[r["frame"]] = r["features"]
    return sum(seen.values())


def _mean(vals: list[float | None]) -> float | None:
    v = [x for x in vals if x is not None]
    return float(np.mean(v)) if v else None


def verdicts(rows: list[dict[str, Any]], budgets: tuple[float, ...] = (0.02, 0.05)) -> list[dict[str, Any]]:
    """For each set, budget and link: does the prioritised downlink's feature-patch PSNR beat JPEG 2000's (one
    codestream: ``jpeg2000``, ``wins``) and, where the rows have it, tiled JPEG 2000's (``j2k_tiled``,
    ``wins_tiled``; None without a ``j2k-tiled`` row)?"""
    means: dict[tuple, list[float]] = {}
    for r in rows:
        if r["feature_psnr"] is not None:
            means.setdefault((r["set"], r["budget"], r["link"], r["method"]), []).append(r["feature_psnr"])
    out = []
    for (st, frac, lk, m), v in means.items():
        j = means.get((st, frac, lk, "jpeg2000"))
        if m.startswith("prioritised") and frac in budgets and j:
            p, q = float(np.mean(v)), float(np.mean(j))
            t = means.get((st, frac, lk, "j2k-tiled"))
            tq = float(np.mean(t)) if t else None
            out.append({"set": st, "budget": frac, "link": lk, "method": m, "feature_psnr": p, "jpeg2000": q,
                        "wins": p > q, "j2k_tiled": tq, "wins_tiled": None if tq is None else p > tq})  # fmt: skip
    return out


# ------------------------------------------------------------------------------------------- whole runs
SCORERS = {1: "orbital-gray-vae", 3: "rover-rgb-vae"}
"""Anomaly scorer per channel count (zoo names): the β-VAEs. For colour frames the rover VAE (trained with MSL
ground images; MSL hardware vs ground ROC AUC 0.964 on held-out sols) replaced the U-Net CAE's masked
reconstruction error, which put none of the rover set's planted features in the top patches (recall 0 at every
budget; the VAE: 0.12 / 0.25 / 0.62 at 2 / 5 / 10 %)."""


def scorer_label(scorer_fn: Any, scorer: str, score: str) -> str:
    """How a row names its scorer: the model, and for a VAE ranked by terms-max the mode too."""
    return f"{scorer} ({score})" if score != "a" and getattr(scorer_fn, "kind", "") == "vae" else scorer


def models_for(channels: int, model: str | None = None, scorer: str | None = None) -> tuple[str, str]:
    """(reconstruction model, anomaly scorer) for frames of ``channels``: the given names, else the defaults
    (``edgeae.reconstruct.DEFAULT_MODELS`` and :data:`SCORERS`)."""
    from edgeae.reconstruct import DEFAULT_MODELS

    return model or DEFAULT_MODELS[channels], scorer or SCORERS[channels]


def load_models(
    model: str, scorer: str, threads: int | None = None, loaded: dict[str, Any] | None = None
) -> tuple[Filler, Callable[[np.ndarray], dict]]:
    """A CAE fill (no progress bars) and a patch scorer, from zoo names or artifact paths. ``loaded``: name ->
    predictor already loaded (used, not loaded again); what is loaded here is added to it."""
    from edgeae.anomaly.score import make_scorer
    from edgeae.predictor import load_predictor
    from edgeae.reconstruct import reconstruct

    loaded = {} if loaded is None else loaded
    for name in (model, scorer):
        if name not in loaded:
            loaded[name] = load_predictor(name, threads=threads)
    predictor = loaded[model]

    def fill(image: np.ndarray, known: np.ndarray, notes: dict | None = None) -> np.ndarray:
        return np.asarray(reconstruct(image, known, "cae", predictor=predictor, progress=False), np.float32)

    return fill, make_scorer(loaded[scorer])


def run_sets(
    sets: Iterable[str],
    *,
    quick: bool = False,
    cfg: PlanConfig | None = None,
    links: dict[str, LinkConfig] | None = None,
    seeds: int = 1,
    models: dict[int, str] | None = None,
    scorers: dict[int, str] | None = None,
    methods: tuple[str, ...] = METHODS,
    threads: int | None = None,
    root: str | None = None,
    log: Callable[[str], None] | None = None,
    oracle: bool = False,
    score: str | None = None,
    progress: bool = False,
    built: dict[str, list[LabelledFrame]] | None = None,
    loaded: dict[str, Any] | None = None,
    floors: Iterable[ContextFloors] = (),
) -> list[dict[str, Any]]:
    """:func:`evaluate` on the labelled frame sets ``sets`` (``feature_sets.SETS``), each with the models
    for its channel count (``models`` / ``scorers`` override the defaults by channel count; ``oracle``: the
    labels rank the patches; ``score``: how a VAE scorer ranks them, default :data:`SCORES`; ``progress``: a
    progress bar per set, when stderr is a terminal; ``built``: set name -> its frames, already built; ``loaded``:
    model name -> predictor already loaded; each model is loaded once, whatever the sets that use it; ``floors``:
    the context floors already computed for frames of ``built``)."""
    from .feature_sets import build

    rows: list[dict[str, Any]] = []
    loaded = {} if loaded is None else loaded
    floors = list(floors)  # every set's evaluate looks in it
    for name in sets:
        frames = (built or {}).get(name) or build(name, quick=quick, root=root)
        c = frames[0].samples.shape[2]
        model, scorer = models_for(c, (models or {}).get(c), (scorers or {}).get(c))
        fill, scorer_fn = load_models(model, scorer, threads, loaded=loaded)
        mode = score or SCORES[c]
        bar = name if progress else None
        for r in evaluate(frames, scorer_fn, fill, cfg, links, seeds, methods, log, oracle, mode, progress=bar,
                          floors=floors):  # fmt: skip
            label = "oracle (labels)" if oracle else scorer_label(scorer_fn, scorer, mode)
            rows.append({**r, "model": model, "scorer": label})
    return rows
