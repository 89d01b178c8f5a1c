#!/usr/bin/env bash
# ctest reference.selftest: the DuckDB reference against hand-worked answers
# on a tiny world, and compare.mjs against differences it must report. Runs
# only node (no cxmd). SKIP (77) when DuckDB cannot be installed.
#   selftest.sh CACHE
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${1:?usage: selftest.sh CACHE}
bash "$here/setup.sh" "$cache" || exit $?
dir=$(mktemp -d /tmp/cxm-ref-selftest-XXXXXX)
trap 'rm -rf "$dir"' EXIT
node "$here/selftest.mjs" "$cache" "$dir"
