"""Every benchmark script's ``--help`` prints and exits 0: ``python -m benchmarks.tiled_j2k_choice --help`` crashed
(argparse read the '%' of a link name such as 'loss 20%' in its help text as a format directive) from session 43, when
its links became the link stage's, until session 44."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import benchmarks


def _scripts() -> list[str]:
    names = []
    for info in pkgutil.iter_modules(benchmarks.__path__):
        mod = importlib.import_module(f"benchmarks.{info.name}")
        main = getattr(mod, "main", None)
        if callable(main) and "ArgumentParser(" in inspect.getsource(mod):
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
