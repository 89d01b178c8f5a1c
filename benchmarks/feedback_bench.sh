#!/usr/bin/env bash
# feedback_bench.sh - the feedback service's targets, measured in one run:
#
#   submit   SubmitResponse, 2 connections x 16 in flight (32), acknowledged
#            once durable, against UpsertProfile with the same load on the
#            same cxmd, alternating rounds: responses/s and the ratio of the
#            medians (a response resolves its customer through profile, so
#            it costs at least an upsert's lookup plus its own commit)
#   analyze  AnalyzeText of ~100-character Korean and English comments, one
#            in flight, against Health/Check on the same cxmd, alternating
#            rounds: the ratio of the p50s (target <= 1.3)
#
#   bash benchmarks/feedback_bench.sh [BUILD_DIR=build] [ROUNDS=3] [SECONDS=3]
#
# Prints a summary on stderr and JSON lines on stdout. The load generator
# and the server share this machine: compare the ratios, not the absolute
# numbers.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=../tests/integration/lib.sh
source "$root/tests/integration/lib.sh"
BIN=${1:-build}/bin ROUNDS=${2:-3} SECS=${3:-3}
die() {
  echo "feedback_bench: $*" >&2
  exit 1
}
for b in cxmd cxm-bench cxmctl; do
  [[ -x $BIN/$b ]] || die "$BIN/$b is missing: build first (bash deploy/build.sh ${1:-build})"
done

WORK=$(mktemp -d /var/tmp/cxm-feedback-bench.XXXXXX)
pid=""
# Stops the cxmd start_server started (its pid), once.
stop_cxmd() {
  [[ -z $pid ]] && return 0
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  pid=""
}
trap 'stop_cxmd; rm -rf "$WORK"' EXIT

start_server "$WORK/cxmd.log" 400 "$BIN/cxmd" --listen 127.0.0.1:0 --data "$WORK/data" ||
  die "cxmd did not start: $(tail -3 "$WORK/cxmd.log")"
target=127.0.0.1:$port

# The survey cxm-bench's feedback-submit answers (bench_feedback.h).
"$BIN/cxmctl" --target "$target" feedback survey upsert --id bench_nps --kind nps \
  --title "How likely are you to recommend us?" --touchpoint checkout_page --channel web \
  --gap checkout_page --comment "Why?" >&2 || die "cannot create the bench survey"

# No python per number: on a loaded 2-core machine each start costs a second.
# field NAME JSON: a number of cxm-bench's one-line JSON.
field() { grep -o "\"$1\":[^,}]*" <<<"$2" | head -1 | cut -d: -f2; }
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
ratio() { awk -v a="$1" -v b="$2" -v d="${3:-3}" 'BEGIN {printf "%.*f\n", d, a / b}'; }
# bench FIELD ARGS...: one cxm-bench run on the server; its FIELD, after
# checking that no call failed.
bench() {
  local name=$1 out
  shift
  out=$("$BIN/cxm-bench" --target "$target" --customers 100000 --duration "${SECS}s" \
    --warmup 300ms --json "$@" 2>"$WORK/bench.err") || die "cxm-bench $*: $(cat "$WORK/bench.err")"
  [[ $(field errors "$out") == 0 ]] || die "cxm-bench $*: calls failed: $out"
  [[ $(field completed "$out") != 0 ]] || die "cxm-bench $*: no call completed"
  field "$name" "$out"
}

# ---- SubmitResponse against UpsertProfile, 32 in flight -------------------
sub=() ups=() ratios=()
for ((r = 1; r <= ROUNDS; r++)); do
  u=$(bench qps --generator profile-upsert --connections 2 --inflight 16)
  s=$(bench qps --generator feedback-submit --connections 2 --inflight 16)
  sub+=("$s") ups+=("$u") ratios+=("$(ratio "$s" "$u" 6)")
  echo "submit round $r: SubmitResponse $s responses/s, UpsertProfile $u upserts/s" >&2
done
sm=$(median "${sub[@]}")
um=$(median "${ups[@]}")
ratio=$(ratio "$(median "${ratios[@]}")" 1)
echo "submit: SubmitResponse $sm responses/s, UpsertProfile $um upserts/s, ratio $ratio" >&2
echo "{\"bench\":\"feedback.submit\",\"responses_per_s\":$sm,\"upserts_per_s\":$um,\"ratio\":$ratio,\"in_flight\":32,\"rounds\":$ROUNDS}"

# ---- AnalyzeText against Health/Check, one in flight ----------------------
a=() h=()
for ((r = 1; r <= ROUNDS; r++)); do
  h+=("$(bench p50_us --connections 1 --inflight 1)")
  a+=("$(bench p50_us --generator analyze-text --connections 1 --inflight 1)")
  echo "analyze round $r: AnalyzeText p50 ${a[-1]} us, Health/Check p50 ${h[-1]} us" >&2
done
ap=$(median "${a[@]}")
hp=$(median "${h[@]}")
ar=$(ratio "$ap" "$hp" 2)
echo "analyze: AnalyzeText p50 $ap us, Health/Check p50 $hp us, ratio $ar (target <= 1.3)" >&2
echo "{\"bench\":\"feedback.analyze_text\",\"analyze_p50_us\":$ap,\"health_p50_us\":$hp,\"ratio\":$ar,\"rounds\":$ROUNDS}"
