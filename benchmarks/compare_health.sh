#!/usr/bin/env bash
# compare_health.sh - grpc.health.v1.Health/Check: cxmd against the C++ peer.
#
#   bash benchmarks/compare_health.sh [BUILD_DIR=build] [ROUNDS=5] [DURATION=10]
#
# Checks the issue's targets on this machine: Check through cxmd at >= 1.2x
# the QPS of cxm-cpp-health-peer (libgrpc++ callback API) under the same load
# (2 connections x 32 in flight, from cxm-bench and from h2load), single
# in-flight p50 <= 60 us, idle cxmd RSS < 30 MiB, start to SERVING < 200 ms.
#
# Both servers run side by side for the whole comparison and are driven in
# alternating rounds (cxm, peer, cxm, peer, ...), so slow drift of the machine
# (thermal, other tenants) falls on both alike; medians over the rounds are
# reported. Load generator and server share the machine: the numbers compare
# the two servers, they are not absolute capacity.
#
# Environment: H2LOAD_THREADS (default 1), STARTS (timed starts of each server, 7).
# Needs the peer and probe (-DCXM_BUILD_CPP_PEER=ON), cxm-bench and h2load.
set -euo pipefail

BUILD=${1:-build}
ROUNDS=${2:-5}
DURATION=${3:-10}
H2LOAD_THREADS=${H2LOAD_THREADS:-1}
STARTS=${STARTS:-7}
BIN=$BUILD/bin

die() {
    echo "compare_health: $*" >&2
    exit 1
}

for b in cxmd cxm-cpp-health-peer cxm-cpp-health-probe cxm-bench; do
    [[ -x $BIN/$b ]] || die "$BIN/$b is missing: build first (cmake --build $BUILD;" \
        "the peer needs -DCXM_BUILD_CPP_PEER=ON and libgrpc++-dev)"
done
command -v h2load >/dev/null || die "h2load is missing: apt-get install nghttp2-client"

WORK=$(mktemp -d /tmp/cxm-compare.XXXXXX)
PIDS=() # the two servers under comparison
cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        kill -TERM "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- helpers ---------------------------------------------------------------

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

# A port nothing listens on now; only the startup timing needs one chosen in
# advance (it must poll before cxmd has said where it listens).
free_port() {
    local p
    while :; do
        p=$((20000 + RANDOM % 40000))
        ss -Htln "sport = :$p" | grep -q . || {
            echo "$p"
            return
        }
    done
}

# Wait until LOG holds "listening on HOST:PORT" and print PORT. Both servers
# are started on port 0 and report the port they got.
wait_port() { # LOG PID
    local i port
    for ((i = 0; i < 500; i++)); do
        port=$(grep -o 'listening on [^ ]*:[0-9]*' "$1" | head -n1 | sed 's/.*://') || true
        [[ -n $port ]] && {
            echo "$port"
            return
        }
        kill -0 "$2" 2>/dev/null || die "server exited before listening; its log: $(cat "$1")"
        sleep 0.01
    done
    die "server did not report a port within 5 s; its log: $(cat "$1")"
}

# Numeric field of cxm-bench's one-line JSON, without needing jq.
json_num() { sed -n "s/.*\"$2\"[[:space:]]*:[[:space:]]*\\([-0-9.eE+]*\\).*/\\1/p" <<<"$1"; }

median() { # numbers on stdin
    { grep -E '^[0-9.eE+-]+$' || true; } | sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print "nan"; exit }
        print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# --- load ------------------------------------------------------------------

bench() { # PORT CONNECTIONS INFLIGHT -> one JSON line
    local out
    out=$("$BIN/cxm-bench" --target "127.0.0.1:$1" --connections "$2" --inflight "$3" \
        --duration "${DURATION}s" --warmup 1s --json 2>"$WORK/bench.err") ||
        die "cxm-bench failed on port $1: $(cat "$WORK/bench.err")"
    out=$(tail -n1 <<<"$out")
    local errors
    errors=$(json_num "$out" errors)
    [[ ${errors:-0} == 0 ]] || echo "  warning: cxm-bench saw $errors errors on port $1" >&2
    echo "$out"
}

# h2load speaks plain HTTP/2, so gRPC is spelled out: a POST with the gRPC
# headers and a body that is the 5-byte frame of an empty HealthCheckRequest.
printf '\0\0\0\0\0' >"$WORK/check.grpc"
h2load_run() { # PORT SECONDS
    h2load -D "$2" -c 2 -m 32 -t "$H2LOAD_THREADS" -d "$WORK/check.grpc" \
        -H 'content-type: application/grpc' -H 'te: trailers' \
        "http://127.0.0.1:$1/grpc.health.v1.Health/Check" 2>&1
}

# Prints the req/s. h2load judges success by HTTP status alone, and a gRPC
# error is still HTTP 200 (the grpc-status is in the trailers, which h2load
# neither shows nor checks). What it does show is the DATA byte count: a
# SERVING answer is exactly 7 bytes (frame header + 08 01) and an error has
# none, so data == 7 x succeeded proves every counted request was SERVING.
# That only holds without h2load's --warm-up-time (its traffic line counts
# the warm-up too), so the warm-up is a separate run.
h2load_qps() { # PORT
    local out qps ok data
    h2load_run "$1" 1 >/dev/null
    out=$(h2load_run "$1" "$DURATION")
    qps=$(sed -n 's/^finished in .*, \([0-9.]*\) req\/s.*/\1/p' <<<"$out")
    ok=$(sed -n 's/^requests: .* \([0-9]*\) succeeded.*/\1/p' <<<"$out")
    data=$(sed -n 's/^traffic: .*(\([0-9]*\)) data.*/\1/p' <<<"$out")
    [[ -n $qps && -n $ok && -n $data ]] || die "cannot read h2load's output: $out"
    ((data == 7 * ok)) ||
        echo "  warning: h2load on port $1: $ok answers but $data data bytes, not all SERVING" >&2
    echo "$qps"
}

# --- start-to-SERVING ------------------------------------------------------

# cxm-cpp-health-probe execs cxmd and polls Check in-process until SERVING,
# printing the microseconds from exec; a loop of client processes would add
# tens of ms per poll. cxmd's own "ready in" (from inside main) is kept too.
startup_us() { # cxm|peer -> "POLLED_US SELF_REPORTED_MS"
    local port dir us self cmd
    port=$(free_port)
    dir=$(mktemp -d "$WORK/start.XXXXXX")
    if [[ $1 == cxm ]]; then
        cmd=("$BIN/cxmd" --listen "127.0.0.1:$port" --data "$dir")
    else
        cmd=("$BIN/cxm-cpp-health-peer" --listen "127.0.0.1:$port")
    fi
    us=$("$BIN/cxm-cpp-health-probe" --target "127.0.0.1:$port" -- "${cmd[@]}" 2>"$dir.log") ||
        die "$1 did not reach SERVING; its log: $(cat "$dir.log")"
    self=$(grep -o 'ready in [0-9.]* ms' "$dir.log" | grep -o '[0-9.]*' | head -n1) || true
    echo "$us ${self:-nan}"
}

# --- run -------------------------------------------------------------------

echo "== start to SERVING ($STARTS starts each, alternating; cxmd on a fresh data directory)"
for ((s = 0; s < STARTS; s++)); do
    startup_us cxm >>"$WORK/cxm.start"
    startup_us peer >>"$WORK/peer.start"
done
START_MS=$(awk '{ printf "%.1f\n", $1 / 1000 }' "$WORK/cxm.start" | median)
PEER_START_MS=$(awk '{ printf "%.1f\n", $1 / 1000 }' "$WORK/peer.start" | median)
SELF_MS=$(awk '{ print $2 }' "$WORK/cxm.start" | median)
echo "  median: cxmd ${START_MS} ms (its own 'ready in': ${SELF_MS} ms), peer ${PEER_START_MS} ms"

mkdir "$WORK/data"
"$BIN/cxmd" --listen 127.0.0.1:0 --data "$WORK/data" 2>"$WORK/cxmd.log" &
CXM_PID=$!
PIDS+=("$CXM_PID")
"$BIN/cxm-cpp-health-peer" --listen 127.0.0.1:0 >"$WORK/peer.log" 2>&1 &
PEER_PID=$!
PIDS+=("$PEER_PID")
CXM_PORT=$(wait_port "$WORK/cxmd.log" "$CXM_PID")
PEER_PORT=$(wait_port "$WORK/peer.log" "$PEER_PID")
sleep 0.5 # let both settle before the "just started" RSS
CXM_RSS0=$(rss_kib "$CXM_PID")
PEER_RSS0=$(rss_kib "$PEER_PID")
echo "== cxmd on :$CXM_PORT (pid $CXM_PID), peer on :$PEER_PORT (pid $PEER_PID)"
echo "== $ROUNDS rounds of ${DURATION}s runs; cxm-bench 2x32 and 1x1, h2load -c 2 -m 32"

for ((r = 1; r <= ROUNDS; r++)); do
    printf '\nround %d/%d\n' "$r" "$ROUNDS"
    printf '  %-5s %12s %12s %9s %9s %9s %9s %12s\n' server bench-qps h2load-qps \
        p50-us p99-us p999-us 1x1-p50 rss-KiB
    for who in cxm peer; do
        if [[ $who == cxm ]]; then port=$CXM_PORT pid=$CXM_PID; else port=$PEER_PORT pid=$PEER_PID; fi
        j=$(bench "$port" 2 32)
        j1=$(bench "$port" 1 1)
        hq=$(h2load_qps "$port")
        bq=$(json_num "$j" qps)
        p1=$(json_num "$j1" p50_us)
        printf '  %-5s %12.0f %12.0f %9s %9s %9s %9s %12s\n' "$who" "$bq" "$hq" \
            "$(json_num "$j" p50_us)" "$(json_num "$j" p99_us)" "$(json_num "$j" p999_us)" \
            "$p1" "$(rss_kib "$pid")"
        echo "$bq" >>"$WORK/$who.bench"
        echo "$hq" >>"$WORK/$who.h2load"
        echo "$p1" >>"$WORK/$who.p50"
    done
done

sleep 2 # idle RSS: after the load, once the connections are gone
CXM_RSS1=$(rss_kib "$CXM_PID")
PEER_RSS1=$(rss_kib "$PEER_PID")

med() { median <"$WORK/$1"; }
CB=$(med cxm.bench) PB=$(med peer.bench) CH=$(med cxm.h2load) PH=$(med peer.h2load)
C1=$(med cxm.p50) P1=$(med peer.p50)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "nan" }'; }
verdict() { awk -v v="$1" -v t="$2" -v op="$3" 'BEGIN {
    if (v !~ /^[0-9.]+$/) { print "n/a"; exit }
    ok = (op == ">=") ? v + 0 >= t : (op == "<=") ? v + 0 <= t : v + 0 < t; print ok ? "ok" : "MISSED" }'; }
RB=$(ratio "$CB" "$PB") RH=$(ratio "$CH" "$PH")
CXM_RSS_MIB=$(awk -v k="$CXM_RSS1" 'BEGIN { printf "%.1f", k / 1024 }')

printf '\n== summary (medians of %d rounds)\n' "$ROUNDS"
printf '  %-28s %12s %12s %8s\n' "" cxmd cpp-peer cxm/peer
printf '  %-28s %12.0f %12.0f %8s  target >= 1.20: %s\n' "QPS, cxm-bench 2x32" "$CB" "$PB" "$RB" \
    "$(verdict "$RB" 1.2 ">=")"
printf '  %-28s %12.0f %12.0f %8s  target >= 1.20: %s\n' "QPS, h2load -c2 -m32" "$CH" "$PH" "$RH" \
    "$(verdict "$RH" 1.2 ">=")"
printf '  %-28s %12s %12s %8s  target <= 60 (cxmd): %s\n' "p50 us, 1 in flight" "$C1" "$P1" "" \
    "$(verdict "$C1" 60 "<=")"
printf '  %-28s %12s %12s\n' "RSS KiB, just started" "$CXM_RSS0" "$PEER_RSS0"
printf '  %-28s %12s %12s %8s  target < 30 MiB (cxmd, %s MiB): %s\n' "RSS KiB, idle after load" \
    "$CXM_RSS1" "$PEER_RSS1" "" "$CXM_RSS_MIB" "$(verdict "$CXM_RSS1" 30720 "<")"
printf '  %-28s %12s %12s %8s  target < 200 (cxmd): %s\n' "start to SERVING, ms" "$START_MS" "$PEER_START_MS" "" \
    "$(verdict "$START_MS" 200 "<")"
