#!/usr/bin/env bash
# cxmctl feedback against a real cxmd: command-line mistakes are caught
# before any call (exit 2, naming the flag); a cxm-gen world's surveys and
# responses load with `feedback survey upsert --file` and `feedback submit
# --file` (every response OK, a second load too: idempotent); the scores,
# gap and follow-up tables print; a follow-up is assigned and found by its
# owner; one response from flags sets the customer's profile traits
# (last NPS, its category, open follow-ups) and lands on the customer's
# journey timeline as a survey_response event; sentiment answers.
# Exits 77 (skipped) while the server does not implement FeedbackService.
#   feedback_cli.sh BIN_DIR
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bin=$1
dir=$(mktemp -d /tmp/cxm-feedback-cli-XXXXXX)
pid=""
cleanup() { [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

for sub in "survey upsert" "survey get" "survey list" submit scores gaps followups \
  "followup update" sentiment; do
  expect 0 "feedback $sub " feedback
  expect 0 "feedback $sub " feedback $sub --help
done
expect 0 'feedback survey get ID' feedback survey
expect 2 '--id ID is required' feedback survey upsert --kind nps
expect 2 '--kind "promoter" is none of: nps csat ces' feedback survey upsert --id s --kind promoter
expect 2 'give --file or --id' feedback survey upsert --id s --kind nps --file x.pb
expect 2 'cannot open --file /nonexistent.pb' feedback survey upsert --file /nonexistent.pb
expect 2 '--rating "a=6": give TOUCHPOINT=EXPECTATION:EXPERIENCE' \
  feedback submit --survey s --customer-id c1 --score 3 --rating a=6
expect 2 'expectation and experience are numbers' \
  feedback submit --survey s --customer-id c1 --score 3 --rating a=x:2
expect 2 'by --customer-id or by --identity, not both' \
  feedback submit --survey s --customer-id c1 --identity email:a@b.co --score 3
expect 2 '--score X is required' feedback submit --survey s --customer-id c1
expect 2 '--answer "q": give QUESTION_ID=ANSWER' feedback submit --survey s --customer-id c1 --score 1 --answer q
expect 2 '--window goes with --file' feedback submit --survey s --customer-id c1 --score 1 --window 4
expect 2 'give --file or one response' feedback submit --file x.pb --score 1
expect 2 '--kind nps|csat|ces is required' feedback scores --by touchpoint
expect 2 '--by "city" is none of' feedback scores --kind nps --by city
expect 2 '--limit: "2000" is not a whole number from 0 to 1000' feedback gaps --limit 2000
expect 2 '--state "stuck" is none of' feedback followups --state stuck
expect 2 'expects 1 argument, got 0' feedback followup update --state closed
expect 2 'expects 1 argument, got 0' feedback sentiment

start_server "$dir/log" 200 "$bin/cxmd" --listen 127.0.0.1:0 --data "$dir/data" ||
  fail "cxmd did not start: $(cat "$dir/log")"
ctl=(--target "127.0.0.1:$port" --timeout 30s)
"$bin/cxmctl" "${ctl[@]}" feedback survey list >"$dir/out" 2>&1 || true
if grep -q UNIMPLEMENTED "$dir/out"; then
  echo "skipped: the server does not implement FeedbackService yet"
  exit 77
fi

# A world of the last month (responses are recent: follow-ups, trends).
"$bin/cxm-gen" --customers 2000 --days 30 --start-ms $(( ($(date +%s) - 32 * 86400) * 1000 )) \
  --formats pb --out "$dir/w" >/dev/null || fail "cxm-gen failed"
n=$(grep -o '"responses.pb": [0-9]*' "$dir/w/truth.json" | grep -o '[0-9]*$')
expect 0 'created csat_support version 1' "${ctl[@]}" feedback survey upsert --file "$dir/w/surveys.pb"
expect 0 'updated csat_support version 1' "${ctl[@]}" feedback survey upsert --file "$dir/w/surveys.pb"
expect 0 'nps_relationship         nps' "${ctl[@]}" feedback survey list --active
expect 0 '"survey_id":"ces_checkout"' "${ctl[@]}" --json feedback survey get ces_checkout --version 1
# A survey written by hand in JSON, and one as `--json survey get` prints it.
cat >"$dir/store.json" <<'JSON'
{"surveyId": "store_csat", "kind": "csat", "title": "Your visit to \u201cGangnam\u201d?",
 "touchpoint": "gangnam_store", "channel": "CHANNEL_STORE", "active": true,
 "recontact": {"cooldown_hours": 72, "sampling_rate": 0.5},
 "questions": [{"question_id": "score", "kind": "score", "text": "Satisfaction", "required": true,
                "translations": {"ko": "만족도"}},
               {"question_id": "why", "kind": "QUESTION_KIND_FREE_TEXT", "text": "Why?"}]}
JSON
expect 0 'created store_csat version 1' "${ctl[@]}" feedback survey upsert --file "$dir/store.json"
expect 0 'title                Your visit to “Gangnam”?' "${ctl[@]}" feedback survey get store_csat
grep -q 'ko               만족도' "$dir/out" || fail "translation lost: $(cat "$dir/out")"
"$bin/cxmctl" "${ctl[@]}" --json feedback survey get store_csat >"$dir/got.json"
sed 's/"title":"[^"]*"/"title":"Your visit?"/' "$dir/got.json" >"$dir/edited.json"
expect 0 'updated store_csat version 2' "${ctl[@]}" feedback survey upsert --file "$dir/edited.json"
expect 0 'updated store_csat version 2' "${ctl[@]}" feedback survey upsert --file "$dir/edited.json"
echo '{"survey_id": "x", "kind": "nps", "questions": [{"kind": "scor"}]}' >"$dir/bad.json"
expect 2 'questions[0].kind: "scor" is not a value of cxm.v1.QuestionKind' \
  "${ctl[@]}" feedback survey upsert --file "$dir/bad.json"
echo '{"survey_id": "x", "active": 1}' >"$dir/bad.json"
expect 2 'active: expected true or false' "${ctl[@]}" feedback survey upsert --file "$dir/bad.json"
echo '{"survey_id": "x", "colour": "red"}' >"$dir/bad.json"
expect 2 'colour: cxm.v1.Survey has no such field' "${ctl[@]}" feedback survey upsert --file "$dir/bad.json"
echo '{"survey_id": "x"' >"$dir/bad.json"
expect 2 'expected "name": value' "${ctl[@]}" feedback survey upsert --file "$dir/bad.json"

expect 0 "$n sent, $n OK, 0 failed" "${ctl[@]}" feedback submit --file "$dir/w/responses.pb"
expect 0 "$n sent, $n OK, 0 failed" "${ctl[@]}" feedback submit --file "$dir/w/responses.pb" --window 1
expect 0 "\"sent\":$n,\"ok\":$n,\"failed\":0" "${ctl[@]}" --json feedback submit --file "$dir/w/responses.pb"

# Tables: the header, and a row per group with its trend or per touchpoint.
expect 0 'KEY                      RESPONSES    SCORE' "${ctl[@]}" feedback scores --kind csat \
  --by touchpoint --bucket week --tz Asia/Seoul
grep -qE '^support_call +[0-9]+ +[0-9.]+ ± [0-9.]+ +(-|[▲▼=] [-+][0-9.]+)$' "$dir/out" ||
  fail "no support_call row with a trend: $(cat "$dir/out")"
expect 0 '"groups":[{"key":' "${ctl[@]}" --json feedback scores --kind nps --by survey --bucket day
expect 0 'TOUCHPOINT             EXPECT    GOT    GAP' "${ctl[@]}" feedback gaps --min-responses 5
sed -n 2p "$dir/out" | grep -qE '^(checkout|support_call|delivery) ' ||
  fail "a planted gap touchpoint is not on top: $(cat "$dir/out")"
expect 0 '"gaps":[{"touchpoint":' "${ctl[@]}" --json feedback gaps

# Follow-ups: the world's detractors opened some; assign the first one.
"$bin/cxmctl" "${ctl[@]}" --json feedback followups --state open --limit 1 >"$dir/out"
fu=$(grep -o '"follow_up_id":"[^"]*"' "$dir/out" | head -1 | cut -d'"' -f4)
[ -n "$fu" ] || fail "no open follow-up: $(cat "$dir/out")"
expect 0 '"state":"FOLLOW_UP_STATE_IN_PROGRESS"' "${ctl[@]}" --json feedback followup update "$fu" \
  --state in-progress --owner kim --note "called back" --author kim
expect 0 "$fu" "${ctl[@]}" feedback followups --owner kim --state in-progress
expect 0 'in-progress' "${ctl[@]}" feedback followups --owner kim
expect 1 'NOT_FOUND' "${ctl[@]}" feedback followup update fu-0000000000000000 --state closed

# One response from flags: the profile's traits and the journey timeline.
expect 0 'created cli_nps version 1' "${ctl[@]}" feedback survey upsert --id cli_nps --kind nps \
  --title "Would you recommend us?" --touchpoint checkout_page --channel web \
  --gap checkout_page --comment "Why?"
expect 0 'recorded r-cli-1' "${ctl[@]}" feedback submit --survey cli_nps \
  --identity email:cli@example.com --score 2 --text "delivery was late and support never called back" \
  --rating checkout_page=6:2 --response-id r-cli-1
grep -q 'detractor' "$dir/out" || fail "no NPS category: $(cat "$dir/out")"
expect 0 'duplicate r-cli-1' "${ctl[@]}" feedback submit --survey cli_nps \
  --identity email:cli@example.com --score 2 --response-id r-cli-1
for _ in $(seq 200); do
  "$bin/cxmctl" "${ctl[@]}" --json profile get --identity email:cli@example.com >"$dir/profile" 2>&1 || true
  grep -q '"last_nps_category":"NPS_CATEGORY_DETRACTOR"' "$dir/profile" &&
    grep -q '"open_follow_ups":1' "$dir/profile" && break
  sleep 0.05
done
grep -q '"last_nps":2,' "$dir/profile" || fail "no last_nps 2 on the profile: $(cat "$dir/profile")"
grep -q '"last_nps_category":"NPS_CATEGORY_DETRACTOR"' "$dir/profile" ||
  fail "no detractor category on the profile: $(cat "$dir/profile")"
grep -q '"open_follow_ups":1' "$dir/profile" || fail "no open follow-up on the profile: $(cat "$dir/profile")"
# By customer id: journey learns identities from tracked events, and this
# customer has none.
cid=$(grep -o '"customer_id":"c[0-9a-f]*"' "$dir/profile" | head -1 | cut -d'"' -f4)
[ -n "$cid" ] || fail "no customer id in: $(cat "$dir/profile")"
for _ in $(seq 200); do
  "$bin/cxmctl" "${ctl[@]}" --json journey timeline "$cid" --type survey_response >"$dir/timeline" 2>&1 || true
  grep -q '"event_id":"fb:r-cli-1"' "$dir/timeline" && break
  sleep 0.05
done
grep -q '"event_id":"fb:r-cli-1"' "$dir/timeline" || fail "not on the timeline: $(cat "$dir/timeline")"
grep -q '"touchpoint":"checkout_page"' "$dir/timeline" || fail "wrong touchpoint: $(cat "$dir/timeline")"
[ "$(grep -o '"event_id"' "$dir/timeline" | wc -l)" = 1 ] || fail "not once: $(cat "$dir/timeline")"

# Closing the customer's follow-up brings the profile's count back to 0
# (left out of the JSON, as every field at its default).
"$bin/cxmctl" "${ctl[@]}" --json feedback followups --customer-id "$cid" >"$dir/out"
fu=$(grep -o '"follow_up_id":"[^"]*"' "$dir/out" | head -1 | cut -d'"' -f4)
[ -n "$fu" ] || fail "no follow-up of $cid: $(cat "$dir/out")"
expect 0 'closed' "${ctl[@]}" feedback followup update "$fu" --state closed
for _ in $(seq 200); do
  "$bin/cxmctl" "${ctl[@]}" --json profile get "$cid" >"$dir/profile" 2>&1 || true
  grep -q '"open_follow_ups"' "$dir/profile" || break
  sleep 0.05
done
grep -q '"open_follow_ups"' "$dir/profile" && fail "the closed follow-up still counts: $(cat "$dir/profile")"
grep -q '"last_nps":2,' "$dir/profile" || fail "last_nps lost: $(cat "$dir/profile")"

expect 0 'label       negative' "${ctl[@]}" feedback sentiment "The delivery was late and the staff were rude."
expect 0 'delivery' "${ctl[@]}" feedback sentiment "배송이 너무 늦었어요" --aspects
expect 1 'INVALID_ARGUMENT' "${ctl[@]}" feedback sentiment "bonjour" --language fr
echo "feedback cli: ok"
