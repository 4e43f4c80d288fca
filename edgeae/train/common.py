"""Training utilities shared by the CAE and VAE trainers: device and mixed precision, progress bars, the
epoch loop, loss curves (CSV + PNG), best-by-validation tracking and early stopping.

Trainer-agnostic: a trainer supplies ``loss_fn(model, batch, device) -> scalar tensor`` and iterables of
batches; :func:`fit` runs the epochs and calls ``on_best`` whenever the validation loss improves.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeae._optional import require

log = logging.getLogger(__name__)

LossFn = Callable[[Any, Any, Any], Any]  # (model, batch, device) -> scalar loss tensor


def select_device(spec: str = "auto") -> Any:
    """``auto`` -> CUDA when available, else CPU; ``cpu``/``cuda``/``cuda:N`` as given (error if absent)."""
    torch = require("torch")
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {spec!r} requested but CUDA is not available on this machine")
    if spec != "cpu" and not spec.startswith("cuda"):
        raise ValueError(f"unknown device {spec!r}; expected auto, cpu, cuda or cuda:N")
    return torch.device(spec)


def autocast(device: Any) -> contextlib.AbstractContextManager[Any]:
    """Mixed precision (float16 autocast) on CUDA; a no-op on CPU."""
    torch = require("torch")
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def bf16_autocast(torch: Any, device: Any, bf16: bool) -> contextlib.AbstractContextManager[Any]:
    """The trainers' precision: bfloat16 autocast when ``bf16``, else float32 (no autocast) on every device;
    bfloat16 keeps float32's exponent range, so it needs no gradient scaler (float16 would)."""
    if bf16:
        ctx: contextlib.AbstractContextManager[Any] = torch.autocast(device_type=device.type, dtype=torch.bfloat16)
        return ctx
    return contextlib.nullcontext()


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AVX512-BF16 or AMX).

    With it, bfloat16 autocast + ``channels_last`` trained the CAE 5-8× faster than float32
    (``../shared/TOOLCHAIN.md``); without it torch emulates bfloat16 and the same autocast was 2.9× *slower* for the
    ground CAE and 2.4× slower for the VAE on an Intel Xeon with AVX-512 but no AVX512-BF16
    (``benchmarks/bf16_step.py``).
    """
    torch = require("torch")
    cpu = getattr(torch, "cpu", None)
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in probes)


def default_bf16(device_type: str, cuda: bool = True) -> bool:
    """The trainers' bfloat16 autocast default: on CUDA (when ``cuda``), and on a CPU with hardware bfloat16."""
    if device_type == "cuda":
        return cuda
    return device_type == "cpu" and cpu_has_fast_bf16()


def grad_scaler(device: Any) -> Any:
    """A gradient scaler for float16 training (disabled on CPU)."""
    torch = require("torch")
    return torch.amp.GradScaler("cuda", enabled=device.type == "cuda")


def progress(
    iterable: Iterable[Any], desc: str, total: int | None = None, enabled: bool = True, initial: int = 0
) -> Iterator[Any]:
    """A tqdm bar on stderr (plain iteration when tqdm is missing or ``enabled`` is False). ``initial``: items
    done before ``iterable`` starts (a resumed epoch: its bar reads 16/20, not 0/4; ``total`` counts them)."""
    if not enabled:
        yield from iterable
        return
    try:
        tqdm = require("tqdm").tqdm
    except ImportError:
        yield from iterable
        return
    if total is None and isinstance(iterable, Sized):
        total = len(iterable) + initial
    yield from tqdm(iterable, desc=desc, total=total, initial=initial, leave=False, dynamic_ncols=True)


def run_epoch(
    model: Any,
    batches: Iterable[Any],
    loss_fn: LossFn,
    device: Any,
    optimizer: Any = None,
    scaler: Any = None,
    desc: str = "epoch",
    show_progress: bool = True,
) -> float:
    """One pass over ``batches``; trains when ``optimizer`` is given, else evaluates. Returns the mean loss
    (weighted by batch size when the batch is a tensor or a tuple of tensors)."""
    torch = require("torch")
    train = optimizer is not None
    model.train(train)
    total, count = 0.0, 0
    ctx = contextlib.nullcontext() if train else torch.no_grad()
    with ctx:
        for batch in progress(batches, desc, enabled=show_progress):
            with autocast(device):
                loss = loss_fn(model, batch, device)
            if train:
                optimizer.zero_grad(set_to_none=True)
                if scaler is not None and scaler.is_enabled():
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    loss.backward()
                    optimizer.step()
            n = _batch_len(batch)
            value = float(loss.detach().float().cpu())
            if not math.isfinite(value):
                from edgeae.train.resume import TrainingDiverged

                raise TrainingDiverged(f"{desc}: loss became {value}; lower the learning rate")
            total += value * n
            count += n
    return total / max(count, 1)


def _batch_len(batch: Any) -> int:
    first = batch[0] if isinstance(batch, (tuple, list)) else batch
    return int(first.shape[0]) if hasattr(first, "shape") else 1


@dataclass
class EarlyStopping:
    """Stop when the validation loss has not improved by ``min_delta`` for ``patience`` epochs (0 = never)."""

    patience: int = 0
    min_delta: float = 0.0
    best: float = math.inf
    best_epoch: int = -1
    bad_epochs: int = 0

    def update(self, epoch: int, value: float) -> bool:
        """Record ``value``; return True when it is a new best."""
        if value < self.best - self.min_delta:
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
            return True
        self.bad_epochs += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.patience > 0 and self.bad_epochs >= self.patience


def write_history(history: list[dict[str, Any]], out_dir: str | os.PathLike[str], name: str = "loss") -> Path:
    """Write ``history`` (one dict per epoch) to ``name.csv`` and a train/val curve to ``name.png`` (atomically:
    a kill or a full disk leaves the previous files)."""
    from edgeae.atomic import atomic_path

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / f"{name}.csv"
    if history:
        keys = list(dict.fromkeys(k for row in history for k in row))  # a column added since: empty in older rows
        with atomic_path(csv_path) as tmp, tmp.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys, restval="")
            w.writeheader()
            w.writerows(history)
        plot_history(history, out / f"{name}.png")
    return csv_path


def plot_history(history: list[dict[str, Any]], path: Path) -> None:
    """Train and validation loss per epoch (log scale), best epoch marked."""
    matplotlib = require("matplotlib")
    matplotlib.use("Agg")
    plt = require("matplotlib.pyplot")
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=100)
    for key in ("train_loss", "val_loss"):
        if key in history[0]:
            ax.plot(epochs, [h[key] for h in history], marker="o", label=key.replace("_", " "))
    if "val_loss" in history[0]:
        best = min(history, key=lambda h: h["val_loss"])
        ax.axvline(best["epoch"], color="grey", ls=":", label=f"best (epoch {best['epoch']})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    from edgeae.atomic import atomic_path

    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)


def fit(
    model: Any,
    train_batches: Callable[[int], Iterable[Any]],
    val_batches: Callable[[], Iterable[Any]],
    loss_fn: LossFn,
    optimizer: Any,
    epochs: int,
    device: Any,
    on_best: Callable[[int, float, list[dict[str, Any]]], None],
    out_dir: str | os.PathLike[str] | None = None,
    patience: int = 0,
    show_progress: bool = True,
    val_loss_fn: LossFn | None = None,
) -> tuple[list[dict[str, Any]], EarlyStopping]:
    """Train for ``epochs`` (``train_batches(epoch)`` gives that epoch's batches), validate after each,
    call ``on_best(epoch, val_loss, history)`` on improvement, write the loss curves to ``out_dir`` after
    every epoch, and stop early after ``patience`` epochs without improvement (0 = never)."""
    scaler = grad_scaler(device)
    stopper = EarlyStopping(patience=patience)
    history: list[dict[str, Any]] = []
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        tr = run_epoch(
            model, train_batches(epoch), loss_fn, device, optimizer, scaler, f"epoch {epoch}/{epochs}", show_progress
        )
        va = run_epoch(
            model, val_batches(), val_loss_fn or loss_fn, device, desc="validate", show_progress=show_progress
        )
        seconds = time.perf_counter() - t0
        history.append({"epoch": epoch, "train_loss": tr, "val_loss": va, "seconds": round(seconds, 2)})
        improved = stopper.update(epoch, va)
        log.info(
            "epoch %d/%d  train %.5f  val %.5f  %.0fs%s", epoch, epochs, tr, va, seconds, "  (best)" if improved else ""
        )
        if improved:
            on_best(epoch, va, history)
        if out_dir is not None:
            write_history(history, out_dir)
        if stopper.should_stop:
            log.info("early stop: no improvement for %d epochs", stopper.bad_epochs)
            break
    return history, stopper


class MemoryEstimateError(ValueError):
    """A run would not fit in memory: refused before any data is read (:mod:`edgeae.train.run_memory`)."""


def crops_rounding(crops: int, batch_size: int) -> str | None:
    """How an epoch's ``crops`` become whole batches of ``batch_size`` (the trainers' ``crops_per_epoch``), as a
    log line; None when ``crops`` is already a multiple of ``batch_size``."""
    if crops % batch_size == 0:
        return None
    if crops < batch_size:
        return (
            f"each epoch trains one batch of {batch_size:,} crops ({plural(crops, 'crop')} raised to one batch of "
            "--batch-size)"
        )
    n = crops // batch_size
    return (
        f"each epoch trains {plural(n, 'batch')} of {batch_size:,} = {n * batch_size:,} crops "
        f"({plural(crops, 'crop')} rounded down to whole batches)"
    )


def plural(n: int, noun: str) -> str:
    """``"1 file"``, ``"16 files"``: a count and its noun."""
    return f"{n:,} {noun}{'' if n == 1 else ('es' if noun.endswith(('s', 'ch')) else 's')}"


def stderr_is_terminal() -> bool:
    """Whether stderr is a terminal: the trainers draw their progress bar there only (its carriage-return
    redraws would fill a log file, e.g. ``nohup edgeae train ... > run.log 2>&1``), as ``edgeae score`` and
    ``scan`` do; the per-epoch log lines are written either way."""
    import sys

    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stderr
        return False


def read_config(path: str | os.PathLike[str], cls: Any) -> Any:
    """A trainer's ``config.json`` as ``cls`` (``cls.from_dict``); a damaged one (not JSON, another trainer's,
    unknown fields): a ValueError naming the file, unless the run's ``last.pt`` beside it records the config (the
    same one: written with every checkpoint), which is then used, with a warning (a resume writes it back)."""
    try:
        d = json.loads(Path(path).read_text())
        if not isinstance(d, dict):
            raise TypeError("not a JSON object")
        return cls.from_dict(d)
    except (ValueError, TypeError, KeyError) as exc:  # not JSON, another trainer's, or not this trainer's fields
        problem = f"{path}: not a readable training config ({type(exc).__name__}: {exc})"
    from edgeae.train.resume import state_config

    saved = state_config(Path(path).parent) if Path(path).name == "config.json" else None
    if saved is not None:
        with contextlib.suppress(ValueError, TypeError, KeyError):
            config = cls.from_dict(saved)
            log.warning("%s; using the config its run's last.pt recorded (written back when the run resumes)", problem)
            return config
    raise ValueError(problem)


def config_fields(cls: Any, d: dict[str, Any], kind: str, source: str = "config") -> dict[str, Any]:
    """``d`` (a run's ``config.json``) without its ``kind`` key, after checking that it is of model ``kind`` and
    has no key the ``cls`` config does not know (a ValueError naming them)."""
    from edgeae.train.resume import config_kind

    found = config_kind(d)
    if found is not None and found != kind:
        raise ValueError(f"{source} is the config of a {found.upper()} run, not of a {kind.upper()} run")
    out = {k: v for k, v in d.items() if k != "kind"}
    unknown = sorted(set(out) - set(cls.__dataclass_fields__))
    if unknown:
        raise ValueError(f"{source} has keys the {kind.upper()} trainer does not know: {', '.join(unknown)}")
    return out


def check_zoo_fields(zoo_name: str | None, zoo_force: bool) -> None:
    """The ``zoo_name`` / ``zoo_force`` of a training config (both trainers): a safe zoo name or None, and
    ``zoo_force`` only with a name (a ValueError otherwise)."""
    if zoo_name is not None:
        from edgeae.zoo import check_name

        check_name(zoo_name)
    if zoo_force and not zoo_name:
        raise ValueError("zoo_force (--force) only applies with zoo_name (--zoo-name)")


def drop_zoo_defaults(d: dict[str, Any]) -> dict[str, Any]:
    """A config dict without ``zoo_name`` / ``zoo_force`` when they are unset: the ``config.json`` of a run
    without ``--zoo-name`` stays as it was before they were recorded."""
    if d.get("zoo_name") is None:
        d.pop("zoo_name", None)
    if not d.get("zoo_force"):
        d.pop("zoo_force", None)
    return d


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented, key-sorted JSON, atomically (a kill or a full disk leaves the previous file:
    a run's ``config.json`` and ``metrics.json`` are rewritten on every resume)."""
    from edgeae.atomic import write_text

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    write_text(p, json.dumps(obj, indent=2, sort_keys=True) + "\n")
    return p
