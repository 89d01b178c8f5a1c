#!/usr/bin/env bash
# tls_cost.sh - what TLS costs against plaintext, for Health/Check and
# PersonalisationService/Recommend, on the same data.
#
#   bash benchmarks/tls_cost.sh [BUILD_DIR=build] [ROUNDS=3] [DURATION=3] [RATINGS]
#
# 1. A cxmd gets MovieLens-small (RATINGS, as benchmarks/reco_rpc.sh: loaded
#    through the API, trained, rules added, one Recommend request per
#    customer with MIN_HISTORY (200) training interactions), then stops.
# 2. Two cxmd start on copies of that data directory: one plaintext, one
#    TLS (an EC P-256 certificate made here with openssl; TLS 1.3 with
#    AES-GCM is what gRPC core and OpenSSL negotiate).
# 3. In each round, for each method, cxm-bench runs against the TLS server
#    and then the plaintext one at 1 connection x 1 in flight (p50, p99)
#    and at 2 connections x 32 in flight (QPS); connections are opened
#    before the warm-up, so the handshake is not in the numbers.
# 4. Medians over the rounds of each round's TLS/plaintext ratio.
#
# Environment: MIN_HISTORY (200), SMOKE=1 (the synthetic ratings of
# reco_rpc.sh instead of RATINGS). The load generator and the servers share
# the machine: compare the ratios, not absolute numbers. Exit 77 when the
# data is absent.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=../tests/integration/lib.sh
source "$root/tests/integration/lib.sh"
# shellcheck disable=SC2034 # DURATION is read by reco_lib.sh's bench
BIN=${1:-build}/bin ROUNDS=${2:-3} DURATION=${3:-3}
RATINGS=${4:-$root/../shared/data/movielens-latest-small/ratings.csv}
MIN_HISTORY=${MIN_HISTORY:-200}
RECOMMEND=/cxm.v1.PersonalisationService/Recommend
die() {
  echo "tls_cost: $*" >&2
  exit 1
}
for b in cxmd cxm-bench cxm-bench-nbe; do
  [[ -x $BIN/$b ]] || die "$BIN/$b is missing: build first (bash deploy/build.sh ${1:-build})"
done
WORK=$(mktemp -d /var/tmp/cxm-tls-cost.XXXXXX)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done; rm -rf "$WORK"' EXIT
if [[ ${SMOKE:-0} == 1 ]]; then
  RATINGS=$WORK/synthetic.csv MIN_HISTORY=20
  taste_ratings 30 1600000000 >"$RATINGS"
fi
[[ -r $RATINGS ]] || {
  echo "tls_cost: $RATINGS not found (MovieLens-small's ratings.csv): nothing to measure"
  exit 77
}

echo "== certificates"
ossl() { openssl "$@" 2>>"$WORK/openssl.log" >&2 || die "openssl $*: $(tail -3 "$WORK/openssl.log")"; }
ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=bench-ca \
  -keyout "$WORK/ca.key" -out "$WORK/ca.pem"
ossl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=cxmd \
  -keyout "$WORK/srv.key" -out "$WORK/srv.csr"
echo "subjectAltName=IP:127.0.0.1" >"$WORK/srv.ext"
ossl x509 -req -in "$WORK/srv.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" -CAcreateserial \
  -days 2 -extfile "$WORK/srv.ext" -out "$WORK/srv.pem"

echo "== loading $RATINGS through the API and training"
start_server "$WORK/load.log" 400 "$BIN/cxmd" --listen 127.0.0.1:0 --data "$WORK/data" \
  --reco-retrain-interactions 0 || die "cxmd did not start: $(tail -3 "$WORK/load.log")"
pids+=("$pid")
"$BIN/cxm-bench-nbe" --target "127.0.0.1:$port" --ratings "$RATINGS" --load --rules \
  --requests-out "$WORK/recommend.pb" --min-history "$MIN_HISTORY" --k 10 >/dev/null ||
  die "cxm-bench-nbe failed (its messages are above)"
kill -TERM "$pid" && wait "$pid" || die "the loading cxmd did not drain"
pids=()
cp -r "$WORK/data" "$WORK/data-tls"
rm -f "$WORK/data-tls/cxm.lock"

start_server "$WORK/plain.log" 400 "$BIN/cxmd" --listen 127.0.0.1:0 --data "$WORK/data" \
  --reco-retrain-interactions 0 || die "cxmd did not start: $(tail -3 "$WORK/plain.log")"
pids+=("$pid")
plain=127.0.0.1:$port plain_pid=$pid
start_server "$WORK/tls.log" 400 "$BIN/cxmd" --listen 127.0.0.1:0 --data "$WORK/data-tls" \
  --reco-retrain-interactions 0 --tls-cert "$WORK/srv.pem" --tls-key "$WORK/srv.key" ||
  die "cxmd did not start: $(tail -3 "$WORK/tls.log")"
pids+=("$pid")
secure=127.0.0.1:$port tls_pid=$pid

# shellcheck source=reco_lib.sh
source "$root/benchmarks/reco_lib.sh"
# cpu_ticks PID: user + system CPU time of a process, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# busy PID ARGS...: a 2 x 32 bench run (its JSON line in $WORK/busy.json) and the
# server's CPU microseconds per completed call, measured around it (warm-up
# calls included on both sides): unlike QPS, other tenants do not move it.
busy() {
  local pid=$1 c0 c1 out
  shift
  c0=$(cpu_ticks "$pid")
  out=$(bench --connections 2 --inflight 32 "$@")
  c1=$(cpu_ticks "$pid")
  echo "$out" >"$WORK/busy.json"
  awk -v t=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" -v n="$(field completed "$out")" \
    -v d="$DURATION" 'BEGIN {printf "%.1f\n", t * 1e6 / hz / (n * (d + 1) / d)}'
}
# one_method NAME ARGS...: ROUNDS rounds of TLS against plaintext.
one_method() {
  local name=$1 r t1 t2 p1 p2 tc pc
  shift
  ap50=() ap99=() aq=() bp50=() bp99=() bq=() r50=() r99=() rqs=() rcpu=()
  printf '\n== %s\n%-6s %-10s %10s %10s %10s %12s\n' "$name" round server 1x1-p50us 1x1-p99us \
    2x32-qps srv-cpu-us/call
  for ((r = 1; r <= ROUNDS; r++)); do
    target=$secure
    t1=$(bench --tls-ca "$WORK/ca.pem" --connections 1 --inflight 1 "$@")
    tc=$(busy "$tls_pid" --tls-ca "$WORK/ca.pem" "$@") t2=$(<"$WORK/busy.json")
    target=$plain
    p1=$(bench --connections 1 --inflight 1 "$@")
    pc=$(busy "$plain_pid" "$@") p2=$(<"$WORK/busy.json")
    pair_round "$r" tls "$t1" "$t2" plaintext "$p1" "$p2" >"$WORK/rows" # not in a subshell: it records
    paste -d' ' "$WORK/rows" <(printf '%12s\n%12s\n' "$tc" "$pc")
    rcpu+=("$(ratio "$tc" "$pc")")
  done
  printf '  %s TLS/plaintext (medians of %d rounds): p50 %s, p99 %s, QPS %s, server CPU per call %s\n' \
    "$name" "$ROUNDS" "$(median "${r50[@]}")" "$(median "${r99[@]}")" "$(median "${rqs[@]}")" \
    "$(median "${rcpu[@]}")"
  json+=",\"${name}_p50_ratio\":$(median "${r50[@]}"),\"${name}_p99_ratio\":$(median "${r99[@]}")"
  json+=",\"${name}_qps_ratio\":$(median "${rqs[@]}"),\"${name}_tls_qps\":$(median "${aq[@]}")"
  json+=",\"${name}_plain_qps\":$(median "${bq[@]}"),\"${name}_cpu_ratio\":$(median "${rcpu[@]}")"
}
json="{\"bench\":\"tls.cost\",\"rounds\":$ROUNDS"
one_method check
one_method recommend --requests "$WORK/recommend.pb" --loop --method "$RECOMMEND"
echo "$json}"
