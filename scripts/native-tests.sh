#!/usr/bin/env bash
# Builds the native test drivers (native/tools/*_test.cpp, linked against the CPU
# engine) and runs each; any failure fails the script. Used by CI next to vitest.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${HOPSCOTCH_NATIVE_BUILD:-$root/build-native}"
cmake -S "$root" -B "$build" -DHOPSCOTCH_CUDA=OFF -DHOPSCOTCH_NATIVE_TOOLS=ON -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j"$(nproc)"
status=0
for t in "$build"/native/tools/*_test; do
  name="$(basename "$t")"
  echo "== $name"
  "$t" || status=1
done
bash "$root/scripts/fuzz.sh" --regressions || status=1
exit $status
