"""Checks a cxm-gen world against its truth.json, independently of the
generator: counts of every file, and the planted structure recovered from
the CSV files alone.

    python3 gen_recover.py DIR DECODE_JSON

DECODE_JSON is gen_decode's output line (the protobuf counts). Exits non-zero
with the failed expectation when anything does not match.
"""
import csv
import json
import sys
from collections import defaultdict

d, decoded = sys.argv[1], json.loads(sys.argv[2])
truth = json.load(open(f"{d}/truth.json"))
counts = truth["counts"]
failures = []


def expect(cond, what):
    if not cond:
        failures.append(what)


def rows(name):
    with open(f"{d}/{name}", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


# Protobuf streams: every message decoded, counts as truth.json says.
msgs = counts["messages"]
for name, items in [("profiles.pb", counts["signed_up"]), ("track.pb", counts["events"]),
                    ("responses.pb", counts["responses"]),
                    ("interactions.pb", counts["interactions"]),
                    ("surveys.pb", 3), ("experiences.pb", truth["sizes"]["items"])]:
    expect(decoded[name]["messages"] == msgs[name], f"{name}: messages {decoded[name]} vs {msgs[name]}")
    expect(decoded[name]["items"] == items, f"{name}: items {decoded[name]['items']} vs {items}")
batch = truth["sizes"]["batch"]
expect(msgs["track.pb"] == -(-counts["events"] // batch), "track.pb: batches not full")

# CSV files: row counts, and every properties cell is JSON (quoting intact).
events = rows("events.csv")
responses = rows("responses.csv")
ratings = rows("ratings.csv")
interactions = rows("interactions.csv")
customers = rows("customers.csv")
for name, got, want in [("customers", len(customers), counts["customers"]),
                        ("identities", len(rows("identities.csv")), counts["identities"]),
                        ("events", len(events), counts["events"]),
                        ("responses", len(responses), counts["responses"]),
                        ("ratings", len(ratings), counts["ratings"]),
                        ("interactions", len(interactions), counts["interactions"])]:
    expect(got == want, f"{name}.csv: {got} rows, truth says {want}")
for e in events:
    json.loads(e["properties"])
expect(any('"' in r["text"] for r in responses), "no response text with a quote to test quoting")
expect(any(r["language"] == "ko" and r["text"] for r in responses), "no Korean text")

# Planted gaps: mean expectation - experience per touchpoint.
gaps = defaultdict(list)
for r in ratings:
    gaps[r["touchpoint"]].append(int(r["expectation"]) - int(r["experience"]))
by_tp = {t["touchpoint"]: t for t in truth["touchpoints"]}
for tp, g in gaps.items():
    mean = sum(g) / len(g)
    expect(abs(mean - by_tp[tp]["observed_gap"]) < 1e-3, f"{tp}: observed gap differs from truth")
    if len(g) >= 100:
        # Four standard errors, and 0.05 for the clipping of the 1-7 scale.
        se = (sum((x - mean) ** 2 for x in g) / (len(g) - 1) / len(g)) ** 0.5
        expect(abs(mean - by_tp[tp]["gap"]) < 4 * se + 0.05,
               f"{tp}: gap {mean:.3f} +- {se:.3f}, planted {by_tp[tp]['gap']}")
planted = {t["touchpoint"]: t for t in truth["planted"]["gap_touchpoints"]}
common = [tp for tp in gaps if len(gaps[tp]) >= 100]
worst = sorted(common, key=lambda tp: -sum(gaps[tp]) / len(gaps[tp]))[:len(planted)]
expect(set(worst) == set(planted), f"largest gaps {worst}, planted {sorted(planted)}")

# Planted NPS drivers: slope of the NPS score on experience - expectation,
# and the NPS of respondents who rated a gap touchpoint against the others.
nps = {r["response_id"]: int(r["score"]) for r in responses if r["kind"] == "nps"}
xy = defaultdict(list)
rated = defaultdict(set)
for r in ratings:
    if r["response_id"] in nps:
        xy[r["touchpoint"]].append((int(r["experience"]) - int(r["expectation"]), nps[r["response_id"]]))
        rated[r["touchpoint"]].add(r["response_id"])


def fit(pairs):
    """Least-squares slope of y on x and its standard error."""
    n = len(pairs)
    mx = sum(x for x, _ in pairs) / n
    my = sum(y for _, y in pairs) / n
    sxx = sum((x - mx) ** 2 for x, _ in pairs)
    b = sum((x - mx) * (y - my) for x, y in pairs) / sxx
    resid = sum((y - my - b * (x - mx)) ** 2 for x, y in pairs) / (n - 2)
    return b, (resid / sxx) ** 0.5


for tp, pairs in xy.items():
    if len(pairs) < 100:
        continue
    b, se = fit(pairs)
    want = by_tp[tp]["nps_slope"]
    expect(abs(b - by_tp[tp]["observed_slope"]) < 1e-3, f"{tp}: slope differs from truth")
    expect(abs(b - want) < 4 * se, f"{tp}: NPS slope {b:.3f} +- {se:.3f}, planted {want}")
    if tp in planted:
        expect(0.6 * want <= b <= 1.3 * want, f"{tp}: NPS slope {b:.3f}, planted {want}")
        inside = [nps[r] for r in rated[tp]]
        outside = [s for r, s in nps.items() if r not in rated[tp]]
        effect = sum(inside) / len(inside) - sum(outside) / len(outside)
        expect(effect < 0.3 * planted[tp]["nps_effect"],
               f"{tp}: NPS effect {effect:.2f}, planted {planted[tp]['nps_effect']}")

# Detractors: the customers with an NPS score of 6 or less.
det = sorted({r["customer_id"] for r in responses if r["kind"] == "nps" and int(r["score"]) <= 6})
expect(det == truth["detractors"]["customer_ids"], "detractor ids differ from truth")
expect(len(det) == truth["detractors"]["count"] > 0, "detractor count")

# Taste clusters: most interactions stay inside the customer's cluster.
cluster_of = {c["customer_id"]: c["taste_cluster"] for c in customers}
names = [c["cluster"] for c in truth["taste_clusters"]]
k = len(names)
inside = sum(cluster_of[i["customer_id"]] == names[(int(i["item_id"][5:]) - 1) % k]
             for i in interactions)
expect(inside / len(interactions) > 0.7, f"only {inside / len(interactions):.2f} in-cluster")

if failures:
    print("\n".join("FAIL " + f for f in failures))
    sys.exit(1)
print(f"gen recover: ok ({len(events)} events, {len(ratings)} ratings, {len(det)} detractors)")
