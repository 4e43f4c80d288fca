"""A self-contained board benchmark: numpy + the artifact's interpreter, synthetic frames from a fixed seed.

Stages timed per call (milliseconds, percentiles over ``iters`` calls):

- ``sample``: the sparse-sampling mask of a whole frame and the gather of its kept pixels;
- ``normalise``: one batch of raw patches into the model's input: for a CAE the float32 NCHW buffer
  (:class:`.score.PatchScorer`); for a VAE the raw (N, C, P, P) sample batch the flight loop hands its scoring
  engine (the lookup-table normalisation is inside ``infer`` there too);
- ``infer``: the interpreter on one batch; for a VAE through :func:`.score.score_runner`, the fast path the flight
  loop runs (only the ``score`` output is read back; ``score`` and ``mu`` for a zoo name a shipped mission scores
  with ``score = "terms-max"``, :func:`flight_terms`: ``orbital-gray-vae``), for a CAE the predictor's call;
- ``score``: the numpy post-processing of one batch (the CAE masked score; nothing for a VAE);
- ``scrub``: the CRC-32 check of the model's weight image;
- ``packetise``: one anomaly patch into CCSDS packets.

Wall-clock throughput is patches per second through normalise + infer + score; the CPU figure is patches per
second of process CPU time (all threads, thread-pool spin included) in ``infer`` alone. The stages are timed
without tracemalloc (tracing every allocation doubled the sample and normalise times); the Python side's
tracemalloc peak (numpy buffers: frame, mask, batches; not the interpreter's own arena) is measured in one more,
untimed pass at the first thread count, the process's peak RSS per thread count and over the whole run. A zoo name
is timed as the file the flight runtime flies (:func:`flight_prefer`). Before the first batch, the memory the run
will need is estimated from a warm-up (:func:`estimate_memory`) and the run refused above
:data:`MAX_BENCH_MEMORY` or the memory this machine has available. Run it on the target board at its thread counts
and compare the JSON.
"""

from __future__ import annotations

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

from .bench_limits import MAX_BATCH as MAX_BATCH
from .bench_limits import MAX_BENCH_MEMORY as MAX_BENCH_MEMORY
from .bench_limits import MAX_FRAME_PIXELS as MAX_FRAME_PIXELS
from .bench_limits import MAX_FRAME_SIDE as MAX_FRAME_SIDE
from .bench_limits import MAX_ITERS as MAX_ITERS
from .bench_limits import THREADS_MAX as THREADS_MAX
from .bench_limits import THREADS_PER_CORE_MAX as THREADS_PER_CORE_MAX
from .bench_limits import check_bench_args as check_bench_args
from .bench_limits import check_memory as check_memory
from .bench_limits import check_threads as check_threads
from .bench_limits import check_writable as check_writable
from .bench_limits import estimate_memory as estimate_memory
from .bench_limits import max_threads as max_threads
from .bench_machine import SIMD_FLAGS as SIMD_FLAGS
from .bench_machine import _versions, machine_line
from .bench_machine import busy_note as busy_note
from .bench_machine import cpu_record as cpu_record
from .bench_machine import load_1min as load_1min
from .bench_machine import thread_warning as thread_warning
from .bench_model import _patch_side
from .bench_model import check_recorded_hash as check_recorded_hash
from .bench_model import flight_guard_refusal as flight_guard_refusal
from .bench_model import flight_prefer as flight_prefer
from .bench_model import flight_terms as flight_terms
from .bench_model import import_interpreter as import_interpreter
from .bench_model import load_model as load_model
from .bench_model import resolve_bench_model as resolve_bench_model
from .bench_model import runtime_name as runtime_name
from .guard import block_crcs
from .memory_meter import peak_rss_bytes
from .score import PatchScorer

STAGES = ("sample", "normalise", "infer", "score", "scrub", "packetise")
WALL = "patches/s wall (normalise + infer + score)"


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


def bench_threads(
    path: Path,
    threads: int,
    batch: int,
    iters: int,
    frame: tuple[int, int],
    keep: float,
    terms: bool = False,
    terms_why: str = "",
) -> dict[str, Any]:
    """Benchmark one thread count: each stage ``iters`` times after one warm-up call. ``terms``: a VAE is timed as a
    mission with ``score = "terms-max"`` flies it (``mu`` read back too: :func:`flight_terms`); ``terms_why``: which
    mission says so (in the ``infer_path`` text)."""
    t = time.perf_counter()
    pred = load_model(path, threads)
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
    p = _patch_side(meta)
    method = "vae" if meta.kind == "vae" else "cae-masked"
    rng = np.random.default_rng(0)
    patches = rng.integers(0, 256, (batch, p, p, c), dtype=np.uint8)
    h, w = frame
    img = rng.integers(0, 256, (h, w, c), dtype=np.uint8)
    image = np.frombuffer(path.read_bytes(), np.uint8)
    out_holder: dict[str, Any] = {}
    if method == "vae":  # what the flight loop runs: raw samples in, the score-only fast path
        from .score import score_runner

        runner = score_runner(pred, raw_max=255, terms=terms)
        raw = np.empty((batch, c, p, p), np.uint8)

        def normalise() -> None:
            np.copyto(raw, patches.transpose(0, 3, 1, 2))

        def infer() -> None:
            out_holder["y"] = runner(raw)

        def score() -> None:
            pass

        path_timed = (
            "score_runner(terms=True): raw uint8 batch, score and mu outputs read back (the flight loop's fast path "
            "for terms-max"
            if terms
            else "score_runner: raw uint8 batch, score output only (the flight loop's fast path"
        ) + (f"; {terms_why})" if terms_why else ")")
    else:
        scorer = PatchScorer(pred, method, p, c, batch, 8)
        keep_masks = make_mask(1, (p * batch, p), keep).reshape(batch, p, p)

        def normalise() -> None:
            for k in range(batch):
                scorer.load(k, patches[k], keep_masks[k])

        def infer() -> None:
            out_holder["y"] = pred(scorer.buf)

        def score() -> None:
            err = np.asarray(out_holder["y"], np.float32) - scorer.truth
            np.mean(err * err, axis=(1, 2, 3))

        path_timed = "predictor call on the masked float32 batch, masked-MSE score in numpy"

    ap = AnomalyPatch(0, 0, 0, p, 1.0, patches[0], 8, 0)
    normalise()
    infer()  # warm-up
    res: dict[str, list[float]] = {
        "sample": _time(lambda: img[make_mask(7, (h, w), keep)], iters),
        "normalise": _time(normalise, iters),
    }
    cpu0 = time.process_time()
    res["infer"] = _time(infer, iters)
    infer_cpu_ms = (time.process_time() - cpu0) * 1e3 / iters  # all threads; independent of machine load
    res["score"] = _time(score, iters)
    res["scrub"] = _time(lambda: block_crcs(image), iters)
    res["packetise"] = _time(lambda: packetise(ap), iters)
    per_batch = np.asarray(res["normalise"]) + np.asarray(res["infer"]) + np.asarray(res["score"])
    p50_batch = sum(float(np.percentile(res[k], 50)) for k in ("normalise", "infer", "score"))
    return {
        "threads": threads,
        "model": {
            "kind": meta.kind,
            "precision": meta.precision,
            "input": list(shape),
            "bytes": int(image.size),
        },
        "infer_path": path_timed,
        "load_ms": load_ms,
        "batch": batch,
        "patch": p,
        "frame": [h, w, c],
        "stages_ms": {k: _pcts(v) for k, v in res.items()},
        "patches_per_s": float(batch * len(per_batch) / (per_batch.sum() / 1e3)),
        "patches_per_s_scope": "normalise + infer + score, wall clock, at their mean over the iterations",
        # what the table's p50 rows give (a bimodal infer's mean can be far from its p50: 4.58 against 6.25 ms)
        "patches_per_s_p50": float(batch / (p50_batch / 1e3)) if p50_batch > 0 else None,
        "infer_cpu_ms_per_batch": infer_cpu_ms,
        "patches_per_cpu_s": float(batch / (infer_cpu_ms / 1e3)) if infer_cpu_ms > 0 else None,
        "patches_per_cpu_s_scope": "infer only, process CPU time of all threads (thread-pool spin included)",
    }


def run_bench(
    model: str | os.PathLike[str],
    threads: Sequence[int] = (1, 2),
    batch: int = 16,
    iters: int = 30,
    frame: tuple[int, int] = (1200, 1648),
    keep: float = 0.05,
    prefer: Sequence[str] | None = None,
    max_memory: int | None = None,
) -> dict[str, Any]:
    """Benchmark ``model`` at each thread count; returns a JSON-ready dict. ``prefer``: the formats a zoo name
    takes first (default: what the flight runtime flies, :func:`flight_prefer`); ``max_memory``: the most bytes
    the run may need by :func:`estimate_memory` (default :data:`MAX_BENCH_MEMORY`, and never more than is free)."""
    import hashlib

    from edgeae.resolve import interpreter_missing

    from .memory_meter import hwm_rss_bytes, reset_peak_rss

    check_bench_args(batch, iters, frame, keep)
    if not threads:
        raise ValueError("bench needs at least one thread count")
    check_threads(threads)
    path, chosen_by = resolve_bench_model(model, prefer)
    terms, terms_why = flight_terms(model)  # the VAE scoring of the mission flying a zoo name (terms-max: mu too)
    scoring: dict[str, Any] = {"terms": True, "terms_why": terms_why} if terms else {}  # else bench_threads' default
    check_recorded_hash(path)
    refused = flight_guard_refusal(path)
    missing = interpreter_missing(path, "--model")  # names the shipped file this install runs, if there is one
    if missing:
        raise ValueError(missing)
    load_before = load_1min()
    cpu_before = time.process_time()
    import_ms = import_interpreter(path)  # before any load is timed: the first row's load is the load alone
    estimate = estimate_memory(path, int(max(threads)), batch, frame, keep)
    check_memory(estimate, batch, max_memory)
    runs, rss_peaks = [], []
    # the peak over the run: each reset of the kernel's high-water mark clears ru_maxrss too (Linux), so it is the
    # largest of the peaks read before each reset (the estimate's, each thread count's) and the one after the last
    seen = [estimate["rss_peak_while_estimating_bytes"], peak_rss_bytes()]
    for t in threads:  # timed untraced; the peak RSS of each thread count from the kernel's high-water mark
        peak_ok = reset_peak_rss()
        runs.append(bench_threads(path, int(t), batch, iters, frame, keep, **scoring))
        rss_peaks.append(hwm_rss_bytes() if peak_ok else None)
        seen.append(peak_rss_bytes())
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        bench_threads(path, int(threads[0]), batch, 1, frame, keep, **scoring)  # the memory pass: untimed
        traced = tracemalloc.get_traced_memory()[1]
    finally:
        if started:
            tracemalloc.stop()
    load_after = load_1min()
    cpus = os.cpu_count()
    warnings = [w for w in (refused, thread_warning(threads), busy_note((load_before, load_after), cpus)) if w]
    return {
        "artifact": str(path),
        "artifact_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "chosen_by": chosen_by,
        "runtime": runtime_name(path),
        "warnings": warnings,
        "settings": {
            "threads": [int(t) for t in threads],
            "batch": batch,
            "iters": iters,
            "frame": list(frame),
            "keep": keep,
        },
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu": cpu_record(),
            "cpus": cpus,
            "loadavg_1min": load_before,
            "loadavg_1min_after": load_after,
            "process_cpu_s": round(time.process_time() - cpu_before, 3),
        },
        "versions": _versions(),
        "import_ms": import_ms,
        "memory_estimate": estimate,
        "runs": runs,
        "memory": {
            "traced_peak_bytes": traced,
            "traced_threads": int(threads[0]),
            "rss_peak_bytes": max(*seen, *(v for v in rss_peaks if v is not None), peak_rss_bytes()),
            "rss_peak_bytes_per_run": rss_peaks,  # one per thread count, in the order of "runs" (Linux)
        },
    }


def format_table(result: dict[str, Any]) -> str:
    """A plain-text table: the artifact and interpreter measured (and the path timed), one row per (threads, stage)
    with p50/p90/p99 ms, then throughput with the scope of each number, memory and the load before and after
    (the warnings are not in it: :func:`warning_lines`)."""
    runtime = result.get("runtime") or runtime_name(Path(result["artifact"]))
    version = (result.get("versions") or {}).get(runtime)
    model = (result.get("runs") or [{}])[0].get("model") or {}
    kind = f", {model.get('kind')} {model.get('precision')}" if model else ""
    lines = [
        f"artifact {Path(result['artifact']).name} ({runtime}{' ' + version if version else ''}{kind}): "
        f"{result['artifact']}",
    ]
    if result.get("chosen_by"):
        lines.append(f"file chosen by: {result['chosen_by']}")
    infer_path = (result.get("runs") or [{}])[0].get("infer_path")
    if infer_path:
        lines.append(f"infer timed through: {infer_path}")
    lines.append(machine_line(result))
    if result.get("import_ms") is not None:
        lines.append(f"{runtime} import: {result['import_ms']:.1f} ms (before any model load was timed)")
    lines.append(f"{'threads':>7} {'stage':<10} {'p50 ms':>9} {'p90 ms':>9} {'p99 ms':>9} {'n':>6}")
    for r in result["runs"]:
        for st in STAGES:
            s = r["stages_ms"][st]
            n = f"{s['n']:>6}" if "n" in s else ""
            lines.append(f"{r['threads']:>7} {st:<10} {s['p50']:>9.3f} {s['p90']:>9.3f} {s['p99']:>9.3f} {n}".rstrip())
        p50, mean = r.get("patches_per_s_p50"), r["patches_per_s"]  # a result from before session 36 has no p50
        rate = f"{p50:>9.1f} {WALL} at the p50s above, {mean:.1f} at their mean" if p50 else f"{mean:>9.1f} {WALL}"
        lines.append(
            f"{r['threads']:>7} {'throughput':<10} {rate}, {r['patches_per_cpu_s'] or 0:.1f} patches per CPU-second "
            f"of infer alone (all threads) (batch {r['batch']} × {r['patch']}² px, model load {r['load_ms']:.1f} ms)"
        )
    m = result["memory"]
    machine = result["machine"]
    load, after, cpus = machine.get("loadavg_1min"), machine.get("loadavg_1min_after"), machine.get("cpus")
    load_text = f"{load:.2f}" if isinstance(load, int | float) else "unknown"
    if isinstance(after, int | float):
        load_text += f" before, {after:.2f} after"
    busy = busy_note((load, after), cpus if isinstance(cpus, int) else None)
    if busy and not any("busy machine" in w for w in result.get("warnings") or []):
        load_text += f" (at or above the {cpus} cores: the timings are of a busy machine)"
    per_run = m.get("rss_peak_bytes_per_run") or []
    peaks = ", ".join(
        f"{r['threads']} thread(s) {v:,} B" for r, v in zip(result["runs"], per_run, strict=False) if v is not None
    )
    lines.append(
        f"memory: traced peak {m['traced_peak_bytes']:,} B (Python side, an untimed pass at "
        f"{m.get('traced_threads', '?')} thread(s)), RSS peak {m['rss_peak_bytes']:,} B over the run"
        + (f" ({peaks})" if peaks else "")
        + f"; 1-minute load {load_text}"
    )
    return "\n".join(lines)


def warning_lines(result: dict[str, Any]) -> list[str]:
    """The benchmark's warnings (a refused file, more threads than cores, a busy machine), one ``WARNING:`` line
    each: ``firmware-sim bench`` prints them on stderr after the table (:func:`format_table`, on stdout)."""
    return [f"WARNING: {w}" for w in result.get("warnings") or []]
