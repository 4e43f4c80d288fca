"""Science per byte: for a per-frame downlink budget, how much of a frame's science reaches the ground.

Three ways to spend the same wire bytes on one frame (packets, headers and CRCs counted for all three):

- ``jpeg2000``: the whole frame as one JPEG 2000 file (:mod:`.baselines`), sent as a flat product.
- ``sparse``: the frame's sparse samples (payload layout 2, lossless sample codec) at the keep fraction that
  fills the budget, rebuilt on the ground with the CAE.
- ``prioritised``: what edgeae's flight runtime sends: the top-ranked anomaly patches at full resolution
  (lossless, the same sample codec), as many as fit in ``patch_share`` of the budget, then sparse context in
  the bytes left; the ground rebuilds the context with the CAE, using every full-resolution pixel that
  arrived as known, and pastes the patches in exactly.
- ``prioritised-j2k``: the same patches, with the context as one JPEG 2000 file in the bytes left.

Measured per frame with labelled features (:mod:`.feature_sets`): feature recall (the fraction of labelled
feature patches that arrive whole at full resolution), PSNR over the feature patches' pixels (pooled; 100 dB
stands for lossless) and PSNR of the whole frame, on each link condition.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeae.wire.codec import DEFAULT_SAMPLE_CODEC
from edgeae.wire.packets import SequenceCounters, WireConfig, packetise
from edgeae.wire.products import AnomalyPatch, SparseFrame

from . import baselines
from .decode import decode_flat, decode_sparse
from .feature_sets import LabelledFrame
from .link import LinkConfig, simulate
from .pipeline import keep_for_bytes
from .reassembly import Receiver
from .sources import sparse_from_samples
from .station import Filler

METHODS = ("jpeg2000", "sparse", "prioritised", "prioritised-j2k")
# how a VAE scorer ranks patches, by channel count: grey frames as the orbital mission flies (terms-max,
# edgeae.anomaly.terms), colour frames by a(x) (the rover VAE's validated score: the rover mission flies the CAE,
# and terms-max lowered the rover frame's feature recall here, 0.62 -> 0.38 at 10 %)
SCORES = {1: "terms-max", 3: "a"}
MAX_PSNR = 100.0
"""PSNR reported for an exact (lossless) reconstruction."""


@dataclass(frozen=True)
class PlanConfig:
    """How the budget is spent. ``budgets``: per-frame wire bytes as fractions of the raw frame's bytes.
    ``patch_share``: the most of a budget the prioritised downlink spends on full-resolution patches.
    ``patch_copies``: each patch sent this many times (later copies after the context, so one burst does not
    take both); the ground keeps the first copy of each packet. ``codec_head_copies``: extra copies of the first
    packet of a codec file (the JPEG 2000 baseline and the prioritised-j2k context), sent last: it holds the
    file's main header, without which nothing of the file decodes; the copies come out of the same budget.
    Default 0: one copy measured no gain over 8 link seeds at 20% loss (±1 dB either way; the file loses more
    to truncation at the first lost packet than to a lost header, and the copy takes 1 KB of its bytes)."""

    budgets: tuple[float, ...] = (0.02, 0.05, 0.10)
    max_packet: int = 1024
    codec: str = DEFAULT_SAMPLE_CODEC
    patch_share: float = 0.5
    patch_copies: int = 1
    codec_head_copies: int = 0
    mask_seed: int = 7

    def __post_init__(self) -> None:
        if not self.budgets or any(not 0.0 < b <= 1.0 for b in self.budgets):
            raise ValueError(f"budgets must be fractions of the raw frame in (0, 1], got {self.budgets}")
        if not 0.0 <= self.patch_share <= 1.0:
            raise ValueError(f"patch_share must be in [0, 1], got {self.patch_share}")
        if self.patch_copies < 1:
            raise ValueError(f"patch_copies must be >= 1, got {self.patch_copies}")
        if self.codec_head_copies < 0:
            raise ValueError(f"codec_head_copies must be >= 0, got {self.codec_head_copies}")

    @property
    def wire(self) -> WireConfig:
        return WireConfig(self.max_packet, self.codec)


@dataclass(frozen=True, eq=False)
class Downlink:
    """The packets one method sends for one frame, in send order, and what they carry."""

    method: str
    packets: list[bytes]
    keep: float = 0.0
    patches: tuple[tuple[int, int], ...] = ()  # (x, y) of the full-resolution patches, in rank order

    @property
    def wire_bytes(self) -> int:
        return sum(map(len, self.packets))


# ------------------------------------------------------------------------------------------- flight side
def score_grid(
    frame: LabelledFrame, scorer: Callable[[np.ndarray], dict], min_valid: float = 0.9, score: str = "terms-max"
) -> np.ndarray:
    """The anomaly score of every grid patch (``frame.grid()`` order); patches with less than ``min_valid``
    of non-black pixels (no-data margins) score -inf, as the flight runtime skips them. ``score``: for a VAE
    scorer, ``"terms-max"`` (the orbital mission's flight score, :mod:`edgeae.anomaly.terms`, over the frame's
    valid patches) or ``"a"`` (a(x)); other scorers give their own score."""
    from edgeae.anomaly.score import score_batches
    from edgeae.anomaly.terms import SCORE_MODES, frame_terms_max

    if score not in SCORE_MODES:
        raise ValueError(f"score must be one of {SCORE_MODES}, got {score!r}")

    p = frame.patch
    img = frame.samples.astype(np.float32) / 255.0
    grid = frame.grid()
    valid = np.array([(frame.samples[y : y + p, x : x + p] > 0).any(axis=2).mean() >= min_valid for x, y in grid])
    tiles = (np.moveaxis(img[y : y + p, x : x + p], -1, 0) for (x, y), ok in zip(grid, valid, strict=True) if ok)
    out = np.full(len(grid), -np.inf)
    if valid.any():
        got = score_batches(scorer, tiles, 64)
        terms = score == "terms-max" and "rec" in got and "mu2" in got
        out[valid] = frame_terms_max(got["rec"], got["mu2"]) if terms else got["score"]
    return out


def sparse_within(
    samples: np.ndarray, budget: int, cfg: PlanConfig, counters: SequenceCounters, frame_id: int = 0
) -> tuple[SparseFrame, list[bytes]]:
    """The sparse frame (8-bit ``samples``) with the largest keep whose packets fit ``budget`` wire bytes."""
    seed = cfg.mask_seed + frame_id
    keep = keep_for_bytes(samples, 8, budget, cfg.wire, seed)
    fr = sparse_from_samples(samples, 8, keep, seed, frame_id=frame_id)
    return fr, packetise(fr, config=cfg.wire, counters=counters)


def plan(frame: LabelledFrame, scores: np.ndarray | None, budget: int, method: str, cfg: PlanConfig) -> Downlink:
    """What ``method`` sends for ``frame`` within ``budget`` wire bytes (``scores``: the grid's anomaly scores,
    needed by the prioritised methods)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {METHODS}")
    s = frame.samples
    counters = SequenceCounters()
    head = cfg.codec_head_copies * cfg.max_packet  # the header copies' share of a codec file's budget
    if method == "jpeg2000":
        data, _ = baselines.at_bytes(s, "jpeg2000", baselines.file_budget(budget - head, cfg.max_packet))
        return Downlink(method, _file_packets(data, cfg, counters) + _head_copies(data, cfg, counters))
    if method == "sparse":
        fr, pk = sparse_within(s, budget, cfg, counters)
        return Downlink(method, pk, keep=fr.keep)
    if scores is None:
        raise ValueError("the prioritised downlink needs the grid's anomaly scores")
    chosen, first, used = _top_patches(frame, scores, budget, cfg, counters)
    if method == "prioritised":
        fr, context = sparse_within(s, budget - used, cfg, counters)
        keep = fr.keep
    else:  # prioritised-j2k: the context as one JPEG 2000 file
        data, _ = baselines.at_bytes(s, "jpeg2000", baselines.file_budget(budget - used - head, cfg.max_packet))
        context, keep = _file_packets(data, cfg, counters), 0.0
    repeats = [
        q
        for _ in range(cfg.patch_copies - 1)
        for ap in chosen
        for q in packetise(ap, config=cfg.wire, counters=counters)
    ]
    heads = _head_copies(data, cfg, counters) if method == "prioritised-j2k" else []
    patches = tuple((a.x, a.y) for a in chosen)
    return Downlink(method, first + context + repeats + heads, keep=keep, patches=patches)


def _top_patches(
    frame: LabelledFrame, scores: np.ndarray, budget: int, cfg: PlanConfig, counters: SequenceCounters
) -> tuple[list[AnomalyPatch], list[bytes], int]:
    """The best-scoring grid patches whose packets (times ``patch_copies``) fit ``patch_share`` of the budget."""
    grid, p, s = frame.grid(), frame.patch, frame.samples
    chosen: list[AnomalyPatch] = []
    packets: list[bytes] = []
    used = 0
    for rank, k in enumerate(np.argsort(-scores, kind="stable")):
        if not np.isfinite(scores[k]):
            break
        x, y = (int(v) for v in grid[k])
        ap = AnomalyPatch(0, x, y, p, float(scores[k]), np.ascontiguousarray(s[y : y + p, x : x + p]), 8, rank)
        pk = packetise(ap, config=cfg.wire)  # its size (sequence counts do not change it)
        cost = sum(map(len, pk)) * cfg.patch_copies
        if used + cost > cfg.patch_share * budget:
            break
        packets += packetise(ap, config=cfg.wire, counters=counters)
        chosen.append(ap)
        used += cost
    return chosen, packets, used


def _file_packets(data: bytes, cfg: PlanConfig, counters: SequenceCounters) -> list[bytes]:
    """A codec file as a flat product (the telemetry APID), as :func:`baselines.over_link` sends it."""
    from edgeae.wire.products import TelemetryRecord

    return packetise(TelemetryRecord(0, data), config=WireConfig(cfg.max_packet), counters=counters)


def _head_copies(data: bytes, cfg: PlanConfig, counters: SequenceCounters) -> list[bytes]:
    """``cfg.codec_head_copies`` resends of the codec file's first packet (its main header)."""
    from edgeae.wire.products import TelemetryRecord

    if not cfg.codec_head_copies:
        return []
    parts = [0] * cfg.codec_head_copies
    return packetise(TelemetryRecord(0, data), config=WireConfig(cfg.max_packet), counters=counters, parts=parts)


# ------------------------------------------------------------------------------------------- ground side
@dataclass(frozen=True, eq=False)
class Received:
    """The ground's rebuild: ``image`` float32 (H, W, C) in [0, 1]; ``exact`` bool (H, W) pixels that arrived
    at full resolution (patches); ``whole`` (x, y) of patches that arrived complete; ``lost``: nothing usable."""

    image: np.ndarray
    exact: np.ndarray
    whole: tuple[tuple[int, int], ...]
    lost: bool


def receive(frame: LabelledFrame, sent: Downlink, link: LinkConfig, fill: Filler | None) -> Received:
    """Send ``sent`` over ``link`` and rebuild the frame as the ground would: a codec file decoded as far as it
    arrived, sparse samples and full-resolution pixels filled with ``fill``, patches pasted in exactly; when only
    patches arrived, the rest of the frame at the patches' mean."""
    h, w, c = frame.samples.shape
    rx = Receiver()
    for _, pkt in simulate(sent.packets, link)[0]:
        rx.receive(pkt)
    img = np.zeros((h, w, c), np.float32)
    known = np.zeros((h, w), bool)
    exact = np.zeros((h, w), bool)
    patch_px = np.zeros((h, w, c), np.float32)
    context: np.ndarray | None = None
    sparse = False
    whole = []
    for (kind, _, _), asm in rx.products.items():
        if kind == "sparse":
            res = decode_sparse(asm)
            img = res.as_float()
            known |= res.known
            sparse = True
        elif kind == "telemetry":  # a codec file: the frame, or the context of the patches
            f = decode_flat(asm)
            im, _ = baselines.decode_partial(f.values, f.received, "jpeg2000", frame.samples.shape, frame.samples)
            context = None if im is None else im.astype(np.float32) / 255.0
        elif kind == "patch":
            res_p = decode_flat(asm)
            hd = res_p.header
            x, y, p = hd["x"], hd["y"], hd["size"]
            got = res_p.received.all(axis=2)
            patch_px[y : y + p, x : x + p][got] = res_p.values[got].astype(np.float32) / 255.0
            exact[y : y + p, x : x + p] |= got
            if got.all():
                whole.append((int(x), int(y)))
    img[exact] = patch_px[exact]
    known |= exact
    if context is not None:
        out = context
    elif known.any() and not sparse:  # only whole patches arrived (their context was lost): a learned filler
        # wants scattered samples and paints far-off holes dark (7 dB frames); the patches' mean is the estimate
        out = np.broadcast_to(img[known].mean(axis=0), img.shape).astype(np.float32)
    elif known.any():
        out = np.clip(np.asarray(fill(img, known), np.float32), 0.0, 1.0) if fill is not None else img
    else:
        return Received(np.full((h, w, c), 0.5, np.float32), exact, (), True)
    out = out.copy()
    out[exact] = patch_px[exact]
    return Received(out, exact, tuple(whole), False)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)) if a.size else 0.0
    return MAX_PSNR if mse <= 10 ** (-MAX_PSNR / 10) else 10 * math.log10(1.0 / mse)


def metrics(frame: LabelledFrame, got: Received) -> dict[str, Any]:
    """Feature recall, feature-patch PSNR (pooled), share of feature pixels at full resolution, frame PSNR."""
    ref = frame.samples.astype(np.float32) / 255.0
    fm = frame.feature_mask()
    whole = set(got.whole)
    feats = [(int(x), int(y)) for x, y in frame.features]
    return {
        "features": len(feats),
        "feature_recall": (sum(f in whole for f in feats) / len(feats)) if feats else None,
        "feature_fullres_pixels": float(got.exact[fm].mean()) if fm.any() else None,
        "feature_psnr": _psnr(ref[fm], got.image[fm]) if fm.any() else None,
        "frame_psnr": _psnr(ref, got.image),
        "lost": got.lost,
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
) -> list[dict[str, Any]]:
    """One row per (frame, budget, method, link, seed): bytes sent, what was sent and :func:`metrics`.
    ``score``: how a VAE scorer ranks the patches (:func:`score_grid`). ``progress``: a label for a progress
    bar over the frames (on stderr), or None for none.

    ``oracle``: rank the grid by the labels instead of ``scorer`` (feature patches first, in grid order): what the
    prioritised downlink would deliver with a perfect anomaly ranking, an upper bound for any scorer."""
    cfg = cfg or PlanConfig()
    links = links or LINKS
    rows: list[dict[str, Any]] = []
    if progress is not None:
        from edgeae._optional import require

        frames = require("tqdm").tqdm(frames, desc=progress, unit="frame")
    for n, frame in enumerate(frames):
        if oracle:
            features = {(int(x), int(y)) for x, y in frame.features}
            scores: np.ndarray | None = np.array([float((int(x), int(y)) in features) for x, y in frame.grid()])
        else:
            prioritised = any(m.startswith("prioritised") for m in methods)
            scores = score_grid(frame, scorer, score=score) if scorer is not None and prioritised else None
        raw = frame.samples.nbytes
        for frac in cfg.budgets:
            budget = int(frac * raw)
            for method in methods:
                sent = plan(frame, scores, budget, method, cfg)
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
                }
                for lname, lc in links.items():
                    for s in range(1 if lname == "perfect" else seeds):
                        link = dataclasses.replace(lc, seed=1000 * n + 17 * s + 1)
                        got = receive(frame, sent, link, fill)
                        rows.append({**base, "link": lname, "seed": link.seed, **metrics(frame, got)})
                if log is not None:
                    last = rows[-1]
                    log(f"{frame.name} {frac:.0%} {method}: {sent.wire_bytes} B, feature PSNR "
                        f"{last['feature_psnr']}, frame PSNR {last['frame_psnr']:.2f}")  # fmt: skip
    return rows


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
            "over frames and link seeds.",
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
                    cells.append(
                        f"{_f(rec, '.2f')} · {_f(_mean([r['feature_psnr'] for r in lr]))} / "
                        f"{_f(_mean([r['frame_psnr'] for r in lr]))}"
                    )
                out.append(f"| {frac:.0%} | {m} | {wb:,.0f} | {ps} ({fs}) | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def _nfeat(sel: list[dict[str, Any]]) -> int:
    seen: dict[str, int] = {}
    for r in sel:
        seen[r["frame"]] = r["features"]
    return sum(seen.values())


def _mean(vals: list[float | None]) -> float | None:
    v = [x for x in vals if x is not None]
    return float(np.mean(v)) if v else None


def verdicts(rows: list[dict[str, Any]], budgets: tuple[float, ...] = (0.02, 0.05)) -> list[dict[str, Any]]:
    """For each set, budget and link: does the prioritised downlink's feature-patch PSNR beat JPEG 2000's?"""
    means: dict[tuple, list[float]] = {}
    for r in rows:
        if r["feature_psnr"] is not None:
            means.setdefault((r["set"], r["budget"], r["link"], r["method"]), []).append(r["feature_psnr"])
    out = []
    for (st, frac, lk, m), v in means.items():
        j = means.get((st, frac, lk, "jpeg2000"))
        if m.startswith("prioritised") and frac in budgets and j:
            p, q = float(np.mean(v)), float(np.mean(j))
            out.append({"set": st, "budget": frac, "link": lk, "method": m, "feature_psnr": p, "jpeg2000": q,
                        "wins": p > q})  # fmt: skip
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


def load_models(model: str, scorer: str, threads: int | None = None) -> tuple[Filler, Callable[[np.ndarray], dict]]:
    """A CAE fill (no progress bars) and a patch scorer, from zoo names or artifact paths."""
    from edgeae.anomaly.score import make_scorer
    from edgeae.predictor import load_predictor
    from edgeae.reconstruct import reconstruct

    predictor = load_predictor(model, threads=threads)

    def fill(image: np.ndarray, known: np.ndarray, notes: dict | None = None) -> np.ndarray:
        return np.asarray(reconstruct(image, known, "cae", predictor=predictor, progress=False), np.float32)

    return fill, make_scorer(load_predictor(scorer, threads=threads))


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
) -> list[dict[str, Any]]:
    """:func:`evaluate` on the labelled frame sets ``sets`` (``feature_sets.SETS``), each with the models
    for its channel count (``models`` / ``scorers`` override the defaults by channel count; ``oracle``: the
    labels rank the patches; ``score``: how a VAE scorer ranks them, default :data:`SCORES`; ``progress``: a
    progress bar per set)."""
    from .feature_sets import build

    rows: list[dict[str, Any]] = []
    for name in sets:
        frames = build(name, quick=quick, root=root)
        c = frames[0].samples.shape[2]
        model, scorer = models_for(c, (models or {}).get(c), (scorers or {}).get(c))
        fill, scorer_fn = load_models(model, scorer, threads)
        mode = score or SCORES[c]
        bar = name if progress else None
        for r in evaluate(frames, scorer_fn, fill, cfg, links, seeds, methods, log, oracle, mode, progress=bar):
            label = "oracle (labels)" if oracle else scorer_label(scorer_fn, scorer, mode)
            rows.append({**r, "model": model, "scorer": label})
    return rows
