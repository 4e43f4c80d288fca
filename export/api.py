"""One call exports a trained model through every route and precision and proves each artifact's parity.

``export_model(spec, out_dir, ExportConfig(...))`` loads a zoo name or ``.pt`` checkpoint, writes
``<name>[-encoder|-decoder].<precision>.<onnx|ort|tflite>`` artifacts with metadata inside, checks every
file (converter, format checker, int8 input range covers [0, 1], parity against PyTorch on held-out real
patches, the score's tail) and writes ``parity.json`` / ``parity.md`` with sizes, latencies and a verdict per
file and overall (``passed``, ``failures``). Files are built in a temporary folder and placed in the output
folder once checked: a file that failed as ``NAME.<precision>.FAILED.<ext>``; ``parity.json`` is rewritten
around every file placed, so it matches the folder whenever the run stops; an earlier export of the same model
there keeps its records that still hold (an earlier checkpoint's files not replaced by passing ones are moved aside
as ``*.STALE.*``), another model's is refused (:mod:`edgeae.export.outdir`). Any failed
check raises :class:`ExportFailed` after the report is written.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeae.metadata import ModelMetadata, sha256_file

from . import calibration as cal
from . import producer
from .artifact_check import SUFFIX as SUFFIX
from .artifact_check import _export_one, _inputs_for, _Run
from .artifact_check import covers_unit_range as covers_unit_range
from .artifact_check import torch_outputs_batched as torch_outputs_batched
from .build import INT8_WEIGHTS as INT8_WEIGHTS  # re-exported: where it was defined before
from .graphs import VAE_EXPORT_FORM, graphs_for
from .naming import UNSAFE_NAME_CHARS as UNSAFE_NAME_CHARS
from .naming import artifact_stem as artifact_stem
from .naming import checkpoint_source as checkpoint_source
from .parity import ParityError
from .report import ArtifactRecord as ArtifactRecord
from .report import ExportReport, environment
from .sets import _patches_of
from .sets import check_tail_frames as check_tail_frames
from .tailgate import TAIL_KINDS, TailGate
from .timing import _torch_latency
from .timing import progress_bar as progress_bar

log = logging.getLogger(__name__)

FORMATS = ("onnx", "ort", "tflite")
PRECISIONS = ("fp32", "int8")


@dataclass(frozen=True)
class ExportConfig:
    """What to export and how to check it. ``calib`` / ``test``: image folder or file for the int8 calibration / the
    parity check (None: from the model's own training data, :func:`edgeae.export.calibration.plan_data`)."""

    formats: tuple[str, ...] = FORMATS
    precisions: tuple[str, ...] = PRECISIONS
    calib: Path | None = None
    test: Path | None = None
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
    command: str | None = None  # the command line that ran the export (the CLI's), recorded in every artifact

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


class ExportFailed(ParityError):
    """An export in which at least one artifact failed a check; ``report`` (also on disk) says which and why."""

    def __init__(self, message: str, report: ExportReport) -> None:
        super().__init__(message)
        self.report = report


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
    provenance: dict[str, dict[str, Any]] | None = None,
    source: str = "",
) -> ExportReport:
    """Export an in-memory model; see the module docstring. Returns the report (also written to disk).

    ``tail_frames``: (name, NCHW patches of one whole real frame) for the tail check of scoring artifacts
    (:func:`edgeae.export.parity.tail_metrics`); None or empty skips it. ``provenance``: more facts for the
    report's ``calibration``, ``test`` and ``tail`` sections (file hashes, overlaps: :func:`export_model`).
    Every artifact is built and checked in a temporary folder, then placed in ``out_dir`` (a failed one as
    ``*.FAILED.*``: :mod:`edgeae.export.outdir`) and the report rewritten, so it matches the folder whenever the
    run stops; the records of an earlier export of ``name`` there that still hold are kept, a folder holding another
    model's export is refused (:class:`edgeae.export.outdir.OtherModelsExport`, before any work). ``source``: the
    checkpoint's resolved path or ``zoo:NAME``, recorded in ``parity.json`` and compared with an earlier export's
    there ("": another model of this name is told by its kind and architecture only).
    Raises :class:`ExportFailed` after writing the report when any check failed (``config.strict``); a ValueError,
    before any work, when the tail frames give fewer than 3 patches.
    """
    from . import outdir

    with outdir.removed_if_failed(out_dir):  # a folder this call made is not left behind empty
        return _export_checkpoint(
            model, metadata, out_dir, name, calib_patches, test_patches, config, calib_source, test_source,
            tail_frames, provenance, source,
        )  # fmt: skip


def _export_checkpoint(
    model: Any,
    metadata: ModelMetadata,
    out_dir: str | os.PathLike[str],
    name: str,
    calib_patches: np.ndarray,
    test_patches: np.ndarray,
    config: ExportConfig,
    calib_source: str,
    test_source: str,
    tail_frames: list[tuple[str, np.ndarray]] | None,
    provenance: dict[str, dict[str, Any]] | None,
    source: str,
) -> ExportReport:
    import datetime
    import tempfile

    from . import outdir

    if tail_frames:
        check_tail_frames(tail_frames, int(calib_patches.shape[-1]))
    out = outdir.ensure_writable(out_dir)
    outdir.refuse_other_model(out, name, outdir.Origin.of(metadata, source))
    prov = provenance or {}
    # every artifact says what made it: this export's command and options and the code's revision (producer.py)
    made = {**producer.export_facts(config), "code_revision": producer.code_revision()}
    metadata = metadata.replace(extra={**metadata.extra, **made})
    report = ExportReport(
        model=name,
        out_dir=str(out),
        calibration={"source": calib_source, "n_patches": len(calib_patches), "seed": config.seed},
        test={"source": test_source, "n_patches": len(test_patches), "seed": config.seed + 1},
        environment=environment(),
        created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        source=source,
    )
    report.calibration.update(prov.get("calibration", {}))
    report.test.update(prov.get("test", {}))
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
    gate = None
    if tail_frames:
        report.tail = {"frames": [n for n, _ in tail_frames], "patches": int(sum(len(p) for _, p in tail_frames))}
        report.tail["frame_patches"] = [len(p) for _, p in tail_frames]  # a top-k overlap on k or fewer says nothing
        report.tail.update(prov.get("tail", {}))
        gate = TailGate(tail_frames, int(calib_patches.shape[1]), int(calib_patches.shape[-1]))
    keys = ("source", "files_sha256", "others_sha256")
    facts: dict[str, Any] = {k: report.calibration[k] for k in keys if k in report.calibration}
    ledger = outdir.Ledger(report, metadata.source_checkpoint_hash, len(jobs))
    with tempfile.TemporaryDirectory(prefix="edgeae-export-") as tmp:
        work = Path(tmp)
        (work / "build").mkdir()
        (work / "final").mkdir()
        run = _Run(
            work, name, config, {**facts, "tail": config.calib_tail}, encoder, calib_patches, test_patches,
            gate, {g.kind: {} for g in graphs},
        )  # fmt: skip
        bar = progress_bar(jobs, name)
        run.note = getattr(bar, "set_postfix_str", run.note)  # each step's name beside a terminal's bar
        for graph, fmt, precision in bar:
            if config.latency and graph.kind not in report.torch_latency:
                test = _inputs_for(graph, encoder, test_patches)
                report.torch_latency[graph.kind] = _torch_latency(graph, test, config)
            record, checked = _export_one(run, graph, fmt, precision)
            if checked is None:
                ledger.add(record)
            else:
                ledger.place(checked, record)
    ledger.finish()
    failures = [f"{a.name}: {f}" for a in ledger.made for f in a.failures]
    if failures and config.strict:
        raise ExportFailed(f"export failed its checks (report in {out}):\n  " + "\n  ".join(failures), report)
    return report


def export_model(
    spec: str | os.PathLike[str], out_dir: str | os.PathLike[str], config: ExportConfig, name: str | None = None
) -> ExportReport:
    """Export a zoo model or ``.pt`` checkpoint with real calibration and test patches, chosen by the model's own
    training data (a dataset's val and test splits, a folder's val files and its other images:
    :func:`edgeae.export.calibration.plan_data`) unless ``config.calib`` / ``config.test`` name images.

    Warns when ``config.calib`` holds images of another channel count (converted), frames of the parity test set or
    the tail check (the report then no longer calls them held out) or the model's training images (recorded as
    ``training_overlaps``), and records the calibration folder's resolved path and a hash of the sampled files'
    contents (and of the others' names, sizes and times: :func:`edgeae.export.calibration.provenance`) in the
    report and in each int8 artifact. ``name``: the artifacts' file-name stem (default: the zoo name, else the
    checkpoint's stem: ``best`` for a training run's ``best.pt``).
    """
    from edgeae.predictor import resolve_model_path

    from . import outdir

    path = resolve_model_path(spec, want="checkpoint")
    name = artifact_stem(name or spec, path)
    with outdir.removed_if_failed(out_dir):  # as the CLI: a failed export leaves no empty --out behind
        return _export_model(path, name, out_dir, config, checkpoint_source(spec, path))


def _export_model(
    path: Path, name: str, out_dir: str | os.PathLike[str], config: ExportConfig, source: str
) -> ExportReport:
    from edgeae.checkpoint import load_checkpoint

    from . import outdir

    out = outdir.ensure_writable(out_dir)
    checkpoint = sha256_file(path)
    ck = load_checkpoint(path)
    # what trained it, from its metrics (the command and settings; producer.training_facts): recorded in each file
    meta = ck.metadata.replace(
        source_checkpoint_hash=checkpoint, extra={**ck.metadata.extra, **producer.training_facts(ck.metrics)}
    )
    outdir.refuse_other_model(out, name, outdir.Origin.of(meta, source))  # before minutes of work
    arch = meta.architecture
    side = int(arch.get("tile") or arch.get("patch") or meta.input_shape[-1])
    channels = int(arch.get("channels", meta.channels))
    int8 = "int8" in config.precisions  # the calibration images set int8 ranges only: not looked for without one
    plan = cal.plan_data(meta, config.calib, config.test, config.data_root, calibration=int8)
    log.info("calibration: %s; parity test set: %s", plan.calib_source, plan.test_source)
    for note in plan.notes:
        log.warning("%s", note)
    tail = config.tail_check and meta.kind in TAIL_KINDS
    tail_files = plan.tail if tail else []
    tail_frames = [(f.name, cal.frame_patches(f, channels, side)) for f in tail_files] if tail else None
    if tail_frames:
        check_tail_frames(tail_frames, side)  # before the calibration and the conversions
    sampled = cal.sampled_files(plan.calib, config.n_calib, config.calib_tail)  # hashed; the rest listed
    prov = cal.provenance(plan.calib, plan.test, tail_files, sampled, plan.train)
    # the calibration images only set int8 ranges: with no int8 artifact asked for, what is wrong with them is no
    # warning (an fp32-only export warned about int8 parity, audit a2 of session 35), only a -v line
    calib_note = log.warning if int8 else log.info
    shared = prov["calibration"].get("overlaps", [])
    if shared:
        calib_note(
            "%d calibration image(s) are frames of the parity test set or the tail check (%s): int8 parity is "
            "then not measured on held-out data; calibrate on other images (--calib) or check on others (--test)",
            len(shared), ", ".join(shared),
        )  # fmt: skip
    trained = prov["calibration"].get("training_overlaps", [])
    if trained:
        calib_note(
            "%d of the %d calibration images drawn from are training images of the model (%s%s): allowed, but the "
            "int8 ranges then come from images it was fit to; the default calibrates on its val images",
            len(trained), len(sampled), ", ".join(trained[:5]), ", ..." if len(trained) > 5 else "",
        )  # fmt: skip
    converted = cal.channel_mismatches(plan.calib, channels)
    if converted:
        stored = sorted({cal.channels_text(c, alpha) for _, c, alpha in converted})
        calib_note(
            "%d of %d calibration images have %s channel(s), the model takes %d: converted for calibration "
            "(is %s the right folder?)",
            len(converted), len(plan.calib), "/".join(stored), channels, plan.calib_source,
        )  # fmt: skip
        prov["calibration"]["converted_channels"] = len(converted)
    if int8:
        calib = _patches_of(
            "--calib", config.calib is not None, plan.calib_source, meta, plan.calib, config.n_calib, config.seed,
            config.calib_tail,
        )  # fmt: skip
    else:  # no int8 artifact: nothing is calibrated (the tail gate reads the patches' shape only)
        calib = np.zeros((0, channels, side, side), np.float32)
    if int8 and len(calib) < config.n_calib:
        calib_note(
            "calibration: %d patches, not the %d asked for (--n-calib): the %d calibration image(s) drawn from hold "
            "fewer whole %d-px patches than their share of the busiest ones; give more or larger images (--calib)",
            len(calib), config.n_calib, len(sampled), side,
        )  # fmt: skip
        prov["calibration"]["n_requested"] = config.n_calib
    test = _patches_of(
        "--test", config.test is not None, plan.test_source, meta, plan.test, config.n_test, config.seed + 1
    )
    return export_checkpoint(
        ck.model,
        meta,
        out_dir,
        name,
        calib,
        test,
        config,
        calib_source=plan.calib_source,
        test_source=plan.test_source,
        tail_frames=tail_frames,
        provenance=prov,
        source=source,
    )
