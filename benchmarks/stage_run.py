"""One stage of ``python -m benchmarks``: its commands run in a staging copy of its folder, logged, and what they
wrote is published into ``--out/<stage>/`` only when every command succeeded; its record in ``stages.json`` says
what happened either way (the harness's docstring, benchmarks/__main__.py, has the rules). A timed stage first waits
for a quiet machine.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.machine import wait_for_quiet
from benchmarks.publish import (
    OUTPUT_SUFFIXES,
    WORK,
    PublishError,
    earlier_runs,
    locked,
    promote,
    shown_path,
    sigint_deferred,
    snapshot,
    update_record,
)
from benchmarks.report import STAGES_REMEDY, load_record
from benchmarks.stage_command import run_command
from benchmarks.stages import PY, Command, Stage
from edgeae.data import find_data_root

LOAD_LIMIT = 1.0
"""1-minute load above which a timed stage's timings are not to be quoted (the project rule)."""
QUIET_WAIT_S = 180.0
"""How long the harness waits for the load to fall below LOAD_LIMIT before a timed stage."""


def _fill(args: Command, out: str | Path) -> list[str]:
    return [a.replace("{out}", str(out)) for a in args]


class StageInterrupted(Exception):
    """Ctrl-C (or the command's own SIGINT) during a stage: nothing of it was published."""

    def __init__(self, name: str, staging: Path) -> None:
        super().__init__(name)
        self.name, self.staging = name, staging


@dataclass
class Run:
    """What the stages of one invocation share."""

    out: Path
    full: bool
    only: bool  # the stages were named with --only
    where: dict[str, Any]  # the machine each record keeps
    env: dict[str, str]  # the stage commands' environment
    stopped_after: str | None = None  # Ctrl-C while this stage was being published: no further stage runs
    received: list[str] = field(default_factory=list)  # the stop signals that came (main's handlers append)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _good(record: dict[str, Any] | None) -> bool:
    return bool(record) and not (record or {}).get("returncode")


def run_stage(run: Run, name: str, stage: Stage) -> str:
    """Run one stage in its staging folder and publish it if every command succeeded. Returns what happened:
    'published', 'failed', 'skipped' (no data), 'kept' (a full-size record a quick run does not replace), 'busy'.
    Ctrl-C before it is published raises :class:`StageInterrupted`, and so does a stop signal in
    ``run.received`` whose Ctrl-C was lost (checked before each command and after the last); during publishing it
    is held back until the stage is published, then ``run.stopped_after`` names the stage and no further stage
    runs."""
    try:
        return _run_stage(run, name, stage)
    except KeyboardInterrupt:
        raise StageInterrupted(name, run.out / WORK / "staging" / name) from None


def _run_stage(run: Run, name: str, stage: Stage) -> str:
    published = run.out / name
    size = "full" if run.full else "quick"
    if stage.data and find_data_root() is None:
        where = os.environ.get("EDGEAE_DATA") or "../shared/data"
        print(f"\n== {name}: skipped: it reads the data folder, not found at {where} (set EDGEAE_DATA or place "
              "../shared/data beside the repository); its previous record is kept", flush=True)  # fmt: skip
        return "skipped"
    status_path = run.out / "stages.json"
    prev = load_record(status_path, STAGES_REMEDY).get(name) if status_path.is_file() else None
    staging = run.out / WORK / "staging" / name
    keep_full = not run.full and _good(prev) and (prev or {}).get("size") == "full"
    if keep_full and not run.only:
        print(f"\n== {name}: kept the full-size results of {name} (give --full to replace them, or --only {name} for "
              f"a quick run into {shown_path(staging)})", flush=True)  # fmt: skip
        return "kept"
    with locked(run.out / WORK / f"{name}.lock", wait=False) as mine:
        if not mine:
            print(f"\n== {name}: not run: another `python -m benchmarks` is running it into {shown_path(run.out)}",
                  file=sys.stderr, flush=True)  # fmt: skip
            return "busy"
        shutil.rmtree(staging, ignore_errors=True)  # a previous unpublished run's
        staging.parent.mkdir(parents=True, exist_ok=True)
        if published.is_dir():
            shutil.copytree(published, staging, symlinks=True, copy_function=shutil.copy2)
        else:
            staging.mkdir()
        before = snapshot(staging)
        logs = run.out / WORK / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        now = datetime.now(UTC)
        log_path = logs / f"{name}-{now:%Y%m%dT%H%M%S}{now.microsecond // 1000:03d}Z.log"
        extra: dict[str, Any] = {}
        if stage.timed:
            extra.update(_wait_for_quiet(name))
        t0 = time.perf_counter()
        load_before = [round(v, 2) for v in os.getloadavg()]
        rc = 0
        shown = []
        leftovers: list[str] = []  # what the harness killed or stopped reading once a command ended
        with open(log_path, "wb") as log:
            for cmd in stage.full if run.full else stage.quick:
                if run.received:  # a stop whose Ctrl-C a library swallowed (``import torch``): it still counts
                    raise StageInterrupted(name, staging)
                shown.append(" ".join(["python" if a == PY else a for a in _fill(cmd, shown_path(published))]))
                print(f"\n== {name}: {shown[-1]}", flush=True)
                log.write(f"== {shown[-1]}\n".encode())
                rc = run_command(_fill(cmd, shown_path(staging)), log, run.env, leftovers)  # relative: cwd is ROOT
                if rc == -signal.SIGINT:
                    raise StageInterrupted(name, staging)
                if rc != 0:
                    break
        if run.received:  # the command's exit status comes from the stop; nothing of the stage is recorded
            raise StageInterrupted(name, staging)
        record: dict[str, Any] = {
            "title": stage.title,
            "commands": shown,
            "returncode": rc,
            "seconds": round(time.perf_counter() - t0, 1),
            "size": size,
            "load_average_before_after": [load_before, [round(v, 2) for v in os.getloadavg()]],
            "machine": run.where,
            "log": shown_path(log_path),
            **extra,
            **({"leftovers": leftovers} if leftovers else {}),
        }
        if rc != 0:
            fail = {"date": _now(), "commit": run.where.get("commit"), "size": size, "returncode": rc,
                    "commands": shown, "log": record["log"], "staging": shown_path(staging),
                    **({"leftovers": leftovers} if leftovers else {})}  # fmt: skip

            def failed(current: dict[str, Any] | None) -> dict[str, Any]:
                if _good(current):  # keep the good run's record and tables; say that the rerun failed
                    return {**(current or {}), "last_failure": fail}
                return {**record, "files": [], "earlier": earlier_runs(published, [], current),
                        "staging": shown_path(staging)}  # fmt: skip

            update_record(run.out, name, failed)
            print(f"== {name}: FAILED (exit status {rc}); its published results are unchanged; what it wrote "
                  f"is in {shown_path(staging)}, its output in {shown_path(log_path)}", file=sys.stderr,
                  flush=True)  # fmt: skip
            return "failed"
        if keep_full:
            print(f"== {name}: kept the full-size results of {name} (give --full to replace them); this quick run's "
                  f"output is in {shown_path(staging)}", flush=True)  # fmt: skip
            return "kept"
        with sigint_deferred() as held:
            try:
                written, deleted = promote(staging, published, before)
            except PublishError as exc:  # a full disk part-way: said in one line and recorded, never a traceback
                why, partial = f"publishing failed: {exc.why}", exc.partial
                fail = {"date": _now(), "commit": run.where.get("commit"), "size": size, "returncode": rc,
                        "error": why, "partial": partial, "commands": shown, "log": record["log"],
                        "staging": shown_path(staging)}  # fmt: skip

                def unpublished(current: dict[str, Any] | None) -> dict[str, Any]:
                    if _good(current):  # keep the good run's record and tables; say that publishing failed
                        return {**(current or {}), "last_failure": fail}
                    # nothing good to keep: a failed record (the commands exited 0; the stage did not)
                    earlier = earlier_runs(published, [], current)
                    return {**record, "returncode": 1, "error": why, "partial": partial, "files": [],
                            "earlier": earlier, "staging": shown_path(staging)}  # fmt: skip

                update_record(run.out, name, unpublished)
                left = (
                    f"some of its files may be in {shown_path(published)}, the rest not"
                    if partial
                    else f"{shown_path(published)} is as it was"
                )
                print(f"== {name}: FAILED: {why}; {left}; this run's files are in {shown_path(staging)}",
                      file=sys.stderr, flush=True)  # fmt: skip
                return "failed"
            files = [rel for rel in written if Path(rel).suffix in OUTPUT_SUFFIXES]

            def succeeded(current: dict[str, Any] | None) -> dict[str, Any]:
                return {**record, "files": files, "earlier": earlier_runs(published, files, current)}

            update_record(run.out, name, succeeded)
            shutil.rmtree(staging, ignore_errors=True)
        if held:
            run.stopped_after = name
        gone = f"; removed {len(deleted)} file(s) the stage deleted" if deleted else ""
        print(f"== {name}: published {len(written)} file(s) into {shown_path(published)}{gone}", flush=True)
        return "published"


def _wait_for_quiet(name: str) -> dict[str, Any]:
    """Before a timed stage: wait (at most QUIET_WAIT_S) for the 1-minute load to fall to LOAD_LIMIT; the record's
    ``quiet`` (what the wait saw) and, when the load stayed above it, ``under_load``."""
    load = os.getloadavg()[0]
    if load > LOAD_LIMIT:
        print(f"\n== {name}: waiting up to {QUIET_WAIT_S:.0f} s for the 1-minute load ({load:.2f}) to fall to "
              f"{LOAD_LIMIT} (a timed stage)", flush=True)  # fmt: skip
    quiet = wait_for_quiet(max_load=LOAD_LIMIT, timeout_s=QUIET_WAIT_S)
    got: dict[str, Any] = {"quiet": quiet}
    if quiet["load_at_start"] > LOAD_LIMIT:
        got["under_load"] = quiet["load_at_start"]
        print(f"== {name}: starting at 1-minute load {quiet['load_at_start']}: its timings are recorded as taken "
              "under load, not to be quoted", file=sys.stderr, flush=True)  # fmt: skip
    return got
