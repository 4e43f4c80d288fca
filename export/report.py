"""The export report: one JSON file and one readable markdown table per export run."""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict, dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

PACKAGES = ("edgeae", "torch", "onnx", "onnxruntime", "litert-torch", "ai-edge-litert", "numpy")


@dataclass
class ArtifactRecord:
    """One exported file: what it is, how big, how close to PyTorch, how fast."""

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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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


def markdown_table(report: ExportReport) -> str:
    """A readable summary: parity, input range, size and latency (ms per image) of every artifact."""
    lines = [
        f"# Export report: {report.model}",
        "",
        f"Parity on {report.test.get('n_patches')} held-out patches from {report.test.get('source')}; "
        f"calibration: {report.calibration.get('n_patches')} patches from {report.calibration.get('source')}.",
        "Latency: median ms per image (batch b, threads t), "
        f"{report.environment.get('cpu_count')} CPUs, load {report.environment.get('loadavg_1min')}.",
        "",
        "| artifact | kind | format | precision | size (KB) | PSNR vs torch (dB) | max abs | Spearman "
        "| int8 input range | b1 t1 | b1 t2 | b32 t1 | b32 t2 |",
        "|---|---|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for kind, recs in report.torch_latency.items():
        lines.append(
            f"| (PyTorch eager) | {kind} | torch | fp32 | | | | | | {_lat(recs, 1, 1)} | {_lat(recs, 1, 2)} "
            f"| {_lat(recs, 32, 1)} | {_lat(recs, 32, 2)} |"
        )
    tails = [a for a in report.artifacts if "tail" in a.parity]
    for a in report.artifacts:
        main = a.parity["outputs"][a.parity["main_output"]]
        rho = "" if a.parity.get("spearman") is None else f"{a.parity['spearman']:.4f}"
        rng = "" if a.input_range is None else f"[{a.input_range[0]:.3f}, {a.input_range[1]:.3f}]"
        lines.append(
            f"| {Path(a.path).name} | {a.kind} | {a.format} | {a.precision} | {a.size_bytes / 1024:.0f} "
            f"| {main['psnr_db']:.1f} | {main['max_abs']:.2g} | {rho} | {rng} | {_lat(a.latency, 1, 1)} "
            f"| {_lat(a.latency, 1, 2)} | {_lat(a.latency, 32, 1)} | {_lat(a.latency, 32, 2)} |"
        )
    if tails:
        lines += [
            "",
            f"Tail of the anomaly score on {report.tail.get('patches')} patches of whole real frames "
            f"({', '.join(report.tail.get('frames', []))}): Spearman over the top 1 % of patches, the smallest "
            "per-frame top-k overlap with PyTorch, ties within the top 64 that PyTorch does not have, Spearman "
            "over synthetic extremes (all-white, all-black, checkerboards, noise).",
            "",
            "| artifact | tail Spearman (n) | top-16 overlap | top-64 overlap | ties | extremes Spearman | passed |",
            "|---|---:|---:|---:|---:|---:|---|",
        ]
        for a in tails:
            t = a.parity["tail"]
            lines.append(
                f"| {Path(a.path).name} | {t['tail_spearman']:.4f} ({t['tail_n']:.0f}) | {t['overlap_16']:.3f} "
                f"| {t['overlap_64']:.3f} | {t['ties']:.0f} | {t.get('extremes_spearman', float('nan')):.4f} "
                f"| {'yes' if t['passed'] else 'NO'} |"
            )
            t = a.parity.get("tail_terms_max")
            if t:  # the terms-max flight score of the same patches (no extremes: it needs a frame)
                lines.append(
                    f"| {Path(a.path).name}, terms-max score | {t['tail_spearman']:.4f} ({t['tail_n']:.0f}) "
                    f"| {t['overlap_16']:.3f} | {t['overlap_64']:.3f} | {t['ties']:.0f} | | "
                    f"{'yes' if t['passed'] else 'NO'} |"
                )
    return "\n".join(lines) + "\n"


def write_report(report: ExportReport, out_dir: str | os.PathLike[str], stem: str = "parity") -> tuple[Path, Path]:
    """Write ``<stem>.json`` and ``<stem>.md`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    j = out / f"{stem}.json"
    j.write_text(json.dumps(report.to_dict(), indent=2, default=float) + "\n")
    m = out / f"{stem}.md"
    m.write_text(markdown_table(report))
    return j, m
