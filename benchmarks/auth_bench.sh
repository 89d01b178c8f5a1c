#!/usr/bin/env bash
# auth_bench.sh - what checking a bearer token costs per call.
#
#   bash benchmarks/auth_bench.sh [BUILD_DIR=build] [ROUNDS=3] [DURATION=5]
#
# 1. In process: cxm-test-jwt times auth.h's check of one HS256 and one
#    ES256 JWT and of a static token as the server runs it.
# 2. Over gRPC: one cxmd per mode (auth off, static token file, HS256 JWT,
#    ES256 JWT), Health/Check (no credentials needed) and GetProfile (by
#    email, 1,000 seeded customers) with cxm-bench, 1 connection x 1 in
#    flight (latency) and 2 x 32 (throughput), alternating modes per round.
#    Prints medians; the cost per call is GetProfile's p50 with auth minus
#    without, Health/Check of the same server being the control.
set -euo pipefail
BUILD=${1:-build}
ROUNDS=${2:-3}
DURATION=${3:-5}
BIN=$BUILD/bin
for b in cxmd cxm-bench cxm-test-jwt; do
  [[ -x $BIN/$b ]] || { echo "auth_bench: $BIN/$b is missing: build first" >&2; exit 1; }
done

WORK=$(mktemp -d /tmp/cxm-auth-bench.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
  rm -rf "$WORK"
}
trap cleanup EXIT

head -c 48 /dev/urandom | base64 | tr -d '\n=' >"$WORK/hs.key"
"$BIN/cxm-test-jwt" keygen ES256 "$WORK/es.pem" "$WORK/es.pub"
STATIC="static-$(head -c 24 /dev/urandom | base64 | tr -d '\n=+/')"
echo "$STATIC bench admin" >"$WORK/tokens"
HS=$("$BIN/cxm-test-jwt" mint HS256 "$WORK/hs.key" bench "admin profile:read" 86400)
ES=$("$BIN/cxm-test-jwt" mint ES256 "$WORK/es.pem" bench "admin profile:read" 86400)

echo "== in process: one check, as on every call"
N=200000
"$BIN/cxm-test-jwt" time HS256 "$WORK/hs.key" "$HS" $N
"$BIN/cxm-test-jwt" time ES256 "$WORK/es.pub" "$ES" $((N / 20))
"$BIN/cxm-test-jwt" time static "$WORK/tokens" "$STATIC" $N

# start MODE FLAGS...: a cxmd; sets TARGET_<MODE>.
start() {
  local mode=$1
  shift
  "$BIN/cxmd" --listen 127.0.0.1:0 --data "$WORK/data-$mode" "$@" 2>"$WORK/$mode.log" &
  PIDS+=($!)
  local port=
  for _ in $(seq 200); do
    port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$WORK/$mode.log" | head -1)
    [[ -n $port ]] && break
    sleep 0.05
  done
  [[ -n $port ]] || { echo "auth_bench: cxmd ($mode) did not start" >&2; cat "$WORK/$mode.log" >&2; exit 1; }
  printf -v "TARGET_$mode" '%s' "127.0.0.1:$port"
}
start off
start static --auth-tokens "$WORK/tokens"
start hs256 --auth-jwt-key "$WORK/hs.key" --auth-jwt-alg HS256
start es256 --auth-jwt-key "$WORK/es.pub" --auth-jwt-alg ES256
declare -A TOKEN=([off]="" [static]="$STATIC" [hs256]="$HS" [es256]="$ES")

bench() {
  local mode=$1
  shift
  local target_var="TARGET_$mode"
  CXM_TOKEN=${TOKEN[$mode]} "$BIN/cxm-bench" --target "${!target_var}" --customers 1000 --json "$@" \
    2>"$WORK/bench.err" |
    python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); print(d["qps"], d["p50_us"], d["p99_us"], d["errors"])' ||
    { echo "auth_bench: cxm-bench failed: $(cat "$WORK/bench.err")" >&2; exit 1; }
}

for mode in off static hs256 es256; do
  CXM_TOKEN=${TOKEN[$mode]} "$BIN/cxm-bench" --target "$(eval echo \$TARGET_$mode)" \
    --generator profile-upsert --customers 1000 --seed-customers --duration 200ms --warmup 0s \
    >/dev/null 2>&1
done

: >"$WORK/rows"
for r in $(seq "$ROUNDS"); do
  for load in "1 1" "2 32"; do
    set -- $load
    for mode in off static hs256 es256; do
      for g in health profile-get; do
        read -r qps p50 p99 errs < <(bench "$mode" --generator "$g" --connections "$1" \
          --inflight "$2" --duration "${DURATION}s" --warmup 1s)
        printf '%s %s %s %sx%s %s %s %s %s\n' "$r" "$mode" "$g" "$1" "$2" "$qps" "$p50" "$p99" \
          "$errs" | tee -a "$WORK/rows"
      done
    done
  done
done

echo
echo "== summary (medians over $ROUNDS rounds; cost = GetProfile p50 - the same with auth off)"
python3 - "$WORK/rows" <<'PY'
import sys, statistics as st
rows = [l.split() for l in open(sys.argv[1])]
by = {}
for r, mode, g, load, qps, p50, p99, errs in rows:
    by.setdefault((load, mode, g), []).append((float(qps), float(p50), float(p99), int(errs)))
for load in ("1x1", "2x32"):
    base = st.median(p for _, p, _, _ in by[(load, "off", "profile-get")])
    for mode in ("off", "static", "hs256", "es256"):
        for g in ("health", "profile-get"):
            xs = by[(load, mode, g)]
            p50 = st.median(p for _, p, _, _ in xs)
            extra = f"  cost {p50 - base:+7.1f} us" if g == "profile-get" else ""
            print(f"  {load:5} {mode:7} {g:12} qps {st.median(q for q, _, _, _ in xs):9.0f}"
                  f"  p50 {p50:8.1f} us  p99 {st.median(p for _, _, p, _ in xs):8.1f} us"
                  f"  errors {sum(e for *_, e in xs)}{extra}")
PY
