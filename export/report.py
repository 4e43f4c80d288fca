"""The export report: one JSON file and one readable markdown table per export run."""

from __future__ import annotations

import json
import math
import os
import platform
from dataclasses import asdict, dataclass, field, fields
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np

from edgeae.atomic import write_text

PACKAGES = ("edgeae", "torch", "onnx", "onnxruntime", "litert-torch", "ai-edge-litert", "numpy")


@dataclass
class ArtifactRecord:
    """One exported file: what it is, how big, how close to PyTorch, how fast.

    ``path`` is where the file lies, ``""`` when none was written (its converter failed); ``name`` is the
    artifact's file name either way (``m.int8.onnx``; ``m.int8.FAILED.onnx`` once a failed file is placed)."""

    path: str
    kind: str
    format: str
    precision: str
    size_bytes: int
    sha256: str
    checker: str
    parity: dict[str, Any]
    input_range: list[float] | None = None
    latency: list[dict[str, Any]] = field(default_factory=list)
    passed: bool = True  # every check: converter, checker, int8 input range, parity, tail
    failures: list[str] = field(default_factory=list)  # what failed, one line each (empty when passed)
    #: for a record carried over from an earlier export into the same folder: that run's time, calibration and
    #: test set (the report's own fields describe this run); None for the artifacts this run made
    earlier_run: dict[str, Any] | None = None
    name: str = ""

    def __post_init__(self) -> None:
        if not self.name and self.path:  # a record from before ``name`` existed
            self.name = Path(self.path).name

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ArtifactRecord:
        """A record as :meth:`ExportReport.to_dict` wrote it (also by an edgeae before ``passed`` existed)."""
        known = {f.name for f in fields(cls)}
        numbers = ("parity", "latency", "input_range")  # where a non-finite number was written as a string
        rec = cls(**{k: _from_json(v) if k in numbers else v for k, v in d.items() if k in known})
        if "passed" not in d:
            rec.passed = bool(d.get("parity", {}).get("passed", False))
        return rec


@dataclass
class ExportReport:
    model: str
    out_dir: str
    calibration: dict[str, Any]
    test: dict[str, Any]
    artifacts: list[ArtifactRecord] = field(default_factory=list)
    torch_latency: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    tail: dict[str, Any] = field(default_factory=dict)
    created: str = ""  # UTC time of the run, ISO 8601
    #: artifacts this run had still to make when the report was written: it is rewritten after every file placed,
    #: so a run that stopped (Ctrl-C, killed, an error) leaves a report that says so; 0 once the run finished
    unfinished: int = 0
    #: the checkpoint exported: its resolved path or ``zoo:NAME`` ("" unknown: an in-memory model); a later export
    #: into the same folder from another source is another model of the same name (edgeae.export.outdir)
    source: str = ""

    @property
    def failures(self) -> list[str]:
        """Every failed check of every artifact, ``file: what``."""
        return [f"{a.name}: {f}" for a in self.artifacts for f in a.failures]

    @property
    def passed(self) -> bool:
        """Every artifact passed and the run made all it set out to."""
        return not self.unfinished and all(a.passed for a in self.artifacts)

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "failures": self.failures, **asdict(self)}


def environment() -> dict[str, Any]:
    """Machine and package versions, recorded next to every latency figure."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = None
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "loadavg_1min": round(load[0], 2),
        "python": platform.python_version(),
        "packages": versions,
    }


def _lat(records: list[dict[str, Any]], batch: int, threads: int) -> str:
    for r in records:
        if r["batch"] == batch and r["threads"] == threads:
            return f"{r['median_ms_per_image']:.2f}"
    return "–"


def budget_text(parity: dict[str, Any]) -> str:
    """The parity budget of a record, as the markdown table shows it (``≥ 40 dB``, ``, ρ ≥ 0.99`` for a VAE)."""
    budget = parity.get("budget") or {}
    if "psnr_db" not in budget:
        return ""
    text = f"≥ {budget['psnr_db']:g} dB"
    if parity.get("spearman") is not None and "spearman" in budget:
        text += f", ρ ≥ {budget['spearman']:g}"
    return text


def _passed_cell(a: ArtifactRecord) -> str:
    if not a.passed:
        return "**NO**"
    return "yes (earlier run)" if a.earlier_run else "yes"


def markdown_table(report: ExportReport) -> str:
    """A readable summary: verdict, parity against its budget, input range, size and latency (ms per image)."""
    held_out = report.test.get("held_out", True)
    n_test, test_source = report.test.get("n_patches"), report.test.get("source")
    parity_on = (
        f"Parity on {n_test} held-out patches from {test_source}"
        if held_out
        else f"Parity on {n_test} patches from {test_source}, NOT held out (the calibration images include "
        f"{', '.join(report.calibration.get('overlaps', [])) or 'some of its frames'})"
    )
    failed = [a for a in report.artifacts if not a.passed]
    if report.unfinished:
        verdict = [f"**UNFINISHED**: this export stopped with {report.unfinished} artifact(s) still to make; the "
                   "rows below are the files in this folder and their checks. Run it again.", ""]  # fmt: skip
        verdict += [f"- {f}" for f in report.failures]
    elif failed:
        verdict = [f"**FAILED**: {len(failed)} of {len(report.artifacts)} artifacts failed their checks "
                   "(renamed `*.FAILED.*`, so nothing loads them by name):", ""]  # fmt: skip
        verdict += [f"- {f}" for f in report.failures]
    else:
        verdict = [f"All {len(report.artifacts)} artifacts passed their checks."]
    n_calib, asked = report.calibration.get("n_patches"), report.calibration.get("n_requested")
    of_asked = f" (of {asked} asked for: the images hold no more)" if asked and asked != n_calib else ""
    timed = bool(report.torch_latency) or any(a.latency for a in report.artifacts)
    lat_cols = [(1, 1), (1, 2), (32, 1), (32, 2)] if timed else []  # no latency measured: no columns of "–"
    lines = [
        f"# Export report: {report.model}",
        "",
        *verdict,
        "",
        f"{parity_on}; calibration: {n_calib} patches{of_asked} from {report.calibration.get('source')}."
        if n_calib or report.calibration.get("source")
        else f"{parity_on}; no calibration (no int8 artifact asked for).",
        "Latency: median ms per image (batch b, threads t), "
        f"{report.environment.get('cpu_count')} CPUs, load {report.environment.get('loadavg_1min')}."
        if timed
        else "Latency: not measured (--no-latency).",
        "",
        "| artifact | kind | format | precision | size (KB) | PSNR vs torch (dB) | max abs | Spearman | budget "
        "| passed | int8 input range |" + "".join(f" b{b} t{t} |" for b, t in lat_cols),
        "|---|---|---|---|---:|---:|---:|---:|---|---|---|" + "---:|" * len(lat_cols),
    ]

    def lat(recs: list[dict[str, Any]]) -> str:
        return "".join(f" {_lat(recs, b, t)} |" for b, t in lat_cols)

    for kind, recs in report.torch_latency.items():
        lines.append(f"| (PyTorch eager) | {kind} | torch | fp32 | | | | | | | |{lat(recs)}")
    tails = [a for a in report.artifacts if "tail" in a.parity]
    for a in report.artifacts:
        name = a.name
        if "outputs" not in a.parity:  # not converted: no file, no numbers
            lines.append(
                f"| {name} (not written) | {a.kind} | {a.format} | {a.precision} | | | | | {budget_text(a.parity)} "
                f"| {_passed_cell(a)} | |" + " |" * len(lat_cols)
            )
            continue
        main = a.parity["outputs"][a.parity["main_output"]]
        rho = "" if a.parity.get("spearman") is None else f"{a.parity['spearman']:.4f}"
        rng = "" if a.input_range is None else f"[{a.input_range[0]:.3f}, {a.input_range[1]:.3f}]"
        lines.append(
            f"| {name} | {a.kind} | {a.format} | {a.precision} | {a.size_bytes / 1024:.0f} "
            f"| {main['psnr_db']:.1f} | {main['max_abs']:.2g} | {rho} | {budget_text(a.parity)} | {_passed_cell(a)} "
            f"| {rng} |{lat(a.latency)}"
        )
    earlier = [a for a in report.artifacts if a.earlier_run]
    if earlier:
        lines += [
            "",
            f"{len(earlier)} rows marked 'earlier run' were checked by an earlier export into this folder (same "
            "checkpoint, files unchanged since: SHA-256), with that run's calibration and test set "
            "(`earlier_run` in parity.json).",
        ]
    if tails:
        tail_note = "" if report.tail.get("held_out", True) else " NOT unseen by the calibration (it includes some)."
        lines += [
            "",
            f"Tail of the anomaly score on {report.tail.get('patches')} patches of whole real frames "
            f"({', '.join(report.tail.get('frames', []))}): Spearman over the top 1 % of patches, the smallest "
            "per-frame top-k overlap with PyTorch, ties within the top 64 that PyTorch does not have, Spearman "
            "over synthetic extremes (all-white, all-black, checkerboards, noise). The last column is the tail "
            "budget alone; an artifact passes only when the table above says so." + tail_note,
            "",
            "| artifact | tail Spearman (n) | top-16 overlap | top-64 overlap | ties | extremes Spearman "
            "| within tail budget |",
            "|---|---:|---:|---:|---:|---:|---|",
        ]
        sizes = [int(n) for n in report.tail.get("frame_patches", [])]
        small = {k: [n for n in sizes if n <= k] for k in (16, 64)}  # frames whose top-k is the whole frame

        def overlap(t: dict[str, Any], k: int) -> str:
            mark = " †" if small[k] else ""
            return f"{t[f'overlap_{k}']:.3f}{mark}"

        for a in tails:
            t = a.parity["tail"]
            lines.append(
                f"| {a.name} | {t['tail_spearman']:.4f} ({t['tail_n']:.0f}) | {overlap(t, 16)} "
                f"| {overlap(t, 64)} | {t['ties']:.0f} | {t.get('extremes_spearman', float('nan')):.4f} "
                f"| {'yes' if t['passed'] else 'NO'} |"
            )
            t = a.parity.get("tail_terms_max")
            if t:  # the terms-max flight score of the same patches (no extremes: it needs a frame)
                lines.append(
                    f"| {a.name}, terms-max score | {t['tail_spearman']:.4f} ({t['tail_n']:.0f}) "
                    f"| {overlap(t, 16)} | {overlap(t, 64)} | {t['ties']:.0f} | | "
                    f"{'yes' if t['passed'] else 'NO'} |"
                )
        for k, few in small.items():
            if few:
                every = (
                    "every tail frame has" if len(few) == len(sizes) else f"{len(few)} of {len(sizes)} tail frames have"
                )
                lines.append(
                    f"\n† top-{k} overlap: {every} at most {k} patches ({', '.join(map(str, few))}), where the top {k} "
                    "is the whole frame and the overlap 1 by construction"
                    + (": not informative." if len(few) == len(sizes) else "; the worst of the other frames is shown.")
                )
    return "\n".join(lines) + "\n"


def read_report(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A ``parity.json`` as written by :func:`write_report` (ValueError when it is not one)."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{p}: not an export report ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("artifacts"), list):
        raise ValueError(f"{p}: not an export report (no list of artifacts)")
    return data


#: how :func:`report_json` writes a non-finite number (strict JSON has none; the inf PSNR of identical outputs is
#: one): as the string of JavaScript's and Python's own spelling, which ``Number(s)`` / ``float(s)`` parse back
NONFINITE = ("Infinity", "-Infinity", "NaN")


def _to_json(obj: Any) -> Any:
    if isinstance(obj, float | np.floating):
        v = float(obj)
        return v if math.isfinite(v) else ("NaN" if math.isnan(v) else "Infinity" if v > 0 else "-Infinity")
    if isinstance(obj, dict):
        return {k: _to_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_to_json(v) for v in obj]
    return obj


def _from_json(obj: Any) -> Any:
    if isinstance(obj, str) and obj in NONFINITE:
        return float(obj)
    if isinstance(obj, dict):
        return {k: _from_json(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_from_json(v) for v in obj]
    return obj


def report_json(report: ExportReport) -> str:
    """``report`` as indented strict JSON: a non-finite number as one of the strings :data:`NONFINITE`
    (:meth:`ArtifactRecord.from_dict` reads them back as numbers)."""
    return json.dumps(_to_json(report.to_dict()), indent=2, default=float, allow_nan=False) + "\n"


def write_report(report: ExportReport, out_dir: str | os.PathLike[str], stem: str = "parity") -> tuple[Path, Path]:
    """Write ``<stem>.json`` (:func:`report_json`) and ``<stem>.md`` into ``out_dir``, each atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    j, m = out / f"{stem}.json", out / f"{stem}.md"
    for path, text in ((j, report_json(report)), (m, markdown_table(report))):
        write_text(path, text)  # a report cut short (Ctrl-C, a full disk) never replaces a whole one
    return j, m
