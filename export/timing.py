"""An export's timings and progress: the latency of each artifact and of PyTorch on the same batches, and the bar
over the export's jobs (only on a terminal)."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from edgeae.firmware_sim.runtime import load_artifact

from .graphs import Graph, torch_outputs
from .parity import measure_latency

if TYPE_CHECKING:
    from .api import ExportConfig


def progress_bar(jobs: list[Any], name: str) -> Iterable[Any]:
    """The export's jobs behind a tqdm bar when stderr is a terminal (a redirected log gets none), else as they are."""
    try:
        tty = sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stderr
        tty = False
    if not tty:
        return jobs
    from tqdm import tqdm

    return tqdm(jobs, desc=f"export {name}", unit="artifact")


def _latency(path: Path, x: np.ndarray, config: ExportConfig) -> list[dict[str, Any]]:
    out = []
    for threads in config.latency_threads:
        predictor = load_artifact(path, threads=threads)
        for b in config.latency_batches:
            rec = measure_latency(predictor, _batch(x, b), repeats=config.latency_repeats)
            out.append({**rec, "threads": threads})
    return out


def _batch(x: np.ndarray, b: int) -> np.ndarray:
    reps = -(-b // len(x))
    return np.ascontiguousarray(np.concatenate([x] * reps)[:b])


def _torch_latency(graph: Graph, x: np.ndarray, config: ExportConfig) -> list[dict[str, Any]]:
    import torch

    before = torch.get_num_threads()
    out = []
    try:
        for threads in config.latency_threads:
            torch.set_num_threads(threads)
            for b in config.latency_batches:
                rec = measure_latency(lambda v: torch_outputs(graph, v), _batch(x, b), repeats=config.latency_repeats)
                out.append({**rec, "threads": threads})
    finally:
        torch.set_num_threads(before)
    return out
