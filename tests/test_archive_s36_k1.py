"""The archive reader's notes with a product path that is not UTF-8 (fixer k1, session 36): logged ``z\\xfe.cub`` as
the rest of the console names it (``edgeae.printable``), not ``z\\udcfe.cub``."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest


def test_a_product_note_names_a_path_that_is_not_utf8_escaped(caplog: pytest.LogCaptureFixture) -> None:
    from edgeae.archive import reader

    path = Path(os.fsdecode(b"/arc/z\xfe.cub"))
    with caplog.at_level(logging.WARNING):
        reader._warn_once(path, "no map projection in its label")
        reader._warn_once(path, "no map projection in its label")  # once a process
    assert [r.getMessage() for r in caplog.records] == ["/arc/z\\xfe.cub: no map projection in its label"]
    assert all(r.getMessage().encode("utf-8") for r in caplog.records)  # strict UTF-8 takes it
