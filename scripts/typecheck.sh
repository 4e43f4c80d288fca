#!/usr/bin/env bash
# mypy over the package as it is installed: export/ and firmware_sim/ are installed as edgeae.export and
# edgeae.firmware_sim (pyproject package-dir), which mypy cannot see through an editable install, so we
# type-check a materialised copy of the installed layout. benchmarks/ (its modules only, not its results or
# weights) is checked in the same run, against that layout, with the same config: both must be clean.
set -euo pipefail
cd "$(dirname "$0")/.."
tree=${TYPECHECK_TREE:-build/typecheck}  # a separate tree lets two checks run at once
# the sources are copied afresh each run (a deleted module must not linger); mypy's cache in $tree/.mypy_cache
# is kept, and -p keeps modification times, so an unchanged module is not checked again
rm -rf "$tree/edgeae" "$tree/benchmarks" && mkdir -p "$tree"
cp -rp edgeae "$tree/edgeae"
cp -rp export "$tree/edgeae/export"
cp -rp firmware_sim "$tree/edgeae/firmware_sim"
mkdir "$tree/benchmarks" && cp -p benchmarks/*.py "$tree/benchmarks/"
find "$tree" -name __pycache__ -prune -exec rm -rf {} +
root=$(pwd)
mypy_bin=$(readlink -f "${MYPY:-.venv/bin/mypy}")
(cd "$tree" && "$mypy_bin" --config-file "$root/pyproject.toml" -p edgeae -p benchmarks)
