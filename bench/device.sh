#!/usr/bin/env bash
# The one-shot GPU-machine script (no Node, no network needed; everything it uses is in
# the repository or on the device image: cmake, nvcc, python3 with torch/transformers).
# Runs in under 9 minutes, skipping optional steps when time is short:
#   1. environment facts (driver, GPU, nvcc, torch.version.cuda, cuDNN, cuBLASLt found)
#   2. build of the CUDA backend + hopscotch_cuda_selftest, with a timeout; on failure
#      the script goes on to the PyTorch baseline
#   3. kernel-level checks (each kernel against its CPU twin), then the parity
#      self-test, one process per model (60 s each); a model that fails with a CUDA
#      error or a crash is rerun under compute-sanitizer --tool memcheck
#   4. per model (llama8b, then qwen7b): the synthetic 8B benchmark of our engine, then
#      the fair PyTorch baseline on the same model and batch (its loss checked against
#      ours); then llama8b again with the FMA attention fallback (HOPSCOTCH_ATTENTION=fma)
#      when time allows
# Writes at most 8 flat files to $OUT (default bench/out):
#   env.txt build.log selftest.log selftest.json cuda_bench.json torch_baseline.log
#   torch_baseline.json summary.txt
#
#   bash bench/device.sh
#   BUDGET_S=300 SKIP_BASELINE=1 bash bench/device.sh
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${OUT:-$ROOT/bench/out}
BUILD=${BUILD_DIR:-/tmp/hopscotch-build}
WORK=$(mktemp -d /tmp/hopscotch-device.XXXXXX)
JOBS=${JOBS:-$(nproc)}
BUDGET=${BUDGET_S:-530}   # seconds for the whole script
START=$(date +%s)
mkdir -p "$OUT"
for f in env.txt build.log selftest.log selftest.json cuda_bench.json torch_baseline.log torch_baseline.json summary.txt; do
  rm -f "$OUT/$f"
done
status=0

left() { echo $((BUDGET - ($(date +%s) - START))); }
# room N: true when at least N seconds remain (else the step is skipped, and said so).
room() {
  if [ "$(left)" -ge "$1" ]; then return 0; fi
  say "SKIPPED (deadline): $2 needs ${1}s, $(left)s left"
  return 1
}
say() { echo "$*" | tee -a "$OUT/summary.txt"; }
# cap N: N seconds, or less so that a step never runs past the budget.
cap() { local l=$(( $(left) - 10 )); [ "$l" -lt "$1" ] && echo $(( l > 5 ? l : 5 )) || echo "$1"; }
step() { echo; echo "== [$(( $(date +%s) - START ))s] $*"; }

# ---------------------------------------------------------------------------------------
step environment
{
  date -u +"%Y-%m-%dT%H:%M:%SZ"
  uname -r
  nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version,clocks.max.sm --format=csv 2>&1
  nvidia-smi -L 2>&1
  nvcc --version 2>&1 | tail -2
  cmake --version 2>&1 | head -1
  echo "nproc $(nproc)"
  command -v compute-sanitizer >/dev/null && echo "compute-sanitizer: $(compute-sanitizer --version 2>&1 | tail -1)" || echo "compute-sanitizer: absent"
  python3 - <<'PY' 2>&1
import glob, os, site, sys
try:
    import torch
    print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version(),
          "device", torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
except Exception as e:
    print("torch: unavailable:", e)
try:
    import transformers
    print("transformers", transformers.__version__)
except Exception as e:
    print("transformers: unavailable:", e)
roots = site.getsitepackages() + [site.getusersitepackages()] + sys.path
found = sorted({p for r in roots for p in glob.glob(os.path.join(r, "nvidia", "*", "lib", "libcublasLt.so*"))})
print("cublasLt candidates:", found or "none")
PY
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

# cuBLASLt ships in the Python environment (nvidia-cublas); point the loader at it.
if [ -z "${HOPSCOTCH_CUBLASLT:-}" ]; then
  HOPSCOTCH_CUBLASLT=$(python3 - <<'PY' 2>/dev/null
import glob, os, site, sys
roots = site.getsitepackages() + [site.getusersitepackages()] + sys.path
for r in roots:
    for sub in ("nvidia/cu13/lib/libcublasLt.so.13", "nvidia/cublas/lib/libcublasLt.so.13",
                "nvidia/cublas/lib/libcublasLt.so.12"):
        p = os.path.join(r, sub)
        if os.path.exists(p):
            print(p); sys.exit(0)
PY
  )
  [ -n "$HOPSCOTCH_CUBLASLT" ] && export HOPSCOTCH_CUBLASLT
fi
echo "HOPSCOTCH_CUBLASLT=${HOPSCOTCH_CUBLASLT:-<loader search>}" | tee -a "$OUT/env.txt"

# ---------------------------------------------------------------------------------------
step build
CC=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')
ARCHS=${CUDA_ARCHS:-${CC:-90}}
SELFTEST=""
if timeout "$(cap "${BUILD_TIMEOUT:-240}")" bash -c "cmake -S '$ROOT' -B '$BUILD' -DCMAKE_BUILD_TYPE=Release -DHOPSCOTCH_CUDA=ON \
      -DHOPSCOTCH_NATIVE_TOOLS=ON -DCMAKE_CUDA_ARCHITECTURES='$ARCHS' &&
    cmake --build '$BUILD' -j '$JOBS' --target hopscotch_cuda_selftest" > "$OUT/build.log" 2>&1; then
  SELFTEST="$BUILD/native/cuda/hopscotch_cuda_selftest"
  [ -x "$SELFTEST" ] || SELFTEST=$(find "$BUILD" -name hopscotch_cuda_selftest -type f | head -1)
  say "build: ok (sm_$ARCHS, $(( $(date +%s) - START ))s)"
  grep -iE "warning|spill" "$OUT/build.log" | grep -v "0 bytes spill" | head -20
else
  rc=$?
  tail -40 "$OUT/build.log"
  say "build: FAILED (rc $rc$([ $rc -eq 124 ] && echo ', timeout')); going on to the baseline"
  status=1
fi

# One self-test process; on a CUDA error or crash, the same run again under memcheck.
# run_selftest LABEL TIMEOUT ARGS...
run_selftest() {
  local label=$1 tmo=$2; shift 2
  local log="$WORK/$label.log" rc
  timeout "$(cap "$tmo")" "$SELFTEST" "$@" > "$log" 2>&1
  rc=$?
  cat "$log" >> "$OUT/selftest.log"
  local last; last=$(grep -E "^[0-9]+ passed, [0-9]+ failed" "$log" | tail -1)
  say "selftest $label: rc $rc ${last:-(no summary)}"
  if [ $rc -ne 0 ] && { [ $rc -ge 124 ] || grep -qE "HOPSCOTCH_ERR_CUDA|illegal|misaligned|cudaError|CUDA error" "$log"; }; then
    if command -v compute-sanitizer >/dev/null && room 150 "memcheck rerun of $label"; then
      echo "== memcheck rerun: $label" >> "$OUT/selftest.log"
      timeout "$(cap 120)" compute-sanitizer --tool memcheck --print-limit 20 "$SELFTEST" "$@" 2>&1 | tail -80 >> "$OUT/selftest.log"
      say "selftest $label: memcheck rerun done (see selftest.log)"
    fi
  fi
  return $rc
}

if [ -n "$SELFTEST" ]; then
  step "kernel checks"
  room 60 "kernel checks" && { run_selftest kernels 90 --kernels --json "$WORK/kernels.json" || status=1; }

  step fixtures
  FIX=${FIXTURES_DIR:-$ROOT/test/fixtures/generated/models}
  if [ ! -f "$FIX/llama-hd128-gqa4/config.json" ]; then
    FIX="$WORK/fixtures"
    python3 "$ROOT/bench/make_fixtures.py" "$FIX" > /dev/null || status=1
  fi
  # The head-dim-128 fixture and the real model first: they matter most.
  MODELS=("$FIX/llama-hd128-gqa4" "$ROOT/models/stories260k")
  for d in "$FIX"/*/; do
    d=${d%/}
    [ -f "$d/config.json" ] && [ "$d" != "$FIX/llama-hd128-gqa4" ] && MODELS+=("$d")
  done

  step "parity self-test (one process per model)"
  for m in "${MODELS[@]}"; do
    name=$(basename "$m")
    room 40 "selftest $name" || break
    if ! run_selftest "$name" 60 --json "$WORK/selftest-$name.json" "$m"; then
      status=1
      # Tells a tensor-core attention fault from others: the same model on the FMA kernels.
      if [ "$name" = llama-hd128-gqa4 ] && room 60 "FMA rerun of $name"; then
        echo "== rerun with HOPSCOTCH_ATTENTION=fma: $name" >> "$OUT/selftest.log"
        HOPSCOTCH_ATTENTION=fma run_selftest "$name-fma" 60 --json "$WORK/selftest-$name-fma.json" "$m" || true
      fi
    fi
  done
  python3 - "$WORK" "$OUT/selftest.json" <<'PY'
import glob, json, os, sys
work, out = sys.argv[1], sys.argv[2]
doc = {"passed": 0, "failed": 0, "models": {}}
for p in sorted(glob.glob(os.path.join(work, "selftest-*.json")) + glob.glob(os.path.join(work, "kernels.json"))):
    name = os.path.basename(p)[:-5].replace("selftest-", "")
    try:
        d = json.load(open(p))
    except Exception as e:
        d = {"error": str(e)}
    doc["models"][name] = d
    doc["passed"] += d.get("passed", 0)
    doc["failed"] += d.get("failed", 0)
json.dump(doc, open(out, "w"), indent=1)
PY

fi

# ---------------------------------------------------------------------------------------
# Per model: our engine, then PyTorch on the same model and batch (it reads our loss).
merge_ours() {
  python3 - "$WORK" "$OUT/cuda_bench.json" <<'PY'
import glob, json, os, sys
work, out = sys.argv[1], sys.argv[2]
runs = []
for p in sorted(glob.glob(os.path.join(work, "bench-*.json"))):
    try:
        runs.append(json.load(open(p)))
    except Exception as e:
        runs.append({"file": os.path.basename(p), "error": str(e)})
json.dump({"runs": runs}, open(out, "w"), indent=1)
PY
}
merge_torch() {
  python3 - "$WORK" "$OUT/torch_baseline.json" <<'PY'
import glob, json, os, sys
work, out = sys.argv[1], sys.argv[2]
doc = {"info": None, "results": []}
for p in sorted(glob.glob(os.path.join(work, "torch-*.json"))):
    try:
        d = json.load(open(p))
    except Exception as e:
        doc["results"].append({"file": os.path.basename(p), "error": str(e)})
        continue
    doc["info"] = doc["info"] or d.get("info")
    doc["results"] += d.get("results", [])
json.dump(doc, open(out, "w"), indent=1)
PY
}
for m in llama8b qwen7b; do
  if [ -n "$SELFTEST" ]; then
    step "8B benchmark (ours): $m"
    if room 100 "bench $m"; then
      timeout "$(cap 150)" "$SELFTEST" --bench "$m" --json "$WORK/bench-$m.json" >> "$OUT/selftest.log" 2>&1 ||
        { say "bench $m: FAILED (see selftest.log)"; status=1; }
      merge_ours
    fi
  fi
  if [ -z "${SKIP_BASELINE:-}" ]; then
    step "torch baseline: $m"
    if room 70 "torch baseline $m"; then
      tmo=$(( $(left) - 15 ))
      [ $tmo -gt 170 ] && tmo=170
      PYTHONUNBUFFERED=1 timeout "$tmo" python3 "$ROOT/bench/torch_baseline.py" --models "$m" \
        --out "$WORK/torch-$m.json" --ours "$OUT/cuda_bench.json" --deadline $(( tmo - 10 )) ${BASELINE_ARGS:-} \
        >> "$OUT/torch_baseline.log" 2>&1 || { say "torch baseline $m: rc $? (see torch_baseline.log)"; status=1; }
      merge_torch
      tail -8 "$OUT/torch_baseline.log"
    fi
  fi
done
if [ -n "$SELFTEST" ] && [ -z "${SKIP_FMA_BENCH:-}" ] && room 120 "bench llama8b with the FMA attention"; then
  step "8B benchmark (ours), FMA attention fallback"
  HOPSCOTCH_ATTENTION=fma timeout "$(cap 150)" "$SELFTEST" --bench llama8b --json "$WORK/bench-llama8b-fma.json" \
    >> "$OUT/selftest.log" 2>&1 || say "bench llama8b (fma): FAILED"
  merge_ours
fi

# ---------------------------------------------------------------------------------------
step summary
python3 - "$OUT" <<'PY' 2>&1 | tee -a "$OUT/summary.txt"
import json, os, sys
out = sys.argv[1]
def load(name):
    try:
        return json.load(open(os.path.join(out, name)))
    except Exception:
        return None
st = load("selftest.json")
if st:
    print(f"selftest: {st['passed']} passed, {st['failed']} failed")
    for name, d in st["models"].items():
        for c in d.get("checks", []):
            if not c.get("ok"):
                print("  FAIL", name, json.dumps(c)[:300])
ours = {}
b = load("cuda_bench.json")
for r in (b or {}).get("runs", []):
    tr = r.get("train", {})
    key = r.get("bench", "?") + ("" if r.get("attention", "auto") == "auto" else "/" + r["attention"])
    ours[key] = tr
    g = ", ".join(f"skip {x['skipped']}: {x['decode_tok_s']:.1f} tok/s" for x in r.get("generate", {}).get("runs", [])
                  if x.get("decode_tok_s") is not None)
    mfu = tr.get("mfu_4n")
    print(f"ours {key}: {tr.get('tokens_per_s', float('nan')):.0f} tok/s, MFU(4N) "
          f"{mfu if mfu is None else round(mfu, 3)}, step {tr.get('step_s_median')}, recompute layers "
          f"{tr.get('recomputed_layers')}, bit-identical {tr.get('bit_identical')}, "
          f"24GB fit {r.get('fit_24gb', {}).get('fits')}; generation {g}; error {r.get('error')}")
t = load("torch_baseline.json")
for r in (t or {}).get("results", []):
    if "tokens_per_s" in r:
        mine = ours.get(r["model"], {}).get("tokens_per_s")
        ratio = f", ours/torch {mine / r['tokens_per_s']:.2f}x" if mine else ""
        print(f"torch {r['model']} {r['mode']}: {r['tokens_per_s']:.0f} tok/s, peak {r['peak_bytes'] / 2**30:.1f} GiB, "
              f"loss_rel_vs_ours {r.get('loss_rel_vs_ours')}, sdpa {r.get('sdpa_kernels')}{ratio}")
    else:
        print(f"torch {r.get('model')} {r.get('mode')}: {r.get('error') or r.get('skipped')}")
PY
say "total $(( $(date +%s) - START ))s, status $status"
rm -rf "$WORK"
exit $status
