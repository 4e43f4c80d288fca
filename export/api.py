"""One call exports a trained model through every route and precision and proves each artifact's parity.

``export_model(spec, out_dir, ExportConfig(...))`` loads a zoo name or ``.pt`` checkpoint, writes
``<name>[-encoder|-decoder].<precision>.<onnx|ort|tflite>`` artifacts with metadata inside, checks every
file (format checker, int8 input range covers [0, 1], parity against PyTorch on held-out real patches)
and writes ``parity.json`` / ``parity.md`` with sizes and latencies. Any failed check raises.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from edgeae.firmware_sim.runtime import load_artifact, read_metadata

from edgeae.metadata import MetadataError, ModelMetadata, sha256_file

from . import calibration as cal
from .graphs import VAE_EXPORT_FORM, Graph, graphs_for, torch_outputs
from .parity import (
    MAIN_OUTPUT,
    TAIL_BUDGETS,
    check_parity,
    measure_latency,
    run_batched,
    tail_failures,
    tail_metrics,
)
from .report import ArtifactRecord, ExportReport, environment, write_report

log = logging.getLogger(__name__)

FORMATS = ("onnx", "ort", "tflite")
PRECISIONS = ("fp32", "int8")
SUFFIX = {"cae": "", "cae-encoder": "-encoder", "cae-decoder": "-decoder", "vae": ""}


class InputRangeError(ValueError):
    """An int8 artifact's input quantiser does not cover the pixel range [0, 1]."""


@dataclass(frozen=True)
class ExportConfig:
    """What to export and how to check it. ``calib``: image folder/file (None: the dataset's val split)."""

    formats: tuple[str, ...] = FORMATS
    precisions: tuple[str, ...] = PRECISIONS
    calib: Path | None = None
    n_calib: int = 128
    n_test: int = 64
    seed: int = 0
    kinds: tuple[str, ...] | None = None
    latency: bool = True
    latency_batches: tuple[int, ...] = (1, 32)
    latency_threads: tuple[int, ...] = (1, 2)
    latency_repeats: int = 10
    strict: bool = True
    data_root: Path | None = None
    calib_tail: float = 0.25  # share of the calibration set from the tail (extremes + busiest real patches)
    tail_check: bool = True  # rank real test frames with each scoring artifact (VAE, full CAE) and gate it
    vae_form: str = VAE_EXPORT_FORM  # "subpixel" (exact, faster) or "reference" (the decoder as trained)
    # int8 ONNX weights in 7 bits: no u8s8 saturation on x86 CPUs without VNNI, so the artifact matches PyTorch
    # the same way on every CPU; costs 0.8-4.8 dB of parity PSNR on a VNNI host (docs/export.md, measured with
    # edgeae.export.board). False: full 8-bit weights, for a board known to have VNNI (or Arm).
    reduce_range: bool = True

    def __post_init__(self) -> None:
        bad = [f for f in self.formats if f not in FORMATS]
        if bad or not self.formats:
            raise ValueError(f"unknown export format(s) {bad}; choose from {FORMATS}")
        badp = [p for p in self.precisions if p not in PRECISIONS]
        if badp or not self.precisions:
            raise ValueError(f"unknown precision(s) {badp}; choose from {PRECISIONS}")
        if self.n_calib < 8 or self.n_test < 8:
            raise ValueError("use at least 8 calibration and 8 test patches")
        if self.vae_form not in ("subpixel", "reference"):
            raise ValueError(f"vae_form must be 'subpixel' or 'reference', got {self.vae_form!r}")


# what an int8 ONNX artifact's metadata says of its weights (``extra["int8_weights"]``), by ``reduce_range``;
# files made before session 19 have no such entry and are full range
INT8_WEIGHTS = {True: "7-bit (reduce_range)", False: "8-bit (full range)"}


def covers_unit_range(rng: tuple[float, float] | None, tol: float = 1e-6) -> bool:
    """True when an int8 input range [lo, hi] contains [0, 1]."""
    return rng is not None and rng[0] <= tol and rng[1] >= 1.0 - tol


def _inputs_for(graph: Graph, encoder: Graph | None, patches: np.ndarray) -> np.ndarray:
    """The graph's input batch: pixel patches, or their latents for a decoder."""
    if graph.kind != "cae-decoder":
        return patches
    if encoder is None:
        raise ValueError("decoder inputs need the encoder")
    return run_batched(lambda b: torch_outputs(encoder, b)["latent"], "cae-encoder", patches)["latent"]


TAIL_KINDS = ("vae", "cae")
CAE_TAIL_KEEP = 0.05  # the flight "cae-masked" score: reconstruct from 5 % of the pixels (rover mission keep)


def _tail_scores(predict: Any, kind: str, patches: np.ndarray) -> np.ndarray:
    """The flight anomaly score of each patch: the VAE's ``score`` output, or the CAE's masked-reconstruction
    mean squared error (as :mod:`edgeae.firmware_sim.score` computes it, in float from the dequantised x̂)."""
    if kind == "vae":
        return np.asarray(run_batched(predict, kind, patches)["score"], np.float64).reshape(-1)
    from edgeae.masks import make_mask

    keep = make_mask(0, patches.shape[-2:], CAE_TAIL_KEEP, "uniform")[None, None].astype(np.float32)
    x_hat = run_batched(predict, kind, np.ascontiguousarray(patches * keep))["x_hat"]
    err = np.asarray(x_hat, np.float32) - patches
    return np.asarray(np.mean(err * err, axis=(1, 2, 3), dtype=np.float64))


def _tail_terms_max(predict: Any, frames: list[np.ndarray], lam: float) -> list[np.ndarray]:
    """Per frame, the ``terms-max`` flight score (:mod:`edgeae.anomaly.terms`) of every patch: the VAE's two
    terms from its ``score`` and ``mu`` outputs, each over its median in that frame, the larger."""
    from edgeae.anomaly.terms import frame_terms_max, terms_from_outputs

    out = []
    for patches in frames:
        o = run_batched(predict, "vae", patches)
        out.append(frame_terms_max(*terms_from_outputs(o["score"], o["mu"], lam)))
    return out


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


def _finalise(path: Path, fmt: str, meta: ModelMetadata) -> None:
    """Rewrite the artifact's embedded metadata (precision, calibration facts)."""
    if fmt == "tflite":
        from .tflite_metadata import write_tflite_metadata

        write_tflite_metadata(path, meta.to_json())
    else:
        from .onnx_export import check_onnx, write_onnx_metadata

        write_onnx_metadata(path, meta)
        check_onnx(path)


def _build(
    graph: Graph,
    fmt: str,
    precision: str,
    stem: Path,
    calib: np.ndarray,
    done: dict[str, Path],
    reduce_range: bool = False,
) -> Path:
    """Write one ``.tflite`` or ``.onnx`` artifact (ONNX files are cached in ``done`` for ORT and int8)."""
    from . import onnx_export, quantize, tflite_export

    pin = None if graph.kind == "cae-decoder" else (0.0, 1.0)
    if fmt == "tflite":
        path = stem.with_name(f"{stem.name}.{precision}.tflite")
        if precision == "fp32":
            return tflite_export.export_tflite_fp32(graph, path)
        return tflite_export.export_tflite_int8(graph, path, calib, input_range=pin)
    onnx_path = stem.with_name(f"{stem.name}.{precision}.onnx")
    if f"onnx-{precision}" not in done:
        if precision == "fp32":
            onnx_export.export_onnx(graph, onnx_path)
        else:
            fp32 = done.get("onnx-fp32") or _build(graph, "onnx", "fp32", stem, calib, done)
            done["onnx-fp32"] = fp32
            quantize.quantize_onnx_int8(
                fp32, onnx_path, calib, input_range=pin, float_outputs=graph.float_outputs,
                learned_modules=graph.learned_modules, reduce_range=reduce_range,
            )  # fmt: skip
            onnx_export.check_onnx(onnx_path)
        done[f"onnx-{precision}"] = onnx_path
    return done[f"onnx-{precision}"]


def _ort_with_metadata(onnx_path: Path, meta: ModelMetadata, out_dir: Path) -> Path:
    """Convert a copy of ``onnx_path`` carrying ``meta`` to ``<stem>.ort`` in ``out_dir``."""
    import shutil
    import tempfile

    from .onnx_export import write_onnx_metadata
    from .ort import convert_to_ort

    with tempfile.TemporaryDirectory(prefix="edgeae-ort-src-") as tmp:
        src = Path(tmp) / onnx_path.name
        shutil.copy2(onnx_path, src)
        write_onnx_metadata(src, meta)
        return convert_to_ort(src, out_dir)


def _input_range(path: Path, fmt: str) -> tuple[float, float] | None:
    if fmt == "tflite":
        from .tflite_export import tflite_input_range

        return tflite_input_range(path)
    from .quantize import onnx_input_range

    return onnx_input_range(path)


def export_checkpoint(
    model: Any,
    metadata: ModelMetadata,
    out_dir: str | os.PathLike[str],
    name: str,
    calib_patches: np.ndarray,
    test_patches: np.ndarray,
    config: ExportConfig,
    calib_source: str = "",
    test_source: str = "",
    tail_frames: list[tuple[str, np.ndarray]] | None = None,
) -> ExportReport:
    """Export an in-memory model; see the module docstring. Returns the report (also written to disk).

    ``tail_frames``: (name, NCHW patches of one whole real frame) for the tail check of scoring artifacts
    (:func:`edgeae.export.parity.tail_metrics`); None or empty skips it.
    """
    from tqdm import tqdm

    from edgeae.logs import native_stderr_to_log

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = ExportReport(
        model=name,
        out_dir=str(out),
        calibration={"source": calib_source, "n_patches": len(calib_patches), "seed": config.seed},
        test={"source": test_source, "n_patches": len(test_patches), "seed": config.seed + 1},
        environment=environment(),
    )
    graphs = graphs_for(model, metadata, config.kinds, config.vae_form)
    splittable = metadata.kind == "cae" and metadata.architecture.get("variant", "seed") == "seed"
    encoder = next(iter(graphs_for(model, metadata, ("cae-encoder",)))) if splittable else None
    for g in graphs:
        if g.no_tflite and "tflite" in config.formats:
            if set(config.formats) == {"tflite"}:
                variant = metadata.architecture.get("variant")
                raise ValueError(f"{name}: no TFLite export for a {variant} CAE: {g.no_tflite}")
            log.warning("%s: skipping TFLite: %s", name, g.no_tflite)
    jobs = [
        (g, f, p)
        for g in graphs
        for p in config.precisions
        for f in config.formats
        if not (g.no_tflite and f == "tflite")
    ]
    done: dict[str, dict[str, Path]] = {g.kind: {} for g in graphs}
    failures: list[str] = []
    tail_ref: dict[str, tuple[list[np.ndarray], np.ndarray, np.ndarray]] = {}
    tail_ref_tm: dict[str, list[np.ndarray]] = {}  # PyTorch's terms-max per tail frame, once per graph kind
    if tail_frames:
        report.tail = {"frames": [n for n, _ in tail_frames], "patches": int(sum(len(p) for _, p in tail_frames))}
    for graph, fmt, precision in tqdm(jobs, desc=f"export {name}", unit="artifact"):
        calib = _inputs_for(graph, encoder, calib_patches)
        test = _inputs_for(graph, encoder, test_patches)
        if config.latency and graph.kind not in report.torch_latency:
            report.torch_latency[graph.kind] = _torch_latency(graph, test, config)
        stem = out / f"{name}{SUFFIX[graph.kind]}"
        with native_stderr_to_log():  # the converters' C++ logs (TensorFlow/XNNPACK start-up lines); -v shows them
            path = _build(graph, fmt, precision, stem, calib, done[graph.kind], config.reduce_range)
        in_range = _input_range(path, fmt) if precision == "int8" else None  # ORT: read from its ONNX
        float_input = bool(graph.learned_modules) and fmt != "tflite" and in_range is None  # fixed layers first
        if precision == "int8" and graph.kind != "cae-decoder" and not float_input and not covers_unit_range(in_range):
            failures.append(f"{path}: int8 input range {in_range} does not cover [0, 1]")
        extra = {**graph.metadata.extra, "format": fmt, "outputs": list(graph.output_names)}
        if precision == "int8" and fmt == "onnx":
            extra["int8_weights"] = INT8_WEIGHTS[config.reduce_range]
        if fmt == "tflite" and graph.tflite_static_batch:
            extra["static_batch"] = graph.tflite_static_batch  # the loader runs bigger batches in chunks
        if precision == "int8":
            extra["calibration"] = {
                "source": calib_source,
                "n_patches": len(calib),
                "tail": config.calib_tail,
                "float_outputs": list(graph.float_outputs),
                "method": "minmax over the whole set",
                "input_range": list(in_range) if in_range else None,
            }
        base = graph.tflite_metadata() if fmt == "tflite" else graph.metadata
        meta = base.replace(precision=precision, extra=extra)
        if fmt == "ort":
            path = _ort_with_metadata(path, meta, out)
        else:
            _finalise(path, fmt, meta)
        if read_metadata(path) != meta:
            raise MetadataError(f"{path}: embedded metadata does not read back identically")
        predictor = load_artifact(path, threads=2)
        result = check_parity(
            graph.kind,
            precision,
            torch_outputs_batched(graph, test),
            run_batched(predictor, graph.kind, test),
            source=str(path),
            strict=False,
        )
        if not result.passed:
            failures.append(f"{path}: {result.summary()}")
        parity = {**result.to_dict(), "main_output": MAIN_OUTPUT[graph.kind]}
        if tail_frames and graph.kind in TAIL_KINDS:
            from .calibration import extreme_patches

            if graph.kind not in tail_ref:
                ref_fn = lambda b, g=graph: torch_outputs(g, b)  # noqa: E731
                ext = extreme_patches(int(calib_patches.shape[1]), int(calib_patches.shape[-1]))
                tail_ref[graph.kind] = (
                    [_tail_scores(ref_fn, graph.kind, p) for _, p in tail_frames],
                    ext,
                    _tail_scores(ref_fn, graph.kind, ext),
                )
            ref_scores, ext, ref_ext = tail_ref[graph.kind]
            got = [_tail_scores(predictor, graph.kind, p) for _, p in tail_frames]
            tail = tail_metrics(ref_scores, got, (ref_ext, _tail_scores(predictor, graph.kind, ext)))
            bad = tail_failures(tail, precision)
            parity["tail"] = {**tail, "budget": TAIL_BUDGETS[precision], "passed": not bad}
            parity["passed"] = bool(parity["passed"] and not bad)
            if bad:
                failures.append(f"{path}: tail check: {', '.join(bad)}")
            lam = (graph.metadata.score or {}).get("lambda") if graph.kind == "vae" else None
            if lam is not None:  # the orbital mission's flight score ranks by the two terms: gate its tail too
                frames = [p for _, p in tail_frames]
                if graph.kind not in tail_ref_tm:
                    ref_fn = lambda b, g=graph: torch_outputs(g, b)  # noqa: E731
                    tail_ref_tm[graph.kind] = _tail_terms_max(ref_fn, frames, float(lam))
                tm = tail_metrics(tail_ref_tm[graph.kind], _tail_terms_max(predictor, frames, float(lam)))
                bad = tail_failures(tm, precision)
                parity["tail_terms_max"] = {**tm, "budget": TAIL_BUDGETS[precision], "passed": not bad}
                parity["passed"] = bool(parity["passed"] and not bad)
                if bad:
                    failures.append(f"{path}: terms-max tail check: {', '.join(bad)}")
        report.artifacts.append(
            ArtifactRecord(
                path=str(path),
                kind=graph.kind,
                format=fmt,
                precision=precision,
                size_bytes=path.stat().st_size,
                sha256=sha256_file(path),
                checker="onnx.checker full_check" if fmt != "tflite" else "ai-edge-litert load + allocate",
                parity=parity,
                input_range=list(in_range) if in_range else None,
                latency=_latency(path, test, config) if config.latency else [],
            )
        )
        log.info("%s: %s", path.name, result.summary())
    for g in graphs:  # ONNX files made only as a step (towards ORT, or the fp32 file int8 is quantised from)
        for key, p in done[g.kind].items():
            fmt_, _, prec = key.partition("-")
            if not (fmt_ == "onnx" and "onnx" in config.formats and prec in config.precisions):
                p.unlink(missing_ok=True)  # not asked for, so not parity-checked: not left in --out
    write_report(report, out)
    if failures and config.strict:
        from .parity import ParityError

        raise ParityError(f"export failed its checks (report in {out}):\n  " + "\n  ".join(failures))
    return report


def torch_outputs_batched(graph: Graph, x: np.ndarray) -> dict[str, np.ndarray]:
    """PyTorch reference outputs of ``graph`` over ``x`` in batches of 32."""
    return run_batched(lambda b: torch_outputs(graph, b), graph.kind, x)


def export_model(spec: str | os.PathLike[str], out_dir: str | os.PathLike[str], config: ExportConfig) -> ExportReport:
    """Export a zoo model or ``.pt`` checkpoint with real calibration (val split) and test patches."""
    from edgeae.checkpoint import load_checkpoint
    from edgeae.predictor import resolve_model_path

    path = resolve_model_path(spec, want="checkpoint")
    ck = load_checkpoint(path)
    meta = ck.metadata.replace(source_checkpoint_hash=sha256_file(path))
    if config.calib is not None:
        calib_files = cal.image_files(config.calib)
        calib_source = str(config.calib)
    else:
        calib_files = cal.split_images(meta, "val", config.data_root)
        calib_source = f"{cal.dataset_of(meta)} val split"
    test_files = cal.split_images(meta, "test", config.data_root)
    calib = cal.model_patches(meta, calib_files, config.n_calib, seed=config.seed, tail=config.calib_tail)
    test = cal.model_patches(meta, test_files, config.n_test, seed=config.seed + 1)
    tail_frames = None
    if config.tail_check and meta.kind in TAIL_KINDS:
        arch = meta.architecture
        side = int(arch.get("tile") or arch.get("patch") or meta.input_shape[-1])
        channels = int(arch.get("channels", meta.channels))
        files = cal.tail_frame_files(meta, config.data_root)
        tail_frames = [(f.name, cal.frame_patches(f, channels, side)) for f in files]
    name = Path(str(spec)).stem if Path(str(spec)).suffix == ".pt" else str(spec)
    return export_checkpoint(
        ck.model,
        meta,
        out_dir,
        name,
        calib,
        test,
        config,
        calib_source=calib_source,
        test_source=f"{cal.dataset_of(meta)} test split",
        tail_frames=tail_frames,
    )
