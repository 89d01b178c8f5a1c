#!/usr/bin/env bash
# ctest reference.feedback_rpc: the feedback analytics through the RPC. A
# cxm-gen world's surveys and responses are loaded into a real cxmd with
# cxmctl (feedback survey upsert --file, feedback submit --file: every
# response acknowledged), then GetScores (NPS by touchpoint x week and CES
# by stage x month in Asia/Seoul, CSAT by channel) and GapAnalysis are asked
# with `cxmctl --json` and compared with the independent DuckDB SQL of
# feedback_ref.mjs on the world's CSV, every number to 1e-9 (compare.mjs),
# over the world's 90 days and over an open range. Then the planted gap
# touchpoints of truth.json must top the RPC's GapAnalysis in the planted
# order (what each gap costs in NPS over its raters, gap * nps_slope *
# ratings, largest first). SKIP (77) when DuckDB cannot be installed.
#   feedback_rpc_ref.sh BIN_DIR CACHE
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:?usage: feedback_rpc_ref.sh BIN_DIR CACHE}
cache=${2:?usage: feedback_rpc_ref.sh BIN_DIR CACHE}
bash "$here/setup.sh" "$cache" || exit $?
set -e
. "$here/../integration/lib.sh"
dir=$(mktemp -d /tmp/cxm-ref-feedback-rpc-XXXXXX)
pid=""
cleanup() { [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

"$bin/cxm-gen" --customers 2000 --days 90 --out "$dir/w" >/dev/null 2>&1 || fail "cxm-gen failed"
start_server "$dir/log" 200 "$bin/cxmd" --listen 127.0.0.1:0 --data "$dir/data" ||
  fail "cxmd did not start: $(cat "$dir/log")"
ctl=("$bin/cxmctl" --target "127.0.0.1:$port" --timeout 60s)
"${ctl[@]}" feedback survey upsert --file "$dir/w/surveys.pb" >/dev/null || fail "surveys not loaded"
n=$(grep -o '"responses.pb": [0-9]*' "$dir/w/truth.json" | grep -o '[0-9]*$')
"${ctl[@]}" feedback submit --file "$dir/w/responses.pb" >"$dir/submit" ||
  fail "responses not all acknowledged: $(cat "$dir/submit")"
grep -q "^$n sent, $n OK, 0 failed" "$dir/submit" || fail "want $n sent and OK: $(cat "$dir/submit")"
cat "$dir/submit"

from=1735689600000 # 2025-01-01T00:00Z, cxm-gen's default start
status=0
check() { # NAME ZONE FROM TO
  local name=$1 zone=$2 f=$3 t=$4 out=$dir/$1
  mkdir -p "$out/rpc" "$out/ref"
  local range=(--from "$f" --to "$t")
  "${ctl[@]}" --json feedback scores --kind nps --by touchpoint --bucket week --tz "$zone" \
    "${range[@]}" >"$out/rpc/scores_tp_week.json"
  "${ctl[@]}" --json feedback scores --kind csat --by channel --bucket none --tz "$zone" \
    "${range[@]}" >"$out/rpc/scores_channel.json"
  "${ctl[@]}" --json feedback scores --kind ces --by stage --bucket month --tz "$zone" \
    "${range[@]}" >"$out/rpc/scores_stage.json"
  "${ctl[@]}" --json feedback gaps --min-responses 30 --limit 50 "${range[@]}" >"$out/rpc/gaps.json"
  node "$here/feedback_ref.mjs" --cache "$cache" --responses "$dir/w/responses.csv" \
    --ratings "$dir/w/ratings.csv" --zone "$zone" "${range[@]}" --out "$out/ref" >/dev/null
  for q in scores_tp_week scores_channel scores_stage gaps; do
    node "$here/compare.mjs" "$out/rpc/$q.json" "$out/ref/$q.json" --label "rpc $name $q" ||
      status=1
  done
}
check seoul Asia/Seoul $from $((from + 90 * 86400000))
check open Europe/Berlin 0 0
# Guard against two empty answers comparing equal.
for q in scores_tp_week scores_channel scores_stage gaps; do
  grep -q '"responses":[1-9]' "$dir/open/rpc/$q.json" || fail "the RPC answered $q with no responses"
done

node "$here/planted_gaps.mjs" "$dir/w/truth.json" "$dir/open/rpc/gaps.json" --label rpc || status=1
exit $status
