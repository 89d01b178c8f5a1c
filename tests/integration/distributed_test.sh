#!/usr/bin/env bash
# deploy/distributed.sh on binaries already built: nats-server and the four
# services as separate processes, the demo against them (the feedback part
# included), the erasure confirmed by every service through JetStream,
# everything stopped after.
#   distributed_test.sh BIN_DIR   (exits 77, a skip, without nats-server)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bin=$1
script=$(cd "$(dirname "$0")/../.." && pwd)/deploy/distributed.sh
command -v nats-server >/dev/null || { echo "SKIP: nats-server is not installed"; exit 77; }
dir=$(mktemp -d /tmp/cxm-distributed-test-XXXXXX)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*" >&2; cat "$dir/out" >&2; exit 1; }
has() { grep -qE -- "$1" "$dir/out" || fail "no \"$1\" in the output"; }

port=$(free_ports 5)
[ -n "$port" ] || fail "no five free ports found"

status=0
TMPDIR=$dir bash "$script" --bin "$bin" --dir "$dir/run" --port "$port" >"$dir/out" 2>&1 || status=$?
((status == 0)) || fail "distributed.sh exited $status"
has "records +[0-9]+ in .*: ([0-9]+) sent, \\1 OK"
has "^  completed_at"
# The world's responses through cxm-feedback (customers resolved by
# cxm-profile), the gap table and the open follow-ups.
has "^([0-9]+) sent, \\1 OK, 0 failed"
has "^(checkout|delivery|support_call) +[0-9.]+ +[0-9.]+ +\\+"
has "^fu-[0-9a-f]+ +open"
for svc in journey feedback personalisation; do has "^ +$svc done"; done
has "^mode  nats"
has "all stopped cleanly"
for svc in profile journey feedback personalisation; do
  pgrep -f "cxm-$svc --listen 127.0.0.1:" >/dev/null && fail "cxm-$svc still runs"
done
pgrep -f "nats-server .* -p $((port + 4))" >/dev/null && fail "nats-server still runs"

# A taken port is refused before anything starts.
(exec 3<>"/dev/tcp/127.0.0.1/$((port + 4))") 2>/dev/null && fail "port $((port + 4)) unexpectedly taken"
python3 -c 'import socket,sys,time; s=socket.socket(); s.bind(("127.0.0.1",int(sys.argv[1]))); s.listen(); time.sleep(60)' \
  "$((port + 2))" &
holder=$!
# Under load python takes a while to start: wait (at most 20 s) until the
# port really accepts connections rather than for a fixed time.
for _ in $(seq 200); do
  (exec 3<>"/dev/tcp/127.0.0.1/$((port + 2))") 2>/dev/null && break
  kill -0 "$holder" 2>/dev/null || fail "the port holder on $((port + 2)) exited"
  sleep 0.1
done
(exec 3<>"/dev/tcp/127.0.0.1/$((port + 2))") 2>/dev/null || fail "the port holder never listened on $((port + 2))"
status=0
bash "$script" --bin "$bin" --dir "$dir/run2" --port "$port" >"$dir/out" 2>&1 || status=$?
kill "$holder" 2>/dev/null || true
((status == 3)) || fail "with port $((port + 2)) taken: exit $status, wanted 3"
has "port $((port + 2)) is already taken"
[ ! -e "$dir/run2" ] || fail "it made $dir/run2 before finding the port taken"
echo "distributed: ok"
