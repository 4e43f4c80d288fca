from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgeae.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from edgeae.metadata import MetadataError, ModelMetadata  # noqa: E402
from edgeae.models.cae import CAE, CAEConfig, count_parameters  # noqa: E402
from edgeae.predictor import load_predictor  # noqa: E402


def test_published_parameter_counts() -> None:
    assert count_parameters(CAE(CAEConfig(channels=3))) == 342_339
    assert count_parameters(CAE(CAEConfig(channels=1))) == 341_761


def test_round_trip(tmp_path: Path) -> None:
    cfg = CAEConfig(channels=1, widths=(4, 8, 8, 8))
    torch.manual_seed(0)
    model = CAE(cfg)
    meta = ModelMetadata(kind="cae", architecture=cfg.to_dict(), input_shape=(-1, 1, 128, 128), channels=1)
    path = save_checkpoint(tmp_path / "m.pt", model, meta, metrics={"val_mse": 0.01})
    ck = load_checkpoint(path)
    assert ck.metadata == meta and ck.metrics == {"val_mse": 0.01}
    x = np.random.default_rng(0).random((2, 1, 128, 128), dtype=np.float32)
    pred = load_predictor(path)
    with torch.inference_mode():
        ref = model.eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(pred(x), ref)
    with pytest.raises(MetadataError, match="axis 1"):
        pred(np.zeros((1, 3, 128, 128), np.float32))


def test_foreign_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "none.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(MetadataError, match="not a readable edgeae checkpoint"):
        load_checkpoint(bad)
    plain = tmp_path / "plain.pt"
    torch.save({"weights": 1}, plain)
    with pytest.raises(MetadataError, match="no edgeae metadata"):
        load_checkpoint(plain)
