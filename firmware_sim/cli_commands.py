"""The small ``firmware-sim`` commands: ``bench`` (an artifact timed on this board), ``missions`` (the shipped
missions) and ``report`` (report.html of a run folder, rebuilt). ``run`` and ``check`` are in :mod:`.cli`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgeae.atomic import write_text

from .cli_outputs import say  # every console line: a name's bytes that are not UTF-8 as \xff (strict consoles)
from .mission import MissionError, load_mission


def _bench(args: argparse.Namespace) -> int:
    from .bench import (
        check_bench_args,
        check_threads,
        check_writable,
        format_table,
        run_bench,
        thread_warning,
        warning_lines,
    )

    check_bench_args(args.batch, args.iters, (args.frame_height, args.frame_width), args.keep)  # before the model

    try:
        threads = [int(t) for t in str(args.threads).split(",") if t.strip()]
    except ValueError:
        raise MissionError(f"--threads takes comma-separated whole numbers, e.g. 1,2; got {args.threads!r}") from None
    if not threads or min(threads) < 1:
        raise MissionError(f"--threads takes thread counts of at least 1, got {args.threads!r}")
    try:
        check_threads(threads)
    except ValueError as e:
        raise MissionError(str(e)) from None
    prefer = getattr(args, "prefer", None)  # --prefer tflite,onnx where the parser has it; else the flight's order
    prefer = [f.strip() for f in prefer.split(",") if f.strip()] if isinstance(prefer, str) else None
    replaces = False
    if args.json:  # before the benchmark, not after: a probe file in its folder
        problem = check_writable(args.json, "--json")
        if problem:
            raise MissionError(problem)
        replaces = Path(args.json).exists()
    warning = thread_warning(threads)
    if warning:  # said before minutes of timing, and again under the table
        say(f"WARNING: {warning}", err=True)
    result = run_bench(
        args.model,
        threads=threads,
        batch=args.batch,
        iters=args.iters,
        frame=(args.frame_height, args.frame_width),
        keep=args.keep,
        prefer=prefer,
    )
    if args.json:  # before the table: a stdout that fails (| head, > /dev/full) loses only console lines
        write_text(args.json, json.dumps(result, indent=2) + "\n")  # atomically: no half file on a full disk
    say(format_table(result))
    for line in warning_lines(result):  # under the table, on stderr (the table alone on stdout)
        say(line, err=True)
    if args.json:
        say(f"JSON: {args.json}" + (" (replaced the file that was there)" if replaces else ""))
    return 0


def _missions(args: argparse.Namespace) -> int:
    import textwrap

    from edgeae.resolve import preset_summary, presets

    from .mission import MISSIONS_DIR

    found = presets(MISSIONS_DIR)
    if getattr(args, "json", False):  # every setting of every shipped mission, for scripts (as edgeae links --json)
        import dataclasses
        import json

        doc = {
            name: {"file": str(path), "summary": preset_summary(path), **dataclasses.asdict(load_mission(path))}
            for name, path in found.items()
        }
        print(json.dumps(doc, indent=2, default=str))
        return 0
    width = max(map(len, found), default=4)
    for name, path in found.items():
        m = load_mission(path)
        cam = m.camera
        size = f"{cam.height}x{cam.width}" if cam.height and cam.width else "any size"
        head = f"{name:<{width}}  {size:>11} x{cam.channels}  "
        first = preset_summary(path).replace("`", "").split(". ")[0].rstrip(".") + "."
        say(textwrap.fill(first, 100, initial_indent=head, subsequent_indent=" " * len(head)))
    say(f"(frame sizes in px, height x width, as [camera] gives them; in {MISSIONS_DIR}; pass a name or a TOML "
          "path to --mission)")  # fmt: skip
    return 0


def _report(args: argparse.Namespace) -> int:
    """``firmware-sim report OUT``: the page written again, holding the folder (:mod:`edgeae.folder_lock`) so that it
    may remove the gallery images no longer shown; a run holding it refuses this in one line (its own report is
    written when its boot ends). Until review r7 of session 36 it held nothing and pruned anyway, so beside a running
    mission it deleted images the run's page, written last, showed; until review r13 it read the summary before
    taking the folder, so a run ending in between had its page replaced by one of the summary read while it ran."""
    from edgeae.folder_lock import FolderBusy, hold

    from .report import load_summary, write_report
    from .report_inputs import check_run_folder

    out = Path(args.out)
    check_run_folder(out)  # in one line, before the lock file is made there
    try:
        with hold(out, "firmware-sim report") as lock:  # None: a file system without locks (a warning said so)
            summary, notes = load_summary(out)  # inside: read before, a run ending meanwhile lost its page
            page = write_report(out, summary, prune=lock is not None)
    except FolderBusy as busy:
        text = str(busy).split(": wait for it")[0]
        raise MissionError(
            f"{text}: a run writes report.html when its boot ends; run firmware-sim report {out} after it"
        ) from None
    say(f"report: {page}")  # a name's bytes that are not UTF-8 as \xff: a strict console
    for note in notes:  # stopped plain print with UnicodeEncodeError once the page was written (until session 36)
        say(f"  {note}")
    return 0
