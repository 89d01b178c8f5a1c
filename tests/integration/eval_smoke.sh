#!/usr/bin/env bash
# eval_smoke.sh BIN_DIR - cxm-eval end to end: on synthetic interactions with
# clustered tastes, collaborative filtering must clearly beat popularity
# (item-kNN, EASE and ALS NDCG@10 > 1.2 x popularity's), and a bad line of a
# MovieLens-headed file is refused with its file:line. If the MovieLens small
# set is present next to the repository (../shared/data/movielens-latest-small),
# cxm-eval reads it as it is, EASE must beat popularity by 1.5x there and reach
# NDCG@10 0.375, and the file renamed to user,item,rating,ts must give the same
# numbers; otherwise that part is skipped.
set -euo pipefail

BIN=${1:?usage: eval_smoke.sh BIN_DIR}
EVAL=$BIN/cxm-eval
REPO=$(cd "$(dirname "$0")/../.." && pwd)
ML=$REPO/../shared/data/movielens-latest-small/ratings.csv

if [[ ! -x $EVAL ]]; then
    echo "eval_smoke: $EVAL is missing (was cxm-eval built?)" >&2
    exit 1
fi

# shellcheck source=lib.sh
source "$REPO/tests/integration/lib.sh"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# 300 users, 400 items in 10 taste clusters, ~25 items each (lib.sh).
taste_ratings 15 1000000 >"$TMP/synthetic.csv"

# run NAME CSV ALGO: run cxm-eval, keep its JSON line in $TMP/NAME.ALGO.json
# and print its NDCG.
run() {
    local name=$1 csv=$2 algo=$3 out=$TMP/$1.$3.json
    if ! "$EVAL" --ratings "$csv" --split random --test-frac 0.2 --seed 42 --algo "$algo" \
        --k 10 --json >"$out" 2>"$TMP/err"; then
        echo "eval_smoke: cxm-eval --algo $algo on $name failed:" >&2
        cat "$TMP/err" >&2
        exit 1
    fi
    echo "eval_smoke: $name $algo: $(cat "$out")" >&2
    local ndcg
    ndcg=$(sed -n 's/.*"ndcg":\([0-9.eE+-]*\).*/\1/p' "$out")
    if [[ -z $ndcg ]]; then
        echo "eval_smoke: no ndcg in the output of --algo $algo on $name" >&2
        exit 1
    fi
    echo "$ndcg"
}

# better NAME A NDCG_A B NDCG_B FACTOR: fail unless NDCG_A > FACTOR x NDCG_B.
better() {
    if awk -v a="$3" -v b="$5" -v f="$6" 'BEGIN { exit !(a > f * b) }'; then
        echo "eval_smoke: ok: $1 $2 ndcg $3 > $6 x $4 ndcg $5"
    else
        echo "eval_smoke: FAIL: $1 $2 ndcg $3 is not > $6 x $4 ndcg $5" >&2
        exit 1
    fi
}

# atleast NAME ALGO NDCG FLOOR: fail unless NDCG >= FLOOR.
atleast() {
    if awk -v a="$3" -v f="$4" 'BEGIN { exit !(a >= f) }'; then
        echo "eval_smoke: ok: $1 $2 ndcg $3 >= $4"
    else
        echo "eval_smoke: FAIL: $1 $2 ndcg $3 is below $4" >&2
        exit 1
    fi
}

# A bad line in a MovieLens-headed file is refused with its file:line.
printf 'userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,four,964981247\n' >"$TMP/bad.csv"
if "$EVAL" --ratings "$TMP/bad.csv" --algo pop >/dev/null 2>"$TMP/err"; then
    echo "eval_smoke: FAIL: cxm-eval accepted a rating \"four\"" >&2
    exit 1
fi
if ! grep -q "bad.csv:3: rating \"four\" is not a number" "$TMP/err"; then
    echo "eval_smoke: FAIL: the error does not name bad.csv:3: $(cat "$TMP/err")" >&2
    exit 1
fi
echo "eval_smoke: ok: a bad MovieLens line is refused: $(cat "$TMP/err")"

pop=$(run synthetic "$TMP/synthetic.csv" pop)
knn=$(run synthetic "$TMP/synthetic.csv" itemknn)
ease=$(run synthetic "$TMP/synthetic.csv" ease)
als=$(run synthetic "$TMP/synthetic.csv" als)
echo "eval_smoke: synthetic ndcg@10: pop $pop, itemknn $knn, ease $ease, als $als"
better synthetic itemknn "$knn" pop "$pop" 1.2
better synthetic ease "$ease" pop "$pop" 1.2
better synthetic als "$als" pop "$pop" 1.2

if [[ -r $ML ]]; then
    # MovieLens' ratings.csv reads as it is (its own header, seconds as ts)...
    mlpop=$(run movielens "$ML" pop)
    mlease=$(run movielens "$ML" ease)
    better movielens ease "$mlease" pop "$mlpop" 1.5
    # The quality the defaults reach there (0.382 on 2026-11-23): a change
    # that loses more than noise fails here rather than in the benchmark.
    atleast movielens ease "$mlease" 0.375
    # ...and exactly as it does under the user,item,rating,ts header.
    awk 'NR == 1 { print "user,item,rating,ts"; next } { print }' "$ML" >"$TMP/ml.csv"
    run movielens-renamed "$TMP/ml.csv" pop >/dev/null
    if ! cmp -s <(sed 's/"train_seconds".*//' "$TMP/movielens.pop.json") \
        <(sed 's/"train_seconds".*//' "$TMP/movielens-renamed.pop.json"); then
        echo "eval_smoke: FAIL: MovieLens' header and user,item,rating,ts disagree" >&2
        exit 1
    fi
    echo "eval_smoke: ok: MovieLens header and user,item,rating,ts agree"
else
    echo "eval_smoke: $ML not found: skipping the MovieLens check"
fi
echo "eval_smoke: passed"
