"""The ``--out`` folder of an export: tested before any work, checked files placed, an earlier export kept.

Every file is built and checked in a temporary folder (so is the fp32 ONNX that int8 and ORT files are made
from) and only then copied into ``--out``: under its own name when it passed every check, as
``NAME.<precision>.FAILED.<ext>`` when it failed, so no mission or tool that opens ``NAME.<precision>.<ext>``
picks it up, and a failed file never replaces a good one of the same name. A folder that already holds an
export of the same model keeps it: :class:`Ledger` takes over the records of its ``parity.json`` whose files are
still there, unchanged (SHA-256) and made from the same checkpoint; the others are dropped with a warning (a
retrained checkpoint's re-export replaces its files, and moves those of the earlier checkpoint it does not replace
with a passing file to ``NAME.<precision>.STALE.<ext>``), and artifact files left without any record are named in one. A
folder holding another model's export, or another model of the same name, is refused (:func:`refuse_other_model`).
``parity.json`` is rewritten around every file placed, so at every moment each record in it matches its file: a run
that stops half-way never leaves a new file beside the old one's hash.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from edgeae.firmware_sim.guard import ARTIFACT_SUFFIXES as ARTIFACT_SUFFIXES
from edgeae.firmware_sim.guard import FAILED_MARK, STALE_MARK

from edgeae.metadata import ModelMetadata, sha256_file

from .report import ArtifactRecord, ExportReport, read_report, write_report

log = logging.getLogger(__name__)

# the names the flight runtime refuses are defined once, on its side (it must not import this package)
FAILED = FAILED_MARK.strip(".")
STALE = STALE_MARK.strip(
    "."
)  # NAME.<precision>.STALE.<ext>: moved aside by a re-export (made from an earlier checkpoint)
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


@contextlib.contextmanager
def removed_if_failed(out: str | os.PathLike[str]) -> Iterator[None]:
    """Remove the folders of ``out`` that did not exist before, when the block raises and they are still empty
    (as the CLI does: a refused or failed export leaves no empty ``--out`` behind; a written report stays)."""
    p = Path(out)
    made = [f for f in (p, *p.parents) if not f.exists()]
    try:
        yield
    except BaseException:
        for f in made:  # the innermost first
            try:
                f.rmdir()
            except OSError:  # not empty (a report was written), or gone: leave it
                break
        raise


def failed_name(name: str) -> str:
    """``m.int8.onnx`` -> ``m.int8.FAILED.onnx``: the name a file that failed its checks is kept under."""
    stem, _, ext = name.rpartition(".")
    return f"{stem}.{FAILED}.{ext}"


def is_failed(name: str) -> bool:
    return FAILED_MARK in name


def stale_name(name: str, n: int = 1) -> str:
    """``m.int8.onnx`` -> ``m.int8.STALE.onnx`` (``n`` > 1: ``m.int8.STALE.n.onnx``): the name a re-export moves an
    earlier checkpoint's file to when it does not replace it with a passing one, so it no longer flies by its name."""
    stem, _, ext = name.rpartition(".")
    return f"{stem}.{STALE}.{ext}" if n == 1 else f"{stem}.{STALE}.{n}.{ext}"


def is_stale(name: str) -> bool:
    return STALE_MARK in name


class OtherModelsExport(ValueError):
    """``--out`` holds the export of another model: exporting there would leave its files without records."""


@dataclass(frozen=True)
class Origin:
    """What an export is made from: tells a re-export of the same model (a checkpoint trained further, resumed or
    recalibrated at the same path) from another model that gives its files the same names (two runs' ``best.pt``)."""

    checkpoint: str | None  # SHA-256 of the checkpoint file (None: an in-memory model that names none)
    kind: str  # the checkpoint's kind: "cae" or "vae"
    architecture: dict[str, Any] = field(default_factory=dict)
    source: str = ""  # the checkpoint's resolved path or ``zoo:NAME`` (parity.json ``source``); "": not known

    @classmethod
    def of(cls, metadata: ModelMetadata, source: str = "") -> Origin:
        return cls(metadata.source_checkpoint_hash, metadata.kind, dict(metadata.architecture), source)


#: architecture keys set after training (``edgeae.train.vae_calibrate`` retunes λ): a recalibrated model is the same
TUNED_KEYS = frozenset({"score_lambda"})


def _base_kind(kind: str) -> str:
    """An artifact's kind -> the kind of the checkpoint it was made from (``cae-encoder`` -> ``cae``)."""
    return kind.split("-", 1)[0]


def _architecture_differs(theirs: dict[str, Any], ours: dict[str, Any]) -> list[str]:
    """``key a vs b`` for each architecture key both record with another value (JSON-normalised: tuples as lists;
    a key only one records is left out, as one an older edgeae did not write yet)."""
    a, b = json.loads(json.dumps(theirs, default=str)), json.loads(json.dumps(ours, default=str))
    return [f"{k} {a[k]} vs {b[k]}" for k in sorted(set(a) & set(b) - TUNED_KEYS) if a[k] != b[k]]


def _other_model(file: Path, origin: Origin, recorded_source: str) -> str:
    """Why ``file`` (an artifact of this model's name) was made from another model than ``origin`` ("": the same
    model, or its metadata cannot be read: the export's warnings name it)."""
    from edgeae.firmware_sim.runtime import read_metadata

    try:
        meta = read_metadata(file)
    except (OSError, ValueError):  # not an artifact, damaged, no interpreter
        return ""
    if origin.checkpoint is not None and meta.source_checkpoint_hash == origin.checkpoint:
        return ""  # the same checkpoint bytes: whatever its path, the same model
    if _base_kind(meta.kind) != origin.kind:
        return f"{file.name} is a {meta.kind} artifact, this checkpoint a {origin.kind}"
    differs = _architecture_differs(meta.architecture, origin.architecture)
    if differs:
        return f"{file.name} has another architecture: {', '.join(differs[:3])}"
    if recorded_source and origin.source and recorded_source != origin.source:
        return f"its parity.json says it was made from {recorded_source}, this export is of {origin.source}"
    return ""


def _of_model(name: str, model: str) -> bool:
    """Whether an artifact file name is one ``edgeae export`` writes for the stem ``model``."""
    return any(name.startswith(f"{model}{s}.") for s in ("", "-encoder", "-decoder"))


def _refuse(out: Path, model: str, holds: str, other: str) -> NoReturn:
    raise OtherModelsExport(
        f"--out {out} holds the export of {holds}: exporting {model} there would leave {other}'s files without "
        f"records; choose another --out (e.g. {out / model})"
    )


def refuse_other_model(out: Path, model: str, origin: Origin | None = None) -> None:
    """Raise :class:`OtherModelsExport` when ``out`` holds another model's export whose files are still there (one
    report per folder: its records would be dropped and its files left unrecorded or replaced).

    Another model: ``parity.json`` names another one, or a file of this name still there is not of ``origin``: made
    from another checkpoint SHA-256 *and* another kind, architecture or source checkpoint (the path or zoo name that
    ``parity.json`` records as ``source``; a report from before ``source`` decides by kind and architecture). The
    same checkpoint trained further at the same path is the same model: its stale records are dropped with a warning
    (:func:`earlier_records`) and its files replaced. A ``parity.json`` that cannot be read describes nothing: then
    the artifact files of the folder decide (another name, another kind or architecture).
    """
    p = out / REPORT
    try:
        data = read_report(p) if p.is_file() else None
    except (OSError, ValueError):  # not a report: what the folder plainly holds decides
        files = sorted(f for f in out.iterdir() if f.suffix in ARTIFACT_SUFFIXES and f.is_file())
        others = [f.name for f in files if not _of_model(f.name, model)]
        if others:
            named = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
            _refuse(out, model, f"another model ({named}; its parity.json cannot be read)", "that model")
        data = {"model": model, "artifacts": [{"path": f.name} for f in files]}
    if data is None:
        return
    names = [Path(str(d.get("path") or "")).name for d in data["artifacts"] if isinstance(d, dict)]
    present = [out / n for n in names if n and (out / n).is_file()]
    if not present:
        return
    other = str(data.get("model"))
    if data.get("model") not in (None, model):
        _refuse(out, model, f"{other} (parity.json)", other)
    if origin is None:
        return
    recorded = data.get("source")
    for f in present:
        why = _other_model(f, origin, recorded if isinstance(recorded, str) else "")
        if why:
            raise OtherModelsExport(
                f"--out {out} holds the export of another model named {model} ({why}): exporting this one there "
                f"would replace that model's files of the same names; choose another --out (e.g. {out / model})"
            )


def _copy(src: Path, dest: Path, replace: tuple[str, str] | None = None) -> None:
    """Copy ``src`` to ``dest`` through a hidden partial file: a cut-short copy never sits under the real name,
    and an interrupted one (Ctrl-C, a full disk) leaves no partial file behind."""
    tmp = dest.with_name(f".{dest.name}.partial")
    try:
        if replace is None:
            shutil.copyfile(src, tmp)
        else:
            tmp.write_text(src.read_text().replace(*replace))
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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


def earlier_records(
    out: Path, model: str, checkpoint: str | None
) -> tuple[list[ArtifactRecord], list[tuple[str, str]]]:
    """The records of the export already in ``out`` that still hold, and (name, why) of those that do not.

    A record holds when it passed, it is of the same ``model``, its file is still there with the recorded SHA-256
    and the file's metadata names the same source ``checkpoint`` (SHA-256).
    """
    p = out / REPORT
    if not p.is_file():
        return [], []
    try:
        data = read_report(p)
    except (OSError, ValueError) as exc:
        log.warning("%s: cannot be read (%s); its records are not carried into the new report", p, exc)
        return [], []
    run: dict[str, Any] = {k: data.get(k) for k in ("created", "calibration", "test")}
    kept: list[ArtifactRecord] = []
    dropped: list[tuple[str, str]] = []
    for d in data["artifacts"]:
        try:
            rec = ArtifactRecord.from_dict(d)
        except (TypeError, AttributeError):
            dropped.append((f"{d!r:.60}", "not an artifact record"))
            continue
        why = _drop_reason(rec, out / rec.name, data.get("model") == model, checkpoint)
        if why:
            dropped.append((rec.name, why))
            continue
        rec.path = str(out / rec.name)
        rec.earlier_run = rec.earlier_run or run
        kept.append(rec)
    return kept, dropped


class Ledger:
    """The report of one export into ``out``, rewritten around every file placed so that ``parity.json`` never
    names a file with another file's SHA-256, whenever the run stops (Ctrl-C, killed, an exception).

    Before a file is copied in, the record of its name is dropped from ``parity.json``; once it is there, its
    new record is added. Until :meth:`finish`, ``report.unfinished`` counts the artifacts still to make.
    """

    def __init__(self, report: ExportReport, checkpoint: str | None, planned: int) -> None:
        self.report, self.out, self.planned, self.checkpoint = report, Path(report.out_dir), planned, checkpoint
        self.carried, self._dropped = earlier_records(self.out, report.model, checkpoint)
        self.made: list[ArtifactRecord] = []

    def _write(self, unfinished: int) -> None:
        self.report.artifacts = self.carried + self.made
        self.report.unfinished = unfinished
        write_report(self.report, self.out)

    def place(self, work_file: Path, record: ArtifactRecord) -> Path:
        """Copy a checked file into ``out`` (:func:`place`) and record it (path, size, SHA-256) in the report."""
        name = work_file.name if record.passed else failed_name(work_file.name)
        self.carried = [r for r in self.carried if r.name != name]
        self._write(self.planned - len(self.made))  # no record of that name while its file is replaced
        placed = place(work_file, self.out, record.passed)
        record.path, record.name = str(placed), placed.name
        record.size_bytes, record.sha256 = placed.stat().st_size, sha256_file(placed)
        self.add(record)
        return placed

    def add(self, record: ArtifactRecord) -> None:
        """Record an artifact (placed, or a converter's failure with no file) and rewrite the report."""
        self.made.append(record)
        self._write(self.planned - len(self.made))

    def finish(self) -> ExportReport:
        """Write the final report; warn about the earlier records dropped and the files without a record."""
        written = {a.name for a in self.made if a.path}
        dropped = [f"{n} ({why})" for n, why in self._dropped if n not in written]  # written: replaced
        if dropped:
            log.warning(
                "%s: %d earlier record(s) not carried into the new report: %s",
                self.out / REPORT, len(dropped), "; ".join(dropped),
            )  # fmt: skip
        self._write(0)
        moved = self._move_stale()
        if moved:
            log.warning(
                "%s: %d file(s) of %s made from another checkpoint and not replaced by a passing file of this export "
                "moved aside (the flight runtime refuses them at boot): %s",
                self.out, len(moved), self.report.model, ", ".join(f"{a} -> {b}" for a, b in moved),
            )  # fmt: skip
        stray = [n for n in unrecorded(self.out, self.report.artifacts) if n not in {b for _, b in moved}]
        if stray:
            log.warning(
                "%s: files without a record in parity.json (not checked by this export; the flight runtime refuses "
                "those of %s at boot): %s",
                self.out, self.report.model, ", ".join(stray),
            )  # fmt: skip
        return self.report

    def _move_stale(self) -> list[tuple[str, str]]:
        """Rename this model's unrecorded artifact files made from another checkpoint than this export's (their
        records were dropped; a file whose new version failed went to ``.FAILED.``) to :func:`stale_name`, so the
        folder never holds files of two checkpoints under its names (a split flight would pair their latents).
        Returns (old name, new name) of each."""
        from edgeae.firmware_sim.runtime import read_metadata

        if self.checkpoint is None:  # an in-memory model naming no checkpoint: nothing to compare with
            return []
        moved = []
        for name in unrecorded(self.out, self.report.artifacts):
            file = self.out / name
            if not _of_model(name, self.report.model) or is_failed(name) or is_stale(name) or not file.is_file():
                continue
            try:
                made_from = read_metadata(file).source_checkpoint_hash
            except (OSError, ValueError):  # unreadable: named by the warning about unrecorded files
                continue
            if made_from == self.checkpoint:  # None: an in-memory model's, dropped as "made from another checkpoint"
                continue
            n = 1
            while (self.out / stale_name(name, n)).exists():  # an earlier re-export's: kept
                n += 1
            dest = self.out / stale_name(name, n)
            os.replace(file, dest)
            config = file.with_name(file.stem + ORT_CONFIG)
            if file.suffix == ".ort" and config.is_file():
                _copy(config, self.out / (dest.stem + ORT_CONFIG), replace=(name, dest.name))
                config.unlink()
            moved.append((name, dest.name))
        return moved


def unrecorded(out: Path, records: list[ArtifactRecord]) -> list[str]:
    """Artifact files in ``out`` that no record of the report describes (not checked by any export kept there)."""
    named = {a.name for a in records if a.path}
    return sorted(f.name for f in out.iterdir() if f.suffix in ARTIFACT_SUFFIXES and f.name not in named)
