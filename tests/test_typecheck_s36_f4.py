"""scripts/typecheck.sh type-checks benchmarks/ as well as the installed edgeae package, in one mypy run.

mypy itself is replaced by a stub (the script's MYPY variable) that records its arguments and the tree it was
run in, so the test is fast; the real check is `bash scripts/typecheck.sh`. The tree's mypy cache is kept between
runs (the check takes seconds when little changed), its sources are copied afresh."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], set[str]]:
    if shutil.which("bash") is None:
        pytest.skip("bash not found")
    tmp = tmp_path_factory.mktemp("typecheck")
    stub = tmp / "mypy"
    stub.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@" > "$RECORD/args"\nfind . -type f > "$RECORD/files"\n')
    stub.chmod(0o755)
    (tmp / "tree" / "benchmarks").mkdir(parents=True)
    (tmp / "tree" / "benchmarks" / "deleted_since.py").write_text("x: int = 's'\n")  # a module removed from the repo
    (tmp / "tree" / ".mypy_cache").mkdir()
    (tmp / "tree" / ".mypy_cache" / "kept").write_text("")
    env = {**os.environ, "MYPY": str(stub), "RECORD": str(tmp), "TYPECHECK_TREE": str(tmp / "tree")}
    subprocess.run(["bash", str(ROOT / "scripts" / "typecheck.sh")], env=env, check=True, timeout=60)
    args = (tmp / "args").read_text().split("\n")
    files = {line.removeprefix("./") for line in (tmp / "files").read_text().splitlines()}
    return args, files


def test_benchmarks_are_checked_with_the_package(recorded: tuple[list[str], set[str]]) -> None:
    args, _ = recorded
    assert [args[i + 1] for i, a in enumerate(args) if a == "-p"] == ["edgeae", "benchmarks"]
    assert args[args.index("--config-file") + 1] == str(ROOT / "pyproject.toml")


def test_tree_holds_every_benchmark_module_and_no_results(recorded: tuple[list[str], set[str]]) -> None:
    _, files = recorded
    bench = {f for f in files if f.startswith("benchmarks/")}
    assert bench == {f"benchmarks/{p.name}" for p in (ROOT / "benchmarks").glob("*.py")}
    assert "edgeae/export/__init__.py" in files and "edgeae/firmware_sim/__init__.py" in files


def test_old_modules_go_and_the_mypy_cache_stays(recorded: tuple[list[str], set[str]]) -> None:
    _, files = recorded
    assert "benchmarks/deleted_since.py" not in files
    assert ".mypy_cache/kept" in files
