"""Speed and memory per model and runtime (pytest-benchmark). Not part of the default test run.

    python -m pytest benchmarks/test_speed.py -m speed --benchmark-json=benchmarks/results/speed.json

Each case runs one model (CAE, CAE encoder, VAE score) in one runtime (PyTorch eager fp32, onnxruntime
fp32/int8, TFLite fp32/int8 through ai-edge-litert) at batch 1 or 32 with 1 or 2 threads. ``extra_info``
records throughput, peak RSS during the case, the model's operation count (from its layers) and the
achieved operations per second as a fraction of the machine's measured peak for that precision and thread
count (benchmarks/peak.py, measured in the same session), the ratio to PyTorch eager of the same model, batch
and threads in the same run (``ratio_to_torch_eager``; torch cases run first) and the 1-minute load. Inputs
are NCHW for every runtime (the predictors' calling convention; an NHWC artifact's wrapper transposes).
Artifacts are built once from the zoo models into $EDGEAE_BENCH_ARTIFACTS (default runs/bench-artifacts)
with edgeae.export, so the suite runs on a fresh clone with the data beside it (int8 calibration reads
../shared/data or $EDGEAE_DATA).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from benchmarks.speed_cases import BATCHES, MODELS, RUNTIMES, THREADS, case_predictor, item_shape, model_macs

pytestmark = pytest.mark.speed


class PeakRSS:
    """The process's RSS high-water mark over a block, from the kernel (VmHWM, reset on entry through
    /proc/self/clear_refs): no sampling thread competes with the timed code. Where the kernel's mark cannot
    be reset, the block's start and end RSS (a lower bound)."""

    def __enter__(self) -> PeakRSS:
        from edgeae.firmware_sim.memory_meter import reset_peak_rss, rss_bytes

        self.resettable = reset_peak_rss()
        self.peak = rss_bytes()
        return self

    def __exit__(self, *exc: object) -> None:
        from edgeae.firmware_sim.memory_meter import hwm_rss_bytes, rss_bytes

        hwm = hwm_rss_bytes() if self.resettable else None
        self.peak = max(self.peak, rss_bytes(), hwm or 0)

    @property
    def peak_mb(self) -> float:
        return self.peak / 2**20


@pytest.fixture(scope="session")
def peaks() -> dict[int, dict[str, float]]:
    from benchmarks.peak import measure_peak

    return {t: measure_peak(t) for t in THREADS}


_medians: dict[tuple[str, str, int, int], float] = {}  # (model, runtime, batch, threads) -> median s, this run


def _cases() -> Iterator[Any]:
    for kind in MODELS:
        for runtime in RUNTIMES:
            for batch in BATCHES:
                for threads in THREADS:
                    yield pytest.param(kind, runtime, batch, threads, id=f"{kind}-{runtime}-b{batch}-t{threads}")


@pytest.mark.parametrize("kind, runtime, batch, threads", list(_cases()))
def test_speed(
    benchmark: Any,
    kind: str,
    runtime: str,
    batch: int,
    threads: int,
    peaks: dict[int, dict[str, float]],
) -> None:
    predictor = case_predictor(kind, runtime, threads)
    if runtime == "torch-fp32":  # torch's intra-op pool is process-wide: set it for every torch case
        import torch

        torch.set_num_threads(threads)
    shape = item_shape(predictor.metadata)  # every predictor takes NCHW, whatever the file's layout
    x = np.random.default_rng(0).random((batch, *shape), dtype=np.float32)
    predictor(x)  # warm-up (and TFLite tensor resize)
    with PeakRSS() as mem:
        # ~1-3 s per case: enough rounds that the median is stable on a shared 2-core machine
        benchmark.pedantic(predictor, args=(x,), rounds=200 if batch == 1 else 20, iterations=1, warmup_rounds=3)
    median = benchmark.stats.stats.median
    _medians[(kind, runtime, batch, threads)] = median
    macs = model_macs(kind)
    precision = runtime.split("-")[1]
    peak_key = "ort_int8_gops" if precision == "int8" else "ort_fp32_gops"
    gops = 2 * macs * batch / median / 1e9
    benchmark.extra_info.update(
        model=kind,
        runtime=runtime,
        batch=batch,
        threads=threads,
        items_per_s=batch / median,
        mpix_per_s=batch * shape[-1] * shape[-2] / median / 1e6,
        peak_rss_mb=round(mem.peak_mb, 1),
        macs_per_item=macs,
        achieved_gops=round(gops, 2),
        machine_peak_gops=peaks[threads][peak_key],
        fraction_of_peak=round(gops / peaks[threads][peak_key], 4),
        load_1min=round(os.getloadavg()[0], 2),
    )
    torch_ms = _medians.get((kind, "torch-fp32", batch, threads))  # the same run, threads and batch
    if torch_ms is not None:
        benchmark.extra_info["ratio_to_torch_eager"] = round(torch_ms / median, 3)
