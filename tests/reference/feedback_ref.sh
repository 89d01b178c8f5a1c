#!/usr/bin/env bash
# ctest reference.feedback: the feedback analytics (fan.h, through its cells
# and through its records, which cxm-bench-feedback checks agree) against the
# independent DuckDB SQL of feedback_ref.mjs on a small cxm-gen world, to
# 1e-9 (compare.mjs), in three settings: a week/month series in Asia/Seoul
# over the world's 90 days, an open range in Europe/Berlin (a DST switch
# inside), and a range cut off the hours in America/New_York. Then the
# planted gap touchpoints of truth.json must top GapAnalysis in the planted
# order: by what each gap costs in NPS over its raters, gap * nps_slope *
# ratings, largest first. SKIP (77) when DuckDB cannot be installed.
#   feedback_ref.sh BIN_DIR CACHE
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:?usage: feedback_ref.sh BIN_DIR CACHE}
cache=${2:?usage: feedback_ref.sh BIN_DIR CACHE}
for b in cxm-gen cxm-bench-feedback; do
  [[ -x $bin/$b ]] || { echo "feedback_ref.sh: $bin/$b is missing: build it first" >&2; exit 1; }
done
bash "$here/setup.sh" "$cache" || exit $?
set -e
dir=$(mktemp -d /tmp/cxm-ref-feedback-XXXXXX)
trap 'rm -rf "$dir"' EXIT
"$bin/cxm-gen" --customers 4000 --days 90 --formats csv --out "$dir/w" >/dev/null 2>&1
from=1735689600000 # 2025-01-01T00:00Z, cxm-gen's default start
status=0
check() { # NAME ZONE FROM TO
  mkdir -p "$dir/$1/cxm" "$dir/$1/ref"
  local args=(--responses "$dir/w/responses.csv" --ratings "$dir/w/ratings.csv" --zone "$2"
    --from "$3" --to "$4")
  "$bin/cxm-bench-feedback" "${args[@]}" --out "$dir/$1/cxm"
  node "$here/feedback_ref.mjs" --cache "$cache" "${args[@]}" --out "$dir/$1/ref" >/dev/null
  for q in scores_tp_week scores_channel scores_stage gaps; do
    node "$here/compare.mjs" "$dir/$1/cxm/$q.json" "$dir/$1/ref/$q.json" --label "$1 $q" ||
      status=1
  done
}
check seoul Asia/Seoul $from $((from + 90 * 86400000))
check berlin Europe/Berlin 0 0
check new_york America/New_York $((from + 5 * 86400000 + 1234567)) $((from + 61 * 86400000 + 7654321))

node -e '
  const fs = require("fs");
  const truth = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
  const got = JSON.parse(fs.readFileSync(process.argv[2], "utf8")).gaps.map((g) => g.touchpoint);
  const want = truth.planted.gap_touchpoints
    .map((t) => ({ tp: t.touchpoint, cost: t.gap * t.nps_slope * t.ratings }))
    .sort((a, b) => b.cost - a.cost).map((t) => t.tp);
  const top = got.slice(0, want.length);
  if (JSON.stringify(top) !== JSON.stringify(want)) {
    console.log(`DIFFERENT: planted order ${want.join(", ")}; GapAnalysis top ${top.join(", ")}`);
    process.exit(1);
  }
  console.log(`same: planted gaps on top in the planted order: ${top.join(", ")}`);
' "$dir/w/truth.json" "$dir/berlin/cxm/gaps.json" || status=1
exit $status
