#!/usr/bin/env bash
# The whole test suite: install what is missing, build twice (optimised, and
# with AddressSanitizer + UndefinedBehaviorSanitizer), run ctest in both, then
# fuzz each libFuzzer target for a bounded time in a clang build.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/deploy/install-deps.sh"

bash "$root/deploy/build.sh" "$root/build"
bash "$root/deploy/build.sh" "$root/build-asan" -DCXM_SANITIZE=ON -DCXM_BUILD_CPP_PEER=OFF \
  -DCMAKE_BUILD_TYPE=Debug

echo "== tests (optimised build) =="
ctest --test-dir "$root/build" --output-on-failure -j2
echo "== tests (ASan + UBSan build) =="
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir "$root/build-asan" --output-on-failure -j2 -LE bench

# libFuzzer (clang, ASan + UBSan): only the fuzz targets are built here;
# each runs CXM_FUZZ_SECONDS (default 8) from its committed corpus.
echo "== fuzzing (clang libFuzzer, ASan + UBSan) =="
CC=clang cmake -S "$root" -B "$root/build-fuzz" -DCXM_WERROR=ON -DCXM_FUZZ=ON \
  -DCXM_BUILD_CPP_PEER=OFF >/dev/null
cmake --build "$root/build-fuzz" -j"$(nproc)" --target fuzz
bash "$root/tests/fuzz/run_fuzz.sh" "$root/build-fuzz/bin"
