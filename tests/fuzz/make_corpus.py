#!/usr/bin/env python3
"""Write the seed corpora of the per-service fuzz targets (tests/fuzz/corpus).

Each seed is one byte, the method's index in the service's method table
(read from its *_rpc.c, so a reordered table keeps the seeds right), then
the request encoded by protoc from text format. Every method gets an empty
request; the main ones get valid requests too, so the fuzzer starts from
inputs that pass the checks. The nesting attack of the plumbing issue (a
message nested 100,000 deep, built by hand: protoc would refuse to encode
it) is profile_req's: UpsertSegment's SegmentCondition is the contract's
recursive message.

    tests/fuzz/make_corpus.py            (rewrites the corpus directories)
"""
import os
import re
import struct
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORPUS = os.path.join(ROOT, "tests", "fuzz", "corpus")

SERVICES = {
    # target: (proto file, rpc source, table name)
    "profile_req": ("cxm/v1/profile.proto", "services/profile/prof_rpc.c", "prof_methods"),
    "journey_req": ("cxm/v1/journey.proto", "services/journey/jrn_rpc.c", "jrn_methods"),
    "feedback_req": ("cxm/v1/feedback.proto", "services/feedback/fb_rpc.c", "fb_methods"),
    "personalisation_req": ("cxm/v1/personalisation.proto",
                            "services/personalisation/nbe_rpc.c", "nbe_methods"),
}

# Valid requests, by method, in protobuf text format.
SEEDS = {
    "UpsertProfile": [
        'identities { type: IDENTITY_TYPE_EMAIL value: " Ann@Example.COM " } '
        'identities { type: IDENTITY_TYPE_PHONE value: "010-1234-5678" } '
        'attributes { name: "first_name" value { string_value: "Ann" } } '
        'attributes { name: "ltv" value { number_value: 12.5 } } '
        'source: "crm" request_id: "req-1"',
    ],
    "GetProfile": ['customer { identity { type: IDENTITY_TYPE_CRM_ID value: "c-42" } }'],
    "SetConsent": ['customer { customer_id: "cus_1" } scope: "email_marketing" '
                   'state: CONSENT_STATE_GRANTED source: "web"'],
    "SearchProfiles": ['conditions { kind: FIELD_KIND_ATTRIBUTE name: "ltv" op: COMPARE_OP_GT '
                       'value { number_value: 10 } } page_size: 5'],
    "UpsertSegment": [
        'segment { segment_id: "vip" display_name: "VIP" condition { all { '
        'conditions { consent { scope: "email_marketing" states: CONSENT_STATE_GRANTED } } '
        'conditions { negate { has_identity { type: IDENTITY_TYPE_EMAIL } } } } } }',
    ],
    "Track": [
        'events { event_id: "e1" customer { identity { type: IDENTITY_TYPE_EMAIL '
        'value: "ann@example.com" } } touchpoint: "checkout" channel: CHANNEL_WEB '
        'event_type: "purchase" occurred_at_unix_ms: 1767225000000 '
        'properties { key: "price" value { number_value: 9.5 } } value: 9.5 currency: "EUR" '
        'session_id: "s1" item_id: "sku-1" }',
    ],
    "Funnel": ['steps { event_type: "view" } steps { event_type: "purchase" }'],
    "SubmitResponse": [
        'response_id: "r1" survey_id: "nps-web" customer { customer_id: "cus_1" } score: 9 '
        'text: "Fast delivery, friendly staff" language: "en" '
        'ratings { touchpoint: "delivery" expectation: 4 experience: 6 } '
        'channel: CHANNEL_WEB',
    ],
    "AnalyzeText": ['text: "배송이 너무 늦었어요" include_aspects: true',
                    'text: "The checkout was slow but support was great" language: "en"'],
    "Recommend": ['customer { customer_id: "cus_1" } exclude_experience_ids: "x1" k: 5 '
                  'explain: true'],
    "RecordInteractions": [
        'interactions { interaction_id: "i1" customer { customer_id: "cus_1" } '
        'item_id: "sku-1" weight: 1 occurred_at_unix_ms: 1767225000000 '
        'interaction_type: "purchase" } source: "journey"',
    ],
}

# Targets that decode one message type: (proto file, message, [text seeds]).
MESSAGES = {
    "bus": ("cxm/v1/events.proto", "cxm.v1.Event", [
        'producer: "profile" sequence: 3 type: "SegmentMembershipChanged" customer_id: "c2" '
        'segment_membership_changed { entered_segment_ids: "new" left_segment_ids: "vip" }',
        'producer: "profile" sequence: 4 customer_id: "c1" consent_changed { consent { '
        'scope: "email_marketing" state: CONSENT_STATE_GRANTED } }',
        'producer: "journey" sequence: 5 customer_id: "c1" occurred_at_unix_ms: 1767225000000 '
        'stage_changed { from_stage: JOURNEY_STAGE_AWARENESS to_stage: JOURNEY_STAGE_CONSIDERATION '
        'since_unix_ms: 1767225000000 event_id: "e1" }',
        'producer: "profile" sequence: 6 customer_id: "c3" customer_merged { merge_id: "m1" '
        'source_customer_id: "c1" target_customer_id: "c3" }',
        'producer: "profile" sequence: 7 customer_id: "c2" customer_unmerged { merge_id: "m0" '
        'source_customer_id: "c2" target_customer_id: "c1" }',
    ]),
}


def methods(rpc_source, table):
    """Method names of the table, in order."""
    text = open(os.path.join(ROOT, rpc_source)).read()
    body = text[text.index("const cxm_method %s[] = {" % table):]
    body = body[:body.index("};")]
    return re.findall(r'"([A-Za-z]+)"', body)


def encode(proto, message, text):
    return subprocess.run(
        ["protoc", "-I", os.path.join(ROOT, "proto"), "-I", "/usr/include",
         "--encode=" + message, proto],
        input=text.encode(), stdout=subprocess.PIPE, check=True).stdout


def varint(n):
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def deep_segment(levels):
    """UpsertSegmentRequest{segment{segment_id, condition{negate{negate{...}}}}}:
    levels SegmentConditions, each the negate (field 3) of the one above."""
    inner = b""
    for _ in range(levels - 1):
        inner = b"\x1a" + varint(len(inner)) + inner
    seg = b"\x0a\x04deep" + b"\x22" + varint(len(inner)) + inner
    return b"\x0a" + varint(len(seg)) + seg


def deep_field1(levels):
    """Field 1 nested in field 1, levels deep. The other services have no
    recursive message, so past the schema's own depth these are string bytes
    to the walk and to protobuf-c alike; a shallower file keeps the corpus
    small (100,000 levels are 390 KB)."""
    inner = b""
    for _ in range(levels):
        inner = b"\x0a" + varint(len(inner)) + inner
    return inner


def model_blob(algo, nitems, nnz=0, factors=0, compact=0):
    """A packed model as reco_model_pack lays it out (reco.c: a 40-byte
    header, then each array 8-aligned), native (little-endian) order."""
    def pad8(b):
        return b + bytes(-len(b) % 8)
    out = struct.pack("<QIIIIQff", 0x314F434552584D43, algo, nitems, factors, compact, nnz,
                      0.1, 1.0)
    if algo in (2, 3):  # item-kNN, EASE: rows of neighbours
        per = [nnz // nitems] * nitems
        per[-1] += nnz - sum(per)
        offsets = [sum(per[:i]) for i in range(nitems + 1)]
        out += pad8(struct.pack("<%dQ" % (nitems + 1), *offsets))
        out += pad8(b"".join(struct.pack("<If", (i + 1) % nitems, 0.5) for i in range(nnz)))
        if compact:
            out += pad8(b"".join(struct.pack("<Hh", (i + 1) % nitems, 100) for i in range(nnz)))
            out += pad8(struct.pack("<%df" % nitems, *[0.01] * nitems))
    out += pad8(struct.pack("<%dI" % nitems, *range(nitems)))
    out += pad8(struct.pack("<%df" % nitems, *[1.0 / (i + 1) for i in range(nitems)]))
    if factors:
        out += pad8(struct.pack("<%df" % (nitems * factors), *[0.1] * (nitems * factors)))
        out += pad8(struct.pack("<%df" % (factors * factors), *[1.0] * (factors * factors)))
    return out


def seq_blob(nitems):
    """A packed RECO_SEQ model (reco.c's pack_seq): a 40-byte header (magic
    "CXMRECO2", algo, blend, hist_half, seq_half, then both blobs' lengths),
    its EASE model, then its transition model, an EASE blob of its own, at
    the next 8-aligned offset."""
    base = model_blob(3, nitems, nnz=5, compact=1)
    nxt = model_blob(3, nitems, nnz=4)
    header = struct.pack("<QIfffQQ", 0x324F434552584D43, 5, 0.5, 8.0, 8.0, len(base), len(nxt))
    return header + base + bytes(-len(base) % 8) + nxt


def frec(nratings, ratings=None, size_ratings=None):
    """A fixed-size response record (services/feedback/frec.h): answered a
    minute before the targets' clock, NPS 9 on the web, then its ratings."""
    out = struct.pack("<qQIIBBBBBBHfI", 1767225600000 - 60000, 42, 1, 2, 1, 1, 0, 9, 1,
                      nratings, 0, 0.5, 0)
    for i in range(size_ratings if size_ratings is not None else nratings):
        out += struct.pack("<IIdd", 3 + i, 0, 4.0, 6.0)
    return out


def jrec(at, eid, etype, touchpoint, home=0):
    """A compact journey record (services/journey/jrec.h): web, awareness,
    with a value in the base currency."""
    return struct.pack("<qdQQIIBBBBI", at, 9.5, 7, eid, etype, touchpoint, 1, 1, 1, home, 0)


def write(target, name, data):
    with open(os.path.join(CORPUS, target, name), "wb") as f:
        f.write(data)


def main():
    for target, (proto, rpc, table) in SERVICES.items():
        d = os.path.join(CORPUS, target)
        os.makedirs(d, exist_ok=True)
        for f in os.listdir(d):
            if f.startswith("seed-"):
                os.remove(os.path.join(d, f))
        names = methods(rpc, table)
        for i, m in enumerate(names):
            write(target, "seed-%s-empty" % m, bytes([i]))
            for k, text in enumerate(SEEDS.get(m, [])):
                msg = "cxm.v1.%sRequest" % m
                write(target, "seed-%s-%d" % (m, k), bytes([i]) + encode(proto, msg, text))
        if target == "profile_req":
            write(target, "seed-nest-100000", bytes([names.index("UpsertSegment")])
                  + deep_segment(100000))
        else:
            write(target, "seed-nest-1000", bytes([0]) + deep_field1(1000))
    os.makedirs(os.path.join(CORPUS, "model"), exist_ok=True)
    for name, blob in (("pop", model_blob(1, 3)), ("itemknn", model_blob(2, 3, nnz=4)),
                       ("ease-compact", model_blob(3, 3, nnz=5, compact=1)),
                       ("als", model_blob(4, 3, factors=2)), ("seq", seq_blob(3))):
        write("model", "seed-" + name, blob)
    os.makedirs(os.path.join(CORPUS, "feedback_rec"), exist_ok=True)
    write("feedback_rec", "seed-frec", b"\0" + frec(2))
    request = encode("cxm/v1/feedback.proto", "cxm.v1.SubmitResponseRequest",
                     SEEDS["SubmitResponse"][0])
    outcome = encode("cxm/v1/feedback.proto", "cxm.v1.SubmitResponseResponse",
                     'response_id: "r1" customer_id: "cus_1"')
    write("feedback_rec", "seed-response",
          b"\1" + struct.pack(">I", len(request)) + request + outcome)
    write("feedback_rec", "seed-survey", b"\2" + encode(
        "cxm/v1/feedback.proto", "cxm.v1.Survey",
        'survey_id: "s1" kind: SURVEY_KIND_NPS version: 1 questions { question_id: "q" '
        'kind: QUESTION_KIND_SCORE text: "?" }'))
    os.makedirs(os.path.join(CORPUS, "journey_rec"), exist_ok=True)
    at = 1767225600000 - 3600000
    write("journey_rec", "seed-cols", b"\0" + jrec(at, 1, 1, 2) + jrec(at + 60000, 2, 2, 2))
    homes = struct.pack(">I", 2) + struct.pack(">H", 2) + b"c1" + struct.pack(">H", 2) + b"c2"
    homes += bytes(-len(homes) % 8)
    write("journey_rec", "seed-group",
          b"\1" + homes + jrec(at, 1, 1, 2, home=1) + jrec(at + 60000, 2, 2, 2, home=0))
    write("journey_rec", "seed-pending", b"\2" + encode(
        "cxm/v1/journey.proto", "cxm.v1.TouchpointEvent",
        'event_id: "e1" customer { customer_id: "c1" } touchpoint: "web" channel: CHANNEL_WEB '
        'event_type: "view" occurred_at_unix_ms: 1767225000000'))
    write("journey_rec", "seed-state", b"\3" + encode(
        "cxm/v1/journey.proto", "cxm.v1.GetJourneyStateResponse", 'customer_id: "c1"'))
    write("journey_rec", "seed-rules", b"\4" + encode(
        "cxm/v1/journey.proto", "cxm.v1.GetStageRulesResponse", "version: 3"))
    write("journey_rec", "seed-alias", b"\5c9")
    os.makedirs(os.path.join(CORPUS, "profile_rec"), exist_ok=True)
    pp = "cxm/v1/profile.proto"
    profile = encode(pp, "cxm.v1.Profile",
                     'customer_id: "c1" identities { identity { type: IDENTITY_TYPE_EMAIL '
                     'value: "ann@example.com" } } attributes { name: "ltv" value { '
                     'number_value: 42 } } consents { scope: "email_marketing" '
                     'state: CONSENT_STATE_GRANTED } segment_ids: "a" segment_ids: "b" '
                     'version: 3 created_at_unix_ms: 1767225000000')
    write("profile_rec", "seed-profile", b"\0" + profile)
    record = encode(pp, "cxm.v1.MergeRecord",
                    'merge_id: "c1" source_customer_id: "c2" target_customer_id: "c1"')
    write("profile_rec", "seed-snapshot", b"\1" + b"".join(
        struct.pack("<I", len(m)) + m for m in (record, profile, profile, profile)))
    write("profile_rec", "seed-segment", b"\2" + encode(
        pp, "cxm.v1.Segment", SEEDS["UpsertSegment"][0][len("segment { "):-len(" }")]))
    write("profile_rec", "seed-receipt", b"\3" + encode(
        pp, "cxm.v1.DeletionReceipt",
        'receipt_id: "del_1" customer_id: "c1" requested_at_unix_ms: 1767225000000'))
    write("profile_rec", "seed-redirect", b"\4c2")
    write("profile_rec", "seed-request", b"\5c1")
    os.makedirs(os.path.join(CORPUS, "delim"), exist_ok=True)
    track = encode("cxm/v1/journey.proto", "cxm.v1.TrackRequest", SEEDS["Track"][0])
    write("delim", "seed-two-records", (varint(len(track)) + track) * 2)
    write("delim", "seed-truncated", varint(len(track)) + track[:-3])
    os.makedirs(os.path.join(CORPUS, "personalisation_rec"), exist_ok=True)
    pers = "cxm/v1/personalisation.proto"

    def i64(v):  # keyenc.c: big-endian offset binary
        return struct.pack(">Q", (v ^ (1 << 63)) & ((1 << 64) - 1))
    write("personalisation_rec", "seed-experience", b"\0" + encode(
        pers, "cxm.v1.Experience",
        'experience_id: "x1" kind: EXPERIENCE_KIND_OFFER title: "10% off" value: 5 weight: 1'))
    write("personalisation_rec", "seed-signals",
          b"\1" + i64(1767225000000) + i64(0) + struct.pack(">I", 2))
    write("personalisation_rec", "seed-contact", b"\2" + i64(1767225000000) + i64(0)
          + struct.pack(">I", 2) + i64(1767220000000) + i64(1767225000000))
    write("personalisation_rec", "seed-model", b"\3" + encode(
        pers, "cxm.v1.ModelInfo", 'version: 1 state: MODEL_STATE_SERVING '
        'params { key: "neighbours" value: 50 } started_at_unix_ms: 1767225000000'))
    names = b"".join(struct.pack(">H", len(n)) + n + b"\0" for n in (b"a", b"vip", b"email"))
    write("personalisation_rec", "seed-replica", b"\4" + bytes([1, 2])
          + struct.pack(">Q", 1767225000000) + struct.pack(">HH", 2, 1) + names)
    for target, (proto, message, texts) in MESSAGES.items():
        os.makedirs(os.path.join(CORPUS, target), exist_ok=True)
        for k, text in enumerate(texts):
            write(target, "seed-%d" % k, encode(proto, message, text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
