"""What an output folder keeps across boots: the mission it flies (``mission.json``), the queue and frame
ledger (``queue/``), passes, telemetry and reports. A reboot, an interrupted run or a rerun of the same
command continues that state; ``--fresh`` discards it.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path
from typing import Any

from .mission import Mission, MissionError

MISSION_STATE = "mission.json"  # the mission whose state (queue, ledger) an output folder holds


MODEL_SECTIONS = ("anomaly", "reconstruction")


def _model_file(spec: str, prefer: Any = ()) -> str | None:
    """The artifact file a model setting flies (a zoo name resolves to the installed interpreter's file), or None."""
    if not spec:
        return None
    from .onboard import resolve_model_file

    try:
        return resolve_model_file(str(spec), tuple(prefer) if isinstance(prefer, list | tuple) else ()).name
    except Exception:  # unknown name, nothing installed: the boot says so; here it only names what changed
        return None


def _mission_settings(mission: Mission) -> dict[str, Any]:
    import dataclasses

    out = {
        f"{sec}.{k}": (v if isinstance(v, int | float | str | bool) or v is None else str(v))
        for sec, fields in dataclasses.asdict(mission).items()
        if isinstance(fields, dict)
        for k, v in fields.items()
    }
    for sec in MODEL_SECTIONS:  # the file each model setting flies on this install
        section = getattr(mission, sec)
        out[f"{sec}.model_file"] = _model_file(section.model, getattr(section, "prefer", ()))
    return out


def _changes(before: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """The settings that differ, as "section.key: old -> new". A model named another way that flies the same file
    (``zoo:NAME/FILE`` -> ``zoo:NAME`` with a ``prefer``) is not a change; the file flown changing is, even when
    the setting is the same (another interpreter installed between boots)."""
    same_file: set[str] = set()
    for sec in MODEL_SECTIONS:
        old_file = before.get(f"{sec}.model_file", _model_file(before.get(f"{sec}.model") or ""))
        if old_file is not None and old_file == now.get(f"{sec}.model_file"):
            same_file.add(sec)
    return [
        f"{k}: {before.get(k)!r} -> {now.get(k)!r}"
        for k in sorted(now)
        if k in before
        and before[k] != now[k]
        and not (k.split(".")[0] in same_file and k.split(".")[1] in ("model", "prefer", "model_file"))
    ]


def check_mission_state(out: Path, mission: Mission) -> list[str]:
    """An output folder continues one mission (a reboot, a rerun of the same command): another mission's
    state is refused, and the settings that differ from those the folder was started with are returned
    ("section.key: old -> new"; they apply to new frames only)."""
    import json

    path = out / MISSION_STATE
    if not path.exists():
        return []
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
        record = isinstance(old, dict) and isinstance(old.get("name"), str) and isinstance(old.get("settings"), dict)
        why = "" if record else "no mission record (a name and its settings)"
    except (OSError, ValueError) as exc:  # not UTF-8 (a UnicodeDecodeError), not JSON, unreadable
        why = f"{type(exc).__name__}: {exc}"
    if why:  # until session 35 it was ignored and rewritten: another mission's state was taken over unchecked
        raise MissionError(
            f"{path} is unreadable ({why}): it names the mission whose state (queue, frame ledger) {out} holds, so "
            f"this run of {mission.name!r} cannot check it; choose another --out, --fresh to discard that state, or "
            "remove that file to continue the state as this mission's"
        )
    if old["name"] != mission.name:
        raise MissionError(
            f"{out} holds the state of mission {old['name']!r} (its queue and frame ledger); this run is "
            f"{mission.name!r}: choose another --out, or --fresh to discard that state"
        )
    return _changes(old["settings"], _mission_settings(mission))


class StateNotSaved(OSError):
    """The mission state (``mission.json``) could not be written at boot (a full or read-only disk); the message
    names the file and the errno is kept."""


def write_mission_state(out: Path, mission: Mission) -> None:
    """Record the mission whose state the folder holds (once the boot succeeded); :class:`StateNotSaved` when
    it cannot be written."""
    import json

    from .queue import atomic_write, remove_stale_temps

    remove_stale_temps(out, lambda name: name in STATE_PATHS)  # summary.json's, mission.json's after a power loss
    doc = {"name": mission.name, "settings": _mission_settings(mission)}
    try:
        atomic_write(out / MISSION_STATE, (json.dumps(doc, indent=2) + "\n").encode())
    except OSError as exc:  # the message names the file once and the errno once (str() would say it twice)
        path = out / MISSION_STATE
        why = exc.strerror or str(exc)
        msg = why if why.startswith("cannot write ") else f"cannot write {path}: {why}"  # atomic_write names it
        raise StateNotSaved(*((exc.errno, msg) if exc.errno is not None else (msg,))) from exc


# what a run keeps in its output folder (``--fresh`` removes it; a refused first boot leaves none of it)
STATE_PATHS = (
    "queue", "downlink", "faults", "telemetry.jsonl", "summary.json", "report.html", "report_img", MISSION_STATE,
)  # fmt: skip


def state_present(out: Path) -> frozenset[str]:
    """The names of :data:`STATE_PATHS` that ``out`` holds now (a user's own ``summary.json``, ``downlink/``...)."""
    return frozenset(name for name in STATE_PATHS if (out / name).exists() or (out / name).is_symlink())


def discard_state(out: Path, keep: Collection[str] = ()) -> None:
    """Remove what a run keeps in ``out`` (queue, ledger, passes, telemetry, reports) but the names in ``keep``
    (a refused first boot keeps what was there before it: :func:`state_present`); other files stay."""
    import shutil

    for name in STATE_PATHS:
        if name in keep:
            continue
        p = out / name
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink(missing_ok=True)


def holds_state(out: Path) -> bool:
    return any((out / name).exists() for name in (MISSION_STATE, "queue", "telemetry.jsonl"))


def _ledger_key(source: str) -> str:
    """How a ledger's source is matched: an absolute path (what runs since session 32 record) by the file it
    resolves to; a relative one (as an older run recorded the argument) as written, the folder it was relative to
    being unknown."""
    return os.path.realpath(source) if os.path.isabs(source) else source


NOT_THERE = " does not exist"  # how the reason of a frame dropped because its file was not there ends


def missing_when_acquired(entry: dict[str, Any]) -> bool:
    """Whether a ledger entry (of the queue's ledger or ``summary.json``'s) is a frame dropped ``unreadable`` because
    its file did not exist when it was acquired (:func:`.frames.open_frame`): nothing of it was read."""
    reason = str(entry.get("reason") or "")
    code = entry.get("code") or reason.split(":", 1)[0]
    dropped = entry.get("status", entry.get("outcome")) == "dropped"  # a queue ledger entry, or a summary's
    return dropped and code == "unreadable" and reason.endswith(NOT_THERE)


def _there_now(entry: dict[str, Any]) -> bool:
    """A frame dropped because its file did not exist (:func:`missing_when_acquired`) whose file exists now: it
    does not count as acquired (an absolute source only: a relative one an older run recorded names no folder)."""
    source = str(entry.get("source") or "")
    return missing_when_acquired(entry) and os.path.isabs(source) and os.path.isfile(source)


def _retake(entry: dict[str, Any]) -> bool:
    """A ledger entry that does not count its frame as acquired, so a run given the frame takes it again: a frame
    dropped because its file did not exist that exists now (:func:`_there_now`), or one dropped
    ``memory_unavailable`` (the board's memory, not the mission, refused it: a run with more memory may fit it;
    until session 36 it was skipped for good; the frame that takes it again marks it ``retaken_as``, and it no longer
    counts as acquired or dropped: :func:`.telemetry.frame_outcomes`)."""
    return _there_now(entry) or _memory_refused(entry)


def frames_to_take(
    ledger: dict[str, dict[str, Any]], frames: Sequence[str | os.PathLike[str]], skip: Callable[[str], None]
) -> Iterator[tuple[str | os.PathLike[str], int | None]]:
    """``(frame, frame_id)`` for each frame not yet in the ``ledger`` (a multiset: repeats count; ``skip`` is
    called with each source that is), ``frame_id`` the id to retry for a frame an interrupted run left
    ``interrupted``, None for a new frame.

    A frame dropped because its file did not exist when it was acquired, whose file exists now, is not counted as
    acquired: it is taken again as a new frame (its entry stays in the ledger, dropped; until session 34 it was
    skipped for good once the file appeared). Nor is one dropped ``memory_unavailable`` (:func:`_retake`).

    A frame is matched by the file its path resolves to (``os.path.realpath``), whatever folder the command runs
    from and however the path is written (``r0.png`` from ``rover/``, ``./rover/r0.png``, ``$PWD/rover/r0.png``),
    and is yielded as its absolute path, which the ledger records; a relative source an older run recorded matches
    the same string (until session 32 only the string given matched, so a rerun from another folder took every
    frame again under new ids)."""
    done = Counter(_ledger_key(r["source"]) for r in ledger.values() if r["status"] != "interrupted" and not _retake(r))
    retry: dict[str, list[int]] = {}
    for key in sorted(ledger, key=int):
        if ledger[key]["status"] == "interrupted":
            retry.setdefault(_ledger_key(ledger[key]["source"]), []).append(int(key))
    for f in frames:
        if not isinstance(f, str | os.PathLike):  # an in-memory frame (an array): taken, never matched
            yield f, None
            continue
        given = os.fspath(f)
        path = os.path.abspath(given)
        keys = (os.path.realpath(path), str(given))  # the file; the string an older run may have recorded
        hit = next((k for k in keys if done[k] > 0), None)
        if hit is not None:
            done[hit] -= 1
            skip(str(f))
            continue
        again = next((retry[k] for k in keys if retry.get(k)), None)
        yield (Path(path) if isinstance(f, Path) else path), (again.pop(0) if again else None)


def _memory_refused(entry: dict[str, Any]) -> bool:
    code = entry.get("code") or str(entry.get("reason") or "").split(":", 1)[0]
    return entry.get("status") == "dropped" and code == "memory_unavailable"


def next_boot(state: dict[str, Any]) -> int:
    """This boot's number on the queue's ``state`` (``boots``, counted from 1, saved with the next save), which each
    ledger entry it writes records (``boot``): what tells a frame of an earlier boot from one of this boot."""
    state["boots"] = int(state.get("boots") or 0) + 1
    return int(state["boots"])


def boot_of(entry: dict[str, Any]) -> dict[str, Any]:
    """The ``boot`` field of a ledger entry, to keep when the entry is rewritten ({} for an older run's entry)."""
    return {"boot": entry["boot"]} if entry.get("boot") is not None else {}


def retake_candidates(ledger: dict[str, dict[str, Any]]) -> dict[str, list[int]]:
    """Per source (:func:`_ledger_key`), the frames of the ``ledger`` dropped ``memory_unavailable`` that a run given
    the source again takes again (:func:`_retake`), oldest first: not yet superseded (``retaken_as``). Computed when
    a run starts, so a frame of this run is never one. An entry that records its boot (``boot``, since review r16 of
    session 36) took a drop again only by marking it ``retaken_as``, so every unmarked drop is a candidate: two
    frames of one source refused in one run are two (until then the second was taken for a retake of the first,
    and one drop stayed counted for good). An entry an older run wrote (no ``boot``) is taken to have taken again
    the most recent candidate of its source before it, as those runs did."""
    out: dict[str, list[int]] = {}
    for key in sorted(ledger, key=int):
        e = ledger[key]
        if e.get("retaken_as") is not None:
            continue
        k = _ledger_key(e["source"])
        if out.get(k) and e.get("boot") is None:  # an older run's entry: it took the source again
            out[k].pop()
        if _memory_refused(e):
            out.setdefault(k, []).append(int(key))
    return out


def take_retake(candidates: dict[str, list[int]], source: str) -> int | None:
    """The frame a new frame of ``source`` takes again (the most recent of :func:`retake_candidates`, removed from
    them), None when it takes none."""
    for k in (os.path.realpath(source), source):
        if candidates.get(k):
            return candidates[k].pop()
    return None


PASS_MARK = "finished_at_last_pass"
"""The queue state's count of finished frames (processed or dropped) at the last downlink pass opportunity."""


def frames_finished(ledger: dict[str, dict[str, Any]]) -> int:
    """Frames of the ledger that are done: processed or dropped (not in progress, not interrupted)."""
    return sum(e.get("status") in ("processed", "dropped") for e in ledger.values())


def frames_since_pass(state: dict[str, Any]) -> int:
    """Frames finished since the last downlink pass opportunity, over every boot on this state (the queue's
    ``state``: the pass schedule holds across reboots and reruns, as frame ids do; until session 34 it restarted
    at every boot, so runs of fewer than ``pass_every_frames`` frames never downlinked). A state from before
    the mark starts its schedule at this boot."""
    done = frames_finished(state["frames"])
    return max(0, done - int(state.setdefault(PASS_MARK, done)))


def mark_pass(state: dict[str, Any]) -> None:
    """Record a downlink pass opportunity in the queue's ``state`` (saved with the index by the pass, else by the
    next frame)."""
    state[PASS_MARK] = frames_finished(state["frames"])
