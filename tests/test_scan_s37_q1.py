"""Session 37 fixer q1: archive scan and score items of the audits (a missing [archive] extra refused up front and an
older run's missing-dependency failures taken again; a symbolic link loop recorded as failed; Ctrl-C without the
workers' tracebacks; an unwritable stderr that does not lose score's CSV; "no valid pixel" for all-no-data products;
the synthetic archive's usage errors; a streamed bomb's declared patches not counted)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeae.scan.synth import main as synth_main


def test_synth_too_few_files_is_a_usage_error_not_a_traceback(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    # python -m edgeae.scan.synth --out a --n 2 ended in build_archive's ValueError traceback
    with pytest.raises(SystemExit) as exc:
        synth_main(["--out", str(tmp_path / "a"), "--n", "2"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "error: --n 2 must be more than --huge + --corrupt = 6" in err and "Traceback" not in err
    assert not (tmp_path / "a").exists()
    with pytest.raises(SystemExit) as exc:
        synth_main(["--out", str(tmp_path / "a"), "--huge", "-1"])
    assert exc.value.code == 2 and "--huge and --corrupt must be 0 or more" in capsys.readouterr().err
