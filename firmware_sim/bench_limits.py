"""What a board bench may be asked for and may need, refused before the work: the sizes (batch, iterations,
frame, keep fraction), the thread counts against this machine's CPUs, the output file (a probe), and the memory
the run will hold, estimated from a warm-up (:func:`estimate_memory`) and refused above
:data:`MAX_BENCH_MEMORY` or what this machine has available (:func:`check_memory`)."""

from __future__ import annotations

import os
import tracemalloc
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeae.masks import make_mask

from .bench_model import _patch_side, load_model

MAX_BATCH = 1024  # patches per call (what they cost with the model's activations: estimate_memory)
MAX_ITERS = 10_000
MAX_FRAME_SIDE = 65_536
MAX_FRAME_PIXELS = 2**28  # 268 Mpx: the 52,224 x 5,064 NAC strip fits (a uint8 frame per channel + its mask)
MAX_BENCH_MEMORY = 4 * 1024**3  # what a bench may need (estimate_memory), and never more than the machine has free
THREADS_PER_CORE_MAX = 4  # --threads above 4 x the cores (or 256) is refused: 500 threads did not finish in 60 s
THREADS_MAX = 256


def check_bench_args(batch: int, iters: int, frame: tuple[int, int], keep: float) -> None:
    """Refuse, before any model is loaded, bench sizes that are not numbers the bench can allocate (ValueError)."""
    h, w = frame
    if not 1 <= batch <= MAX_BATCH:
        raise ValueError(f"--batch must be 1-{MAX_BATCH} patches, got {batch}")
    if not 1 <= iters <= MAX_ITERS:
        raise ValueError(f"--iters must be 1-{MAX_ITERS}, got {iters}")
    if not (1 <= h <= MAX_FRAME_SIDE and 1 <= w <= MAX_FRAME_SIDE) or h * w > MAX_FRAME_PIXELS:
        raise ValueError(
            f"--frame-height and --frame-width must be 1-{MAX_FRAME_SIDE} px and at most {MAX_FRAME_PIXELS:,} px "
            f"together, got {h} x {w}"
        )
    if not 0.0 < keep <= 1.0:  # NaN fails too
        raise ValueError(f"--keep must be a fraction in (0, 1], got {keep}")


def max_threads() -> int:
    """The most threads per interpreter a bench or a board timing takes: 4 x the CPUs, at most 256."""
    return min(THREADS_MAX, THREADS_PER_CORE_MAX * (os.cpu_count() or 1))


def check_threads(threads: Sequence[int], flag: str = "--threads") -> None:
    """Refuse (ValueError) thread counts below 1 or above :func:`max_threads`: a count far above the cores spends
    minutes measuring contention (``--threads 500`` did not finish a one-iteration bench in 60 s)."""
    top = max_threads()
    bad = [int(t) for t in threads if not 1 <= int(t) <= top]
    if bad:
        raise ValueError(
            f"{flag} must be 1-{top} ({THREADS_PER_CORE_MAX} x the {os.cpu_count() or 1} CPUs of this machine, at "
            f"most {THREADS_MAX}), got {','.join(map(str, bad))}"
        )


def check_writable(path: str | os.PathLike[str], flag: str) -> str | None:
    """Why ``path`` could not be written (None: it can), found with a probe file before any work: a folder, a
    missing folder, a folder we may not write (``/proc``), an existing file we may not replace."""
    import tempfile

    target = Path(path)
    if target.is_dir():
        return f"{flag} {target} is a folder: name the file to write"
    if not target.parent.is_dir():
        return f"{flag} {target}: folder {target.parent} does not exist"
    try:
        with tempfile.NamedTemporaryFile(dir=target.parent, prefix=".edgeae-write-check-"):
            pass
        if target.exists() and not os.access(target, os.W_OK):
            return f"{flag} {target}: the file exists and cannot be overwritten"
    except OSError as e:
        return f"{flag} {target}: cannot write in {target.parent} ({e.strerror or e})"
    return None


def _available_bytes() -> tuple[int, str] | None:
    """``(bytes, which bound)``: what this process can still get (:func:`edgeae.memory_probe.tightest`: the smallest
    of MemAvailable, the cgroup's room and the address space left under RLIMIT_AS); None where none is known. Until
    session 36 MemAvailable alone: under ``ulimit -v`` a bench its own estimate put over the limit ran and died
    mid-stage with a MemoryError traceback."""
    from edgeae.memory_probe import tightest

    return tightest()


def estimate_memory(
    path: Path, threads: int, batch: int, frame: tuple[int, int], keep: float
) -> dict[str, Any]:  # fmt: skip
    """What one thread count of the bench will hold at its peak, in bytes, measured on small sizes: the process as
    it is; the loaded model with its arena at a batch of 1; the model's growth per patch between a batch of 1 and
    of 8 (activations and outputs in the interpreter's arena: the rover U-Net takes ~10 MB a 128-px patch, far more
    than its 196 KB input), each batch run twice (onnxruntime's second run of a shape allocates its planned memory
    beside the first run's: the U-Net's arena at a batch of 32 doubled, 179 -> 335 MB), doubled because arenas
    grow in steps, times ``batch``; the sampling stage's bytes per pixel on a 256 x 256 frame times the frame's
    pixels. An upper bound by design (``rover-rgb-unet2-ground`` at ``--batch 32``: ~0.75 GB estimated, 0.44 GB
    measured; until session 34 the single run's growth estimated 0.36 GB). The RSS growth needs Linux (elsewhere
    the model's part is its inputs and outputs only). ``rss_peak_while_estimating_bytes``: the process's peak RSS
    until here (the kernel's high-water mark is reset here, so the bench's peak over the run folds this one in)."""
    from .memory_meter import hwm_rss_bytes, peak_rss_bytes, reset_peak_rss, rss_bytes

    seen = peak_rss_bytes()  # the process's peak so far: the reset below clears it (ru_maxrss too, on Linux)
    base = rss_bytes()  # what the process holds already (Python, numpy, the interpreter's library)
    pred = load_model(path, threads)
    meta = pred.metadata
    c = int(meta.channels)
    p = _patch_side(meta)
    io_per_patch = 4 * c * p * p * 4  # the float input buffer, the truth, the output, the raw patch and masks

    def zeros(n: int) -> np.ndarray:
        return np.zeros((n, c, p, p) if meta.layout == "NCHW" else (n, p, p, c), np.float32)

    def grow(n: int) -> int | None:
        nonlocal seen
        x = zeros(n)
        r0 = rss_bytes()
        seen = max(seen, peak_rss_bytes(), hwm_rss_bytes() or 0)
        if not reset_peak_rss():
            pred(x)
            pred(x)
            return None
        pred(x)
        pred(x)  # the second run of a shape holds more than the first (see above)
        hwm = hwm_rss_bytes()
        return None if hwm is None else max(0, hwm - r0)

    one = zeros(1)
    pred(one)  # lazy setup and the arena of a batch of 1 off the scale, in the loaded model's bytes
    pred(one)
    loaded = max(0, rss_bytes() - base)
    g8 = grow(8)
    seen = max(seen, peak_rss_bytes(), hwm_rss_bytes() or 0)
    measured = None if g8 is None else g8 / 7  # over the warm-up's batch of 1, which the arena keeps
    per_patch = max(io_per_patch, 2 * int(measured or 0))
    h, w = frame
    small = 256
    img = np.zeros((small, small, c), np.uint8)
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        img[make_mask(7, (small, small), keep)]
        per_px = tracemalloc.get_traced_memory()[1] / (small * small)
    finally:
        if started:
            tracemalloc.stop()
    sample = int(h * w * (c + per_px))
    model_bytes = per_patch * batch
    return {
        "bytes": base + loaded + model_bytes + sample,
        "process_bytes": base,
        "loaded_bytes": loaded,
        "model_bytes": model_bytes,
        "per_patch_bytes": per_patch,
        "sample_bytes": sample,
        "measured": measured is not None,
        "rss_peak_while_estimating_bytes": seen,
    }


def check_memory(estimate: dict[str, Any], batch: int, limit: int | None = None) -> None:
    """Refuse (ValueError, one line) a bench whose :func:`estimate_memory` is above ``limit`` (default
    :data:`MAX_BENCH_MEMORY`) or above the memory this process can get (:func:`_available_bytes`)."""
    from edgeae.memory_probe import SOURCE_NAMES

    found = _available_bytes()
    cap = MAX_BENCH_MEMORY if limit is None else int(limit)
    why = f"the bench's limit of {cap / 2**30:.1f} GiB"
    if found is not None and found[0] < cap:
        cap, why = found[0], f"the {found[0] / 2**30:.2f} GiB this process can get ({SOURCE_NAMES[found[1]]})"
    if estimate["bytes"] > cap:
        raise ValueError(
            f"this bench would need about {estimate['bytes'] / 2**30:.1f} GiB "
            f"(~{estimate['per_patch_bytes'] / 2**20:.1f} MiB per patch x --batch {batch}, "
            f"{estimate['sample_bytes'] / 2**30:.2f} GiB for the frame), more than {why}: a smaller --batch or frame"
        )
