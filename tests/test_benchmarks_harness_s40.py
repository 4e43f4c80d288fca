"""Session 40 (review r1 of session 39, cosmetic): a stage command that leaves many processes behind gets one short
note in the stage record: the first few named, the rest counted (each was named before, without bound)."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import pytest

from benchmarks import stage_command as sc

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="naming leftovers needs /proc")


def test_twelve_leftovers_give_one_note_naming_the_first_eight(tmp_path: Path) -> None:
    code = (
        "import subprocess, sys\n"
        "for _ in range(12):\n"
        "    subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], stdout=subprocess.DEVNULL)\n"
    )
    notes: list[str] = []
    log = io.BytesIO()
    rc = sc.run_command([sys.executable, "-c", code], log, dict(os.environ), notes)
    assert rc == 0 and len(notes) == 1, notes
    note = notes[0]
    assert note.startswith("killed what the command left running in its process group when it ended: pid ")
    assert note.count("pid ") == sc.MOST_NAMED and note.endswith(f" and {12 - sc.MOST_NAMED} more"), note
    assert len(note) < 120 + sc.MOST_NAMED * 100


def test_a_few_leftovers_are_all_named() -> None:
    assert sc._listed([]) == ""
    me = os.getpid()
    assert sc._listed([me]).startswith(f"pid {me}") and " more" not in sc._listed([me] * sc.MOST_NAMED)
