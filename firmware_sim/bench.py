"""A self-contained board benchmark: numpy + the artifact's interpreter, synthetic frames from a fixed seed.

Stages timed per call (milliseconds, percentiles over ``iters`` calls):

- ``sample``: the sparse-sampling mask of a whole frame and the gather of its kept pixels;
- ``normalise``: one batch of raw patches into the model's input: for a CAE the float32 NCHW buffer
  (:class:`.score.PatchScorer`); for a VAE the raw (N, C, P, P) sample batch the flight loop hands its scoring
  engine (the lookup-table normalisation is inside ``infer`` there too);
- ``infer``: the interpreter on one batch; for a VAE through :func:`.score.score_runner`, the score-only fast path
  the flight loop runs (only the ``score`` output is read back), for a CAE the predictor's call;
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
MAX_BATCH = 1024  # patches per call (what they cost with the model's activations: estimate_memory)
MAX_ITERS = 10_000
MAX_FRAME_SIDE = 65_536
MAX_FRAME_PIXELS = 2**28  # 268 Mpx: the 52,224 x 5,064 NAC strip fits (a uint8 frame per channel + its mask)
MAX_BENCH_MEMORY = 4 * 1024**3  # what a bench may need (estimate_memory), and never more than the machine has free
THREADS_PER_CORE_MAX = 4  # --threads above 4 x the cores (or 256) is refused: 500 threads did not finish in 60 s
THREADS_MAX = 256
SIMD_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni",
              "avx512_bf16", "amx_int8", "asimd", "asimddp", "sve", "neon")  # fmt: skip


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


def cpu_record() -> dict[str, Any]:
    """What decides an artifact's speed on this CPU, for comparing boards: machine, model, the SIMD flags that
    pick onnxruntime's and XNNPACK's kernels, VNNI, whether full-range int8 ONNX weights saturate here."""
    from .cpu import VNNI_FLAGS, cpu_flags, cpu_model, int8_saturates

    flags = cpu_flags()
    return {
        "machine": platform.machine(),
        "cpu_model": cpu_model(),
        "simd": [f for f in SIMD_FLAGS if f in flags] if flags else None,
        "vnni": bool(flags & VNNI_FLAGS) if flags else None,
        "int8_saturates": int8_saturates(),
    }


def load_1min() -> float | None:
    """The 1-minute load average (None where the OS has none)."""
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def busy_note(loads: Sequence[float | None], cpus: int | None) -> str | None:
    """A warning when any of ``loads`` (1-minute load averages) is at or above the CPU count: the timings are
    then of a busy machine (others' work shares the cores)."""
    top = max((x for x in loads if isinstance(x, int | float)), default=None)
    if top is None or not cpus or top < cpus:
        return None
    return (
        f"1-minute load {top:.2f} at or above the {cpus} CPUs: the timings are of a busy machine; compare runs made "
        "at a low load, or the CPU figures"
    )


def _invalid_model_text(path: Path, err: Exception) -> str | None:
    """A plain reason for an interpreter's parse error of a damaged model file (None: not one of those)."""
    text = str(err)
    if "INVALID_PROTOBUF" in text or "Protobuf parsing failed" in text:
        return f"{path}: not a valid ONNX model (truncated or not ONNX: onnxruntime cannot parse it)"
    if "unpack_from requires a buffer" in text or "corrupted TFLite flatbuffer" in text:
        return f"{path}: not a valid TFLite model (truncated or damaged flatbuffer)"
    return None


def load_model(path: str | os.PathLike[str], threads: int) -> Any:
    """:func:`.runtime.load_artifact` with a damaged file's parser error said plainly (the same exception type)."""
    from .runtime import load_artifact

    try:
        return load_artifact(path, threads=threads)
    except Exception as e:
        why = _invalid_model_text(Path(path), e)
        if why is None:
            raise
        raise type(e)(why) from e


def import_interpreter(path: Path) -> float:
    """Import the interpreter ``path`` runs in; the milliseconds it took (0 when it was imported already), so that
    no model load is timed with the import in it."""
    from edgeae._optional import require

    t = time.perf_counter()
    require("ai_edge_litert.interpreter" if path.suffix == ".tflite" else "onnxruntime")
    return (time.perf_counter() - t) * 1e3


def flight_prefer(model: str | os.PathLike[str]) -> tuple[tuple[str, ...], str]:
    """The artifact formats the flight runtime takes first for ``model`` and why: a zoo name a shipped mission
    flies gets that mission's ``prefer`` (``orbital-gray-vae``: ``tflite, onnx``, orbital_nac), any other the
    runtime's default (onnx, tflite, ort). A file path needs none."""
    from edgeae.resolve import ZOO_PREFIX, presets

    from .mission import MISSIONS_DIR, load_mission

    name = str(model).removeprefix(ZOO_PREFIX)
    if not name or Path(name).suffix or "/" in name:
        return (), "a file"
    for mission, path in presets(MISSIONS_DIR).items():
        try:
            m = load_mission(path)
        except Exception:  # a shipped mission that does not load is its own test's business, not the bench's
            continue
        for role in ("anomaly", "reconstruction"):
            sec = getattr(m, role)
            if str(sec.model).removeprefix(ZOO_PREFIX) == name and sec.prefer:
                return tuple(sec.prefer), f"mission {mission} [{role}] prefer"
    return (), "the flight runtime's default order"


def _available_bytes() -> int | None:
    """MemAvailable of /proc/meminfo (None where it cannot be read)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def estimate_memory(
    path: Path, threads: int, batch: int, frame: tuple[int, int], keep: float
) -> dict[str, Any]:  # fmt: skip
    """What one thread count of the bench will hold at its peak, in bytes, measured on small sizes: the process as
    it is; the model's growth per patch between a batch of 1 and of 8 (activations and outputs in the interpreter's
    arena: the rover U-Net takes ~11 MB a 128-px patch, far more than its 196 KB input), doubled because arenas grow
    in steps, times ``batch``; the sampling stage's bytes per pixel on a 256 x 256 frame times the frame's pixels.
    The RSS growth needs Linux (elsewhere the model's part is its inputs and outputs only)."""
    from .memory_meter import hwm_rss_bytes, reset_peak_rss, rss_bytes

    base = rss_bytes()  # what the process holds already (Python, numpy, the interpreter's library)
    pred = load_model(path, threads)
    meta = pred.metadata
    c = int(meta.channels)
    p = _patch_side(meta)
    io_per_patch = 4 * c * p * p * 4  # the float input buffer, the truth, the output, the raw patch and masks

    def grow(n: int) -> int | None:
        x = np.zeros((n, c, p, p), np.float32) if meta.layout == "NCHW" else np.zeros((n, p, p, c), np.float32)
        r0 = rss_bytes()
        if not reset_peak_rss():
            pred(x)
            return None
        pred(x)
        hwm = hwm_rss_bytes()
        return None if hwm is None else max(0, hwm - r0)

    pred(np.zeros((1, c, p, p) if meta.layout == "NCHW" else (1, p, p, c), np.float32))  # lazy setup off the scale
    g8 = grow(8)
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
        "bytes": base + model_bytes + sample,
        "process_bytes": base,
        "model_bytes": model_bytes,
        "per_patch_bytes": per_patch,
        "sample_bytes": sample,
        "measured": measured is not None,
    }


def check_memory(estimate: dict[str, Any], batch: int, limit: int | None = None) -> None:
    """Refuse (ValueError, one line) a bench whose :func:`estimate_memory` is above ``limit`` (default
    :data:`MAX_BENCH_MEMORY`) or above the memory this machine has available."""
    free = _available_bytes()
    cap = MAX_BENCH_MEMORY if limit is None else int(limit)
    why = f"the bench's limit of {cap / 2**30:.1f} GiB"
    if free is not None and free < cap:
        cap, why = free, f"the {free / 2**30:.1f} GiB this machine has available"
    if estimate["bytes"] > cap:
        raise ValueError(
            f"this bench would need about {estimate['bytes'] / 2**30:.1f} GiB "
            f"(~{estimate['per_patch_bytes'] / 2**20:.1f} MiB per patch x --batch {batch}, "
            f"{estimate['sample_bytes'] / 2**30:.2f} GiB for the frame), more than {why}: a smaller --batch or frame"
        )


def _patch_side(meta: Any) -> int:
    shape = meta.input_shape
    p = int(shape[2] if meta.layout == "NCHW" else shape[1])
    return p if p > 0 else 64


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
    """Benchmark one thread count: each stage ``iters`` times after one warm-up call."""
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

        runner = score_runner(pred, raw_max=255)
        raw = np.empty((batch, c, p, p), np.uint8)

        def normalise() -> None:
            np.copyto(raw, patches.transpose(0, 3, 1, 2))

        def infer() -> None:
            out_holder["y"] = runner(raw)

        def score() -> None:
            pass

        path_timed = "score_runner: raw uint8 batch, score output only (the flight loop's fast path)"
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
        "patches_per_s_scope": "normalise + infer + score, wall clock",
        "infer_cpu_ms_per_batch": infer_cpu_ms,
        "patches_per_cpu_s": float(batch / (infer_cpu_ms / 1e3)) if infer_cpu_ms > 0 else None,
        "patches_per_cpu_s_scope": "infer only, process CPU time of all threads (thread-pool spin included)",
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


def flight_guard_refusal(path: str | os.PathLike[str]) -> str | None:
    """Why the flight runtime would refuse ``path`` at boot (None: it would not): :func:`.guard.parity_failure`
    (its export rejected it, ``NAME.FAILED.EXT`` or ``NAME.STALE.EXT``, or not recorded by the export beside it).
    The bench times such a file all the same, with this in its warnings; the board check fails it."""
    from .guard import parity_failure

    why = parity_failure(Path(path))
    return f"refused by the flight guard: {why}; these timings are of a file no flight would run" if why else None


def resolve_bench_model(model: str | os.PathLike[str], prefer: Sequence[str] | None = None) -> tuple[Path, str]:
    """The file ``--model`` names (a zoo name: the file the flight runtime flies, ``prefer`` first when given,
    else :func:`flight_prefer`) and which order chose it; a plain one-line error for an empty name or a folder."""
    from edgeae.resolve import model_path

    text = os.fspath(model)
    if not text.strip():
        raise ValueError("--model is empty: give a zoo name (orbital-gray-vae) or an .onnx / .ort / .tflite file")
    if Path(text).is_dir():
        raise ValueError(f"--model {text} is a folder: give an .onnx / .ort / .tflite file in it, or a zoo name")
    if prefer is None:
        order, why = flight_prefer(text)
    else:
        order, why = tuple(prefer), "--prefer"
    return model_path(text, "artifact", prefer=order), (f"{','.join(order)} ({why})" if order else why)


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
    for t in threads:  # timed untraced; the peak RSS of each thread count from the kernel's high-water mark
        peak_ok = reset_peak_rss()
        runs.append(bench_threads(path, int(t), batch, iters, frame, keep))
        rss_peaks.append(hwm_rss_bytes() if peak_ok else None)
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
            "rss_peak_bytes": peak_rss_bytes(),
            "rss_peak_bytes_per_run": rss_peaks,  # one per thread count, in the order of "runs" (Linux)
        },
    }


def format_table(result: dict[str, Any]) -> str:
    """A plain-text table: the artifact and interpreter measured (and the path timed), one row per (threads, stage)
    with p50/p90/p99 ms, then throughput with the scope of each number, memory and the load before and after."""
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
    if result.get("import_ms") is not None:
        lines.append(f"{runtime} import: {result['import_ms']:.1f} ms (before any model load was timed)")
    lines.append(f"{'threads':>7} {'stage':<10} {'p50 ms':>9} {'p90 ms':>9} {'p99 ms':>9} {'n':>6}")
    for r in result["runs"]:
        for st in STAGES:
            s = r["stages_ms"][st]
            n = f"{s['n']:>6}" if "n" in s else ""
            lines.append(f"{r['threads']:>7} {st:<10} {s['p50']:>9.3f} {s['p90']:>9.3f} {s['p99']:>9.3f} {n}".rstrip())
        lines.append(
            f"{r['threads']:>7} {'throughput':<10} {r['patches_per_s']:>9.1f} patches/s wall (normalise + infer + "
            f"score), {r['patches_per_cpu_s'] or 0:.1f} patches per CPU-second of infer alone (all threads) "
            f"(batch {r['batch']} × {r['patch']}² px, model load {r['load_ms']:.1f} ms)"
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
    lines += [f"WARNING: {w}" for w in result.get("warnings") or []]
    return "\n".join(lines)
