#!/usr/bin/env bash
# deploy/quickstart.sh twice on one port, on binaries already built: the
# second run, with the first's cxmd kept running, must stop before touching
# anything and say who holds the port and what to do; each run starts on a
# fresh data directory unless --keep-data, and never wipes one it did not make.
# The first run loads a generated world's profiles, all of them, and its
# survey responses, and shows the gap table and the open follow-ups; then
# one customer's next best experiences before and after a detractor NPS.
#   quickstart_test.sh BIN_DIR
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bin=$1
quickstart=$(cd "$(dirname "$0")/../.." && pwd)/deploy/quickstart.sh
dir=$(mktemp -d /tmp/cxm-quickstart-test-XXXXXX)
kept=""
cleanup() { [ -n "$kept" ] && kill -TERM "$kept" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; [ -e "$dir/out" ] && cat "$dir/out" >&2; exit 1; }

# run STATUS ARGS...: quickstart ARGS exits STATUS; its output in $dir/out.
# A file, not a pipe: a kept cxmd holds its output open.
run() {
  local want=$1 status=0
  shift
  CXM_DATA=$dir/data TMPDIR=$dir/tmp bash "$quickstart" --bin "$bin" "$@" >"$dir/out" 2>&1 ||
    status=$?
  ((status == want)) || fail "quickstart $*: exit $status, wanted $want"
}
has() { grep -qF -- "$1" "$dir/out" || fail "no \"$1\" in the output"; }

mkdir "$dir/tmp"
port=$(free_ports 1)
[ -n "$port" ] || fail "no free port found"

# A data directory of an earlier run is wiped.
mkdir "$dir/data"
touch "$dir/data/.quickstart" "$dir/data/stale"
run 0 --port "$port" --keep
has "SERVING"
has "cxm.v1.ProfileService"
kept=$(sed -n 's/^cxmd keeps running as pid \([0-9]*\);.*/\1/p' "$dir/out")
[ -n "$kept" ] && kill -0 "$kept" || fail "no kept cxmd"
[ ! -e "$dir/data/stale" ] || fail "the earlier run's data was not wiped"
grep -q "^  completed_at" "$dir/out" || fail "the erasure receipt did not complete"

# The generated world's profiles were all loaded: every record OK, the first
# customer shown, and the last one there in the kept cxmd.
start_ms=$((($(date +%s) / 86400 - 29) * 86400000)) # as deploy/demo.sh makes it
"$bin/cxm-gen" --seed 1 --customers 2000 --days 28 --start-ms "$start_ms" --formats csv \
  --out "$dir/world" 2>/dev/null
n=$(sed -n 's/.*"signed_up": \([0-9]*\).*/\1/p' "$dir/world/truth.json")
has "$n sent, $n OK"
# Its touchpoint events, every one accepted, then a funnel and the table.
grep -Eq "accepted ([0-9]+), duplicates 0, rejected 0 of \1 events" "$dir/out" ||
  fail "not every touchpoint event of the world was accepted"
has "4 purchase"
has "customers active"
# Its surveys and responses, every one OK; the gap table with a planted gap
# touchpoint on top, the scores with a trend column, the open follow-ups.
r=$(sed -n 's/.*"counts": {[^}]*"responses": \([0-9]*\).*/\1/p' "$dir/world/truth.json")
[ -n "$r" ] && ((r > 0)) || fail "no responses in the world's truth.json"
has "created nps_relationship version 1"
has "$r sent, $r OK, 0 failed"
grep -A1 '^TOUCHPOINT  *EXPECT' "$dir/out" | tail -1 | grep -Eq '^(checkout|delivery|support_call) ' ||
  fail "no planted gap touchpoint on top of the gap table"
has "RESPONSES    SCORE"
has "TREND"
grep -Eq '^fu-[0-9a-f]+ +open' "$dir/out" || fail "no open follow-up shown"
# Next best experience: the world's items, a guide and the apology in the
# catalogue, every interaction accepted, a model trained and serving; one
# customer's recommendations with reasons, then, after that customer's
# detractor NPS, the apology first with its reason and the offers held back.
items=$(sed -n 's/.*"items": \([0-9]*\).*/\1/p' "$dir/world/truth.json")
i=$(sed -n 's/.*"interactions": \([0-9]*\).*/\1/p' "$dir/world/truth.json")
[ -n "$items" ] && [ -n "$i" ] || fail "no item or interaction count in the world's truth.json"
has "$items experiences, $items created, 0 updated"
has "created apology_callback"
has "accepted $i, duplicates 0, rejected 0 of $i interactions"
has "(activated: it serves now)"
before=$(sed -n '/next best experiences on the web, with the reasons$/,/answers the NPS survey/p' "$dir/out")
after=$(sed -n '/^# service recovery: the apology first/,/^== erasure/p' "$dir/out")
grep -q "service recovery: no" <<<"$before" || fail "the customer was in service recovery already"
grep -Eq '^ +1  item-[0-9]+ +offer ' <<<"$before" || fail "no offer ranked first before the detractor NPS"
grep -Eq '^ +[0-9]+%  (similar-to-history|similar-customers) ' <<<"$before" ||
  fail "no model reason on the recommendations before the detractor NPS"
grep -Eq '^recorded .* detractor' "$dir/out" || fail "the demo's NPS answer was not a detractor"
grep -Eq 'service recovery: yes, [1-9][0-9]* offers held back' <<<"$after" ||
  fail "no service recovery with offers held back after the detractor NPS"
grep -Eq '^ +1  apology_callback +service-action ' <<<"$after" ||
  fail "the apology is not ranked first after the detractor NPS"
grep -Eq '^ +[0-9]+%  service-recovery +you recently had a bad experience' <<<"$after" ||
  fail "no service-recovery reason on the apology"
grep -Eq '^ +[0-9]+  [^ ]+ +offer ' <<<"$after" && fail "an offer was recommended in service recovery"
first=$(awk -F, '$2 == "email" { print $3; exit }' "$dir/world/identities.csv")
last=$(awk -F, '$2 == "email" { e = $3 } END { print e }' "$dir/world/identities.csv")
has "email:$first"
"$bin/cxmctl" --target "127.0.0.1:$port" profile get --identity "email:$last" >"$dir/out" 2>&1 ||
  fail "the last generated customer ($last) is not in cxmd"
has "crm:CRM-"
[ -z "$(ls -A "$dir/tmp")" ] || fail "quickstart left its world behind in TMPDIR"

# The port is taken by the kept cxmd: exit 3, say by whom and what to do.
touch "$dir/data/mark"
CXM_PORT=$port run 3
has "port $port is already taken by"
if command -v ss >/dev/null; then
  has "cxmd (pid $kept)"
  has "kill $kept"
fi
has "--port $((port + 1))"
has "CXM_PORT="
[ -e "$dir/data/mark" ] || fail "a refused run touched the data directory"
kill -0 "$kept" || fail "a refused run stopped the kept cxmd"
kill -TERM "$kept"
for _ in $(seq 200); do kill -0 "$kept" 2>/dev/null || break; sleep 0.025; done
kill -0 "$kept" 2>/dev/null && fail "the kept cxmd did not stop on SIGTERM"
kept=""

# --keep-data runs on the data as it is, and stops cxmd gracefully.
run 0 --port "$port" --keep-data
has "cxmd drained and exited 0"
[ -e "$dir/data/mark" ] || fail "--keep-data wiped the data directory"

# A directory quickstart did not make is refused, not wiped.
mkdir "$dir/other"
touch "$dir/other/precious"
CXM_DATA=$dir/other bash "$quickstart" --bin "$bin" --port "$port" >"$dir/out" 2>&1 &&
  fail "quickstart ran on a directory it did not make" || status=$?
((status == 2)) || fail "exit $status on a directory quickstart did not make, wanted 2"
has "was not made by quickstart"
has "--keep-data"
[ -e "$dir/other/precious" ] || fail "quickstart wiped a directory it did not make"
echo "quickstart: ok"
