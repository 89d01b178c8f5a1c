#!/usr/bin/env bash
# The feedback benchmarks against a real cxmd: benchmarks/feedback_bench.sh
# (one short round) runs cxm-bench's profile-upsert, feedback-submit,
# health and analyze-text, fails on any failed call, and prints its two
# JSON lines. Not a performance test (see benchmarks/). Exits 77 (skipped)
# while the server does not implement FeedbackService.
#   bench_feedback_smoke.sh BIN_DIR
set -euo pipefail
bin=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
err=$(mktemp /tmp/cxm-bench-feedback-smoke-XXXXXX)
trap 'rm -f "$err"' EXIT

if ! out=$(bash "$root/benchmarks/feedback_bench.sh" "$(dirname "$bin")" 1 1 2>"$err"); then
  if grep -q UNIMPLEMENTED "$err"; then
    echo "skipped: the server does not implement FeedbackService yet"
    exit 77
  fi
  cat "$err"
  exit 1
fi
cat "$err"
echo "$out"
python3 - "$out" <<'PY'
import json, sys
by = {l["bench"]: l for l in map(json.loads, sys.argv[1].splitlines())}
s, a = by["feedback.submit"], by["feedback.analyze_text"]
assert s["responses_per_s"] > 0 and s["upserts_per_s"] > 0 and s["ratio"] > 0, s
assert s["in_flight"] == 32, s
assert a["analyze_p50_us"] > 0 and a["health_p50_us"] > 0 and a["ratio"] > 0, a
PY
echo "bench feedback smoke: ok"
