"""A training run's clock leaves a signal the caller ignores ignored (a background job's SIGINT, `trap '' TERM`)."""

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


def test_ground_serve_names_sigterm_in_its_interrupted_line(tmp_path) -> None:
    """`ground serve` stopped by SIGTERM said only "interrupted" (review r2, session 38); stream.json named it."""
    from edgeae.cli.ground_output import serve_stop

    line, code = serve_stop({"stopped": "interrupted"}, 10, 600, tmp_path, "SIGTERM")
    assert line.startswith("interrupted (SIGTERM): everything received so far") and code == 130
    line, _ = serve_stop({"stopped": "interrupted"}, 10, 600, tmp_path, "SIGINT")
    assert line.startswith("interrupted: everything received so far")
    line, _ = serve_stop({"stopped": "interrupted", "reception_stopped": "idle_timeout"}, 10, 600, tmp_path, "SIGTERM")
    assert line.startswith("interrupted (SIGTERM) during the final decode")
