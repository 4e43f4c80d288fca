#!/usr/bin/env bash
# Check the zoo's int8 ONNX files on this machine's CPU against parity bundles (python -m edgeae.export.board),
# e.g. on a lent GPU machine's CPU, which has no PyTorch of our version and no ../shared/data.
#
# here (PyTorch, data), once:
#   for m in orbital-gray-vae; do python -m edgeae.export.board bundle $m --out .gpu/board/$m.npz; done
#   python -m edgeae.export.board bundle orbital-gray-vae-lite --no-tail --out .gpu/board/orbital-gray-vae-lite.npz
#   for m in rover-rgb-unet2-ground rover-rgb-unet2-flight rover-rgb-gtcae orbital-gray-gtcae; do
#     python -m edgeae.export.board bundle $m --no-tail --n-test 16 --out .gpu/board/$m.npz; done
#   # optional: other files of the same models to compare, under .gpu/board/new/<model>/*.onnx
# there (device run, carry [".gpu/board"]):   bash scripts/board_check.sh     # writes $OUT/<model>.json, cpu.txt
# Checks every edgeae/zoo/artifacts/<model>/*.int8.onnx (and *.int8.tflite where ai-edge-litert is installed) and
# .gpu/board/new/<model>/*.onnx, and times each (--time: items/s, RSS growth, the fastest that passed); exit
# status 0 even when a file fails (the JSON and the printed lines say which).
set -u
OUT="${OUT:-runs/board}"; PY="${PY:-python3}"; B="${BUNDLES:-.gpu/board}"; A=edgeae/zoo/artifacts
mkdir -p "$OUT"
# the package maps export/ and firmware_sim/ into edgeae (pyproject); without an install, link them in
if ! "$PY" -c "import edgeae.export.board" 2>/dev/null; then  # not installed (pip install -e .): link them in
  [ -e edgeae/export ] || ln -s ../export edgeae/export
  [ -e edgeae/firmware_sim ] || ln -s ../firmware_sim edgeae/firmware_sim
fi
export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1
{ lscpu; grep -m1 '^flags' /proc/cpuinfo
  "$PY" -c "import onnxruntime, numpy; print('onnxruntime', onnxruntime.__version__, 'numpy', numpy.__version__)"
} > "$OUT/cpu.txt" 2>&1
TFL=0; "$PY" -c "import ai_edge_litert" 2>/dev/null && TFL=1   # LiteRT files only where LiteRT is installed
for bundle in "$B"/*.npz; do
  m=$(basename "$bundle" .npz)
  echo "== $m"
  # shellcheck disable=SC2086
  "$PY" -m edgeae.export.board check "$bundle" "$A"/$m/*.int8.onnx $([ $TFL = 1 ] && ls "$A"/$m/*.int8.tflite 2>/dev/null) \
    $(ls "$B"/new/$m/*.onnx 2>/dev/null) --threads 1 --workers 2 --time --json "$OUT/$m.json" 2>&1 | grep -v -E "^(WARNING|INFO)"
done
grep -E "Model name|onnxruntime" "$OUT/cpu.txt"
grep -o -w -E "avx512_vnni|avx_vnni|avx512f|amx_int8" "$OUT/cpu.txt" | sort -u | tr '\n' ' '; echo
