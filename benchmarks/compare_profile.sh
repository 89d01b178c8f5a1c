#!/usr/bin/env bash
# compare_profile.sh - the profile service against the empty RPC, on one cxmd.
#
#   bash benchmarks/compare_profile.sh [BUILD_DIR=build] [ROUNDS=5] [DURATION=5] [CUSTOMERS=100000]
#
# Seeds CUSTOMERS synthetic customers (email, phone and CRM id each, 3-5
# attributes), then in alternating rounds drives Health/Check, GetProfile
# (by email) and ResolveIdentity (by email) with the same load (cxm-bench,
# 2 connections x 32 in flight, and 1 x 1), and finally measures durable
# UpsertProfile throughput with 32 in flight. Reports medians and the
# p50 ratio of each profile read to Health/Check measured in the same round.
set -euo pipefail
BUILD=${1:-build}
ROUNDS=${2:-5}
DURATION=${3:-5}
CUSTOMERS=${4:-100000}
BIN=$BUILD/bin
for b in cxmd cxm-bench; do
  [[ -x $BIN/$b ]] || { echo "compare_profile: $BIN/$b is missing: build first" >&2; exit 1; }
done

WORK=$(mktemp -d /tmp/cxm-profile-bench.XXXXXX)
cleanup() { [[ -n ${PID:-} ]] && kill -TERM "$PID" 2>/dev/null && wait "$PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

"$BIN/cxmd" --listen 127.0.0.1:0 --data "$WORK/data" 2>"$WORK/cxmd.log" &
PID=$!
for _ in $(seq 200); do
  PORT=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$WORK/cxmd.log" | head -1)
  [[ -n $PORT ]] && break
  sleep 0.05
done
[[ -n ${PORT:-} ]] || { echo "compare_profile: cxmd did not start" >&2; cat "$WORK/cxmd.log" >&2; exit 1; }
TARGET=127.0.0.1:$PORT

# One cxm-bench run; prints "qps p50_us p99_us errors".
bench() {
  "$BIN/cxm-bench" --target "$TARGET" --customers "$CUSTOMERS" --json "$@" 2>"$WORK/bench.err" |
    python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); print(d["qps"], d["p50_us"], d["p99_us"], d["errors"])' ||
    { echo "compare_profile: cxm-bench failed: $(cat "$WORK/bench.err")" >&2; exit 1; }
}

echo "== seeding $CUSTOMERS customers"
"$BIN/cxm-bench" --target "$TARGET" --generator profile-upsert --customers "$CUSTOMERS" \
  --seed-customers --duration 1s --warmup 0s 2>&1 | grep seeded

: >"$WORK/rows"
for r in $(seq "$ROUNDS"); do
  for load in "2 32" "1 1"; do
    set -- $load
    for g in health profile-get profile-resolve; do
      read -r qps p50 p99 errs < <(bench --generator "$g" --connections "$1" --inflight "$2" \
        --duration "${DURATION}s" --warmup 1s)
      printf '%s %s %sx%s %s %s %s %s\n' "$r" "$g" "$1" "$2" "$qps" "$p50" "$p99" "$errs" | tee -a "$WORK/rows"
    done
  done
done

echo "== durable UpsertProfile, 2 connections x 16 in flight (32), ${DURATION}s"
read -r uqps up50 up99 uerrs < <(bench --generator profile-upsert --connections 2 --inflight 16 \
  --duration "${DURATION}s" --warmup 1s)
echo "upsert qps $uqps p50 $up50 us p99 $up99 us errors $uerrs"

echo
echo "== summary (medians over $ROUNDS rounds; ratio = p50 / Health p50 of the same round)"
python3 - "$WORK/rows" <<'PY'
import sys, statistics as st
rows = [l.split() for l in open(sys.argv[1])]
by = {}
for r, g, load, qps, p50, p99, errs in rows:
    by.setdefault((load, g), []).append((int(r), float(qps), float(p50), float(p99)))
for load in ("2x32", "1x1"):
    health = {r: p50 for r, _, p50, _ in by[(load, "health")]}
    for g in ("health", "profile-get", "profile-resolve"):
        xs = by[(load, g)]
        ratio = st.median(p50 / health[r] for r, _, p50, _ in xs)
        target = "" if g == "health" else ("  target <= 1.30: ok" if ratio <= 1.3 else "  target <= 1.30: MISSED")
        print(f"  {load:5} {g:16} qps {st.median(q for _, q, _, _ in xs):9.0f}  p50 {st.median(p for _, _, p, _ in xs):8.1f} us"
              f"  p99 {st.median(p for _, _, _, p in xs):8.1f} us  p50/health {ratio:5.2f}{target}")
PY
