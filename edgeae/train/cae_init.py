"""Warm starts of the CAE trainer (``--init CHECKPOINT``): the checks that the checkpoint is a CAE of exactly this
run's architecture, the loading of its weights (a fine-tune: optimiser and schedule start afresh) and the
validation seed of the run that made it (:func:`init_val_seed`), so a fine-tune can validate on the same crops.
"""

from __future__ import annotations

import logging
import os
from typing import Any

log = logging.getLogger("edgeae.train.cae")  # the trainer's logger: its lines keep the name they always had


def _warm_start(model: Any, path: str, cae_cfg: Any) -> dict[str, Any]:
    """Load the weights of checkpoint ``path`` into ``model`` (a fine-tune: optimiser and LR schedule start
    afresh). The architecture must match exactly; returns what the new model's metadata records about it. ``path``:
    a ``.pt`` file, or a zoo name as every other MODEL argument takes it (``rover-rgb-unet2-ground``; until session 46
    a file path only)."""
    from edgeae.checkpoint import load_checkpoint
    from edgeae.metadata import MetadataError
    from edgeae.predictor import resolve_model_path

    try:
        resolved = resolve_model_path(path, want="checkpoint")
    except (FileNotFoundError, ValueError) as exc:
        raise MetadataError(f"--init {path}: {exc}") from None
    ck = load_checkpoint(resolved)
    if ck.metadata.kind != "cae":  # before the defaults below, which would describe it as a seed CAE
        raise MetadataError(f"--init {path}: this is a {ck.metadata.kind} checkpoint, not a cae")
    arch = {"variant": "seed", "tile": 128, **ck.metadata.architecture}  # absent = the defaults, as build() reads it
    want = cae_cfg.to_dict()
    keys = ("variant", "channels", "widths", "tile")
    if any(_norm(arch.get(k)) != _norm(want.get(k)) for k in keys):
        got, mine = {k: arch.get(k) for k in keys}, {k: want.get(k) for k in keys}
        raise MetadataError(f"--init {path}: its architecture {got} is not this run's {mine}")
    try:
        model.load_state_dict(ck.model.state_dict())
    except RuntimeError as exc:
        raise MetadataError(f"--init {path}: its weights do not fit this run's model ({exc})") from exc
    log.info("warm start from %s (its best epoch %s)", resolved, ck.metrics.get("best_epoch"))
    return {
        "file": resolved.name,
        "training_data_hash": ck.metadata.training_data_hash,
        "val_loss": ck.metrics.get("val_loss"),
    }


def init_val_seed(path: str | os.PathLike[str]) -> int | None:
    """The validation seed of the run that made checkpoint ``path`` (None when its metadata does not say):
    a fine-tune that validates on the same crops gets a ``loss.csv`` comparable with its starting run's."""
    from edgeae.checkpoint import load_checkpoint

    extra = load_checkpoint(path).metadata.extra
    seed = extra.get("val_seed", extra.get("seed"))
    return int(seed) if isinstance(seed, int) and not isinstance(seed, bool) else None


def _norm(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v
