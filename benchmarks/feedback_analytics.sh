#!/usr/bin/env bash
# feedback_analytics.sh - GetScores (NPS by touchpoint x week in a zone, CSAT
# by channel, CES by stage x month) and GapAnalysis over a cxm-gen world of
# about 1M survey responses: cxm's analytics in process (fan.h over the
# incremental aggregates of a real LMDB store, fagg.h; and over the records,
# for reference) against DuckDB in memory on the same CSV, in the same run,
# best of REPEAT warm runs each. The answers are checked equal (compare.mjs,
# 1e-9) before any time is printed.
#
#   bash benchmarks/feedback_analytics.sh [BUILD_DIR=build] [CUSTOMERS=3120000] [REPEAT=5]
#                                         [WORLD_DIR] [ZONE=Asia/Seoul]
#
# 3120000 customers make just over 1M responses (100000: 32092) in 90 days;
# the world's CSV takes about 7 GB (events and interactions included, as
# cxm-gen writes them). WORLD_DIR: use (or create) the world there; default a
# temporary directory, removed at the end. DuckDB comes from npm
# (tests/reference/setup.sh, cached in BUILD_DIR).
#
# Prints the JSON lines of both sides (cxm-bench-feedback, feedback_ref.mjs)
# and then one line per question: {"bench":"feedback.<question>",
# "cxm_ms": best through the cells, "records_ms": best through the records,
# "duckdb_ms": best, "duckdb_over_cxm": duckdb_ms / cxm_ms}.
set -euo pipefail
BUILD=${1:-build}
CUSTOMERS=${2:-3120000}
REPEAT=${3:-5}
WORLD=${4:-}
ZONE=${5:-Asia/Seoul}
root=$(cd "$(dirname "$0")/.." && pwd)
ref=$root/tests/reference

die() {
  echo "feedback_analytics: $*" >&2
  exit 1
}
for b in cxm-gen cxm-bench-feedback; do
  [[ -x $BUILD/bin/$b ]] || die "$BUILD/bin/$b is missing: build first (cmake --build $BUILD --target $b)"
done
cache=$(mkdir -p "$BUILD/duckdb-cache" && cd "$BUILD/duckdb-cache" && pwd)
status=0
bash "$ref/setup.sh" "$cache" || status=$?
((status == 0)) || die "DuckDB is not available (setup.sh exit $status)"

tmp=$(mktemp -d /tmp/cxm-feedback-bench-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
[[ -n $WORLD ]] || WORLD=$tmp/world
if [[ ! -s $WORLD/responses.csv ]]; then
  "$BUILD/bin/cxm-gen" --customers "$CUSTOMERS" --days 90 --formats csv --out "$WORLD" >&2 ||
    die "cxm-gen failed"
fi

from=1735689600000 # 2025-01-01T00:00Z, cxm-gen's default start
to=$((from + 90 * 86400000))
args=(--responses "$WORLD/responses.csv" --ratings "$WORLD/ratings.csv" --zone "$ZONE"
  --from "$from" --to "$to" --repeat "$REPEAT")
mkdir -p "$tmp/cxm" "$tmp/ref"
"$BUILD/bin/cxm-bench-feedback" "${args[@]}" --out "$tmp/cxm" | tee "$tmp/cxm.jsonl"
node "$ref/feedback_ref.mjs" --cache "$cache" "${args[@]}" --out "$tmp/ref" | tee "$tmp/ref.jsonl"
for q in scores_tp_week scores_channel scores_stage gaps; do
  node "$ref/compare.mjs" "$tmp/cxm/$q.json" "$tmp/ref/$q.json" --label "$q" >&2 ||
    die "$q: cxm and DuckDB disagree"
done

node -e '
  const fs = require("fs");
  const read = (f) => fs.readFileSync(f, "utf8").trim().split("\n").map(JSON.parse);
  const cxm = read(process.argv[1]), ref = read(process.argv[2]);
  const cpus = require("os").cpus().length;
  for (const c of cxm) {
    if (c.bench === "feedback.load") continue;
    const d = ref.find((r) => r.bench === c.bench);
    console.log(JSON.stringify({ bench: c.bench, responses: c.responses, zone: process.argv[3],
      cxm_ms: c.cells_ms, records_ms: c.records_ms, duckdb_ms: +d.duckdb_ms.toFixed(3),
      duckdb_over_cxm: +(d.duckdb_ms / c.cells_ms).toFixed(1), repeat: c.repeat, cpus }));
  }' "$tmp/cxm.jsonl" "$tmp/ref.jsonl" "$ZONE"
