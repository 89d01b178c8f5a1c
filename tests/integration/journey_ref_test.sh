#!/usr/bin/env bash
# ctest integration.journey.reference: every journey analytic of cxmd equals
# the independent DuckDB reference (tests/reference) on a cxm-gen world.
# cxm-gen's stage rules and track.pb go into a real cxmd; once no event is
# pending resolution, each question is asked of cxmd (cxmctl --json journey
# funnel|paths|touchpoints) and of DuckDB over events.csv, and the answers
# must be equal: counts exactly, rates to 1e-9 (tests/reference/compare.mjs).
# SKIP (77) when DuckDB cannot be installed (no npm or registry).
#   journey_ref_test.sh BIN_DIR DUCKDB_CACHE [CUSTOMERS]
# With JOURNEY_REF_ONLY=1 no cxmd is started: the reference answers the
# same questions (without the stage mix, whose rules come from cxmd) and
# prints them, to check the questions themselves.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bin=$1
cache=$2
customers=${3:-3000}
ref=$(cd "$(dirname "$0")/../reference" && pwd)
status=0
bash "$ref/setup.sh" "$cache" || status=$?
((status == 0)) || exit "$status"

dir=$(mktemp -d /tmp/cxm-journey-ref-XXXXXX)
pid=""
cleanup() {
  [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# The world: 90 days from 2025-01-01, hence the lateness bound of 10 years.
"$bin/cxm-gen" --customers "$customers" --days 90 --out "$dir/w" 2>"$dir/gen.log" ||
  fail "cxm-gen: $(cat "$dir/gen.log")"
events=$(sed -n 's/.*"events": \([0-9]*\).*/\1/p' "$dir/w/truth.json")
from=1735689600000               # 2025-01-01T00:00Z
to=$((from + 90 * 86400000))     # the world's end
mid=$((from + 30 * 86400000))    # a range that cuts sessions and funnels

only=${JOURNEY_REF_ONLY:-0}
if ((only)); then
  echo '{"rules":null}' >"$dir/rules.json"
else
  start_server "$dir/log" 800 "$bin/cxmd" --listen 127.0.0.1:0 --data "$dir/data" \
    --journey-max-lateness 3650d --journey-base-currency KRW || fail "cxmd did not start: $(cat "$dir/log")"
  target=127.0.0.1:$port
  ctl() { "$bin/cxmctl" --target "$target" --json --timeout 60s "$@"; }

  # The stage rules first (so no recomputation races the load), then the
  # events, one request at a time in file order.
  ctl journey set-rules --file "$dir/w/stage_rules.pb" >"$dir/out" 2>&1 ||
    fail "journey set-rules: $(cat "$dir/out")"
  "$bin/cxm-bench" --target "$target" --requests "$dir/w/track.pb" \
    --method /cxm.v1.JourneyService/Track --connections 1 --inflight 1 --timeout 60s --json \
    >"$dir/out" 2>"$dir/err" || fail "loading track.pb: $(cat "$dir/err" "$dir/out")"

  # Wait until every event is resolved to its customer (pending_events 0, left
  # out of the JSON at 0) and the stage recomputation, if any, is done.
  field() { node -e 'const j = JSON.parse(require("fs").readFileSync(0, "utf8"));
                     console.log(j[process.argv[1]] ?? 0)' "$1"; }
  for i in $(seq 600); do
    ctl journey funnel --step page_view --step purchase --from "$from" --to "$to" \
      >"$dir/poll" 2>&1 || fail "journey funnel while waiting: $(cat "$dir/poll")"
    ctl journey rules >"$dir/rules.json" 2>&1 || fail "journey rules: $(cat "$dir/rules.json")"
    pending=$(field pending_events <"$dir/poll")
    todo=$(($(field recompute_total <"$dir/rules.json") - $(field recompute_done <"$dir/rules.json")))
    ((pending == 0 && todo == 0)) && break
    ((i < 600)) || fail "still $pending events pending and $todo customers to recompute after 120 s"
    sleep 0.2
  done
fi

# ---- the questions: cxmctl arguments | the same question for the reference ----
names=() args=() questions=()
ask() { names+=("$1"); args+=("$2"); questions+=("$3"); }
range="\"range\":{\"from_unix_ms\":$from,\"to_unix_ms\":$to}"
cut="\"range\":{\"from_unix_ms\":$from,\"to_unix_ms\":$mid}"
steps4='{"name":"page_view","event_type":"page_view"},{"name":"product_view","event_type":"product_view"},{"name":"add_to_cart","event_type":"add_to_cart"},{"name":"purchase","event_type":"purchase"}'
f4="--step page_view --step product_view --step add_to_cart --step purchase --window 7d"
funnel() { ask "funnel $1" "journey funnel $f4 $2" "{\"kind\":\"funnel\",\"steps\":[$steps4],\"window_ms\":604800000,$3}"; }
funnel ordered "--from $from --to $to --order ordered" "$range,\"order\":\"FUNNEL_ORDER_ORDERED\""
funnel strict "--from $from --to $to --order strict" "$range,\"order\":\"FUNNEL_ORDER_STRICT\""
funnel any "--from $from --to $to --order any" "$range,\"order\":\"FUNNEL_ORDER_ANY\""
funnel "ordered, first month" "--from $from --to $mid" "$cut"
funnel "web and app only" "--from $from --to $to --channel web --channel app" \
  "$range,\"channels\":[\"CHANNEL_WEB\",\"CHANNEL_APP\"]"
funnel "by channel" "--from $from --to $to --breakdown channel" \
  "$range,\"breakdown\":\"FUNNEL_BREAKDOWN_CHANNEL\""
funnel "strict by first touchpoint" "--from $from --to $to --order strict --breakdown first-touchpoint" \
  "$range,\"order\":\"FUNNEL_ORDER_STRICT\",\"breakdown\":\"FUNNEL_BREAKDOWN_FIRST_TOUCHPOINT\""
ask "funnel touchpoints and channels" \
  "journey funnel --step product_view@product_page --step add_to_cart@cart#web --step purchase@checkout#web --window 3d --from $from --to $to" \
  "{\"kind\":\"funnel\",\"steps\":[{\"name\":\"product_view@product_page\",\"event_type\":\"product_view\",\"touchpoint\":\"product_page\"},{\"name\":\"add_to_cart@cart#web\",\"event_type\":\"add_to_cart\",\"touchpoint\":\"cart\",\"channel\":\"CHANNEL_WEB\"},{\"name\":\"purchase@checkout#web\",\"event_type\":\"purchase\",\"touchpoint\":\"checkout\",\"channel\":\"CHANNEL_WEB\"}],\"window_ms\":259200000,$range}"

paths() { # anchor direction element keep max
  local a="journey paths --anchor $1 --direction $2 --element $3 --max-length $5 --limit 50 --from $from --to $to"
  local e q
  e=$(tr a-z- A-Z_ <<<"$3")
  q="{\"kind\":\"paths\",\"anchor\":\"$1\",\"direction\":\"PATH_DIRECTION_${2^^}\",\"element\":\"PATH_ELEMENT_$e\",\"max_length\":$5,\"limit\":50,$range"
  if [ "$4" = keep ]; then a+=" --keep-repeats" q+=",\"keep_repeats\":true"; fi
  ask "paths $1 $2 $3 $4 $5" "$a" "$q}"
}
for anchor in product_page checkout; do
  for d in from to; do
    paths "$anchor" "$d" touchpoint collapse 5
    paths "$anchor" "$d" touchpoint keep 5
  done
done
paths add_to_cart from event-type collapse 4
paths purchase to event-type keep 10

rules=$(node -e 'const j = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
                 console.log(JSON.stringify(j.rules === null ? null : j.rules ?? []))' "$dir/rules.json")
tq="\"kind\":\"touchpoints\",\"stage_rules\":$rules"
ask "touchpoints by day, goal purchase" \
  "journey touchpoints --from $from --to $to --bucket day --goal purchase --goal-window 7d" \
  "{$tq,$range,\"bucket\":\"TIME_BUCKET_DAY\",\"goal_event_type\":\"purchase\",\"goal_window_ms\":604800000}"
ask "touchpoints by week, first month, goal review_posted in 30 days" \
  "journey touchpoints --from $from --to $mid --bucket week --goal review_posted --goal-window 30d" \
  "{$tq,$cut,\"bucket\":\"TIME_BUCKET_WEEK\",\"goal_event_type\":\"review_posted\",\"goal_window_ms\":2592000000}"
ask "touchpoints of the web, two of them" \
  "journey touchpoints --from $from --to $to --channel web --touchpoint checkout --touchpoint product_page" \
  "{$tq,$range,\"channels\":[\"CHANNEL_WEB\"],\"touchpoints\":[\"checkout\",\"product_page\"]}"

# ---- ask both, compare ----
node "$ref/journey_ref.mjs" --cache "$cache" --events "$dir/w/events.csv" --identities \
  "${questions[@]}" >"$dir/ref.jsonl" 2>"$dir/ref.err" || fail "reference: $(cat "$dir/ref.err")"
head -1 "$dir/ref.jsonl" | sed 's/^/identity components vs cxm-gen customers: /'
if ((only)); then
  for i in "${!names[@]}"; do
    echo "${names[$i]}: $(sed -n "$((i + 2))p" "$dir/ref.jsonl" | cut -c1-300)"
  done
  exit 0
fi
failed=0
for i in "${!names[@]}"; do
  sed -n "$((i + 2))p" "$dir/ref.jsonl" >"$dir/ref.$i.json"
  # shellcheck disable=SC2086 # the arguments are words
  if ! ctl ${args[$i]} >"$dir/cxm.$i.json" 2>"$dir/cxm.$i.err"; then
    echo "DIFFERENT: ${names[$i]}: cxmctl ${args[$i]} failed: $(cat "$dir/cxm.$i.err")"
    failed=$((failed + 1))
    continue
  fi
  # A step's name is the label cxmctl chose for it, not a result.
  node "$ref/compare.mjs" "$dir/cxm.$i.json" "$dir/ref.$i.json" --label "${names[$i]}" \
    --ignore name ||
    failed=$((failed + 1))
done
((failed == 0)) || fail "$failed of ${#names[@]} answers differ from the reference"
echo "journey reference: ${#names[@]} answers over $events events equal DuckDB's"
