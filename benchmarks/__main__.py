"""Run every benchmark and regenerate benchmarks/RESULTS.md.

    python -m benchmarks                  # quick sizes (~1.6 h on 2 cores: the sum of the wall times of the 22 quick
                                          # records in stages.json; the 5 stages recorded at full size are kept, not
                                          # rerun, so they add nothing)
    python -m benchmarks --full           # full sizes
    python -m benchmarks --only speed link
    python -m benchmarks --report-only    # rebuild RESULTS.md from the JSON already in --out

Each stage is one command (printed before it runs, so any number can be reproduced alone) that writes
JSON + a markdown table + plots under ``--out/<stage>/``. ``machine.json`` records machine, versions, thread
settings (the OMP/MKL/OpenBLAS thread variables as given, the CPU count and affinity) and commit, and each stage's
record the same for its run; RESULTS.md is generated from those files by benchmarks/report.py. The commit is taken
once, before anything is written, and passed to the stages (``$EDGEAE_BENCHMARK_COMMIT``). Script paths and the
default ``--out`` are the repository's, and stages run with the repository as their working folder, so the command
works from any folder (``PYTHONPATH=<repository> python -m benchmarks``).

A stage runs in a staging copy of its folder (``--out/.work/staging/<stage>``, git-ignored; mtimes kept, so a stage
that reads its earlier outputs still can); its output is shown and also logged to ``--out/.work/logs/`` (through a
pipe, so the progress bars of the commands it runs are off). Only when
every command of the stage succeeded are the files it wrote (and deletions of its own old files) published into
``--out/<stage>/`` and its record written: each is copied beside its place first, and only when every copy succeeded
are they renamed into place, so an error while publishing (a full disk) leaves the folder as it was, recorded as a
failure of the run. A failed run leaves the folder and the good record as they were, adds to
that record that the latest rerun failed (date, commit, exit status, commands, log: RESULTS.md shows it above the
good tables) and exits 1; Ctrl-C leaves them as they were too and exits 130 (while a stage is being published it is
held back until the stage is published whole), and so do SIGTERM (``timeout``, ``kill``) and SIGHUP (the terminal
closed, ssh dropped; ``nohup`` keeps ignoring it): the stage's command, in its own process group, gets SIGINT with
whatever it started (SIGTERM when the command ignores SIGINT, as one started from a background shell does), and is
given 10 s to end (killed at once when it ignores both). Whatever the command left running in its group is killed
the moment it ends (its output and its record's ``leftovers`` name it), and a process outside the group still holding
its output (a daemon it started with ``setsid``) is named there and no longer read a second later; a harness killed
outright (SIGKILL) takes the command's group with it. The staging folder of a run that was not published is
left for inspection, named, and replaced by the stage's next run. One stage runs into one --out at a time (a lock).
Output that can no longer be shown (the terminal closed: EIO; the reader of a pipe gone: EPIPE) is dropped, never
an error: the stage logs still get it, and the run ends with the status it would have had (a closed terminal's
SIGHUP stops it as above: 130).

A quick run never replaces a stage whose record is a good full-size run: a plain ``python -m benchmarks`` skips such
stages with one line, and ``--only <stage>`` runs it but leaves its output in the staging folder (``--full``
replaces the full-size results). Stages that read the data (``../shared/data`` or ``$EDGEAE_DATA``) are skipped with
one line when it is absent, keeping their records (skipped, not failed). Before a timed stage the harness waits up
to 3 minutes for the 1-minute load to fall to 1; a stage that starts above it is recorded ``under_load`` and its
section warns that its timings are not to be quoted. The exit status and the list of failed stages count this
command's stages only.

Stage folders are never cleared by the harness (a stage's own deletions are applied only with its results), so each
stage's record in ``stages.json`` lists the files its run wrote (``files``) and, for the tables and plots left in the
folder by an earlier run, which run wrote them (``earlier``). A section of RESULTS.md shows only its run's files and
names the others with their run. ``stages.json`` is rewritten atomically under a lock (``--out/.work/stages.lock``),
so ``--only`` runs of different stages may share a folder.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from benchmarks.console import output_may_vanish
from benchmarks.machine import COMMIT_ENV, machine_info, thread_settings
from benchmarks.publish import ROOT, shown_path
from benchmarks.publish import TEXT_SUFFIXES as TEXT_SUFFIXES
from benchmarks.publish import WORK as WORK
from benchmarks.publish import locked as locked
from benchmarks.publish import promote as promote
from benchmarks.publish import snapshot as snapshot
from benchmarks.publish import update_record as update_record
from benchmarks.publish import written_since as written_since
from benchmarks.report import MACHINE_REMEDY, STAGES_REMEDY, RecordError, load_record, write_atomic, write_results
from benchmarks.stage_run import LOAD_LIMIT as LOAD_LIMIT
from benchmarks.stage_run import QUIET_WAIT_S as QUIET_WAIT_S
from benchmarks.stage_run import Run, StageInterrupted, run_stage
from benchmarks.stages import ADAPT as ADAPT
from benchmarks.stages import EVALUATE as EVALUATE
from benchmarks.stages import GRAY_VAE_INT8 as GRAY_VAE_INT8
from benchmarks.stages import HIRISE_CONTEXT as HIRISE_CONTEXT
from benchmarks.stages import LINK as LINK
from benchmarks.stages import MSL_FULL as MSL_FULL
from benchmarks.stages import PY as PY
from benchmarks.stages import RECON_ACCEPT as RECON_ACCEPT
from benchmarks.stages import RECON_MODELS as RECON_MODELS
from benchmarks.stages import SPEED as SPEED
from benchmarks.stages import STAGES
from benchmarks.stages import XCHECK as XCHECK
from benchmarks.stages import XCHECK_GREY as XCHECK_GREY
from benchmarks.stages import ZOO_ART as ZOO_ART
from benchmarks.stages import Stage as Stage
from edgeae.data import find_data_root

KEY_VERSIONS = ("numpy", "torch", "onnxruntime", "ai-edge-litert")
"""Versions each stage records beside its machine (machine.json has every package, for the last run only)."""

DEFAULT_OUT = ROOT / "benchmarks" / "results"


def _out_folder(ap: argparse.ArgumentParser, out: Path, report_only: bool) -> None:
    """Refuse an --out that is a file, cannot be created, or (``report_only``) holds nothing to report."""
    if out.exists() and not out.is_dir():
        ap.error(f"--out {out} is a file, not a folder")
    if report_only:
        if not (out / "stages.json").is_file():
            ap.error(f"--out {out} holds no stages.json: nothing to report (run a stage into it first)")
        return
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        ap.error(f"--out {out}: cannot create the folder: {e.strerror or e}")


def unwritable(folder: Path) -> str | None:
    """Why a file cannot be created in ``folder`` (a probe file, removed at once), or None when it can."""
    probe = folder / f".write-probe-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except OSError as e:
        return e.strerror or str(e)
    os.close(fd)
    probe.unlink(missing_ok=True)
    return None


def _epilog() -> str:
    """The stages, each with its title and the wall time of its last recorded run (benchmarks/results/stages.json)."""
    try:
        recorded = load_record(DEFAULT_OUT / "stages.json", STAGES_REMEDY)
    except RecordError:  # absent or unreadable: the list without times
        recorded = {}
    lines = ["stages (timed: waits for a quiet machine; [the size and wall time of the stage's last recorded run, "
             "from benchmarks/results/stages.json]):"]  # fmt: skip
    for name, stage in STAGES.items():
        rec = recorded.get(name) or {}
        took = f"{rec.get('size')} {rec['seconds']:.0f} s" if isinstance(rec.get("seconds"), int | float) else "no run"
        lines.append(f"  {name:<16}{'timed' if stage.timed else '':<7}{stage.title} [{took}]")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=(__doc__ or "").splitlines()[0],
                                 epilog=_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--full", action="store_true", help="full sizes (slow); replaces full-size results")
    ap.add_argument("--only", nargs="+", choices=sorted(STAGES), metavar="STAGE",
                    help="run only these stages (listed below; a name given twice runs once)")  # fmt: skip
    ap.add_argument("--out", type=Path, default=None,
                    help="folder of the stage outputs, stages.json and machine.json (default: this repository's "
                    "benchmarks/results, whose page is benchmarks/RESULTS.md; any other folder gets its own "
                    "RESULTS.md)")  # fmt: skip
    ap.add_argument("--report-only", action="store_true", help="only rebuild RESULTS.md from --out (runs nothing)")
    return ap


def _failed_before(status: dict[str, Any], names: list[str]) -> list[str]:
    """Stages not run by this command whose record says their last run failed."""
    return [n for n, s in status.items() if n not in names and (s.get("returncode") or s.get("last_failure"))]


def main(argv: list[str] | None = None) -> int:
    """The command; SIGTERM (``timeout``, ``kill``, a CI job's cancel) stops it as Ctrl-C does: the running stage's
    command gets SIGINT, nothing of that stage is published, status 130 (until session 38 the command was left
    running, orphaned). A SIGTERM the caller set to be ignored stays ignored (the installer every ``edgeae``
    command shares, :func:`edgeae.firmware_sim.cli_preflight._sigterm_as_ctrl_c`). SIGHUP stops it the same way
    (the same installer). Each of them, Ctrl-C too, is recorded as well as raised, and the record is what counts: a
    stop lost inside a library (``import torch`` sometimes swallows it) still stops the run before the next stage,
    the next command of a stage and any publishing (until session 38 such a run published its stage and exited 0;
    until session 39 a lost Ctrl-C still did: only SIGTERM and SIGHUP were recorded). Ctrl-C's recorder is the first
    thing main installs; a SIGINT the caller set to be ignored (a background shell's) stays ignored.
    Its terminal going away (closed, or the reader of its pipe gone) does not end it: its output goes nowhere from
    then on (:mod:`benchmarks.console`; until session 39 the next line it wrote ended it with a traceback, status 1,
    even after it had stopped a stage for a SIGHUP), and it exits with the status it meant to."""
    from edgeae.firmware_sim import cli_preflight  # the standard library only

    received: list[str] = []  # "SIGINT" / "SIGTERM" / "SIGHUP" once it came: the "interrupted" lines name the last two
    # Ctrl-C first: its KeyboardInterrupt that a library swallows counts too
    restores = [cli_preflight._sigterm_as_ctrl_c(received, signum=signal.SIGINT)]
    try:
        with output_may_vanish():
            try:
                restores.append(cli_preflight._sigterm_as_ctrl_c(received))
                restores.append(cli_preflight._sigterm_as_ctrl_c(received, signum=signal.SIGHUP))
                return _main(argv, received)
            except KeyboardInterrupt:  # outside a stage (its own Ctrl-C is handled there): nothing half-written
                print(f"\ninterrupted{_how(received)}: no stage was running; published results are unchanged",
                      file=sys.stderr)  # fmt: skip
                return 130
    finally:
        for put_back in reversed(restores):
            put_back()


def _how(received: list[str]) -> str:
    """What the "interrupted" lines add: the stop signal when it was not Ctrl-C's (which needs no name)."""
    return f" ({received[0]})" if received and received[0] != "SIGINT" else ""


def _main(argv: list[str] | None, received: list[str]) -> int:
    ap = _parser()
    args = ap.parse_args(argv)
    # --report-only runs no stage: a stage choice or size would be silently ignored
    moot = [flag for flag, given in (("--only", args.only), ("--full", args.full)) if given]
    if args.report_only and moot:
        ap.error(f"--report-only runs no stage and rebuilds all of RESULTS.md: drop {' and '.join(moot)}")
    out = Path(os.path.abspath(args.out)) if args.out is not None else DEFAULT_OUT
    _out_folder(ap, out, args.report_only)
    # the published RESULTS.md is composed from the default folder only; a run into another --out (a check, a
    # scratch run) gets its own RESULTS.md there instead of overwriting the published one with partial results
    results_md = ROOT / "benchmarks" / "RESULTS.md" if out.resolve() == DEFAULT_OUT.resolve() else out / "RESULTS.md"
    for folder in dict.fromkeys([results_md.parent] if args.report_only else [out, results_md.parent]):
        why = unwritable(folder)
        if why:
            ap.error(f"cannot write into {folder} ({why}): give an --out you can write to")
    status_path = out / "stages.json"
    try:
        status = load_record(status_path, STAGES_REMEDY) if status_path.is_file() else {}
        if args.report_only and (out / "machine.json").is_file():
            load_record(out / "machine.json", MACHINE_REMEDY)
    except RecordError as e:
        ap.error(str(e))
    names = [] if args.report_only else list(dict.fromkeys(args.only or STAGES))
    outcomes: dict[str, str] = {}
    interrupted: StageInterrupted | None = None
    stopped_before: str | None = None
    run: Run | None = None
    if names:
        machine = machine_info()  # before anything is written: the commit is the checkout's as the run found it
        if received:  # a SIGTERM whose Ctrl-C ``import torch`` swallowed
            raise KeyboardInterrupt(received[0])
        # each stage keeps where it ran: machine.json is the last run's, and stages from other runs stay
        where = {k: machine[k] for k in ("date", "commit", "cpu", "logical_cores", "gpu")}
        flags = machine.get("cpu_flags") or []
        where["amx"] = "amx_tile" in flags
        where["vnni"] = "avx512_vnni" in flags or "avx_vnni" in flags  # int8 results move with it
        where["versions"] = {k: v for k, v in machine["versions"].items() if k in KEY_VERSIONS}
        where["cpu_flags"] = flags  # the SIMD level moves float results (report.simd_level)
        where["threads"] = machine.get("thread_settings") or thread_settings()
        env = {**os.environ, COMMIT_ENV: str(machine["commit"]), "PYTHONUNBUFFERED": "1"}
        data_root = find_data_root()  # the stages run in the repository: give them the folder the harness checked
        if data_root is not None:
            env["EDGEAE_DATA"] = str(Path(data_root).resolve())
        if env.get("EDGEAE_BENCH_ARTIFACTS"):  # a relative artifacts folder, as the caller meant it
            env["EDGEAE_BENCH_ARTIFACTS"] = os.path.abspath(env["EDGEAE_BENCH_ARTIFACTS"])
        run = Run(out=out, full=args.full, only=bool(args.only), where=where, env=env, received=received)
        try:
            for name in names:
                if received:  # its Ctrl-C was lost in a library: the record is what counts
                    stopped_before = name
                    break
                outcomes[name] = run_stage(run, name, STAGES[name])
                if run.stopped_after:
                    break
        except StageInterrupted as e:
            interrupted = e
        except RecordError as e:  # stages.json was damaged while this command ran
            print(f"python -m benchmarks: error: {e}", file=sys.stderr)
            return 1
        if "published" in outcomes.values():
            write_atomic(out / "machine.json", json.dumps(machine, indent=2))
    path = write_results(out, results_md, shown_path(out))
    print(f"\nwrote {shown_path(path)}")
    if interrupted is not None:
        print(f"interrupted{_how(received)} during stage {interrupted.name}: its published results and record are "
              f"unchanged (what it wrote so far is in {shown_path(interrupted.staging)})", file=sys.stderr)  # fmt: skip
        return 130
    if stopped_before is not None:
        print(f"interrupted{_how(received)} before stage {stopped_before}: it and the stages after it were not run; "
              "the stages before it are recorded as they ended", file=sys.stderr)  # fmt: skip
        return 130
    if run is not None and run.stopped_after:
        print(f"interrupted{_how(received)} while stage {run.stopped_after} was being published: it was published "
              "whole; the stages after it were not run", file=sys.stderr)  # fmt: skip
        return 130
    earlier = _failed_before(load_record(status_path, STAGES_REMEDY) if status_path.is_file() else status, names)
    if earlier:
        print(f"note: the last recorded run of {', '.join(earlier)} failed (an earlier command's; see RESULTS.md)")
    if not names:
        return 0
    count = {k: sum(v == k for v in outcomes.values()) for k in ("published", "failed", "busy", "skipped", "kept")}
    print(f"{len(names)} stage(s): {count['published']} published, {count['failed'] + count['busy']} failed, "
          f"{count['skipped']} skipped without the data, {count['kept']} kept at full size")  # fmt: skip
    failed = [n for n, o in outcomes.items() if o in ("failed", "busy")]
    if failed:
        print(f"stages that failed: {failed}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
