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

# journey: mistakes in the command line are caught before any call (exit 2,
# naming the flag), so these need no server.
for sub in track timeline state rules set-rules funnel paths touchpoints; do
  expect 0 "journey $sub" journey
  expect 0 "journey $sub" journey "$sub" --help
done
expect 2 'unknown option --stpe; did you mean --step?' journey funnel --stpe a
expect 2 '--step: give 2 to 20 steps, in order (got 1)' journey funnel --step a --from 1d
expect 2 'step channel "webb" is none of: web app' journey funnel --step a --step 'b@cart#webb' --from 1d
expect 2 '--from TIME is required' journey funnel --step a --step b
expect 2 '--window "7x": give a duration with its unit' journey funnel --step a --step b --from 1d --window 7x
expect 2 '--order "random" is none of: ordered strict any' journey funnel --step a --step b --from 1d --order random
expect 2 '--breakdown "device" is none of: channel first-touchpoint' journey funnel --step a --step b --from 1d --breakdown device
expect 2 '--breakdown-limit: "101" is not a whole number from 0 to 100' journey funnel --step a --step b --from 1d --breakdown-limit 101
expect 2 '--step "@#": expected TYPE[@TOUCHPOINT][#CHANNEL]' journey funnel --step '@#' --step b --from 1d
expect 2 '--direction "sideways" is none of: from to' journey paths --anchor cart --direction sideways --from 1d
expect 2 '--anchor X is required' journey paths --direction from --from 1d
expect 2 '--max-length: "11" is not a whole number from 0 to 10' journey paths --anchor cart --direction to --from 1d --max-length 11
expect 2 '--element "page" is none of: touchpoint event-type' journey paths --anchor cart --direction to --from 1d --element page
expect 2 '--bucket "fortnight" is none of: hour day week month' journey touchpoints --from 1d --bucket fortnight
expect 2 '--goal-window needs --goal EVENT_TYPE' journey touchpoints --from 1d --goal-window 7d
expect 2 '--channel "fax" is none of' journey touchpoints --from 1d --channel fax
expect 2 '--from "yesterday": give a time' journey timeline c1 --from yesterday
expect 2 '--from "2025-01-01T10:00:00+-5:00": give a time' journey timeline c1 --from '2025-01-01T10:00:00+-5:00'
expect 2 '--from "2025-01-01T10:00:00+24:00": give a time' journey timeline c1 --from '2025-01-01T10:00:00+24:00'
expect 2 'name the customer by ID or by --identity, not neither' journey timeline
expect 2 '--limit: "5000" is not a whole number from 0 to 1000' journey timeline c1 --limit 5000
expect 2 'name the customer by ID or by --identity, not both' journey state c1 --identity email:a@b.co
expect 2 'expects 0 arguments, got 1' journey rules extra
track=(--identity email:a@b.co --touchpoint cart --channel web --type add_to_cart)
expect 2 'by --customer-id or by --identity, not both' journey track --customer-id c1 "${track[@]}"
expect 2 '--touchpoint T is required' journey track --identity email:a@b.co --channel web --type x
expect 2 '--channel "webb" is none of' journey track "${track[@]:0:4}" --channel webb --type x
expect 2 '--prop "price": expected NAME=VALUE' journey track "${track[@]}" --prop price
expect 2 '--value "abc" is not a finite number' journey track "${track[@]}" --value abc
expect 2 '--at "soon": give a time' journey track "${track[@]}" --at soon
expect 2 'identity "mail:a": expected TYPE:VALUE' journey track "${track[@]}" --link mail:a
expect 2 '--window applies only to --file' journey track "${track[@]}" --window 4
expect 2 '--type describes one event; it does not combine with --file' journey track --file x.pb --type t
expect 2 'cannot open --file /nonexistent/track.pb' journey track --file /nonexistent/track.pb
expect 2 '--window: give 1 to 1000 messages in flight' journey track --file x.pb --window 0
printf '\003abc' >"$dir/garbage.pb"
expect 2 'record 1 is not a TrackRequest' journey track --file "$dir/garbage.pb"
printf '\005ab' >"$dir/short.pb"
expect 2 'damaged: a record is cut short' journey track --file "$dir/short.pb"
expect 2 'expected one length-delimited UpsertStageRulesRequest' journey set-rules --file "$dir/short.pb"
expect 2 '--file FILE.pb is required' journey set-rules

# reco: the command line's own mistakes, caught before any call.
for sub in "experience upsert" "experience list" recommend outcome interactions train model similar; do
  expect 0 "reco $sub" reco
done
expect 0 'reco experience list' reco experience
expect 2 'name the customer by ID or by --identity, not neither' reco recommend
expect 2 'name the customer by ID or by --identity, not both' reco recommend c1 --identity email:a@b.co
expect 2 '-k: "x" is not a whole number' reco recommend c1 -k x
expect 2 '--kind "offerr" is none of: offer content service-action' reco recommend c1 --kind offerr
expect 2 '--stage "buying" is none of' reco recommend c1 --stage buying
expect 2 '--prop "basket": expected NAME=VALUE' reco recommend c1 --prop basket
expect 2 '--id ID is required' reco experience upsert --kind offer
expect 2 '--kind "offerr" is none of: offer content service-action' reco experience upsert --id a --kind offerr
expect 2 '--cap "3": give N/DURATION, such as 3/7d' reco experience upsert --id a --kind offer --cap 3
expect 2 '--cap "3/7x": the window is a duration' reco experience upsert --id a --kind offer --cap 3/7x
expect 2 '--meta "url": give KEY=VALUE' reco experience upsert --id a --kind offer --meta url
expect 2 '--value "lots": give a finite number' reco experience upsert --id a --kind offer --value lots
expect 2 '--valid-from "soon": give a time' reco experience upsert --id a --kind offer --valid-from soon
expect 2 'give --file or --id with the experience' reco experience upsert --file x.pb --id a
expect 2 'cannot open --file /nonexistent/e.pb' reco experience upsert --file /nonexistent/e.pb
printf '{"experience_id":"a","kind":"offr"}\n' >"$dir/bad.jsonl"
expect 2 'bad.jsonl line 1: kind: "offr" is not a value of cxm.v1.ExperienceKind' \
  reco experience upsert --file "$dir/bad.jsonl"
printf '{"experience":{"experience_id":"a","kind":"offr"}}\n' >"$dir/bad.jsonl"
expect 2 'bad.jsonl line 1: experience.kind: "offr" is not a value' \
  reco experience upsert --file "$dir/bad.jsonl"
expect 2 '--file FILE.jsonl|FILE.pb is required' reco interactions
printf '{"interaction_id":"a","item_id":"x","weight":1}\n\n{"weight":"heavy"}\n' >"$dir/bad.jsonl"
expect 2 'bad.jsonl line 3: weight: expected a number' reco interactions --file "$dir/bad.jsonl"
printf '\003abc' >"$dir/garbage.pb"
expect 2 'record 1 is not a RecordInteractionsRequest' reco interactions --file "$dir/garbage.pb"
expect 2 '--experience ID is required' reco outcome c1 --outcome click
expect 2 '--outcome "bought" is none of: impression click accept dismiss' \
  reco outcome c1 --experience e --outcome bought
expect 2 '--algorithm "svd" is none of: auto ease item-knn als popularity' reco train --algorithm svd
expect 2 '--param "lambda": give NAME=NUMBER' reco train --param lambda
expect 2 '--activation "sometimes" is none of: always if-better never' reco train --activation sometimes
expect 2 '--wait goes without --async' reco train --async --wait 1m
expect 2 'expects 1 argument, got 0' reco similar
expect 2 'expects 0 arguments, got 1' reco model extra

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
for _ in $(seq 500); do
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

# A small world from cxm-gen, recent enough for the lateness bound: the
# journey examples read its stage_rules.pb from the working directory.
"$bin/cxm-gen" --customers 50 --days 5 --start-ms $(( ($(date +%s) - 7 * 86400) * 1000 )) \
  --formats pb --out "$dir/world" >/dev/null || fail "cxm-gen failed"
cd "$dir/world"
# The journey service is built in parallel with these commands: until the
# server implements it, its examples and the import cannot run (usage is
# checked above either way).
journey=true
"$bin/cxmctl" --target "$target" journey rules >"$dir/out" 2>&1 || true
if grep -q UNIMPLEMENTED "$dir/out"; then
  journey=false
  echo "note: the server does not implement JourneyService yet; its examples are skipped"
fi
if $journey; then
  expect 0 'accepted ' --target "$target" --timeout 30s journey track --file track.pb
  expect 0 ', duplicates ' --target "$target" --timeout 30s journey track --file track.pb --window 1
  "$bin/cxmctl" --target "$target" --json journey track --file track.pb >"$dir/out"
  grep -q '"accepted":0,' "$dir/out" || fail "a second import stored events again: $(cat "$dir/out")"
  grep -q '"rejected":0,' "$dir/out" || fail "a second import rejected events: $(cat "$dir/out")"
fi

# The personalisation service is built in parallel with these commands, as
# journey's was: until the server implements it, its examples are skipped.
reco=true
"$bin/cxmctl" --target "$target" reco model >"$dir/out" 2>&1 || true
if grep -q UNIMPLEMENTED "$dir/out"; then
  reco=false
  echo "note: the server does not implement PersonalisationService yet; its examples are skipped"
fi

# Every example of the help, in its order: none may be refused as bad usage,
# and made-up ids may only be unknown to the server.
"$bin/cxmctl" --help | sed -n 's/^ *e\.g\. cxmctl //p' >"$dir/examples"
(($(wc -l <"$dir/examples") >= 10)) || fail "too few examples in --help"
while read -r example; do
  eval "set -- $example"
  [ "$1" = journey ] && ! $journey && continue
  [ "$1" = reco ] && ! $reco && continue
  status=0
  "$bin/cxmctl" --target "$target" "$@" </dev/null >"$dir/out" 2>&1 || status=$?
  ((status == 0)) || { ((status == 1)) && grep -q NOT_FOUND "$dir/out"; } ||
    fail "example \"cxmctl $example\" exited $status: $(cat "$dir/out")"
done <"$dir/examples"

# reco against the server, after its examples: a JSON-lines catalogue created
# then updated, the server's sentences with their status (exit 1), a batch of
# interactions with one refused and the rest stored, then resent.
if $reco; then
  t=(--target "$target")
  printf '%s\n' '{"experience_id":"cli_guide","kind":"content","title":"A guide"}' '' \
    '{"experience":{"experience_id":"cli_callback","kind":"EXPERIENCE_KIND_SERVICE_ACTION"}}' \
    >"$dir/exps.jsonl"
  expect 0 '2 experiences, 2 created, 0 updated' "${t[@]}" reco experience upsert --file "$dir/exps.jsonl"
  expect 0 '2 experiences, 0 created, 2 updated' "${t[@]}" reco experience upsert --file "$dir/exps.jsonl"
  expect 0 'created cli_offer' "${t[@]}" reco experience upsert --id cli_offer --kind offer --value 2
  expect 0 'updated cli_offer' "${t[@]}" reco experience upsert --id cli_offer --kind offer --value 3
  expect 0 'cli_callback             service-action' "${t[@]}" reco experience list --all
  expect 0 'next page: --page-token ' "${t[@]}" reco experience list --limit 1
  expect 1 'UpsertExperience: INVALID_ARGUMENT: ' "${t[@]}" reco experience upsert --id 'bad id' --kind offer
  expect 1 'Recommend: INVALID_ARGUMENT: ' "${t[@]}" reco recommend c1 -k 101
  expect 1 'RecordOutcome: NOT_FOUND: ' "${t[@]}" reco outcome --identity email:cli@example.com \
    --experience no_such_experience --outcome click
  expect 1 'SimilarExperiences: NOT_FOUND: ' "${t[@]}" reco similar no_such_experience
  who='"customer":{"identity":{"type":"email","value":"cli@example.com"}}'
  printf '%s\n' "{\"interaction_id\":\"cli-1\",$who,\"item_id\":\"cli_guide\",\"weight\":1}" \
    "{\"interaction_id\":\"cli-2\",$who,\"item_id\":\"cli_offer\",\"weight\":-1}" \
    "{\"interaction_id\":\"cli-3\",$who,\"item_id\":\"cli_offer\",\"weight\":3}" >"$dir/inter.jsonl"
  expect 1 'accepted 2, duplicates 0, rejected 1 of 3 interactions' "${t[@]}" reco interactions \
    --file "$dir/inter.jsonl"
  grep -Fq 'call 1 interaction 1 (cli-2): ' "$dir/out" || fail "the refused interaction is not named: $(cat "$dir/out")"
  expect 1 'accepted 0, duplicates 2, rejected 1 of 3 interactions' "${t[@]}" reco interactions \
    --file "$dir/inter.jsonl"
  # A file with a broken line sends nothing, not the lines before it.
  printf '%s\n' "{\"interaction_id\":\"cli-4\",$who,\"item_id\":\"cli_guide\",\"weight\":2}" \
    '{"interaction_id":' >"$dir/inter.jsonl"
  expect 2 'inter.jsonl line 2: ' "${t[@]}" reco interactions --file "$dir/inter.jsonl"
  head -1 "$dir/inter.jsonl" >"$dir/one.jsonl"
  expect 0 'accepted 1, duplicates 0, rejected 0 of 1 interactions' "${t[@]}" reco interactions \
    --file "$dir/one.jsonl"
  expect 0 '(activated: it serves now)' "${t[@]}" --timeout 60s reco train --activation always
  expect 0 'serving ' "${t[@]}" reco model
  expect 0 '"activated":true' "${t[@]}" --json --timeout 60s reco train --activation always
  expect 0 'started; follow it with: cxmctl reco model' "${t[@]}" reco train --async --activation never
  for _ in $(seq 600); do
    "$bin/cxmctl" "${t[@]}" --json reco model | grep -q '"training":' || break
    sleep 0.1
  done
  expect 0 'previous ' "${t[@]}" reco model
  expect 0 'RANK  EXPERIENCE' "${t[@]}" reco recommend --identity email:cli@example.com --explain
  expect 0 '"recommendation_id":"' "${t[@]}" --json reco recommend --identity email:cli@example.com
  # --impressions counts what came back as shown: a cap of one a day then
  # keeps that experience out of the next answer.
  expect 0 'created cli_capped' "${t[@]}" reco experience upsert --id cli_capped --kind content \
    --value 50 --cap 1/1d
  expect 0 ' cli_capped ' "${t[@]}" reco recommend --identity email:cli@example.com -k 10 --impressions
  "$bin/cxmctl" "${t[@]}" reco recommend --identity email:cli@example.com -k 10 >"$dir/out"
  grep -q ' cli_capped ' "$dir/out" && fail "an impression did not count against the cap: $(cat "$dir/out")"
  grep -q ' cli_callback ' "$dir/out" || fail "the other experiences went missing: $(cat "$dir/out")"
  expect 0 'recorded ' "${t[@]}" reco outcome --identity email:cli@example.com --experience cli_offer \
    --outcome accept --outcome-id cli-o1
  expect 0 'duplicate cli-o1' "${t[@]}" reco outcome --identity email:cli@example.com \
    --experience cli_offer --outcome accept --outcome-id cli-o1
fi
echo "cxmctl cli: ok"
