"""Parity of an artifact with its PyTorch source, budgets, and latency measurement.

PSNR is measured against the PyTorch output (not the ground truth): pixels have peak 1; latents and μ use
the reference's peak-to-peak range. For a VAE the anomaly scores must also rank the same (Spearman).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

# minimum PSNR (dB) of the main output against PyTorch, and minimum Spearman of VAE scores
BUDGETS: dict[str, dict[str, float]] = {
    "fp32": {"psnr_db": 100.0, "spearman": 0.99},
    "fp16": {"psnr_db": 60.0, "spearman": 0.99},
    "int8": {"psnr_db": 40.0, "spearman": 0.99},
}
MAIN_OUTPUT = {"cae": "x_hat", "cae-decoder": "x_hat", "cae-encoder": "latent", "vae": "x_hat"}
PIXEL_OUTPUTS = ("x_hat",)


class ParityError(ValueError):
    """An artifact's outputs differ from PyTorch by more than its precision's budget."""


def psnr(reference: np.ndarray, test: np.ndarray, peak: float) -> float:
    """PSNR in dB of ``test`` against ``reference`` (inf when identical)."""
    mse = float(np.mean((reference.astype(np.float64) - test.astype(np.float64)) ** 2))
    return float("inf") if mse == 0.0 else 10.0 * float(np.log10(peak * peak / mse))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two 1-D arrays (average ranks for ties)."""
    from scipy.stats import spearmanr

    if len(a) < 3:
        raise ValueError("Spearman needs at least 3 scores")
    return float(spearmanr(np.asarray(a).reshape(-1), np.asarray(b).reshape(-1)).statistic)


def compare_outputs(reference: dict[str, np.ndarray], test: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Per output: max abs error, mean abs error and PSNR (pixels: peak 1; else the reference's range)."""
    out: dict[str, dict[str, float]] = {}
    for name, ref in reference.items():
        got = np.asarray(test[name], dtype=np.float32)
        if got.shape != ref.shape:
            raise ParityError(f"output {name!r} has shape {got.shape}, PyTorch gives {ref.shape}")
        peak = 1.0 if name in PIXEL_OUTPUTS else float(np.ptp(ref)) or 1.0
        out[name] = {
            "max_abs": float(np.max(np.abs(ref - got))),
            "mean_abs": float(np.mean(np.abs(ref - got))),
            "psnr_db": psnr(ref, got, peak),
            "peak": peak,
        }
    return out


@dataclass(frozen=True)
class ParityResult:
    """Numbers for one artifact on the held-out patches, and whether they meet the budget."""

    kind: str
    precision: str
    outputs: dict[str, dict[str, float]]
    spearman: float | None
    budget: dict[str, float]
    n_patches: int

    @property
    def main_psnr(self) -> float:
        return self.outputs[MAIN_OUTPUT[self.kind]]["psnr_db"]

    @property
    def passed(self) -> bool:
        ok = self.main_psnr >= self.budget["psnr_db"]
        if self.spearman is not None:
            ok = ok and self.spearman >= self.budget["spearman"]
        return ok

    def summary(self) -> str:
        s = f"{MAIN_OUTPUT[self.kind]} PSNR {self.main_psnr:.1f} dB (budget ≥ {self.budget['psnr_db']:.0f})"
        s += f", max abs {self.outputs[MAIN_OUTPUT[self.kind]]['max_abs']:.3g}"
        if self.spearman is not None:
            s += f", score Spearman {self.spearman:.4f} (budget ≥ {self.budget['spearman']})"
        return s

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "precision": self.precision,
            "outputs": self.outputs,
            "spearman": self.spearman,
            "budget": self.budget,
            "n_patches": self.n_patches,
            "passed": self.passed,
        }


def check_parity(
    kind: str,
    precision: str,
    reference: dict[str, np.ndarray],
    test: dict[str, np.ndarray],
    source: str = "artifact",
    strict: bool = True,
) -> ParityResult:
    """Compare outputs; with ``strict`` raise :class:`ParityError` (with the numbers) when over budget."""
    rho = spearman(reference["score"], test["score"]) if kind == "vae" else None
    first = next(iter(reference.values()))
    result = ParityResult(kind, precision, compare_outputs(reference, test), rho, BUDGETS[precision], len(first))
    if strict and not result.passed:
        raise ParityError(f"{source}: parity with PyTorch fails the {precision} budget: {result.summary()}")
    return result


def as_named(kind: str, out: Any) -> dict[str, np.ndarray]:
    """A predictor's output (array or dict) as {output name: array}."""
    if isinstance(out, dict):
        return {k: np.asarray(v) for k, v in out.items()}
    return {MAIN_OUTPUT[kind]: np.asarray(out)}


def run_batched(
    predict: Callable[[np.ndarray], Any], kind: str, x: np.ndarray, batch: int = 32
) -> dict[str, np.ndarray]:
    """Run ``predict`` over ``x`` in batches and concatenate the named outputs."""
    parts = [as_named(kind, predict(x[i : i + batch])) for i in range(0, len(x), batch)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def measure_latency(
    predict: Callable[[np.ndarray], Any], x: np.ndarray, repeats: int = 10, warmup: int = 2
) -> dict[str, float]:
    """Median and best wall time (ms) of ``predict(x)`` per batch and per image."""
    for _ in range(warmup):
        predict(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        predict(x)
        times.append((time.perf_counter() - t0) * 1e3)
    med = statistics.median(times)
    return {
        "batch": len(x),
        "median_ms": med,
        "min_ms": min(times),
        "median_ms_per_image": med / len(x),
        "repeats": repeats,
    }
