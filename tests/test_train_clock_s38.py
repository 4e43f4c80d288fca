"""A training run's clock leaves a signal the caller ignores ignored (nohup, a background shell's SIGINT)."""

from __future__ import annotations

import os
import signal

from edgeae.train.run_clock import Deadline


def test_an_ignored_sigterm_stays_ignored_while_training_and_a_handled_one_stops_the_run() -> None:
    old = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        d = Deadline(None)
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
        os.kill(os.getpid(), signal.SIGTERM)  # ignored: the run goes on
        assert not d.expired
        d.close()
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        d = Deadline(None)
        os.kill(os.getpid(), signal.SIGTERM)
        assert d.expired and d.cause == "SIGTERM"
        d.close()
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGTERM, old)


def test_an_ignored_sigint_stays_ignored_while_training() -> None:
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        d = Deadline(None)
        os.kill(os.getpid(), signal.SIGINT)
        assert not d.expired and signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        d.close()
    finally:
        signal.signal(signal.SIGINT, old)
