"""Spatial-context novelty: how far a patch stands from the patches around it on its own frame.

:func:`local_z` compares each patch with its neighbours on the same frame (patch corners within ``radius`` pixels
in x and in y, the patch itself left out): each feature dimension is z-scored against the neighbours' median and
scaled MAD, and the score is the Euclidean norm of that z vector. A crater on plains, a lander on regolith or a
pit in a mare stands out from *its own surroundings*, whatever the product's overall brightness or texture; a
whole field of similar craters does not, however unusual that field is for the archive. Nothing is fitted to
other frames: each frame is scored on its own (nothing transductive), so the score of a patch does not depend on
what else is in the batch.

:func:`local_novelty` is the evaluated candidate ``local z (mu, rec)``: the larger of the local z of the VAE latent
μ (per dimension, over √D) and ``rec_weight`` × the local z of the log reconstruction error, since μ hardly
encodes fine texture (a planted 4-px checkerboard has the μ of a flat grey patch) and the error does.

Chosen on validation (issue 12; ``python -m benchmarks.local_z_validation``, docs/anomaly.md): on the two LROC NAC
mosaics kept apart for λ (:data:`edgeae.train.vae.LAMBDA_FILES`), craters ≥ 32 px, AP over random, radius 96 px
(3 strides of 32) with only the patch itself left out (μ alone **2.52×**; leaving out the overlapping patches as
well 2.43×, radius 64 / 128 px 2.47× / 2.27×); then the error's weight as λ is chosen: the best AP among the
weights that find the planted bright, checkerboard and noise blocks on the most validation frames (0.5: 2.44×,
5 of 6 frames).
"""

from __future__ import annotations

import numpy as np

LOCAL_RADIUS = 96  # px: neighbours whose patch corner is within 96 px in x and y (7 × 7 patches at stride 32)
# (at a stride above 48 px the radius is 2 grid steps instead: :func:`default_radius`)
REC_WEIGHT = 0.5  # local_novelty: weight of the reconstruction error's local z (chosen on validation, see above)
MAD_FLOOR = 1e-3  # a latent dimension that is constant around a patch is scaled by this, not by 0
# Scoring an image by local z holds every patch's latents (and error) until the image is complete: an image that
# needs more than this is refused, saying what to do, instead of exhausting memory (``edgeae scan`` records it as
# failed and goes on). 2 GiB: 2 M patches of a 256-d VAE (a 2 Gpx product at stride 32); the NAC-size strip at
# stride 64 needs 64 MiB.
LOCAL_Z_MAX_BYTES = 2 << 30
_CHUNK_VALUES = 8_000_000  # neighbour values (float32) gathered at once: 32 MB
_CHUNK_QUERIES = 4096  # patches whose neighbour lists are held at once


def grid_step(xy: np.ndarray) -> float:
    """The patch grid's step (the stride): the smallest non-zero difference between corner coordinates in x or y
    (0 when all corners share both coordinates)."""
    pts = np.asarray(xy, dtype=np.float64)
    steps = [np.diff(np.unique(pts[:, i])) for i in (0, 1)]
    pos = np.concatenate(steps) if len(pts) else np.zeros(0)
    return float(pos.min()) if len(pos) else 0.0


def default_radius(xy: np.ndarray) -> float:
    """:data:`LOCAL_RADIUS`, or 2 grid steps where the grid is coarser (24 neighbours). At stride 64 (every 2nd grid
    point of the λ mosaics, craters ≥ 32 px) a 96 px radius, the 8 adjacent patches, gives the higher AP (2.44× vs
    2.31× at 128 px, 2.23× at 192 px), but the planted blocks need the larger neighbourhood: with the error weight
    0.5 all three are found on 5 of the 6 validation frames (64-px grids) at 128 px, on 4 at 96 px; a 96 px radius
    would need weight 1 and cost crater AP at stride 32 (2.44× → 1.83×). ``benchmarks.local_z_validation``."""
    return max(float(LOCAL_RADIUS), 2.0 * grid_step(xy))


def local_z(
    latents: np.ndarray,
    xy: np.ndarray,
    radius: float | None = None,
    floor: float = MAD_FLOOR,
    exclude: float = 0.0,
    resolution_floor: bool = True,
    threads: int = 2,
) -> np.ndarray:
    """(N, D) latents of one frame's patches at (N, 2) patch corners (x, y) -> (N,) local-z novelty scores.

    ``radius`` (px, in x and in y) defaults to :func:`default_radius`; neighbours within ``exclude`` px in both x
    and y are left out as well as the patch itself (0, the default: only the patch itself; the validation study
    compares larger values). A patch with no neighbour left scores 0 (nothing to compare it with). The MAD of a
    dimension is floored at ``floor`` and (``resolution_floor``, the default; off only to measure what it changes)
    at the dimension's :func:`value_resolution` (quantised latents). ``threads``: blocks of patches are scored on
    that many threads (numpy's sort releases the GIL; the scores do not depend on it)."""
    mu = np.asarray(latents, dtype=np.float32)  # the models' own precision; float64 only per gathered block
    pts = np.asarray(xy, dtype=np.float64)
    if mu.ndim != 2:
        raise ValueError(f"local z needs (N, D) latents, got shape {mu.shape}")
    if pts.shape != (len(mu), 2):
        raise ValueError(f"local z needs one (x, y) corner per latent: {pts.shape} corners for {len(mu)} latents")
    if not (np.isfinite(mu).all() and np.isfinite(pts).all()):
        raise ValueError("local z: latents or corners hold NaN or infinity")
    if radius is None:
        radius = default_radius(pts) if len(pts) else float(LOCAL_RADIUS)
    if not radius > 0 or not floor > 0 or not 0 <= exclude < radius:
        raise ValueError(f"local z needs radius > 0, floor > 0 and 0 <= exclude < radius: {radius}, {floor}, {exclude}")
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    out = np.zeros(len(mu), dtype=np.float64)
    if len(mu) < 2:
        return out
    import concurrent.futures as cf

    from scipy.spatial import cKDTree

    tree = cKDTree(pts)
    dim = mu.shape[1]
    centres = window_centres(pts, radius)
    floors = np.maximum(value_resolution(mu), floor) if resolution_floor else np.full(dim, float(floor))  # (D,)

    def score_block(rows: np.ndarray, nbrs: np.ndarray) -> None:
        ref = mu[nbrs]  # (m, k, D) float32: sorted 4x faster than float64
        med = _median_axis1(ref)
        mad = 1.4826 * _median_axis1(np.abs(ref - med[:, None, :].astype(np.float32)))
        z = (mu[rows].astype(np.float64) - med) / np.maximum(mad, floors)
        out[rows] = np.sqrt((z * z).sum(axis=1))  # blocks write disjoint rows

    with cf.ThreadPoolExecutor(threads, thread_name_prefix="edgeae-localz") as pool:
        for a in range(0, len(mu), _CHUNK_QUERIES):  # neighbour lists of a bounded number of patches at a time
            rows_all = np.arange(a, min(a + _CHUNK_QUERIES, len(mu)))
            found = tree.query_ball_point(centres[rows_all], r=radius, p=np.inf)
            lists = [_neighbours(pts, int(i), nb, exclude) for i, nb in zip(rows_all, found, strict=True)]
            counts = np.array([len(nb) for nb in lists])
            # patches with the same number of neighbours are scored together: one median over a (m, k, D) block
            jobs = []
            for k in np.unique(counts[counts > 0]):
                pick = np.flatnonzero(counts == k)
                step = max(1, _CHUNK_VALUES // (int(k) * dim * threads))  # ≤ 32 MB gathered over all threads
                for b in range(0, len(pick), step):
                    sub = pick[b : b + step]
                    jobs.append(pool.submit(score_block, rows_all[sub], np.stack([lists[i] for i in sub])))
            for job in jobs:
                job.result()  # re-raises a block's error
    return out


def value_resolution(values: np.ndarray) -> np.ndarray:
    """(N, D) -> (D,) float64: each column's resolution, the smallest gap between its distinct values (0 for a column
    with one value). Latents from an int8 artifact come in steps of the output's quantisation scale (about 0.05 for
    the zoo VAE): among a patch's neighbours more than half often share one step, their MAD is then 0, and one step
    of difference would count as hundreds of z (the first ``edgeae scan --score local-z`` with the int8 VAE ranked
    such patches first on a plain lunar image). Float32 latents resolve far finer than :data:`MAD_FLOOR`, so this
    changes nothing for them."""
    v = np.asarray(values)
    out = np.zeros(v.shape[1] if v.ndim == 2 else 0, np.float64)
    for a in range(0, len(out), 16):  # a few columns at a time: one sorted copy of a strip's latents is 67 MB
        s = np.sort(v[:, a : a + 16], axis=0).astype(np.float64)
        gaps = np.diff(s, axis=0)
        gaps[gaps <= 0] = np.inf
        best = gaps.min(axis=0) if len(gaps) else np.full(s.shape[1], np.inf)
        out[a : a + 16] = np.where(np.isfinite(best), best, 0.0)
    return out


def window_centres(pts: np.ndarray, radius: float) -> np.ndarray:
    """Where each patch's neighbourhood window is centred: on the patch, but moved inward near the frame's edges
    (per axis, by at most ``radius``) so that the window stays inside the frame and an edge or corner patch is
    compared with as many patches as an interior one. (Centred on the patch, a corner patch at stride 64 had 8
    neighbours instead of 24, their MAD came out small and 15 of the top 16 patches of a NAC-size strip were on
    its border.) A frame narrower than the window: the frame's middle."""
    lo, hi = pts.min(axis=0) + radius, pts.max(axis=0) - radius
    mid = (pts.min(axis=0) + pts.max(axis=0)) / 2.0
    return np.where(lo <= hi, np.clip(pts, np.minimum(lo, hi), np.maximum(lo, hi)), mid)


def _neighbours(pts: np.ndarray, i: int, found: list[int], exclude: float) -> np.ndarray:
    """The indices in ``found`` other than ``i``, less those within ``exclude`` px of patch ``i`` in x and y."""
    nb = np.asarray([j for j in found if j != i], dtype=np.int64)
    if exclude > 0 and len(nb):
        nb = nb[np.abs(pts[nb] - pts[i]).max(axis=1) > exclude]
    return nb


def _median_axis1(block: np.ndarray) -> np.ndarray:
    """(m, k, D) float32 -> (m, D) float64 median over axis 1, by sorting (numpy's float32 sort is vectorised and
    several times faster than ``np.median``'s selection on these small axes)."""
    k = block.shape[1]
    s = np.sort(block, axis=1)
    return 0.5 * (s[:, (k - 1) // 2].astype(np.float64) + s[:, k // 2].astype(np.float64))


def local_novelty(
    latents: np.ndarray,
    rec: np.ndarray,
    xy: np.ndarray,
    radius: float | None = None,
    rec_weight: float = REC_WEIGHT,
    resolution_floor: bool = True,
) -> np.ndarray:
    """The ``local z (mu, rec)`` candidate of one frame: max(‖local z(μ)‖ / √D, ``rec_weight`` · |local z(log rec)|).

    μ carries a patch's brightness and shape but hardly its fine texture (the VAE rebuilds a 4-px checkerboard as
    flat grey); its reconstruction error ``rec`` carries the texture. Each is compared with the patch's surroundings
    and the larger, on a common scale (a z of one dimension vs the length of D of them over √D), is the score.
    ``resolution_floor``: see :func:`local_z`."""
    mu = np.asarray(latents)  # local_z reads it as float32: no float64 copy of a strip's latents here
    r = np.asarray(rec, dtype=np.float64).reshape(-1)
    if mu.ndim != 2 or r.shape != (len(mu),):
        raise ValueError(f"local novelty needs (N, D) latents and (N,) errors, got {mu.shape} and {r.shape}")
    if not rec_weight >= 0:
        raise ValueError(f"rec_weight must be >= 0, got {rec_weight}")
    if not np.isfinite(r).all() or (r < 0).any():
        raise ValueError("local novelty: reconstruction errors must be finite and >= 0")
    z_mu = local_z(mu, xy, radius, resolution_floor=resolution_floor) / np.sqrt(max(mu.shape[1], 1))
    if rec_weight == 0:
        return z_mu
    z_rec = local_z(np.log(np.maximum(r, 1e-12))[:, None], xy, radius, resolution_floor=resolution_floor)
    return np.maximum(z_mu, rec_weight * z_rec)


def frames_local_novelty(
    latents: list[np.ndarray], recs: list[np.ndarray], corners: list[np.ndarray], rec_weight: float = REC_WEIGHT
) -> list[np.ndarray]:
    """:func:`local_novelty` of each frame on its own."""
    if not len(latents) == len(recs) == len(corners):
        raise ValueError(f"local novelty: {len(latents)} latent, {len(recs)} error and {len(corners)} corner arrays")
    return [local_novelty(m, r, c, rec_weight=rec_weight) for m, r, c in zip(latents, recs, corners, strict=True)]


def local_z_bytes(patches: int, latent: int) -> int:
    """What local z holds for an image of ``patches`` patches: each patch's error and ``latent`` latents, float32."""
    return int(patches) * (int(latent) + 1) * 4


def check_local_z_size(name: str, nbytes: int) -> None:
    """Raise when one image's local-z latents (``nbytes``) would pass :data:`LOCAL_Z_MAX_BYTES`."""
    if nbytes > LOCAL_Z_MAX_BYTES:
        raise ValueError(
            f"{name}: --score local-z holds every patch's latents until the image is done; this image needs "
            f"{nbytes / 2**20:.0f} MiB of them, over the {LOCAL_Z_MAX_BYTES >> 20} MiB limit (LOCAL_Z_MAX_BYTES): "
            "use a larger --stride, or --score a or terms-max"
        )
