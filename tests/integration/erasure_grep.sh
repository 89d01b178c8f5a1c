#!/usr/bin/env bash
# Erasure that really erases, against a real cxmd: three customers get
# distinctive random values (email, phone, attributes, journey events,
# feedback text, reco outcomes); one is deleted, and once its receipt is
# complete (every service confirmed after the store's compaction) no byte
# sequence of its values may be found in any file of the data directory nor
# in a copy of it made then (a backup), while the other customers' values
# are still in the file and still served. With WRITES > 0, that many more
# profile writes follow and the grep is repeated: nothing comes back.
#   erasure_grep.sh BIN_DIR [WRITES]
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bin=$1
writes=${2:-0}
dir=$(mktemp -d /tmp/cxm-erasure-grep-XXXXXX)
pid=""
cleanup() { [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; [ -n "${KEEP:-}" ] || rm -rf "$dir"; }
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# The log stays outside the data directory: only data files are grepped.
start_server "$dir/log" 400 "$bin/cxmd" --listen 127.0.0.1:0 --data "$dir/data" \
  --erasure-compact-delay 200ms || fail "cxmd did not start: $(cat "$dir/log")"
ctl=(--target "127.0.0.1:$port" --timeout 30s)
c() { "$bin/cxmctl" "${ctl[@]}" "$@"; }
# upserts DURATION: other customers' profile writes for that long; prints
# how many were answered OK. They copy the pages around the test's
# customers many times (LMDB's copy-on-write), leaving old versions in free
# pages: without the compaction the erased values stay there (tens of
# copies of the email were counted that way).
upserts() {
  "$bin/cxm-bench" "${ctl[@]:0:2}" --generator profile-upsert --connections 2 --inflight 16 \
    --warmup 0ms --duration "$1" --json >"$dir/bench" 2>&1 || fail "cxm-bench: $(cat "$dir/bench")"
  grep -o '"ok":[0-9]*' "$dir/bench" | cut -d: -f2
}

c feedback survey upsert --id eg-nps --kind nps >/dev/null || fail "survey upsert"
c reco experience upsert --id eg-offer --kind offer --title "an offer" >/dev/null ||
  fail "experience upsert"

upserts 1s >/dev/null
# Each value unique and long enough that a chance match is impossible; the
# token t is in each of them. The touchpoint is not: journey keeps
# touchpoint names in a dictionary shared by every customer (catalogue
# data, not the customer's), which an erasure rightly keeps.
token() { od -An -N8 -tx1 /dev/urandom | tr -d ' \n'; }
declare -a ids values
for i in 0 1 2; do
  t=$(token)
  email="em${t}@example.com" phone="+4915$(od -An -N4 -tu4 /dev/urandom | tr -d ' ' | cut -c1-8)"
  attr="attr${t}" note="feedback text ${t} about the checkout"
  c profile upsert --identity "email:$email" --identity "phone:$phone" --set "nick=$attr" \
    >"$dir/out" 2>&1 || fail "upsert $i: $(cat "$dir/out")"
  id=$(grep -m1 -o 'customer_id *c[0-9a-f]*' "$dir/out" | awk '{print $2}')
  [ -n "$id" ] || fail "no customer id in: $(cat "$dir/out")"
  c journey track --customer-id "$id" --touchpoint checkout_page --channel web --type page_view \
    --prop "ref=prop$t" >/dev/null ||
    fail "track $i"
  c feedback submit --survey eg-nps --customer-id "$id" --score 3 --text "$note" >/dev/null ||
    fail "submit $i"
  c reco outcome "$id" --experience eg-offer --outcome click >/dev/null || fail "outcome $i"
  ids[i]=$id
  values[i]="$email $phone $attr $t"
done

upserts 1s >/dev/null

# found FILE... VALUE: how many times VALUE occurs in the files (raw bytes).
found() {
  local v=${!#} n=0 f
  for f in "${@:1:$#-1}"; do
    n=$((n + $(LC_ALL=C grep -a -o -F -- "$v" "$f" | wc -l)))
  done
  echo "$n"
}

# Before: the values are all in the data file (so the grep can see them).
for v in ${values[0]} ${values[1]}; do
  (($(found "$dir/data/data.mdb" "$v") > 0)) || fail "\"$v\" not even written to data.mdb"
done

c profile delete "${ids[0]}" --reason "erasure grep test" >/dev/null || fail "delete"
for _ in $(seq 300); do
  c profile receipt "${ids[0]}" >"$dir/receipt" 2>&1 || fail "receipt: $(cat "$dir/receipt")"
  grep -q completed_at "$dir/receipt" && break
  sleep 0.05
done
grep -q completed_at "$dir/receipt" || fail "receipt incomplete after 15 s: $(cat "$dir/receipt")"
grep -q pending "$dir/receipt" && fail "a service still pending: $(cat "$dir/receipt")"
cp -a "$dir/data" "$dir/backup"

check_clean() {
  local files=("$dir"/data/* "$dir"/backup/*) v
  for v in ${values[0]}; do
    (($(found "${files[@]}" "$v") == 0)) ||
      fail "$1: erased \"$v\" still in: $(LC_ALL=C grep -a -l -F -- "$v" "${files[@]}" | tr '\n' ' ')"
  done
  for i in 1 2; do
    for v in ${values[i]}; do
      (($(found "$dir/data/data.mdb" "$v") > 0)) || fail "$1: \"$v\" of a kept customer is gone"
    done
    set -- "$1" ${values[i]}
    c profile get --identity "email:$2" >"$dir/out" 2>&1 || fail "get kept $i: $(cat "$dir/out")"
    grep -qF "$4" "$dir/out" || fail "kept customer $i served without its attribute"
    c --json journey timeline "${ids[i]}" >"$dir/out" 2>&1 || fail "timeline $i"
    grep -qF "prop$5" "$dir/out" || fail "kept customer $i's event is not served: $(cat "$dir/out")"
  done
  echo "$1: no byte of the erased customer in ${#files[@]} files; the others kept"
}
check_clean "after the receipt"

if ((writes > 0)); then
  # More writes reuse and rewrite pages; nothing erased may resurface.
  done_writes=0
  for _ in $(seq 20); do
    done_writes=$((done_writes + $(upserts 2s)))
    ((done_writes >= writes)) && break
  done
  ((done_writes >= writes)) || fail "only $done_writes of $writes writes done"
  writes=$done_writes
  rm -rf "$dir/backup"
  cp -a "$dir/data" "$dir/backup"
  check_clean "after $writes more writes"
fi
echo "erasure grep: ok"
