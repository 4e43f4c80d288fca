"""The zoo moved out of the way and a tiny finished VAE run to install into it: shared by the zoo and training tests
(test_train_s32, test_zoo_s37_g2 and test_train_folder_s31 each wrote their own copy until session 38).

torch is imported inside :func:`vae_run`, so a test module's ``pytest.importorskip("torch")`` runs first."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def move_zoo(monkeypatch: Any, weights: Path, artifacts: Path, user: Path) -> Path:
    """Until ``monkeypatch`` is undone, the shipped zoo's folders are ``weights`` and ``artifacts`` and the user zoo
    ($EDGEAE_ZOO, edgeae.zoo.user) is ``user``: no test writes into the real zoo or the real user folder. Returns
    ``weights``."""
    from edgeae import zoo

    monkeypatch.setattr(zoo, "WEIGHTS_DIR", weights)
    monkeypatch.setenv("EDGEAE_ZOO", str(user))
    monkeypatch.setattr(zoo, "ARTIFACTS_DIR", artifacts)
    return weights


def vae_run(run: Path, seed: int = 0, extra: dict[str, Any] | None = None) -> Path:
    """``run/best.pt``: a tiny grey VAE (64-px patches, latent 8) of torch seed ``seed``, trained on data hash
    ``h{seed}``, beside a complete run's ``metrics.json`` (one epoch). ``extra``: its metadata's ``extra`` (default:
    data ``/data/x``; a folder run also records ``train_files`` and ``val_files``)."""
    import torch

    from edgeae.checkpoint import save_checkpoint
    from edgeae.metadata import ModelMetadata
    from edgeae.models.vae import VAE, VAEConfig

    cfg = VAEConfig(channels=1, widths=(4, 4, 4, 4), latent=8, patch=64)
    meta = ModelMetadata(kind="vae", architecture=cfg.to_dict(), input_shape=(-1, 1, 64, 64), channels=1,
                         training_data_hash=f"h{seed}", extra=extra or {"data": "/data/x"})  # fmt: skip
    torch.manual_seed(seed)
    ckpt = save_checkpoint(run / "best.pt", VAE(cfg), meta)
    (run / "metrics.json").write_text(json.dumps({"complete": True, "epochs_run": 1, "best_epoch": 1}))
    return ckpt
