#!/usr/bin/env bash
# reco_quality.sh BIN_DIR [RATINGS] - recommendation quality through the real
# RPC equals cxm-eval's on the same split.
#
# MovieLens-small (../shared/data/movielens-latest-small/ratings.csv beside
# the repository, or RATINGS) goes into a fresh cxmd through the gRPC API
# (cxm-bench-nbe --load: UpsertExperience per movie, RecordInteractions of the
# training part of cxm-eval's random 80/20 split, TrainModel with the default
# algorithm), then Recommend k = 10 for every test customer gives NDCG@10
# (cxm-bench-nbe --quality). cxm-eval runs on the same file with the model
# the server reports (algorithm and parameters), the service's serving
# defaults (the latest 200 interactions, a one-year recency half-life) and
# the same seed. Passes when the RPC's NDCG@10 is at least 0.38 and equals
# cxm-eval's to 1e-6 over the same users. Exit 77 (skipped) without the data
# or while cxmd does not serve PersonalisationService.
set -euo pipefail
BIN=${1:?usage: reco_quality.sh BIN_DIR [RATINGS]}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
RATINGS=${2:-$REPO/../shared/data/movielens-latest-small/ratings.csv}
FLOOR=0.38
# shellcheck source=lib.sh
source "$REPO/tests/integration/lib.sh"

fail() {
  echo "reco_quality: FAIL: $*" >&2
  exit 1
}
for b in cxmd cxm-bench-nbe cxm-eval; do
  [[ -x $BIN/$b ]] || fail "$BIN/$b is missing: build first"
done
if [[ ! -r $RATINGS ]]; then
  echo "reco_quality: $RATINGS not found: skipping (it is MovieLens-small's ratings.csv)"
  exit 77
fi

WORK=$(mktemp -d /var/tmp/cxm-reco-quality.XXXXXX)
pid=""
trap '[[ -n $pid ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$WORK"' EXIT
start_server "$WORK/cxmd.log" 400 "$BIN/cxmd" --listen 127.0.0.1:0 --data "$WORK/data" ||
  fail "cxmd did not start: $(tail -3 "$WORK/cxmd.log")"

# field NAME JSON: a value of a one-line JSON object (number or string).
field() { sed -n "s/.*\"$1\":\"\\{0,1\\}\\([^\",}]*\\).*/\\1/p" <<<"$2"; }

status=0
rpc=$("$BIN/cxm-bench-nbe" --target "127.0.0.1:$port" --ratings "$RATINGS" --seed 42 \
  --test-frac 0.2 --k 10 --load --quality --json) || status=$?
((status == 77)) && {
  echo "reco_quality: cxmd does not serve PersonalisationService yet: skipping"
  exit 77
}
((status == 0)) || fail "cxm-bench-nbe exited $status (its messages are above)"
echo "reco_quality: through the RPC: $rpc"

# The model the server trained, as cxm-eval flags ("--algo ease --lambda ...").
read -r -a model <<<"$(field eval_args "$rpc")"
[[ ${model[1]:-?} != "?" ]] || fail "the server trained a model cxm-eval does not know: $rpc"
offline=$("$BIN/cxm-eval" --ratings "$RATINGS" --split random --test-frac 0.2 --seed 42 --k 10 \
  --max-history 200 --half-life 31536000 "${model[@]}" --json) ||
  fail "cxm-eval ${model[*]} --max-history 200 --half-life 31536000 failed (above)"
echo "reco_quality: cxm-eval ${model[*]}: $offline"

ndcg=$(field ndcg "$rpc") eval_ndcg=$(field ndcg "$offline")
users=$(field users "$rpc") eval_users=$(field users "$offline")
cold=$(field cold_start "$rpc")
[[ -n $ndcg && -n $eval_ndcg ]] || fail "no ndcg in an output above"
[[ $users == "$eval_users" ]] ||
  fail "the RPC scored $users customers, cxm-eval $eval_users: the splits differ"
[[ $cold == 0 ]] || fail "$cold customers with a history got cold-start answers"
awk -v a="$ndcg" -v f="$FLOOR" 'BEGIN { exit !(a >= f) }' ||
  fail "NDCG@10 through the RPC is $ndcg, below $FLOOR"
awk -v a="$ndcg" -v b="$eval_ndcg" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d < 1e-6) }' ||
  fail "NDCG@10 through the RPC ($ndcg) differs from cxm-eval's ($eval_ndcg) on the same split"
echo "reco_quality: ok: NDCG@10 $ndcg through the RPC >= $FLOOR, equal to cxm-eval's" \
  "($eval_ndcg) over $users customers"
