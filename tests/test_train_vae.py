"""VAE trainer: config defaults live in the library, the CLI is separate, a stopped run resumes exactly."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from edgeae.train.vae import VAETrainConfig


def test_training_code_does_not_import_its_cli() -> None:
    source = Path(__file__).resolve().parents[1] / "edgeae" / "train" / "vae.py"
    assert "edgeae.cli" not in source.read_text()


def test_config_channels_follow_the_data_and_old_configs_load() -> None:
    assert VAETrainConfig(out="x").n_channels == 1
    assert VAETrainConfig(out="x", data="rover_rgb_v2").n_channels == 3
    with pytest.raises(ValueError, match="channel"):
        VAETrainConfig(out="x", data="rover_rgb_v2", channels=1)
    with pytest.raises(ValueError, match="unknown VAE training data"):
        VAETrainConfig(out="x", data="nope")
    old = {"out": "x", "channels": 1, "widths": [8, 8, 8, 8], "hirise": True}  # no kind, fewer keys: it loads
    assert VAETrainConfig.from_dict(old).widths == (8, 8, 8, 8)
    # an unknown key is refused, not dropped: a CAE config (its mode, variant, ...) once loaded as a VAE's
    with pytest.raises(ValueError, match="does not know: removed_key"):
        VAETrainConfig.from_dict({**old, "removed_key": 1})
    with pytest.raises(ValueError, match="config of a CAE run"):
        VAETrainConfig.from_dict({"kind": "cae", "out": "x"})


def _stub_calibrate(*args: Any, **kwargs: Any) -> dict[str, Any]:
    return {"lambda": 0.0, "threshold": 1.0, "lambda_ap": 0.0, "lambda_feature": "stub"}


@pytest.mark.slow
def test_stopped_run_resumes_to_the_same_weights(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch = pytest.importorskip("torch")
    import edgeae.train.vae as tv

    monkeypatch.setattr(tv, "calibrate", _stub_calibrate)
    base = VAETrainConfig(
        out=str(tmp_path / "whole"), widths=(4, 4, 4, 4), latent=8, epochs=2, crops=96, batch_size=32,
        val_crops=32, hirise=False, threads=1, progress=False, data_root=str(data_root),
    )  # fmt: skip
    whole = tv.train_vae(base)
    assert whole["complete"] and whole["epochs_run"] == 2
    part = dataclasses.replace(base, out=str(tmp_path / "part"), time_budget=1e-9)
    first = tv.train_vae(part)  # stops after its first batch
    assert first["complete"] is False and first["batch"] == 1
    with pytest.raises(FileExistsError):
        tv.train_vae(part)
    done = tv.train_vae(dataclasses.replace(part, time_budget=None), resume=True)
    assert done["complete"] and len(done["segments"]) == 2
    a = torch.load(tmp_path / "whole" / "best_state.pt", weights_only=True)
    b = torch.load(tmp_path / "part" / "best_state.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert done["val_loss"] == pytest.approx(whole["val_loss"])


def test_shipped_rover_rgb_vae_matches_the_registry() -> None:
    pytest.importorskip("torch")
    from edgeae import zoo
    from edgeae.checkpoint import load_checkpoint
    from edgeae.models.vae import count_parameters

    entry = zoo.ZOO["rover-rgb-vae"]
    try:
        path = zoo.resolve("rover-rgb-vae")
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    assert path.stat().st_size <= 16 * 1024 * 1024
    ck = load_checkpoint(path)
    assert ck.metadata.kind == "vae" and ck.metadata.channels == 3
    assert count_parameters(ck.model) == entry["parameters"]
    assert ck.metadata.score["lambda"] >= 0 and ck.metadata.score["threshold"] > 0
    assert zoo.metrics("rover-rgb-vae")["calibration"]["lambda_feature"].startswith("MSL hardware")
