"""The ``--out`` folder of an export: tested before any work, checked files placed, an earlier export kept.

Every file is built and checked in a temporary folder (so is the fp32 ONNX that int8 and ORT files are made
from) and only then copied into ``--out``: under its own name when it passed every check, as
``NAME.<precision>.FAILED.<ext>`` when it failed, so no mission or tool that opens ``NAME.<precision>.<ext>``
picks it up, and a failed file never replaces a good one of the same name. A folder that already holds an
export keeps it: :func:`carried_records` takes over the records of its ``parity.json`` whose files are still
there, unchanged (SHA-256) and made from the same checkpoint; the others are dropped with a warning, and
artifact files left without any record are named in one.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from edgeae.metadata import sha256_file

from .report import ArtifactRecord, read_report

log = logging.getLogger(__name__)

ARTIFACT_SUFFIXES = (".onnx", ".ort", ".tflite")
FAILED = "FAILED"
ORT_CONFIG = ".required_operators.config"  # beside every .ort file: the operators of a minimal onnxruntime build
REPORT = "parity.json"


def ensure_writable(out: str | os.PathLike[str]) -> Path:
    """Make ``out`` and test-write a file in it, before any work (OSError naming the folder when it cannot)."""
    p = Path(out)
    try:
        p.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=p, prefix=".edgeae-write-check-"):
            pass
    except OSError as exc:
        raise OSError(exc.errno, f"cannot write the export into {p} ({exc.strerror or exc})") from None
    return p


def failed_name(name: str) -> str:
    """``m.int8.onnx`` -> ``m.int8.FAILED.onnx``: the name a file that failed its checks is kept under."""
    stem, _, ext = name.rpartition(".")
    return f"{stem}.{FAILED}.{ext}"


def is_failed(name: str) -> bool:
    return f".{FAILED}." in name


def _copy(src: Path, dest: Path, replace: tuple[str, str] | None = None) -> None:
    """Copy ``src`` to ``dest`` through a hidden partial file: a cut-short copy never sits under the real name."""
    tmp = dest.with_name(f".{dest.name}.partial")
    if replace is None:
        shutil.copyfile(src, tmp)
    else:
        tmp.write_text(src.read_text().replace(*replace))
    os.replace(tmp, dest)


def place(work_file: Path, out: Path, passed: bool) -> Path:
    """Copy a checked artifact (and an ORT file's operator config) from the work folder into ``out``."""
    name = work_file.name if passed else failed_name(work_file.name)
    dest = out / name
    _copy(work_file, dest)
    config = work_file.with_name(work_file.stem + ORT_CONFIG)
    if work_file.suffix == ".ort" and config.is_file():
        _copy(config, out / (dest.stem + ORT_CONFIG), replace=(work_file.name, name))
    return dest


def _drop_reason(rec: ArtifactRecord, file: Path, same_model: bool, checkpoint: str | None) -> str:
    """Why an earlier record no longer holds ("" when it does)."""
    from edgeae.firmware_sim.runtime import read_metadata

    if not rec.passed:
        return "it failed its checks in that run"
    if not same_model:
        return "another model's export"
    if not file.is_file():
        return "the file is gone"
    if sha256_file(file) != rec.sha256:
        return "the file changed since"
    if checkpoint is None:
        return "this export names no source checkpoint to compare with"
    try:
        made_from = read_metadata(file).source_checkpoint_hash
    except (OSError, ValueError) as exc:
        return f"its metadata cannot be read ({exc})"
    return "" if made_from == checkpoint else "made from another checkpoint"


def carried_records(out: Path, model: str, checkpoint: str | None, made: set[str]) -> list[ArtifactRecord]:
    """The records of the export already in ``out`` that still hold, to keep in the new report.

    A record is carried when this run did not write a file of its name (``made``), it passed, it is of the same
    ``model``, its file is still there with the recorded SHA-256 and the file's metadata names the same source
    ``checkpoint`` (SHA-256). The others are dropped with one warning saying why.
    """
    p = out / REPORT
    if not p.is_file():
        return []
    try:
        data = read_report(p)
    except (OSError, ValueError) as exc:
        log.warning("%s: cannot be read (%s); its records are not carried into the new report", p, exc)
        return []
    run: dict[str, Any] = {k: data.get(k) for k in ("created", "calibration", "test")}
    kept, dropped = [], []
    for d in data["artifacts"]:
        try:
            rec = ArtifactRecord.from_dict(d)
        except (TypeError, AttributeError):
            dropped.append(f"{d!r:.60} (not an artifact record)")
            continue
        name = Path(rec.path).name
        if name in made:
            continue  # this run's record replaces it
        why = _drop_reason(rec, out / name, data.get("model") == model, checkpoint)
        if why:
            dropped.append(f"{name} ({why})")
            continue
        rec.path = str(out / name)
        rec.earlier_run = rec.earlier_run or run
        kept.append(rec)
    if dropped:
        log.warning("%s: %d earlier record(s) not carried into the new report: %s", p, len(dropped), "; ".join(dropped))
    return kept


def unrecorded(out: Path, records: list[ArtifactRecord]) -> list[str]:
    """Artifact files in ``out`` that no record of the report describes (not checked by any export kept there)."""
    named = {Path(a.path).name for a in records}
    return sorted(f.name for f in out.iterdir() if f.suffix in ARTIFACT_SUFFIXES and f.name not in named)
