#!/usr/bin/env bash
# Configure and build cxm into DIR (default build/); extra arguments go to cmake.
#   deploy/build.sh [DIR] [-DCXM_SANITIZE=ON ...]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-$root/build}
shift || true
cmake -S "$root" -B "$dir" -DCXM_WERROR=ON "$@" >/dev/null
cmake --build "$dir" -j"$(nproc)"
