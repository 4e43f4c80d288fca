"""The clock of a training run: the time budget and the signals that stop it (:class:`Deadline`), the exit status
of a command whose run stopped (:func:`stop_exit_status`) and the mid-epoch saves of ``last.pt`` (:class:`Autosave`).

Standard library only: ``edgeae train --help`` imports it (through :mod:`edgeae.train.resume`, which re-exports
these names) and stays fast.
"""

from __future__ import annotations

import contextlib
import re
import signal
import time
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgeae.train.resume import TrainState

# exit statuses of a training command whose run stopped before it was complete (continue with --resume)
EXIT_BUDGET = 75  # EX_TEMPFAIL: the time budget ran out; try again later
EXIT_SIGINT = 130  # 128 + SIGINT, as a shell reports a process killed by it
EXIT_SIGTERM = 143  # 128 + SIGTERM


CHECKPOINT_EVERY_S = 600.0  # mid-epoch last.pt at most this far apart


class Autosave:
    """The training clock and mid-epoch saves of one run, shared by both trainers: the time spent training
    goes into ``state.seconds`` and ``save()`` (which writes ``last.pt``) runs at most ``every_s`` apart."""

    def __init__(self, state: TrainState, save: Callable[[], object], every_s: float = CHECKPOINT_EVERY_S) -> None:
        self.state, self._save, self.every_s = state, save, every_s
        self._last = time.monotonic()
        self._t0 = time.perf_counter()

    def start_epoch(self) -> None:
        self._t0 = time.perf_counter()

    def bank_time(self) -> None:
        """Add the training time since the last call (or the epoch's start) to ``state.seconds``."""
        now = time.perf_counter()
        self.state.seconds += now - self._t0
        self._t0 = now

    def batch_done(self) -> None:
        if time.monotonic() - self._last > self.every_s:
            self.bank_time()
            self.save_now()

    def save_now(self) -> None:
        self._save()
        self._last = time.monotonic()


def stop_exit_status(stop: str | None) -> int:
    """The exit status of a training command whose run stopped for ``stop`` (``"budget"``, ``"SIGINT"``,
    ``"SIGTERM"``; None = not stopped): 0, :data:`EXIT_BUDGET`, :data:`EXIT_SIGINT` or :data:`EXIT_SIGTERM`."""
    if stop is None:
        return 0
    return {"SIGINT": EXIT_SIGINT, "SIGTERM": EXIT_SIGTERM}.get(stop, EXIT_BUDGET)


def parse_duration(text: str | float | int | None) -> float | None:
    """``"90m"``, ``"2h"``, ``"1h30m"``, ``"45s"`` or plain seconds -> seconds; None, "" or ``"none"`` -> None (no
    limit: what ``--resume RUN --time-budget none`` gives a run that had one)."""
    if text is None or text == "" or (isinstance(text, str) and text.strip().lower() == "none"):
        return None
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        t = text.strip().lower()
        if re.fullmatch(r"\d+(\.\d+)?", t):
            seconds = float(t)
        else:
            parts = re.findall(r"(\d+(?:\.\d+)?)\s*([hms])", t)
            if not parts or "".join(f"{a}{b}" for a, b in parts) != t.replace(" ", ""):
                raise ValueError(f"time budget {text!r}: expected e.g. 90m, 2h, 1h30m, 45s or seconds")
            seconds = sum(float(a) * {"h": 3600.0, "m": 60.0, "s": 1.0}[b] for a, b in parts)
    if not seconds > 0:
        raise ValueError(f"time budget must be positive, got {text!r}")
    return seconds


class Deadline:
    """Wall-clock budget plus SIGINT/SIGTERM: ``expired`` turns True once either happens."""

    def __init__(self, budget_s: float | None, handle_signals: bool = True) -> None:
        self.start = time.monotonic()
        self.budget_s = budget_s
        self.signal: str | None = None
        self._old: dict[int, Any] = {}
        if handle_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                if signal.getsignal(sig) is signal.SIG_IGN:
                    continue  # the caller ignores it (a background job's SIGINT, trap '' TERM): it stays ignored
                with contextlib.suppress(ValueError):  # not the main thread: budget only
                    self._old[sig] = signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.signal = signal.Signals(signum).name

    @property
    def expired(self) -> bool:
        if self.signal is not None:
            return True
        return self.budget_s is not None and time.monotonic() - self.start >= self.budget_s

    @property
    def left(self) -> float | None:
        """Seconds until the budget runs out (0 once it has; None without a budget)."""
        if self.budget_s is None:
            return None
        return max(0.0, self.budget_s - (time.monotonic() - self.start))

    @property
    def reason(self) -> str:
        if self.signal is not None:
            return f"stopped by {self.signal}"
        budget = self.budget_s or 0.0
        return f"time budget of {budget:.0f} s reached" if budget >= 10 else f"time budget of {budget:.2g} s reached"

    @property
    def cause(self) -> str:
        """What stopped the run, for :func:`stop_exit_status`: the signal's name, else ``"budget"``."""
        return self.signal if self.signal is not None else "budget"

    def close(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()
