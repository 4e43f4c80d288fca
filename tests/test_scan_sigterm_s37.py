"""edgeae scan and an inherited, ignored SIGTERM (review s37 r8 #3): the caller's ``trap '' TERM`` stays in force
while the scan runs, as in firmware-sim; otherwise SIGTERM ends the scan as Ctrl-C does."""

from __future__ import annotations

import signal

import pytest

from edgeae.cli.scan import _sigterm_as_interrupt


def test_an_ignored_sigterm_stays_ignored() -> None:
    before = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        restore = _sigterm_as_interrupt()
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
        restore()
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, before)


def test_a_default_sigterm_becomes_an_interrupt() -> None:
    before = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        restore = _sigterm_as_interrupt()
        handler = signal.getsignal(signal.SIGTERM)
        assert callable(handler)
        with pytest.raises(KeyboardInterrupt):
            handler(signal.SIGTERM, None)  # type: ignore[operator]
        restore()
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    finally:
        signal.signal(signal.SIGTERM, before)
