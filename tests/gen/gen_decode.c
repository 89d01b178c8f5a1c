/*
 * gen_decode DIR - decodes every .pb file cxm-gen wrote into DIR with
 * protobuf-c, checks each request the way the services would (required
 * fields set, enums known, scores on their scale, batch sizes), and prints
 * the counts as one JSON line for gen_smoke.sh to compare with truth.json.
 * Exit 1 on the first malformed stream or message, naming it.
 */
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

typedef int (*check_fn)(const uint8_t *buf, size_t len, counts *c);

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

static int check_track(const uint8_t *buf, size_t len, counts *c)
{
    Cxm__V1__TrackRequest *m = cxm__v1__track_request__unpack(NULL, len, buf);
    int rc = m ? 0 : bad("track.pb: message does not decode as TrackRequest");
    if (m && (m->n_events < 1 || m->n_events > 1000))
        rc = bad("track.pb: a TrackRequest must hold 1 to 1000 events");
    for (size_t i = 0; m && rc == 0 && i < m->n_events; i++) {
        const Cxm__V1__TouchpointEvent *e = m->events[i];
        rc = check_ref(e->customer);
        if (rc == 0 && (!e->event_id[0] || !e->touchpoint[0] || !e->event_type[0] ||
                        e->channel == CXM__V1__CHANNEL__CHANNEL_UNSPECIFIED ||
                        e->occurred_at_unix_ms <= 0 || e->n_properties > 64 ||
                        e->n_link_identities > 10 || (e->value != 0) != (e->currency[0] != 0)))
            rc = bad("track.pb: an event misses a required field");
    }
    if (m)
        c->items += (long long)m->n_events;
    cxm__v1__track_request__free_unpacked(m, NULL);
    return rc;
}

static int check_profile(const uint8_t *buf, size_t len, counts *c)
{
    Cxm__V1__UpsertProfileRequest *m = cxm__v1__upsert_profile_request__unpack(NULL, len, buf);
    int rc = m ? 0 : bad("profiles.pb: message does not decode as UpsertProfileRequest");
    if (m && (m->n_identities < 1 || m->n_identities > 50 || !m->request_id[0] || !m->source[0] ||
              m->n_attributes < 1))
        rc = bad("profiles.pb: identities, attributes, source and request_id are required");
    for (size_t i = 0; m && rc == 0 && i < m->n_attributes; i++)
        if (!m->attributes[i]->value ||
            m->attributes[i]->value->kind_case == CXM__V1__VALUE__KIND__NOT_SET)
            rc = bad("profiles.pb: an attribute has no value");
    c->items += m != NULL;
    cxm__v1__upsert_profile_request__free_unpacked(m, NULL);
    return rc;
}

static int check_scale(const char *survey, double score)
{
    double hi = !strcmp(survey, "nps_relationship") ? 10
                : !strcmp(survey, "csat_support")   ? 5
                : !strcmp(survey, "ces_checkout")   ? 7
                                                    : -1;
    double lo = hi == 10 ? 0 : 1;
    return hi > 0 && score >= lo && score <= hi && score == (int)score
               ? 0
               : bad("responses.pb: bad score");
}

static int check_response(const uint8_t *buf, size_t len, counts *c)
{
    Cxm__V1__SubmitResponseRequest *m = cxm__v1__submit_response_request__unpack(NULL, len, buf);
    int rc = m ? check_ref(m->customer) : bad("responses.pb: does not decode");
    if (rc == 0 && (!m->response_id[0] || m->submitted_at_unix_ms <= 0 || m->n_ratings > 20))
        rc = bad("responses.pb: response_id, submitted_at and at most 20 ratings");
    if (rc == 0)
        rc = check_scale(m->survey_id, m->score);
    for (size_t i = 0; rc == 0 && i < m->n_ratings; i++) {
        const Cxm__V1__ExpectationRating *r = m->ratings[i];
        if (!r->touchpoint[0] || r->expectation < 1 || r->expectation > 7 || r->experience < 1 ||
            r->experience > 7)
            rc = bad("responses.pb: a rating is off the 1-7 scale");
    }
    c->items += m != NULL;
    cxm__v1__submit_response_request__free_unpacked(m, NULL);
    return rc;
}

static int check_interactions(const uint8_t *buf, size_t len, counts *c)
{
    Cxm__V1__RecordInteractionsRequest *m =
        cxm__v1__record_interactions_request__unpack(NULL, len, buf);
    int rc = m ? 0 : bad("interactions.pb: does not decode");
    if (m && (m->n_interactions < 1 || m->n_interactions > 1000 || strcmp(m->source, "journey")))
        rc = bad("interactions.pb: 1 to 1000 interactions from source journey");
    for (size_t i = 0; m && rc == 0 && i < m->n_interactions; i++) {
        const Cxm__V1__Interaction *it = m->interactions[i];
        rc = check_ref(it->customer);
        if (rc == 0 && (!it->interaction_id[0] || !it->item_id[0] || !(it->weight > 0) ||
                        !it->interaction_type[0] || it->occurred_at_unix_ms <= 0))
            rc = bad("interactions.pb: an interaction misses a required field");
    }
    if (m)
        c->items += (long long)m->n_interactions;
    cxm__v1__record_interactions_request__free_unpacked(m, NULL);
    return rc;
}

static int check_survey(const uint8_t *buf, size_t len, counts *c)
{
    Cxm__V1__UpsertSurveyRequest *m = cxm__v1__upsert_survey_request__unpack(NULL, len, buf);
    int rc = m && m->survey && m->survey->kind && m->survey->n_questions >= 1 &&
                     m->survey->n_questions <= 20 && m->survey->active
                 ? 0
                 : bad("surveys.pb: a survey needs a kind, 1 to 20 questions and to be active");
    c->items += m != NULL;
    cxm__v1__upsert_survey_request__free_unpacked(m, NULL);
    return rc;
}

static int check_experience(const uint8_t *buf, size_t len, counts *c)
{
    Cxm__V1__UpsertExperienceRequest *m =
        cxm__v1__upsert_experience_request__unpack(NULL, len, buf);
    int rc = m && m->experience && m->experience->experience_id[0] && m->experience->kind
                 ? 0
                 : bad("experiences.pb: an experience needs an id and a kind");
    c->items += m != NULL;
    cxm__v1__upsert_experience_request__free_unpacked(m, NULL);
    return rc;
}

static int check_rules(const uint8_t *buf, size_t len, counts *c)
{
    Cxm__V1__UpsertStageRulesRequest *m =
        cxm__v1__upsert_stage_rules_request__unpack(NULL, len, buf);
    int rc = m ? 0 : bad("stage_rules.pb: does not decode");
    for (size_t i = 0; m && rc == 0 && i < m->n_rules; i++)
        if (!m->rules[i]->rule_id[0] || !m->rules[i]->stage)
            rc = bad("stage_rules.pb: a rule needs an id and a stage");
    if (m)
        c->items += (long long)m->n_rules;
    cxm__v1__upsert_stage_rules_request__free_unpacked(m, NULL);
    return rc;
}

static int decode(const char *dir, const char *name, check_fn check, counts *c)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "gen_decode: cannot open %s\n", path);
        return -1;
    }
    uint8_t *buf = NULL;
    size_t cap = 0, len;
    int rc;
    while ((rc = cxm_delim_read(f, &buf, &cap, &len)) == 1 && (rc = check(buf, len, c)) == 0)
        c->messages++;
    if (rc < 0)
        fprintf(stderr, "gen_decode: %s: stream damaged or message %lld invalid\n", path,
                c->messages);
    free(buf);
    fclose(f);
    return rc;
}

int main(int argc, char **argv)
{
    static const struct {
        const char *file;
        check_fn check;
    } files[] = {{"profiles.pb", check_profile},   {"track.pb", check_track},
                 {"responses.pb", check_response}, {"interactions.pb", check_interactions},
                 {"surveys.pb", check_survey},     {"experiences.pb", check_experience},
                 {"stage_rules.pb", check_rules}};
    if (argc != 2) {
        fprintf(stderr, "usage: gen_decode DIR\n");
        return 2;
    }
    printf("{");
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        counts c = {0, 0};
        if (decode(argv[1], files[i].file, files[i].check, &c) != 0)
            return 1;
        printf("%s\"%s\": {\"messages\": %lld, \"items\": %lld}", i ? ", " : "", files[i].file,
               c.messages, c.items);
    }
    printf("}\n");
    return 0;
}
