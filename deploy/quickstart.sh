#!/usr/bin/env bash
# The main job on the embedded default: install what is missing, build, start
# cxmd (every service, one port, one data directory), show it answering, and
# run the demo (deploy/demo.sh): a customer across identities, a small
# generated world's CRM profiles, an erasure confirmed by every service.
# deploy/distributed.sh runs the same demo on the services as separate
# processes with a NATS JetStream bus.
#   deploy/quickstart.sh              demo on a fresh ./cxm-data, then a graceful stop
#   deploy/quickstart.sh --keep       leave cxmd running afterwards
#   deploy/quickstart.sh --keep-data  run on the data of the previous run
#   deploy/quickstart.sh --port N     listen on 127.0.0.1:N instead of 7400 (or CXM_PORT=N)
#   deploy/quickstart.sh --data DIR   data directory (or CXM_DATA=DIR)
#   deploy/quickstart.sh --bin DIR    use the binaries in DIR; skip installing and building
# Exits 0 after the demo, 1 when a step fails, 2 on bad usage or a data
# directory it will not wipe, 3 when the port is already taken.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
port=${CXM_PORT:-7400}
data=${CXM_DATA:-$root/cxm-data}
bin=""
keep=false
keep_data=false

usage() { sed -n '2,/^[^#]/s/^# \{0,1\}//p' "$0"; }
die() { echo "quickstart: $1" >&2; exit "${2:-1}"; }
value() { (($# >= 2)) || die "$1 needs a value" 2; echo "$2"; }
while (($#)); do
  case $1 in
    --keep) keep=true ;;
    --keep-data) keep_data=true ;;
    --port) port=$(value "$@"); shift ;;
    --data) data=$(value "$@"); shift ;;
    --bin) bin=$(value "$@"); shift ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown option \"$1\"; see --help" 2 ;;
  esac
  shift
done
[[ $port =~ ^[0-9]+$ ]] && ((port >= 1 && port <= 65535)) ||
  die "port \"$port\" is not a number from 1 to 65535" 2
listen=127.0.0.1:$port

# The process listening on the port, as "NAME (pid N)" when ss can tell;
# fails when nothing listens there.
port_holder() {
  if command -v ss >/dev/null 2>&1; then
    local line
    line=$(ss -Hltnp "sport = :$port" 2>/dev/null | head -n1)
    [ -n "$line" ] || return 1
    sed -n 's/.*users:(("\([^"]*\)",pid=\([0-9]*\).*/\1 (pid \2)/p' <<<"$line" | grep . ||
      echo "a process of another user"
  else
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || return 1
    echo "a process (install iproute2 and run \"ss -ltnp\" to see which)"
  fi
}

# Checked before anything else: a server already there would answer the
# demo in place of the new one, which then fails to bind.
if holder=$(port_holder); then
  pid_hint=$(sed -n 's/.*(pid \([0-9]*\))$/\1/p' <<<"$holder")
  {
    echo "quickstart: port $port is already taken by $holder."
    [[ $holder == cxmd* ]] && echo "  It is probably a cxmd left running by \"quickstart.sh --keep\"."
    [ -n "$pid_hint" ] && echo "  Stop it:              kill $pid_hint"
    echo "  Or use another port:  bash deploy/quickstart.sh --port $((port + 1))   (or CXM_PORT=$((port + 1)))"
  } >&2
  exit 3
fi

# A fresh data directory each run, unless asked to keep it. Only a directory
# quickstart made itself (it holds .quickstart) is wiped.
if ! $keep_data && [ -e "$data" ]; then
  [ -e "$data/.quickstart" ] ||
    die "$data exists and was not made by quickstart, so it is not wiped.
  Run on it as it is with --keep-data, or choose another directory with --data DIR (or CXM_DATA)." 2
  rm -rf "$data"
fi
mkdir -p "$data"
touch "$data/.quickstart"

if [ -z "$bin" ]; then
  bash "$root/deploy/install-deps.sh"
  bash "$root/deploy/build.sh" "$root/build"
  bin=$root/build/bin
fi

echo "== starting cxmd on $listen (data in $data)"
# The demo's generated world is priced in KRW: let its values count.
"$bin/cxmd" --listen "$listen" --data "$data" --journey-base-currency KRW &
pid=$!
cleanup() {
  [ -n "${pid:-}" ] && kill -TERM $pid 2>/dev/null
  wait $pid 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 100); do
  kill -0 $pid 2>/dev/null || die "cxmd exited; see its log above"
  "$bin/cxmctl" --target "$listen" --timeout 200ms health >/dev/null 2>&1 && break
  sleep 0.05
done

echo "== health";   "$bin/cxmctl" --target "$listen" health
echo "== services (server reflection)"; "$bin/cxmctl" --target "$listen" services
bash "$root/deploy/demo.sh" "$bin" "$listen"
echo "== 3 s of Health/Check load, 2 connections x 32 in flight"
"$bin/cxm-bench" --target "$listen" --duration 3s --warmup 1s

if $keep; then
  trap - EXIT
  echo "cxmd keeps running as pid $pid; stop it with: kill $pid"
else
  echo "== graceful stop (SIGTERM)"
  kill -TERM $pid 2>/dev/null || die "cxmd (pid $pid) had already exited"
  status=0
  wait $pid || status=$?
  pid=""
  ((status == 0)) || die "cxmd exited with status $status on SIGTERM"
  echo "cxmd drained and exited 0. Run it yourself: $bin/cxmd --listen $listen --data $data"
fi
