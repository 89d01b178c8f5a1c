/*
 * args.c - the argument syntax every command shares (see cxmctl.h): new
 * messages in the invocation's arena, numbers, times, typed values,
 * identities, customers and enum words.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cxmctl.h"

/* Characters of attribute, trait and scope names ([A-Za-z0-9_.-]). */
const char cxmctl_name_chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-";

/* A message of type d in the invocation's arena. Running out of memory in a
 * command-line tool leaves nothing to recover, so it exits. */
void *cxmctl_new_message(ctl *c, const ProtobufCMessageDescriptor *d)
{
    ProtobufCMessage *m = cxm_arena_alloc(&c->arena, d->sizeof_message);
    if (!m) {
        fprintf(stderr, "cxmctl: out of memory\n");
        exit(CXMCTL_FAILED);
    }
    protobuf_c_message_init(d, m);
    return m;
}

void *cxmctl_new_array(ctl *c, size_t n, size_t size)
{
    void *p = cxm_arena_calloc(&c->arena, n ? n : 1, size);
    if (!p) {
        fprintf(stderr, "cxmctl: out of memory\n");
        exit(CXMCTL_FAILED);
    }
    return p;
}

const char *cxmctl_flag_value(const cxmctl_flag *f)
{
    return f->n ? f->v[0] : NULL;
}

int cxmctl_require(const ctl *c, const cxmctl_flag *f)
{
    return f->n ? 0 : cxmctl_usage_error(c, "--%s %s is required", f->name, f->metavar);
}

/* An unsigned decimal no larger than max, all of s. */
int cxmctl_parse_uint(const ctl *c, const char *what, const char *s, uint64_t max, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*s < '0' || *s > '9' || *end || errno == ERANGE || v > max)
        return cxmctl_usage_error(c, "%s: \"%s\" is not a whole number from 0 to %llu", what, s,
                                  (unsigned long long)max);
    *out = v;
    return 0;
}

/* Milliseconds since the epoch, or RFC 3339 ("2024-05-01T10:00:00.5+02:00",
 * "2024-05-01T10:00:00Z"), or a date alone meaning its midnight UTC. */
int cxmctl_parse_time(const char *s, int64_t *out)
{
    uint64_t ms;
    char *end;
    if (*s >= '0' && *s <= '9' && (ms = strtoull(s, &end, 10), *end == '\0') &&
        ms <= (uint64_t)INT64_MAX) {
        *out = (int64_t)ms;
        return 0;
    }
    struct tm tm = {0};
    const char *p = strptime(s, "%Y-%m-%d", &tm);
    int64_t frac_ms = 0, offset_s = 0;
    if (p && (*p == 'T' || *p == 't' || *p == ' '))
        p = strptime(p + 1, "%H:%M:%S", &tm);
    if (p && *p == '.') {
        int digits = 0;
        for (p++; *p >= '0' && *p <= '9'; p++, digits++)
            if (digits < 3)
                frac_ms = frac_ms * 10 + (*p - '0');
        for (; digits > 0 && digits < 3; digits++)
            frac_ms *= 10;
    }
    if (p && (*p == 'Z' || *p == 'z')) {
        p++;
    } else if (p && (*p == '+' || *p == '-')) {
        /* Exactly HH:MM (sscanf's %2d would also take " 5", "-3" or 99). */
        const char *o = p + 1;
        bool digits = o[0] >= '0' && o[0] <= '9' && o[1] >= '0' && o[1] <= '9' && o[2] == ':' &&
                      o[3] >= '0' && o[3] <= '9' && o[4] >= '0' && o[4] <= '9';
        int hh = digits ? (o[0] - '0') * 10 + (o[1] - '0') : 0;
        int mm = digits ? (o[3] - '0') * 10 + (o[4] - '0') : 0;
        if (!digits || hh > 23 || mm > 59)
            return -1;
        offset_s = (*p == '-' ? -1 : 1) * (hh * 3600 + mm * 60);
        p += 6;
    }
    if (!p || *p)
        return -1;
    *out = ((int64_t)timegm(&tm) - offset_s) * 1000 + frac_ms;
    return 0;
}

int cxmctl_parse_number(const char *s, double *out)
{
    char *end;
    errno = 0;
    double d = strtod(s, &end);
    if (!*s || *end || errno == ERANGE || !isfinite(d))
        return -1;
    *out = d;
    return 0;
}

/* A number or true/false, as after NAME:= in --set. */
int cxmctl_parse_literal(const char *s, Cxm__V1__Value *v)
{
    if (strcmp(s, "true") == 0 || strcmp(s, "false") == 0) {
        v->kind_case = CXM__V1__VALUE__KIND_BOOL_VALUE;
        v->bool_value = s[0] == 't';
        return 0;
    }
    v->kind_case = CXM__V1__VALUE__KIND_NUMBER_VALUE;
    return cxmctl_parse_number(s, &v->number_value);
}

int cxmctl_parse_timestamp_value(const char *s, Cxm__V1__Value *v)
{
    v->kind_case = CXM__V1__VALUE__KIND_TIMESTAMP_UNIX_MS;
    return cxmctl_parse_time(s, &v->timestamp_unix_ms);
}

void cxmctl_string_value(ctl *c, const char *s, size_t len, Cxm__V1__Value *v)
{
    v->kind_case = CXM__V1__VALUE__KIND_STRING_VALUE;
    v->string_value = cxm_arena_strndup(&c->arena, s, len);
}

/* The value of a search condition, typed by its look: @TIME, "text",
 * a number, true/false, else plain text. */
int cxmctl_typed_value(ctl *c, const char *s, Cxm__V1__Value *v)
{
    size_t len = strlen(s);
    if (s[0] == '@')
        return cxmctl_parse_timestamp_value(s + 1, v);
    if (len >= 2 && s[0] == '"' && s[len - 1] == '"')
        cxmctl_string_value(c, s + 1, len - 2, v);
    else if (cxmctl_parse_literal(s, v) != 0)
        cxmctl_string_value(c, s, len, v);
    return 0;
}

/* TYPE:VALUE, TYPE one of cxmctl_identity_types; custom:NAME:VALUE. */
int cxmctl_parse_identity(ctl *c, const char *s, Cxm__V1__Identity *id)
{
    const char *colon = strchr(s, ':');
    size_t len = colon ? (size_t)(colon - s) : 0;
    for (size_t t = 0; colon && t < cxmctl_nidentity_types; t++) {
        const char *word = cxmctl_identity_types[t];
        if (!word || strlen(word) != len || strncmp(s, word, len) != 0)
            continue;
        id->type = (Cxm__V1__IdentityType)t;
        id->value = (char *)colon + 1;
        if (id->type != CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_CUSTOM)
            return 0;
        const char *second = strchr(colon + 1, ':');
        if (!second)
            break;
        id->custom_type = cxm_arena_strndup(&c->arena, colon + 1, (size_t)(second - colon - 1));
        id->value = (char *)second + 1;
        return 0;
    }
    return cxmctl_usage_error(c,
                              "identity \"%s\": expected TYPE:VALUE with TYPE email, phone, "
                              "device, anonymous, crm, customer or custom:NAME",
                              s);
}

Cxm__V1__Identity *cxmctl_new_identity(ctl *c, const char *s, int *rc)
{
    Cxm__V1__Identity *id = cxmctl_new_message(c, &cxm__v1__identity__descriptor);
    *rc = cxmctl_parse_identity(c, s, id);
    return id;
}

/* The customer a command names: the ID argument, or --identity. Consumes
 * the ID from *pos when there is one. */
int cxmctl_customer_ref(ctl *c, const cxmctl_flag *identity, char ***pos, size_t *npos,
                        size_t nother, Cxm__V1__CustomerRef **out)
{
    bool by_id = *npos > nother;
    if (by_id == (identity->n > 0))
        return cxmctl_usage_error(c, "name the customer by ID or by --identity, not %s",
                                  by_id ? "both" : "neither");
    Cxm__V1__CustomerRef *ref = cxmctl_new_message(c, &cxm__v1__customer_ref__descriptor);
    int rc = 0;
    if (by_id) {
        ref->key_case = CXM__V1__CUSTOMER_REF__KEY_CUSTOMER_ID;
        ref->customer_id = (*pos)[0];
        ++*pos, --*npos;
    } else {
        ref->key_case = CXM__V1__CUSTOMER_REF__KEY_IDENTITY;
        ref->identity = cxmctl_new_identity(c, cxmctl_flag_value(identity), &rc);
    }
    *out = ref;
    return rc;
}

int cxmctl_parse_enum(const ctl *c, const ProtobufCEnumDescriptor *e, const char *what,
                      const char *word, int *value)
{
    if (cxmctl_enum_parse(e, word, value) == 0)
        return 0;
    fprintf(stderr, "cxmctl: %s: %s \"%s\" is none of:", c->cmd->name, what, word);
    for (unsigned i = 0; i < e->n_values; i++)
        if (e->values[i].value != 0)
            fputc(' ', stderr), cxmctl_enum_short(stderr, e, e->values[i].value);
    fputc('\n', stderr);
    return CXMCTL_USAGE;
}

/* Milliseconds since the epoch, now. */
int64_t cxmctl_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* --- durations, times and flags the analytics share --- */

/* A duration as cxmctl_duration_parse() reads it, or whole days ("7d") or
 * weeks ("2w"), which windows are usually counted in. 0 or -1. */
int cxmctl_window_parse(const char *s, int64_t *ms)
{
    size_t len = strlen(s);
    int64_t unit = len > 1 && s[len - 1] == 'd'   ? 86400000
                   : len > 1 && s[len - 1] == 'w' ? 7 * 86400000LL
                                                  : 0;
    if (!unit)
        return cxmctl_duration_parse(s, ms);
    char *end;
    long long v = strtoll(s, &end, 10);
    if (*s < '0' || *s > '9' || end != s + len - 1 || v > INT64_MAX / unit)
        return -1;
    *ms = v * unit;
    return 0;
}

int cxmctl_duration_flag(const ctl *c, const cxmctl_flag *f, int64_t *ms)
{
    if (!f->n || cxmctl_window_parse(f->v[0], ms) == 0)
        return 0;
    return cxmctl_usage_error(c,
                              "--%s \"%s\": give a duration with its unit: 500ms, 30s, 5m, 2h, "
                              "7d or 2w",
                              f->name, f->v[0]);
}

/* A time, or a duration meaning that long ago ("--at 5m"). */
int cxmctl_time_flag(const ctl *c, const cxmctl_flag *f, bool ago, int64_t *out)
{
    int64_t d;
    if (!f->n || cxmctl_parse_time(f->v[0], out) == 0)
        return 0;
    if (ago && cxmctl_window_parse(f->v[0], &d) == 0) {
        *out = cxmctl_wall_ms() - d;
        return 0;
    }
    return cxmctl_usage_error(c,
                              "--%s \"%s\": give a time: 2025-01-01, 2025-01-01T10:00:00Z or "
                              "milliseconds since the epoch%s",
                              f->name, f->v[0], ago ? ", or a duration ago such as 5m or 2d" : "");
}

/* --from (required) and --to (default now) into a TimeRange. */
int cxmctl_range_flags(ctl *c, const cxmctl_flag *from, const cxmctl_flag *to, bool need,
                       Cxm__V1__TimeRange **out)
{
    int rc = need ? cxmctl_require(c, from) : 0;
    Cxm__V1__TimeRange *r = cxmctl_new_message(c, &cxm__v1__time_range__descriptor);
    if (rc || (rc = cxmctl_time_flag(c, from, true, &r->from_unix_ms)) ||
        (rc = cxmctl_time_flag(c, to, true, &r->to_unix_ms)))
        return rc;
    /* The analytics want both sides; "up to now" is what a person means. */
    if (need && !to->n)
        r->to_unix_ms = cxmctl_wall_ms();
    *out = from->n || to->n ? r : NULL;
    return 0;
}

int cxmctl_channel_word(const ctl *c, const char *what, const char *word, Cxm__V1__Channel *out)
{
    int v = 0;
    int rc = cxmctl_parse_enum(c, &cxm__v1__channel__descriptor, what, word, &v);
    *out = (Cxm__V1__Channel)v;
    return rc;
}

int cxmctl_channels_flag(ctl *c, const cxmctl_flag *f, Cxm__V1__Channel **out, size_t *n)
{
    *n = f->n;
    *out = cxmctl_new_array(c, f->n, sizeof **out);
    int rc = 0;
    for (size_t i = 0; i < f->n && rc == 0; i++)
        rc = cxmctl_channel_word(c, "--channel", f->v[i], &(*out)[i]);
    return rc;
}

int cxmctl_enum_flag(const ctl *c, const cxmctl_flag *f, const ProtobufCEnumDescriptor *e, int *v)
{
    char what[64];
    snprintf(what, sizeof what, "--%s", f->name);
    return f->n ? cxmctl_parse_enum(c, e, what, f->v[0], v) : 0;
}

int cxmctl_uint_flag(const ctl *c, const cxmctl_flag *f, uint64_t max, uint64_t *out)
{
    char what[64];
    snprintf(what, sizeof what, "--%s", f->name);
    return f->n ? cxmctl_parse_uint(c, what, f->v[0], max, out) : 0;
}

char **cxmctl_strings_flag(const cxmctl_flag *f)
{
    return (char **)f->v;
}
