#!/usr/bin/env bash
# The CUDA path end to end, in well under 10 minutes on one GPU:
#   1. a debug run on the pixel env wmrl/Catch-v0 under bf16, killed (SIGKILL) after its first checkpoint,
#      resumed to the end, evaluated, and dreamed (GIF);
#   2. the atari100k preset's env steps/s, update and act time on the GPU, and the hours they project
#      per game (STORM's paper: 4.3 h per game on an RTX 3090).
# Writes gpu_check.log and gpu_timing.json into OUT (first argument, else $OUT, else runs/gpu_check).
#
# The GPU machine has PyTorch but not Gymnasium, MinAtar or ale-py, and no network: put their wheels in
# .whl/ here first (benchmarks/gpu_wheels.sh) and carry .whl with the run:
#   device run: bash benchmarks/gpu_check.sh "$OUT"     carry: [.whl]
# WMRL_DEVICE=cpu runs the same checks on a CPU (to try the script; the timing then means little).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-${OUT:-runs/gpu_check}}
DEVICE=${WMRL_DEVICE:-cuda}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
: > "$LOG"
say() { echo "== $(date -u +%H:%M:%S) $*" | tee -a "$LOG"; }
run() { "$@" >> "$LOG" 2>&1; local rc=$?; say "exit $rc: $*"; return $rc; }

if ! $PY -c "import wmrl, gymnasium" 2>/dev/null; then
    say "installing wmrl (no deps) and the wheels in .whl/ into $PY's environment"
    [ -d .whl ] && run $PY -m pip install --no-index --find-links .whl gymnasium minatar ale-py
    run $PY -m pip install --no-deps --no-build-isolation -e .
fi
run $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else '')"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >> "$LOG" 2>&1

RUN=runs/gpu_check_run
rm -rf "$RUN"
TRAIN=($PY -m wmrl train --preset debug --env wmrl/Catch-v0 --steps 600 --device "$DEVICE" --run-dir "$RUN"
       --no-progress --set precision=bf16 --set train.checkpoint_every=100 --set train.eval_every=300)
say "1. train, killed after the first checkpoint"
"${TRAIN[@]}" >> "$LOG" 2>&1 &
pid=$!
for _ in $(seq 600); do [ -f "$RUN/checkpoints/latest.pt" ] && break; sleep 0.2; done
sleep 1
kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
say "killed at: $(tail -n 1 "$RUN/metrics.jsonl" 2>/dev/null | cut -c1-120)"
run $PY -m wmrl train --run-dir "$RUN" --resume --steps 600 --device "$DEVICE" --no-progress
run $PY -m wmrl eval "$RUN" --episodes 5 --device "$DEVICE"
run $PY -m wmrl eval "$RUN" --episodes 5 --device "$DEVICE" --sample
run $PY -m wmrl dream "$RUN" --horizon 8 --device "$DEVICE" --out "$OUT/dream.gif"
last=$(tail -n 1 "$RUN/metrics.jsonl")
say "final metrics row: ${last:0:300}"

say "2. atari100k preset timing on $DEVICE"
if [ "$DEVICE" = cpu ]; then
    # The paper-size model's update on a CPU took so much memory here that Ray's memory monitor killed
    # the benchmark runs beside it; the timing is for GPUs.
    say "skipped on the CPU"
elif $PY -c "import ale_py" 2>/dev/null; then
    run $PY benchmarks/gpu_timing.py --preset atari100k --env ALE/Pong-v5 --device "$DEVICE" --precision bf16 \
        --updates "${WMRL_TIMING_UPDATES:-20}" --out "$OUT/gpu_timing.json"
else
    say "ale_py is not installed: no Atari timing (put its wheel in .whl/, see benchmarks/gpu_wheels.sh)"
fi
say "done"
