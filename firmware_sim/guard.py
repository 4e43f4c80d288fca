"""Model integrity: golden-hash checks at load, and checksum scrubbing of the weights held in memory.

The runtime keeps each model artifact's bytes in memory (the weight image an SEU would hit) with a CRC-32 per
4 KiB block. :meth:`ModelGuard.scrub` recomputes the CRCs; on a mismatch it reloads the golden copy from
storage (after checking its SHA-256 against the golden hash) and rebuilds the interpreter session, so the
upset lives at most until the next scrub. At load, a file whose SHA-256 differs from the golden hash (from
the mission file, else a ``<file>.sha256`` sidecar, else the export's ``parity.json`` beside it) is refused, and
so is a file its export rejected (``parity.json`` says it failed its checks, or it is named ``*.FAILED.*`` or
``*.STALE.*``, or it is named as a file of the model of the ``parity.json`` beside it but not recorded there and is no
byte-identical copy of a file recorded there); a configured fallback copy is tried next.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

BLOCK = 4096
Loader = Callable[[Path, int], Any]


class ModelRefused(RuntimeError):
    """No trustworthy copy of a model could be loaded."""


def block_crcs(image: np.ndarray, block: int = BLOCK) -> np.ndarray:
    """CRC-32 of each ``block``-byte block of a uint8 array."""
    mv = memoryview(image.data)
    return np.array([zlib.crc32(mv[i : i + block]) for i in range(0, image.size, block)], dtype=np.uint32)


def golden_hash(path: Path, declared: str) -> tuple[str, str]:
    """The hash a model file must have and where it came from: the mission, a ``<file>.sha256`` sidecar, the
    ``parity.json`` that ``edgeae export`` wrote beside it, or (none of those) the file as first loaded."""
    if declared:
        return declared.lower(), "mission"
    side = path.with_name(path.name + ".sha256")
    if side.is_file():
        text = side.read_text(encoding="utf-8").split()
        if text:
            return text[0].lower(), "sidecar"
    exported = parity_hash(path)
    if exported:
        return exported, "parity.json"
    return hashlib.sha256(path.read_bytes()).hexdigest(), "first-load"


def recorded_hash_mismatch(path: Path) -> str | None:
    """Why ``path`` is not the file its ``.sha256`` sidecar or ``parity.json`` records (None: it is, or nothing
    records it): what ``firmware-sim run``, ``firmware-sim bench`` and the board check refuse to use. A file that
    ``parity.json`` says failed its export checks is logged as a warning here (those commands go on; the flight
    runtime's boot refuses it)."""
    expected, source = golden_hash(path, "")
    failed = parity_failure(path)
    if failed:  # bench and the board check measure it all the same; the boot refuses it (ModelGuard.load)
        log.warning("%s: the flight runtime refuses it at boot", failed)
    if source == "first-load":
        return None
    got = hashlib.sha256(path.read_bytes()).hexdigest()
    if got == expected:
        return None
    return (
        f"{path}: SHA-256 {got[:12]}… differs from the {expected[:12]}… its {source} records: the file was "
        "damaged or changed after export"
    )


def _parity_doc(path: Path) -> dict[str, Any] | None:
    """The export's ``parity.json`` beside ``path``, if there is a readable one."""
    record = path.with_name("parity.json")
    try:
        if not record.is_file() or record.stat().st_size > 8 << 20:
            return None
        doc = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _recorded(doc: dict[str, Any], path: Path) -> dict[str, Any] | None:
    artifacts = doc.get("artifacts")
    for entry in artifacts if isinstance(artifacts, list) else []:
        if isinstance(entry, dict) and Path(str(entry.get("path", ""))).name == path.name:
            return entry
    return None


def parity_record(path: Path) -> dict[str, Any] | None:
    """The record of the export's ``parity.json`` beside ``path`` for a file of that name, if any (an unreadable or
    foreign parity.json counts as none: the sidecar and the mission are the firm sources)."""
    doc = _parity_doc(path)
    return _recorded(doc, path) if doc is not None else None


def parity_hash(path: Path) -> str | None:
    """The SHA-256 that the export's ``parity.json`` beside ``path`` records for a file of that name, if any."""
    entry = parity_record(path)
    sha = str((entry or {}).get("sha256") or "").lower()
    return sha if len(sha) == 64 else None


ARTIFACT_SUFFIXES = (".onnx", ".ort", ".tflite")  # the files edgeae export writes (edgeae.export.outdir)

#: in the name of every file ``edgeae export`` rejected (``NAME.<precision>.FAILED.<ext>``, docs/export.md)
FAILED_MARK = ".FAILED."
#: in the name of a file a re-export moved aside: made from an earlier checkpoint, not replaced by a passing file
STALE_MARK = ".STALE."


def _passed(entry: dict[str, Any]) -> bool | None:
    """A ``parity.json`` record's verdict (a record from before ``passed`` existed has it in ``parity["passed"]``)."""
    passed = entry.get("passed")
    if passed is None:
        parity = entry.get("parity")
        passed = parity.get("passed") if isinstance(parity, dict) else None
    return passed if isinstance(passed, bool) else None


def _export_name(model: str, filename: str) -> bool:
    """Whether ``filename`` is a name ``edgeae export`` gives a file of ``model``: ``MODEL[-encoder|-decoder].PREC.EXT``
    (``m.int8.onnx``; not ``m.int8.copy.onnx``, a copy someone made)."""
    suffixes = "|".join(ext.lstrip(".") for ext in ARTIFACT_SUFFIXES)
    return (
        re.fullmatch(rf"{re.escape(model)}(?:-encoder|-decoder)?\.[A-Za-z0-9]+\.(?:{suffixes})", filename) is not None
    )


def _copy_of_passing_record(doc: dict[str, Any], path: Path) -> bool:
    """Whether ``path``'s SHA-256 is that of a file ``doc`` (its folder's ``parity.json``) records and does not say
    failed (as :func:`parity_failure` lets that file fly): a byte-identical copy (a mission's fallback) of it."""
    artifacts = doc.get("artifacts")
    passing = {
        str(entry.get("sha256") or "").lower()
        for entry in (artifacts if isinstance(artifacts, list) else [])
        if isinstance(entry, dict) and _passed(entry) is not False
    }
    if not passing - {""}:
        return False
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest() in passing
    except OSError:  # unreadable: the load that reads it says so
        return False


def unrecorded_by_export(path: Path) -> str | None:
    """Why ``path`` is named as a file of the model whose ``parity.json`` is beside it (the name the export gives one,
    ``MODEL[-encoder|-decoder].PREC.EXT``) but has no record there (None: it has one, nothing beside it says whose
    folder it is, or its bytes are those of a file recorded there as passing: a copy): a file left by an earlier
    checkpoint or another run, never checked against the model the folder's export describes."""
    doc = _parity_doc(path)
    model = doc.get("model") if doc is not None else None
    if not isinstance(model, str) or not model or doc is None or _recorded(doc, path) is not None:
        return None
    if not _export_name(model, path.name):
        return None
    if _copy_of_passing_record(doc, path):  # hashed only here: a file recorded under its own name costs nothing
        return None
    return (
        f"{path} is not recorded by the export beside it ({path.with_name('parity.json')}, model {model}): a file "
        "of another checkpoint or run, not checked by that export: re-export the model"
    )


def parity_failure(path: Path) -> str | None:
    """Why ``path`` is a file its export rejected (None: nothing says so): the export's own ``parity.json`` beside it
    says it failed its checks (a record from before ``passed`` existed has its verdict in ``parity["passed"]``), or
    its name is one the export gives a rejected file (``.FAILED.``): the refusal must not end when a later export
    into the folder drops the record, or when the file is copied without its ``parity.json``. So is a file a
    re-export moved aside (``.STALE.``), and one named as a file of the model of the ``parity.json`` beside it that
    has no record there (:func:`unrecorded_by_export`)."""
    entry = parity_record(path) or {}
    if _passed(entry) is False:
        failures = entry.get("failures")
        gate = str(failures[0]) if isinstance(failures, list) and failures else "parity"
        return f"{path}: its export report {path.with_name('parity.json')} says it failed its checks ({gate})"
    if FAILED_MARK in path.name:
        return f"{path} is a file its export rejected (named {FAILED_MARK} by edgeae export): re-export the model"
    if STALE_MARK in path.name:
        return (
            f"{path} is a file a re-export moved aside (named {STALE_MARK} by edgeae export: made from an earlier "
            "checkpoint): fly the file the export recorded, or re-export the model"
        )
    return unrecorded_by_export(path)


@dataclass
class GuardEvent:
    """Something the guard did, for the telemetry."""

    kind: str
    detail: str
    data: dict[str, Any] = field(default_factory=dict)


class ModelGuard:
    """Holds one model: its golden hash, its in-memory weight image, and the interpreter built from it."""

    def __init__(
        self,
        role: str,
        path: Path,
        loader: Loader,
        threads: int,
        *,
        sha256: str = "",
        fallback: str = "",
        golden_path: Path | None = None,
    ) -> None:
        self.role = role
        self.candidates = [path] + ([Path(fallback)] if fallback else [])
        self.loader = loader
        self.threads = threads
        # the golden hash comes from the intended file (``golden_path``) when the loaded copy may be damaged
        self.expected, self.hash_source = golden_hash(golden_path or path, sha256)
        self.events: list[GuardEvent] = []
        self.path: Path | None = None
        self.predictor: Any = None
        self.image = np.zeros(0, np.uint8)
        self.crcs = np.zeros(0, np.uint32)
        self.reloads = 0

    @property
    def nbytes(self) -> int:
        return int(self.image.nbytes)

    def load(self) -> Any:
        """Load the first candidate whose bytes match the golden hash; raise :class:`ModelRefused` if none."""
        reasons = []
        for cand in self.candidates:
            try:
                data = cand.read_bytes()
            except OSError as exc:
                reasons.append(f"{cand}: unreadable ({exc})")
                continue
            got = hashlib.sha256(data).hexdigest()
            if got != self.expected:
                reasons.append(f"{cand}: SHA-256 {got[:12]}… != golden {self.expected[:12]}… ({self.hash_source})")
                self.events.append(
                    GuardEvent("model_file_corrupt", reasons[-1], {"role": self.role, "path": str(cand)})
                )
                continue
            failed = parity_failure(cand)  # a file its own export rejected (kept as NAME.FAILED.EXT) never flies
            if failed:
                reasons.append(failed)
                self.events.append(GuardEvent("model_failed_export", failed, {"role": self.role, "path": str(cand)}))
                continue
            try:
                self.predictor = self.loader(cand, self.threads)
            except Exception as exc:  # interpreter errors: report and try the next copy
                from .memory_room import is_out_of_memory

                if is_out_of_memory(exc):  # not the file's fault, and the copy would fail the same: the boot's
                    raise  # one-line refusal (boot.py), not a model flown without (until session 36 a library
                    # that could not be mapped under ulimit -v refused both models and the mission flew unscored)
                reasons.append(f"{cand}: {type(exc).__name__}: {exc}")
                self.events.append(GuardEvent("model_unloadable", reasons[-1], {"role": self.role}))
                continue
            self.path = cand
            self.image = np.frombuffer(bytearray(data), dtype=np.uint8)
            self.crcs = block_crcs(self.image)
            if cand != self.candidates[0]:
                self.events.append(GuardEvent("model_fallback", f"loaded fallback {cand}", {"role": self.role}))
            return self.predictor
        raise ModelRefused(f"{self.role} model refused: " + "; ".join(reasons))

    def scrub(self) -> GuardEvent | None:
        """Check every block; on a mismatch reload the golden copy and rebuild the session."""
        if self.path is None:
            return None
        bad = np.flatnonzero(block_crcs(self.image) != self.crcs)
        if bad.size == 0:
            return None
        first = int(bad[0])
        detail = f"{bad.size} of {self.crcs.size} blocks of the {self.role} weights corrupted (first {first})"
        try:
            self.load()
        except Exception as exc:  # refused, or out of memory rebuilding it (the loop goes on without the model)
            from .memory_room import is_out_of_memory

            if not isinstance(exc, ModelRefused) and not is_out_of_memory(exc):
                raise
            ev = GuardEvent("seu_unrecoverable", f"{detail}; {exc}", {"role": self.role, "blocks": bad.tolist()})
            self.predictor, self.path = None, None
            self.events.append(ev)
            return ev
        self.reloads += 1
        ev = GuardEvent("seu_detected", f"{detail}; golden copy reloaded", {"role": self.role, "blocks": bad.tolist()})
        self.events.append(ev)
        return ev

    def drain_events(self) -> list[GuardEvent]:
        out, self.events = self.events, []
        return out
