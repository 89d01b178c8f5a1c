#!/usr/bin/env bash
# journey_bench.sh - the journey service's targets, measured in one run:
#
#   ingest   TrackStream, batches of 500 from one client, acknowledged after
#            the durable commit (cxm-bench-track against cxmd, the pipeline
#            resolving customers as it goes), against the bare LMDB loop
#            writing the same bytes in the same batches (cxm-bench-lmdb
#            --layout append: the ingest's own layout), alternating rounds
#   track1   Track with one event, one in flight, against Health/Check on the
#            same cxmd, alternating rounds: the ratio of the p50s
#   world    a cxm-gen world of ~1M events / 148k customers replayed through
#            TrackStream, the time until every event is resolved, RSS, disk
#   analytics  Funnel (4 steps, 7-day window), Paths and TouchpointStats over
#            that world (cxm-bench, one in flight, p50) against DuckDB in
#            memory, warm, on the same events.csv (journey_duckdb.sh)
#
#   bash benchmarks/journey_bench.sh [BUILD_DIR=build] [ROUNDS=3] [CUSTOMERS=148000]
#
# Prints a summary on stderr and JSON lines on stdout. Everything runs on
# this machine at once (load generator, server, DuckDB): compare the ratios,
# not the absolute numbers.
set -euo pipefail
BUILD=${1:-build}
ROUNDS=${2:-3}
CUSTOMERS=${3:-148000}
BIN=$BUILD/bin
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=../tests/integration/lib.sh
source "$root/tests/integration/lib.sh"

die() {
  echo "journey_bench: $*" >&2
  exit 1
}
for b in cxmd cxm-gen cxm-bench cxm-bench-track cxm-bench-lmdb cxmctl; do
  [[ -x $BIN/$b ]] || die "$BIN/$b is missing: build first (bash deploy/build.sh $BUILD)"
done
command -v python3 >/dev/null || die "python3 is missing (deploy/install-deps.sh installs it)"

WORK=$(mktemp -d /var/tmp/cxm-journey-bench.XXXXXX)
pid=""
stop_cxmd() {
  if [[ -n $pid ]]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=""
  fi
}
trap 'stop_cxmd; rm -rf "$WORK"' EXIT

# start_cxmd DATA [FLAGS...]: a fresh cxmd on a free port; sets pid and target.
start_cxmd() {
  local data=$1
  shift
  rm -rf "$data"
  start_server "$WORK/cxmd.log" 400 "$BIN/cxmd" --listen 127.0.0.1:0 --data "$data" "$@" ||
    die "cxmd did not start: $(tail -3 "$WORK/cxmd.log")"
  target=127.0.0.1:$port
}

json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
median() { python3 -c "import statistics,sys; print(statistics.median(float(x) for x in sys.argv[1:]))" "$@"; }

# ---- ingest: TrackStream against the bare LMDB loop ----------------------
ingest=() lmdb=() ratios=()
for ((r = 1; r <= ROUNDS; r++)); do
  start_cxmd "$WORK/data"
  rate=$("$BIN/cxm-bench-track" --target "$target" --duration 5s --json 2>/dev/null | json '["events_per_s"]')
  stop_cxmd
  base=$("$BIN/cxm-bench-lmdb" --dir "$WORK/lmdb$r" --layout append --events 1000000 --json 2>/dev/null |
    json '["events_per_s"]')
  rm -rf "$WORK/lmdb$r"
  ingest+=("$rate") lmdb+=("$base") ratios+=("$(python3 -c "print($rate / $base)")")
  echo "ingest round $r: TrackStream $rate events/s, bare LMDB $base events/s" >&2
done
ing=$(median "${ingest[@]}")
lm=$(median "${lmdb[@]}")
# The rounds are pairs measured back to back: the median of their ratios.
echo "{\"bench\":\"journey.ingest\",\"trackstream_events_per_s\":$ing,\"bare_lmdb_events_per_s\":$lm,\"ratio\":$(python3 -c "print(round($(median "${ratios[@]}"), 3))"),\"rounds\":$ROUNDS}"

# ---- Track with one event against Health/Check ---------------------------
start_cxmd "$WORK/data"
t1=() h=()
for ((r = 1; r <= ROUNDS; r++)); do
  h+=("$("$BIN/cxm-bench" --target "$target" --connections 1 --inflight 1 --duration 3s --warmup 300ms --json 2>/dev/null | json '["p50_us"]')")
  t1+=("$("$BIN/cxm-bench" --target "$target" --generator track-one --connections 1 --inflight 1 --duration 3s --warmup 300ms --json 2>/dev/null | json '["p50_us"]')")
  echo "track1 round $r: Track p50 ${t1[-1]} us, Health/Check p50 ${h[-1]} us" >&2
done
stop_cxmd
tp=$(median "${t1[@]}")
hp=$(median "${h[@]}")
echo "{\"bench\":\"journey.track_one\",\"track_p50_us\":$tp,\"health_p50_us\":$hp,\"ratio\":$(python3 -c "print(round($tp/$hp,2))")}"

# ---- the 1M-event world ---------------------------------------------------
world=$WORK/world
"$BIN/cxm-gen" --customers "$CUSTOMERS" --days 90 --out "$world" >&2 || die "cxm-gen failed"
start_cxmd "$WORK/data" --journey-max-lateness 3650d --journey-base-currency KRW
events=$(python3 -c "import json; print(json.load(open('$world/truth.json'))['counts']['events'])")
load=$("$BIN/cxm-bench-track" --target "$target" --requests "$world/track.pb" --json 2>/dev/null | json '["events_per_s"]')
t0=$(date +%s.%N)
from=1735689600000
to=$((from + 90 * 86400000))
while :; do
  p=$("$BIN/cxmctl" --target "$target" --json journey touchpoints --from "$from" --to "$to" 2>/dev/null |
    python3 -c "import json,sys; print(json.load(sys.stdin).get('pending_events',0))") || p=1
  [[ $p == 0 ]] && break
  sleep 0.5
done
resolved_s=$(python3 -c "print(round($(date +%s.%N) - $t0, 1))")
rss_kib=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
disk=$(stat -c %s "$WORK/data/data.mdb")
echo "world: $events events acknowledged at $load events/s, all resolved ${resolved_s} s later; RSS $((rss_kib / 1024)) MiB, data.mdb $((disk / 1048576)) MiB" >&2
echo "{\"bench\":\"journey.world\",\"events\":$events,\"load_events_per_s\":$load,\"resolved_after_s\":$resolved_s,\"rss_bytes\":$((rss_kib * 1024)),\"data_mdb_bytes\":$disk,\"bytes_per_event\":$((disk / events))}"

# ---- analytics against DuckDB --------------------------------------------
declare -A cxm_ms
for g in funnel paths touchpoints; do
  us=$("$BIN/cxm-bench" --target "$target" --generator "journey-$g" --from-ms "$from" --to-ms "$to" \
    --connections 1 --inflight 1 --duration 5s --warmup 1s --json 2>/dev/null | json '["p50_us"]')
  cxm_ms[$g]=$(python3 -c "print(round($us / 1000, 1))")
done
stop_cxmd
bash "$root/benchmarks/journey_duckdb.sh" "$BUILD" "$CUSTOMERS" "$ROUNDS" "$world" >"$WORK/duckdb.jsonl" ||
  die "the DuckDB side failed"
for g in funnel paths touchpoints; do
  d=$(grep "\"journey.$g\"" "$WORK/duckdb.jsonl" | json '["ms"]')
  echo "$g: cxm p50 ${cxm_ms[$g]} ms, DuckDB ${d} ms (x$(python3 -c "print(round($d / ${cxm_ms[$g]}, 1))"))" >&2
  echo "{\"bench\":\"journey.$g\",\"cxm_p50_ms\":${cxm_ms[$g]},\"duckdb_ms\":$d,\"duckdb_over_cxm\":$(python3 -c "print(round($d / ${cxm_ms[$g]}, 2))")}"
done
