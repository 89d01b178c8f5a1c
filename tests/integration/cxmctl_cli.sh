#!/usr/bin/env bash
# cxmctl as a person types it: mistyped options and commands get a "did you
# mean", "cxmctl profile" lists its commands, --timeout wants a unit, and
# every example in --help runs against a real cxmd without a usage error.
#   cxmctl_cli.sh BIN_DIR
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bin=$1
dir=$(mktemp -d /tmp/cxm-cxmctl-cli-XXXXXX)
pid=""
cleanup() { [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# expect STATUS TEXT ARGS...: cxmctl ARGS exits STATUS and prints TEXT
# (stdout and stderr together).
expect() {
  local want=$1 text=$2 status=0
  shift 2
  "$bin/cxmctl" "$@" >"$dir/out" 2>&1 || status=$?
  ((status == want)) || fail "cxmctl $*: exit $status, wanted $want: $(cat "$dir/out")"
  grep -qF -- "$text" "$dir/out" || fail "cxmctl $*: no \"$text\" in: $(cat "$dir/out")"
}

expect 2 'unknown option --tagret; did you mean --target?' --tagret 127.0.0.1:1 health
expect 2 'unknown option --tagret; did you mean --target?' --tagret=127.0.0.1:1 health
expect 2 'health: unknown option --tagret; did you mean --target?' health --tagret 127.0.0.1:1
expect 2 'unknown option --identiy; did you mean --identity?' profile get --identiy email:a@b.co
expect 2 'unknown command "profle"; did you mean "profile"?' profle get
expect 2 'unknown command "profile gte"; did you mean "profile get"?' profile gte
expect 2 'unknown command "xyzzy"' xyzzy
for sub in upsert get resolve merge unmerge consent delete receipt search; do
  expect 0 "profile $sub " profile
  expect 0 "profile $sub " profile --help
done
expect 2 'give a duration from 1ms to 1h with its unit, such as 200ms, 5s or 2m' --timeout 5 health
expect 2 'CXM_TIMEOUT' --timeout=0s health
CXM_TIMEOUT=5 expect 2 '--timeout "5" (or CXM_TIMEOUT)' health
expect 0 'default 5s' --help

start_server "$dir/log" 200 "$bin/cxmd" --listen 127.0.0.1:0 --data "$dir/data" ||
  fail "cxmd did not start: $(cat "$dir/log")"
target=127.0.0.1:$port

expect 0 SERVING --target "$target" --timeout 5s health
expect 0 SERVING --target "$target" --timeout=200ms health
CXM_TIMEOUT=2m expect 0 cxm.v1.ProfileService --target "$target" services

# An erasure's receipt, by customer id and by receipt id, text and JSON: the
# other services pending when the delete answers, done once the erasure
# cascaded through them (the bus, in process: milliseconds).
"$bin/cxmctl" --target "$target" --json profile upsert --identity email:gone@example.com >"$dir/out"
cid=$(grep -o '"customer_id":"c[0-9a-f]*"' "$dir/out" | head -1 | cut -d'"' -f4)
[ -n "$cid" ] || fail "no customer id in: $(cat "$dir/out")"
expect 0 'journey pending' --target "$target" profile delete "$cid" --reason "test #1"
for _ in $(seq 100); do
  "$bin/cxmctl" --target "$target" profile receipt "$cid" >"$dir/out"
  grep -q completed_at "$dir/out" && break
  sleep 0.02
done
expect 0 'journey done  (0 records' --target "$target" profile receipt "$cid"
"$bin/cxmctl" --target "$target" --json profile receipt "$cid" >"$dir/out"
rid=$(grep -o '"receipt_id":"r[0-9a-f]*"' "$dir/out" | cut -d'"' -f4)
[ -n "$rid" ] || fail "no receipt id in: $(cat "$dir/out")"
expect 0 '{"service":"personalisation","state":"ERASURE_STATE_DONE"' \
  --target "$target" --json profile receipt "$rid"
expect 0 "customer_id          $cid" --target "$target" profile receipt "$rid"
expect 1 'NOT_FOUND: cxm.v1.ProfileService/GetDeletionReceipt: receipt_id: no erasure' \
  --target "$target" profile receipt r0123456789abcdef
expect 1 'INVALID_ARGUMENT: cxm.v1.ProfileService/GetDeletionReceipt: receipt_id: "r12"' \
  --target "$target" profile receipt r12
expect 2 '"x1" is neither a receipt id (r...) nor a customer id (c...)' \
  --target "$target" profile receipt x1
expect 2 'expects 1 argument, got 0' --target "$target" profile receipt

# Every example of the help, in its order: none may be refused as bad usage,
# and made-up ids may only be unknown to the server.
"$bin/cxmctl" --help | sed -n 's/^ *e\.g\. cxmctl //p' >"$dir/examples"
(($(wc -l <"$dir/examples") >= 10)) || fail "too few examples in --help"
while read -r example; do
  eval "set -- $example"
  status=0
  "$bin/cxmctl" --target "$target" "$@" </dev/null >"$dir/out" 2>&1 || status=$?
  ((status == 0)) || { ((status == 1)) && grep -q NOT_FOUND "$dir/out"; } ||
    fail "example \"cxmctl $example\" exited $status: $(cat "$dir/out")"
done <"$dir/examples"
echo "cxmctl cli: ok"
