#!/usr/bin/env bash
# Set up a virtual environment (if needed), install edgeae with the training/ground extras, run the demo.
# Usage: bash scripts/demo.sh [edgeae demo options]   (the report lands in ./edgeae-demo/index.html)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[train]"
.venv/bin/edgeae demo "$@"
