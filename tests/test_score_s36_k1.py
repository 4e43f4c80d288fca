"""``edgeae score`` and the archive reader with a file name that is not UTF-8 (legal on Linux; fixer k1, session 36):
the console, a strict UTF-8 one too, names it ``x\\xfe.png`` (it printed the name raw: ``UnicodeEncodeError`` on a
strict stdout after the CSV was written, ``x\\udcfe.png`` on stderr)."""

from __future__ import annotations

import io
import logging
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from test_scan_support import tiny_cae

BAD = os.fsdecode(b"x\xfe.png")


def test_score_names_a_file_that_is_not_utf8_escaped_on_the_console(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from edgeae.cli import main
    from edgeae.imageio import write_image

    model = tiny_cae(tmp_path / "tiny.pt")
    try:
        write_image(tmp_path / BAD, np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8))
        write_image(tmp_path / os.fsdecode(b"d\xfe.png"), np.zeros((64, 64), np.uint8))  # no patch scored: a warning
        (tmp_path / os.fsdecode(b"bad\xff.png")).write_bytes(b"not an image")
    except (OSError, UnicodeError) as exc:
        pytest.skip(f"this file system does not take a file name that is not UTF-8: {exc}")
    raw = io.BytesIO()
    strict = io.TextIOWrapper(raw, encoding="utf-8", errors="strict")
    monkeypatch.setattr(sys, "stdout", strict)
    files = [str(tmp_path / n) for n in (BAD, os.fsdecode(b"d\xfe.png"), os.fsdecode(b"bad\xff.png"))]
    out = tmp_path / "s.csv"
    with caplog.at_level(logging.WARNING):
        rc = main(["score", *files, "--model", str(model), "--patch", "32", "-o", str(out), "--no-progress"])
    assert rc == 1  # the unreadable file; the others scored
    strict.flush()
    printed = raw.getvalue().decode("utf-8")
    assert "x\\xfe.png  x=" in printed and "\\udc" not in printed
    err = capsys.readouterr().err + "\n".join(r.getMessage() for r in caplog.records)
    assert "bad\\xff.png" in err and "d\\xfe.png: no patch holds a valid pixel (dark throughout" in err  # s37 v1
    assert "\\udc" not in err and "\udcff" not in err and "\udcfe" not in err
