"""What a training run records about each of its invocations (``metrics.json``'s ``segments``) and says about
the time it has left, and the settings its artifacts record (:func:`hyper_parameters`). Used by the CAE
(:mod:`edgeae.train.cae`) and VAE (:mod:`edgeae.train.vae`) trainers.

A segment is one start or resumption: where it started (epoch, batch, time), the machine's settings it trained
with (``device``, ``threads``, ``precision`` ``bf16`` or ``fp32``: decided again on each machine) and the
``command`` that ran it; when it ends, where (``end_epoch``, ``end_batch``: a position, as ``start_epoch`` and
``start_batch``, the 1-based epoch in progress and the batches of it done, so a run of 3 epochs ends at epoch 4, batch
0; ``epochs_completed``: the whole epochs done by then), when (``ended``) and why (``end``:
``epochs_done``, ``early_stop``, ``budget``, ``SIGINT`` or ``SIGTERM``; ``stop``: the stop in words, None when it
was not one). A segment without ``ended`` was killed (SIGKILL, out of memory, a power cut) before it could say.
"""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Sequence
from typing import Any


def command_line(argv: Sequence[str] | None = None) -> str:
    """The command as the user typed it: ``edgeae ARGS`` for the command line's ``argv`` (without the program),
    else this process's ``sys.argv``."""
    if argv is not None:
        return shlex.join(["edgeae", *argv])
    return shlex.join(sys.argv)


def start_segment(state: Any, device: Any, bf16: bool, threads: int, command: str | None) -> None:
    """Append this invocation's segment to ``state.segments``."""
    state.segments.append(
        {
            "start_epoch": state.epoch,
            "start_batch": state.batch,
            "started": time.time(),
            "device": str(device),
            "threads": int(threads),
            "precision": "bf16" if bf16 else "fp32",
            "command": command if command is not None else command_line(),
        }
    )


def end_segment(state: Any, stopped: str | None, cause: str | None) -> None:
    """Record where and why this invocation's segment ended (``cause``: the stop's, None when it was none)."""
    end = cause or ("early_stop" if state.early_stop else "epochs_done")
    state.segments[-1].update(
        end_epoch=state.epoch, end_batch=state.batch, epochs_completed=state.epochs_done, ended=time.time(),
        stop=stopped, end=end,
    )  # fmt: skip


def first_command(segments: Sequence[dict[str, Any]]) -> str | None:
    """The command that started the run (its first segment's; None for a run started before it was recorded):
    ``metrics.json``'s ``command``, which the zoo entry of an installed run shows."""
    command = segments[0].get("command") if segments else None
    return command if isinstance(command, str) else None


def resume_commands(segments: Sequence[dict[str, Any]]) -> list[str]:
    """The commands that resumed the run, in order (every segment's after the first, where recorded):
    ``metrics.json``'s ``resume_commands`` next to ``command``, so that a run started with ``--epochs 50`` and resumed
    with ``--epochs 17`` says both (until session 38 only the first was recorded)."""
    return [c for seg in segments[1:] if isinstance(c := seg.get("command"), str) and c]


def recorded_resume_commands(metrics: dict[str, Any]) -> list[str]:
    """The commands that resumed the run whose ``metrics`` (``metrics.json``, a checkpoint's metrics) are given: its
    ``resume_commands`` (since session 38), else those its ``segments`` record after the first (a run trained
    before); none recorded, none. The one reading the export's ``training_resume_commands`` and the zoo entry use."""
    found = metrics.get("resume_commands")
    if isinstance(found, list):
        return [c for c in found if isinstance(c, str) and c]
    segments = metrics.get("segments")
    return resume_commands([s for s in segments if isinstance(s, dict)]) if isinstance(segments, list) else []


def hyper_parameters(
    config: dict[str, Any], channels: int | None = None, epochs_trained: int | None = None
) -> dict[str, Any]:
    """The settings of a run's ``config`` (its ``config.json``) that shape what it learns: all but those a resume may
    change without changing that (:data:`edgeae.train.resume.RESUMABLE_CHANGES` but ``epochs``: threads, device,
    paths, time budget, progress, zoo). ``epochs`` is the run's last ``--epochs`` (a resume may raise it: the cosine
    schedule stretches to it); ``epochs_trained``, where given, the whole epochs it trained over all its invocations;
    ``channels``, where given, the channels it trained on (the config's is None when the images decided it)."""
    from edgeae.train.resume import RESUMABLE_CHANGES

    out = {k: v for k, v in config.items() if k == "epochs" or k not in RESUMABLE_CHANGES}
    if channels is not None:
        out["channels"] = int(channels)
    if epochs_trained is not None:
        out["epochs_trained"] = int(epochs_trained)
    return out


def time_left(epochs_left: int, epoch_seconds: Sequence[float], budget_left: float | None = None) -> str:
    """``"  about 1h05m left"``: the whole run's remaining time, ``epochs_left`` × the mean of ``epoch_seconds``
    (empty when nothing is left or no epoch was timed). Where the time budget stops this invocation first
    (``budget_left``: its seconds left, None without a budget), it says when: ``"  about 1h05m left; the time budget
    stops it in 20m00s"`` (``now`` once what is left rounds to 0s)."""
    if epochs_left <= 0 or not epoch_seconds:
        return ""
    run = epochs_left * sum(epoch_seconds) / len(epoch_seconds)
    text = f"  about {duration(run)} left"
    if budget_left is not None and budget_left < run:
        text += f"; the time budget stops it {f'in {duration(budget_left)}' if round(budget_left) > 0 else 'now'}"
    return text


def duration(seconds: float) -> str:
    """``45s``, ``12m30s``, ``3h05m``."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"
