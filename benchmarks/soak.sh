#!/usr/bin/env bash
# soak.sh - one cxmd under hours-like mixed traffic, its RSS sampled.
#
#   bash benchmarks/soak.sh [BUILD_DIR=build] [DURATION_S=600] [SAMPLE_S=10]
#   (SOAK_CUSTOMERS: customers written and read, default 5000)
#
# For DURATION_S seconds, against one cxmd (2 workers):
#   - profile reads and writes (cxm-bench profile-mixed, 70% reads, 5,000
#     customers, created by the writes as the run goes: early reads miss) and journey writes (track-one), closed loop, 2 in flight;
#   - malformed calls: random bytes as the request of GetProfile, UpsertProfile
#     and Track (answered INVALID_ARGUMENT), and random bytes straight on a TCP
#     connection (not even HTTP/2);
#   - connection churn: a client opening 8 new connections, calling Health for
#     half a second and closing them, over and over.
# VmRSS of the server and its anonymous part (RssAnon: the heap; the rest is
# mostly LMDB's map, whose resident pages grow with the data written) are
# sampled every SAMPLE_S seconds into WORK/rss.csv and each summarised: start, after warm-up (the first sample at or after a tenth of
# the run, at least one sample in), end, max, and the growth from warm-up to
# end. The server must still answer Health at the end and exit 0 on SIGTERM;
# the script fails otherwise (it asserts no growth bound: read the numbers,
# benchmarks/README.md "Soak" has the ones measured).
set -euo pipefail

BUILD=${1:-build}
DURATION=${2:-600}
SAMPLE=${3:-10}
CUSTOMERS=${SOAK_CUSTOMERS:-5000}
BIN=$BUILD/bin
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../tests/integration/lib.sh"

die() {
    echo "soak: $*" >&2
    exit 1
}
for b in cxmd cxm-bench; do
    [[ -x $BIN/$b ]] || die "$BIN/$b is missing: build first (cmake --build $BUILD)"
done

WORK=$(mktemp -d /tmp/cxm-soak.XXXXXX)
LOADS=()
pid=""
cleanup() {
    for p in "${LOADS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait "${LOADS[@]}" 2>/dev/null || true
    [[ -n $pid ]] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

start_server "$WORK/server.log" 400 "$BIN/cxmd" --listen 127.0.0.1:0 --data "$WORK/data" \
    --workers 2 || die "cxmd did not start: $(cat "$WORK/server.log")"
target=127.0.0.1:$port

# Each load loops in runs of at most 10 s until the end.
run_until_end() {
    while ((SECONDS < end)); do
        local left=$((end - SECONDS))
        ((left > 10)) && left=10
        "$@" --duration "${left}s" >/dev/null 2>&1 || true
    done
}
bench=("$BIN/cxm-bench" --target "$target" --warmup 0s --timeout 5s)

end=$((SECONDS + DURATION))
run_until_end "${bench[@]}" --generator profile-mixed --read-ratio 0.7 --customers "$CUSTOMERS" \
    --connections 1 --inflight 2 &
LOADS+=($!)
run_until_end "${bench[@]}" --generator track-one --customers "$CUSTOMERS" --connections 1 \
    --inflight 2 &
LOADS+=($!)

# Malformed requests: fresh random bytes for each round.
(
    while ((SECONDS < end)); do
        head -c $((RANDOM % 200 + 1)) /dev/urandom >"$WORK/garbage"
        for m in /cxm.v1.ProfileService/GetProfile /cxm.v1.ProfileService/UpsertProfile \
            /cxm.v1.JourneyService/Track; do
            "${bench[@]}" --method "$m" --request-file "$WORK/garbage" --connections 1 \
                --inflight 1 --duration 300ms >/dev/null 2>&1 || true
        done
        # Not HTTP/2 at all: the server must drop the connection, nothing else.
        (exec 3<>"/dev/tcp/127.0.0.1/$port" && head -c 512 /dev/urandom >&3 && sleep 0.2) \
            2>/dev/null || true
    done
) &
LOADS+=($!)

# Connection churn: every run of cxm-bench is 8 new connections.
(
    while ((SECONDS < end)); do
        "${bench[@]}" --connections 8 --inflight 1 --duration 500ms >/dev/null 2>&1 || true
    done
) &
LOADS+=($!)

# VmRSS, and its anonymous part: the rest is LMDB's map, which grows with
# the data written (file pages, not a leak).
rss_kb() { awk '/^(VmRSS|RssAnon):/ {printf ",%s", $2}' "/proc/$pid/status"; }
echo "t_s,rss_kb,anon_kb" >"$WORK/rss.csv"
t0=$SECONDS
echo "0$(rss_kb)" >>"$WORK/rss.csv"
while ((SECONDS < end)); do
    sleep "$SAMPLE"
    kill -0 "$pid" 2>/dev/null || die "cxmd died: $(tail -5 "$WORK/server.log")"
    echo "$((SECONDS - t0))$(rss_kb)" >>"$WORK/rss.csv"
done
for p in "${LOADS[@]}"; do wait "$p" 2>/dev/null || true; done
LOADS=()

health=$("${bench[@]}" --connections 1 --inflight 1 --duration 1s --json 2>/dev/null) ||
    die "Health failed after the soak"
code=0
kill -TERM "$pid"
wait "$pid" || code=$?
pid=""
((code == 0)) || die "cxmd exited $code after SIGTERM: $(tail -5 "$WORK/server.log")"

python3 - "$WORK/rss.csv" "$DURATION" "$health" <<'PY'
import csv, json, sys
all_rows = list(csv.DictReader(open(sys.argv[1])))
dur = int(sys.argv[2])
h = json.loads(sys.argv[3])
mib = lambda kb: kb / 1024
for col, name in (("rss_kb", "RSS"), ("anon_kb", "anonymous RSS")):
    rows = [(int(r["t_s"]), int(r[col])) for r in all_rows]
    warm = next((r for r in rows[1:] if r[0] >= dur / 10), rows[-1])
    start, end = rows[0], rows[-1]
    peak = max(rows, key=lambda r: r[1])
    print("soak: %d s, %d samples; %s MiB: start %.1f, after warm-up (%d s) %.1f, end %.1f, "
          "max %.1f (at %d s); warm-up to end %+.1f MiB (%+.1f%%)"
          % (dur, len(rows), name, mib(start[1]), warm[0], mib(warm[1]), mib(end[1]),
             mib(peak[1]), peak[0], mib(end[1] - warm[1]), 100.0 * (end[1] - warm[1]) / warm[1]))
    print("soak: %s series (s:MiB) " % name + " ".join("%d:%.1f" % (t, mib(k)) for t, k in rows))
print("soak: Health after the soak: %d calls, %d errors, p99 %d us"
      % (h["completed"], h["errors"], h["p99_us"]))
assert h["errors"] == 0, "Health calls failed after the soak"
PY
grep -E " (error|warn) " "$WORK/server.log" | cut -d' ' -f3 | sort | uniq -c |
    sed 's/^/soak: server log lines: /' || true
echo "soak: ok"
