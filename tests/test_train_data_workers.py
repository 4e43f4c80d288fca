"""Training data drawn in threads (``--data-workers``, for a GPU that outruns one core): crops deterministic for a
given worker count, the masked inputs identical with and without threads, a run with workers reproducible and
resumable, and runs saved before the option existed still resumable."""

from __future__ import annotations

import json
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")

from test_train_resume import _config, _images  # noqa: E402  (the tiny run of the resume tests)

from edgeae.train.cae import CAETrainConfig, _masked_batches, train_cae  # noqa: E402
from edgeae.train.crops import Augment, MasterImage, _affine, sample_crops  # noqa: E402


def _master(moon: np.ndarray) -> MasterImage:
    pix = (moon.astype(np.float32) / 255.0)[:, :, None]
    valid = np.ones(moon.shape, dtype=bool)
    valid[:, 400:] = False  # no-data on the right: crops must avoid it in every worker
    pix = np.where(valid[:, :, None], np.maximum(pix, 0.1), 0.0).astype(np.float32)
    return MasterImage(pixels=pix, valid=valid, path=Path("moon"))


def test_threaded_crops_are_deterministic_and_valid(moon: np.ndarray) -> None:
    master = _master(moon)
    a = sample_crops([master], 10, 64, np.random.default_rng(7), workers=3)
    b = sample_crops([master], 10, 64, np.random.default_rng(7), workers=3)
    one = sample_crops([master], 10, 64, np.random.default_rng(7))
    assert a.shape == one.shape == (10, 1, 64, 64)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, one)  # another stream: the worker count is part of a run's recipe
    assert a.min() >= 0.1 - 1e-6  # no crop reached the no-data part
    assert len({a[i].tobytes() for i in range(10)}) == 10  # the shares do not repeat each other
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="workers"):
            sample_crops([master], 4, 64, np.random.default_rng(0), workers=bad)  # type: ignore[arg-type]


def test_affine_matches_the_matrix_product() -> None:
    """The written-out warp matrix is rotation @ shear @ flip with the same random draws as before."""
    aug = Augment()
    r1, r2 = np.random.default_rng(3), np.random.default_rng(3)
    for _ in range(50):
        got = _affine(128, (200.0, 310.0), aug, r1)
        theta = math.radians(r2.uniform(-aug.rotation_deg, aug.rotation_deg))
        shear = r2.uniform(-aug.shear, aug.shear)
        flip = -1.0 if r2.random() < 0.5 else 1.0
        c, s = math.cos(theta), math.sin(theta)
        a = np.array([[c, -s], [s, c]]) @ np.array([[1.0, shear], [0.0, 1.0]]) @ np.array([[flip, 0.0], [0.0, 1.0]])
        shift = r2.uniform(-aug.shift, aug.shift, size=2) * 128
        t = np.array([310.0, 200.0]) + shift - a @ np.array([63.5, 63.5])
        np.testing.assert_allclose(got, np.hstack([a, t[:, None]]), rtol=0, atol=1e-9)


def test_masked_batches_are_the_same_with_and_without_threads(moon: np.ndarray) -> None:
    crops = sample_crops([_master(moon)], 24, 32, np.random.default_rng(1))
    config = CAETrainConfig(data="x", out="y", tile=32, batch_size=5, data_workers=3, widths=(4, 8))
    perm = np.random.default_rng(2).permutation(24)
    spec = config.corruption
    plain = list(_masked_batches(crops, perm, range(0, 4), config, spec, 3, None))
    with ThreadPoolExecutor(3) as pool:
        threaded = list(_masked_batches(crops, perm, range(0, 4), config, spec, 3, pool))
    assert len(plain) == len(threaded) == 4
    for (i1, x1), (i2, x2) in zip(plain, threaded, strict=True):
        assert np.array_equal(i1, i2) and np.array_equal(x1, x2)
    assert [len(i) for i, _ in plain] == [5, 5, 5, 5]
    with pytest.raises(ValueError, match="data_workers"):
        CAETrainConfig(data="x", out="y", data_workers=0)


def test_a_run_with_workers_is_reproducible(tmp_path: Path) -> None:
    data = _images(tmp_path / "data")
    a = train_cae(_config(data, tmp_path / "a", epochs=1, data_workers=2))
    b = train_cae(_config(data, tmp_path / "b", epochs=1, data_workers=2))
    assert a["complete"] and a["val_loss"] == b["val_loss"]
    assert json.loads((tmp_path / "a" / "config.json").read_text())["data_workers"] == 2


def test_runs_saved_before_data_workers_existed_still_resume(tmp_path: Path) -> None:
    data = _images(tmp_path / "data")
    out = tmp_path / "old"
    train_cae(_config(data, out, epochs=2, time_budget=1e-9))
    blob = torch.load(out / "last.pt", map_location="cpu", weights_only=False)
    del blob["config"]["data_workers"]  # as written by an earlier edgeae
    torch.save(blob, out / "last.pt")
    cfg_json = json.loads((out / "config.json").read_text())
    del cfg_json["data_workers"]
    (out / "config.json").write_text(json.dumps(cfg_json))
    resumed = train_cae(_config(data, out, epochs=2), resume=True)
    assert resumed["complete"] and resumed["epochs_run"] == 2
