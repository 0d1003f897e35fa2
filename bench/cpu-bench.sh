#!/usr/bin/env bash
# CPU engine vs the baselines users run: theta fwd+bwd tokens/s and peak memory, and
# greedy generation tokens/s (batch 1 and 8), at 1 and 2 threads, in two precision
# classes (ours fp32 vs their fp32, our precision 'bf16' vs their bf16).
#
#   bash bench/cpu-bench.sh [OUT_DIR]
#     env: REPEATS=3  MODELS="stories260k random100m llama32-1b"  THREADS="1 2"
#          PRECISIONS="f32 bf16"  MODEL_DIR=/tmp/hopscotch-bench-models  BUILD=/tmp/hopscotch-bench
#          VENV=/tmp/hopscotch-bench-venv  SAMPLES=8  SAMPLES_1B=2  TRAIN=1  GENERATE=1  HISTORY_PYTHON=<unset>
#          BASELINE_TIMEOUT=1800 (seconds per baseline process; PyTorch bf16 on a CPU without
#          AVX-512 BF16 can take longer than that; a timed-out baseline leaves no row)
#
# Models: stories260k (bundled, F32); random100m (Llama, hidden 768, 12 layers, vocab 32000,
# 134M parameters, F32) and llama32-1b (Llama-3.2-1B's sizes, 1.24e9 parameters, BF16), both
# random checkpoints written once by `cpu_bench make-model` into MODEL_DIR.
# Baselines (bench/setup-baselines.sh makes the venv from the machine's pip index):
#   torch        bench/torch_cpu_baseline.py: PyTorch 2.x eager, frozen weights, --dtype f32|bf16
#   transformers bench/hf_cpu_baseline.py: LlamaForCausalLM (sdpa) + scales by forward hooks,
#                its loss and theta gradients checked against ours before it is timed
#   llama.cpp    bench/llama_cpp_generate.mjs: generation only, node-llama-cpp (the pinned devDependency)
#                on a GGUF of the same weights exported by this library (needs `npm run build:ts`)
#   torch-1.13   the old column (Debian python3-torch + OpenBLAS), only with HISTORY_PYTHON set
# Every measurement is its own process; within a repetition the implementations alternate.
# The summary (bench/cpu_bench_report.py) takes medians and, per precision class, the ratio
# of ours to the fastest baseline; `cpu_bench machine` measures the FMA peak and the memory
# bandwidth the report sets the figures against.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${1:-/tmp/hopscotch-cpu-bench}"
BUILD="${BUILD:-/tmp/hopscotch-bench}"
REPEATS="${REPEATS:-3}"
MODELS="${MODELS:-stories260k random100m llama32-1b}"
THREADS="${THREADS:-1 2}"
PRECISIONS="${PRECISIONS:-f32 bf16}"
MODEL_DIR="${MODEL_DIR:-/tmp/hopscotch-bench-models}"
SAMPLES="${SAMPLES:-8}"
SAMPLES_1B="${SAMPLES_1B:-2}"
TRAIN="${TRAIN:-1}"
GENERATE="${GENERATE:-1}"
BT="${BASELINE_TIMEOUT:-1800}"
mkdir -p "$OUT" "$MODEL_DIR"
cmake -S "$ROOT/bench" -B "$BUILD" >/dev/null
cmake --build "$BUILD" -j2 --target cpu_bench >/dev/null
BENCH="$BUILD/cpu_bench"
PY="$(bash "$ROOT/bench/setup-baselines.sh" "${VENV:-/tmp/hopscotch-bench-venv}" 2>"$OUT/venv.log" | tail -1)"
RESULTS="$OUT/results.jsonl"
: >"$RESULTS"

model_path() {
  case "$1" in
    stories260k) echo "${STORIES:-$ROOT/models/stories260k}" ;;
    random100m) echo "$MODEL_DIR/random100m-f32" ;;
    llama32-1b) echo "$MODEL_DIR/llama32-1b-bf16" ;;
  esac
}
[ -f "$MODEL_DIR/random100m-f32/model.safetensors" ] ||
  "$BENCH" make-model --shape random100m --dtype F32 --out "$MODEL_DIR/random100m-f32" >&2
case " $MODELS " in *" llama32-1b "*)
  [ -f "$MODEL_DIR/llama32-1b-bf16/model.safetensors" ] ||
    "$BENCH" make-model --shape llama32-1b --dtype BF16 --out "$MODEL_DIR/llama32-1b-bf16" >&2 ;;
esac

{
  echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), family $(grep -m1 'cpu family' /proc/cpuinfo | cut -d: -f2 | xargs) model $(grep -m1 '^model\s' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, $(grep -m1 MHz /proc/cpuinfo | cut -d: -f2 | xargs) MHz"
  echo "simd: $(grep -m1 flags /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|fma|f16c|avx512f|avx512_bf16|amx_bf16)$' | tr '\n' ' ')"
  echo "memory: $(free -g | awk '/Mem:/ {print $2}') GiB"
  echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "baselines: $("$PY" -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)')"
} >"$OUT/machine.txt"
"$BENCH" machine --threads 2 >>"$RESULTS"

tag() { sed "s/^{/{\"rep\": $1, \"name\": \"$2\", /"; }
for rep in $(seq 1 "$REPEATS"); do
  for model in $MODELS; do
    m="$(model_path "$model")"
    reps=3 samples="$SAMPLES"
    [ "$model" = random100m ] && reps=1
    [ "$model" = llama32-1b ] && reps=1 samples="$SAMPLES_1B"
    for t in $THREADS; do
      for p in $PRECISIONS; do
        [ "$TRAIN" = 1 ] || continue
        ours="$OUT/ours-$model-$t-$p.json"
        "$BENCH" train --model "$m" --threads "$t" --reps "$reps" --samples "$samples" --precision "$p" >"$ours"
        tag "$rep" "$model" <"$ours" >>"$RESULTS"
        timeout "$BT" "$PY" "$ROOT/bench/torch_cpu_baseline.py" train --model "$m" --threads "$t" --reps "$reps" \
          --samples "$samples" --dtype "$p" | tag "$rep" "$model" >>"$RESULTS" ||
          echo "torch $model $t $p: failed" >&2
        timeout "$BT" "$PY" "$ROOT/bench/hf_cpu_baseline.py" train --model "$m" --threads "$t" --reps "$reps" \
          --samples "$samples" --dtype "$p" --check "$ours" | tag "$rep" "$model" >>"$RESULTS" ||
          echo "transformers $model $t $p: failed or disagreed (see results.jsonl)" >&2
      done
      if [ -n "${HISTORY_PYTHON:-}" ] && [ "$model" != llama32-1b ]; then
        OPENBLAS_NUM_THREADS="$t" "$HISTORY_PYTHON" "$ROOT/bench/torch_cpu_baseline.py" train --model "$m" \
          --threads "$t" --reps "$reps" | sed 's/"impl": "torch"/"impl": "torch-1.13"/' | tag "$rep" "$model" >>"$RESULTS"
      fi
      if [ "$GENERATE" = 1 ]; then
        for b in 1 8; do
          for p in $PRECISIONS; do
            "$BENCH" generate --model "$m" --threads "$t" --batch "$b" --reps "$reps" --precision "$p" |
              tag "$rep" "$model" >>"$RESULTS"
          done
          timeout "$BT" "$PY" "$ROOT/bench/torch_cpu_baseline.py" generate --model "$m" --threads "$t" --batch "$b" --reps "$reps" |
            tag "$rep" "$model" >>"$RESULTS" || echo "torch generate $model $t $b: failed" >&2
          timeout "$BT" node "$ROOT/bench/llama_cpp_generate.mjs" --model "$m" --name "$model" --threads "$t" \
            --batch "$b" --reps "$reps" --work "$MODEL_DIR/gguf" | tag "$rep" "$model" >>"$RESULTS" ||
            echo "llama.cpp generate $model $t $b: failed" >&2
        done
      fi
      echo "rep $rep $model threads $t done ($(cut -d' ' -f1-3 /proc/loadavg))" >&2
    done
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"
"$PY" "$ROOT/bench/cpu_bench_report.py" "$RESULTS" "$OUT/machine.txt" | tee "$OUT/summary.md"
