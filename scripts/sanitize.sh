#!/usr/bin/env bash
# Builds the CPU engine and every native test driver (native/tools/*_test.cpp) with
# AddressSanitizer + UndefinedBehaviorSanitizer, runs each driver, then replays the
# fuzz regression inputs and seed corpus (scripts/fuzz.sh --regressions). Exits
# non-zero when any build, driver or replay fails, leaks, or trips a sanitizer.
#
#   scripts/sanitize.sh
#
# Environment: SANITIZE_BUILD (default build-sanitize/ in the repository) is the build folder,
#              SANITIZE_TIMEOUT (default 300) caps each driver in seconds,
#              SANITIZE_SKIP_FUZZ=1 skips the fuzz regression replay.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${SANITIZE_BUILD:-$ROOT/build-sanitize}"
TIMEOUT="${SANITIZE_TIMEOUT:-300}"
MODEL="${HOPSCOTCH_TEST_MODEL:-$ROOT/models/stories260k}"

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

echo "== configure + build ($BUILD)"
start=$SECONDS
if ! cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHOPSCOTCH_SANITIZE=ON \
       -DHOPSCOTCH_NATIVE_TOOLS=ON -DHOPSCOTCH_CUDA=OFF >"$BUILD.configure.log" 2>&1; then
  cat "$BUILD.configure.log" >&2
  echo "sanitize.sh: configure failed" >&2
  exit 1
fi
if ! cmake --build "$BUILD" -j2 >"$BUILD.build.log" 2>&1; then
  grep -E "error|Error" "$BUILD.build.log" | head -40 >&2
  echo "sanitize.sh: build failed (full log: $BUILD.build.log)" >&2
  exit 1
fi
echo "   built in $((SECONDS - start))s"

# Inputs some drivers take: the malformed-safetensors corpus for io_test.
malformed=""
if command -v node >/dev/null 2>&1; then
  malformed="$BUILD/malformed"
  rm -rf "$malformed"
  node "$ROOT/test/fixtures/make-malformed.mjs" "$malformed" >/dev/null || malformed=""
fi

driver_args() {
  case "$1" in
    io_test) echo "$MODEL${malformed:+ --corpus $malformed}" ;;
    engine_test) echo "$MODEL" ;;
    *) echo "" ;;
  esac
}

failed=()
results=()
drivers=$(find "$BUILD" -maxdepth 3 -type f -name '*_test' -perm -u+x | sort)
if [ -z "$drivers" ]; then
  echo "sanitize.sh: no *_test drivers were built" >&2
  exit 1
fi
for exe in $drivers; do
  name=$(basename "$exe")
  log="$BUILD/$name.log"
  # shellcheck disable=SC2046
  echo "== $name $(driver_args "$name")"
  start=$SECONDS
  timeout "$TIMEOUT" "$exe" $(driver_args "$name") >"$log" 2>&1
  rc=$?
  took=$((SECONDS - start))
  tail -n 3 "$log" | sed 's/^/   /'
  if [ "$rc" -eq 0 ] && ! grep -qE "ERROR: (Address|Leak)Sanitizer|runtime error:" "$log"; then
    results+=("$(printf '%-14s ok    %4ds' "$name" "$took")")
  else
    [ "$rc" -eq 124 ] && why="timed out after ${TIMEOUT}s" || why="exit $rc"
    grep -E "ERROR: |runtime error:|SUMMARY:|FAIL" "$log" | head -10 | sed 's/^/   /' >&2
    results+=("$(printf '%-14s FAIL  %4ds  %s (log: %s)' "$name" "$took" "$why" "$log")")
    failed+=("$name")
  fi
done

if [ "${SANITIZE_SKIP_FUZZ:-0}" != 1 ]; then
  echo "== fuzz regressions (scripts/fuzz.sh --regressions)"
  start=$SECONDS
  if bash "$ROOT/scripts/fuzz.sh" --regressions; then
    results+=("$(printf '%-14s ok    %4ds' fuzz-replay $((SECONDS - start)))")
  else
    results+=("$(printf '%-14s FAIL  %4ds' fuzz-replay $((SECONDS - start)))")
    failed+=(fuzz-replay)
  fi
fi

echo "== summary"
printf '%s\n' "${results[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "sanitize.sh: failed: ${failed[*]}" >&2
  exit 1
fi
echo "sanitize.sh: all passed"
