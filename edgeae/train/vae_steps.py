"""The steps of the VAE training loop (:func:`edgeae.train.vae.train_vae`), as :mod:`edgeae.train.cae_steps` holds
the CAE's: the loss with its reparameterisation noise drawn from a seed, the seeds themselves, the atomic save of the
best weights (``best_state.pt``), the model that reads them back and the check that it holds a model's weights, the
warning for a run resumed across the change to whole batches, and the AP text of the calibration line.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from edgeae.train.vae_config import VAETrainConfig

log = logging.getLogger("edgeae.train.vae")  # the trainer's logger: its warnings keep the name they always had


def _losses(torch: Any, model: Any, x: Any, beta: float, eps_seed: int, autocast: Any) -> Any:
    """The loss to backpropagate: :meth:`edgeae.models.vae.VAE.training_losses` with ε drawn from ``eps_seed``
    (a CPU generator, so a run draws the same ε on every device) and the network under ``autocast``."""
    g = torch.Generator().manual_seed(int(eps_seed))
    return model.training_losses(x, beta, generator=g, autocast=autocast)["loss"]


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


def _save_best_weights(torch: Any, model: Any, path: Path) -> None:
    """Write the weights of ``model`` to ``path`` (``best_state.pt``) atomically, as CPU tensors."""
    from edgeae.atomic import atomic_path

    with atomic_path(path) as tmp:
        torch.save({k: v.detach().cpu().clone() for k, v in model.state_dict().items()}, tmp)


def _best_model(torch: Any, build: Any, path: Path) -> Any:
    """A new model (``build()``, on the CPU, in eval mode) holding the weights of ``path`` (``best_state.pt``); the
    throw-away initial weights leave the caller's RNG alone."""
    from edgeae.checkpoint import check_intact

    check_intact(path)  # torch.load never checks the records' CRC-32: a flipped byte would load as a weight
    with torch.random.fork_rng(devices=[]):
        best = build()
    best.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return best.eval()


def _holds_weights_of(torch: Any, model: Any, path: Path) -> bool:
    """Whether ``path`` (``best_state.pt``) holds exactly the trained weights of ``model`` (λ aside: calibration sets
    it, training does not); False when it is missing, unreadable or damaged (a record failing its CRC-32)."""
    from edgeae.checkpoint import damaged_record

    try:
        if damaged_record(path) is not None:
            return False
        saved = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # missing, cut short, not a state dict: not the weights
        return False
    own = {k: v for k, v in model.state_dict().items() if k != "score_lambda"}
    return (
        isinstance(saved, dict)
        and saved.keys() - {"score_lambda"} == own.keys()
        and all(saved[k].shape == v.shape and torch.equal(saved[k], v.detach().cpu()) for k, v in own.items())
    )


def _warn_best_weights(torch: Any, model: Any, state: Any, best_state: Path, out: Path) -> None:
    """Warn when a complete run resumed to more epochs restored the best epoch's weights from its ``last.pt`` where
    its last epoch was not the best, as an earlier edgeae completed VAE runs (``model``: the weights restored;
    ``best_state``: the best epoch's)."""
    done = state.epochs_done
    if state.best_epoch in (-1, done) or not _holds_weights_of(torch, model, best_state):
        return
    log.warning(
        "%s was completed by an earlier edgeae: its last.pt holds the weights of its best epoch %d, not of its last "
        "epoch %d, so epoch %d on trains from epoch %d's weights (with epoch %d's optimiser state) and the run will "
        "not end as an uninterrupted run would", out, state.best_epoch, done, done + 1, state.best_epoch, done,
    )  # fmt: skip


def _warn_crop_count(config: VAETrainConfig, state: Any, out: Path) -> None:
    """Warn when a resumed run started before an epoch was rounded down to whole batches (its ``last.pt`` records
    no crops per epoch) and its ``crops`` is no multiple of ``batch_size``: its earlier epochs drew all ``crops``,
    the last batch partial; the rest draw :attr:`VAETrainConfig.crops_per_epoch`, whole batches only."""
    if state.crops_per_epoch is not None or config.crops % config.batch_size == 0:
        return
    bs = config.batch_size
    log.warning(
        "%s started before an epoch was rounded down to whole batches: its epochs so far drew %d crops (%d batches, "
        "the last of %d), the rest of its epochs draw %d (%d batches of %d): a different crop count, so it will not "
        "end as an uninterrupted run of either version would", out, config.crops, -(-config.crops // bs),
        config.crops % bs, config.crops_per_epoch, config.crops_per_epoch // bs, bs,
    )  # fmt: skip


def _ap_text(ap: Any) -> str:
    return f"{ap:.3f}" if isinstance(ap, float) else "n/a"
