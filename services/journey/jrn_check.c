/*
 * jrn_check.c - validation of JourneyService requests (see jrn_check.h).
 *
 * Every message names the field path first and then says what to do. Enum
 * numbers are checked against the generated descriptors, so a number this
 * build does not know (a newer client, or garbage) is INVALID_ARGUMENT
 * rather than a value the handlers never planned for.
 */
#include "jrn_check.h"

#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "cxm/err.h"
#include "cxm/ident.h"
#include "cxm/svc.h"
#include "jrules.h"

#define NAME_MAX_BYTES 128          /* caller-chosen names (common.proto) */
#define ID_MAX_BYTES 256            /* ids and identity values */
#define EVENT_ID_MAX 128            /* TouchpointEvent.event_id */
#define STRING_VALUE_MAX (8 * 1024) /* Value.string_value */
#define DESCRIPTION_MAX 1024        /* StageRule.description */
#define FILTER_LIST_MAX 100         /* touchpoints / event types of a timeline filter */
#define CHANNEL_LIST_MAX 64         /* channels of a filter (duplicates allowed) */
#define TOUCHPOINT_LIST_MAX 1000    /* TouchpointStatsRequest.touchpoints */
#define MAX_BUCKETS 1000            /* time buckets of one answer (common.proto) */
#define FUNNEL_STEPS_MIN 2
#define FUNNEL_STEPS_MAX 20
#define HOUR_MS INT64_C(3600000)
#define DAY_MS (24 * HOUR_MS)
#define YEAR_MS (365 * DAY_MS)
#define DEFAULT_WINDOW_MS (14 * DAY_MS)     /* FunnelRequest.window_ms */
#define DEFAULT_GOAL_WINDOW_MS (7 * DAY_MS) /* TouchpointStatsRequest.goal_window_ms */

static const char *s0(const char *s)
{
    return s ? s : "";
}

/* ---- names, enums, values --------------------------------------------- */

/* [A-Za-z0-9_.-], 1 to 128 bytes: touchpoints, event types, property
 * names (common.proto's caller-chosen names). */
static bool name_valid(const char *s)
{
    size_t n = strlen(s0(s));
    if (n == 0 || n > NAME_MAX_BYTES)
        return false;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '.' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

/* A name field; optional ones may be empty. */
static int check_name(const char *s, bool required, const char *field, char *err)
{
    if (!required && !*s0(s))
        return 0;
    if (name_valid(s))
        return 0;
    if (!*s0(s))
        return cxm_svc_errf(err, CXM_EINVAL, field,
                            "required: a name of [A-Za-z0-9_.-], 1 to 128 bytes");
    return cxm_svc_errf(err, CXM_EINVAL, field,
                        "\"%.64s\" is not a name: use only [A-Za-z0-9_.-], 1 to 128 bytes",
                        cxm_svc_utf8_valid(s, strlen(s)) ? s : "(not UTF-8)");
}

/* An enum field: a number the descriptor knows; 0 (UNSPECIFIED) only when
 * allowed. `what` lists the accepted values for the message. */
static int check_enum(const ProtobufCEnumDescriptor *d, int v, bool zero_ok, const char *field,
                      const char *what, char *err)
{
    if (v == 0 && zero_ok)
        return 0;
    if (v == 0)
        return cxm_svc_errf(err, CXM_EINVAL, field, "must be set: %s", what);
    if (!protobuf_c_enum_descriptor_get_value(d, v))
        return cxm_svc_errf(err, CXM_EINVAL, field, "unknown value %d: use %s", v, what);
    return 0;
}

#define CHANNELS "CHANNEL_WEB, CHANNEL_APP, ... CHANNEL_OTHER (1 to 12)"
#define STAGES "JOURNEY_STAGE_AWARENESS ... JOURNEY_STAGE_ADVOCACY (1 to 6)"

static int check_channel(int c, bool zero_ok, const char *field, char *err)
{
    return check_enum(&cxm__v1__channel__descriptor, c, zero_ok, field, CHANNELS, err);
}

/* A channel filter: each a known channel. */
static int check_channels(const Cxm__V1__Channel *list, size_t n, const char *field, char *err)
{
    if (n > CHANNEL_LIST_MAX)
        return cxm_svc_errf(err, CXM_EINVAL, field, "at most %d channels (got %zu)",
                            CHANNEL_LIST_MAX, n);
    cxm_svc_path f;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = check_channel((int)list[i], false, cxm_svc_index(&f, field, i), err);
    return rc;
}

/* A list of names (a filter), at most max. */
static int check_names(char *const *list, size_t n, size_t max, const char *field, char *err)
{
    if (n > max)
        return cxm_svc_errf(err, CXM_EINVAL, field, "at most %zu names (got %zu)", max, n);
    cxm_svc_path f;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = check_name(list[i], true, cxm_svc_index(&f, field, i), err);
    return rc;
}

/* A Value that is required: kind set, strings at most 8 KiB of UTF-8,
 * numbers finite, timestamps not negative. */
static int check_value(const Cxm__V1__Value *v, const char *field, char *err)
{
    if (!v || v->kind_case == CXM__V1__VALUE__KIND__NOT_SET)
        return cxm_svc_errf(err, CXM_EINVAL, field,
                            "a value is required: set string_value, number_value, bool_value or "
                            "timestamp_unix_ms");
    switch (v->kind_case) {
    case CXM__V1__VALUE__KIND_STRING_VALUE: {
        size_t n = strlen(s0(v->string_value));
        if (n > STRING_VALUE_MAX)
            return cxm_svc_errf(err, CXM_EINVAL, field,
                                "string of %zu bytes; at most 8 KiB (8192 bytes)", n);
        if (!cxm_svc_utf8_valid(s0(v->string_value), n))
            return cxm_svc_errf(err, CXM_EINVAL, field, "the string must be valid UTF-8");
        return 0;
    }
    case CXM__V1__VALUE__KIND_NUMBER_VALUE:
        if (!isfinite(v->number_value))
            return cxm_svc_errf(err, CXM_EINVAL, field,
                                "must be finite: NaN and infinities are not numbers to store");
        return 0;
    case CXM__V1__VALUE__KIND_TIMESTAMP_UNIX_MS:
        if (v->timestamp_unix_ms < 0)
            return cxm_svc_errf(err, CXM_EINVAL, field,
                                "timestamps are milliseconds since 1970 and cannot be negative");
        return 0;
    default:
        return 0; /* bool */
    }
}

/* ---- property conditions ---------------------------------------------- */

static bool op_orders(Cxm__V1__CompareOp op)
{
    return op >= CXM__V1__COMPARE_OP__COMPARE_OP_LT && op <= CXM__V1__COMPARE_OP__COMPARE_OP_GE;
}

static int check_condition(const Cxm__V1__PropertyCondition *c, const char *field, char *err)
{
    cxm_svc_path f;
    if (!c)
        return cxm_svc_errf(err, CXM_EINVAL, field, "empty condition");
    int rc = check_name(c->name, true, cxm_svc_member(&f, field, "name"), err);
    if (rc == 0)
        rc = check_enum(&cxm__v1__compare_op__descriptor, (int)c->op, false,
                        cxm_svc_member(&f, field, "op"),
                        "COMPARE_OP_EQ, NE, LT, LE, GT, GE, EXISTS, NOT_EXISTS, PREFIX or "
                        "CONTAINS",
                        err);
    if (rc != 0 || c->op == CXM__V1__COMPARE_OP__COMPARE_OP_EXISTS ||
        c->op == CXM__V1__COMPARE_OP__COMPARE_OP_NOT_EXISTS)
        return rc; /* the value is ignored */
    cxm_svc_member(&f, field, "value");
    if ((rc = check_value(c->value, f.s, err)) != 0)
        return rc;
    Cxm__V1__Value__KindCase k = c->value->kind_case;
    if ((c->op == CXM__V1__COMPARE_OP__COMPARE_OP_PREFIX ||
         c->op == CXM__V1__COMPARE_OP__COMPARE_OP_CONTAINS) &&
        k != CXM__V1__VALUE__KIND_STRING_VALUE)
        return cxm_svc_errf(err, CXM_EINVAL, f.s,
                            "PREFIX and CONTAINS compare strings: give a string_value");
    if (op_orders(c->op) && k == CXM__V1__VALUE__KIND_BOOL_VALUE)
        return cxm_svc_errf(err, CXM_EINVAL, f.s,
                            "booleans do not order: use EQ or NE, or a number, timestamp or "
                            "string");
    return 0;
}

static int check_conditions(Cxm__V1__PropertyCondition *const *c, size_t n, const char *field,
                            char *err)
{
    if (n > JRULES_MAX_CONDITIONS)
        return cxm_svc_errf(err, CXM_EINVAL, field, "at most %d conditions (got %zu)",
                            JRULES_MAX_CONDITIONS, n);
    cxm_svc_path f;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = check_condition(c[i], cxm_svc_index(&f, field, i), err);
    return rc;
}

/* ---- identities -------------------------------------------------------- */

/* The shape of an identity that needs no knowledge of its kind: a known
 * type, custom_type exactly when CUSTOM, a value of 1 to 256 bytes of
 * UTF-8. */
static int identity_shape(const Cxm__V1__Identity *id, const char *field, char *err)
{
    cxm_svc_path f;
    if (!id)
        return cxm_svc_errf(err, CXM_EINVAL, field, "an identity (type and value) is required");
    int rc = check_enum(&cxm__v1__identity_type__descriptor, (int)id->type, false,
                        cxm_svc_member(&f, field, "type"),
                        "IDENTITY_TYPE_EMAIL, PHONE, DEVICE_ID, ANONYMOUS_ID, ... (1 to 7)", err);
    if (rc != 0)
        return rc;
    bool custom = id->type == CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_CUSTOM;
    if (custom != (*s0(id->custom_type) != 0) || (custom && !cxm_svc_slug_valid(id->custom_type)))
        return cxm_svc_errf(err, CXM_EINVAL, cxm_svc_member(&f, field, "custom_type"),
                            "required for IDENTITY_TYPE_CUSTOM ([a-z0-9_.-], 1 to 64 bytes) and "
                            "forbidden otherwise");
    return cxm_svc_check_text(id->value, 1, ID_MAX_BYTES, cxm_svc_member(&f, field, "value"), err);
}

/*
 * An identity, checked and normalised with the profile service's own rules
 * (cxm/ident.h), so that resolution keys match its stored spellings and a
 * placeholder value ("null", "0") is refused here, at the edge, instead of
 * being dropped later by the profile service. A value that changes is
 * replaced by a copy in arena a, so the caller owns the event in a (a
 * TrackStream message decoded on the heap must be copied first: its free
 * would meet the arena's string).
 */
static int jrn_check_identity(cxm_arena *a, Cxm__V1__Identity *id, const char *field, char *err)
{
    int rc = identity_shape(id, field, err);
    if (rc != 0)
        return rc;
    char out[CXM_IDENT_MAX + 1];
    size_t len = 0, have = strlen(id->value);
    const char *why = NULL;
    cxm_svc_path f;
    if (cxm_ident_normalize(NULL, (cxm_ident_kind)id->type, id->value, have, out, &len, &why) != 0)
        return cxm_svc_errf(err, CXM_EINVAL, cxm_svc_member(&f, field, "value"), "%s",
                            why ? why : "is not a valid identity of its type");
    if (len == have && memcmp(out, id->value, len) == 0)
        return 0;
    char *copy = cxm_arena_strndup(a, out, len);
    if (!copy)
        return cxm_svc_errf(err, CXM_ENOMEM, field, "out of memory normalising the identity");
    id->value = copy;
    return 0;
}

static int check_ref(cxm_arena *a, Cxm__V1__CustomerRef *ref, const char *field, char *err)
{
    cxm_svc_path f;
    if (!ref || ref->key_case == CXM__V1__CUSTOMER_REF__KEY__NOT_SET)
        return cxm_svc_errf(err, CXM_EINVAL, field, "a customer_id or an identity is required");
    if (ref->key_case == CXM__V1__CUSTOMER_REF__KEY_CUSTOMER_ID)
        return cxm_svc_check_text(ref->customer_id, 1, ID_MAX_BYTES,
                                  cxm_svc_member(&f, field, "customer_id"), err);
    if (ref->key_case != CXM__V1__CUSTOMER_REF__KEY_IDENTITY)
        return cxm_svc_errf(err, CXM_EINVAL, field, "a customer_id or an identity is required");
    return jrn_check_identity(a, ref->identity, cxm_svc_member(&f, field, "identity"), err);
}

/* ---- time ranges -------------------------------------------------------- */

static int check_side(int64_t t, bool required, const char *field, char *err)
{
    if (t < 0)
        return cxm_svc_errf(err, CXM_EINVAL, field,
                            "must not be negative: milliseconds since 1970");
    if (t == 0 && required)
        return cxm_svc_errf(err, CXM_EINVAL, field,
                            "required: both sides of this range are needed (milliseconds since "
                            "1970)");
    return 0;
}

/* A range: sides not negative, from < to when both are set, both set when
 * required, and a start that is not in the future by more than the clock
 * slack (times in microseconds or seconds*1000 show up here). */
static int check_range(const Cxm__V1__TimeRange *r, bool required, int64_t now, const char *field,
                       char *err)
{
    cxm_svc_path f;
    if (!r && required)
        return cxm_svc_errf(err, CXM_EINVAL, field,
                            "required: set from_unix_ms and to_unix_ms (milliseconds since 1970)");
    if (!r)
        return 0;
    int rc = check_side(r->from_unix_ms, required, cxm_svc_member(&f, field, "from_unix_ms"), err);
    if (rc == 0)
        rc = check_side(r->to_unix_ms, required, cxm_svc_member(&f, field, "to_unix_ms"), err);
    if (rc != 0)
        return rc;
    if (r->from_unix_ms && r->to_unix_ms && r->from_unix_ms >= r->to_unix_ms)
        return cxm_svc_errf(err, CXM_EINVAL, field,
                            "from_unix_ms %" PRId64 " must be before to_unix_ms %" PRId64,
                            r->from_unix_ms, r->to_unix_ms);
    if (now > 0 && r->from_unix_ms > now + JRN_FUTURE_MS)
        return cxm_svc_errf(err, CXM_EINVAL, cxm_svc_member(&f, field, "from_unix_ms"),
                            "%" PRId64 " is in the future (now %" PRId64
                            "): times are milliseconds since 1970",
                            r->from_unix_ms, now);
    return 0;
}

/* A duration with a default for 0 and a maximum, filled in place. */
static int check_window(int64_t *ms, int64_t dflt, const char *field, char *err)
{
    if (*ms < 0 || *ms > YEAR_MS)
        return cxm_svc_errf(err, CXM_EINVAL, field,
                            "%" PRId64 " ms: use 1 ms to 365 days (31536000000 ms), or 0 for "
                            "the default",
                            *ms);
    if (*ms == 0)
        *ms = dflt;
    return 0;
}

/* A count with a default for 0 and bounds, filled in place. */
static int check_count(uint32_t *v, uint32_t dflt, uint32_t lo, uint32_t hi, const char *field,
                       char *err)
{
    if (*v == 0)
        *v = dflt;
    if (*v < lo || *v > hi)
        return cxm_svc_errf(err, CXM_EINVAL, field, "%u: use %u to %u, or 0 for %u", *v, lo, hi,
                            dflt);
    return 0;
}

/* ---- Track ------------------------------------------------------------- */

int jrn_check_batch_size(size_t n, char *err)
{
    if (n == 0)
        return cxm_svc_errf(err, CXM_EINVAL, "events", "1 to %d events are required",
                            JRN_MAX_BATCH);
    if (n > JRN_MAX_BATCH)
        return cxm_svc_errf(err, CXM_ENOMEM, "events",
                            "%zu events is over the limit of %d per message: split the batch", n,
                            JRN_MAX_BATCH);
    return 0;
}

/* occurred_at: not negative, not ahead of now by more than the clock
 * slack, not older than the lateness bound (none when it is 0); 0 = now. */
static int check_occurred(const jrn_limits *l, int64_t *t, int64_t now, char *err)
{
    const char *field = "occurred_at_unix_ms";
    if (*t < 0)
        return cxm_svc_errf(err, CXM_EINVAL, field,
                            "must not be negative: milliseconds since 1970, or 0 for now");
    if (*t == 0)
        *t = now;
    if (*t > now + JRN_FUTURE_MS)
        return cxm_svc_errf(err, CXM_EINVAL, field,
                            "%" PRId64 " is %" PRId64 " ms in the future; at most 5 minutes "
                            "(%d ms) ahead of the server clock is accepted: check the sender's "
                            "clock and that the time is in milliseconds",
                            *t, *t - now, JRN_FUTURE_MS);
    int64_t bound = l ? l->max_lateness_ms : 0;
    if (bound > 0 && *t < now - bound)
        return cxm_svc_errf(err, CXM_EINVAL, field,
                            "%" PRId64 " is %" PRId64 " ms old, older than the lateness bound of "
                            "%" PRId64 " ms (%.1f days, --journey-max-lateness): events that late "
                            "are not accepted",
                            *t, now - *t, bound, (double)bound / (double)DAY_MS);
    return 0;
}

/* One property: its path is "properties.<name>" once the name is valid. */
static int check_property(const Cxm__V1__TouchpointEvent__PropertiesEntry *p, size_t i, char *err)
{
    char field[CXM_SVC_PATH_MAX];
    const char *key = p ? s0(p->key) : "";
    if (!name_valid(key)) {
        snprintf(field, sizeof field, "properties[%zu]", i);
        return cxm_svc_errf(err, CXM_EINVAL, field,
                            "property name \"%.64s\" is not a name: use [A-Za-z0-9_.-], 1 to "
                            "128 bytes",
                            cxm_svc_utf8_valid(key, strlen(key)) ? key : "(not UTF-8)");
    }
    snprintf(field, sizeof field, "properties.%s", key);
    return check_value(p->value, field, err);
}

static int check_properties(const Cxm__V1__TouchpointEvent *ev, char *err)
{
    if (ev->n_properties > JRN_MAX_PROPS)
        return cxm_svc_errf(err, CXM_EINVAL, "properties", "%zu properties; at most %d",
                            ev->n_properties, JRN_MAX_PROPS);
    for (size_t i = 0; i < ev->n_properties; i++) {
        int rc = check_property(ev->properties[i], i, err);
        if (rc != 0)
            return rc;
        /* A map sent twice with one key would keep either value silently. */
        for (size_t j = 0; j < i; j++)
            if (strcmp(s0(ev->properties[j]->key), ev->properties[i]->key) == 0)
                return cxm_svc_errf(err, CXM_EINVAL, "properties",
                                    "\"%s\" appears twice: send each property once",
                                    ev->properties[i]->key);
    }
    return 0;
}

static int check_links(cxm_arena *a, Cxm__V1__TouchpointEvent *ev, char *err)
{
    if (ev->n_link_identities > JRN_MAX_LINKS)
        return cxm_svc_errf(err, CXM_EINVAL, "link_identities", "%zu identities; at most %d",
                            ev->n_link_identities, JRN_MAX_LINKS);
    cxm_svc_path f, t;
    for (size_t i = 0; i < ev->n_link_identities; i++) {
        Cxm__V1__Identity *id = ev->link_identities[i];
        int rc = jrn_check_identity(a, id, cxm_svc_index(&f, "link_identities", i), err);
        if (rc != 0)
            return rc;
        if (id->type == CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_CUSTOMER_ID)
            return cxm_svc_errf(err, CXM_EINVAL, cxm_svc_member(&t, f.s, "type"),
                                "a cxm customer id is not linked: name the customer in customer "
                                "and link identities such as EMAIL or ANONYMOUS_ID");
    }
    return 0;
}

static bool currency_valid(const char *c)
{
    if (!*c)
        return true;
    return strlen(c) == 3 && c[0] >= 'A' && c[0] <= 'Z' && c[1] >= 'A' && c[1] <= 'Z' &&
           c[2] >= 'A' && c[2] <= 'Z';
}

/* The fields the server sets: a client that sends them is confused about
 * what it is sending (an event read back from GetTimeline, say). */
static int check_output_only(const Cxm__V1__TouchpointEvent *ev, char *err)
{
    if (*s0(ev->customer_id))
        return cxm_svc_errf(err, CXM_EINVAL, "customer_id",
                            "output only: leave it empty and name the customer in customer");
    if (ev->stage != CXM__V1__JOURNEY_STAGE__JOURNEY_STAGE_UNSPECIFIED)
        return cxm_svc_errf(err, CXM_EINVAL, "stage",
                            "output only: leave it unset; stage rules decide the stage");
    if (ev->received_at_unix_ms != 0)
        return cxm_svc_errf(err, CXM_EINVAL, "received_at_unix_ms",
                            "output only: leave it 0; occurred_at_unix_ms is the event's time");
    return 0;
}

/* The descriptive fields after the time: value, currency, session, item. */
static int check_details(const Cxm__V1__TouchpointEvent *ev, char *err)
{
    if (!isfinite(ev->value))
        return cxm_svc_errf(err, CXM_EINVAL, "value",
                            "must be finite (no NaN or infinity): an amount such as 129.5");
    if (!currency_valid(s0(ev->currency)))
        return cxm_svc_errf(err, CXM_EINVAL, "currency",
                            "\"%.16s\" is not an ISO 4217 code: use 3 upper-case letters (KRW, "
                            "USD) or leave it empty for the base currency",
                            cxm_svc_utf8_valid(s0(ev->currency), strlen(s0(ev->currency)))
                                ? s0(ev->currency)
                                : "(not UTF-8)");
    int rc = cxm_svc_check_text(ev->session_id, 0, NAME_MAX_BYTES, "session_id", err);
    if (rc == 0)
        rc = cxm_svc_check_text(ev->item_id, 0, ID_MAX_BYTES, "item_id", err);
    return rc;
}

int jrn_check_event(const jrn_limits *l, cxm_arena *a, Cxm__V1__TouchpointEvent *ev, int64_t now,
                    char *err)
{
    if (!ev)
        return cxm_svc_errf(err, CXM_EINVAL, NULL, "empty event");
    int rc = cxm_svc_check_text(ev->event_id, 1, EVENT_ID_MAX, "event_id", err);
    if (rc == 0)
        rc = check_ref(a, ev->customer, "customer", err);
    if (rc == 0)
        rc = check_links(a, ev, err);
    if (rc == 0)
        rc = check_name(ev->touchpoint, true, "touchpoint", err);
    if (rc == 0)
        rc = check_channel((int)ev->channel, false, "channel", err);
    if (rc == 0)
        rc = check_name(ev->event_type, true, "event_type", err);
    if (rc == 0)
        rc = check_occurred(l, &ev->occurred_at_unix_ms, now, err);
    if (rc == 0)
        rc = check_properties(ev, err);
    if (rc == 0)
        rc = check_details(ev, err);
    if (rc == 0)
        rc = check_output_only(ev, err);
    return rc;
}

/* ---- reads ------------------------------------------------------------- */

int jrn_check_timeline(cxm_arena *a, Cxm__V1__GetTimelineRequest *req, int *page_size, char *err)
{
    int rc = check_ref(a, req->customer, "customer", err);
    if (rc == 0)
        rc = check_range(req->range, false, 0, "range", err);
    if (rc == 0)
        rc = check_names(req->touchpoints, req->n_touchpoints, FILTER_LIST_MAX, "touchpoints", err);
    if (rc == 0)
        rc = check_channels(req->channels, req->n_channels, "channels", err);
    if (rc == 0)
        rc = check_names(req->event_types, req->n_event_types, FILTER_LIST_MAX, "event_types", err);
    if (rc == 0)
        rc = cxm_svc_page_size(req->page_size, 50, 1000, page_size, err);
    return rc;
}

int jrn_check_state(cxm_arena *a, Cxm__V1__GetJourneyStateRequest *req, char *err)
{
    return check_ref(a, req->customer, "customer", err);
}

/* ---- UpsertStageRules --------------------------------------------------- */

static bool has_matcher(const Cxm__V1__StageRule *r)
{
    return *s0(r->event_type) || *s0(r->touchpoint) || r->channel || r->n_conditions;
}

static int check_rule(const Cxm__V1__StageRule *r, const char *field, char *err)
{
    cxm_svc_path f;
    if (!r)
        return cxm_svc_errf(err, CXM_EINVAL, field, "empty rule");
    if (!cxm_svc_slug_valid(r->rule_id))
        return cxm_svc_errf(err, CXM_EINVAL, cxm_svc_member(&f, field, "rule_id"),
                            "required: [a-z0-9_.-], 1 to 64 bytes");
    int rc = check_name(r->event_type, false, cxm_svc_member(&f, field, "event_type"), err);
    if (rc == 0)
        rc = check_name(r->touchpoint, false, cxm_svc_member(&f, field, "touchpoint"), err);
    if (rc == 0)
        rc = check_channel((int)r->channel, true, cxm_svc_member(&f, field, "channel"), err);
    if (rc == 0)
        rc = check_conditions(r->conditions, r->n_conditions,
                              cxm_svc_member(&f, field, "conditions"), err);
    if (rc == 0 && !has_matcher(r))
        rc = cxm_svc_errf(err, CXM_EINVAL, field,
                          "a rule must set at least one of event_type, touchpoint, channel and "
                          "conditions, or it would match every event");
    if (rc == 0)
        rc = check_enum(&cxm__v1__journey_stage__descriptor, (int)r->stage, false,
                        cxm_svc_member(&f, field, "stage"), STAGES, err);
    if (rc == 0)
        rc = cxm_svc_check_text(r->description, 0, DESCRIPTION_MAX,
                                cxm_svc_member(&f, field, "description"), err);
    return rc;
}

int jrn_check_rules(const Cxm__V1__UpsertStageRulesRequest *req, char *err)
{
    if (req->n_rules > JRULES_MAX)
        return cxm_svc_errf(err, CXM_EINVAL, "rules", "%zu rules; at most %d in a set",
                            req->n_rules, JRULES_MAX);
    cxm_svc_path f, id;
    for (size_t i = 0; i < req->n_rules; i++) {
        int rc = check_rule(req->rules[i], cxm_svc_index(&f, "rules", i), err);
        if (rc != 0)
            return rc;
        for (size_t j = 0; j < i; j++)
            if (strcmp(req->rules[j]->rule_id, req->rules[i]->rule_id) == 0)
                return cxm_svc_errf(err, CXM_EINVAL, cxm_svc_member(&id, f.s, "rule_id"),
                                    "\"%s\" is also rules[%zu]: rule ids are unique in a set",
                                    req->rules[i]->rule_id, j);
    }
    return 0;
}

/* ---- Funnel -------------------------------------------------------------- */

static int check_step(const Cxm__V1__FunnelStep *s, const char *field, char *err)
{
    cxm_svc_path f;
    if (!s)
        return cxm_svc_errf(err, CXM_EINVAL, field, "empty step");
    int rc = cxm_svc_check_text(s->name, 0, NAME_MAX_BYTES, cxm_svc_member(&f, field, "name"), err);
    if (rc == 0)
        rc = check_name(s->event_type, false, cxm_svc_member(&f, field, "event_type"), err);
    if (rc == 0)
        rc = check_name(s->touchpoint, false, cxm_svc_member(&f, field, "touchpoint"), err);
    if (rc == 0)
        rc = check_channel((int)s->channel, true, cxm_svc_member(&f, field, "channel"), err);
    if (rc == 0)
        rc = check_conditions(s->conditions, s->n_conditions,
                              cxm_svc_member(&f, field, "conditions"), err);
    if (rc == 0 && !*s0(s->event_type) && !*s0(s->touchpoint) && !s->channel && !s->n_conditions)
        rc = cxm_svc_errf(err, CXM_EINVAL, field,
                          "a step needs a matcher: set event_type, touchpoint, channel or "
                          "conditions");
    return rc;
}

static int check_steps(const Cxm__V1__FunnelRequest *req, char *err)
{
    if (req->n_steps < FUNNEL_STEPS_MIN || req->n_steps > FUNNEL_STEPS_MAX)
        return cxm_svc_errf(err, CXM_EINVAL, "steps", "%zu steps; a funnel has %d to %d",
                            req->n_steps, FUNNEL_STEPS_MIN, FUNNEL_STEPS_MAX);
    cxm_svc_path f;
    int rc = 0;
    for (size_t i = 0; i < req->n_steps && rc == 0; i++)
        rc = check_step(req->steps[i], cxm_svc_index(&f, "steps", i), err);
    return rc;
}

int jrn_check_funnel(Cxm__V1__FunnelRequest *req, int64_t now, char *err)
{
    int rc = check_steps(req, err);
    if (rc == 0)
        rc = check_range(req->range, true, now, "range", err);
    if (rc == 0)
        rc = check_window(&req->window_ms, DEFAULT_WINDOW_MS, "window_ms", err);
    if (rc == 0 && *s0(req->segment_id))
        rc = cxm_svc_check_slug(req->segment_id, "segment_id", err);
    if (rc == 0)
        rc = check_channels(req->channels, req->n_channels, "channels", err);
    if (rc == 0)
        rc = check_enum(&cxm__v1__funnel_order__descriptor, (int)req->order, true, "order",
                        "FUNNEL_ORDER_ORDERED, STRICT or ANY", err);
    if (rc == 0)
        rc = check_enum(&cxm__v1__funnel_breakdown__descriptor, (int)req->breakdown, true,
                        "breakdown", "FUNNEL_BREAKDOWN_CHANNEL or FIRST_TOUCHPOINT", err);
    if (rc == 0)
        rc = check_count(&req->breakdown_limit, 20, 1, 100, "breakdown_limit", err);
    if (rc == 0 && req->order == CXM__V1__FUNNEL_ORDER__FUNNEL_ORDER_UNSPECIFIED)
        req->order = CXM__V1__FUNNEL_ORDER__FUNNEL_ORDER_ORDERED;
    return rc;
}

/* ---- Paths --------------------------------------------------------------- */

int jrn_check_paths(Cxm__V1__PathsRequest *req, int64_t now, char *err)
{
    int rc = check_name(req->anchor, true, "anchor", err);
    if (rc == 0)
        rc = check_enum(&cxm__v1__path_direction__descriptor, (int)req->direction, false,
                        "direction", "PATH_DIRECTION_FROM or PATH_DIRECTION_TO", err);
    if (rc == 0)
        rc = check_count(&req->max_length, 5, 2, 10, "max_length", err);
    if (rc == 0)
        rc = check_range(req->range, true, now, "range", err);
    if (rc == 0)
        rc = check_count(&req->limit, 20, 1, 100, "limit", err);
    if (rc == 0)
        rc = check_channels(req->channels, req->n_channels, "channels", err);
    if (rc == 0 && *s0(req->segment_id))
        rc = cxm_svc_check_slug(req->segment_id, "segment_id", err);
    if (rc == 0)
        rc = check_enum(&cxm__v1__path_element__descriptor, (int)req->element, true, "element",
                        "PATH_ELEMENT_TOUCHPOINT or PATH_ELEMENT_EVENT_TYPE", err);
    if (rc == 0 && req->element == CXM__V1__PATH_ELEMENT__PATH_ELEMENT_UNSPECIFIED)
        req->element = CXM__V1__PATH_ELEMENT__PATH_ELEMENT_TOUCHPOINT;
    return rc;
}

/* ---- TouchpointStats ------------------------------------------------------ */

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* Months since year 0 of a UTC day number (days since 1970-01-01), by
 * Howard Hinnant's civil_from_days. */
static int64_t month_index(int64_t days)
{
    int64_t z = days + 719468;
    int64_t era = floor_div(z, 146097);
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int64_t m = mp < 10 ? mp + 3 : mp - 9;
    int64_t y = yoe + era * 400 + (m <= 2);
    return y * 12 + (m - 1);
}

/* Aligned UTC buckets touching [from, to): hours, days, weeks starting on
 * Monday (1970-01-01 was a Thursday, so weeks count from day -3), months. */
static int64_t bucket_count(Cxm__V1__TimeBucket b, int64_t from, int64_t to)
{
    int64_t last = to - 1;
    switch (b) {
    case CXM__V1__TIME_BUCKET__TIME_BUCKET_HOUR:
        return floor_div(last, HOUR_MS) - floor_div(from, HOUR_MS) + 1;
    case CXM__V1__TIME_BUCKET__TIME_BUCKET_DAY:
        return floor_div(last, DAY_MS) - floor_div(from, DAY_MS) + 1;
    case CXM__V1__TIME_BUCKET__TIME_BUCKET_WEEK: /* on days: to - 1 + 3 days could overflow */
        return floor_div(floor_div(last, DAY_MS) + 3, 7) -
               floor_div(floor_div(from, DAY_MS) + 3, 7) + 1;
    case CXM__V1__TIME_BUCKET__TIME_BUCKET_MONTH:
        return month_index(floor_div(last, DAY_MS)) - month_index(floor_div(from, DAY_MS)) + 1;
    default:
        return 0;
    }
}

static int check_buckets(const Cxm__V1__TouchpointStatsRequest *req, char *err)
{
    int rc = check_enum(&cxm__v1__time_bucket__descriptor, (int)req->bucket, true, "bucket",
                        "TIME_BUCKET_HOUR, DAY, WEEK or MONTH", err);
    if (rc != 0 || req->bucket == CXM__V1__TIME_BUCKET__TIME_BUCKET_UNSPECIFIED)
        return rc;
    int64_t n = bucket_count(req->bucket, req->range->from_unix_ms, req->range->to_unix_ms);
    if (n > MAX_BUCKETS)
        return cxm_svc_errf(err, CXM_EINVAL, "bucket",
                            "the range holds %" PRId64 " %s buckets; at most %d: use a wider "
                            "bucket or a shorter range",
                            n,
                            protobuf_c_enum_descriptor_get_value(&cxm__v1__time_bucket__descriptor,
                                                                 (int)req->bucket)
                                ->name,
                            MAX_BUCKETS);
    return 0;
}

int jrn_check_touchpoints(Cxm__V1__TouchpointStatsRequest *req, int64_t now, char *err)
{
    int rc =
        check_names(req->touchpoints, req->n_touchpoints, TOUCHPOINT_LIST_MAX, "touchpoints", err);
    if (rc == 0)
        rc = check_range(req->range, true, now, "range", err);
    if (rc == 0)
        rc = check_buckets(req, err);
    if (rc == 0)
        rc = check_channels(req->channels, req->n_channels, "channels", err);
    if (rc == 0)
        rc = check_name(req->goal_event_type, false, "goal_event_type", err);
    if (rc == 0)
        rc = check_window(&req->goal_window_ms, DEFAULT_GOAL_WINDOW_MS, "goal_window_ms", err);
    return rc;
}
