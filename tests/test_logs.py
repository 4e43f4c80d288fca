"""Quiet by default: third-party warnings and logs are captured unless -v, and the state is restored after."""

from __future__ import annotations

import logging
import os
import warnings

import pytest

from edgeae import logs


def test_session_hides_third_party_and_restores(capsys: pytest.CaptureFixture[str]) -> None:
    before = (logging.getLogger().level, list(logging.getLogger().handlers), logging.getLogger("torch").level)
    with logs.session(verbose=False):
        logging.getLogger("numexpr.utils").warning("third-party chatter")
        logging.getLogger("edgeae.x").info("edgeae info")
        logging.getLogger("edgeae.x").warning("edgeae warning")
        warnings.warn("a FutureWarning from a library", FutureWarning, stacklevel=1)
        assert os.environ.get("TF_CPP_MIN_LOG_LEVEL") and os.environ.get("TORCH_LOGS")
    err = capsys.readouterr().err
    assert "third-party chatter" not in err and "FutureWarning" not in err and "edgeae info" not in err
    assert "warning: edgeae warning" in err
    after = (logging.getLogger().level, list(logging.getLogger().handlers), logging.getLogger("torch").level)
    assert after == before


def test_verbose_shows_everything(capsys: pytest.CaptureFixture[str]) -> None:
    with logs.session(verbose=True):
        logging.getLogger("numexpr.utils").warning("third-party chatter")
        logging.getLogger("edgeae.x").debug("edgeae detail")
        logging.getLogger("matplotlib.font_manager").debug("findfont: score 10.05")  # thousands per training run
    err = capsys.readouterr().err
    assert "third-party chatter" in err and "edgeae detail" in err and "findfont" not in err
    assert logging.getLogger("matplotlib.font_manager").level == logging.NOTSET  # restored after


def test_native_stderr_is_captured(capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    with logs.native_stderr_to_log():
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
    assert "XNNPACK" not in capfd.readouterr().err
    with caplog.at_level(logging.DEBUG, logger="edgeae.native"), logs.native_stderr_to_log():
        os.write(2, b"shown with -v\n")
    assert "shown with -v" in capfd.readouterr().err  # DEBUG enabled: passed through


def test_native_stderr_blocks_of_several_threads_leave_fd2_where_it_was() -> None:
    """Overlapping blocks in two threads (scoring threads each making an interpreter) share one redirection:
    afterwards fd 2 is the process's stderr again (it was once left on a closed temporary file, and every later
    error message was lost)."""
    import threading

    before = os.fstat(2)
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()

    def first() -> None:
        with logs.native_stderr_to_log():
            a_in.set()
            b_in.wait(5)
        a_out.set()  # the first to enter leaves first

    def second() -> None:
        a_in.wait(5)
        with logs.native_stderr_to_log():
            b_in.set()
            a_out.wait(5)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    after = os.fstat(2)
    assert (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino)
