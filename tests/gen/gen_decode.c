/*
 * gen_decode DIR - decodes every .pb file cxm-gen wrote into DIR with
 * protobuf-c, checks each request the way the services would (required
 * fields set, enums known, scores on their scale, batch sizes), and prints
 * the counts as one JSON line for gen_smoke.sh to compare with truth.json.
 * Exit 1 on the first malformed stream or message, naming it.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cxm/v1/feedback.pb-c.h"
#include "cxm/v1/journey.pb-c.h"
#include "cxm/v1/personalisation.pb-c.h"
#include "cxm/v1/profile.pb-c.h"
#include "delim.h"

typedef struct counts {
    long long messages, items;
} counts;

static int bad(const char *what)
{
    fprintf(stderr, "gen_decode: %s\n", what);
    return -1;
}

static int check_ref(const Cxm__V1__CustomerRef *r)
{
    if (!r || r->key_case != CXM__V1__CUSTOMER_REF__KEY_IDENTITY || !r->identity)
        return bad("customer: must name an identity");
    if (r->identity->type < CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_EMAIL ||
        r->identity->type > CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_CRM_ID || !r->identity->value[0])
        return bad("customer.identity: bad type or empty value");
    return 0;
}

/* An event concerns an item exactly when it carries the item_id property,
 * and then item_id (field 15) names that item: what the journey service
 * forwards to personalisation. */
static int check_item(const Cxm__V1__TouchpointEvent *e)
{
    const char *prop = NULL;
    for (size_t i = 0; i < e->n_properties; i++)
        if (!strcmp(e->properties[i]->key, "item_id") && e->properties[i]->value &&
            e->properties[i]->value->kind_case == CXM__V1__VALUE__KIND_STRING_VALUE)
            prop = e->properties[i]->value->string_value;
    if (!prop != !e->item_id[0] || (prop && strcmp(prop, e->item_id)))
        return bad("track.pb: item_id differs from the item_id property");
    return 0;
}

/* Each check returns the items the message holds (events, interactions,
 * rules, or 1), or -1 naming what is wrong. */
static long long check_track(const ProtobufCMessage *msg)
{
    const Cxm__V1__TrackRequest *m = (const Cxm__V1__TrackRequest *)msg;
    if (m->n_events < 1 || m->n_events > 1000)
        return bad("track.pb: a TrackRequest must hold 1 to 1000 events");
    for (size_t i = 0; i < m->n_events; i++) {
        const Cxm__V1__TouchpointEvent *e = m->events[i];
        if (check_ref(e->customer) != 0)
            return -1;
        if (!e->event_id[0] || !e->touchpoint[0] || !e->event_type[0] ||
            e->channel == CXM__V1__CHANNEL__CHANNEL_UNSPECIFIED || e->occurred_at_unix_ms <= 0 ||
            e->n_properties > 64 || e->n_link_identities > 10 ||
            (e->value != 0) != (e->currency[0] != 0))
            return bad("track.pb: an event misses a required field");
        if (check_item(e) != 0)
            return -1;
    }
    return (long long)m->n_events;
}

static long long check_profile(const ProtobufCMessage *msg)
{
    const Cxm__V1__UpsertProfileRequest *m = (const Cxm__V1__UpsertProfileRequest *)msg;
    if (m->n_identities < 1 || m->n_identities > 50 || !m->request_id[0] || !m->source[0] ||
        m->n_attributes < 1)
        return bad("profiles.pb: identities, attributes, source and request_id are required");
    for (size_t i = 0; i < m->n_attributes; i++)
        if (!m->attributes[i]->value ||
            m->attributes[i]->value->kind_case == CXM__V1__VALUE__KIND__NOT_SET)
            return bad("profiles.pb: an attribute has no value");
    return 1;
}

static bool on_scale(const char *survey, double score)
{
    double hi = !strcmp(survey, "nps_relationship") ? 10
                : !strcmp(survey, "csat_support")   ? 5
                : !strcmp(survey, "ces_checkout")   ? 7
                                                    : -1;
    return hi > 0 && score >= (hi == 10 ? 0 : 1) && score <= hi && score == (int)score;
}

static long long check_response(const ProtobufCMessage *msg)
{
    const Cxm__V1__SubmitResponseRequest *m = (const Cxm__V1__SubmitResponseRequest *)msg;
    if (check_ref(m->customer) != 0)
        return -1;
    if (!m->response_id[0] || m->submitted_at_unix_ms <= 0 || m->n_ratings > 20)
        return bad("responses.pb: response_id, submitted_at and at most 20 ratings");
    if (!on_scale(m->survey_id, m->score))
        return bad("responses.pb: a score is off its survey's scale");
    for (size_t i = 0; i < m->n_ratings; i++) {
        const Cxm__V1__ExpectationRating *r = m->ratings[i];
        if (!r->touchpoint[0] || r->expectation < 1 || r->expectation > 7 || r->experience < 1 ||
            r->experience > 7)
            return bad("responses.pb: a rating is off the 1-7 scale");
    }
    return 1;
}

static long long check_interactions(const ProtobufCMessage *msg)
{
    const Cxm__V1__RecordInteractionsRequest *m = (const Cxm__V1__RecordInteractionsRequest *)msg;
    if (m->n_interactions < 1 || m->n_interactions > 1000 || strcmp(m->source, "journey"))
        return bad("interactions.pb: 1 to 1000 interactions from source journey");
    for (size_t i = 0; i < m->n_interactions; i++) {
        const Cxm__V1__Interaction *it = m->interactions[i];
        if (check_ref(it->customer) != 0)
            return -1;
        if (!it->interaction_id[0] || !it->item_id[0] || !(it->weight > 0) ||
            !it->interaction_type[0] || it->occurred_at_unix_ms <= 0)
            return bad("interactions.pb: an interaction misses a required field");
    }
    return (long long)m->n_interactions;
}

static long long check_survey(const ProtobufCMessage *msg)
{
    const Cxm__V1__Survey *s = ((const Cxm__V1__UpsertSurveyRequest *)msg)->survey;
    if (!s || !s->kind || s->n_questions < 1 || s->n_questions > 20 || !s->active)
        return bad("surveys.pb: a survey needs a kind, 1 to 20 questions and to be active");
    return 1;
}

static long long check_experience(const ProtobufCMessage *msg)
{
    const Cxm__V1__Experience *e = ((const Cxm__V1__UpsertExperienceRequest *)msg)->experience;
    if (!e || !e->experience_id[0] || !e->kind)
        return bad("experiences.pb: an experience needs an id and a kind");
    return 1;
}

static long long check_rules(const ProtobufCMessage *msg)
{
    const Cxm__V1__UpsertStageRulesRequest *m = (const Cxm__V1__UpsertStageRulesRequest *)msg;
    for (size_t i = 0; i < m->n_rules; i++)
        if (!m->rules[i]->rule_id[0] || !m->rules[i]->stage)
            return bad("stage_rules.pb: a rule needs an id and a stage");
    return (long long)m->n_rules;
}

typedef struct stream {
    const char *file;
    const ProtobufCMessageDescriptor *desc;
    long long (*check)(const ProtobufCMessage *m);
} stream;

static long long check_one(const stream *s, const uint8_t *buf, size_t len)
{
    ProtobufCMessage *m = protobuf_c_message_unpack(s->desc, NULL, len, buf);
    if (!m)
        return bad("a message does not decode as its request type");
    long long items = s->check(m);
    protobuf_c_message_free_unpacked(m, NULL);
    return items;
}

static int decode(const char *dir, const stream *s, counts *c)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, s->file);
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "gen_decode: cannot open %s\n", path);
        return -1;
    }
    uint8_t *buf = NULL;
    size_t cap = 0, len;
    long long items = 0;
    int rc;
    while ((rc = cxm_delim_read(f, &buf, &cap, &len)) == 1 &&
           (items = check_one(s, buf, len)) >= 0) {
        c->messages++;
        c->items += items;
    }
    if (rc < 0 || items < 0)
        fprintf(stderr, "gen_decode: %s: stream damaged or message %lld invalid\n", path,
                c->messages);
    free(buf);
    fclose(f);
    return rc < 0 || items < 0 ? -1 : 0;
}

int main(int argc, char **argv)
{
    static const stream streams[] = {
        {"profiles.pb", &cxm__v1__upsert_profile_request__descriptor, check_profile},
        {"track.pb", &cxm__v1__track_request__descriptor, check_track},
        {"responses.pb", &cxm__v1__submit_response_request__descriptor, check_response},
        {"interactions.pb", &cxm__v1__record_interactions_request__descriptor, check_interactions},
        {"surveys.pb", &cxm__v1__upsert_survey_request__descriptor, check_survey},
        {"experiences.pb", &cxm__v1__upsert_experience_request__descriptor, check_experience},
        {"stage_rules.pb", &cxm__v1__upsert_stage_rules_request__descriptor, check_rules}};
    if (argc != 2) {
        fprintf(stderr, "usage: gen_decode DIR\n");
        return 2;
    }
    printf("{");
    for (size_t i = 0; i < sizeof streams / sizeof streams[0]; i++) {
        counts c = {0, 0};
        if (decode(argv[1], &streams[i], &c) != 0)
            return 1;
        printf("%s\"%s\": {\"messages\": %lld, \"items\": %lld}", i ? ", " : "", streams[i].file,
               c.messages, c.items);
    }
    printf("}\n");
    return 0;
}
