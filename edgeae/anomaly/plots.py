"""Figures of the paper's evaluation: anomaly maps, PR curves, KDE + rug, top-16 vs random-16, t-SNE.

matplotlib (Agg) is imported lazily inside each function; every function writes one PNG and returns its path.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeae._optional import require
from edgeae.anomaly.score import PatchScores, score_map


def _plt() -> Any:
    matplotlib = require("matplotlib")
    matplotlib.use("Agg")
    return require("matplotlib.pyplot")


def _save(fig: Any, path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, bbox_inches="tight")
    _plt().close(fig)
    return p


def map_step(shape: tuple[int, int], max_side: int = 800) -> int:
    """The pixel step a score map of an image of ``shape`` (H, W) is drawn at: at most ``max_side`` pixels a side
    (:func:`save_score_map`; ``edgeae score --map`` reads its image backdrop at the same step)."""
    h, w = shape
    return max(1, int(np.ceil(max(h, w) / max_side)))


NOT_SCORED = "white"  # map pixels no scored patch covers (no-data, below --min-valid)


def save_score_map(
    path: str | os.PathLike[str],
    scores: PatchScores,
    image: np.ndarray | None = None,
    points: np.ndarray | None = None,
    threshold: float | None = None,
    max_side: int = 800,
    title: str | None = None,
    score_label: str = "anomaly score",
    image_downsampled: bool = False,
) -> Path:
    """Whole-image anomaly map (max score of the patches covering each pixel), beside the image when given.

    ``image_downsampled``: ``image`` is already every ``d``-th pixel (``d`` = ceil(max(H, W) / max_side), as
    :func:`edgeae.strips.preview` reads it for ``edgeae score --map``), NaN where no data.

    ``points``: (K, 2) x, y of labelled features drawn as small circles, or (K, 3) x, y, diameter drawn to their
    size (a 160-px crater no longer looks like a 33-px one); patches above ``threshold`` are outlined in
    cyan, and the map says so (how many, and the threshold). The title is wrapped to the panel's width.
    ``score_label``: what the score is (the colour bar's label). ``max_side``: the image and map are drawn
    downsampled to at most this many pixels a side (the panels are ~500 px wide; the PNG's size does not depend
    on it). Pixels no scored patch covers are white, and the map says so; a map with no scored patch says "no
    patch scored" instead of drawing a colour bar.
    """
    plt = _plt()
    h, w = scores.shape
    d = map_step((h, w), max_side)
    heat = score_map(scores, "max", downsample=d)
    panels = 2 if image is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 5.5 * h / max(w, 1) + 0.6), dpi=110, squeeze=False)
    ax = axes[0]
    if image is not None:
        img = np.asarray(image, dtype=np.float32)
        img = img if image_downsampled else img[::d, ::d]
        if img.ndim == 3 and img.shape[2] == 3:
            img = np.nan_to_num(img, nan=1.0)  # no data white, as on the map
        ax[0].imshow(img if img.ndim == 2 or img.shape[2] == 3 else img[..., 0], cmap="gray", vmin=0, vmax=1)
        ax[0].set_title("image")
    a = ax[-1]
    import textwrap

    a.set_title(textwrap.fill(title or f"anomaly map: {Path(scores.file).name}", 70), fontsize=9)
    finite = heat[np.isfinite(heat)]
    notes = []
    if finite.size:
        lo, hi = np.percentile(finite, [1, 99.5])
        cmap = plt.get_cmap("inferno").with_extremes(bad=NOT_SCORED)
        im = a.imshow(heat, cmap=cmap, vmin=lo, vmax=hi)
        fig.colorbar(im, ax=a, fraction=0.046, pad=0.02, label=score_label)
        if finite.size < heat.size:
            notes.append(f"{NOT_SCORED}: not scored (no data, or below the valid fraction)")
    else:  # nothing to scale a colour bar to: say so instead of drawing a made-up one
        a.imshow(np.ones(heat.shape), cmap="gray", vmin=0, vmax=1)
        a.text(0.5, 0.5, "no patch scored", transform=a.transAxes, ha="center", va="center", fontsize=11)
    if threshold is not None:
        above = 0
        for x, y, s in zip(scores.x, scores.y, scores.score, strict=True):
            if s > threshold:
                above += 1
                a.add_patch(
                    plt.Rectangle((x / d, y / d), scores.patch / d, scores.patch / d, fill=False, ec="cyan", lw=0.6)
                )
        notes.append(f"cyan outline: score above the model's threshold {threshold:.4g} ({above} of {len(scores)})")
    if notes:
        a.set_xlabel("\n".join(notes), fontsize=7)
    if points is not None and len(points):
        pts = np.asarray(points, dtype=np.float64)
        for axis in ax:
            if pts.shape[1] >= 3:  # each circle the feature's own size (at least 2 px on the panel)
                for x, y, diameter in pts[:, :3]:
                    axis.add_patch(
                        plt.Circle((x / d, y / d), max(diameter / 2 / d, 2.0), fill=False, ec="lime", lw=0.7)
                    )
            else:
                axis.scatter(pts[:, 0] / d, pts[:, 1] / d, s=14, facecolors="none", edgecolors="lime", linewidths=0.7)
    for axis in ax:
        axis.set_xticks([])
        axis.set_yticks([])
    return _save(fig, path)


LINE_STYLES = ("-", "--", "-.", ":")


def curve_styles(n: int) -> list[tuple[Any, str]]:
    """``n`` (colour, line style) pairs, each pair different: tab20's 18 non-grey colours (dark shades first,
    then light) and black, and a line style that also differs between the dark and light shade of a hue."""
    plt = _plt()
    tab20 = plt.get_cmap("tab20").colors
    colours = [tab20[i] for i in (*range(0, 20, 2), *range(1, 20, 2)) if i not in (14, 15)] + [(0.0, 0.0, 0.0)]
    k = len(colours)
    return [(colours[i % k], LINE_STYLES[(i % k + i // k) % len(LINE_STYLES)]) for i in range(n)]


def pr_curves(
    path: str | os.PathLike[str],
    curves: dict[str, tuple[np.ndarray, np.ndarray, float]],
    random_ap: float,
    title: str,
) -> Path:
    """Precision-recall curves ``{name: (precision, recall, AP)}`` with the random baseline as a grey line; each
    curve its own colour and line style (the first, the primary method, drawn thicker), the legend beside the
    axes so it hides no curve."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.8, 3.8), dpi=110)
    for i, ((name, (p, r, ap)), (colour, ls)) in enumerate(zip(curves.items(), curve_styles(len(curves)), strict=True)):
        ax.step(
            np.r_[0.0, r], np.r_[p[0], p], where="pre", color=colour, ls=ls, lw=2.0 if i == 0 else 1.1,
            label=f"{name} (AP {ap:.3f})",
        )  # fmt: skip
    ax.axhline(random_ap, color="grey", ls="--", lw=0.9, label=f"random (AP {random_ap:.3f})")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6.5, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, handlelength=3.0)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def kde_rug(path: str | os.PathLike[str], scores: np.ndarray, labels: np.ndarray, title: str) -> Path:
    """Kernel density of all scores and of positives, with rug marks for the positives."""
    plt = _plt()
    stats = require("scipy.stats")
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    grid = np.linspace(np.percentile(s, 0.1), np.percentile(s, 99.9), 400)
    fig, ax = plt.subplots(figsize=(5.0, 3.4), dpi=110)
    for sel, name, colour in ((np.ones_like(y), "all patches", "tab:blue"), (y, "positives", "tab:red")):
        if sel.sum() > 1 and np.ptp(s[sel]) > 0:
            ax.plot(grid, stats.gaussian_kde(s[sel])(grid), color=colour, label=f"{name} ({int(sel.sum())})")
    top = ax.get_ylim()[1]
    ax.vlines(s[y], 0, 0.06 * top, color="tab:red", alpha=0.5, lw=0.6)
    ax.set_xlabel("anomaly score")
    ax.set_ylabel("density")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return _save(fig, path)


GALLERY_CAPTION = "red outline: a labelled positive; yellow: not one. Number: the patch's score."


def score_text(s: float) -> str:
    """A tile's score as its label: 2 decimals (scores a few units apart must read apart), 3 significant
    digits in exponent form when it is too large or too small for that."""
    return f"{s:.2f}" if s == 0 or 0.01 <= abs(s) < 1e5 else f"{s:.2e}"


def gallery(
    path: str | os.PathLike[str],
    rows: Sequence[tuple[str, Sequence[tuple[np.ndarray, int, int, float, bool]]]],
    patch: int,
    context: int = 32,
    caption: str = GALLERY_CAPTION,
) -> Path:
    """Rows of patches drawn with ``context`` pixels around the ``patch`` window (outlined; red = positive),
    each titled with its score (:func:`score_text`); ``caption`` under the figure says what the colours mean.

    ``rows``: [(title, [(image (H, W[, C]), x, y, score, positive), ...]), ...], e.g. top-16 and random-16.
    """
    plt = _plt()
    n = max(len(items) for _, items in rows)
    cols = min(n, 8)
    nrows = sum(-(-len(items) // cols) for _, items in rows)
    fig, axes = plt.subplots(nrows, cols, figsize=(1.5 * cols, 1.65 * nrows + 0.35), dpi=110, squeeze=False)
    r = 0
    for title, items in rows:
        for i, (img, x, y, s, pos) in enumerate(items):
            a = axes[r + i // cols][i % cols]
            h, w = img.shape[:2]
            y0, x0 = max(0, y - context), max(0, x - context)
            y1, x1 = min(h, y + patch + context), min(w, x + patch + context)
            crop = np.asarray(img[y0:y1, x0:x1], dtype=np.float32)
            a.imshow(crop[..., 0] if crop.ndim == 3 and crop.shape[2] == 1 else crop, cmap="gray", vmin=0, vmax=1)
            a.add_patch(
                plt.Rectangle(
                    (x - x0 - 0.5, y - y0 - 0.5),
                    patch,
                    patch,
                    fill=False,
                    ec="red" if pos else "yellow",
                    lw=1.0,
                )
            )
            a.set_title(score_text(s), fontsize=6)
            if i == 0:
                a.set_ylabel(title, fontsize=7)
        for j in range(len(items), -(-len(items) // cols) * cols):
            axes[r + j // cols][j % cols].axis("off")
        r += -(-len(items) // cols)
    for a in axes.ravel():
        a.set_xticks([])
        a.set_yticks([])
    fig.tight_layout(rect=(0.0, 0.35 / (1.65 * nrows + 0.35), 1.0, 1.0))
    fig.text(0.5, 0.01, caption, ha="center", va="bottom", fontsize=7, wrap=True)
    return _save(fig, path)


def tsne_thumbnails(
    path: str | os.PathLike[str],
    latents: np.ndarray,
    thumbs: np.ndarray,
    labels: np.ndarray,
    seed: int = 0,
    title: str = "t-SNE of the top patches",
) -> Path:
    """t-SNE (scikit-learn) of latents (N, D), each drawn as its thumbnail (N, h, w); red frame = positive."""
    plt = _plt()
    manifold = require("sklearn.manifold")
    offsetbox = require("matplotlib.offsetbox")
    z = np.asarray(latents, dtype=np.float64)
    perplexity = float(min(30.0, max(2.0, (len(z) - 1) / 3.0)))
    emb = manifold.TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(z)
    fig, ax = plt.subplots(figsize=(8, 8), dpi=110)
    ax.scatter(emb[:, 0], emb[:, 1], s=2, c=np.where(labels, "red", "grey"))
    zoom = 0.35 if len(z) > 200 else 0.6
    for (ex, ey), t, pos in zip(emb, thumbs, labels, strict=True):
        box = offsetbox.OffsetImage(np.asarray(t, dtype=np.float32), cmap="gray", zoom=zoom, norm=None)
        box.image.set_clim(0, 1)
        ab = offsetbox.AnnotationBbox(
            box,
            (ex, ey),
            frameon=True,
            pad=0.05,
            bboxprops={"edgecolor": "red" if pos else "white", "lw": 0.8},
        )
        ax.add_artist(ab)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)
    return _save(fig, path)
