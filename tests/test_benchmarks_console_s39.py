"""python -m benchmarks whose stdout pipe loses its reader after the stage was published, before the harness's last
lines (review r1 of session 39): with Python's usual block-buffered pipe (no PYTHONUNBUFFERED) those lines were
still in the buffer when ``output_may_vanish`` handed the streams back, and the interpreter's final flush turned a
good run into exit 120 with a BrokenPipeError message. The buffers are now flushed while a vanished reader is
still absorbed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DRIVER = textwrap.dedent("""
    import sys
    import benchmarks.__main__ as bm
    from benchmarks.stages import PY, Stage
    fake = {"date": "2026-12-08T00:00:00+00:00", "commit": "abc1234", "cpu": "Test CPU", "logical_cores": 2,
            "gpu": None, "cpu_flags": [], "versions": {}}
    bm.machine_info = lambda: fake
    code = ("import sys, pathlib; p = pathlib.Path(sys.argv[1]); p.mkdir(parents=True, exist_ok=True); "
            "(p / 'results.md').write_text('| t |'); print('stage done')")
    cmd = (PY, "-c", code, "{out}")
    bm.STAGES = {"demo": Stage("Demo stage", (cmd,), (cmd,))}
    sys.exit(bm.main(["--only", "demo", "--out", sys.argv[1]]))
""")


def test_a_reader_gone_after_publishing_leaves_status_0(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # a user's shell: block-buffered pipe
    env.update(PYTHONPATH=str(ROOT), OMP_WAIT_POLICY="PASSIVE")
    out = tmp_path / "out"
    h = subprocess.Popen([sys.executable, "-c", DRIVER, str(out)], cwd=tmp_path, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    assert h.stdout is not None and h.stderr is not None
    for line in h.stdout:
        if b"published" in line:
            break
    h.stdout.close()  # the reader goes away (a `| head`, a closed viewer)
    err = h.stderr.read().decode()
    assert h.wait(timeout=60) == 0, err
    assert "BrokenPipeError" not in err
    assert (out / "demo" / "results.md").is_file()
