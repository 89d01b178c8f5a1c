#!/usr/bin/env bash
# The four services as separate processes, each with its own data directory,
# talking through a local NATS JetStream server - the distributed layout on
# one machine - and the quick start's demo against them, including an erasure
# that every service confirms through the bus.
#   deploy/distributed.sh               demo on fresh data under ./cxm-distributed, then stop all
#   deploy/distributed.sh --keep        leave nats-server and the services running
#   deploy/distributed.sh --port N      first of five ports: profile N, journey N+1, feedback N+2,
#                                       personalisation N+3, nats N+4 (default 7410; or CXM_PORT)
#   deploy/distributed.sh --dir DIR     where the data and logs go (or CXM_DIR)
#   deploy/distributed.sh --bin DIR     use the binaries in DIR; skip installing and building
# Exits 0 after the demo, 1 when a step fails, 2 on bad usage, 3 when a port is taken.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
port=${CXM_PORT:-7410}
dir=${CXM_DIR:-$root/cxm-distributed}
bin=""
keep=false

usage() { sed -n '2,/^[^#]/s/^# \{0,1\}//p' "$0"; }
die() { echo "distributed: $1" >&2; exit "${2:-1}"; }
value() { (($# >= 2)) || die "$1 needs a value" 2; echo "$2"; }
while (($#)); do
  case $1 in
    --keep) keep=true ;;
    --port) port=$(value "$@"); shift ;;
    --dir) dir=$(value "$@"); shift ;;
    --bin) bin=$(value "$@"); shift ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown option \"$1\"; see --help" 2 ;;
  esac
  shift
done
[[ $port =~ ^[0-9]+$ ]] && ((port >= 1 && port <= 65531)) ||
  die "port \"$port\" is not a number from 1 to 65531" 2

services=(profile journey feedback personalisation)
nats_port=$((port + 4))
for p in $(seq "$port" "$nats_port"); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    die "port $p is already taken (see: ss -ltnp 'sport = :$p').
  Stop what holds it, or use other ports: bash deploy/distributed.sh --port $((port + 10))" 3
  fi
done

# Fresh data each run; only a directory this script made is wiped.
if [ -e "$dir" ]; then
  [ -e "$dir/.distributed" ] ||
    die "$dir exists and was not made by this script, so it is not wiped; choose another with --dir" 2
  rm -rf "$dir"
fi
mkdir -p "$dir"
touch "$dir/.distributed"

if [ -z "$bin" ]; then
  bash "$root/deploy/install-deps.sh"
  bash "$root/deploy/build.sh" "$root/build"
  bin=$root/build/bin
fi
command -v nats-server >/dev/null || die "nats-server is not installed; run: bash deploy/install-deps.sh"

pids=()
cleanup() {
  ((${#pids[@]})) && kill -TERM "${pids[@]}" 2>/dev/null
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

nats=nats://127.0.0.1:$nats_port
echo "== nats-server with JetStream on $nats (store in $dir/nats)"
nats-server -js -a 127.0.0.1 -p "$nats_port" -sd "$dir/nats" >"$dir/nats.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$nats_port") 2>/dev/null && break
  sleep 0.05
done

for i in "${!services[@]}"; do
  svc=${services[$i]}
  listen=127.0.0.1:$((port + i))
  echo "== cxm-$svc on $listen (data in $dir/$svc, log in $dir/$svc.log)"
  extra=()
  # journey, feedback and personalisation resolve customers through the profile
  # service (the first port).
  case $svc in journey | feedback | personalisation) extra=(--profile-addr "127.0.0.1:$port") ;; esac
  "$bin/cxm-$svc" --listen "$listen" --data "$dir/$svc" --nats-url "$nats" "${extra[@]}" \
    >"$dir/$svc.log" 2>&1 &
  pids+=($!)
done
for i in "${!services[@]}"; do
  listen=127.0.0.1:$((port + i))
  for _ in $(seq 100); do
    "$bin/cxmctl" --target "$listen" --timeout 200ms health "" >/dev/null 2>&1 && break
    kill -0 "${pids[$((i + 1))]}" 2>/dev/null || die "cxm-${services[$i]} exited; see $dir/${services[$i]}.log"
    sleep 0.05
  done
done

bash "$root/deploy/demo.sh" "$bin" "127.0.0.1:$port" "127.0.0.1:$((port + 1))" \
  "127.0.0.1:$((port + 2))" "127.0.0.1:$((port + 3))"
echo "== the bus, as each service sees it"
for i in "${!services[@]}"; do
  echo "\$ cxmctl --target 127.0.0.1:$((port + i)) bus status   # cxm-${services[$i]}"
  "$bin/cxmctl" --target "127.0.0.1:$((port + i))" bus status
done

if $keep; then
  trap - EXIT
  echo "running: nats-server and the four services, pids ${pids[*]}; stop them with: kill ${pids[*]}"
else
  echo "== graceful stop (SIGTERM)"
  kill -TERM "${pids[@]:1}"
  status=0
  for p in "${pids[@]:1}"; do wait "$p" || status=$?; done
  kill -TERM "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true
  pids=()
  ((status == 0)) || die "a service exited with status $status on SIGTERM; see the logs in $dir"
  echo "all stopped cleanly; logs and data are in $dir"
fi
