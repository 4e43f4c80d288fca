"""A self-contained board benchmark: numpy + the artifact's interpreter, synthetic frames from a fixed seed.

Stages timed per call (milliseconds, percentiles over ``iters`` calls):

- ``sample``: the sparse-sampling mask of a whole frame and the gather of its kept pixels;
- ``normalise``: one batch of raw patches into the float32 NCHW input buffer;
- ``infer``: the interpreter on one batch;
- ``score``: the numpy post-processing of one batch (the CAE masked score; nothing for a VAE);
- ``scrub``: the CRC-32 check of the model's weight image;
- ``packetise``: one anomaly patch into CCSDS packets.

Throughput is patches per second through normalise + infer + score. The stages are timed without tracemalloc
(tracing every allocation doubled the sample and normalise times); memory is measured in one more, untimed pass
at the first thread count: the tracemalloc peak of the Python side (numpy buffers: frame, mask, batches; not the
interpreter's own arena), and the process's peak RSS over the whole run. Run it on the target board at its
thread counts and compare the JSON.
"""

from __future__ import annotations

import contextlib
import os
import platform
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeae.masks import make_mask
from edgeae.wire.packets import packetise
from edgeae.wire.products import AnomalyPatch

from .guard import block_crcs
from .memory_meter import peak_rss_bytes
from .score import PatchScorer

STAGES = ("sample", "normalise", "infer", "score", "scrub", "packetise")
MAX_BATCH = 1024  # patches per call: 1,024 RGB 128-px patches are 200 MB of float32 input
MAX_ITERS = 10_000
MAX_FRAME_SIDE = 65_536
MAX_FRAME_PIXELS = 2**28  # 268 Mpx: the 52,224 x 5,064 NAC strip fits (a uint8 frame per channel + its mask)


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


def _pcts(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {
        "p50": float(np.percentile(a, 50)),
        "p90": float(np.percentile(a, 90)),
        "p99": float(np.percentile(a, 99)),
        "mean": float(a.mean()),
        "n": len(ms),
    }


def _time(fn: Callable[[], Any], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1e3)
    return out


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version(), "numpy": np.__version__}
    for dist in ("onnxruntime", "ai-edge-litert", "edgeae"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    return out


def bench_threads(
    path: Path, threads: int, batch: int, iters: int, frame: tuple[int, int], keep: float
) -> dict[str, Any]:
    """Benchmark one thread count."""
    from .runtime import load_artifact

    t = time.perf_counter()
    pred = load_artifact(path, threads=threads)
    load_ms = (time.perf_counter() - t) * 1e3
    meta = pred.metadata
    if meta.kind not in ("vae", "cae"):  # the bench times the scoring path of the flight loop
        raise ValueError(
            f"{path.name} is a {meta.kind} artifact: firmware-sim bench times the flight loop's patch scoring, "
            "with a vae or cae (the whole model); time encoders and decoders with python -m edgeae.export.board "
            "check BUNDLE FILE --time"
        )
    c = meta.channels
    shape = meta.input_shape
    p = int(shape[2] if meta.layout == "NCHW" else shape[1])
    p = p if p > 0 else 64
    method = "vae" if meta.kind == "vae" else "cae-masked"
    rng = np.random.default_rng(0)
    scorer = PatchScorer(pred, method, p, c, batch, 8)
    patches = rng.integers(0, 256, (batch, p, p, c), dtype=np.uint8)
    keep_masks = make_mask(1, (p * batch, p), keep).reshape(batch, p, p)
    h, w = frame
    img = rng.integers(0, 256, (h, w, c), dtype=np.uint8)
    image = np.frombuffer(path.read_bytes(), np.uint8)

    def normalise() -> None:
        for k in range(batch):
            scorer.load(k, patches[k], keep_masks[k])

    out_holder: dict[str, Any] = {}

    def infer() -> None:
        out_holder["y"] = pred(scorer.buf)

    def score() -> None:
        y = out_holder["y"]
        if method != "vae":
            err = np.asarray(y, np.float32) - scorer.truth
            np.mean(err * err, axis=(1, 2, 3))

    ap = AnomalyPatch(0, 0, 0, p, 1.0, patches[0], 8, 0)
    normalise()
    infer()  # warm-up
    res: dict[str, list[float]] = {
        "sample": _time(lambda: img[make_mask(7, (h, w), keep)], max(3, min(iters, 10))),
        "normalise": _time(normalise, iters),
    }
    cpu0 = time.process_time()
    res["infer"] = _time(infer, iters)
    infer_cpu_ms = (time.process_time() - cpu0) * 1e3 / iters  # all threads; independent of machine load
    res["score"] = _time(score, iters)
    res["scrub"] = _time(lambda: block_crcs(image), iters)
    res["packetise"] = _time(lambda: packetise(ap), iters)
    per_batch = np.asarray(res["normalise"]) + np.asarray(res["infer"]) + np.asarray(res["score"])
    return {
        "threads": threads,
        "model": {
            "kind": meta.kind,
            "precision": meta.precision,
            "input": list(shape),
            "bytes": int(image.size),
        },
        "load_ms": load_ms,
        "batch": batch,
        "patch": p,
        "frame": [h, w, c],
        "stages_ms": {k: _pcts(v) for k, v in res.items()},
        "patches_per_s": float(batch * len(per_batch) / (per_batch.sum() / 1e3)),
        "infer_cpu_ms_per_batch": infer_cpu_ms,
        "patches_per_cpu_s": float(batch / (infer_cpu_ms / 1e3)) if infer_cpu_ms > 0 else None,
    }


def thread_warning(threads: Sequence[int]) -> str | None:
    """What ``firmware-sim run`` warns about a mission's ``[runtime] threads``, for bench's thread counts: more
    threads than the cores this process may use cost time without scoring faster."""
    from .frame_intake import usable_cores

    cores = usable_cores()
    over = sorted({int(t) for t in threads if cores and int(t) > cores})
    if not over:
        return None
    return (
        f"--threads {','.join(map(str, over))}: more than the {cores} core(s) this machine gives the process; "
        "those runs measure contention, not a faster board"
    )


def runtime_name(path: Path) -> str:
    """The interpreter an artifact runs in, by its suffix (as :func:`.runtime.load_artifact` chooses it)."""
    return "ai-edge-litert" if path.suffix == ".tflite" else "onnxruntime"


def check_recorded_hash(path: str | os.PathLike[str], error: type[Exception] = ValueError) -> None:
    """Refuse (``error``) a model file whose SHA-256 differs from the one its export recorded (a ``.sha256``
    sidecar or the ``parity.json`` beside it), as ``firmware-sim run`` does, instead of timing a damaged file
    (the board check, ``edgeae.export.board``, refuses with this too)."""
    from .guard import recorded_hash_mismatch

    why = recorded_hash_mismatch(Path(path))
    if why:
        raise error(why)


def run_bench(
    model: str | os.PathLike[str],
    threads: Sequence[int] = (1, 2),
    batch: int = 16,
    iters: int = 30,
    frame: tuple[int, int] = (1200, 1648),
    keep: float = 0.05,
) -> dict[str, Any]:
    """Benchmark ``model`` at each thread count; returns a JSON-ready dict."""
    from edgeae.resolve import interpreter_missing, model_path

    check_bench_args(batch, iters, frame, keep)
    if not threads:
        raise ValueError("bench needs at least one thread count")
    path = model_path(model, "artifact")
    check_recorded_hash(path)
    missing = interpreter_missing(path, "--model")  # names the shipped file this install runs, if there is one
    if missing:
        raise ValueError(missing)
    runs = [bench_threads(path, int(t), batch, iters, frame, keep) for t in threads]  # timed untraced
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        bench_threads(path, int(threads[0]), batch, 1, frame, keep)  # the memory pass: every stage, not timed
        traced = tracemalloc.get_traced_memory()[1]
    finally:
        if started:
            tracemalloc.stop()
    warning = thread_warning(threads)
    return {
        "artifact": str(path),
        "runtime": runtime_name(path),
        "warnings": [warning] if warning else [],
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "loadavg_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        },
        "versions": _versions(),
        "runs": runs,
        "memory": {"traced_peak_bytes": traced, "traced_threads": int(threads[0]), "rss_peak_bytes": peak_rss_bytes()},
    }


def format_table(result: dict[str, Any]) -> str:
    """A plain-text table: the artifact and interpreter measured, one row per (threads, stage) with p50/p90/p99
    ms, then throughput."""
    runtime = result.get("runtime") or runtime_name(Path(result["artifact"]))
    version = (result.get("versions") or {}).get(runtime)
    model = (result.get("runs") or [{}])[0].get("model") or {}
    kind = f", {model.get('kind')} {model.get('precision')}" if model else ""
    lines = [
        f"artifact {Path(result['artifact']).name} ({runtime}{' ' + version if version else ''}{kind}): "
        f"{result['artifact']}",
        f"{'threads':>7} {'stage':<10} {'p50 ms':>9} {'p90 ms':>9} {'p99 ms':>9}",
    ]
    for r in result["runs"]:
        for st in STAGES:
            s = r["stages_ms"][st]
            lines.append(f"{r['threads']:>7} {st:<10} {s['p50']:>9.3f} {s['p90']:>9.3f} {s['p99']:>9.3f}")
        lines.append(
            f"{r['threads']:>7} {'throughput':<10} {r['patches_per_s']:>9.1f} patches/s wall, "
            f"{r['patches_per_cpu_s'] or 0:.1f} per CPU-second "
            f"(batch {r['batch']} × {r['patch']}² px, model load {r['load_ms']:.1f} ms)"
        )
    m = result["memory"]
    load = result["machine"].get("loadavg_1min")
    cpus = result["machine"].get("cpus")
    load_text = f"{load:.2f}" if isinstance(load, int | float) else "unknown"
    if isinstance(load, int | float) and isinstance(cpus, int) and load >= cpus:
        load_text += f" (at or above the {cpus} cores: the timings are of a busy machine)"
    lines.append(
        f"memory: traced peak {m['traced_peak_bytes']:,} B (Python side, an untimed pass), RSS peak "
        f"{m['rss_peak_bytes']:,} B; 1-minute load {load_text}"
    )
    lines += [f"WARNING: {w}" for w in result.get("warnings") or []]
    return "\n".join(lines)
