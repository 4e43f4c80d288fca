"""How the ground station fills a sparse frame: the CAE (optionally adapted to the frame and cross-checked
against a classical fill) or a classical method, as one callable (:class:`Filler`, :func:`make_filler`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

log = logging.getLogger("edgeae.ground.station")  # the station's logger, as before this module was split off


class ModelKindError(ValueError):
    """The ``--model`` is not a CAE (a VAE, a CAE's encoder or decoder half): it cannot fill any frame."""


class Filler(Protocol):
    """fill(image float32 (H, W, C) in [0, 1], known bool (H, W)) -> rebuilt float32 (H, W, C).

    ``notes``, when given, receives what the fill did on this frame beyond its name (``adapt``: the steps
    asked for and the one kept; ``cross_check_error``: why the cross-check fell back to the CAE alone); the
    ground station copies them into the frame's report.
    """

    def __call__(self, image: np.ndarray, known: np.ndarray, notes: dict[str, Any] | None = None) -> np.ndarray: ...


def make_filler(
    model: str | None = None,
    method: str = "telea",
    threads: int | None = None,
    adapt_steps: int = 0,
    cross_check: str | None = None,
    progress: bool | None = None,
    predictor: Any = None,
) -> tuple[Filler, str]:
    """A function that fills unknown pixels, and its name: the CAE of ``model`` or classical ``method``.

    Uses ``edgeae.reconstruct.reconstruct``; without it (a build without that module) classical methods go
    straight to ``edgeae.inpaint.inpaint``. A ``model`` that is not a CAE (by its metadata's kind) is refused
    (:class:`ModelKindError`). ``adapt_steps > 0`` adapts a copy of the CAE to each frame's received
    samples first (:mod:`edgeae.adapt`; a PyTorch model only, checked here); a frame whose adaptation fails is
    filled by the model as shipped, with a warning, never lost. ``cross_check`` (a classical method) mixes the
    CAE with it region by region (:mod:`edgeae.crosscheck`, validated here); a frame where that fails is filled
    by the CAE alone, with a warning. ``progress``: ``None`` draws a bar per frame for the CAE's passes (its
    tiles, or the cross-check's fills, and the adaptation's steps) when stderr is a terminal; ``False`` none.
    ``predictor``: ``model`` already loaded (:func:`edgeae.predictor.load_predictor`), used rather than loaded again.
    """
    try:
        from edgeae.reconstruct import ChannelMismatchError, reconstruct
    except ImportError:
        if model:
            raise
        from edgeae.inpaint import inpaint

        method = "telea" if method == AUTO else method  # blend and normconv-wide are edgeae.reconstruct's

        def fill_inpaint(image: np.ndarray, known: np.ndarray, notes: dict[str, Any] | None = None) -> np.ndarray:
            return np.asarray(inpaint(image, known, method), dtype=np.float32)

        return fill_inpaint, method
    if model:
        from edgeae.predictor import load_predictor

        predictor = load_predictor(model, threads=threads) if predictor is None else predictor
        kind = getattr(getattr(predictor, "metadata", None), "kind", "cae")
        if kind != "cae":  # known from its metadata now: refused before any frame, not frame by frame
            raise ModelKindError(
                f"{model} is a {kind!r} model, not a 'cae': it cannot fill missing pixels; name a CAE (edgeae zoo "
                "lists them), or no --model for classical inpainting"
            )
        adapt_cfg = None
        if adapt_steps:
            from edgeae.adapt import AdaptConfig, adapt_predictor, check_adaptable

            adapt_cfg = AdaptConfig(steps=adapt_steps)
            check_adaptable(predictor)  # an exported artifact is refused now, not frame by frame
        xcfg = None
        if cross_check:
            from edgeae.crosscheck import CrossCheckConfig, cross_checked_fill

            xcfg = CrossCheckConfig(method=cross_check)  # an unknown method is refused now

        from edgeae.reconstruct import show_progress

        # one bar per frame on a terminal: the cross-check's over all its fills; adapt's from 20 steps
        bar = show_progress(progress, 1, 0)
        adapt_bar = None if bar else False

        def fill_cae(image: np.ndarray, known: np.ndarray, notes: dict[str, Any] | None = None) -> np.ndarray:
            if image.shape[2] != predictor.metadata.channels:  # the station fills such a frame classically
                raise ChannelMismatchError(
                    f"the frame has {image.shape[2]} channel(s), the model takes {predictor.metadata.channels}"
                )
            use = predictor
            notes = {} if notes is None else notes
            if adapt_cfg is not None and image.shape[2] == predictor.metadata.channels:
                info: dict[str, Any] = {}
                try:
                    use = adapt_predictor(predictor, image, known, adapt_cfg, progress=adapt_bar, report=info)
                except Exception as exc:  # the frame is still filled, by the shipped model
                    log.warning("adapting the CAE to the frame failed (%s): filling with the model as shipped", exc)
                    info = {"error": str(exc)}
                # the fill's name says adaptation was asked for; this says what it did on this frame (0: the
                # model as shipped was kept, adapting did not help the held-out samples)
                notes["adapt"] = {
                    "steps": adapt_steps, "chosen_step": int(info.get("chosen_step", 0)), **({"error": info["error"]}
                    if "error" in info else {}),
                }  # fmt: skip
            if xcfg is not None:
                try:
                    filled = cross_checked_fill(image, known, use, xcfg, progress=bar)
                    return np.asarray(filled, dtype=np.float32)
                except Exception as exc:  # the frame is still filled, by the CAE alone
                    log.warning("the cross-check failed on this frame (%s): filling with the CAE alone", exc)
                    notes["cross_check_error"] = str(exc)
            return np.asarray(reconstruct(image, known, "cae", predictor=use, progress=progress), dtype=np.float32)

        suffix = f"+adapt{adapt_steps}" if adapt_steps else ""
        suffix += f"+xcheck-{cross_check}" if cross_check else ""
        return fill_cae, f"cae:{Path(str(model)).name}{suffix}"

    if method == AUTO:
        return AutoFill(), AUTO
    return classical_fill(method), method


def classical_fill(method: str) -> Filler:
    """The fill of the classical ``method`` (``edgeae.reconstruct.reconstruct``), as a :class:`Filler`."""
    from edgeae.reconstruct import reconstruct

    def fill(image: np.ndarray, known: np.ndarray, notes: dict[str, Any] | None = None) -> np.ndarray:
        return np.asarray(reconstruct(image, known, method), dtype=np.float32)

    return fill


AUTO = "auto"
"""The ground's default classical fill: per frame, the first of :data:`AUTO_METHODS` whose rebuild fits the memory
available (:class:`AutoFill`)."""

AUTO_METHODS: tuple[str, ...] = ("blend", "normconv-wide", "telea")
"""Best first (validation PSNR, ``docs/reconstruction.md``: blend leads in every rover and grey cell, normconv-wide
leads telea in every cell), each lighter than the one before (``edgeae.ground.limits.REBUILD_BYTES``: 116.8 / 48.5 /
36.8 bytes a grey pixel, 151.4 / 116.9 / 83.1 an RGB one)."""

SLOW_METHODS: tuple[str, ...] = ("blend",)
"""Fills :class:`AutoFill` skips while a live decoder is behind the link (``behind`` frames waiting): blend takes
1.5-2.3x Telea's time and normconv-wide 0.26-0.37x (``python -m benchmarks.fill_costs``), for 0.10-0.18 dB more
than normconv-wide on the demo frame and Tycho."""

BEHIND = 2
"""Sparse frames waiting for the live decoder (``edgeae ground serve``) from which it is behind the link: while one
frame is decoded the next may arrive (that is keeping up), two waiting means the fill is slower than the link."""


@dataclass
class AutoChoice:
    """The fill :meth:`AutoFill.choose` picked for one frame and, when it is not the first, why."""

    method: str
    note: str | None = None


@dataclass
class AutoFill:
    """``--method auto``: fill each frame with the best classical method whose rebuild fits the memory available
    (:func:`edgeae.ground.limits.check_memory` for each of ``methods`` in turn). The station picks before it builds
    the frame (:meth:`choose`) and fills with :meth:`using`; called directly (the fallback of a CAE that cannot
    fill a frame), it picks with the memory available then, which the frame's own arrays already take part of (so
    it may pick a lighter fill than it needed to, never a heavier one)."""

    methods: tuple[str, ...] = AUTO_METHODS

    def choose(self, h: int, w: int, c: int, frame_id: int = 0, original: bool = False, behind: int = 0) -> AutoChoice:
        """The first method whose rebuild fits; the last one's ``LimitError`` (reason ``memory``) when none does.
        ``behind``: sparse frames waiting for a live decoder; from :data:`BEHIND` on, :data:`SLOW_METHODS` are
        skipped so that the decoder catches up with the link (``edgeae ground serve``; the report says so)."""
        from .limits import LimitError, check_memory

        hurry = behind >= BEHIND and any(m not in SLOW_METHODS for m in self.methods)
        methods = [m for m in self.methods if not (hurry and m in SLOW_METHODS)]
        skipped = [m for m in self.methods if m not in methods]
        refused: list[str] = []
        for i, m in enumerate(methods):
            try:
                check_memory("sparse", frame_id, h, w, c, m, original=original)
            except LimitError:
                if i == len(methods) - 1:
                    raise
                refused.append(m)
                continue
            notes = []
            if skipped:
                notes.append(
                    f"{' and '.join(skipped)} skipped: the live decoder was {behind} frames behind the link, so the "
                    "faster fill keeps up"
                )
            if refused:
                notes.append(
                    f"{' and '.join(refused)} would not fit in the memory available (edgeae.ground.limits."
                    "REBUILD_BYTES)"
                )
            return AutoChoice(m, f"{'; '.join(notes)}: filled with {m}" if notes else None)
        raise AssertionError("AutoFill.methods is empty")  # pragma: no cover - the dataclass default has three

    def using(self, method: str) -> Filler:
        """The fill of ``method`` (one of :attr:`methods`)."""
        return classical_fill(method)

    def __call__(self, image: np.ndarray, known: np.ndarray, notes: dict[str, Any] | None = None) -> np.ndarray:
        from .limits import LimitError

        h, w, c = image.shape
        try:
            choice = self.choose(h, w, c)
        except LimitError:  # the frame is built already: fill it with the lightest rather than lose it
            last = self.methods[-1]
            choice = AutoChoice(last, f"no fill fitted the memory available now: filled with the lightest, {last}")
        if notes is not None:
            notes["reconstruction"] = choice.method
            if choice.note:
                notes["fill_auto"] = choice.note
        return self.using(choice.method)(image, known, notes)
