"""One artifact of an export, built in the export's work folder and checked: the converter ran, the metadata reads
back identically, an int8 input range covers [0, 1], the outputs match PyTorch's on the held-out patches within the
precision's budget, and a scoring artifact ranks real frames as PyTorch does (:class:`edgeae.export.tailgate.TailGate`).
:func:`edgeae.export.api.export_checkpoint` runs it for every route and precision.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from edgeae.firmware_sim.runtime import load_artifact, read_metadata

from .graphs import Graph, torch_outputs
from .parity import BUDGETS, MAIN_OUTPUT, check_parity, run_batched
from .report import ArtifactRecord
from .tailgate import TAIL_KINDS, TailGate
from .timing import _latency

if TYPE_CHECKING:
    from .api import ExportConfig

log = logging.getLogger("edgeae.export.api")  # the name its messages always had

SUFFIX = {"cae": "", "cae-encoder": "-encoder", "cae-decoder": "-decoder", "vae": ""}


def covers_unit_range(rng: tuple[float, float] | None, tol: float = 1e-6) -> bool:
    """True when an int8 input range [lo, hi] contains [0, 1]."""
    return rng is not None and rng[0] <= tol and rng[1] >= 1.0 - tol


def _inputs_for(graph: Graph, encoder: Graph | None, patches: np.ndarray) -> np.ndarray:
    """The graph's input batch: pixel patches, or their latents for a decoder."""
    if graph.kind != "cae-decoder" or not len(patches):  # none: an fp32-only export calibrates nothing
        return patches
    if encoder is None:
        raise ValueError("decoder inputs need the encoder")
    return run_batched(lambda b: torch_outputs(encoder, b)["latent"], "cae-encoder", patches)["latent"]


@dataclass
class _Run:
    """What every artifact of one export run shares: its work folder, inputs, caches and checks."""

    work: Path
    name: str
    config: ExportConfig
    calibration: dict[str, Any]  # the calibration facts each int8 file records
    encoder: Graph | None
    calib_patches: np.ndarray
    test_patches: np.ndarray
    gate: TailGate | None
    done: dict[str, dict[str, Path | str]]  # per graph kind: the ONNX files built (or why not), build.build
    note: Callable[[str], object] = lambda _: None  # the step under way, beside the progress bar (a terminal's)


def _export_one(run: _Run, graph: Graph, fmt: str, precision: str) -> tuple[ArtifactRecord, Path | None]:
    """Build one artifact in the work folder and check it: its record and the checked file, to place in ``--out``
    (:meth:`edgeae.export.outdir.Ledger.place`). A converter's exception becomes the record's failure, with no
    file (the record's ``path`` is then ``""``)."""
    from edgeae.logs import native_stderr_to_log

    from . import build

    calib = _inputs_for(graph, run.encoder, run.calib_patches)
    test = _inputs_for(graph, run.encoder, run.test_patches)
    stem = f"{run.name}{SUFFIX[graph.kind]}"
    record = ArtifactRecord(
        path="", name=f"{stem}.{precision}.{fmt}", kind=graph.kind, format=fmt, precision=precision, size_bytes=0,
        sha256="", checker=build.CHECKER[fmt], passed=False,
        parity={"passed": False, "budget": BUDGETS[precision], "main_output": MAIN_OUTPUT[graph.kind]},
    )  # fmt: skip
    run.note(f"{record.name}: converting")
    try:  # the converters raise anything (JAX TypeErrors, RuntimeErrors, ...): this artifact's failure alone
        with native_stderr_to_log():  # the converters' C++ logs (TensorFlow/XNNPACK start-up lines); -v shows them
            built = build.build(
                graph, fmt, precision, run.work / "build" / stem, calib, run.done[graph.kind], run.config.reduce_range
            )
        in_range = build.input_range(built, fmt) if precision == "int8" else None  # ORT: read from its ONNX
        facts = {**run.calibration, "n_patches": len(calib)}
        meta = build.artifact_metadata(graph, fmt, precision, in_range, facts, run.config.reduce_range)
        if fmt == "ort":
            path = build.ort_with_metadata(built, meta, run.work / "final")
        else:
            path = run.work / "final" / built.name
            shutil.copyfile(built, path)  # the built ONNX stays as it is: int8 and ORT are made from it
            build.finalise(path, fmt, meta)
        predictor = load_artifact(path, threads=2)
    except Exception as exc:
        log.debug("%s: conversion failed", record.name, exc_info=True)
        record.failures.append(f"{fmt} {precision} conversion failed: {build.error_text(exc)}")
        return record, None
    failures = record.failures
    float_input = bool(graph.learned_modules) and fmt != "tflite" and in_range is None  # fixed layers first
    range_ok = not (
        precision == "int8" and graph.kind != "cae-decoder" and not float_input and not covers_unit_range(in_range)
    )
    if not range_ok:
        failures.append(f"int8 input range {in_range} does not cover [0, 1]")
    if read_metadata(path) != meta:
        failures.append("embedded metadata does not read back identically")
    run.note(f"{record.name}: parity with PyTorch")
    ref = torch_outputs_batched(graph, test)
    result = check_parity(graph.kind, precision, ref, run_batched(predictor, graph.kind, test), str(path), strict=False)
    if not result.passed:
        failures.append(result.summary())
    parity = {**result.to_dict(), "main_output": MAIN_OUTPUT[graph.kind], "input_range_covers_0_1": range_ok}
    if run.gate is not None and graph.kind in TAIL_KINDS:
        run.note(f"{record.name}: the score's tail on real frames")
        tail, bad = run.gate.check(graph, predictor, precision)
        parity.update(tail)
        failures += bad
    parity["passed"] = not failures  # every check, not the PSNR budget alone
    record.parity, record.passed = parity, not failures
    record.input_range = list(in_range) if in_range else None
    if run.config.latency:
        run.note(f"{record.name}: latency")
    record.latency = _latency(path, test, run.config) if run.config.latency else []
    log.info("%s: %s", path.name, result.summary())
    return record, path


def torch_outputs_batched(graph: Graph, x: np.ndarray) -> dict[str, np.ndarray]:
    """PyTorch reference outputs of ``graph`` over ``x`` in batches of 32."""
    return run_batched(lambda b: torch_outputs(graph, b), graph.kind, x)
