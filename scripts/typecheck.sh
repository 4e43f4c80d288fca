#!/usr/bin/env bash
# mypy over the package as it is installed: export/ and firmware_sim/ are installed as edgeae.export and
# edgeae.firmware_sim (pyproject package-dir), which mypy cannot see through an editable install, so we
# type-check a materialised copy of the installed layout.
set -euo pipefail
cd "$(dirname "$0")/.."
tree=${TYPECHECK_TREE:-build/typecheck}  # a separate tree lets two checks run at once
rm -rf "$tree" && mkdir -p "$tree"
cp -r edgeae "$tree/edgeae"
cp -r export "$tree/edgeae/export"
cp -r firmware_sim "$tree/edgeae/firmware_sim"
find "$tree" -name __pycache__ -prune -exec rm -rf {} +
root=$(pwd)
mypy_bin=$(readlink -f "${MYPY:-.venv/bin/mypy}")
(cd "$tree" && "$mypy_bin" --config-file "$root/pyproject.toml" -p edgeae)
