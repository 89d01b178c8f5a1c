#!/usr/bin/env bash
# reco_rpc.sh - PersonalisationService/Recommend against Health/Check on one
# cxmd, at full quality.
#
#   bash benchmarks/reco_rpc.sh [BUILD_DIR=build] [ROUNDS=5] [DURATION=5] [RATINGS]
#
# 1. A fresh cxmd gets MovieLens-small (RATINGS, default
#    ../shared/data/movielens-latest-small/ratings.csv beside the repository)
#    through its gRPC API with cxm-bench-nbe --load: every movie of the
#    training part an experience, the training part of cxm-eval's random
#    80/20 split as interactions, TrainModel with cxm-bench-nbe's default
#    for that split (EASE: the automatic choice validates on the latest
#    interactions, the question of a live system, not of a random split);
#    then
#    --quality prints NDCG@10 through the RPC (the model being measured is the
#    one reaching it); then --rules puts eligibility rules (channel,
#    placement, stage, segments, consent), contact caps and pauses, values
#    and weights on part of the catalogue; then --requests-out writes one
#    Recommend (k = 10, by customer id, web / home_banner / consideration)
#    for each customer with at least 200 training interactions, so that
#    every call scores a 200-item history.
# 2. In alternating rounds, with cxm-bench on the same connections settings:
#    Health/Check and Recommend (--requests FILE --loop) at 1 connection x 1
#    in flight (p50, p99) and at 2 connections x 32 in flight (QPS).
# 3. Medians over the rounds of each round's ratio, against the targets:
#    Recommend p50 <= 1.3x Check p50, p99 <= 2x Check p99, QPS >= 0.8x.
#
# Environment: MIN_HISTORY (200), RECO_MAX_HISTORY (cxmd's --reco-max-history:
# the latest interactions Recommend scores; unset = cxmd's default), SMOKE=1 (a small synthetic ratings file of
# 300 users instead of RATINGS, MIN_HISTORY 20: the ctest smoke run, which
# checks that everything runs and asserts no speed). The load generator and
# the server share the machine: compare the ratios, not absolute numbers.
# Prints the summary and one JSON line; exit 77 when cxmd does not serve
# PersonalisationService yet or the data is absent.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=../tests/integration/lib.sh
source "$root/tests/integration/lib.sh"
# shellcheck disable=SC2034 # DURATION is read by reco_lib.sh's bench
BIN=${1:-build}/bin ROUNDS=${2:-5} DURATION=${3:-5}
RATINGS=${4:-$root/../shared/data/movielens-latest-small/ratings.csv}
MIN_HISTORY=${MIN_HISTORY:-200}
RECOMMEND=/cxm.v1.PersonalisationService/Recommend
die() {
  echo "reco_rpc: $*" >&2
  exit 1
}
for b in cxmd cxm-bench cxm-bench-nbe; do
  [[ -x $BIN/$b ]] || die "$BIN/$b is missing: build first (bash deploy/build.sh ${1:-build})"
done

WORK=$(mktemp -d /var/tmp/cxm-reco-rpc.XXXXXX)
pid=""
trap '[[ -n $pid ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$WORK"' EXIT

if [[ ${SMOKE:-0} == 1 ]]; then
  # 300 users of ~40 items among 400 in 10 taste clusters (lib.sh).
  RATINGS=$WORK/synthetic.csv MIN_HISTORY=20
  taste_ratings 30 1600000000 >"$RATINGS"
fi
if [[ ! -r $RATINGS ]]; then
  echo "reco_rpc: $RATINGS not found (MovieLens-small's ratings.csv): nothing to measure"
  exit 77
fi

# The retrain policy off: the benchmark trains once, with TrainModel.
start_server "$WORK/cxmd.log" 400 "$BIN/cxmd" --listen 127.0.0.1:0 --data "$WORK/data" \
  --reco-retrain-interactions 0 ${RECO_MAX_HISTORY:+--reco-max-history "$RECO_MAX_HISTORY"} ||
  die "cxmd did not start: $(tail -3 "$WORK/cxmd.log")"
target=127.0.0.1:$port

echo "== loading $RATINGS through the API, training, NDCG@10 through Recommend"
status=0
"$BIN/cxm-bench-nbe" --target "$target" --ratings "$RATINGS" --load --quality --rules \
  --requests-out "$WORK/recommend.pb" --min-history "$MIN_HISTORY" --k 10 || status=$?
((status == 77)) && {
  echo "reco_rpc: cxmd does not serve PersonalisationService yet: nothing to measure"
  exit 77
}
((status == 0)) || die "cxm-bench-nbe failed (exit $status; its messages are above)"

# shellcheck source=reco_lib.sh
source "$root/benchmarks/reco_lib.sh"
verdict() { awk -v v="$1" -v t="$2" -v op="$3" 'BEGIN {
  ok = (op == ">=") ? v + 0 >= t : v + 0 <= t; print ok ? "ok" : "MISSED" }'; }
reco() { bench --requests "$WORK/recommend.pb" --loop --method "$RECOMMEND" "$@"; }

printf '\n%-6s %-10s %10s %10s %10s\n' round rpc 1x1-p50us 1x1-p99us 2x32-qps
for ((r = 1; r <= ROUNDS; r++)); do
  h1=$(bench --connections 1 --inflight 1)
  c1=$(reco --connections 1 --inflight 1)
  h2=$(bench --connections 2 --inflight 32)
  c2=$(reco --connections 2 --inflight 32)
  pair_round "$r" Recommend "$c1" "$c2" Check "$h1" "$h2"
done

R50=$(median "${r50[@]}") R99=$(median "${r99[@]}") RQ=$(median "${rqs[@]}")
printf '\n== summary (medians of %d rounds; ratios taken within each round)\n' "$ROUNDS"
printf '  %-22s %10s %10s %8s\n' "" Recommend Check ratio
printf '  %-22s %10s %10s %8s  target <= 1.3: %s\n' "p50 us, 1 in flight" "$(median "${ap50[@]}")" \
  "$(median "${bp50[@]}")" "$R50" "$(verdict "$R50" 1.3 "<=")"
printf '  %-22s %10s %10s %8s  target <= 2.0: %s\n' "p99 us, 1 in flight" "$(median "${ap99[@]}")" \
  "$(median "${bp99[@]}")" "$R99" "$(verdict "$R99" 2 "<=")"
printf '  %-22s %10.0f %10.0f %8s  target >= 0.8: %s\n' "QPS, 2 x 32 in flight" "$(median "${aq[@]}")" \
  "$(median "${bq[@]}")" "$RQ" "$(verdict "$RQ" 0.8 ">=")"
echo "{\"bench\":\"personalisation.recommend\",\"recommend_p50_us\":$(median "${ap50[@]}"),\"check_p50_us\":$(median "${bp50[@]}"),\"p50_ratio\":$R50,\"recommend_p99_us\":$(median "${ap99[@]}"),\"check_p99_us\":$(median "${bp99[@]}"),\"p99_ratio\":$R99,\"recommend_qps\":$(median "${aq[@]}"),\"check_qps\":$(median "${bq[@]}"),\"qps_ratio\":$RQ,\"rounds\":$ROUNDS}"
