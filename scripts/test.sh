#!/usr/bin/env bash
# Set up a virtual environment (if needed) and run every check CI runs: ruff, mypy, pytest.
# Usage: bash scripts/test.sh [extra pytest args]     (e.g. -m slow for the slow suite, tests/test_x.py -x for one file)
# pip's output goes to .venv/pip.log (shown when the install fails).
# pytest runs on EDGEAE_TEST_WORKERS pytest-xdist workers (default 2, one per core of a 2-core machine; 0: one
# process, as plain pytest), --dist loadgroup: the tests that must not run at the same time as each other share a
# group (tests/conftest.py, SERIAL_GROUPS). Your own -n N wins (it comes later); with -p no:xdist, --pdb / --trace
# or -m speed (timing benchmarks: pytest-benchmark turns itself off under xdist) or -m slow (venv installs, kills
# and load-sensitive bounds, not grouped for two workers) pytest runs in one process.
set -euo pipefail
cd "$(dirname "$0")/.."
# pytest's workers, checked before the install so that a wrong EDGEAE_TEST_WORKERS fails at once
WORKERS=${EDGEAE_TEST_WORKERS:-2}
case "$WORKERS" in
  auto | logical | [0-9] | [0-9][0-9]) ;;
  *)
    echo "scripts/test.sh: EDGEAE_TEST_WORKERS must be a number of pytest-xdist workers (0: one process), auto or logical, not '$WORKERS'" >&2
    exit 2 ;;
esac
xdist=(-n "$WORKERS" --dist loadgroup)
[ "$WORKERS" != 0 ] || xdist=()
prev=
for arg in "$@"; do  # arguments that need one process: xdist would refuse them (--pdb) or spoil them (timings)
  case "$prev/$arg" in
    */-pno:xdist | -p/no:xdist | */--pdb | */--trace) xdist=() ;;
    -m/*"not speed"* | */-m*"not speed"* | -m/*"not slow"* | */-m*"not slow"*) ;;
    -m/*speed* | */-m*speed* | -m/*slow* | */-m*slow*) xdist=() ;;
  esac
  prev=$arg
done
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv with $("$PY" --version 2>&1)"
  "$PY" -m venv .venv
fi
# torch==2.13.0 is pinned exactly (pyproject.toml): the pin fixes the version, not the build. On Linux PyPI's wheel
# is the CUDA one (several GB); put the CPU build into .venv first (README, Install), and this install keeps it.
echo "== installing edgeae[dev] into .venv (minutes the first time; log: .venv/pip.log)"
if ! {
  .venv/bin/python -m pip install --disable-pip-version-check --progress-bar off --upgrade pip &&
    .venv/bin/python -m pip install --disable-pip-version-check --progress-bar off -e ".[dev]"
} >.venv/pip.log 2>&1; then
  tail -n 25 .venv/pip.log >&2
  echo "pip install failed; the whole log is in .venv/pip.log" >&2
  exit 1
fi
# The report tests load pages in headless Chromium (Debian's package); they skip with a message without it.
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "== installing chromium for the headless-browser report tests (log: .venv/apt.log)"
  { timeout 600 apt-get update && DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y --no-install-recommends chromium; } \
    >.venv/apt.log 2>&1 || echo "   chromium could not be installed: the browser tests will skip"
fi
echo "== ruff"
.venv/bin/ruff check edgeae export firmware_sim benchmarks tests
.venv/bin/ruff format --check edgeae export firmware_sim benchmarks tests
echo "== mypy"
bash scripts/typecheck.sh
echo "== pytest"
.venv/bin/python -m pytest "${xdist[@]}" --durations=25 "$@"  # --durations: CI logs name the slowest tests
