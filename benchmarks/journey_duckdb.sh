#!/usr/bin/env bash
# journey_duckdb.sh - the peer side of the journey analytics benchmark:
# DuckDB (in memory, warm) answering the issue's questions over the same
# cxm-gen world cxmd is loaded with. The lead runs cxm's side in the same
# run and reports the ratios.
#
#   bash benchmarks/journey_duckdb.sh [BUILD_DIR=build] [CUSTOMERS=148000] [REPEAT=5] [WORLD_DIR]
#
# 148000 customers make just over 1M events (145000: 984197; 90 days; the issue's world of 1M
# events and 100k+ customers). WORLD_DIR: use (or create) the world there, so
# cxmd can be loaded with the same track.pb; default a temporary directory.
# DuckDB comes from npm (tests/reference/setup.sh, cached in BUILD_DIR).
#
# Prints JSON lines on stdout: one "world" line (events, identity components,
# DuckDB's CSV load and identity resolution time), then one line per
# question: {"bench":"journey.funnel", "engine":"duckdb", "ms": median of
# REPEAT warm runs, "question": the request as JSON (proto field names), ...}.
# The questions:
#   funnel       page_view > product_view > add_to_cart > purchase, ORDERED,
#                7-day window, the whole 90 days
#   paths        FROM product_page, touchpoints, repeats collapsed, 5 long, top 20
#   touchpoints  every touchpoint, day buckets, goal purchase within 7 days
# The cxm side asks the same (cxmctl journey funnel --step page_view --step
# product_view --step add_to_cart --step purchase --window 7d --from F --to T,
# or cxm-bench's analytics workloads with the same requests).
set -euo pipefail
BUILD=${1:-build}
CUSTOMERS=${2:-148000}
REPEAT=${3:-5}
WORLD=${4:-}
root=$(cd "$(dirname "$0")/.." && pwd)
ref=$root/tests/reference

die() {
  echo "journey_duckdb: $*" >&2
  exit 1
}
[[ -x $BUILD/bin/cxm-gen ]] || die "$BUILD/bin/cxm-gen is missing: build first (deploy/build.sh $BUILD)"
cache=$(mkdir -p "$BUILD/duckdb-cache" && cd "$BUILD/duckdb-cache" && pwd)
status=0
bash "$ref/setup.sh" "$cache" || status=$?
((status == 0)) || die "DuckDB is not available (setup.sh exit $status)"

tmp=""
if [[ -z $WORLD ]]; then
  tmp=$(mktemp -d /tmp/cxm-journey-duckdb-XXXXXX)
  trap 'rm -rf "$tmp"' EXIT
  WORLD=$tmp/world
fi
if [[ ! -s $WORLD/events.csv ]]; then
  "$BUILD/bin/cxm-gen" --customers "$CUSTOMERS" --days 90 --out "$WORLD" >&2 ||
    die "cxm-gen failed"
fi

from=1735689600000 # 2025-01-01T00:00Z, cxm-gen's default start
to=$((from + 90 * 86400000))
range="\"range\":{\"from_unix_ms\":$from,\"to_unix_ms\":$to}"
funnel="{\"kind\":\"funnel\",\"steps\":[{\"name\":\"page_view\",\"event_type\":\"page_view\"},{\"name\":\"product_view\",\"event_type\":\"product_view\"},{\"name\":\"add_to_cart\",\"event_type\":\"add_to_cart\"},{\"name\":\"purchase\",\"event_type\":\"purchase\"}],\"window_ms\":604800000,\"order\":\"FUNNEL_ORDER_ORDERED\",$range}"
paths="{\"kind\":\"paths\",\"anchor\":\"product_page\",\"direction\":\"PATH_DIRECTION_FROM\",\"element\":\"PATH_ELEMENT_TOUCHPOINT\",\"max_length\":5,\"limit\":20,$range}"
touchpoints="{\"kind\":\"touchpoints\",\"bucket\":\"TIME_BUCKET_DAY\",\"goal_event_type\":\"purchase\",\"goal_window_ms\":604800000,$range}"

node "$ref/journey_ref.mjs" --cache "$cache" --events "$WORLD/events.csv" --identities \
  --repeat "$REPEAT" "$funnel" "$paths" "$touchpoints" |
  REPEAT=$REPEAT node -e '
    const lines = require("fs").readFileSync(0, "utf8").trim().split("\n").map(JSON.parse);
    const [world, ...answers] = lines, questions = process.argv.slice(1).map(JSON.parse);
    const cpus = require("os").cpus().length;
    console.log(JSON.stringify({ bench: "journey.world", engine: "duckdb", events: world.events,
      customers: world.components, gen_customers: world.gen_customers, load_ms: world.load_ms,
      cpus }));
    answers.forEach((a, i) => {
      const { kind, ...request } = questions[i];
      const size = kind === "funnel" ? { step1_customers: a.steps[0].customers }
        : kind === "paths" ? { sessions_considered: a.sessions_considered }
        : { touchpoints: a.stats.length, customers_active: a.customers_active };
      console.log(JSON.stringify({ bench: `journey.${kind}`, engine: "duckdb", ms: a.duckdb_ms,
        repeat: Number(process.env.REPEAT), ...size, question: request }));
    });' "$funnel" "$paths" "$touchpoints"
