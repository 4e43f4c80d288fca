"""How ``firmware-sim run`` ends once every frame was taken: its status, and its last line on stderr when that is
not 0 (a signal at the end of the run, every frame dropped). The run itself is in :mod:`.cli`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .cli_dispatch import EXIT_INTERRUPTED
from .cli_outputs import DROP_HINTS, _reasons, report_interrupted, say

EXIT_ALL_DROPPED = 1


def run_status(summary: dict[str, Any], out: str, not_written: dict[str, str], *, early: bool, held: list[str]) -> int:
    """The status of a run that took every frame, and its last line on stderr when it is not 0: a signal before or
    while report.html was written (``early``: before), one while the console summary printed (``held``: once the
    page and summary.json were written), or every frame dropped."""
    f = summary["frames"]
    dropped = bool(f["acquired"] and f["dropped"] == f["acquired"])
    if dropped:
        hints = [DROP_HINTS[k] for k in f.get("drop_reasons") or {} if k in DROP_HINTS]
        hint = f" ({'; '.join(hints)})" if hints else ""
        say(f"firmware-sim: every frame was dropped ({_reasons(f)}); nothing to downlink{hint}", err=True)
    stopped = report_interrupted(not_written)
    if stopped is not None:  # the page alone is missing (its WARNING said what writes it)
        say(
            f"firmware-sim: {stopped} {'before' if early else 'while'} report.html was written, after every frame of "
            f"this run; state kept in {out}: firmware-sim report {out} writes the page (the same command does too; "
            "no frame is taken again)",
            err=True,
        )
        return EXIT_INTERRUPTED
    if held:  # the outputs were written before it came: said, and 130 as for any signal before the run's end
        by = " by SIGTERM" if held[0] == "SIGTERM" else ""
        files = [n for n in ("summary.json", "report.html") if str(Path(out) / n) not in not_written]
        written = (
            f"{' and '.join(files)} {'are' if len(files) > 1 else 'is'} written in {out}"
            if files
            else f"summary.json and report.html could not be written in {out} (the WARNINGs above say what writes them)"
        )
        say(
            f"firmware-sim: interrupted{by} as the run ended, after every frame of this run; {written} (the same "
            "command takes no frame again)",
            err=True,
        )
        return EXIT_INTERRUPTED
    return EXIT_ALL_DROPPED if dropped else 0
