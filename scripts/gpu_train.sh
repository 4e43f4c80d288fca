#!/usr/bin/env bash
# Train reconstruction CAEs on a lent GPU machine in one command of under 9 minutes (the device tool's budget).
#
#   python scripts/gpu_pack.py rover_rgb_v2 orbital_gray_v2 --out .gpu/data     # here: the data, 46 MB
#   device run, carry [".gpu"]:  bash scripts/gpu_train.sh                       # there: writes $OUT/*.tar
#
# Four `edgeae train cae` runs share the GPU and the machine's cores (JOBS below). A 1-epoch probe of each, run
# side by side, measures its crops per second; each main run is then given the whole number of epochs of
# CROPS crops that fits MAIN_S seconds, so its cosine schedule ends inside the budget (the probe crops are
# not kept). Each run folder comes back as $OUT/<job>.tar (config, loss.csv, metrics.json, best.pt, log).
# Settings by environment: MAIN_S (default 360), CROPS (12288), PROBE_CROPS (2048), DEVICE (cuda), PY (python3),
# JOBS_ONLY (comma-separated job names), JOBSET (first | continue).
set -u
export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1 EDGEAE_DATA="$PWD/.gpu/data" OMP_NUM_THREADS=2
OUT="${OUT:-runs/gpu}"
MAIN_S="${MAIN_S:-360}"
CROPS="${CROPS:-12288}"
PROBE_CROPS="${PROBE_CROPS:-2048}"
DEVICE="${DEVICE:-cuda}"
PY="${PY:-python3}"
W=edgeae/zoo/weights
mkdir -p "$OUT" runs/gpu-probe runs/gpu-main
T0=$(date +%s)
"$PY" - <<'EOF'
import os, platform, numpy, torch, cv2
print("python", platform.python_version(), "torch", torch.__version__, "numpy", numpy.__version__, "cv2", cv2.__version__)
print("cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")
print("cpus", os.cpu_count())
EOF

# name | data | arguments (all: gt-CAE, 60-97% destroyed, 4 data threads, 2 torch threads)
JOBS=(
  "rover-ground-ft|rover_rgb_v2|--variant unet2 --widths 24,48,96,192 --init $W/rover-rgb-unet2-ground.pt --lr 5e-4 --batch-size 64"
  "rover-ground-w32|rover_rgb_v2|--variant unet2 --widths 32,64,128,256 --lr 1e-3 --batch-size 64"
  "gray-ground-ft|orbital_gray_v2|--variant unet2 --widths 24,48,96,192 --init $W/orbital-gray-unet2-ground.pt --lr 2.5e-4 --batch-size 64"
  "rover-flight-ft|rover_rgb_v2|--variant unet2h --widths 24,32,64,64 --init $W/rover-rgb-unet2-flight.pt --lr 5e-4 --batch-size 64"
)
# Second lease of session 18 (JOBSET=continue): the two ground models trained on, from the first lease's best.pt
# (carry those two files), one job per model, the cores split 10/4 between their data threads.
if [ "${JOBSET:-first}" = continue ]; then
  JOBS=(
    "rover-ground-w32-2|rover_rgb_v2|--variant unet2 --widths 32,64,128,256 --init runs/gpu1/rover-ground-w32/best.pt --lr 3e-4 --batch-size 64 --seed 12 --data-workers 10"
    "gray-ground-ft-2|orbital_gray_v2|--variant unet2 --widths 24,48,96,192 --init runs/gpu1/gray-ground-ft/best.pt --lr 1.5e-4 --batch-size 64 --seed 12 --data-workers 4"
  )
fi
COMMON="--mode gt --destroy-range 0.6,0.97 --val-crops 256 --threads 2 --device $DEVICE --no-progress"
[ "${JOBSET:-first}" = continue ] || COMMON="$COMMON --seed 11 --data-workers 4"

# how a training run ended (its exit status: edgeae.train.resume): 75 is a --time-budget stop, not a failure
report_exit() {  # phase name dir status
  case $4 in
    0) ;;
    75) echo "[$1] $2: stopped by its time budget (exit 75): continue with: edgeae train cae --resume $3" ;;
    130 | 143) echo "[$1] $2: stopped by a signal (exit $4): continue with: edgeae train cae --resume $3" ;;
    *) echo "[$1] $2: failed (exit $4): see $3/train.log" ;;
  esac
}

run_all() {  # phase epochs_of_job...
  local phase=$1; shift
  local pids=() names=() dirs=() i=0
  for job in "${JOBS[@]}"; do
    IFS='|' read -r name data args <<<"$job"
    if [ -n "${JOBS_ONLY:-}" ] && [[ ",$JOBS_ONLY," != *",$name,"* ]]; then i=$((i + 1)); continue; fi
    local dir="runs/gpu-$phase/$name" epochs crops budget
    if [ "$phase" = probe ]; then epochs=1; crops=$PROBE_CROPS; budget=120s; else
      epochs=${EPOCHS[$i]}; crops=$CROPS; budget=$((MAIN_S + 60))s
      if [ "$epochs" = 0 ]; then echo "[$phase] $name: skipped (its probe failed)"; i=$((i + 1)); continue; fi; fi
    rm -rf "$dir"; mkdir -p "$dir"
    echo "[$phase] $name: edgeae train cae --data $data $args $COMMON --epochs $epochs --crops $crops --time-budget $budget"
    # shellcheck disable=SC2086
    "$PY" -m edgeae -v train cae --data "$data" $args $COMMON --epochs "$epochs" --crops "$crops" \
      --time-budget "$budget" --out "$dir" >"$dir/train.log" 2>&1 &
    pids+=($!); names+=("$name"); dirs+=("$dir"); i=$((i + 1))
  done
  local k rc
  for k in "${!pids[@]}"; do
    wait "${pids[$k]}"; rc=$?
    report_exit "$phase" "${names[$k]}" "${dirs[$k]}" "$rc"
  done
}

run_all probe
EPOCHS=()
for job in "${JOBS[@]}"; do
  IFS='|' read -r name _ _ <<<"$job"
  e=$("$PY" - "runs/gpu-probe/$name/loss.csv" "$PROBE_CROPS" "$CROPS" "$MAIN_S" <<'EOF'
import csv, sys
path, probe, crops, budget = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
try:
    rows = list(csv.DictReader(open(path)))
    rate = probe / float(rows[-1]["seconds"])
except (OSError, IndexError, KeyError, ValueError, ZeroDivisionError):
    print(0); sys.exit()
print(max(1, int(rate * budget / crops)))
EOF
)
  echo "probe $name: $(tail -n 3 "runs/gpu-probe/$name/train.log" | tr '\n' ' ')"
  echo "probe $name -> $e epochs of $CROPS crops"
  EPOCHS+=("$e")
done
echo "probe phase: $(( $(date +%s) - T0 )) s"
run_all main
echo "main phase done at $(( $(date +%s) - T0 )) s"
nvidia-smi --query-gpu=name,memory.used,utilization.gpu --format=csv 2>/dev/null
for job in "${JOBS[@]}"; do
  IFS='|' read -r name _ _ <<<"$job"
  d="runs/gpu-main/$name"
  [ -f "$d/loss.csv" ] || { [ -f "$d/train.log" ] && tail -n 20 "$d/train.log"; continue; }
  tail -n 6 "$d/train.log"
  tar -cf "$OUT/$name.tar" -C runs/gpu-main "$name/config.json" "$name/loss.csv" "$name/train.log" \
    $(cd runs/gpu-main && ls "$name"/metrics.json "$name"/init.json "$name"/best.pt 2>/dev/null)
done
ls -la "$OUT"
echo "total $(( $(date +%s) - T0 )) s"
