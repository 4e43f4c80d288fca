"""One ``printable`` for every writer (edgeae.printable): pages, JSON, console lines and the CLI's error lines."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from edgeae.printable import printable


def test_printable_escapes_only_what_utf8_cannot_hold() -> None:
    name = os.fsdecode(b"t\xff\xfe.png")
    assert printable(name) == "t\\xff\\xfe.png"
    assert printable("\ud800 ok é") == "\\ud800 ok é"  # a lone surrogate that no file name gives
    assert printable("plain <b> & é") == "plain <b> & é"  # escaping for HTML is the page's job


def test_the_demo_and_the_flight_report_share_it() -> None:
    from edgeae.firmware_sim import report_html

    from edgeae import report

    assert report.printable is printable and report_html.printable is printable


def test_an_error_line_naming_a_non_utf8_file_shows_its_bytes(tmp_path: Path) -> None:
    """A missing image whose name is not UTF-8: the one-line error shows ``\\xff`` (was ``\\udcff``), and a strict
    UTF-8 stderr takes it."""
    missing = os.fsdecode(os.fsencode(str(tmp_path)) + b"/t\xff.png")
    code = "import sys\nfrom edgeae.cli import main\nsys.exit(main(['reconstruct', sys.argv[1], '-o', sys.argv[2]]))"
    env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict"}
    proc = subprocess.run(
        [sys.executable, "-c", code, os.fsencode(missing), str(tmp_path / "out.png")],
        capture_output=True,
        env=env,
        timeout=120,
    )
    err = proc.stderr.decode("utf-8")  # strict: the line is valid UTF-8
    assert proc.returncode == 2, err
    assert "t\\xff.png" in err and "\\udcff" not in err and "Traceback" not in err
