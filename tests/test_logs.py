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
