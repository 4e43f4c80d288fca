"""What a ``report.html`` is built from: the outputs a flight run leaves in its folder (``summary.json``, or
a summary rebuilt from ``telemetry.jsonl`` and ``queue/index.json`` when the run did not finish, and the
anomaly patches decoded from the ``downlink/pass_*.bin`` packet files, exactly as the ground receives them, read
in :mod:`.report_packets`; their names are importable from here as well).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .report_packets import MAX_PATCH_ELEMENTS as MAX_PATCH_ELEMENTS
from .report_packets import PatchRead as PatchRead
from .report_packets import assemble as assemble
from .report_packets import decode_patches as decode_patches
from .report_packets import read_patches as read_patches
from .telemetry import read_lines, rebuild_summary, run_finished


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_telemetry(path: Path) -> list[dict[str, Any]]:
    """The records of ``telemetry.jsonl`` (a torn last line after a crash is skipped)."""
    return read_lines(path)


RUN_FILES = ("summary.json", "telemetry.jsonl", "queue/index.json")


def check_run_folder(out: Path) -> None:
    """``MissionError`` in one line when ``out`` does not exist, is a file or holds none of a run's files (checked
    before a report takes the folder's lock, whose file may not be makeable there: until review r18 of session 36
    ``report /proc/self`` said "No such file or directory: '/proc/self/.edgeae.lock'"). Only whether the files
    exist: the summary itself is read holding the lock."""
    from .mission import MissionError

    if not out.exists():
        raise MissionError(f"{out} does not exist: give the --out folder of a firmware-sim run")
    if not out.is_dir():
        raise MissionError(f"{out} is a file, not a run folder (the --out folder of firmware-sim run)")
    if not any((out / n).is_file() for n in RUN_FILES):
        raise MissionError(
            f"{out} holds no summary.json, telemetry.jsonl or queue/index.json: is it the --out folder of "
            "firmware-sim run?"
        )


def load_summary(out: Path) -> tuple[dict[str, Any], list[str]]:
    """The summary a report is built from, and notes on it: ``summary.json`` when the last boot wrote it;
    else (a run rebooted, interrupted or killed) one rebuilt from ``telemetry.jsonl`` and ``queue/index.json``
    (:func:`.telemetry.rebuild_summary`), the notes naming what was missing. Raises ``MissionError`` when ``out``
    is not a folder, holds none of them or a damaged summary of a finished run."""
    from .mission import MissionError

    check_run_folder(out)
    lines = read_lines(out / "telemetry.jsonl")
    have = [n for n in RUN_FILES if (out / n).is_file()]
    if "summary.json" in have and (not lines or run_finished(lines)):
        path = out / "summary.json"
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:  # a damaged summary would make a report of "mission ?" with 0 frames
            raise MissionError(f"{path} is not readable JSON ({exc}); run the mission again to rewrite it") from None
        if not isinstance(doc, dict) or "frames" not in doc:
            raise MissionError(f"{path} is not a firmware-sim run summary (no 'frames' record)")
        return doc, []
    summary, missing = rebuild_summary(out)
    notes = ["run incomplete (rebooted or interrupted): rebuilt from " + ", ".join(
        n for n in ("telemetry.jsonl", "queue/index.json", "mission.json") if n not in missing)]  # fmt: skip
    if missing:
        notes.append("missing: " + ", ".join(missing))
    if "summary.json" in have:  # the last boot that wrote one came before: its counts are not this run's
        notes.append("the summary.json there is of an earlier boot: not used")
    return summary, notes


def _any_summary(out: Path) -> dict[str, Any]:
    """:func:`load_summary`, or whatever ``summary.json`` holds when that refuses the folder (a report is
    still written)."""
    from .mission import MissionError

    try:
        return load_summary(out)[0]
    except MissionError:
        doc = _read_json(out / "summary.json")
        return doc if isinstance(doc, dict) else {}
