#!/usr/bin/env bash
# The journey benchmarks against a real cxmd: cxm-bench's Track and
# analytics workloads and cxm-bench-track must complete with no errors and
# print parseable JSON. Not a performance test (see benchmarks/). Exits 77
# (skipped) while the server does not implement JourneyService.
#   bench_journey_smoke.sh BIN_DIR
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bin=$1
dir=$(mktemp -d /tmp/cxm-bench-journey-smoke-XXXXXX)
pid=""
cleanup() { [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT

start_server "$dir/log" 200 "$bin/cxmd" --listen 127.0.0.1:0 --data "$dir/data" ||
  { echo "server did not start:"; cat "$dir/log"; exit 1; }
target=127.0.0.1:$port

"$bin/cxm-bench" --target "$target" --generator track-one --connections 1 --inflight 1 \
  --duration 200ms --warmup 0ms >"$dir/probe" 2>&1 || true
if grep -q UNIMPLEMENTED "$dir/probe"; then
  echo "skipped: the server does not implement JourneyService yet"
  exit 77
fi

# check JSON GENERATOR: the cxm-bench line completed calls and none failed.
check() {
  python3 - "$1" "$2" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
assert r["completed"] > 0, f"{sys.argv[2]}: no call completed"
assert r["errors"] == 0, f"{sys.argv[2]}: {r['errors']} calls failed: {r['errors_by_status']}"
print(f"{sys.argv[2]}: {r['completed']} calls, p50 {r['p50_us']} us")
PY
}
for gen in track-one track-batch journey-funnel journey-paths journey-touchpoints; do
  out=$("$bin/cxm-bench" --target "$target" --generator "$gen" --batch 50 --connections 1 \
        --inflight 4 --duration 500ms --warmup 100ms --json)
  check "$out" "$gen"
done

out=$("$bin/cxm-bench-track" --target "$target" --batch 100 --inflight 4 --duration 1s \
      --warmup 200ms --json)
echo "$out"
python3 - "$out" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
assert r["messages"] > 0 and r["events"] == r["messages"] * 100, r
assert r["accepted"] == r["events"] and r["rejected"] == 0 and r["duplicates"] == 0, r
assert r["events_per_s"] > 0 and r["ack_p99_us"] >= r["ack_p50_us"] > 0, r
PY

# A cxm-gen file through TrackStream, each record once: every event stored.
"$bin/cxm-gen" --customers 50 --days 5 --start-ms $(( ($(date +%s) - 7 * 86400) * 1000 )) \
  --formats pb --out "$dir/world" >/dev/null
"$bin/cxm-bench-track" --target "$target" --requests "$dir/world/track.pb" --json >/dev/null
echo "bench journey smoke: ok"
