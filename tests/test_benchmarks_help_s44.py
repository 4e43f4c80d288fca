"""Every benchmark script's ``--help`` prints and exits 0: ``python -m benchmarks.tiled_j2k_choice --help`` crashed
(argparse read the '%' of a link name such as 'loss 20%' in its help text as a format directive) from session 43, when
its links became the link stage's, until session 44."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

import benchmarks


def _scripts() -> list[str]:
    """Benchmark modules that parse arguments and have a ``main``: found from their sources, so collecting this file
    imports none of them (each test imports its own)."""
    folder = Path(benchmarks.__path__[0])
    names = []
    for info in pkgutil.iter_modules(benchmarks.__path__):
        path = folder / f"{info.name}.py"
        text = path.read_text() if path.is_file() else ""
        if "ArgumentParser(" in text and "\ndef main(" in text:
            names.append(info.name)
    return names


SCRIPTS = _scripts()


def test_every_argparse_script_has_a_main_taking_argv() -> None:
    assert len(SCRIPTS) >= 40 and "tiled_j2k_choice" in SCRIPTS
    for name in SCRIPTS:
        main = importlib.import_module(f"benchmarks.{name}").main
        assert inspect.signature(main).parameters, f"benchmarks.{name}.main takes no argv"


@pytest.mark.parametrize("name", SCRIPTS)
def test_help_prints_and_exits_0(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    main = importlib.import_module(f"benchmarks.{name}").main
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code in (0, None)
    assert "usage:" in capsys.readouterr().out
