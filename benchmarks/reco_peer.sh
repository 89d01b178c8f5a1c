#!/usr/bin/env bash
# reco_peer.sh - cxm's PersonalisationService/Recommend against a Python
# grpcio + numpy/scipy peer (benchmarks/reco_peer.py) serving the same model
# and the same histories, in the same run. A benchmark only, not a test.
#
#   bash benchmarks/reco_peer.sh [BUILD_DIR=build] [ROUNDS=5] [DURATION=5] [RATINGS]
#
# 1. cxmd is loaded as reco_rpc.sh loads it (cxm-bench-nbe --load --rules
#    --requests-out: MovieLens-small's training part, TrainModel, rules on part
#    of the catalogue, one Recommend by customer id per customer with at least
#    MIN_HISTORY training interactions), with --histories-out writing those
#    customers' interactions for the peer.
# 2. cxmd stops (its data directory has one owner), cxm-bench-reco
#    --export-from writes its serving model (recodb_export, "CXMX"), and cxmd
#    starts again on the same directory; the peer loads the model and the
#    histories.
# 3. Every request once to both: how many experiences the answers share and
#    how far apart their model_score is on those (one JSON line).
# 4. In alternating rounds, cxm-bench with the same request file against cxm
#    and against the peer: 1 connection x 1 in flight (p50, p99) and
#    2 connections x 32 in flight (QPS); medians of each round's cxm/peer ratio.
#
# The peer does less work: no eligibility rules, caps, values or weights, no
# identity resolution, and it always scores (cxmd may answer from its
# candidate cache). Both servers and the load generator share the machine.
# Environment: MIN_HISTORY (200), RECO_MAX_HISTORY (both servers' scored
# history; unset = 2000, cxmd's default), PEER_THREADS (8), PEER_CACHE=1 (the
# peer keeps each answer, as cxmd's candidate cache does: grpcio's floor), PYTHON
# (/usr/bin/python3, which has Debian's python3-grpcio etc.).
# Exit 77 when python3-grpcio, -grpc-tools, -numpy or -scipy are missing, the
# data is absent, or cxmd does not serve PersonalisationService.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=../tests/integration/lib.sh
source "$root/tests/integration/lib.sh"
# shellcheck source=reco_lib.sh
source "$root/benchmarks/reco_lib.sh"
# shellcheck disable=SC2034 # DURATION is read by reco_lib.sh's bench
BIN=${1:-build}/bin ROUNDS=${2:-5} DURATION=${3:-5}
RATINGS=${4:-$root/../shared/data/movielens-latest-small/ratings.csv}
MIN_HISTORY=${MIN_HISTORY:-200} PYTHON=${PYTHON:-/usr/bin/python3}
MAX_HISTORY=${RECO_MAX_HISTORY:-2000}
RECOMMEND=/cxm.v1.PersonalisationService/Recommend
die() {
  echo "reco_peer: $*" >&2
  exit 1
}
skip() {
  echo "reco_peer: $*: nothing to measure"
  exit 77
}
for b in cxmd cxm-bench cxm-bench-nbe cxm-bench-reco; do
  [[ -x $BIN/$b ]] || die "$BIN/$b is missing: build first (bash deploy/build.sh ${1:-build})"
done
"$PYTHON" -c 'import grpc, grpc_tools, numpy, scipy' 2>/dev/null ||
  skip "$PYTHON lacks grpc, grpc_tools, numpy or scipy (apt-get install python3-grpcio python3-grpc-tools python3-numpy python3-scipy)"
[[ -r $RATINGS ]] || skip "$RATINGS not found (MovieLens-small's ratings.csv)"

WORK=$(mktemp -d /var/tmp/cxm-reco-peer.XXXXXX)
cxm_pid="" peer_pid=""
# stop PID: TERM and wait (cxmd releases its data directory as it exits).
stop() {
  [[ -n $1 ]] || return 0
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
trap 'stop "$cxm_pid"; stop "$peer_pid"; rm -rf "$WORK"' EXIT

# start_cxmd LOG: cxmd on $WORK/data as reco_rpc.sh starts it; sets cxm_pid
# and cxm_target. Each start has its own LOG, created first: start_server may
# read it before the server opens it, and must not find an older port there.
start_cxmd() {
  : >"$WORK/$1"
  start_server "$WORK/$1" 400 "$BIN/cxmd" --listen 127.0.0.1:0 --data "$WORK/data" \
    --reco-retrain-interactions 0 --reco-max-history "$MAX_HISTORY" ||
    die "cxmd did not start: $(tail -3 "$WORK/$1")"
  cxm_pid=$pid cxm_target=127.0.0.1:$port
}

start_cxmd cxmd.log
echo "== loading $RATINGS through the API, training, rules, requests and histories"
status=0
# cxm-bench-nbe trains EASE on this random split by default: the peer serves
# one set of item rows (the export refuses a sequence model).
"$BIN/cxm-bench-nbe" --target "$cxm_target" --ratings "$RATINGS" --load --rules \
  --requests-out "$WORK/recommend.pb" --histories-out "$WORK/histories.csv" \
  --min-history "$MIN_HISTORY" --k 10 || status=$?
((status == 77)) && skip "cxmd does not serve PersonalisationService yet"
((status == 0)) || die "cxm-bench-nbe failed (exit $status; its messages are above)"

echo "== exporting the serving model, restarting cxmd, starting the peer"
stop "$cxm_pid"
cxm_pid=""
"$BIN/cxm-bench-reco" --export-from "$WORK/data" --export "$WORK/model.cxmx" ||
  die "the export failed (its message is above)"
start_cxmd cxmd-again.log
: >"$WORK/peer.log"
start_server "$WORK/peer.log" 2400 "$PYTHON" "$root/benchmarks/reco_peer.py" \
  --model "$WORK/model.cxmx" --histories "$WORK/histories.csv" --proto-dir "$root/proto" \
  --threads "${PEER_THREADS:-8}" --max-history "$MAX_HISTORY" \
  ${PEER_CACHE:+--cache} ||
  die "the peer did not start: $(tail -3 "$WORK/peer.log")"
peer_pid=$pid peer_target=127.0.0.1:$port
head -1 "$WORK/peer.log"
echo "== the same requests to both: shared experiences and model_score agreement"
"$PYTHON" "$root/benchmarks/reco_peer.py" --proto-dir "$root/proto" \
  --compare "$cxm_target" "$peer_target" --requests "$WORK/recommend.pb" ||
  die "the comparison failed (its message is above)"

# reco TARGET ARGS...: cxm-bench Recommend with the request file on TARGET.
reco() {
  # shellcheck disable=SC2034 # read by reco_lib.sh's bench
  local target=$1
  shift
  bench --requests "$WORK/recommend.pb" --loop --method "$RECOMMEND" "$@"
}

printf '\n%-6s %-10s %10s %10s %10s\n' round server 1x1-p50us 1x1-p99us 2x32-qps
for ((r = 1; r <= ROUNDS; r++)); do
  c1=$(reco "$cxm_target" --connections 1 --inflight 1)
  p1=$(reco "$peer_target" --connections 1 --inflight 1)
  c2=$(reco "$cxm_target" --connections 2 --inflight 32)
  p2=$(reco "$peer_target" --connections 2 --inflight 32)
  pair_round "$r" cxm "$c1" "$c2" peer "$p1" "$p2"
done

R50=$(median "${r50[@]}") R99=$(median "${r99[@]}") RQ=$(median "${rqs[@]}")
printf '\n== summary (medians of %d rounds; ratios cxm/peer taken within each round)\n' "$ROUNDS"
printf '  %-22s %10s %10s %8s\n' "" cxm peer ratio
printf '  %-22s %10s %10s %8s  (< 1: cxm faster)\n' "p50 us, 1 in flight" \
  "$(median "${ap50[@]}")" "$(median "${bp50[@]}")" "$R50"
printf '  %-22s %10s %10s %8s  (< 1: cxm faster)\n' "p99 us, 1 in flight" \
  "$(median "${ap99[@]}")" "$(median "${bp99[@]}")" "$R99"
printf '  %-22s %10.0f %10.0f %8s  (> 1: cxm faster)\n' "QPS, 2 x 32 in flight" \
  "$(median "${aq[@]}")" "$(median "${bq[@]}")" "$RQ"
echo "{\"bench\":\"personalisation.recommend_peer\",\"cxm_p50_us\":$(median "${ap50[@]}"),\"peer_p50_us\":$(median "${bp50[@]}"),\"p50_ratio\":$R50,\"cxm_p99_us\":$(median "${ap99[@]}"),\"peer_p99_us\":$(median "${bp99[@]}"),\"p99_ratio\":$R99,\"cxm_qps\":$(median "${aq[@]}"),\"peer_qps\":$(median "${bq[@]}"),\"qps_ratio\":$RQ,\"rounds\":$ROUNDS}"
