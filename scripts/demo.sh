#!/usr/bin/env bash
# Set up a virtual environment (if needed), install edgeae with the training/ground extras, run the demo.
# Usage: bash scripts/demo.sh [edgeae demo options]   (the report lands in ./edgeae-demo/index.html)
# The demo runs in the directory you call this from: relative --image/--out/--data paths and the default
# ./edgeae-demo are taken from there. The .venv is the repository's; pip's output goes to .venv/pip.log
# (shown when the install fails).
set -euo pipefail
HERE=$PWD
cd "$(dirname "$0")/.."
REPO=$PWD
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv with $("$PY" --version 2>&1)"
  "$PY" -m venv .venv
fi
echo "== installing edgeae[train] into .venv (minutes the first time; log: .venv/pip.log)"
if ! {
  .venv/bin/python -m pip install --disable-pip-version-check --progress-bar off --upgrade pip &&
    .venv/bin/python -m pip install --disable-pip-version-check --progress-bar off -e ".[train]"
} >.venv/pip.log 2>&1; then
  tail -n 25 .venv/pip.log >&2
  echo "pip install failed; the whole log is in .venv/pip.log" >&2
  exit 1
fi
echo "== running the demo (about two minutes on 2 CPU cores)"
cd "$HERE"
exec "$REPO/.venv/bin/edgeae" demo "$@"
