#!/usr/bin/env bash
# cxm-bench against a real server: it must complete calls with no errors and
# print a parseable JSON line. Not a performance test (see benchmarks/).
#   bench_smoke.sh BIN_DIR [cxmd|peer]
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bin=$1
which=${2:-cxmd}
dir=$(mktemp -d /tmp/cxm-bench-smoke-XXXXXX)
pid=""
cleanup() { [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT

server=("$bin/cxmd" --listen 127.0.0.1:0 --data "$dir/data")
[ "$which" = peer ] && server=("$bin/cxm-cpp-health-peer" --listen 127.0.0.1:0)
start_server "$dir/log" 200 "${server[@]}" ||
  { echo "server did not start:"; cat "$dir/log"; exit 1; }

out=$("$bin/cxm-bench" --target "127.0.0.1:$port" --connections 2 --inflight 8 \
      --duration 1s --warmup 200ms --json)
echo "$out"
python3 - "$out" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
assert r["completed"] > 100, f"only {r['completed']} calls completed"
assert r["errors"] == 0, f"{r['errors']} calls failed"
assert r["qps"] > 0 and r["p50_us"] > 0 and r["p99_us"] >= r["p50_us"], r
print("bench smoke: ok")
PY
