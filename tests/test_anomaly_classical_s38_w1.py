"""Audit a2 finding 3 (session 38): the HiRISE ratios of the learned candidates were quoted against a bare patch std,
while the candidates' own pipelines (frame-z kNN, two-context kNN) run on classical patch features come a good part of
the way. The evaluation now ranks those classical analogues as baselines (edgeae.anomaly.classical): the same
functions, groups, views and normalisation as the learned candidates, on RX block means and on a patch-stats
descriptor."""

from __future__ import annotations

import numpy as np
import pytest

from edgeae.anomaly import baselines, classical
from edgeae.anomaly.eval_methods import BASELINES, CONTEXT_KNN, FRAME_Z_KNN, _methods, default_scorer, score_frame
from edgeae.anomaly.eval_report import acceptance
from edgeae.anomaly.scorer import PatchScorer
from edgeae.anomaly.views import dihedral


def _audit_stats(p: np.ndarray) -> np.ndarray:
    """The audit's per-patch descriptor (runs/s38/a2/hirise_classical_context.py), one (P, P) patch at a time."""
    side = p.shape[0]
    yy, xx = np.mgrid[:side, :side] - (side - 1) / 2
    rbins = np.minimum((np.hypot(yy, xx) / (side / 2) * 8).astype(int), 7)
    m, s = p.mean(), p.std() + 1e-6
    z = (p - m) / s
    gy, gx = np.gradient(p)
    g = np.hypot(gy, gx)
    spec = np.abs(np.fft.fftshift(np.fft.fft2(p - m))) ** 2
    rs = np.log1p(np.bincount(rbins.ravel(), spec.ravel(), 8) / np.bincount(rbins.ravel(), minlength=8))
    gh = np.histogram(g / (g.mean() + 1e-6), bins=[0, 0.5, 1, 2, np.inf])[0] / g.size
    return np.r_[m, s, np.quantile(z, [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 0.999]), g.mean(), rs, gh]


def test_patch_stats_is_the_audits_descriptor_per_channel_in_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    x = rng.random((7, 2, 32, 32)).astype(np.float32)
    x[2, 0] = 0.5  # a flat patch: std and gradient 0, divided by 1e-6, not by 0
    monkeypatch.setattr(classical, "STATS_CHUNK", 3)  # several FFT batches
    got = classical.patch_stats(x)
    assert got.shape == (7, 2 * classical.STATS_PER_CHANNEL) and classical.STATS_PER_CHANNEL == 23
    want = np.stack([np.r_[_audit_stats(p[0].astype(np.float64)), _audit_stats(p[1].astype(np.float64))] for p in x])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    assert np.isfinite(got).all() and got[2, 1] == pytest.approx(1e-6)  # the flat patch's std
    np.testing.assert_array_equal(classical.patch_stats(x[:, 0]), got[:, :23])  # (N, P, P): one channel
    with pytest.raises(ValueError, match=r"square patches .* got \(3, 1, 8, 6\)"):
        classical.patch_stats(np.zeros((3, 1, 8, 6)))


def test_block_views_are_the_rx_features_of_each_view() -> None:
    x = np.random.default_rng(1).random((5, 1, 16, 16)).astype(np.float32)
    v = classical.block_views(x, 8)
    assert v.shape == (5, 8, 64) and v.dtype == np.float32
    for g in range(8):
        np.testing.assert_allclose(v[:, g], baselines.rx_features(dihedral(x, g)), rtol=1e-6)
    np.testing.assert_allclose(v[:, 0], baselines.rx_features(x), rtol=1e-6)


def _features(seed: int = 2) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray], list[str]]:
    rng = np.random.default_rng(seed)
    sizes = (30, 25, 40)
    blocks = [rng.random((n, 6)) + 0.3 * i for i, n in enumerate(sizes)]
    views = [np.stack([b, b[:, ::-1]], axis=1) for b in blocks]  # (N, 2, D): two views
    stats = [rng.random((n, 5)) for n in sizes]
    return blocks, views, stats, ["p1", "p1", "p2"]


def test_classical_context_methods_are_the_learned_pipelines_applied_to_the_features() -> None:
    blocks, views, stats, groups = _features()
    got = classical.context_methods(blocks, stats, groups, views=views)
    assert list(got) == list(classical.METHODS)
    floor = baselines.LATENT_MAD_FLOOR
    want = {
        classical.FRAME_Z_BLOCKS: baselines.frame_z_knn(blocks, floor=floor),  # view 0, as frame-z kNN (mu)
        classical.CONTEXT_BLOCKS: baselines.context_knn(views, groups),  # every view, as two-context kNN (mu)
        classical.FRAME_Z_STATS: baselines.frame_z_knn(stats, floor=floor),
        classical.CONTEXT_STATS: baselines.context_knn(stats, groups),
    }
    for name, parts in want.items():
        np.testing.assert_array_equal(got[name], np.concatenate(parts), err_msg=name)
    # pooled (a dataset scaled over all frames together): one frame, one context, as the learned candidates
    pooled = classical.context_methods(blocks, stats, groups, pooled=True)
    np.testing.assert_array_equal(
        pooled[classical.FRAME_Z_BLOCKS], np.concatenate(baselines.frame_z_knn(blocks, pooled=True, floor=floor))
    )
    np.testing.assert_array_equal(
        pooled[classical.CONTEXT_STATS], baselines.context_knn([np.concatenate(stats)], None)[0]
    )
    with pytest.raises(ValueError, match=r"block means, stats \(and views\) of each frame: got \(3, 2, None\)"):
        classical.context_methods(blocks, stats[:2], groups)


def _predict(x: np.ndarray) -> dict[str, np.ndarray]:
    """A stand-in VAE (numpy): latents of patch statistics, the patch mean as its reconstruction."""
    flat = x.reshape(len(x), -1).astype(np.float64)
    mu = np.stack([flat.mean(1), flat.std(1), flat.max(1), np.abs(np.diff(x, axis=-1)).reshape(len(x), -1).mean(1)], 1)
    x_hat = np.broadcast_to(x.mean(axis=(2, 3), keepdims=True), x.shape)
    return {"score": ((x - x_hat) ** 2).reshape(len(x), -1).sum(1), "x_hat": x_hat, "mu": mu}


@pytest.mark.parametrize("views", [1, 8])
def test_the_evaluation_ranks_the_classical_analogues_beside_the_learned_candidates(views: int) -> None:
    rng = np.random.default_rng(3)
    vae = PatchScorer(_predict, kind="vae", channels=1, keep_latents=True, views=views)
    ms = default_scorer("hirise_landmarks")
    frames = []
    for i in range(4):
        pix = (rng.random((96, 96, 1)) * (0.2 + 0.1 * i)).astype(np.float32)
        frames.append(score_frame(pix, np.ones((96, 96), bool), vae, ms, 32, 16, name=f"c{i}.png"))
    groups = ["a", "a", "b", "b"]
    m = _methods(vae, frames, ms, 0, groups, dataset="hirise_landmarks")
    assert set(classical.METHODS) <= set(m) and set(classical.METHODS) <= set(BASELINES)
    assert {FRAME_Z_KNN, CONTEXT_KNN} <= set(m)
    f0 = frames[0]
    assert f0.stats.shape == (len(f0.result), 23)
    assert (f0.rx_views is None) == (views == 1)
    views_in = None if views == 1 else [f.rx_views for f in frames]
    want = classical.context_methods([f.rx_features for f in frames], [f.stats for f in frames], groups, views=views_in)
    for name in classical.METHODS:
        np.testing.assert_array_equal(m[name], want[name], err_msg=name)
    if views > 1:  # the two-context baseline takes every view's block means, as the candidate takes every view's mu
        assert f0.rx_views is not None and f0.rx_views.shape == (len(f0.result), 8, 64)
        one = classical.context_methods([f.rx_features for f in frames], [f.stats for f in frames], groups)
        assert not np.array_equal(one[classical.CONTEXT_BLOCKS], m[classical.CONTEXT_BLOCKS])


def test_the_issue_12_targets_check_each_candidate_against_the_classical_analogues() -> None:
    feat = "class 1 crater"
    aps = {CONTEXT_KNN: 0.342, "patch std": 0.145, classical.FRAME_Z_BLOCKS: 0.200, classical.CONTEXT_STATS: 0.208}
    rows = [{"feature": feat, "method": k, "ap": v, "improvement": v / 0.134, "auc": 0.7} for k, v in aps.items()]
    checks = {c["check"]: c for c in acceptance("hirise_landmarks", rows, CONTEXT_KNN)}
    assert set(checks) == {"AP vs patch std", f"AP vs {classical.FRAME_Z_BLOCKS}", f"AP vs {classical.CONTEXT_STATS}",
                           "ROC AUC"}  # fmt: skip
    assert checks[f"AP vs {classical.CONTEXT_STATS}"]["value"] == pytest.approx(0.342 / 0.208)
