#!/usr/bin/env bash
# cxm-gen's profiles.pb replayed into a real cxmd with cxm-bench --requests:
# every signed-up customer of the world resolves by email to a profile of its
# own that also holds its phone and CRM id; replaying the file again changes
# nothing (gen sets request_id, so every upsert is a duplicate); and missing,
# empty, cut or other-method files are refused before any call, naming the
# file and the record.
#   replay_test.sh BIN_DIR
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bin=$1
dir=$(mktemp -d /tmp/cxm-replay-test-XXXXXX)
pid=""
cleanup() {
  [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

"$bin/cxm-gen" --seed 7 --customers 300 --days 30 --formats pb,csv --out "$dir/w" 2>/dev/null
n=$(sed -n 's/.*"signed_up": \([0-9]*\).*/\1/p' "$dir/w/truth.json")
((n >= 50)) || fail "truth.json has $n signed-up customers; the world is too small to test"
# One line per signed-up customer (the ones with a CRM id): id, email, phone,
# CRM id. identities.csv has no free text, so no quoted commas.
awk -F, 'NR > 1 && ($2 == "email" || $2 == "phone" || $2 == "crm_id") { v[$1, $2] = $3 }
         $2 == "crm_id" { ids[$1] }
         END { for (c in ids) print c, v[c, "email"], v[c, "phone"], v[c, "crm_id"] }' \
  "$dir/w/identities.csv" | sort >"$dir/customers"
(($(wc -l <"$dir/customers") == n)) || fail "identities.csv does not hold $n signed-up customers"

start_server "$dir/log" 400 "$bin/cxmd" --listen 127.0.0.1:0 --data "$dir/data" ||
  fail "cxmd did not start: $(cat "$dir/log")"
target=127.0.0.1:$port
method=/cxm.v1.ProfileService/UpsertProfile

# replay FILE: every record answered OK, as the JSON summary says.
replay() {
  "$bin/cxm-bench" --target "$target" --requests "$1" --method "$method" --json \
    >"$dir/out" 2>"$dir/err" || fail "replaying $1: $(cat "$dir/err")"
  grep -q "\"records\":$n,.*\"completed\":$n,\"ok\":$n,\"errors\":0" "$dir/out" ||
    fail "replaying $1: not $n records all OK: $(cat "$dir/out")"
}

# Every customer's profile, looked up by email, one JSON line each.
snapshot() {
  local id email phone crm
  while read -r id email phone crm; do
    "$bin/cxmctl" --target "$target" --json profile get --identity "email:$email" ||
      fail "customer $id ($email) did not resolve"
  done <"$dir/customers" >"$1"
}

replay "$dir/w/profiles.pb"
snapshot "$dir/first"
paste -d ' ' "$dir/customers" "$dir/first" | while read -r id email phone crm json; do
  for v in "$email" "$phone" "$crm"; do
    grep -qF "\"value\":\"$v\"" <<<"$json" || fail "customer $id's profile lacks $v: $json"
  done
done
distinct=$(grep -o '^{"profile":{"customer_id":"c[0-9a-f]*"' "$dir/first" | sort -u | wc -l)
((distinct == n)) || fail "$n customers resolved to $distinct profiles"

replay "$dir/w/profiles.pb"
snapshot "$dir/second"
cmp -s "$dir/first" "$dir/second" || fail "replaying the file again changed profiles:
$(diff "$dir/first" "$dir/second" | head -5)"

# refuse FILE MESSAGE: exit 2 before any call, with MESSAGE on stderr.
refuse() {
  local status=0
  "$bin/cxm-bench" --target "$target" --requests "$1" --method "$method" >"$dir/out" 2>&1 ||
    status=$?
  ((status == 2)) && grep -qF -- "$2" "$dir/out" ||
    fail "--requests $1: exit $status, wanted 2 and \"$2\": $(cat "$dir/out")"
}
head -c -3 "$dir/w/profiles.pb" >"$dir/cut.pb"
: >"$dir/empty.pb"
refuse "$dir/cut.pb" "cut.pb: record $n is cut short"
refuse "$dir/empty.pb" "empty.pb: no records"
refuse "$dir/missing.pb" "missing.pb: cannot open"
refuse "$dir/w/track.pb" "track.pb: record 1 does not decode as cxm.v1.UpsertProfileRequest"
refuse "$dir/w/responses.pb" "responses.pb: record 1 does not decode as cxm.v1.UpsertProfileRequest"
echo "replay: $n customers loaded and unchanged by a second replay"
