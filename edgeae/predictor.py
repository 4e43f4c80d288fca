"""One calling convention for every model format: PyTorch checkpoints, ONNX/ORT and TFLite artifacts.

A predictor takes a float32 batch in NCHW layout with values in [0, 1] (whatever the artifact's own layout
or precision, the wrapper converts) and returns:

- for ``cae`` / ``cae-decoder`` models: the reconstruction (or decoded pixels), float32 NCHW in [0, 1];
- for ``cae-encoder`` models: the latent, float32 (N, C, h, w);
- for ``vae`` models: a dict with ``score`` (N,), ``x_hat`` (N, C, H, W) and ``mu`` (N, D).

``load_predictor`` accepts a zoo name, a ``.pt`` checkpoint, or an ``.onnx``/``.ort``/``.tflite`` artifact.
"""

from __future__ import annotations

import logging
import numbers
import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgeae._optional import require
from edgeae.metadata import ModelMetadata

log = logging.getLogger(__name__)

ARTIFACT_SUFFIXES = (".onnx", ".ort", ".tflite")


class Predictor(Protocol):
    metadata: ModelMetadata
    source: str

    def __call__(self, batch: np.ndarray) -> Any: ...


class TorchPredictor:
    """Runs a PyTorch checkpoint on CPU (or CUDA when asked) with no autograd."""

    def __init__(self, model: Any, metadata: ModelMetadata, source: str, device: str = "cpu") -> None:
        self.torch = require("torch")
        self.model = model.to(device).eval()
        self.metadata = metadata
        self.source = source
        self.device = device
        self.adapt_losses: list[float] = []  # set by edgeae.adapt on a model adapted to one frame
        self.adapt_report: dict[str, Any] = {}  # ... with its held-out check (edgeae.adapt.adapt_predictor)

    def __repr__(self) -> str:
        m = self.metadata
        return f"TorchPredictor({Path(self.source).name!r}, {m.kind}, {m.channels} channel(s), {self.device})"

    def __call__(self, batch: np.ndarray) -> Any:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        self.metadata.check_input(batch.shape, self.source)
        with self.torch.inference_mode():
            out = self.model(self.torch.from_numpy(batch).to(self.device))
        if isinstance(out, dict):
            return {k: v.detach().float().cpu().numpy() for k, v in out.items()}
        if isinstance(out, tuple):
            raise TypeError(f"{self.source}: model returned a tuple; models must return a tensor or a dict")
        return out.detach().float().cpu().numpy()


def resolve_model_path(spec: str | os.PathLike[str], want: str = "any") -> Path:
    """A zoo name, ``zoo:`` name or path -> an existing model file (see :func:`edgeae.resolve.model_path`)."""
    from edgeae.resolve import model_path

    return model_path(spec, want)


def ground_threads() -> int:
    """Threads a ground tool runs an artifact on when none is named: what torch would take (``OMP_NUM_THREADS``
    where set, at most the CPUs this process may run on; else those CPUs), as onnxruntime's own default did on the
    ground until session 39, when the flight runtime began to open every interpreter on an explicit count, one by
    default. Used for onnxruntime files only: a LiteRT file keeps its one thread, as before."""
    try:
        usable = max(1, len(os.sched_getaffinity(0)))  # logical CPUs (onnxruntime's own default counted physical ones)
    except (AttributeError, OSError):  # no affinity on this OS
        usable = max(1, os.cpu_count() or 1)
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) >= 1:
        return min(int(env), usable)  # OMP_NUM_THREADS=64 on 2 cores: 2, not 63 idle threads
    return usable


def load_predictor(spec: str | os.PathLike[str], threads: int | None = None, device: str = "cpu") -> Predictor:
    """Load any model the user can name: a zoo name (``"orbital-gray-vae"``; ``edgeae zoo`` lists them), a zoo file
    (``"zoo:orbital-gray-vae/orbital-gray-vae.int8.onnx"``), or a path to a ``.pt`` checkpoint or an ``.onnx``,
    ``.ort`` or ``.tflite`` artifact. Returns a predictor: ``predictor(batch)`` on an (N, C, P, P) float32 batch in
    [0, 1] gives a CAE's reconstruction as an array and a VAE's outputs as a dict (``score``, ``x_hat``, ``mu``);
    ``predictor.metadata`` is the model's :class:`edgeae.metadata.ModelMetadata` (kind, channels, input shape,
    normalisation, λ, ...). To score patches, wrap it: :func:`edgeae.make_scorer`. ``device``: a torch device for a
    checkpoint (``"cuda"``), CPU by default; artifacts run on the CPU.

    ``threads`` sets the interpreter's thread count for an artifact, for that
    artifact alone; for a PyTorch checkpoint it calls ``torch.set_num_threads``, which is process-wide: every
    torch model in the process, those loaded before too, then runs on that many threads (logged once as a
    warning when it changes the count under a torch model loaded earlier). ``threads=None`` leaves torch as it is
    and opens an onnxruntime artifact on :func:`ground_threads` (the ground's cores; the flight runtime's own default,
    which a ``.tflite`` file keeps, is one thread: :data:`edgeae.firmware_sim.interpreters.DEFAULT_THREADS`)."""
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, numbers.Integral) or threads < 1):
        raise ValueError(f"threads must be a whole number >= 1, got {threads!r}")
    path = resolve_model_path(spec)
    if path.suffix in ARTIFACT_SUFFIXES:
        from edgeae.firmware_sim.guard import parity_failure
        from edgeae.firmware_sim.runtime import load_artifact

        failed = parity_failure(path)
        if failed:  # on the ground a rejected file may be studied; the flight runtime refuses it at boot
            log.warning("%s: used anyway (the flight runtime refuses it at boot)", failed)
        if threads is None and path.suffix != ".tflite":  # LiteRT ran on one thread without a count: it still does
            threads = ground_threads()
        return load_artifact(path, threads=threads)
    from edgeae.checkpoint import load_checkpoint

    torch = require("torch")
    if device != "cpu":
        try:
            torch.empty(0, device=device)
        except (RuntimeError, AssertionError) as exc:  # a CPU-only build asserts deep inside torch
            raise ValueError(f"device {device!r} is not available to this torch build ({exc})") from None
    if threads:
        before = torch.get_num_threads()
        if _TORCH_STATE["loaded"] and before != threads and not _TORCH_STATE["warned"]:
            _TORCH_STATE["warned"] = True
            log.warning(
                "load_predictor(%s, threads=%d): torch's thread count is process-wide: the torch models loaded "
                "before now run on %d thread(s) too, not %d (torch.set_num_threads to set it back)",
                spec, threads, threads, before,
            )  # fmt: skip
        torch.set_num_threads(int(threads))
    ck = load_checkpoint(path)
    _TORCH_STATE["loaded"] = True
    return TorchPredictor(ck.model, ck.metadata, source=str(path), device=device)


_TORCH_STATE = {"loaded": False, "warned": False}
"""Whether a torch model was loaded in this process, and whether changing its thread count was warned about."""
