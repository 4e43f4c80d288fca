#!/usr/bin/env bash
# Set up a virtual environment (if needed) and run every check CI runs: ruff, mypy, pytest.
# Usage: bash scripts/test.sh [extra pytest args]     (e.g. -m slow for the slow suite)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# torch==2.13.0 is pinned exactly (see pyproject.toml): an unpinned torch pulls CUDA wheels.
.venv/bin/python -m pip install -q -e ".[dev]"
echo "== ruff"
.venv/bin/ruff check edgeae export firmware_sim benchmarks tests
.venv/bin/ruff format --check edgeae export firmware_sim benchmarks tests
echo "== mypy"
bash scripts/typecheck.sh
echo "== pytest"
.venv/bin/python -m pytest "$@"
