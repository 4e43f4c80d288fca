"""The methods the evaluation ranks, scored one frame at a time: the default multi-scale scorer, the model's own
scores, the baselines, the candidate ground rankings and the ablations (see :mod:`edgeae.anomaly.evaluate`)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from edgeae.anomaly import baselines, classical
from edgeae.anomaly.context import frames_local_novelty
from edgeae.anomaly.multiscale import MultiScale, frame_normalise, multiscale_scores, score_windows
from edgeae.anomaly.score import PatchScorer, PatchScores, score_array
from edgeae.anomaly.terms import frame_terms_max

DEFAULT = "default (multi-scale z)"
TERMS_MAX = "terms-max (flight)"
# How the default score normalises, per dataset: survey frames (orbital products) by themselves; rover
# browse views, where a whole frame can be hardware, over all views together.
NORMALISATION = {"lroc_nac_craters": "robust_z", "hirise_landmarks": "robust_z", "msl_surface": "pooled"}
# Windows chosen on validation (the two λ mosaics, craters >= 32 px, zoo orbital-gray-vae, AP over random):
# 32+64 px 2.23x, 64 px alone 2.17x, 32+64+128 px 2.09x, 128 px alone 1.53x (mean of z; max: 2.12x, 1.91x).
DEFAULT_SCORER = MultiScale(windows=(32, 64))
# the classical ones (no network): patch std, RX, and the candidates' own pipelines on classical patch features
# (edgeae.anomaly.classical: the fair analogue of frame-z kNN (mu) and two-context kNN (mu)); then the VAE-latent ones
BASELINES = ("patch std", "RX (patch features)", *classical.METHODS, "isolation forest (mu)", "kNN (mu)")
FRAME_Z_KNN = "frame-z kNN (mu)"  # the candidate scorer of baselines.frame_z_knn: its own acceptance rows
LOCAL_Z = "local z (mu, rec)"  # the candidate of edgeae.anomaly.context.local_novelty (spatial context)
CONTEXT_KNN = "two-context kNN (mu)"  # the candidate of baselines.context_knn (frame and product contexts)
SCORERS = (DEFAULT, FRAME_Z_KNN, LOCAL_Z, CONTEXT_KNN)  # the scorers whose issue-12 targets are checked


def default_scorer(dataset: str) -> MultiScale:
    """The default multi-scale scorer with the normalisation of ``dataset``."""
    return replace(DEFAULT_SCORER, normalise=NORMALISATION.get(dataset, DEFAULT_SCORER.normalise))


@dataclass
class Frame:
    """One scored frame: the base-window scores, the per-window raw scores, and baseline features (``rx_views``:
    the block means of each patch's views, (N, V, D), when the scorer takes V > 1 views; ``stats``:
    :func:`edgeae.anomaly.classical.patch_stats`)."""

    name: str
    result: PatchScores
    windows: dict[int, np.ndarray]
    std: np.ndarray
    rx_features: np.ndarray
    stats: np.ndarray
    rx_views: np.ndarray | None = None


def score_frame(
    pixels: np.ndarray,
    valid: np.ndarray,
    scorer: PatchScorer,
    ms: MultiScale,
    patch: int,
    stride: int,
    *,
    min_valid: float = 0.0,
    batch: int = 256,
    name: str = "<array>",
    fill: bool = False,
) -> Frame:
    """Score one frame at every window size of ``ms`` and collect the baselines' patch features. ``fill``
    (``edgeae evaluate --fill-nodata``): the patches' no-data filled with each patch's valid mean, as
    ``edgeae score`` does, for the patch scores and the baselines' tiles (not the other window sizes of ``ms``);
    off by default: the published evaluation scores no-data as read."""
    r = score_array(pixels, scorer, patch, stride, valid=valid, min_valid=min_valid, batch=batch, file=name, fill=fill)
    if len(r) == 0 and min_valid > 0:
        r = score_array(pixels, scorer, patch, stride, valid=valid, min_valid=0.0, batch=batch, file=name, fill=fill)
    one_view = replace(scorer, views=1) if scorer.views > 1 else scorer  # the views' latents: of the patches only
    per = score_windows(pixels, one_view, r, ms, patch, batch)
    tiles = np.stack([pixels[y : y + patch, x : x + patch] for x, y in zip(r.x, r.y, strict=True)])
    tiles = tiles.transpose(0, 3, 1, 2)  # (N, C, P, P)
    if fill:
        from edgeae.strips import fill_patches

        masks = np.stack([valid[y : y + patch, x : x + patch] for x, y in zip(r.x, r.y, strict=True)])
        part = np.flatnonzero((masks.mean(axis=(1, 2)) < 1.0) & masks.any(axis=(1, 2)))
        if part.size:
            tiles = np.ascontiguousarray(tiles)
            tiles[part] = fill_patches(tiles[part], masks[part])
    return Frame(
        name=name,
        result=r,
        windows={w: np.asarray(per[w]["score"], dtype=np.float64) for w in ms.windows},
        std=baselines.patch_std(tiles),
        rx_features=baselines.rx_features(tiles),
        stats=classical.patch_stats(tiles),
        rx_views=classical.block_views(tiles, scorer.views) if scorer.views > 1 else None,
    )


def _methods(
    scorer: PatchScorer,
    frames: list[Frame],
    ms: MultiScale,
    seed: int,
    groups: list[str] | None = None,
    *,
    dataset: str | None = None,
) -> dict[str, np.ndarray]:
    """Every method's score of every patch of ``frames`` (concatenated in frame order); ``groups``: each frame's
    parent product (the second context of ``two-context kNN``; None: all frames are one). ``ms`` (``--windows``,
    ``--normalise``, ``--combine``) shapes the default scorer only (and which sizes the ``window W only``
    ablations take); the candidates, baselines and z ablations normalise per frame or pooled as ``dataset``'s
    default does (:data:`NORMALISATION`; None: as ``ms``), so their columns mean the same whatever its options."""
    if not frames:
        raise ValueError("no evaluable frames: nothing to rank")
    results = [f.result for f in frames]
    # every extra over all frames, but the views' latents (8x μ) only where a method needs them pooled
    cat = {k: np.concatenate([r.extras[k] for r in results]) for k in results[0].extras if k != "mu_views"}
    single = np.concatenate([r.score for r in results])
    methods: dict[str, np.ndarray] = {DEFAULT: np.concatenate(multiscale_scores([f.windows for f in frames], ms))}
    if scorer.kind == "vae":
        methods |= {"vae a(x)": single, "reconstruction error": cat["rec"], "||mu||^2": cat["mu2"]}
    else:
        methods["cae masked error"] = single
    std = np.concatenate([f.std for f in frames])
    methods["patch std"] = std
    methods["RX (patch features)"] = np.concatenate(baselines.rx([f.rx_features for f in frames]))
    norm = NORMALISATION.get(dataset, ms.normalise) if dataset else ms.normalise
    pooled = norm == "pooled"
    # the candidates' pipelines on classical features: same groups, views, normalisation (no network)
    rx_views = [f.rx_views for f in frames if f.rx_views is not None]
    views = rx_views if len(rx_views) == len(frames) else None
    blocks, stats = [f.rx_features for f in frames], [f.stats for f in frames]
    methods |= classical.context_methods(blocks, stats, groups, pooled=pooled, views=views)
    if scorer.kind == "vae":
        methods["isolation forest (mu)"] = baselines.isolation_forest(cat["mu"], seed=seed)
        methods["kNN (mu)"] = baselines.knn_distance(baselines.robust_z(cat["mu"]))
        methods[FRAME_Z_KNN] = np.concatenate(
            baselines.frame_z_knn([r.extras["mu"] for r in results], pooled=pooled, floor=baselines.LATENT_MAD_FLOOR)
        )
        # a candidate (issue 12): each patch's μ and error against those of the patches around it on its frame
        methods[LOCAL_Z] = np.concatenate(
            frames_local_novelty(
                [r.extras["mu"] for r in results], [r.extras["rec"] for r in results], [r.xy for r in results]
            )
        )
        # a candidate (issue 12): the latents scaled within the frame and within its product, two kNN scores summed
        # (pooled datasets: one context, the whole set); views > 1: each view scaled on its own, then averaged
        key = "mu_views" if "mu_views" in results[0].extras else "mu"
        per = [np.concatenate([r.extras[key] for r in results])] if pooled else [r.extras[key] for r in results]
        methods[CONTEXT_KNN] = np.concatenate(baselines.context_knn(per, None if pooled else groups))
        # a candidate (issue 12): each term normalised on its own, then the larger: a patch is unusual when its
        # reconstruction error *or* its latent norm is, so texture is not drowned by the brightness term
        parts = [(cat["rec"], cat["mu2"])] if pooled else [(r.extras["rec"], r.extras["mu2"]) for r in results]
        methods["max z (rec, ||mu||^2)"] = np.concatenate(
            [np.maximum(frame_normalise(a, "robust_z", True), frame_normalise(b, "robust_z", True)) for a, b in parts]
        )
        # the orbital mission's flight score (edgeae.anomaly.terms): each term over its frame median, the larger
        methods[TERMS_MAX] = np.concatenate([frame_terms_max(a, b) for a, b in parts])
    # ablations: what the normalisation and each window size give on their own
    for w in ms.windows:  # named "z": with the dataset's normalisation whatever --normalise says
        one = replace(ms, windows=(w,), normalise=norm)
        methods[f"window {w} only, z"] = np.concatenate(multiscale_scores([f.windows for f in frames], one))
    stds = [np.concatenate([f.std for f in frames])] if pooled else [f.std for f in frames]
    methods["patch std, z"] = np.concatenate([frame_normalise(s, "robust_z", ms.log) for s in stds])
    return methods
