/*
 * gen_out.c - the writers of cxm-gen: protobuf request streams (delim.h
 * framing) and CSV files.
 *
 * Writes are buffered by stdio and their errors are sticky in the FILE, so
 * the emit functions return nothing; gen__out_close() reports the first
 * failure. TrackRequest and RecordInteractionsRequest batches are built as
 * bytes: each element is packed by protobuf-c and appended as one entry of
 * the repeated field 1 (tag byte 0x0a, varint length, message), which is
 * exactly how protobuf-c packs the repeated field, without holding the
 * batch's structs.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cxm/err.h>

#include "cxm/v1/feedback.pb-c.h"
#include "cxm/v1/journey.pb-c.h"
#include "cxm/v1/personalisation.pb-c.h"
#include "cxm/v1/profile.pb-c.h"
#include "delim.h"
#include "gen_int.h"

enum {
    F_PROFILES,
    F_TRACK,
    F_RESPONSES,
    F_INTERACTIONS,
    F_SURVEYS,
    F_EXPERIENCES,
    F_STAGE_RULES,
    NPB,
    F_CUSTOMERS = NPB,
    F_IDENTITIES,
    F_EVENTS,
    F_RESPONSES_CSV,
    F_RATINGS,
    F_INTERACTIONS_CSV,
    NFILES
};

static const char *const file_names[NFILES] = {
    "profiles.pb",    "track.pb",       "responses.pb",    "interactions.pb", "surveys.pb",
    "experiences.pb", "stage_rules.pb", "customers.csv",   "identities.csv",  "events.csv",
    "responses.csv",  "ratings.csv",    "interactions.csv"};

static const char *const csv_headers[NFILES - NPB] = {
    "customer_id,name,locale,city,birth_year,taste_cluster,app_user,signed_up,signup_at_unix_ms,"
    "signup_channel,crm_id,email,phone,first_seen_unix_ms,last_seen_unix_ms,furthest_stage,"
    "purchases,lifetime_value,churned,marketing_opt_in",
    "customer_id,identity_type,identity_value,first_seen_unix_ms,channel",
    "event_id,customer_id,identity_type,identity_value,touchpoint,channel,event_type,stage,"
    "occurred_at_unix_ms,session_id,value,currency,item_id,link_identities,properties",
    "response_id,survey_id,kind,customer_id,identity_type,identity_value,score,language,text,"
    "reason,channel,stage,touchpoint,submitted_at_unix_ms,trigger_event_id,follow_up_expected",
    "response_id,customer_id,survey_id,score,touchpoint,expectation,experience",
    "interaction_id,customer_id,identity_type,identity_value,item_id,interaction_type,weight,"
    "occurred_at_unix_ms"};

/* A batch of packed elements of a repeated field 1. */
typedef struct batch {
    uint8_t *buf;
    size_t len, cap;
    int64_t n;
} batch;

struct gen__out {
    const cxm_gen_params *p;
    FILE *f[NFILES];
    batch track, inter;
    uint8_t *scratch;
    size_t scratch_cap;
    bool oom;
    uint64_t messages[NPB];
};

#define IDENTITY(t) CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_##t

/* ---------- protobuf ---------- */

static bool reserve(gen__out *o, uint8_t **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return true;
    size_t n = *cap ? *cap : 4096;
    while (n < need)
        n *= 2;
    uint8_t *grown = realloc(*buf, n);
    if (!grown) {
        o->oom = true;
        return false;
    }
    *buf = grown, *cap = n;
    return true;
}

static void put_msg(gen__out *o, int f, const ProtobufCMessage *m)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    if (!o->f[f] || !reserve(o, &o->scratch, &o->scratch_cap, len))
        return;
    protobuf_c_message_pack(m, o->scratch);
    cxm_delim_write(o->f[f], o->scratch, len);
    o->messages[f]++;
}

/* The batch as a message: its elements, then tail (the encoded fields
 * after field 1, or nothing). */
static void batch_flush(gen__out *o, batch *b, int f, const uint8_t *tail, size_t tail_len)
{
    if (!b->n)
        return;
    uint8_t head[CXM_DELIM_VARINT_MAX];
    size_t hn = cxm_delim_varint(b->len + tail_len, head);
    fwrite(head, 1, hn, o->f[f]);
    fwrite(b->buf, 1, b->len, o->f[f]);
    if (tail_len)
        fwrite(tail, 1, tail_len, o->f[f]);
    o->messages[f]++;
    b->len = 0, b->n = 0;
}

static void batch_add(gen__out *o, batch *b, int f, const ProtobufCMessage *m)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    if (!o->f[f] || !reserve(o, &b->buf, &b->cap, b->len + 1 + CXM_DELIM_VARINT_MAX + len))
        return;
    b->buf[b->len++] = 0x0a; /* field 1, length-delimited */
    b->len += cxm_delim_varint(len, b->buf + b->len);
    b->len += protobuf_c_message_pack(m, b->buf + b->len);
    b->n++;
}

static const uint8_t interactions_tail[] = {0x12, 7, 'j', 'o', 'u', 'r', 'n', 'e', 'y'};

static void flush_interactions(gen__out *o)
{
    batch_flush(o, &o->inter, F_INTERACTIONS, interactions_tail, sizeof interactions_tail);
}

static void set_identity(Cxm__V1__Identity *m, const gen__ident *id)
{
    cxm__v1__identity__init(m);
    m->type = id->type;
    m->value = (char *)id->value;
}

static void set_ref(Cxm__V1__CustomerRef *ref, Cxm__V1__Identity *who, const gen__ident *id)
{
    cxm__v1__customer_ref__init(ref);
    set_identity(who, id);
    ref->key_case = CXM__V1__CUSTOMER_REF__KEY_IDENTITY;
    ref->identity = who;
}

static void set_value(Cxm__V1__Value *v, const gen__prop *p)
{
    cxm__v1__value__init(v);
    switch (p->kind) {
    case 's':
        v->kind_case = CXM__V1__VALUE__KIND_STRING_VALUE;
        v->string_value = (char *)p->s;
        break;
    case 'n':
        v->kind_case = CXM__V1__VALUE__KIND_NUMBER_VALUE;
        v->number_value = p->n;
        break;
    case 'b':
        v->kind_case = CXM__V1__VALUE__KIND_BOOL_VALUE;
        v->bool_value = p->n != 0;
        break;
    default:
        v->kind_case = CXM__V1__VALUE__KIND_TIMESTAMP_UNIX_MS;
        v->timestamp_unix_ms = p->t;
    }
}

static void pb_event(gen__out *o, const gen__event *e)
{
    Cxm__V1__Identity who, links[GEN_MAX_IDS], *lp[GEN_MAX_IDS];
    Cxm__V1__CustomerRef ref;
    Cxm__V1__TouchpointEvent__PropertiesEntry pe[GEN_MAX_PROPS], *pp[GEN_MAX_PROPS];
    Cxm__V1__Value pv[GEN_MAX_PROPS];
    Cxm__V1__TouchpointEvent m = CXM__V1__TOUCHPOINT_EVENT__INIT;
    set_ref(&ref, &who, &e->who);
    for (int i = 0; i < e->nlink; i++) {
        set_identity(&links[i], &e->link[i]);
        lp[i] = &links[i];
    }
    for (int i = 0; i < e->nprops; i++) {
        cxm__v1__touchpoint_event__properties_entry__init(&pe[i]);
        set_value(&pv[i], &e->props[i]);
        pe[i].key = (char *)e->props[i].name;
        pe[i].value = &pv[i];
        pp[i] = &pe[i];
    }
    m.event_id = (char *)e->id;
    m.customer = &ref;
    m.n_link_identities = (size_t)e->nlink, m.link_identities = lp;
    m.touchpoint = (char *)gen__tps[e->tp].name;
    m.channel = e->channel;
    m.event_type = (char *)e->event_type;
    m.occurred_at_unix_ms = e->at;
    m.n_properties = (size_t)e->nprops, m.properties = pp;
    m.value = e->value;
    m.currency = e->value ? "KRW" : "";
    m.session_id = (char *)e->session;
    m.item_id = (char *)e->item; /* "" (unset) unless the event concerns an item */
    batch_add(o, &o->track, F_TRACK, &m.base);
    if (o->track.n == o->p->batch)
        batch_flush(o, &o->track, F_TRACK, NULL, 0);
}

static void pb_interaction(gen__out *o, const gen__interaction *it)
{
    Cxm__V1__Identity who;
    Cxm__V1__CustomerRef ref;
    Cxm__V1__Interaction m = CXM__V1__INTERACTION__INIT;
    set_ref(&ref, &who, &it->who);
    m.interaction_id = (char *)it->id;
    m.customer = &ref;
    m.item_id = (char *)it->item;
    m.weight = it->weight;
    m.occurred_at_unix_ms = it->at;
    m.interaction_type = (char *)it->type;
    batch_add(o, &o->inter, F_INTERACTIONS, &m.base);
    if (o->inter.n == o->p->batch)
        flush_interactions(o);
}

static void pb_response(gen__out *o, const gen__response *r)
{
    Cxm__V1__Identity who;
    Cxm__V1__CustomerRef ref;
    Cxm__V1__ExpectationRating rt[GEN_MAX_RATED], *rp[GEN_MAX_RATED];
    Cxm__V1__SubmitResponseRequest__AnswersEntry
        ans = CXM__V1__SUBMIT_RESPONSE_REQUEST__ANSWERS_ENTRY__INIT,
        *ap = &ans;
    Cxm__V1__SubmitResponseRequest m = CXM__V1__SUBMIT_RESPONSE_REQUEST__INIT;
    const gen__survey *sv = &gen__surveys[r->survey];
    set_ref(&ref, &who, &r->who);
    for (int i = 0; i < r->nratings; i++) {
        cxm__v1__expectation_rating__init(&rt[i]);
        rt[i].touchpoint = (char *)gen__tps[r->ratings[i].tp].name;
        rt[i].expectation = r->ratings[i].expectation;
        rt[i].experience = r->ratings[i].experience;
        rp[i] = &rt[i];
    }
    m.response_id = (char *)r->id;
    m.survey_id = (char *)sv->id;
    m.customer = &ref;
    m.score = r->score;
    m.text = (char *)r->text;
    m.language = r->text[0] ? (char *)r->language : "";
    m.n_ratings = (size_t)r->nratings, m.ratings = rp;
    m.touchpoint = sv->tp >= 0 ? (char *)gen__tps[sv->tp].name : "";
    m.channel = r->channel;
    m.stage = r->stage;
    m.submitted_at_unix_ms = r->at;
    if (r->reason) {
        ans.key = "reason", ans.value = (char *)r->reason;
        m.n_answers = 1, m.answers = &ap;
    }
    m.trigger_event_id = (char *)r->trigger;
    put_msg(o, F_RESPONSES, &m.base);
}

/* One attribute of the profile import, with how it merges and when it was
 * true. */
typedef struct attr_spec {
    gen__prop value;
    Cxm__V1__MergeStrategy strategy;
    int64_t at;
} attr_spec;

static void attr(Cxm__V1__AttributeUpdate *a, Cxm__V1__Value *v, const attr_spec *spec)
{
    cxm__v1__attribute_update__init(a);
    set_value(v, &spec->value);
    a->name = (char *)spec->value.name;
    a->value = v;
    a->strategy = spec->strategy;
    a->observed_at_unix_ms = spec->at;
}

#define OVERWRITE CXM__V1__MERGE_STRATEGY__MERGE_STRATEGY_OVERWRITE
#define KEEP_FIRST CXM__V1__MERGE_STRATEGY__MERGE_STRATEGY_KEEP_FIRST
#define KEEP_LATEST CXM__V1__MERGE_STRATEGY__MERGE_STRATEGY_KEEP_LATEST

/* The CRM's record of a signed-up customer, as of sign-up (the tier as of
 * the last activity). */
static void pb_profile(gen__out *o, const gen__customer *c)
{
    const char *tier = c->purchases >= 5 ? "gold" : c->purchases >= 2 ? "silver" : "bronze";
    const int64_t at = c->signup_at;
    const attr_spec specs[] = {
        {{"name", 's', c->name, 0, 0}, OVERWRITE, at},
        {{"locale", 's', c->locale, 0, 0}, OVERWRITE, at},
        {{"city", 's', c->city, 0, 0}, KEEP_LATEST, at},
        {{"birth_year", 'n', NULL, c->birth_year, 0}, OVERWRITE, at},
        {{"marketing_opt_in", 'b', NULL, c->marketing, 0}, OVERWRITE, at},
        {{"signup_channel", 's', gen__channel_name(c->signup_channel), 0, 0}, OVERWRITE, at},
        {{"signup_at", 't', NULL, 0, at}, KEEP_FIRST, at},
        {{"tier", 's', tier, 0, 0}, KEEP_LATEST, c->last_seen}};
    enum { NATTR = sizeof specs / sizeof specs[0] };
    Cxm__V1__AttributeUpdate a[NATTR], *ap[NATTR];
    Cxm__V1__Value v[NATTR];
    for (int i = 0; i < NATTR; i++) {
        attr(&a[i], &v[i], &specs[i]);
        ap[i] = &a[i];
    }
    const gen__ident ids[] = {
        {IDENTITY(CRM_ID), c->crm}, {IDENTITY(EMAIL), c->email}, {IDENTITY(PHONE), c->phone}};
    Cxm__V1__Identity im[3], *ip[3];
    for (int i = 0; i < 3; i++)
        set_identity(&im[i], &ids[i]), ip[i] = &im[i];
    char request_id[24];
    snprintf(request_id, sizeof request_id, "profile-%s", c->id);
    Cxm__V1__UpsertProfileRequest m = CXM__V1__UPSERT_PROFILE_REQUEST__INIT;
    m.n_identities = 3, m.identities = ip;
    m.n_attributes = NATTR, m.attributes = ap;
    m.link_policy = CXM__V1__LINK_POLICY__LINK_POLICY_MERGE;
    m.source = "crm_import";
    m.request_id = request_id;
    put_msg(o, F_PROFILES, &m.base);
}

/* ---------- the static world: surveys, catalogue, stage rules ---------- */

static const char *const score_text[GEN_NSURVEY][2] = {
    {"How likely are you to recommend us to a friend?", "친구에게 추천할 가능성은 얼마나 되나요?"},
    {"How satisfied were you with our support call?", "고객센터 상담에 얼마나 만족하셨나요?"},
    {"How easy was it to complete your purchase?", "구매를 완료하기가 얼마나 쉬웠나요?"},
};

static void question(Cxm__V1__SurveyQuestion *q, Cxm__V1__SurveyQuestion__TranslationsEntry *tr,
                     Cxm__V1__SurveyQuestion__TranslationsEntry **trp, const char *id,
                     Cxm__V1__QuestionKind kind, const char *en, const char *ko, int tp)
{
    cxm__v1__survey_question__init(q);
    cxm__v1__survey_question__translations_entry__init(tr);
    q->question_id = (char *)id;
    q->kind = kind;
    q->text = (char *)en;
    tr->key = "ko", tr->value = (char *)ko;
    *trp = tr;
    q->n_translations = 1, q->translations = trp;
    q->touchpoint = tp >= 0 ? (char *)gen__tps[tp].name : "";
    q->required = kind == CXM__V1__QUESTION_KIND__QUESTION_KIND_SCORE;
}

/* Score, comment, reason (NPS only) and one expectation-gap question per
 * touchpoint the survey rates. */
static void pb_survey(gen__out *o, int k)
{
    const gen__survey *sv = &gen__surveys[k];
    Cxm__V1__SurveyQuestion q[GEN_NTP + 3], *qp[GEN_NTP + 3];
    Cxm__V1__SurveyQuestion__TranslationsEntry tr[GEN_NTP + 3], *trp[GEN_NTP + 3];
    char gap_ids[GEN_NTP][40];
    size_t n = 0;
    question(&q[n], &tr[n], &trp[n], "score", CXM__V1__QUESTION_KIND__QUESTION_KIND_SCORE,
             score_text[k][0], score_text[k][1], -1),
        n++;
    question(&q[n], &tr[n], &trp[n], "comment", CXM__V1__QUESTION_KIND__QUESTION_KIND_FREE_TEXT,
             "Tell us more.", "자세히 알려 주세요.", -1),
        n++;
    if (sv->kind == CXM__V1__SURVEY_KIND__SURVEY_KIND_NPS) {
        question(&q[n], &tr[n], &trp[n], "reason",
                 CXM__V1__QUESTION_KIND__QUESTION_KIND_SINGLE_CHOICE, "What matters most to you?",
                 "가장 중요한 것은 무엇인가요?", -1);
        q[n].n_options = 5, q[n].options = (char **)gen__nps_reasons;
        n++;
    }
    for (int tp = 0; tp < GEN_NTP; tp++) {
        if (!gen__tps[tp].rated || (sv->tp >= 0 && tp != sv->tp))
            continue;
        snprintf(gap_ids[tp], sizeof gap_ids[tp], "gap_%s", gen__tps[tp].name);
        question(&q[n], &tr[n], &trp[n], gap_ids[tp],
                 CXM__V1__QUESTION_KIND__QUESTION_KIND_EXPECTATION_GAP,
                 "What did you expect, and what did you get?", "기대와 실제 경험은 어땠나요?", tp);
        n++;
    }
    for (size_t i = 0; i < n; i++)
        qp[i] = &q[i];
    Cxm__V1__Survey s = CXM__V1__SURVEY__INIT;
    s.survey_id = (char *)sv->id;
    s.kind = sv->kind;
    s.title = (char *)score_text[k][0];
    s.n_questions = n, s.questions = qp;
    s.touchpoint = sv->tp >= 0 ? (char *)gen__tps[sv->tp].name : "";
    s.stage = sv->tp >= 0 ? gen__tps[sv->tp].stage : 0;
    s.language = "en";
    s.follow_up_due_hours = 48;
    s.active = true;
    Cxm__V1__UpsertSurveyRequest m = CXM__V1__UPSERT_SURVEY_REQUEST__INIT;
    m.survey = &s;
    put_msg(o, F_SURVEYS, &m.base);
}

static void pb_experience(gen__out *o, uint32_t k)
{
    char id[16], cluster[24], title[64], price[24], url[64];
    double p = gen__item_price(o->p->seed, k);
    gen__item_id(k, id, sizeof id);
    gen__cluster_name(gen__item_cluster(k, (unsigned)o->p->clusters), cluster, sizeof cluster);
    snprintf(title, sizeof title, "%s pick #%u", cluster, k / (uint32_t)o->p->clusters + 1);
    snprintf(price, sizeof price, "%.0f", p);
    snprintf(url, sizeof url, "https://shop.example.com/items/%s", id);
    Cxm__V1__Experience__MetadataEntry md[3], *mdp[3];
    const char *keys[3] = {"category", "price_krw", "url"}, *vals[3] = {cluster, price, url};
    for (int i = 0; i < 3; i++) {
        cxm__v1__experience__metadata_entry__init(&md[i]);
        md[i].key = (char *)keys[i], md[i].value = (char *)vals[i];
        mdp[i] = &md[i];
    }
    Cxm__V1__ContactCap cap = CXM__V1__CONTACT_CAP__INIT, *capp = &cap;
    cap.max_contacts = 3, cap.period_ms = 7 * GEN_DAY_MS;
    Cxm__V1__Experience e = CXM__V1__EXPERIENCE__INIT;
    e.experience_id = id;
    e.kind = CXM__V1__EXPERIENCE_KIND__EXPERIENCE_KIND_OFFER;
    e.title = title;
    e.value = p / 10000.0;
    e.weight = 1;
    e.valid_from_unix_ms = o->p->start_ms;
    e.n_contact_caps = 1, e.contact_caps = &capp;
    e.pause_after_accept_ms = 30 * GEN_DAY_MS;
    e.pause_after_dismiss_ms = 3 * GEN_DAY_MS;
    e.n_metadata = 3, e.metadata = mdp;
    Cxm__V1__UpsertExperienceRequest m = CXM__V1__UPSERT_EXPERIENCE_REQUEST__INIT;
    m.experience = &e;
    put_msg(o, F_EXPERIENCES, &m.base);
}

/* One rule per touchpoint: its event type there moves the customer to the
 * touchpoint's stage (later stages first). */
static void pb_stage_rules(gen__out *o)
{
    Cxm__V1__StageRule r[GEN_NTP], *rp[GEN_NTP];
    char ids[GEN_NTP][40];
    for (int tp = 0; tp < GEN_NTP; tp++) {
        cxm__v1__stage_rule__init(&r[tp]);
        snprintf(ids[tp], sizeof ids[tp], "tp-%s", gen__tps[tp].name);
        r[tp].rule_id = ids[tp];
        r[tp].event_type = (char *)gen__tps[tp].event_type;
        r[tp].touchpoint = (char *)gen__tps[tp].name;
        r[tp].stage = gen__tps[tp].stage;
        r[tp].priority = (int32_t)gen__tps[tp].stage;
        r[tp].description = "cxm-gen world";
        rp[tp] = &r[tp];
    }
    Cxm__V1__UpsertStageRulesRequest m = CXM__V1__UPSERT_STAGE_RULES_REQUEST__INIT;
    m.n_rules = GEN_NTP, m.rules = rp;
    put_msg(o, F_STAGE_RULES, &m.base);
}

void gen__out_static(gen__out *o, const cxm_gen_params *p)
{
    if (!(p->formats & CXM_GEN_FORMAT_PB))
        return;
    for (int k = 0; k < GEN_NSURVEY; k++)
        pb_survey(o, k);
    for (uint32_t k = 0; k < (uint32_t)p->items; k++)
        pb_experience(o, k);
    pb_stage_rules(o);
}

/* ---------- CSV ---------- */

/* RFC 4180: quoted when it holds a comma, quote or line break; quotes
 * doubled. */
static void csv_str(FILE *f, const char *s)
{
    if (!s[strcspn(s, ",\"\r\n")]) {
        fputs(s, f);
        return;
    }
    putc('"', f);
    for (; *s; s++) {
        if (*s == '"')
            putc('"', f);
        putc(*s, f);
    }
    putc('"', f);
}

/* Appends to buf at *n, never past len (snprintf truncates). */
#define APPEND(buf, n, len, ...)                                                                   \
    do {                                                                                           \
        if (*(n) < (len))                                                                          \
            *(n) += (size_t)snprintf((buf) + *(n), (len) - *(n), __VA_ARGS__);                     \
    } while (0)

/* The event's properties as one JSON object. Names and string values are
 * the generator's own: letters, digits, '_', '-', '.', '@', '+'. */
static void props_json(const gen__event *e, char *buf, size_t len)
{
    size_t n = 0;
    APPEND(buf, &n, len, "{");
    for (int i = 0; i < e->nprops; i++) {
        const gen__prop *p = &e->props[i];
        APPEND(buf, &n, len, "%s\"%s\":", i ? "," : "", p->name);
        if (p->kind == 's')
            APPEND(buf, &n, len, "\"%s\"", p->s);
        else if (p->kind == 'n')
            APPEND(buf, &n, len, "%.15g", p->n);
        else if (p->kind == 'b')
            APPEND(buf, &n, len, "%s", p->n ? "true" : "false");
        else
            APPEND(buf, &n, len, "%lld", (long long)p->t);
    }
    APPEND(buf, &n, len, "}");
}

static void csv_event(gen__out *o, const gen__customer *c, const gen__event *e)
{
    FILE *f = o->f[F_EVENTS];
    char links[512], props[1024];
    size_t n = 0;
    links[0] = 0;
    for (int i = 0; i < e->nlink; i++)
        APPEND(links, &n, sizeof links, "%s%s:%s", i ? ";" : "",
               gen__identity_name(e->link[i].type), e->link[i].value);
    props_json(e, props, sizeof props);
    fprintf(f, "%s,%s,%s,%s,%s,%s,%s,%s,%lld,%s,", e->id, c->id, gen__identity_name(e->who.type),
            e->who.value, gen__tps[e->tp].name, gen__channel_name(e->channel), e->event_type,
            gen__stage_name(gen__tps[e->tp].stage), (long long)e->at, e->session);
    if (e->value)
        fprintf(f, "%.0f,KRW,", e->value);
    else
        fputs(",,", f);
    fprintf(f, "%s,%s,", e->item, links);
    csv_str(f, props);
    putc('\n', f);
}

static void csv_interaction(gen__out *o, const gen__customer *c, const gen__interaction *it)
{
    fprintf(o->f[F_INTERACTIONS_CSV], "%s,%s,%s,%s,%s,%s,%g,%lld\n", it->id, c->id,
            gen__identity_name(it->who.type), it->who.value, it->item, it->type, it->weight,
            (long long)it->at);
}

static void csv_response(gen__out *o, const gen__customer *c, const gen__response *r)
{
    FILE *f = o->f[F_RESPONSES_CSV];
    const gen__survey *sv = &gen__surveys[r->survey];
    static const char *const kinds[GEN_NSURVEY] = {"nps", "csat", "ces"};
    fprintf(f, "%s,%s,%s,%s,%s,%s,%d,%s,", r->id, sv->id, kinds[r->survey], c->id,
            gen__identity_name(r->who.type), r->who.value, r->score, r->language);
    csv_str(f, r->text);
    fprintf(f, ",%s,%s,%s,%s,%lld,%s,%d\n", r->reason ? r->reason : "",
            gen__channel_name(r->channel), gen__stage_name(r->stage),
            sv->tp >= 0 ? gen__tps[sv->tp].name : "", (long long)r->at, r->trigger,
            r->score <= sv->follow_up_max);
    for (int i = 0; i < r->nratings; i++)
        fprintf(o->f[F_RATINGS], "%s,%s,%s,%d,%s,%d,%d\n", r->id, c->id, sv->id, r->score,
                gen__tps[r->ratings[i].tp].name, r->ratings[i].expectation,
                r->ratings[i].experience);
}

/* The value of an identity the customer revealed, or "". */
static const char *revealed(const gen__customer *c, Cxm__V1__IdentityType type)
{
    for (int i = 0; i < c->nseen; i++)
        if (c->seen[i].id.type == type)
            return c->seen[i].id.value;
    return "";
}

static void csv_customer(gen__out *o, const gen__customer *c)
{
    FILE *f = o->f[F_CUSTOMERS];
    char cluster[24];
    gen__cluster_name(c->cluster, cluster, sizeof cluster);
    fprintf(f, "%s,", c->id);
    csv_str(f, c->name);
    fprintf(f, ",%s,%s,%d,%s,%d,%d,%lld,%s,%s,%s,%s,%lld,%lld,%s,%d,%.0f,%d,%d\n", c->locale,
            c->city, c->birth_year, cluster, c->app_user, c->signed_up, (long long)c->signup_at,
            c->signed_up ? gen__channel_name(c->signup_channel) : "", revealed(c, IDENTITY(CRM_ID)),
            revealed(c, IDENTITY(EMAIL)), revealed(c, IDENTITY(PHONE)), (long long)c->first_seen,
            (long long)c->last_seen, gen__stage_name(c->stage), c->purchases, c->lifetime_value,
            c->churned, c->marketing);
    for (int i = 0; i < c->nseen; i++)
        fprintf(o->f[F_IDENTITIES], "%s,%s,%s,%lld,%s\n", c->id,
                gen__identity_name(c->seen[i].id.type), c->seen[i].id.value,
                (long long)c->seen[i].at, gen__channel_name(c->seen[i].channel));
}

/* ---------- the emitters ---------- */

void gen__out_event(gen__out *o, const gen__customer *c, const gen__event *e)
{
    if (o->f[F_TRACK])
        pb_event(o, e);
    if (o->f[F_EVENTS])
        csv_event(o, c, e);
}

void gen__out_interaction(gen__out *o, const gen__customer *c, const gen__interaction *it)
{
    if (o->f[F_INTERACTIONS])
        pb_interaction(o, it);
    if (o->f[F_INTERACTIONS_CSV])
        csv_interaction(o, c, it);
}

void gen__out_response(gen__out *o, const gen__customer *c, const gen__response *r)
{
    if (o->f[F_RESPONSES])
        pb_response(o, r);
    if (o->f[F_RESPONSES_CSV])
        csv_response(o, c, r);
}

void gen__out_customer(gen__out *o, const gen__customer *c)
{
    if (o->f[F_PROFILES] && c->signed_up)
        pb_profile(o, c);
    if (o->f[F_CUSTOMERS])
        csv_customer(o, c);
}

/* ---------- open and close ---------- */

static FILE *open_file(const char *dir, const char *name, char *err, size_t errlen)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f)
        snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
    else
        setvbuf(f, NULL, _IOFBF, 1 << 20);
    return f;
}

static int close_files(gen__out *o, int rc, char *err, size_t errlen)
{
    for (int i = 0; i < NFILES; i++) {
        if (!o->f[i])
            continue;
        bool bad = ferror(o->f[i]);
        if (fclose(o->f[i]) != 0 || bad) {
            if (rc == 0)
                snprintf(err, errlen, "cannot write %s/%s: %s", o->p->out, file_names[i],
                         strerror(errno));
            rc = rc ? rc : CXM_EIO;
        }
        o->f[i] = NULL;
    }
    return rc;
}

static void out_free(gen__out *o)
{
    free(o->track.buf);
    free(o->inter.buf);
    free(o->scratch);
    free(o);
}

int gen__out_open(const cxm_gen_params *p, gen__out **out, char *err, size_t errlen)
{
    gen__out *o = calloc(1, sizeof *o);
    if (!o) {
        snprintf(err, errlen, "out of memory");
        return CXM_ENOMEM;
    }
    o->p = p;
    for (int i = 0; i < NFILES; i++) {
        unsigned need = i < NPB ? CXM_GEN_FORMAT_PB : CXM_GEN_FORMAT_CSV;
        if (!(p->formats & need))
            continue;
        if (!(o->f[i] = open_file(p->out, file_names[i], err, errlen))) {
            close_files(o, CXM_EIO, err, errlen);
            out_free(o);
            return CXM_EIO;
        }
        if (i >= NPB)
            fprintf(o->f[i], "%s\n", csv_headers[i - NPB]);
    }
    *out = o;
    return 0;
}

int gen__out_close(gen__out *o, gen__truth *t, char *err, size_t errlen)
{
    int rc = 0;
    if (o->f[F_TRACK])
        batch_flush(o, &o->track, F_TRACK, NULL, 0);
    if (o->f[F_INTERACTIONS])
        flush_interactions(o);
    if (o->oom) {
        snprintf(err, errlen, "out of memory while packing messages");
        rc = CXM_ENOMEM;
    }
    rc = close_files(o, rc, err, errlen);
    t->profiles = o->messages[F_PROFILES];
    t->track_messages = o->messages[F_TRACK];
    t->interaction_messages = o->messages[F_INTERACTIONS];
    out_free(o);
    return rc;
}
