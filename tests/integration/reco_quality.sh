#!/usr/bin/env bash
# reco_quality.sh BIN_DIR [RATINGS] - recommendation quality through the real
# RPC equals cxm-eval's on the same split.
#
# MovieLens-small (../shared/data/movielens-latest-small/ratings.csv beside
# the repository, or RATINGS) goes into a fresh cxmd through the gRPC API
# (cxm-bench-nbe --load: UpsertExperience per movie, RecordInteractions of the
# training part of cxm-eval's 80/20 split, TrainModel), then Recommend
# k = 10 for every test customer gives NDCG@10
# (cxm-bench-nbe --quality). cxm-eval runs on the same file with the model
# the server reports (algorithm and parameters), the history the service
# scores (--max-history = cxmd's --reco-max-history, its default unless
# RECO_MAX_HISTORY says otherwise, 0 meaning recodb's RECODB_DEFAULT_HISTORY;
# recodb's default decays nothing, so no --half-life) and the same seed.
# SPLIT=random (the default) trains EASE: the automatic choice validates on
# each customer's latest interactions, the question of a live system, and
# a random split asks another (cxm-bench-nbe's default algorithm follows
# the split). SPLIT=temporal (each customer's latest 20% held out) trains
# with the automatic choice.
# Passes when the RPC's NDCG@10 is at least the split's floor (random 0.38,
# temporal 0.172: 1.25x EASE's 0.1377), over the same customers as
# cxm-eval, and equal to cxm-eval's (|diff| <= TOLERANCE, 1e-6: recodb and
# cxm-eval number customers and items by their ids when training, so the
# same ratings give the same model; before that, fresh cxmds spread over
# 8e-4).
# Exit 77 (skipped) without the data or while cxmd does not serve
# PersonalisationService.
set -euo pipefail
BIN=${1:?usage: reco_quality.sh BIN_DIR [RATINGS]}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
RATINGS=${2:-$REPO/../shared/data/movielens-latest-small/ratings.csv}
SPLIT=${SPLIT:-random}
case $SPLIT in
random) FLOOR=0.38 ;;
temporal) FLOOR=0.172 ;;
*)
  echo "reco_quality: SPLIT=$SPLIT: want random or temporal" >&2
  exit 2
  ;;
esac
TOLERANCE=${TOLERANCE:-0.000001}
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
# The history Recommend scores: cxmd's default, from its --help.
HISTORY=${RECO_MAX_HISTORY:-$("$BIN/cxmd" --help | sed -n 's/.*--reco-max-history.*default \([0-9]*\).*/\1/p')}
[[ -n $HISTORY ]] || fail "cxmd --help names no --reco-max-history default"
# 0 is recodb's default, RECODB_DEFAULT_HISTORY (cxm-eval has no 0: unset
# there scores everything, which is not the same for customers over it).
if [[ $HISTORY == 0 ]]; then
  HISTORY=$(sed -n 's/^#define RECODB_DEFAULT_HISTORY \([0-9]*\).*/\1/p' \
    "$REPO/services/personalisation/reco/recodb.h")
  [[ -n $HISTORY ]] || fail "recodb.h defines no RECODB_DEFAULT_HISTORY"
fi
# The automatic retrain policy off: the test trains once, and a training it
# did not start must not replace the model halfway through the answers.
start_server "$WORK/cxmd.log" 400 "$BIN/cxmd" --listen 127.0.0.1:0 --data "$WORK/data" \
  --reco-max-history "$HISTORY" --reco-retrain-interactions 0 ||
  fail "cxmd did not start: $(tail -3 "$WORK/cxmd.log")"

# field NAME JSON: a value of a one-line JSON object (number or string).
field() { sed -n "s/.*\"$1\":\"\\{0,1\\}\\([^\",}]*\\).*/\\1/p" <<<"$2"; }

status=0
rpc=$("$BIN/cxm-bench-nbe" --target "127.0.0.1:$port" --ratings "$RATINGS" --seed 42 \
  --split "$SPLIT" --test-frac 0.2 --k 10 --load --quality --json) ||
  status=$?
((status == 77)) && {
  echo "reco_quality: cxmd does not serve PersonalisationService yet: skipping"
  exit 77
}
((status == 0)) || fail "cxm-bench-nbe exited $status (its messages are above)"
echo "reco_quality: through the RPC: $rpc"

# The model the server trained, as cxm-eval flags ("--algo ease --lambda ...").
read -r -a model <<<"$(field eval_args "$rpc")"
[[ ${model[1]:-?} != "?" ]] || fail "the server trained a model cxm-eval does not know: $rpc"
offline=$("$BIN/cxm-eval" --ratings "$RATINGS" --split "$SPLIT" --test-frac 0.2 --seed 42 --k 10 \
  --max-history "$HISTORY" "${model[@]}" --json) ||
  fail "cxm-eval ${model[*]} --max-history $HISTORY failed (above)"
echo "reco_quality: cxm-eval ${model[*]} --max-history $HISTORY: $offline"

ndcg=$(field ndcg "$rpc") eval_ndcg=$(field ndcg "$offline")
users=$(field users "$rpc") eval_users=$(field users "$offline")
cold=$(field cold_start "$rpc")
[[ -n $ndcg && -n $eval_ndcg ]] || fail "no ndcg in an output above"
[[ $users == "$eval_users" ]] ||
  fail "the RPC scored $users customers, cxm-eval $eval_users: the splits differ"
[[ $cold == 0 ]] || fail "$cold customers with a history got cold-start answers"
diff=$(awk -v a="$ndcg" -v b="$eval_ndcg" 'BEGIN { d = a - b; printf "%.7f", d < 0 ? -d : d }')
echo "reco_quality: $SPLIT split, NDCG@10 through the RPC $ndcg, cxm-eval $eval_ndcg," \
  "|diff| $diff, history $HISTORY, $users customers"
awk -v d="$diff" -v t="$TOLERANCE" 'BEGIN { exit !(d <= t) }' ||
  fail "NDCG@10 through the RPC ($ndcg) is not cxm-eval's ($eval_ndcg) on the same split"
awk -v a="$ndcg" -v f="$FLOOR" 'BEGIN { exit !(a >= f) }' ||
  fail "NDCG@10 through the RPC is $ndcg, below $FLOOR on the $SPLIT split (cxmd" \
    "--reco-max-history $HISTORY; random split: cxm-eval --max-history 2000 gives 0.3816," \
    "200 gives 0.337)"
echo "reco_quality: ok: NDCG@10 $ndcg >= $FLOOR, within $TOLERANCE of cxm-eval's"
