#!/usr/bin/env bash
# The main job on the embedded default: install what is missing, build, start
# cxmd (every service, one port, one data directory), and show it answering.
#   deploy/quickstart.sh          demo, then a graceful stop
#   deploy/quickstart.sh --keep   leave cxmd running afterwards
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
listen=${CXM_LISTEN:-127.0.0.1:7400}
data=${CXM_DATA:-$root/cxm-data}
bin=$root/build/bin

bash "$root/deploy/install-deps.sh"
bash "$root/deploy/build.sh" "$root/build"

echo "== starting cxmd on $listen (data in $data)"
"$bin/cxmd" --listen "$listen" --data "$data" &
pid=$!
trap '[ -n "${pid:-}" ] && kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  "$bin/cxmctl" --target "$listen" --timeout 200ms health >/dev/null 2>&1 && break
  kill -0 $pid 2>/dev/null || { echo "cxmd exited; see the log above" >&2; exit 1; }
  sleep 0.05
done

echo "== health";   "$bin/cxmctl" --target "$listen" health
echo "== services (server reflection)"; "$bin/cxmctl" --target "$listen" services
ctl() { echo "\$ cxmctl $*"; "$bin/cxmctl" --target "$listen" "$@"; }
echo "== one customer across identities (profile service)"
ctl profile upsert --identity email:Ann.Lee@Example.com --set tier=gold \
  --set visits:=1 --strategy visits=add --source quickstart
ctl profile upsert --identity phone:+82-10-1234-5678 --set city=Seoul --source app
echo "# the app's phone profile and the web's email profile are one customer: link them"
ctl profile upsert --identity email:ann.lee@example.com --identity phone:+821012345678 \
  --set visits:=1 --source crm
ctl profile consent --identity email:ann.lee@example.com marketing_email granted --source web_banner
ctl profile get --identity phone:+821012345678
echo "== 3 s of Health/Check load, 2 connections x 32 in flight"
"$bin/cxm-bench" --target "$listen" --duration 3s --warmup 1s

if [ "${1:-}" = "--keep" ]; then
  trap - EXIT
  echo "cxmd keeps running as pid $pid; stop it with: kill $pid"
else
  echo "== graceful stop (SIGTERM)"
  kill -TERM $pid; wait $pid; pid=""
  echo "cxmd drained and exited 0. Run it yourself: $bin/cxmd --listen $listen --data $data"
fi
