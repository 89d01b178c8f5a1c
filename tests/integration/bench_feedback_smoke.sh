#!/usr/bin/env bash
# The feedback benchmarks against a real cxmd: cxm-bench's feedback-submit
# and analyze-text complete with no errors, and benchmarks/feedback_bench.sh
# prints its two JSON lines. Not a performance test (see benchmarks/).
# Exits 77 (skipped) while the server does not implement FeedbackService.
#   bench_feedback_smoke.sh BIN_DIR
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bin=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
dir=$(mktemp -d /tmp/cxm-bench-feedback-smoke-XXXXXX)
pid=""
cleanup() { [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT

start_server "$dir/log" 200 "$bin/cxmd" --listen 127.0.0.1:0 --data "$dir/data" ||
  { echo "server did not start:"; cat "$dir/log"; exit 1; }
target=127.0.0.1:$port

if ! "$bin/cxmctl" --target "$target" feedback survey upsert --id bench_nps --kind nps \
  --touchpoint checkout_page --channel web --gap checkout_page --comment "Why?" >"$dir/probe" 2>&1; then
  if grep -q UNIMPLEMENTED "$dir/probe"; then
    echo "skipped: the server does not implement FeedbackService yet"
    exit 77
  fi
  cat "$dir/probe"
  exit 1
fi

for gen in feedback-submit analyze-text; do
  out=$("$bin/cxm-bench" --target "$target" --generator "$gen" --connections 1 --inflight 4 \
        --duration 500ms --warmup 100ms --json)
  python3 - "$out" "$gen" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
assert r["completed"] > 0, f"{sys.argv[2]}: no call completed"
assert r["errors"] == 0, f"{sys.argv[2]}: {r['errors']} calls failed: {r['errors_by_status']}"
print(f"{sys.argv[2]}: {r['completed']} calls, p50 {r['p50_us']} us")
PY
done
kill -TERM "$pid" && wait "$pid" 2>/dev/null
pid=""

out=$(bash "$root/benchmarks/feedback_bench.sh" "$(dirname "$bin")" 1 1 2>"$dir/err") ||
  { cat "$dir/err"; exit 1; }
echo "$out"
python3 - "$out" <<'PY'
import json, sys
lines = [json.loads(l) for l in sys.argv[1].splitlines()]
by = {l["bench"]: l for l in lines}
s, a = by["feedback.submit"], by["feedback.analyze_text"]
assert s["responses_per_s"] > 0 and s["upserts_per_s"] > 0 and s["ratio"] > 0, s
assert a["analyze_p50_us"] > 0 and a["health_p50_us"] > 0 and a["ratio"] > 0, a
PY
echo "bench feedback smoke: ok"
