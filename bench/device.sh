#!/usr/bin/env bash
# The GPU-machine script: build the CUDA backend, run the parity self-test on every
# fixture model and models/stories260k, then the PyTorch baseline. No Node is needed.
# Everything lands under $OUT (default bench/out):
#   env.txt  build.log  selftest.log  selftest.json  torch_baseline.log  torch_baseline.json
#
#   bash bench/device.sh                    # all steps
#   SKIP_BASELINE=1 bash bench/device.sh    # build + self-test only
# FIXTURES_DIR selects fixture models (default: test/fixtures/generated/models when the
# Node generator has been run, else bench/make_fixtures.py writes them).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${OUT:-$ROOT/bench/out}
BUILD=${BUILD_DIR:-/tmp/hopscotch-build}
JOBS=${JOBS:-$(nproc)}
ARCHS=${CUDA_ARCHS:-90}
mkdir -p "$OUT"
status=0
step() { echo; echo "== $*"; }

step environment
{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
  nvcc --version 2>&1 | tail -2
  cmake --version 2>&1 | head -1
  python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" 2>&1
} | tee "$OUT/env.txt"

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

step build
if ! { cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DHOPSCOTCH_CUDA=ON -DHOPSCOTCH_NATIVE_TOOLS=ON \
         -DCMAKE_CUDA_ARCHITECTURES="$ARCHS" &&
       cmake --build "$BUILD" -j "$JOBS" --target hopscotch_cuda_selftest; } > "$OUT/build.log" 2>&1; then
  tail -40 "$OUT/build.log"
  echo "BUILD FAILED"
  exit 1
fi
grep -iE "warning|error" "$OUT/build.log" | head -20
SELFTEST=$(find "$BUILD" -name hopscotch_cuda_selftest -type f | head -1)

step fixtures
FIX=${FIXTURES_DIR:-$ROOT/test/fixtures/generated/models}
if [ ! -d "$FIX" ]; then
  FIX="$BUILD/fixtures"
  python3 "$ROOT/bench/make_fixtures.py" "$FIX" || status=1
fi
MODELS=()
for d in "$FIX"/*/; do [ -f "$d/config.json" ] && MODELS+=("${d%/}"); done
MODELS+=("$ROOT/models/stories260k")
printf '%s\n' "${MODELS[@]}"

step selftest
timeout "${SELFTEST_TIMEOUT:-240}" "$SELFTEST" --json "$OUT/selftest.json" "${MODELS[@]}" 2>&1 | tee "$OUT/selftest.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

if [ -z "${SKIP_BASELINE:-}" ]; then
  step torch baseline
  PYTHONUNBUFFERED=1 timeout "${BASELINE_TIMEOUT:-300}" python3 "$ROOT/bench/torch_baseline.py" \
    --out "$OUT/torch_baseline.json" ${BASELINE_ARGS:-} 2>&1 | tee "$OUT/torch_baseline.log"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
fi

step summary
grep -E "passed, .* failed" "$OUT/selftest.log" || echo "selftest: no summary (crashed or timed out)"
grep -E '"ok":false' "$OUT/selftest.log" | cut -c1-300 || true
[ -f "$OUT/torch_baseline.log" ] && grep -E "tok/s|ERROR" "$OUT/torch_baseline.log"
exit $status
