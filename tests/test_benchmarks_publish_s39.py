"""benchmarks.publish.sigint_deferred (review r1 #3 of session 39): a SIGINT the caller ignores (a background shell)
stays ignored while a stage is published; until then it was held back and handed on as a stop."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHILD = """
import os, signal, sys
sys.path.insert(0, sys.argv[1])
from benchmarks.publish import sigint_deferred
signal.signal(signal.SIGINT, signal.SIG_IGN)
with sigint_deferred() as got:
    os.kill(os.getpid(), signal.SIGINT)
print("got", got, "still ignored", signal.getsignal(signal.SIGINT) is signal.SIG_IGN)
"""


def test_an_ignored_sigint_stays_ignored_while_publishing() -> None:
    out = subprocess.run([sys.executable, "-c", CHILD, str(ROOT)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "got [] still ignored True"


def test_a_sigint_that_is_not_ignored_is_still_held_and_recorded() -> None:
    child = CHILD.replace("signal.signal(signal.SIGINT, signal.SIG_IGN)\n", "")
    out = subprocess.run([sys.executable, "-c", child, str(ROOT)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith("got [2]")
