#!/usr/bin/env bash
# CPU engine vs PyTorch CPU fp32 (eager autograd, frozen weights): theta fwd+bwd
# tokens/s and peak memory on stories260k and a random ~134M-parameter Llama, at
# 1 and 2 threads, plus greedy generation tokens/s (batch 1 and 8). The two sides
# run alternately, one process per measurement, REPEATS times; the summary takes
# medians of each side and the ratio per configuration.
#
#   bash bench/cpu-bench.sh [OUT_DIR]     (env: REPEATS=3, MODELS="stories260k random100m",
#                                          THREADS="1 2", BUILD=/tmp/hopscotch-bench)
# Needs python3-torch and OpenBLAS (Debian: apt-get install -y python3-torch libopenblas0-pthread;
# without the latter Debian's torch runs on the reference BLAS), used only here. The torch
# side runs with OPENBLAS_NUM_THREADS equal to its thread count.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${1:-/tmp/hopscotch-cpu-bench}"
BUILD="${BUILD:-/tmp/hopscotch-bench}"
REPEATS="${REPEATS:-3}"
MODELS="${MODELS:-stories260k random100m}"
THREADS="${THREADS:-1 2}"
PY="${PYTHON:-/usr/bin/python3}"
mkdir -p "$OUT"
cmake -S "$ROOT/bench" -B "$BUILD" >/dev/null
cmake --build "$BUILD" -j2 >/dev/null
BENCH="$BUILD/cpu_bench"
RESULTS="$OUT/results.jsonl"
: >"$RESULTS"
model_arg() { [ "$1" = stories260k ] && echo "${STORIES:-$ROOT/models/stories260k}" || echo "$1"; }
{
  echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, $(grep -m1 MHz /proc/cpuinfo | cut -d: -f2 | xargs) MHz"
  echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-<unset>} (left as found); torch BLAS: $(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3)"
} >"$OUT/machine.txt"
for rep in $(seq 1 "$REPEATS"); do
  for model in $MODELS; do
    m="$(model_arg "$model")"
    reps=3; [ "$model" = random100m ] && reps=1
    for t in $THREADS; do
      "$BENCH" train --model "$m" --threads "$t" --reps "$reps" | sed "s/^{/{\"rep\": $rep, \"name\": \"$model\", /" >>"$RESULTS"
      OPENBLAS_NUM_THREADS="$t" "$PY" "$ROOT/bench/torch_cpu_baseline.py" train --model "$m" --threads "$t" --reps "$reps" \
        | sed "s/^{/{\"rep\": $rep, \"name\": \"$model\", /" >>"$RESULTS"
      for b in 1 8; do
        "$BENCH" generate --model "$m" --threads "$t" --batch "$b" --reps "$reps" \
          | sed "s/^{/{\"rep\": $rep, \"name\": \"$model\", /" >>"$RESULTS"
        OPENBLAS_NUM_THREADS="$t" "$PY" "$ROOT/bench/torch_cpu_baseline.py" generate --model "$m" --threads "$t" --batch "$b" --reps "$reps" \
          | sed "s/^{/{\"rep\": $rep, \"name\": \"$model\", /" >>"$RESULTS"
      done
      echo "rep $rep $model threads $t done" >&2
    done
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"
"$PY" "$ROOT/bench/cpu_bench_report.py" "$RESULTS" "$OUT/machine.txt" | tee "$OUT/summary.md"
