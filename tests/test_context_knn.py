"""The ``two-context kNN (mu)`` candidate (frame and product contexts) and latents averaged over patch views."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeae.anomaly import baselines
from edgeae.anomaly.score import PatchScorer
from edgeae.anomaly.views import VIEWS, dihedral


def test_dihedral_views_are_the_eight_rotations_and_flips() -> None:
    x = np.arange(2 * 1 * 4 * 4, dtype=np.float32).reshape(2, 1, 4, 4)
    views = [dihedral(x, g) for g in range(VIEWS)]
    assert np.array_equal(views[0], x)
    assert np.array_equal(views[1][0, 0], np.rot90(x[0, 0]))
    assert np.array_equal(views[4][0, 0], x[0, 0, :, ::-1])
    assert len({v.tobytes() for v in views}) == VIEWS  # an asymmetric patch: eight different views
    with pytest.raises(ValueError, match=r"0\.\.7"):
        dihedral(x, 8)
    with pytest.raises(ValueError, match="square"):
        dihedral(np.zeros((1, 1, 4, 6)), 1)


class _FakeVAE:
    """mu = per-channel quadrant means (orientation-dependent), x_hat = x, score = sum of mu."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, x: np.ndarray) -> dict[str, Any]:
        self.calls.append(len(x))
        h = x.shape[-1] // 2
        mu = np.stack([x[:, 0, :h, :h].mean((1, 2)), x[:, 0, :h, h:].mean((1, 2)), x[:, 0, h:, :h].mean((1, 2))], 1)
        return {"mu": mu, "x_hat": x, "score": mu.sum(1)}


def test_patch_scorer_views_add_each_views_latents_and_keep_view_0_outputs() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((5, 1, 8, 8)).astype(np.float32)
    fake = _FakeVAE()
    one = PatchScorer(fake, kind="vae", channels=1, keep_latents=True)(x)
    fake8 = _FakeVAE()
    eight = PatchScorer(fake8, kind="vae", channels=1, keep_latents=True, views=8)(x)
    assert fake8.calls == [5] * 8  # one model call per view: none larger than the batch
    assert eight["mu_views"].shape == (5, 8, 3)
    assert np.allclose(eight["mu_views"][:, 0], one["mu"]) and np.allclose(eight["mu"], one["mu"])
    assert np.allclose(eight["score"], one["score"]) and np.allclose(eight["rec"], one["rec"])
    rot = PatchScorer(_FakeVAE(), kind="vae", channels=1, keep_latents=True)(dihedral(x, 3))
    assert np.allclose(eight["mu_views"][:, 3], rot["mu"])  # view g is the patch turned by g
    with pytest.raises(ValueError, match="keeps its latents"):
        PatchScorer(fake, kind="vae", channels=1, views=8)
    with pytest.raises(ValueError, match="1 to 8"):
        PatchScorer(fake, kind="vae", channels=1, keep_latents=True, views=9)
    with pytest.raises(ValueError, match="keeps its latents"):
        PatchScorer(fake, kind="cae", channels=1, keep_latents=True, views=2)


def _crops(rng: np.random.Generator, n: int = 30, k: int = 9, d: int = 5) -> list[np.ndarray]:
    # each crop has its own offset (its illumination), as crops of one product differ
    return [rng.normal(0, 1, size=(k, d)) + rng.normal(0, 0.3, size=d) for _ in range(n)]


def test_context_knn_product_context_finds_a_crop_filling_feature() -> None:
    rng = np.random.default_rng(1)
    crops = _crops(rng)
    crops[3] = crops[3] + 4.0  # a feature that fills crop 3: every patch of it moved (fewer patches than k)

    def above(s: list[np.ndarray]) -> int:  # crops whose highest patch outscores crop 3's
        return int((np.array([c.max() for c in s]) > s[3].max()).sum())

    group_only = baselines.context_knn(crops, k=10, weights=(0.0, 1.0))
    assert above(baselines.frame_z_knn(crops, k=10)) >= 10  # scaled within its crop, the feature cancels
    assert above(group_only) == 0 and above(baselines.context_knn(crops, k=10)) == 0
    # only the group context: the same as a kNN on latents scaled over the whole group
    ref = baselines.knn_distance(baselines.robust_z(np.concatenate(crops)), 10)
    assert np.allclose(baselines.robust_z(ref[:, None])[:, 0], np.concatenate(group_only))


def test_context_knn_frame_context_and_groups() -> None:
    rng = np.random.default_rng(2)
    crops = _crops(rng)
    crops[5][7] += 6.0  # a single odd patch
    s = baselines.context_knn(crops, k=10)
    assert int(np.argmax(np.concatenate(s))) == 5 * 9 + 7
    # two products: a crop-filling feature is found against its own product (``groups``), not against both
    a_crops, b_crops = _crops(rng), [c * 3.0 + 10.0 for c in _crops(rng)]
    a_crops[3] = a_crops[3] + 4.0
    groups = ["A"] * 30 + ["B"] * 30
    grouped = baselines.context_knn(a_crops + b_crops, groups=groups, k=10, weights=(0.0, 1.0))
    pooled = baselines.context_knn(a_crops + b_crops, k=10, weights=(0.0, 1.0))
    # scaled over its own product crop 3 comes first; scaled over both products (the spread of B dominates) it
    # is lost among B's crops
    assert int(np.argmax([c.max() for c in grouped])) == 3
    assert int((np.array([c.max() for c in pooled]) > pooled[3].max()).sum()) >= 10
    # views: identical views give the one-view scores
    same = baselines.context_knn([np.repeat(c[:, None], 4, axis=1) for c in crops], k=10)
    assert np.allclose(np.concatenate(same), np.concatenate(baselines.context_knn(crops, k=10)))
    empty = baselines.context_knn([crops[0], np.zeros((0, 5)), crops[1]], k=10)
    assert empty[1].shape == (0,) and empty[0].shape == (9,)


def test_context_knn_refuses_bad_input() -> None:
    a = np.zeros((10, 4))
    with pytest.raises(ValueError, match="group labels"):
        baselines.context_knn([a, a], groups=["x"])
    with pytest.raises(ValueError, match="latents per frame"):
        baselines.context_knn([a, np.zeros((10, 5))])
    with pytest.raises(ValueError, match="weights"):
        baselines.context_knn([a, a], weights=(0.0, 0.0))
    with pytest.raises(ValueError, match="latents per frame"):
        baselines.context_knn([])
    with pytest.raises(ValueError, match="NaN"):
        baselines.context_knn([np.full((10, 4), np.nan), a])


def test_score_cli_context_knn_with_views(tmp_path: Path, moon: np.ndarray) -> None:
    """`edgeae score --score context-knn --views 8` ranks the images given together; --views needs context-knn."""
    from edgeae.anomaly.score import read_csv
    from edgeae.cli import main
    from edgeae.imageio import write_image

    a = write_image(tmp_path / "a.png", moon[:192, :192])
    b = write_image(tmp_path / "b.png", moon[256:448, 256:448])
    out = tmp_path / "c.csv"
    argv = ["score", str(a), str(b), "--model", "orbital-gray-vae", "--stride", "32", "--no-progress", "--threads", "2"]
    assert main([*argv, "--score", "context-knn", "--views", "8", "-o", str(out)]) == 0
    rows = read_csv(out)
    assert len(rows) == 2 * 25 and all(np.isfinite(r[3]) for r in rows)
    one = tmp_path / "c1.csv"
    assert main([*argv, "--score", "context-knn", "-o", str(one)]) == 0
    assert [r[:3] for r in read_csv(one)] == [r[:3] for r in rows]  # the same patches
    assert [r[3] for r in read_csv(one)] != [r[3] for r in rows]  # views change the latents
    assert main([*argv, "--views", "8", "-o", str(out)]) == 2  # views only average latents for context-knn
    # --group: each image its own product, so the two contexts coincide and the ranking is frame-z-knn's
    own, fz = tmp_path / "own.csv", tmp_path / "fz.csv"
    assert main([*argv, "--score", "context-knn", "--group", "^[ab]", "-o", str(own)]) == 0
    assert main([*argv, "--score", "frame-z-knn", "-o", str(fz)]) == 0
    order = [np.argsort([r[3] for r in read_csv(f)], kind="stable") for f in (own, fz)]
    assert np.array_equal(order[0], order[1])
    assert main([*argv, "--score", "context-knn", "--group", "^c", "-o", str(own)]) == 2  # a.png has no product
    assert main([*argv, "--score", "context-knn", "--group", "(", "-o", str(own)]) == 2  # not a regex
    assert main([*argv, "--group", "^[ab]", "-o", str(own)]) == 2  # --group is for context-knn


def test_score_cli_set_rankings_are_bounded_before_scoring(
    tmp_path: Path, moon: np.ndarray, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A set ranking holds every image's latents: too many patches are refused before any is scored."""
    from edgeae.anomaly import context
    from edgeae.cli import main
    from edgeae.imageio import write_image

    a = write_image(tmp_path / "a.png", moon[:192, :192])
    b = write_image(tmp_path / "b.png", moon[:192, :192])  # another file (one given twice is scored once)
    argv = ["score", str(a), str(b), "--model", "orbital-gray-vae", "--stride", "32", "--no-progress"]
    # 2 x 25 patches x 8 views x 256 latents x 4 bytes = 400 KiB: over a 300 KiB limit, under it with one view
    monkeypatch.setattr(context, "LOCAL_Z_MAX_BYTES", 300 << 10)
    out = str(tmp_path / "s.csv")
    assert main([*argv, "--score", "context-knn", "--views", "8", "-o", out]) == 2
    assert "50 patches" in capsys.readouterr().err
    assert main([*argv, "--score", "context-knn", "-o", out]) == 0


def test_context_knn_scales_are_floored_on_nearly_flat_frames() -> None:
    """A frame whose patches are nearly all alike (a flat colour map: float noise around one latent) must not blow
    that noise up into huge scores; the few patches that do differ still rank first."""
    rng = np.random.default_rng(7)
    flat = np.ones((60, 8)) + rng.normal(0, 1e-7, size=(60, 8))  # MADs of float noise only
    flat[:4] += rng.normal(0, 1.0, size=(4, 8))  # four patches of another colour
    (s,) = baselines.context_knn([flat], k=5)
    assert set(np.argsort(s)[-4:]) == {0, 1, 2, 3}
    assert s.max() < 1e5  # the noise would otherwise be scaled by its own 1e-7 MAD
    (fz,) = baselines.frame_z_knn([flat], k=5, floor=baselines.LATENT_MAD_FLOOR)  # as evaluate and the CLI call it
    (raw,) = baselines.frame_z_knn([flat], k=5)  # floor 0 (the default, for features on another scale)
    assert set(np.argsort(fz)[-4:]) == {0, 1, 2, 3} and fz.max() < 1e5 < raw.max()
    _, scale = baselines.robust_scale(np.zeros((5, 2)), 1e-3)
    assert np.all(scale == 1.0)  # a constant column is still scaled by 1, not by the floor


def test_bank_knn_distance_leaves_each_bank_row_out_and_equals_the_exact_knn_on_a_full_bank() -> None:
    rng = np.random.default_rng(4)
    f = rng.normal(size=(60, 5))
    every = np.arange(60)
    assert np.allclose(baselines.bank_knn_distance(f, every, 7), baselines.knn_distance(f, 7))
    bank = np.arange(0, 60, 3)
    d = baselines.bank_knn_distance(f, bank, 4)
    for i in (0, 1, 30, 59):  # a bank row against the other bank rows; any other row against all bank rows
        ref = np.sort(np.linalg.norm(f[bank] - f[i], axis=1))
        ref = ref[1:5] if i in bank else ref[:4]
        assert d[i] == pytest.approx(ref.mean())
    with pytest.raises(ValueError, match="sorted, distinct"):
        baselines.bank_knn_distance(f, np.array([3, 1, 2]))
    with pytest.raises(ValueError, match="sorted, distinct"):
        baselines.bank_knn_distance(f, np.array([1, 60]))
    with pytest.raises(ValueError, match=">= 2 bank rows"):
        baselines.bank_knn_distance(f, np.array([1]))


def test_context_knn_measures_a_large_set_against_a_sample_of_it() -> None:
    """Over ``bank`` patches the set is measured against a seeded uniform sample of itself: the same scores for
    the same seed, exact at or under the bank size, and an odd patch still found."""
    rng = np.random.default_rng(5)
    crops = _crops(rng)
    crops[5][7] += 6.0
    n = sum(len(c) for c in crops)
    exact = np.concatenate(baselines.context_knn(crops, k=10))
    assert np.array_equal(np.concatenate(baselines.context_knn(crops, k=10, bank=n)), exact)
    sampled = np.concatenate(baselines.context_knn(crops, k=10, bank=n // 3, seed=1))
    assert np.array_equal(sampled, np.concatenate(baselines.context_knn(crops, k=10, bank=n // 3, seed=1)))
    assert not np.allclose(sampled, exact)
    assert int(np.argmax(sampled)) == 5 * 9 + 7
    assert np.corrcoef(sampled, exact)[0, 1] > 0.9
    with pytest.raises(ValueError, match="at least 2"):
        baselines.context_knn(crops, bank=1)


def test_frame_latent_z_is_the_frame_context_of_context_knn() -> None:
    rng = np.random.default_rng(6)
    z = rng.normal(size=(30, 4)).astype(np.float32)
    np.testing.assert_allclose(baselines.frame_latent_z(z), baselines.robust_z(z, baselines.LATENT_MAD_FLOOR))
    views = np.stack([z, 2 * z + 1], axis=1)  # a second view on another scale: the same z once scaled (float32)
    np.testing.assert_allclose(baselines.frame_latent_z(views), baselines.frame_latent_z(z), atol=1e-5)
    with pytest.raises(ValueError, match="N >= 1"):
        baselines.frame_latent_z(np.zeros((0, 4)))
