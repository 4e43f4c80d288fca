"""Per-frame adaptation of a reconstruction CAE on the ground, from the received samples alone.

The ground station has no compute budget and one thing no training set has: the frame's own samples. Before
it fills a frame, :func:`adapt_predictor` fine-tunes a copy of the CAE on that frame for a few steps, as a
self-supervised task: hide a random part of the *received* samples, ask the model to rebuild the frame from the
rest, and score it only on the hidden samples (whose true values are known). No pixel that was not received is
ever used, so the result is a fair reconstruction of the sparse frame; the adapted copy is thrown away after the
frame (the shipped weights never change).

Each step draws ``batch`` tiles at random positions of the frame; in each tile every received sample is hidden
with a probability drawn uniformly from ``drop`` (so the model trains at a density a little below the frame's,
the range it was trained on covers it), the loss is the mean squared error on the hidden samples. Adam,
``lr``, ``steps`` steps. Seeded: the same frame, mask and config give the same adapted model (CPU).

**Held-out check (do no harm).** Before training, a fraction ``check`` of the received samples inside up to
``check_tiles`` tiles is set aside (a larger share on a small frame, up to a quarter, to have 256 of them): never
an input or a target of training. Every ``check_every`` steps (and at step 0, the model as shipped) the model
rebuilds those tiles from the other samples and its error on the set-aside ones is measured; the state with the
lowest error is the one returned, so a frame on which adaptation does not help is filled by the model as shipped.
The final fill still uses every received sample.

Choices made on validation crops only (docs/training.md, "Per-frame adaptation"). Needs a PyTorch model (a
``.pt`` checkpoint or zoo name): exported ONNX/TFLite artifacts cannot be trained.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeae._optional import require

log = logging.getLogger(__name__)
MIN_SIDE = 32  # a frame smaller than this on either side is not adapted (too few tiles to learn from)
MIN_HIDDEN = 256  # samples a step must hide at least (summed over its tiles) to be a meaningful loss
MIN_CHECK = 256  # held-out samples wanted for the check (a small frame holds out a larger share to get them)
MAX_CHECK = 0.25  # ... but never more than this share of the received samples in the check tiles


@dataclass(frozen=True)
class AdaptConfig:
    """How a CAE is adapted to one frame (validated). ``steps = 0`` turns adaptation off."""

    steps: int = 100
    lr: float = 1e-4
    drop: tuple[float, float] = (0.2, 0.5)
    batch: int = 8
    tile: int = 128
    seed: int = 0
    check: float = 0.1
    check_tiles: int = 16
    check_every: int = 25

    def __post_init__(self) -> None:
        if not isinstance(self.steps, int) or not 0 <= self.steps <= 100_000:
            raise ValueError(f"adapt steps must be an integer in [0, 100000], got {self.steps!r}")
        if not (np.isfinite(self.lr) and 0 < self.lr <= 0.1):
            raise ValueError(f"adapt lr must be in (0, 0.1], got {self.lr!r}")
        lo, hi = self.drop
        if not 0 < lo <= hi < 1:
            raise ValueError(f"adapt drop must be (lo, hi) with 0 < lo <= hi < 1, got {self.drop!r}")
        if not 1 <= self.batch <= 256:
            raise ValueError(f"adapt batch must be in [1, 256], got {self.batch!r}")
        if self.tile < MIN_SIDE or self.tile % 16:
            raise ValueError(f"adapt tile must be a multiple of 16 and >= {MIN_SIDE}, got {self.tile!r}")
        if self.seed < 0:
            raise ValueError(f"adapt seed must be >= 0, got {self.seed!r}")
        if not (np.isfinite(self.check) and 0 <= self.check <= 0.5):
            raise ValueError(f"adapt check must be a fraction in [0, 0.5] (0 = no held-out check), got {self.check!r}")
        if not 1 <= self.check_tiles <= 1024:
            raise ValueError(f"adapt check_tiles must be in [1, 1024], got {self.check_tiles!r}")
        if not 1 <= self.check_every <= 100_000:
            raise ValueError(f"adapt check_every must be in [1, 100000], got {self.check_every!r}")


class AdaptationError(ValueError):
    """The predictor cannot be adapted (not a PyTorch model, or not a CAE)."""


def check_adaptable(predictor: Any) -> None:
    """Raise :class:`AdaptationError` unless ``predictor`` wraps a trainable (PyTorch) CAE."""
    model = getattr(predictor, "model", None)
    meta = getattr(predictor, "metadata", None)
    if model is None or meta is None or not hasattr(model, "parameters"):
        raise AdaptationError(
            f"{getattr(predictor, 'source', 'this model')} is not a PyTorch model: per-frame adaptation trains "
            "the model, so name a .pt checkpoint or a zoo model, not an exported artifact (ONNX, TFLite)"
        )
    if meta.kind != "cae":
        raise AdaptationError(f"{predictor.source} is a {meta.kind!r} model; only a 'cae' can be adapted")


def _tile_side(h: int, w: int, tile: int) -> int:
    """The training tile of a model that takes any size: ``tile`` or the largest multiple of 16 that fits the
    frame (a model with a fixed input size trains on tiles of that size instead, see :func:`adapt_predictor`)."""
    return min(tile, (min(h, w) // 16) * 16)


def adapt_predictor(
    predictor: Any,
    image: np.ndarray,
    known: np.ndarray,
    config: AdaptConfig | None = None,
    progress: bool | None = None,
    report: dict[str, Any] | None = None,
) -> Any:
    """A new predictor whose model is a copy of ``predictor``'s fine-tuned on this frame's received samples.

    ``image`` float32 (H, W, C) in [0, 1] (only the pixels where ``known`` is True are read), ``known`` bool
    (H, W). Returns ``predictor`` itself when there is nothing to adapt or adaptation cannot be trusted
    (``steps = 0``, a frame smaller than 32 px, too few received samples, non-finite samples, a diverging loss,
    or no adapted state better than the shipped one on the held-out samples), with a log message saying why.
    ``report``, when given, receives the step losses, the held-out errors (``check``: (step, mse) pairs, step 0 =
    as shipped) and ``chosen_step`` (0 = the model as shipped was kept).
    """
    cfg = config or AdaptConfig()
    check_adaptable(predictor)
    model, meta = predictor.model, predictor.metadata
    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 2:
        img = img[..., None]
    k = np.asarray(known)
    if img.ndim != 3 or k.dtype != bool or k.shape != img.shape[:2]:
        raise ValueError(f"image (H, W[, C]) and a bool known mask of shape (H, W) needed, got {img.shape}, {k.shape}")
    if img.shape[2] != meta.channels:
        raise ValueError(f"the image has {img.shape[2]} channel(s), the model {meta.channels}: adapt on its input")
    h, w = k.shape
    fixed = int(meta.input_shape[2] if meta.layout == "NCHW" else meta.input_shape[1])
    side = _tile_side(h, w, cfg.tile) if fixed <= 0 else (fixed if min(h, w) >= fixed else 0)
    if cfg.steps == 0:
        return predictor
    if side < MIN_SIDE:
        log.warning(
            "frame %dx%d is too small to adapt the CAE to (< %d px): using the model as it is",
            h,
            w,
            max(MIN_SIDE, fixed),
        )
        return predictor
    if int(k.sum()) * cfg.drop[0] < MIN_HIDDEN:
        log.warning("only %d received samples: too few to adapt the CAE to, using the model as it is", int(k.sum()))
        return predictor
    if not np.isfinite(img[k]).all():
        log.warning("the frame's received samples hold NaN or infinity: using the model as it is")
        return predictor
    torch = require("torch")
    tuned = copy.deepcopy(model).float().train()
    device = next(tuned.parameters()).device
    opt = torch.optim.Adam(tuned.parameters(), lr=cfg.lr)
    rng = np.random.default_rng(cfg.seed)
    # the model's input convention (edgeae.reconstruct): destroyed pixels 0, received ones >= one 8-bit step
    x = np.where(k[..., None], np.maximum(img, np.float32(1.0 / 255.0)), np.float32(0.0))
    check = _HeldOut.draw(img, x, k, side, cfg, rng, torch, device) if cfg.check > 0 else None
    train_k = k if check is None else k & ~check.mask
    info: dict[str, Any] = {"steps": cfg.steps, "check_samples": 0 if check is None else check.count}
    if check is None and cfg.check > 0:
        log.info("too few received samples to hold some out: adapting without the held-out check")
    best_state, best_step, best_err = None, 0, np.inf
    evals: list[tuple[int, float]] = []

    def evaluate(step: int) -> None:
        nonlocal best_state, best_step, best_err
        if check is None:
            return
        err = check.error(tuned, torch)
        evals.append((step, err))
        if err < best_err:
            best_err, best_step = err, step
            best_state = None if step == 0 else copy.deepcopy(tuned.state_dict())

    evaluate(0)
    steps: Any = range(1, cfg.steps + 1)
    from edgeae.reconstruct import show_progress

    if show_progress(progress, cfg.steps, more_than=19):  # a terminal only: a redirected log gets no bar
        steps = require("tqdm").tqdm(steps, desc="adapting the CAE to the frame", unit="step", leave=False)
    losses = []
    for step in steps:
        ys = rng.integers(0, h - side + 1, size=cfg.batch)
        xs = rng.integers(0, w - side + 1, size=cfg.batch)
        tiles = np.stack([x[y0 : y0 + side, x0 : x0 + side] for y0, x0 in zip(ys, xs, strict=True)])
        got = np.stack([train_k[y0 : y0 + side, x0 : x0 + side] for y0, x0 in zip(ys, xs, strict=True)])
        p = rng.uniform(cfg.drop[0], cfg.drop[1], size=(cfg.batch, 1, 1))
        keep = got & (rng.random(got.shape) >= p)
        hidden = got & ~keep
        if int(hidden.sum()) >= MIN_HIDDEN // 4:
            inp = torch.from_numpy(np.ascontiguousarray((tiles * keep[..., None]).transpose(0, 3, 1, 2))).to(device)
            target = torch.from_numpy(np.ascontiguousarray(tiles.transpose(0, 3, 1, 2))).to(device)
            weight = torch.from_numpy(hidden[:, None].astype(np.float32)).to(device)
            out = tuned(inp)
            loss = (((out - target) ** 2) * weight).sum() / (weight.sum() * target.shape[1])
            if not torch.isfinite(loss):
                log.warning("adapting the CAE diverged (loss %s): using the model as it is", float(loss.detach()))
                return predictor
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        if step % cfg.check_every == 0 or step == cfg.steps:
            evaluate(step)
    info.update(losses=losses, check=evals, chosen_step=best_step if check is not None else cfg.steps)
    if report is not None:
        report.update(info)
    if check is not None:
        shipped_err = evals[0][1]
        if best_state is None:
            log.warning(
                "adapting the CAE did not help this frame (held-out error %.3g as shipped, best adapted %.3g on %d "
                "samples): filling with the model as shipped",
                shipped_err,
                min(e for _, e in evals[1:]) if len(evals) > 1 else float("nan"),
                check.count,
            )
            return predictor
        tuned.load_state_dict(best_state)
        log.info(
            "adapted the CAE: held-out error %.3g -> %.3g (step %d of %d, %d samples)",
            shipped_err,
            best_err,
            best_step,
            cfg.steps,
            check.count,
        )
    tuned.eval()
    from edgeae.predictor import TorchPredictor

    chosen = info["chosen_step"]
    source = f"{predictor.source} (adapted to the frame, {chosen} of {cfg.steps} steps)"
    adapted = TorchPredictor(tuned, meta, source=source, device=str(device))
    adapted.adapt_losses = losses  # the loss of each step, for reports and tests
    adapted.adapt_report = info
    return adapted


@dataclass
class _HeldOut:
    """Received samples set aside in a few tiles to check the adapted model: tiles, their inputs without the
    held-out samples, and where those are."""

    mask: np.ndarray  # (H, W) bool: the held-out samples in the whole frame
    inputs: Any  # torch (N, C, side, side)
    targets: Any  # torch (N, C, side, side)
    weight: Any  # torch (N, 1, side, side): 1 on held-out samples
    count: int

    @classmethod
    def draw(
        cls,
        img: np.ndarray,
        x: np.ndarray,
        k: np.ndarray,
        side: int,
        cfg: AdaptConfig,
        rng: Any,
        torch: Any,
        device: Any,
    ) -> _HeldOut | None:
        from edgeae import tiling

        h, w = k.shape
        grid = tiling.tile_positions(h, w, side, side)
        pick = rng.permutation(len(grid))[: cfg.check_tiles]
        inside = np.zeros_like(k)
        for i in pick:
            y0, x0 = grid[i]
            inside[y0 : y0 + side, x0 : x0 + side] = True
        n_in = int((k & inside).sum())
        # a small frame holds out a larger share (up to MAX_CHECK) so the check still has MIN_CHECK samples
        frac = min(max(cfg.check, MIN_CHECK / max(n_in, 1)), MAX_CHECK)
        # drawn in bands of rows (the same numbers as one (H, W) draw) so a long strip never holds a float64 frame
        mask = k & inside
        for r0 in range(0, h, 1024):
            mask[r0 : r0 + 1024] &= rng.random((min(1024, h - r0), w)) < frac
        count = int(mask.sum())
        if count < MIN_CHECK // 4:
            return None
        pos = [grid[i] for i in pick]
        keep = k & ~mask
        inp = np.stack(
            [x[y0 : y0 + side, x0 : x0 + side] * keep[y0 : y0 + side, x0 : x0 + side, None] for y0, x0 in pos]
        )
        tgt = np.stack([img[y0 : y0 + side, x0 : x0 + side] for y0, x0 in pos])
        wgt = np.stack([mask[y0 : y0 + side, x0 : x0 + side] for y0, x0 in pos]).astype(np.float32)

        def t(a: np.ndarray) -> Any:
            return torch.from_numpy(np.ascontiguousarray(a)).to(device)

        return cls(mask, t(inp.transpose(0, 3, 1, 2)), t(tgt.transpose(0, 3, 1, 2)), t(wgt[:, None]), count)

    def error(self, model: Any, torch: Any) -> float:
        """Mean squared error of ``model`` on the held-out samples (model left in train mode)."""
        model.eval()
        with torch.no_grad():
            total = 0.0
            for i in range(0, self.inputs.shape[0], 8):
                out = model(self.inputs[i : i + 8]).clamp(0.0, 1.0)
                total += float((((out - self.targets[i : i + 8]) ** 2) * self.weight[i : i + 8]).sum())
        model.train()
        return total / (self.count * self.targets.shape[1])
