#!/usr/bin/env bash
# The demo both layouts run, against a cxm that is already up: one customer
# across identities, consent, a small generated world's CRM profiles
# (cxm-gen, replayed with cxm-bench), its touchpoint events (a funnel
# with drop-off, the touchpoint table), its surveys and responses (the
# prioritised gap table, scores with their trend, the open follow-ups), its
# next best experiences (a catalogue, a trained model, one customer's
# recommendations with reasons, changing when that customer turns detractor),
# and an erasure that every service confirms through the event bus.
#   deploy/demo.sh BIN_DIR PROFILE_TARGET [JOURNEY_TARGET [FEEDBACK_TARGET [PERSONALISATION_TARGET]]]
# PROFILE_TARGET is the address of the profile service: cxmd's port on the
# embedded default (quickstart.sh), cxm-profile's in the distributed layout
# (distributed.sh); JOURNEY_TARGET, FEEDBACK_TARGET and PERSONALISATION_TARGET
# the other services' (default: the same). Exits 1 when a step fails.
set -euo pipefail
bin=$1
target=$2
journey=${3:-$2}
feedback=${4:-$2}
personalisation=${5:-$2}
world=""
trap '[ -n "$world" ] && rm -rf "$world"' EXIT

ctl() { echo "\$ cxmctl $*"; "$bin/cxmctl" --target "$target" "$@"; }
echo "== one customer across identities (profile service)"
ctl profile upsert --identity email:Ann.Lee@Example.com --set tier=gold \
  --set visits:=1 --strategy visits=add --source quickstart
ctl profile upsert --identity phone:+82-10-1234-5678 --set city=Seoul --source app
echo "# the app's phone profile and the web's email profile are one customer: link them"
ctl profile upsert --identity email:ann.lee@example.com --identity phone:+821012345678 \
  --set visits:=1 --source crm
ctl profile consent --identity email:ann.lee@example.com marketing_email granted --source web_banner
ctl profile get --identity phone:+821012345678

echo "== a generated world: 2000 customers over 28 days up to yesterday (cxm-gen), its CRM profiles replayed"
world=$(mktemp -d "${TMPDIR:-/tmp}/cxm-demo-world-XXXXXX")
# Recent and past: the journey service refuses events older than 30 days,
# and both services times more than 5 minutes ahead. Starting at midnight
# UTC makes the world the same all day (quickstart_test.sh regenerates it).
start_ms=$((($(date +%s) / 86400 - 29) * 86400000))
"$bin/cxm-gen" --seed 1 --customers 2000 --days 28 --start-ms "$start_ms" --formats pb,csv \
  --out "$world"
"$bin/cxm-bench" --target "$target" --requests "$world/profiles.pb" \
  --method /cxm.v1.ProfileService/UpsertProfile
# identities.csv: customer_id,identity_type,identity_value,... (no free text,
# so no quoted commas). The first two customers who signed up:
for email in $(awk -F, '$2 == "email" { print $3 }' "$world/identities.csv" | head -n 2); do
  ctl profile get --identity "email:$email"
done

echo "== the world's touchpoint events (journey service): a funnel and the touchpoint table"
jctl() { echo "\$ cxmctl $*"; "$bin/cxmctl" --target "$journey" "$@"; }
jctl journey track --file "$world/track.pb"
# Identities resolve to customers in the background: wait until none is pending.
for _ in $(seq 200); do
  "$bin/cxmctl" --target "$journey" --json journey touchpoints --from 31d |
    grep -q '"pending_events"' || break
  sleep 0.05
done
jctl journey funnel --step page_view --step product_view --step add_to_cart --step purchase \
  --window 7d --from 31d
jctl journey touchpoints --from 31d --goal purchase --goal-window 7d

echo "== the world's surveys and responses (feedback service): gaps, scores, follow-ups"
fctl() { echo "\$ cxmctl $*"; "$bin/cxmctl" --target "$feedback" "$@"; }
fctl feedback survey upsert --file "$world/surveys.pb"
fctl feedback submit --file "$world/responses.pb"
echo "# where experience falls short of what customers expected, the costliest gap first"
fctl feedback gaps --limit 8
fctl feedback scores --kind nps --by channel --bucket week
fctl feedback scores --kind csat --by touchpoint --bucket week
echo "# close the loop: every detractor and unhappy comment is a follow-up, earliest due first"
fctl feedback followups --state open --limit 10

echo "== next best experience (personalisation service): a catalogue, a model, one customer"
pctl() { echo "\$ cxmctl $*"; "$bin/cxmctl" --target "$personalisation" "$@"; }
echo "# the catalogue: the world's shop items as offers, a guide, and a service action"
pctl reco experience upsert --file "$world/experiences.pb"
pctl reco experience upsert --id getting_started_guide --kind content \
  --title "Getting the most out of your purchase: a 5-minute guide" --value 0.5 \
  --meta url=https://shop.example.com/guide
pctl reco experience upsert --id apology_callback --kind service-action \
  --title "We are sorry: our care team calls you back today" --value 5 --weight 2 \
  --cap 1/7d --meta queue=care
echo "# what customers viewed and bought (item events also arrive from journey on the bus)"
pctl reco interactions --file "$world/interactions.pb"
# One training at a time: the retrain policy (every 10000 new interactions)
# may be training on the same log right now; wait for it, then train.
echo "\$ cxmctl reco train"
for _ in $(seq 100); do
  status=0
  "$bin/cxmctl" --target "$personalisation" reco train >"$world/train.out" 2>&1 || status=$?
  ((status == 0)) || ! grep -q "is running" "$world/train.out" || { sleep 0.1; continue; }
  break
done
cat "$world/train.out"
((status == 0)) || exit 1
pctl reco model
# A signed-up customer of the world with a history and no recent complaint
# (the world's own detractors are already in service recovery).
who=""
for email in $(awk -F, '$2 == "email" { print $3 }' "$world/identities.csv" | head -n 100); do
  "$bin/cxmctl" --target "$personalisation" --json reco recommend --identity "email:$email" \
    --channel web -k 3 | grep -Eq '"(cold_start|service_recovery)":true' || { who=$email; break; }
done
[ -n "$who" ] || { echo "demo: no customer with a history and no recent complaint" >&2; exit 1; }
echo "# $who's next best experiences on the web, with the reasons"
pctl reco recommend --identity "email:$who" --channel web -k 5 --explain
echo "# $who answers the NPS survey with a 2: a detractor"
fctl feedback submit --survey nps_relationship --identity "email:$who" --score 2 \
  --text "The delivery was late twice and nobody called me back"
# The answer reaches personalisation over the bus within milliseconds.
for _ in $(seq 100); do
  "$bin/cxmctl" --target "$personalisation" --json reco recommend --identity "email:$who" \
    --channel web -k 1 | grep -q '"service_recovery":true' && break
  sleep 0.05
done
echo "# service recovery: the apology first, offers held back until things are put right"
pctl reco recommend --identity "email:$who" --channel web -k 5 --explain

echo "== erasure: profile erases, publishes CustomerDeleted, every service confirms on the bus"
echo "\$ cxmctl profile delete --identity phone:+821012345678 --reason \"GDPR art. 17 request #123\""
receipt=$("$bin/cxmctl" --target "$target" --json profile delete --identity phone:+821012345678 \
  --reason "GDPR art. 17 request #123" | sed -n 's/.*"receipt_id":"\([^"]*\)".*/\1/p')
[ -n "$receipt" ] || { echo "demo: the delete answered without a receipt" >&2; exit 1; }
# The receipt completes when profile, journey, feedback and personalisation
# confirmed, each after a compaction removed the erased bytes from its data
# file (--erasure-compact-delay, 1 s by default).
for _ in $(seq 300); do
  "$bin/cxmctl" --target "$target" profile receipt "$receipt" | grep -q '^  completed_at' && break
  sleep 0.05
done
ctl profile receipt "$receipt"
