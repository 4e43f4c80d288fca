"""The steps of the CAE training loop (:func:`edgeae.train.cae.train_cae`): the masked input batches (drawn
ahead in threads with ``data_workers``), the forward pass under bfloat16 autocast, the loss, the validation loss,
the progress bar, the check for a U-Net that collapsed to its pre-fill and the best epoch a ``best.pt`` records."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from edgeae._optional import require
from edgeae.train.cae_config import CAETrainConfig
from edgeae.train.common import bf16_autocast as _autocast
from edgeae.train.corrupt import Corruption, corrupt, sample_seed


def _masked_batch(crops: np.ndarray, idx: np.ndarray, spec: Corruption, seed: int, epoch: int) -> np.ndarray:
    return np.stack([corrupt(crops[i], spec, sample_seed(seed, epoch, int(i)))[0] for i in idx])


def _masked_batches(
    crops: np.ndarray,
    perm: np.ndarray,
    batches: range,
    config: CAETrainConfig,
    spec: Corruption,
    epoch: int,
    pool: ThreadPoolExecutor | None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(indices, masked inputs) of each batch in ``batches``. With a pool, up to ``data_workers + 1`` batches
    are masked ahead in threads while the optimiser works; the inputs are the same either way (each sample's
    mask comes from its own seed)."""
    bs = config.batch_size

    def indices(b: int) -> np.ndarray:
        return perm[b * bs : (b + 1) * bs]

    if pool is None:
        for b in batches:
            idx = indices(b)
            yield idx, _masked_batch(crops, idx, spec, config.seed, epoch)
        return
    ahead: deque[tuple[np.ndarray, Future[np.ndarray]]] = deque()
    todo = iter(batches)
    for b in todo:
        idx = indices(b)
        ahead.append((idx, pool.submit(_masked_batch, crops, idx, spec, config.seed, epoch)))
        if len(ahead) > config.data_workers:
            break
    while ahead:
        idx, fut = ahead.popleft()
        nxt = next(todo, None)
        if nxt is not None:
            nidx = indices(nxt)
            ahead.append((nidx, pool.submit(_masked_batch, crops, nidx, spec, config.seed, epoch)))
        yield idx, fut.result()


COLLAPSE_ACTIVE = 0.01  # below this fraction of active last features a U-Net CAE has collapsed to its pre-fill


def _active_fraction(torch: Any, model: Any, val_in: Any, device: Any, channels_last: bool) -> float | None:
    """Fraction of the U-Net's last feature map (the residual head's input) that is > 0 on a validation batch;
    None for models without a residual head. ~0 means dead ReLUs: the zero-initialised head then gets no
    gradient and the model stays exactly its pre-fill (seen once on grey orbital data at lr 1e-3)."""
    head = getattr(model, "head", None)
    if head is None or not hasattr(model, "up"):
        return None
    seen: list[float] = []
    hook = head.register_forward_hook(lambda _m, inp, _o: seen.append(float((inp[0] > 0).float().mean())))
    try:
        x = torch.as_tensor(val_in[:16]).to(device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        hook.remove()
    return seen[0] if seen else None


def collapse_record(history: list[dict[str, Any]]) -> dict[str, Any]:
    """What ``metrics.json`` records of a U-Net's collapse from the epochs' ``history`` rows (their
    ``active_fraction``): ``active_fraction``, one per epoch (None for an epoch of a run resumed from before it was
    recorded), and ``collapsed_epochs``, those below :data:`COLLAPSE_ACTIVE`; {} for models without a residual head."""
    fractions = [row.get("active_fraction") for row in history]
    if all(f is None for f in fractions):
        return {}
    collapsed = [
        row["epoch"] for row, f in zip(history, fractions, strict=True) if f is not None and f < COLLAPSE_ACTIVE
    ]
    return {"active_fraction": fractions, "collapsed_epochs": collapsed}


def collapse_summary(metrics: dict[str, Any]) -> str | None:
    """The final summary's warning for a run whose U-Net collapsed (``metrics``' ``collapsed_epochs``), None when it
    did not."""
    epochs = metrics.get("collapsed_epochs") or []
    if not epochs:
        return None
    best = metrics.get("best_epoch")
    which = "the best epoch, " + str(best) + ", is one of them" if best in epochs else f"the best epoch, {best}, is not"
    return (
        f"warning: the U-Net collapsed to its fixed pre-fill (fewer than {COLLAPSE_ACTIVE:.0%} of its last features "
        f"active) in {len(epochs)} epoch(s): {', '.join(map(str, epochs))}; {which}: retrain with a lower --lr"
    )


def _loss_fn(name: str) -> Any:
    torch = require("torch")
    if name == "l1":
        return torch.nn.functional.l1_loss
    return torch.nn.functional.mse_loss


def _forward(torch: Any, model: Any, x: Any, device: Any, bf16: bool) -> Any:
    """``model(x)``, under bfloat16 autocast when asked; a model with a fixed pre-fill (``fill`` + ``refine``)
    runs the pre-fill in float32 and only the learned part under autocast."""
    if hasattr(model, "refine") and hasattr(model, "fill"):
        with torch.no_grad():
            prefill, m = model.fill(x)
        with _autocast(torch, device, bf16):
            return model.refine(prefill, m)
    with _autocast(torch, device, bf16):
        return model(x)


def _progress(it: range, desc: str, enabled: bool, total: int) -> Any:
    """A bar over the batches ``it`` of an epoch of ``total``: a resumed epoch's starts at ``it.start``."""
    from edgeae.train.common import progress

    return progress(it, desc, total=total, enabled=enabled, initial=it.start)


def _val_loss(
    torch: Any, model: Any, x: np.ndarray, y: np.ndarray, device: Any, bf16: bool, cl: bool, loss_of: Any
) -> float:
    model.eval()
    total = 0.0
    with torch.no_grad():
        for i in range(0, len(x), 32):
            xt = torch.from_numpy(x[i : i + 32]).to(device)
            if cl:
                xt = xt.contiguous(memory_format=torch.channels_last)
            pred = _forward(torch, model, xt, device, bf16)
            total += float(loss_of(pred.float(), torch.from_numpy(y[i : i + 32]).to(device))) * len(xt)
    model.train()
    return total / len(x)


def _recorded_best_epoch(torch: Any, path: Any) -> int | None:
    """The best epoch ``path`` (``best.pt``) records in its metrics; None when it is missing, unreadable or records
    none, or when it is damaged (a record failing its CRC-32: the trainer rewrites it where it can)."""
    from edgeae.checkpoint import damaged_record

    try:
        if damaged_record(path) is not None:
            return None
        blob = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        epoch = blob["metrics"]["best_epoch"]
    except Exception:  # missing, cut short, not an edgeae checkpoint: it holds no best epoch
        return None
    return epoch if isinstance(epoch, int) else None
