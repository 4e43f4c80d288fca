"""The telemetry file, ``telemetry.jsonl``: one JSON line per event (frame, downlink pass, fault, model event).

Lines are flushed as they are written, so a reboot keeps everything up to the last event. Every line has
``type`` (``start``, ``frame``, ``pass``, ``event``, ``recovery``, ``end``) and ``t`` (seconds since the
boot started; its ``start`` line's ``utc`` is the wall-clock time at t = 0). Here: the writer, the reader (a
damaged line costs only itself) and the history of every boot on the folder's state, which the summary
(:mod:`.telemetry`) is built from.
"""

from __future__ import annotations

import errno
import io
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


def _clean(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_clean(x) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float):
        return round(v, 6) if math.isfinite(v) else None
    return v


def dumps(record: dict[str, Any]) -> str:
    """Compact JSON with numpy scalars converted and non-finite floats as null."""
    return json.dumps(_clean(record), separators=(",", ":"), sort_keys=False)


def utc_iso(seconds: float) -> str:
    """A POSIX time as ISO 8601 UTC to the millisecond, ``2025-03-01T12:34:56.789Z``."""
    from datetime import UTC, datetime

    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TelemetryNotWritten(OSError):
    """A telemetry line could not be written (a full or read-only disk): the message names the file (``path``)."""

    def __init__(self, path: Path, exc: OSError) -> None:
        msg = f"cannot write {path}: {exc.strerror or exc}"
        super().__init__(*((exc.errno, msg) if exc.errno is not None else (msg,)))
        self.path = str(path)


class TelemetryWriter:
    """Appends JSON lines to ``path`` (kept open, unbuffered; fsynced per line). A line a full disk cut short stays
    one unreadable line (skipped by :func:`read_lines`): the next line starts on a line of its own."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.t0 = time.perf_counter()
        self.utc0 = utc_iso(time.time())  # the wall-clock time at t = 0 (the boot's ``start`` line says it)
        self._f: io.FileIO | None = io.FileIO(self.path, "a+")
        size = os.fstat(self._f.fileno()).st_size  # a line a crash or a full disk cut short before this boot
        self._torn = size > 0 and os.pread(self._f.fileno(), 1, size - 1) != b"\n"

    def write(self, type_: str, **fields: Any) -> dict[str, Any]:
        """Append one line; :class:`TelemetryNotWritten` (naming the file, the errno kept) when it cannot be."""
        rec = {"type": type_, "t": time.perf_counter() - self.t0, **fields}
        if self._f is not None:
            data = memoryview((("\n" if self._torn else "") + dumps(rec) + "\n").encode())
            try:
                while data:
                    n = self._f.write(data)
                    if not n:
                        raise OSError(errno.EIO, "the line was not written")
                    data = data[n:]
                os.fsync(self._f.fileno())
            except OSError as exc:
                self._torn = True  # part of the line may be in the file
                raise TelemetryNotWritten(self.path, exc) from exc
            self._torn = False
        return rec

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


def read_lines(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of a ``telemetry.jsonl`` (unreadable lines skipped, :func:`read_records`; no file: none)."""
    return read_records(path)[0]


def read_records(path: str | os.PathLike[str]) -> tuple[list[dict[str, Any]], int]:
    """The records of a ``telemetry.jsonl`` and how many of its non-empty lines were skipped as unreadable: a line
    a crash or a full disk cut short, bytes that are not UTF-8 (each line is decoded alone, so a damaged line costs
    only itself; until session 35 one such byte anywhere refused the boot and ``report``), or no JSON object. No
    file: none."""
    out: list[dict[str, Any]] = []
    try:
        data = Path(path).read_bytes()
    except OSError:
        return out, 0
    skipped = 0
    for raw in data.split(b"\n"):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw.decode("utf-8"))
        except ValueError:  # UnicodeDecodeError is one
            rec = None
        if isinstance(rec, dict):
            out.append(rec)
        else:
            skipped += 1
    return out, skipped


def read_lines_with(path: str | os.PathLike[str], needles: tuple[bytes, ...]) -> list[dict[str, Any]]:
    """The records of the lines of a ``telemetry.jsonl`` that hold one of ``needles`` (e.g. ``b'"recovery"'``, the
    type of the lines wanted), read line by line: the other lines are neither parsed nor held, so a boot that needs
    a few lines of a long mission's telemetry does not pay for the rest (a 44 MB file parsed whole: 3.65 s and
    +390 MB RSS inside the boot's memory readings, until review r6 of session 35). Unreadable lines are skipped,
    as by :func:`read_records`; no file: none."""
    out: list[dict[str, Any]] = []
    try:
        with open(path, "rb") as f:
            for raw in f:
                if not any(n in raw for n in needles):
                    continue
                try:
                    rec = json.loads(raw.decode("utf-8"))
                except ValueError:  # UnicodeDecodeError is one
                    continue
                if isinstance(rec, dict):
                    out.append(rec)
    except OSError:  # gone, or unreadable part way: what was read
        pass
    return out


@dataclass
class History:
    """What every boot on one mission state wrote to ``telemetry.jsonl``: the last frame record of each frame
    id, the fault events, the boots. A boot that started a fresh state (``resumed`` false) starts it over."""

    frames: dict[int, dict[str, Any]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    boots: int = 0
    unreadable_lines: int = 0  # lines of the whole file skipped as unreadable (:func:`read_records`)
    recoveries: list[dict[str, Any]] = field(default_factory=list)  # the ``recovery`` lines, every boot's
    last_recovery: dict[str, Any] | None = None  # the last boot's ``recovery`` line (None: it wrote none)
    passes: list[dict[str, Any]] = field(default_factory=list)  # the ``pass`` lines
    refused_boots: int = 0  # ``boot_refused`` lines: boots refused on this state (not counted in ``boots``)
    machine: dict[str, Any] | None = None  # the last ``start`` line's ``machine`` (None: it has none)
    # the ``start``, ``recovery``, ``boot_refused`` and ``event`` lines in their order, each with the number of the
    # boot it belongs to (1, 2, ...; 0 before the first ``start``): what the report's events list
    log: list[tuple[int, dict[str, Any]]] = field(default_factory=list)

    def power_loss_named(self) -> set[int]:
        """The frames a ``recovery`` line named ``reboot_during_processing`` (found in progress after a power loss)."""
        return {x for r in self.recoveries for x in r.get("reboot_during_processing") or [] if isinstance(x, int)}

    def faults_fired(self) -> list[str]:
        """The faults the boots injected (``fault_injected`` events), each once, in the order first fired."""
        return list(dict.fromkeys(str(e.get("fault")) for e in self.events if e.get("kind") == "fault_injected"))

    def count(self, kind: str) -> int:
        return sum(e.get("kind") == kind for e in self.events)


def read_history(path: str | os.PathLike[str], needles: tuple[bytes, ...] = ()) -> History:
    """The :class:`History` of a ``telemetry.jsonl``. ``needles``: only the lines holding one of them are read
    (:func:`read_lines_with`; e.g. ``(b'"start"', b'"recovery"')`` for the recovery lines alone, what a boot needs):
    the history holds what those lines say, its ``unreadable_lines`` 0."""
    records, unreadable = (read_lines_with(path, needles), 0) if needles else read_records(path)
    return history_of(records, unreadable)


def history_of(records: list[dict[str, Any]], unreadable: int = 0) -> History:
    """The :class:`History` of the records of a ``telemetry.jsonl`` (:func:`read_records`), ``unreadable`` its lines
    skipped: for a caller that needs the records too, so the file is read once (until session 36 each report read
    it twice, at every boot)."""
    h = History()
    for rec in records:
        kind = rec.get("type")
        if kind == "start":
            if rec.get("resumed") is False:  # a fresh state: what came before belongs to another
                h = History()
            h.boots += 1
            h.last_recovery = None
            h.machine = rec["machine"] if isinstance(rec.get("machine"), dict) else None
            h.log.append((h.boots, rec))
        elif kind == "recovery":
            h.recoveries.append(rec)
            h.last_recovery = rec
            h.log.append((h.boots, rec))
        elif kind == "frame" and isinstance(rec.get("frame_id"), int):
            h.frames[rec["frame_id"]] = rec
        elif kind == "event":
            h.events.append(rec)
            h.log.append((h.boots, rec))
        elif kind == "pass":
            h.passes.append(rec)
        elif kind == "boot_refused":
            h.refused_boots += 1
            h.log.append((h.boots, rec))
    h.unreadable_lines = unreadable
    return h


def run_finished(lines: list[dict[str, Any]]) -> bool:
    """Whether the last boot in these telemetry lines wrote its summary (an ``end`` line after its ``start``)."""
    kinds = [r.get("type") for r in lines]
    starts = [i for i, k in enumerate(kinds) if k == "start"]
    return bool(starts) and "end" in kinds[starts[-1] :]
