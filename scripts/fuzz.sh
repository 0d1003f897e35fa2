#!/usr/bin/env bash
# Fuzzes the native input parsers (JSON, safetensors, index, config.json, GGUF) with
# libFuzzer + AddressSanitizer + UndefinedBehaviorSanitizer.
#
#   scripts/fuzz.sh [SECONDS]        fuzz every target for SECONDS each (default 60)
#   scripts/fuzz.sh --regressions    replay native/fuzz/regressions/<target>/* and the
#                                    seed corpus once (fast; for CI)
#
# Environment: FUZZ_TARGETS="fuzz_json fuzz_config" limits the targets,
#              FUZZ_BUILD (default build-fuzz/ in the repository) is the build folder,
#              FUZZ_WORK (default /tmp/hopscotch-fuzz) holds the growing corpora.
#
# Needs clang++ with the libFuzzer runtime. On Debian/Ubuntu a fresh machine lacks
# them: this script installs `clang libclang-rt-14-dev` with apt-get when it can
# (root or sudo). Without clang, --regressions falls back to g++ and a plain replay
# driver (native/fuzz/standalone_main.cpp), still under ASan + UBSan.
#
# Targets run one at a time, each as one fork-mode libFuzzer process that keeps
# going after a crash (-ignore_crashes), so one known bug does not hide the rest.
# Crash/timeout/OOM inputs land in native/fuzz/findings/<target>/; once reduced
# (fuzz_X -minimize_crash=1 FILE) copy them to native/fuzz/regressions/<target>/.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FUZZ_DIR="$ROOT/native/fuzz"
BUILD="${FUZZ_BUILD:-$ROOT/build-fuzz}"
WORK="${FUZZ_WORK:-/tmp/hopscotch-fuzz}"
TARGETS=(${FUZZ_TARGETS:-fuzz_json fuzz_index fuzz_config fuzz_safetensors fuzz_gguf})
MAX_LEN=8192

mode=fuzz
seconds=60
for arg in "$@"; do
  case "$arg" in
    --regressions) mode=regressions ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *[!0-9]*|'') echo "fuzz.sh: unknown argument '$arg'" >&2; exit 2 ;;
    *) seconds="$arg" ;;
  esac
done

have_libfuzzer() {
  command -v clang++ >/dev/null 2>&1 || return 1
  echo 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }' \
    | clang++ -x c++ -fsanitize=fuzzer,address,undefined -o /dev/null - >/dev/null 2>&1
}

install_clang() {
  local sudo=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || return 1
    sudo="sudo -n"
  fi
  command -v apt-get >/dev/null 2>&1 || return 1
  echo "fuzz.sh: installing clang and the libFuzzer runtime (apt-get install clang libclang-rt-14-dev)" >&2
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq clang libclang-rt-14-dev
}

compiler=clang++
if ! have_libfuzzer; then
  install_clang || true
  if ! have_libfuzzer; then
    if [ "$mode" = regressions ] && command -v g++ >/dev/null 2>&1; then
      echo "fuzz.sh: no clang/libFuzzer; replaying with g++ and the standalone driver" >&2
      compiler=g++
      BUILD="$BUILD-gcc"
    else
      echo "fuzz.sh: clang++ with libFuzzer is required (apt-get install clang libclang-rt-14-dev)" >&2
      exit 1
    fi
  fi
fi

cmake -S "$FUZZ_DIR" -B "$BUILD" -DCMAKE_CXX_COMPILER="$compiler" -DCMAKE_BUILD_TYPE= >/dev/null
cmake --build "$BUILD" -j2 -- --no-print-directory >/dev/null

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

dict_for() {
  case "$1" in
    fuzz_json|fuzz_index) echo "$FUZZ_DIR/dict/json.dict" ;;
    fuzz_config) echo "$FUZZ_DIR/dict/config.dict" ;;
    fuzz_safetensors) echo "$FUZZ_DIR/dict/safetensors.dict" ;;
    fuzz_gguf) echo "$FUZZ_DIR/dict/gguf.dict" ;;
  esac
}

if [ "$mode" = regressions ]; then
  failed=0
  for t in "${TARGETS[@]}"; do
    inputs=()
    for dir in "$FUZZ_DIR/regressions/$t" "$FUZZ_DIR/corpus/$t"; do
      [ -d "$dir" ] || continue
      while IFS= read -r -d '' f; do inputs+=("$f"); done < <(find "$dir" -type f ! -name '*.md' -print0 | sort -z)
    done
    n_reg=0
    [ -d "$FUZZ_DIR/regressions/$t" ] && n_reg=$(find "$FUZZ_DIR/regressions/$t" -type f ! -name '*.md' | wc -l)
    # One process per input, so every failing input is reported, not only the first.
    bad=()
    for f in "${inputs[@]}"; do
      if ! "$BUILD/$t" "$f" >"$BUILD/$t.replay.log" 2>&1; then
        bad+=("$f")
        grep -E "runtime error|ERROR: AddressSanitizer|fuzz invariant|unexpected error code|terminate" \
          "$BUILD/$t.replay.log" | head -3 | sed 's/^/    /' >&2 || true
      fi
    done
    if [ "${#bad[@]}" -eq 0 ]; then
      printf '%-18s ok    %4d inputs (%d regressions)\n' "$t" "${#inputs[@]}" "$n_reg"
    else
      failed=1
      printf '%-18s FAIL  %4d of %d inputs\n' "$t" "${#bad[@]}" "${#inputs[@]}"
      for f in "${bad[@]}"; do echo "    ${f#$ROOT/}"; done
    fi
  done
  exit "$failed"
fi

printf '%s  fuzz.sh %ss per target, clang %s\n' "$(date -u +%Y-%m-%dT%H:%MZ)" "$seconds" \
  "$(clang++ --version | sed -n '1s/.*version \([0-9.]*\).*/\1/p')"
total_findings=0
summary=()
for t in "${TARGETS[@]}"; do
  corpus="$WORK/corpus/$t"
  findings="$FUZZ_DIR/findings/$t"
  log="$WORK/$t.log"
  mkdir -p "$corpus" "$findings"
  before=$(find "$findings" -type f | wc -l)
  echo "== $t: fuzzing for ${seconds}s (log: $log)"
  set +e
  "$BUILD/$t" -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 \
    -max_total_time="$seconds" -max_len="$MAX_LEN" -timeout=10 -rss_limit_mb=2048 \
    -dict="$(dict_for "$t")" -artifact_prefix="$findings/" \
    "$corpus" "$FUZZ_DIR/corpus/$t" >"$log" 2>&1
  rc=$?
  set -e
  last=$(grep -E '^#[0-9]+: cov:' "$log" | tail -1 || true)
  execs=$(sed -n 's/^#\([0-9]*\):.*/\1/p' <<<"$last")
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  crashes=$(sed -n 's/.*oom\/timeout\/crash: \([0-9/]*\).*/\1/p' <<<"$last")
  after=$(find "$findings" -type f | wc -l)
  new=$((after - before))
  total_findings=$((total_findings + new))
  line=$(printf '%-18s execs %10s  cov %5s  oom/timeout/crash %-7s  new findings %d  (rc %d)' \
    "$t" "${execs:-?}" "${cov:-?}" "${crashes:-?}" "$new" "$rc")
  echo "$line"
  summary+=("$line")
  if [ "$new" -gt 0 ]; then
    grep -E "SUMMARY:|runtime error|fuzz invariant|unexpected error code" "$log" | sort | uniq -c | sed 's/^/    /'
  fi
done
echo "== summary"
printf '%s\n' "${summary[@]}"
if [ "$total_findings" -gt 0 ]; then
  echo "fuzz.sh: $total_findings new finding(s) under native/fuzz/findings/" >&2
  exit 1
fi
