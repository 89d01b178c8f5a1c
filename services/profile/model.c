/*
 * model.c - profile rules on cxm.v1.Profile messages (see model.h).
 */
#include "model.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "cxm/err.h"
#include "cxm/svc.h"
#include "cxm/ident.h"

/* ---- small arena helpers ---- */

static char *dup_str(cxm_arena *a, const char *s)
{
    return s ? cxm_arena_strndup(a, s, strlen(s)) : cxm_arena_strndup(a, "", 0);
}

static const char *str_or_empty(const char *s)
{
    return s ? s : "";
}

/* Insert item at pos into an arena-held pointer array. */
static int ptr_insert(cxm_arena *a, void ***arr, size_t *n, size_t pos, void *item)
{
    void **grown = cxm_arena_alloc(a, (*n + 1) * sizeof *grown);
    if (!grown)
        return CXM_ENOMEM;
    if (pos)
        memcpy(grown, *arr, pos * sizeof *grown);
    grown[pos] = item;
    if (*n > pos)
        memcpy(grown + pos + 1, *arr + pos, (*n - pos) * sizeof *grown);
    *arr = grown;
    (*n)++;
    return 0;
}

static void ptr_remove(void **arr, size_t *n, size_t pos)
{
    memmove(arr + pos, arr + pos + 1, (*n - pos - 1) * sizeof *arr);
    (*n)--;
}

/* Lower bound of name in an array sorted by the char* at offset `off`. */
static size_t sorted_pos(void *const *arr, size_t n, size_t off, const char *name, bool *found)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const char *k = *(const char *const *)((const char *)arr[mid] + off);
        if (strcmp(str_or_empty(k), name) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = lo < n &&
             strcmp(str_or_empty(*(const char *const *)((const char *)arr[lo] + off)), name) == 0;
    return lo;
}

#define ATTR_POS(p, key, found)                                                                    \
    sorted_pos((void *const *)(p)->attributes, (p)->n_attributes,                                  \
               offsetof(Cxm__V1__Attribute, name), key, found)
#define TRAIT_POS(p, key, found)                                                                   \
    sorted_pos((void *const *)(p)->traits, (p)->n_traits, offsetof(Cxm__V1__Trait, name), key,     \
               found)
#define CONSENT_POS(p, key, found)                                                                 \
    sorted_pos((void *const *)(p)->consents, (p)->n_consents, offsetof(Cxm__V1__Consent, scope),   \
               key, found)

/* ---- profiles and values ---- */

prof_profile *prof_new(cxm_arena *a, const char *customer_id, int64_t now_ms)
{
    prof_profile *p = cxm_arena_alloc(a, sizeof *p);
    Cxm__V1__StandardTraits *st = cxm_arena_alloc(a, sizeof *st);
    if (!p || !st)
        return NULL;
    cxm__v1__profile__init(p);
    cxm__v1__standard_traits__init(st);
    p->customer_id = dup_str(a, customer_id);
    p->standard_traits = st;
    p->created_at_unix_ms = p->updated_at_unix_ms = now_ms;
    return p;
}

prof_profile *prof_unpack(cxm_arena *a, const void *buf, size_t n)
{
    prof_profile *p = cxm__v1__profile__unpack(cxm_arena_protobuf(a), n, buf);
    /* Every linked identity holds its identity (the rules read it without
     * a check); bytes where one does not are no profile of ours. */
    for (size_t i = 0; p && i < p->n_identities; i++)
        if (!p->identities[i]->identity)
            return NULL;
    if (p && !p->standard_traits) { /* an empty submessage is not packed */
        p->standard_traits = cxm_arena_alloc(a, sizeof *p->standard_traits);
        if (!p->standard_traits)
            return NULL;
        cxm__v1__standard_traits__init(p->standard_traits);
    }
    return p;
}

prof_profile *prof_copy(cxm_arena *a, const prof_profile *p)
{
    size_t n = cxm__v1__profile__get_packed_size(p);
    uint8_t *buf = cxm_arena_alloc(a, n ? n : 1);
    if (!buf)
        return NULL;
    cxm__v1__profile__pack(p, buf);
    return prof_unpack(a, buf, n);
}

bool prof_value_equal(const prof_value *x, const prof_value *y)
{
    if (!x || !y)
        return x == y;
    if (x->kind_case != y->kind_case)
        return false;
    switch (x->kind_case) {
    case CXM__V1__VALUE__KIND_STRING_VALUE:
        return strcmp(str_or_empty(x->string_value), str_or_empty(y->string_value)) == 0;
    case CXM__V1__VALUE__KIND_NUMBER_VALUE:
        return x->number_value == y->number_value;
    case CXM__V1__VALUE__KIND_BOOL_VALUE:
        return !x->bool_value == !y->bool_value;
    case CXM__V1__VALUE__KIND_TIMESTAMP_UNIX_MS:
        return x->timestamp_unix_ms == y->timestamp_unix_ms;
    default:
        return true;
    }
}

int prof_value_cmp(const prof_value *x, const prof_value *y, bool *comparable)
{
    *comparable = x && y && x->kind_case == y->kind_case;
    if (!*comparable)
        return 0;
    switch (x->kind_case) {
    case CXM__V1__VALUE__KIND_STRING_VALUE: {
        int c = strcmp(str_or_empty(x->string_value), str_or_empty(y->string_value));
        return (c > 0) - (c < 0);
    }
    case CXM__V1__VALUE__KIND_NUMBER_VALUE:
        return (x->number_value > y->number_value) - (x->number_value < y->number_value);
    case CXM__V1__VALUE__KIND_BOOL_VALUE:
        return !!x->bool_value - !!y->bool_value;
    case CXM__V1__VALUE__KIND_TIMESTAMP_UNIX_MS:
        return (x->timestamp_unix_ms > y->timestamp_unix_ms) -
               (x->timestamp_unix_ms < y->timestamp_unix_ms);
    default:
        *comparable = false;
        return 0;
    }
}

prof_value *prof_value_copy(cxm_arena *a, const prof_value *v)
{
    prof_value *c = cxm_arena_alloc(a, sizeof *c);
    if (!c)
        return NULL;
    *c = *v;
    if (v->kind_case == CXM__V1__VALUE__KIND_STRING_VALUE &&
        !(c->string_value = dup_str(a, v->string_value)))
        return NULL;
    return c;
}

bool prof_name_valid(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > PROF_MAX_NAME)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("_.-", *s))
            return false;
    return true;
}

int prof_value_check(const prof_value *v, const char *field, char *err, size_t errlen)
{
    const char *why = NULL;
    if (!v || v->kind_case == CXM__V1__VALUE__KIND__NOT_SET)
        why = "a value is required (string, number, bool or timestamp)";
    else if (v->kind_case == CXM__V1__VALUE__KIND_STRING_VALUE) {
        size_t n = strlen(str_or_empty(v->string_value));
        if (n > PROF_MAX_VALUE_BYTES)
            why = "a string value is limited to 8 KiB";
        else if (!cxm_svc_utf8_valid(v->string_value ? v->string_value : "", n))
            why = "the string is not valid UTF-8";
    } else if (v->kind_case == CXM__V1__VALUE__KIND_NUMBER_VALUE && !isfinite(v->number_value))
        why = "numbers must be finite (no NaN or infinity)";
    else if (v->kind_case == CXM__V1__VALUE__KIND_TIMESTAMP_UNIX_MS && v->timestamp_unix_ms < 0)
        why = "timestamps are milliseconds since 1970 and cannot be negative";
    if (!why)
        return 0;
    snprintf(err, errlen, "%s: %s", field, why);
    return CXM_EINVAL;
}

/* ---- attributes ---- */

Cxm__V1__Attribute *prof_attr_find(const prof_profile *p, const char *name)
{
    bool found;
    size_t pos = ATTR_POS(p, name, &found);
    return found ? p->attributes[pos] : NULL;
}

static bool numeric(const prof_value *v)
{
    return v->kind_case == CXM__V1__VALUE__KIND_NUMBER_VALUE ||
           v->kind_case == CXM__V1__VALUE__KIND_TIMESTAMP_UNIX_MS;
}

/* The value an update leaves, by strategy; NULL = keep the stored one. */
static const prof_value *combine(cxm_arena *a, Cxm__V1__MergeStrategy s, const prof_value *stored,
                                 int64_t stored_obs, const prof_value *written, int64_t written_obs)
{
    bool comparable;
    switch (s) {
    case CXM__V1__MERGE_STRATEGY__MERGE_STRATEGY_KEEP_FIRST:
        return written_obs < stored_obs ? written : NULL;
    case CXM__V1__MERGE_STRATEGY__MERGE_STRATEGY_KEEP_LATEST:
        return written_obs >= stored_obs ? written : NULL;
    case CXM__V1__MERGE_STRATEGY__MERGE_STRATEGY_MAX:
        return prof_value_cmp(written, stored, &comparable) > 0 || !comparable ? written : NULL;
    case CXM__V1__MERGE_STRATEGY__MERGE_STRATEGY_ADD: {
        if (stored->kind_case != CXM__V1__VALUE__KIND_NUMBER_VALUE)
            return written;
        prof_value *sum = prof_value_copy(a, written);
        if (sum)
            sum->number_value = stored->number_value + written->number_value;
        return sum;
    }
    default:
        return written;
    }
}

static int strategy_fits(Cxm__V1__MergeStrategy s, const prof_value *v, const char *field,
                         char *err, size_t errlen)
{
    if (s == CXM__V1__MERGE_STRATEGY__MERGE_STRATEGY_MAX && !numeric(v)) {
        snprintf(err, errlen, "%s.strategy: MAX needs a number or timestamp", field);
        return CXM_EINVAL;
    }
    if (s == CXM__V1__MERGE_STRATEGY__MERGE_STRATEGY_ADD &&
        v->kind_case != CXM__V1__VALUE__KIND_NUMBER_VALUE) {
        snprintf(err, errlen, "%s.strategy: ADD needs a number", field);
        return CXM_EINVAL;
    }
    return 0;
}

static Cxm__V1__Attribute *new_attr(cxm_arena *a, const char *name)
{
    Cxm__V1__Attribute *at = cxm_arena_alloc(a, sizeof *at);
    if (!at)
        return NULL;
    cxm__v1__attribute__init(at);
    at->name = dup_str(a, name);
    return at->name ? at : NULL;
}

static int attr_unset(prof_profile *p, const char *name, bool *changed)
{
    bool found;
    size_t pos = ATTR_POS(p, name, &found);
    if (found)
        ptr_remove((void **)p->attributes, &p->n_attributes, pos);
    *changed = found;
    return 0;
}

int prof_attr_apply(cxm_arena *a, prof_profile *p, const Cxm__V1__AttributeUpdate *u,
                    const char *field, const char *source, int64_t now_ms, bool *changed, char *err,
                    size_t errlen)
{
    *changed = false;
    if (u->unset)
        return attr_unset(p, u->name, changed);
    bool found;
    size_t pos = ATTR_POS(p, u->name, &found);
    Cxm__V1__Attribute *at = found ? p->attributes[pos] : NULL;
    Cxm__V1__MergeStrategy s = u->strategy ? u->strategy
                               : at        ? at->strategy
                                           : CXM__V1__MERGE_STRATEGY__MERGE_STRATEGY_OVERWRITE;
    int rc = strategy_fits(s, u->value, field, err, errlen);
    if (rc != 0)
        return rc;
    int64_t obs = u->observed_at_unix_ms ? u->observed_at_unix_ms : now_ms;
    const prof_value *v = u->value;
    if (at) {
        v = combine(a, s, at->value, at->observed_at_unix_ms, u->value, obs);
        if (!v) { /* the strategy keeps the stored value; it may still change */
            *changed = at->strategy != s;
            at->strategy = s;
            return 0;
        }
    } else {
        if (p->n_attributes >= PROF_MAX_ATTRIBUTES) {
            snprintf(err, errlen, "%s: the profile already holds %d attributes", field,
                     PROF_MAX_ATTRIBUTES);
            return CXM_ESTALE;
        }
        if (!(at = new_attr(a, u->name)) ||
            ptr_insert(a, (void ***)&p->attributes, &p->n_attributes, pos, at) != 0)
            return CXM_ENOMEM;
    }
    *changed = !at->value || !prof_value_equal(at->value, v) || at->strategy != s;
    if (!(at->value = prof_value_copy(a, v)))
        return CXM_ENOMEM;
    at->strategy = s;
    at->observed_at_unix_ms = obs;
    at->updated_at_unix_ms = now_ms;
    at->source = dup_str(a, source);
    return 0;
}

/* ---- traits ---- */

int prof_trait_set(cxm_arena *a, prof_profile *p, const char *name, const prof_value *v,
                   const char *source, int64_t observed_ms, int64_t now_ms, bool *applied)
{
    bool found;
    size_t pos = TRAIT_POS(p, name, &found);
    Cxm__V1__Trait *t = found ? p->traits[pos] : NULL;
    *applied = false;
    if (t && observed_ms < t->observed_at_unix_ms)
        return 0;
    if (!t) {
        if (p->n_traits >= PROF_MAX_TRAITS)
            return CXM_ESTALE;
        t = cxm_arena_alloc(a, sizeof *t);
        if (!t)
            return CXM_ENOMEM;
        cxm__v1__trait__init(t);
        t->name = dup_str(a, name);
        t->source = dup_str(a, source);
        if (ptr_insert(a, (void ***)&p->traits, &p->n_traits, pos, t) != 0)
            return CXM_ENOMEM;
    }
    if (!(t->value = prof_value_copy(a, v)))
        return CXM_ENOMEM;
    t->observed_at_unix_ms = observed_ms;
    t->updated_at_unix_ms = now_ms;
    *applied = true;
    return 0;
}

bool prof_trait_unset(prof_profile *p, const char *name)
{
    bool found;
    size_t pos = TRAIT_POS(p, name, &found);
    if (found)
        ptr_remove((void **)p->traits, &p->n_traits, pos);
    return found;
}

static Cxm__V1__NpsCategory nps_category(int score)
{
    return score >= 9   ? CXM__V1__NPS_CATEGORY__NPS_CATEGORY_PROMOTER
           : score >= 7 ? CXM__V1__NPS_CATEGORY__NPS_CATEGORY_PASSIVE
                        : CXM__V1__NPS_CATEGORY__NPS_CATEGORY_DETRACTOR;
}

static void copy_channel_mix(cxm_arena *a, Cxm__V1__StandardTraits *st,
                             Cxm__V1__ChannelShare *const *mix, size_t n)
{
    Cxm__V1__ChannelShare **arr = cxm_arena_alloc(a, n * sizeof *arr);
    Cxm__V1__ChannelShare *items = cxm_arena_alloc(a, n * sizeof *items);
    if (!arr || !items)
        return;
    for (size_t i = 0; i < n; i++) {
        items[i] = *mix[i];
        arr[i] = &items[i];
    }
    st->channel_mix = arr;
    st->n_channel_mix = n;
}

void prof_standard_apply(cxm_arena *a, prof_profile *p, const Cxm__V1__StandardTraitsUpdate *u,
                         int64_t observed_ms)
{
    Cxm__V1__StandardTraits *st = p->standard_traits;
    if (u->journey_stage) {
        if (st->journey_stage != u->journey_stage)
            st->journey_stage_since_unix_ms =
                u->journey_stage_since_unix_ms ? u->journey_stage_since_unix_ms : observed_ms;
        st->journey_stage = u->journey_stage;
    }
    if (u->first_seen_unix_ms &&
        (!st->first_seen_unix_ms || u->first_seen_unix_ms < st->first_seen_unix_ms))
        st->first_seen_unix_ms = u->first_seen_unix_ms;
    if (u->last_seen_unix_ms > st->last_seen_unix_ms)
        st->last_seen_unix_ms = u->last_seen_unix_ms;
    if (u->lifetime_value_update_case)
        st->lifetime_value = u->lifetime_value;
    /* Feedback's answers: a later answer replaces an earlier one, never the
     * reverse, so a late or redelivered response cannot roll a trait back. */
    if (u->last_nps_update_case && observed_ms >= st->last_nps_at_unix_ms) {
        st->last_nps = u->last_nps;
        st->last_nps_category =
            u->last_nps_category ? u->last_nps_category : nps_category(u->last_nps);
        st->last_nps_at_unix_ms = observed_ms;
    }
    if (u->last_csat_update_case && observed_ms >= st->last_csat_at_unix_ms) {
        st->last_csat = u->last_csat;
        st->last_csat_at_unix_ms = observed_ms;
    }
    if (u->last_ces_update_case && observed_ms >= st->last_ces_at_unix_ms) {
        st->last_ces = u->last_ces;
        st->last_ces_at_unix_ms = observed_ms;
    }
    if (u->open_follow_ups_update_case)
        st->open_follow_ups = u->open_follow_ups;
    if (u->n_channel_mix)
        copy_channel_mix(a, st, u->channel_mix, u->n_channel_mix);
}

/* ---- consent ---- */

Cxm__V1__Consent *prof_consent_set(cxm_arena *a, prof_profile *p, const Cxm__V1__Consent *c,
                                   bool *applied)
{
    bool found;
    size_t pos = CONSENT_POS(p, c->scope, &found);
    *applied = false;
    if (found && c->decided_at_unix_ms < p->consents[pos]->decided_at_unix_ms)
        return p->consents[pos];
    Cxm__V1__Consent *copy = cxm_arena_alloc(a, sizeof *copy);
    if (!copy)
        return NULL;
    *copy = *c;
    copy->scope = dup_str(a, c->scope);
    copy->source = dup_str(a, c->source);
    copy->policy_version = dup_str(a, c->policy_version);
    if (found)
        p->consents[pos] = copy;
    else if (ptr_insert(a, (void ***)&p->consents, &p->n_consents, pos, copy) != 0)
        return NULL;
    *applied = true;
    return copy;
}

/* ---- identities ---- */

bool prof_identity_equal(const Cxm__V1__Identity *x, const Cxm__V1__Identity *y)
{
    return x->type == y->type &&
           strcmp(str_or_empty(x->custom_type), str_or_empty(y->custom_type)) == 0 &&
           strcmp(str_or_empty(x->value), str_or_empty(y->value)) == 0;
}

static int identity_index(const prof_profile *p, const Cxm__V1__Identity *id)
{
    for (size_t i = 0; i < p->n_identities; i++)
        if (prof_identity_equal(p->identities[i]->identity, id))
            return (int)i;
    return -1;
}

bool prof_has_identity(const prof_profile *p, const Cxm__V1__Identity *id)
{
    return identity_index(p, id) >= 0;
}

int prof_identity_add(cxm_arena *a, prof_profile *p, const Cxm__V1__Identity *id,
                      const char *source, const char *merge_id, int64_t now_ms)
{
    if (prof_has_identity(p, id))
        return 0;
    if (p->n_identities >= PROF_MAX_IDENTITIES)
        return CXM_ESTALE;
    Cxm__V1__LinkedIdentity *li = cxm_arena_alloc(a, sizeof *li);
    Cxm__V1__Identity *copy = cxm_arena_alloc(a, sizeof *copy);
    if (!li || !copy)
        return CXM_ENOMEM;
    cxm__v1__linked_identity__init(li);
    cxm__v1__identity__init(copy);
    copy->type = id->type;
    copy->custom_type = dup_str(a, id->custom_type);
    copy->value = dup_str(a, id->value);
    li->identity = copy;
    li->linked_at_unix_ms = now_ms;
    li->source = dup_str(a, source);
    li->merge_id = dup_str(a, merge_id);
    return ptr_insert(a, (void ***)&p->identities, &p->n_identities, p->n_identities, li);
}

void prof_identity_remove(prof_profile *p, const Cxm__V1__Identity *id)
{
    int i = identity_index(p, id);
    if (i >= 0)
        ptr_remove((void **)p->identities, &p->n_identities, (size_t)i);
}

/* ---- merge ---- */

static const Cxm__V1__Identity *identity_of_type(const prof_profile *p,
                                                 const Cxm__V1__Identity *like)
{
    for (size_t i = 0; i < p->n_identities; i++) {
        const Cxm__V1__Identity *id = p->identities[i]->identity;
        if (id->type == like->type &&
            strcmp(str_or_empty(id->custom_type), str_or_empty(like->custom_type)) == 0)
            return id;
    }
    return NULL;
}

static bool type_unique(const prof_unique_types *u, Cxm__V1__IdentityType t)
{
    for (size_t i = 0; u && i < u->n; i++)
        if (u->types[i] == t)
            return true;
    return false;
}

int prof_unique_check(const prof_profile *target, const Cxm__V1__Identity *id,
                      const prof_unique_types *unique, char *err, size_t errlen)
{
    if (!type_unique(unique, id->type))
        return 0;
    const Cxm__V1__Identity *tid = identity_of_type(target, id);
    if (!tid || prof_identity_equal(tid, id))
        return 0;
    const ProtobufCEnumValue *ev =
        protobuf_c_enum_descriptor_get_value(&cxm__v1__identity_type__descriptor, id->type);
    snprintf(err, errlen,
             "the merge would give customer %s two %s identities (\"%s\" and \"%s\"), and "
             "that type is unique per customer",
             target->customer_id, ev ? ev->name : "?", tid->value, id->value);
    return CXM_ESTALE;
}

int prof_merge_check(const prof_profile *target, const prof_profile *source,
                     const prof_unique_types *unique, char *err, size_t errlen)
{
    for (size_t i = 0; i < source->n_identities; i++) {
        int rc = prof_unique_check(target, source->identities[i]->identity, unique, err, errlen);
        if (rc != 0)
            return rc;
    }
    if (target->n_identities + source->n_identities > PROF_MAX_IDENTITIES) {
        snprintf(err, errlen, "the merged profile would hold more than %d identities",
                 PROF_MAX_IDENTITIES);
        return CXM_ESTALE;
    }
    return 0;
}

static int merge_attributes(cxm_arena *a, prof_profile *t, const prof_profile *s, int64_t now_ms,
                            char *err, size_t errlen)
{
    for (size_t i = 0; i < s->n_attributes; i++) {
        const Cxm__V1__Attribute *sa = s->attributes[i];
        const Cxm__V1__Attribute *ta = prof_attr_find(t, sa->name);
        Cxm__V1__MergeStrategy strat = ta ? ta->strategy : sa->strategy;
        /* OVERWRITE in a merge keeps the target's value when both are set. */
        if (ta &&
            (strat == CXM__V1__MERGE_STRATEGY__MERGE_STRATEGY_OVERWRITE ||
             (strat != CXM__V1__MERGE_STRATEGY__MERGE_STRATEGY_KEEP_LATEST &&
              strat != CXM__V1__MERGE_STRATEGY__MERGE_STRATEGY_KEEP_FIRST && !numeric(sa->value))))
            continue;
        Cxm__V1__AttributeUpdate u = CXM__V1__ATTRIBUTE_UPDATE__INIT;
        u.name = sa->name;
        u.value = sa->value;
        u.strategy = strat;
        u.observed_at_unix_ms = sa->observed_at_unix_ms;
        bool changed;
        char field[48]; /* the attribute's place in the merged-away profile */
        snprintf(field, sizeof field, "source.attributes[%zu]", i);
        int rc = prof_attr_apply(a, t, &u, field, sa->source, now_ms, &changed, err, errlen);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int merge_traits(cxm_arena *a, prof_profile *t, const prof_profile *s, int64_t now_ms)
{
    for (size_t i = 0; i < s->n_traits; i++) {
        const Cxm__V1__Trait *st = s->traits[i];
        bool applied;
        int rc = prof_trait_set(a, t, st->name, st->value, st->source, st->observed_at_unix_ms,
                                now_ms, &applied);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static void merge_standard(prof_profile *t, const prof_profile *s)
{
    Cxm__V1__StandardTraits *ts = t->standard_traits;
    const Cxm__V1__StandardTraits *ss = s->standard_traits;
    if (!ss)
        return;
    if (ss->journey_stage > ts->journey_stage) {
        ts->journey_stage = ss->journey_stage;
        ts->journey_stage_since_unix_ms = ss->journey_stage_since_unix_ms;
    }
    if (ss->first_seen_unix_ms &&
        (!ts->first_seen_unix_ms || ss->first_seen_unix_ms < ts->first_seen_unix_ms))
        ts->first_seen_unix_ms = ss->first_seen_unix_ms;
    if (ss->last_seen_unix_ms > ts->last_seen_unix_ms)
        ts->last_seen_unix_ms = ss->last_seen_unix_ms;
    ts->lifetime_value += ss->lifetime_value;
    if (ss->last_nps_at_unix_ms > ts->last_nps_at_unix_ms) {
        ts->last_nps = ss->last_nps;
        ts->last_nps_category = ss->last_nps_category;
        ts->last_nps_at_unix_ms = ss->last_nps_at_unix_ms;
    }
    if (ss->last_csat_at_unix_ms > ts->last_csat_at_unix_ms) {
        ts->last_csat = ss->last_csat;
        ts->last_csat_at_unix_ms = ss->last_csat_at_unix_ms;
    }
    if (ss->last_ces_at_unix_ms > ts->last_ces_at_unix_ms) {
        ts->last_ces = ss->last_ces;
        ts->last_ces_at_unix_ms = ss->last_ces_at_unix_ms;
    }
    ts->open_follow_ups += ss->open_follow_ups;
}

int prof_merge(cxm_arena *a, prof_profile *target, const prof_profile *source, const char *merge_id,
               int64_t now_ms, char *err, size_t errlen)
{
    for (size_t i = 0; i < source->n_identities; i++) {
        const Cxm__V1__LinkedIdentity *li = source->identities[i];
        if (li->identity->type == CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_CUSTOMER_ID)
            continue; /* the source's own id redirects instead */
        int rc = prof_identity_add(a, target, li->identity, li->source, merge_id, now_ms);
        if (rc != 0)
            return rc;
    }
    int rc = merge_attributes(a, target, source, now_ms, err, errlen);
    if (rc == 0)
        rc = merge_traits(a, target, source, now_ms);
    for (size_t i = 0; rc == 0 && i < source->n_consents; i++) {
        bool applied;
        if (!prof_consent_set(a, target, source->consents[i], &applied))
            rc = CXM_ENOMEM;
    }
    if (rc == 0)
        merge_standard(target, source);
    return rc;
}

/* ---- unmerge: three-way reconciliation ---- */

/* A sorted, named element list (attributes, traits, consents) seen through
 * accessors, so one reconciliation serves all three. */
typedef struct named_list {
    void **items;
    size_t n;
    size_t name_off;
    bool (*same)(const void *x, const void *y);
} named_list;

static const void *list_find(const named_list *l, const char *name)
{
    bool found;
    size_t pos = sorted_pos(l->items, l->n, l->name_off, name, &found);
    return found ? l->items[pos] : NULL;
}

static const char *item_name(const named_list *l, const void *item)
{
    return str_or_empty(*(const char *const *)((const char *)item + l->name_off));
}

/* Per name over the union of current and before: keep current where it
 * changed since the merge (differs from after), else take before. */
static int reconcile(cxm_arena *a, const named_list *cur, const named_list *before,
                     const named_list *after, void ***out, size_t *nout)
{
    *out = NULL;
    *nout = 0;
    const named_list *lists[2] = {cur, before};
    for (int li = 0; li < 2; li++) {
        for (size_t i = 0; i < lists[li]->n; i++) {
            const char *name = item_name(lists[li], lists[li]->items[i]);
            bool seen;
            sorted_pos(*out, *nout, cur->name_off, name, &seen);
            if (seen)
                continue;
            const void *c = list_find(cur, name), *b = list_find(before, name),
                       *af = list_find(after, name);
            bool untouched = c && af ? cur->same(c, af) : c == NULL && af == NULL;
            const void *keep = untouched ? b : c;
            if (!keep)
                continue;
            bool found;
            size_t pos = sorted_pos(*out, *nout, cur->name_off, name, &found);
            if (ptr_insert(a, out, nout, pos, (void *)keep) != 0)
                return CXM_ENOMEM;
        }
    }
    return 0;
}

static bool attr_same(const void *x, const void *y)
{
    const Cxm__V1__Attribute *a = x, *b = y;
    return prof_value_equal(a->value, b->value) && a->strategy == b->strategy &&
           a->observed_at_unix_ms == b->observed_at_unix_ms;
}

static bool trait_same(const void *x, const void *y)
{
    const Cxm__V1__Trait *a = x, *b = y;
    return prof_value_equal(a->value, b->value) && a->observed_at_unix_ms == b->observed_at_unix_ms;
}

static bool consent_same(const void *x, const void *y)
{
    const Cxm__V1__Consent *a = x, *b = y;
    return a->state == b->state && a->decided_at_unix_ms == b->decided_at_unix_ms;
}

#define NAMED(p, field, type, key, fn)                                                             \
    ((named_list){(void **)(p)->field, (p)->n_##field, offsetof(type, key), fn})

static bool standard_same(const Cxm__V1__StandardTraits *x, const Cxm__V1__StandardTraits *y)
{
    uint8_t bx[512], by[512];
    size_t nx = cxm__v1__standard_traits__get_packed_size(x);
    size_t ny = cxm__v1__standard_traits__get_packed_size(y);
    if (nx != ny || nx > sizeof bx)
        return false;
    cxm__v1__standard_traits__pack(x, bx);
    cxm__v1__standard_traits__pack(y, by);
    return memcmp(bx, by, nx) == 0;
}

prof_profile *prof_unmerge(cxm_arena *a, const prof_profile *current, const prof_profile *before,
                           const prof_profile *after, const char *merge_id)
{
    prof_profile *r = prof_copy(a, current);
    if (!r)
        return NULL;
    named_list ca = NAMED(current, attributes, Cxm__V1__Attribute, name, attr_same),
               ba = NAMED(before, attributes, Cxm__V1__Attribute, name, attr_same),
               aa = NAMED(after, attributes, Cxm__V1__Attribute, name, attr_same);
    named_list ct = NAMED(current, traits, Cxm__V1__Trait, name, trait_same),
               bt = NAMED(before, traits, Cxm__V1__Trait, name, trait_same),
               at = NAMED(after, traits, Cxm__V1__Trait, name, trait_same);
    named_list cc = NAMED(current, consents, Cxm__V1__Consent, scope, consent_same),
               bc = NAMED(before, consents, Cxm__V1__Consent, scope, consent_same),
               ac = NAMED(after, consents, Cxm__V1__Consent, scope, consent_same);
    if (reconcile(a, &ca, &ba, &aa, (void ***)&r->attributes, &r->n_attributes) != 0 ||
        reconcile(a, &ct, &bt, &at, (void ***)&r->traits, &r->n_traits) != 0 ||
        reconcile(a, &cc, &bc, &ac, (void ***)&r->consents, &r->n_consents) != 0)
        return NULL;
    /* The shared pointers now point into current/before; copy to own them. */
    r = prof_copy(a, r);
    if (!r)
        return NULL;
    if (standard_same(current->standard_traits, after->standard_traits))
        *r->standard_traits = *prof_copy(a, before)->standard_traits;
    for (size_t i = r->n_identities; i-- > 0;)
        if (strcmp(str_or_empty(r->identities[i]->merge_id), merge_id) == 0)
            ptr_remove((void **)r->identities, &r->n_identities, i);
    return r;
}

/* ---- what a change did ---- */

Cxm__V1__Trait **prof_traits_keep(cxm_arena *a, const prof_profile *p, size_t *n)
{
    *n = 0;
    if (!p->n_traits)
        return NULL;
    Cxm__V1__Trait **arr = cxm_arena_alloc(a, p->n_traits * sizeof *arr);
    Cxm__V1__Trait *copies = cxm_arena_alloc(a, p->n_traits * sizeof *copies);
    if (!arr || !copies)
        return NULL;
    for (size_t i = 0; i < p->n_traits; i++) {
        copies[i] = *p->traits[i];
        arr[i] = &copies[i];
    }
    *n = p->n_traits;
    return arr;
}

/* Walk two name-sorted lists together: cmp < 0 is a name only in the
 * first, > 0 only in the second, 0 in both. */
static int name_cmp(const char *x, const char *y)
{
    return !x ? 1 : !y ? -1 : strcmp(x, y);
}

int prof_traits_diff(cxm_arena *a, Cxm__V1__Trait *const *before, size_t nbefore,
                     const prof_profile *p, Cxm__V1__TraitsChanged *out)
{
    out->traits = cxm_arena_alloc(a, (p->n_traits + 1) * sizeof *out->traits);
    out->removed_trait_names = cxm_arena_alloc(a, (nbefore + 1) * sizeof(char *));
    if (!out->traits || !out->removed_trait_names)
        return CXM_ENOMEM;
    out->n_traits = out->n_removed_trait_names = 0;
    size_t i = 0, k = 0;
    while (i < nbefore || k < p->n_traits) {
        const Cxm__V1__Trait *b = i < nbefore ? before[i] : NULL;
        Cxm__V1__Trait *now = k < p->n_traits ? p->traits[k] : NULL;
        int c = name_cmp(b ? b->name : NULL, now ? now->name : NULL);
        if (c < 0)
            out->removed_trait_names[out->n_removed_trait_names++] = b->name;
        else if (c > 0 || !prof_value_equal(b->value, now->value))
            out->traits[out->n_traits++] = now;
        i += c <= 0;
        k += c >= 0;
    }
    return 0;
}

int prof_segments_diff(cxm_arena *a, char *const *before, size_t nbefore, const prof_profile *p,
                       Cxm__V1__SegmentMembershipChanged *out)
{
    out->entered_segment_ids = cxm_arena_alloc(a, (p->n_segment_ids + 1) * sizeof(char *));
    out->left_segment_ids = cxm_arena_alloc(a, (nbefore + 1) * sizeof(char *));
    if (!out->entered_segment_ids || !out->left_segment_ids)
        return CXM_ENOMEM;
    out->n_entered_segment_ids = out->n_left_segment_ids = 0;
    size_t i = 0, k = 0;
    while (i < nbefore || k < p->n_segment_ids) {
        char *b = i < nbefore ? before[i] : NULL;
        char *now = k < p->n_segment_ids ? p->segment_ids[k] : NULL;
        int c = name_cmp(b, now);
        if (c < 0)
            out->left_segment_ids[out->n_left_segment_ids++] = b;
        else if (c > 0)
            out->entered_segment_ids[out->n_entered_segment_ids++] = now;
        i += c <= 0;
        k += c >= 0;
    }
    return 0;
}

/* ---- conditions ---- */

/* The value a field condition reads: an attribute, a generic trait, or a
 * well-known trait by its field name. */
static bool standard_value(const Cxm__V1__StandardTraits *st, const char *name, prof_value *out)
{
    cxm__v1__value__init(out);
    const ProtobufCFieldDescriptor *f = st ? protobuf_c_message_descriptor_get_field_by_name(
                                                 &cxm__v1__standard_traits__descriptor, name)
                                           : NULL;
    if (!f || f->label == PROTOBUF_C_LABEL_REPEATED)
        return false;
    const char *member = (const char *)st + f->offset;
    double num = 0;
    bool is_time = strstr(name, "unix_ms") != NULL;
    switch (f->type) {
    case PROTOBUF_C_TYPE_ENUM:
    case PROTOBUF_C_TYPE_INT32:
        num = *(const int32_t *)member;
        break;
    case PROTOBUF_C_TYPE_UINT32:
        num = *(const uint32_t *)member;
        break;
    case PROTOBUF_C_TYPE_INT64:
        num = (double)*(const int64_t *)member;
        break;
    case PROTOBUF_C_TYPE_DOUBLE:
        num = *(const double *)member;
        break;
    default:
        return false;
    }
    if (num == 0)
        return false; /* zero means never written */
    if (is_time) {
        out->kind_case = CXM__V1__VALUE__KIND_TIMESTAMP_UNIX_MS;
        out->timestamp_unix_ms = (int64_t)num;
    } else {
        out->kind_case = CXM__V1__VALUE__KIND_NUMBER_VALUE;
        out->number_value = num;
    }
    return true;
}

static const prof_value *field_value(const Cxm__V1__FieldCondition *f, const prof_profile *p,
                                     prof_value *scratch)
{
    if (f->kind == CXM__V1__FIELD_KIND__FIELD_KIND_ATTRIBUTE) {
        const Cxm__V1__Attribute *at = prof_attr_find(p, f->name);
        return at ? at->value : NULL;
    }
    bool found;
    size_t pos = TRAIT_POS(p, f->name, &found);
    if (found)
        return p->traits[pos]->value;
    return standard_value(p->standard_traits, f->name, scratch) ? scratch : NULL;
}

static bool contains_ci(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (; *hay; hay++)
        if (strncasecmp(hay, needle, n) == 0)
            return true;
    return n == 0;
}

bool prof_field_eval(const Cxm__V1__FieldCondition *f, const prof_profile *p)
{
    prof_value scratch;
    const prof_value *v = field_value(f, p, &scratch);
    if (f->op == CXM__V1__COMPARE_OP__COMPARE_OP_EXISTS)
        return v != NULL;
    if (f->op == CXM__V1__COMPARE_OP__COMPARE_OP_NOT_EXISTS)
        return v == NULL;
    if (!v)
        return false;
    bool comparable;
    int c = prof_value_cmp(v, f->value, &comparable);
    bool strings = comparable && v->kind_case == CXM__V1__VALUE__KIND_STRING_VALUE;
    switch (f->op) {
    case CXM__V1__COMPARE_OP__COMPARE_OP_EQ:
        return comparable && c == 0;
    case CXM__V1__COMPARE_OP__COMPARE_OP_NE:
        return !comparable || c != 0;
    case CXM__V1__COMPARE_OP__COMPARE_OP_LT:
        return comparable && c < 0;
    case CXM__V1__COMPARE_OP__COMPARE_OP_LE:
        return comparable && c <= 0;
    case CXM__V1__COMPARE_OP__COMPARE_OP_GT:
        return comparable && c > 0;
    case CXM__V1__COMPARE_OP__COMPARE_OP_GE:
        return comparable && c >= 0;
    case CXM__V1__COMPARE_OP__COMPARE_OP_PREFIX:
        return strings && strncmp(v->string_value, f->value->string_value,
                                  strlen(f->value->string_value)) == 0;
    case CXM__V1__COMPARE_OP__COMPARE_OP_CONTAINS:
        return strings && contains_ci(v->string_value, f->value->string_value);
    default:
        return false;
    }
}

int prof_field_check(const Cxm__V1__FieldCondition *f, const char *field, char *err, size_t errlen)
{
    if (f->kind != CXM__V1__FIELD_KIND__FIELD_KIND_ATTRIBUTE &&
        f->kind != CXM__V1__FIELD_KIND__FIELD_KIND_TRAIT) {
        snprintf(err, errlen, "%s.kind: must be FIELD_KIND_ATTRIBUTE or FIELD_KIND_TRAIT", field);
        return CXM_EINVAL;
    }
    if (!prof_name_valid(f->name)) {
        snprintf(err, errlen, "%s.name: must be [A-Za-z0-9_.-], 1 to 128 bytes", field);
        return CXM_EINVAL;
    }
    if (f->op == CXM__V1__COMPARE_OP__COMPARE_OP_UNSPECIFIED ||
        f->op > CXM__V1__COMPARE_OP__COMPARE_OP_CONTAINS) {
        snprintf(err, errlen, "%s.op: a comparison is required (EQ, NE, LT, ...)", field);
        return CXM_EINVAL;
    }
    if (f->op == CXM__V1__COMPARE_OP__COMPARE_OP_EXISTS ||
        f->op == CXM__V1__COMPARE_OP__COMPARE_OP_NOT_EXISTS)
        return 0;
    char vfield[160];
    snprintf(vfield, sizeof vfield, "%s.value", field);
    int rc = prof_value_check(f->value, vfield, err, errlen);
    if (rc == 0 &&
        (f->op == CXM__V1__COMPARE_OP__COMPARE_OP_PREFIX ||
         f->op == CXM__V1__COMPARE_OP__COMPARE_OP_CONTAINS) &&
        f->value->kind_case != CXM__V1__VALUE__KIND_STRING_VALUE) {
        snprintf(err, errlen, "%s: PREFIX and CONTAINS compare strings", vfield);
        return CXM_EINVAL;
    }
    return rc;
}

static int check_node(const Cxm__V1__SegmentCondition *c, int depth, int *nodes, char *err,
                      size_t errlen)
{
    if (!c || c->node_case == CXM__V1__SEGMENT_CONDITION__NODE__NOT_SET) {
        snprintf(err, errlen, "segment.condition: a node has nothing set");
        return CXM_EINVAL;
    }
    if (++*nodes > 64 || depth > 8) {
        snprintf(err, errlen, "segment.condition: at most 64 nodes nested at most 8 deep");
        return CXM_EINVAL;
    }
    switch (c->node_case) {
    case CXM__V1__SEGMENT_CONDITION__NODE_ALL:
    case CXM__V1__SEGMENT_CONDITION__NODE_ANY: {
        const Cxm__V1__SegmentCondition__And *list = c->all; /* And and Or share a layout */
        if (list->n_conditions == 0 || list->n_conditions > 32) {
            snprintf(err, errlen, "segment.condition: an all/any node needs 1 to 32 children");
            return CXM_EINVAL;
        }
        for (size_t i = 0; i < list->n_conditions; i++) {
            int rc = check_node(list->conditions[i], depth + 1, nodes, err, errlen);
            if (rc != 0)
                return rc;
        }
        return 0;
    }
    case CXM__V1__SEGMENT_CONDITION__NODE_NEGATE:
        return check_node(c->negate, depth + 1, nodes, err, errlen);
    case CXM__V1__SEGMENT_CONDITION__NODE_FIELD:
        return prof_field_check(c->field, "segment.condition.field", err, errlen);
    case CXM__V1__SEGMENT_CONDITION__NODE_CONSENT:
        if (!c->consent->scope || !*c->consent->scope || c->consent->n_states == 0) {
            snprintf(err, errlen, "segment.condition.consent: a scope and at least one state");
            return CXM_EINVAL;
        }
        return 0;
    case CXM__V1__SEGMENT_CONDITION__NODE_HAS_IDENTITY:
        if (!c->has_identity->type) {
            snprintf(err, errlen, "segment.condition.has_identity.type: required");
            return CXM_EINVAL;
        }
        return 0;
    default:
        snprintf(err, errlen, "segment.condition: unknown node");
        return CXM_EINVAL;
    }
}

int prof_condition_check(const Cxm__V1__SegmentCondition *c, char *err, size_t errlen)
{
    int nodes = 0;
    return check_node(c, 1, &nodes, err, errlen);
}

static bool consent_is(const Cxm__V1__SegmentCondition__ConsentIs *ci, const prof_profile *p)
{
    bool found;
    size_t pos = CONSENT_POS(p, ci->scope, &found);
    for (size_t i = 0; found && i < ci->n_states; i++)
        if (p->consents[pos]->state == ci->states[i])
            return true;
    return false;
}

static bool has_identity_type(const Cxm__V1__SegmentCondition__HasIdentity *h,
                              const prof_profile *p)
{
    Cxm__V1__Identity like = CXM__V1__IDENTITY__INIT;
    like.type = h->type;
    like.custom_type = h->custom_type;
    return identity_of_type(p, &like) != NULL;
}

bool prof_condition_eval(const Cxm__V1__SegmentCondition *c, const prof_profile *p)
{
    switch (c->node_case) {
    case CXM__V1__SEGMENT_CONDITION__NODE_ALL:
        for (size_t i = 0; i < c->all->n_conditions; i++)
            if (!prof_condition_eval(c->all->conditions[i], p))
                return false;
        return true;
    case CXM__V1__SEGMENT_CONDITION__NODE_ANY:
        for (size_t i = 0; i < c->any->n_conditions; i++)
            if (prof_condition_eval(c->any->conditions[i], p))
                return true;
        return false;
    case CXM__V1__SEGMENT_CONDITION__NODE_NEGATE:
        return !prof_condition_eval(c->negate, p);
    case CXM__V1__SEGMENT_CONDITION__NODE_FIELD:
        return prof_field_eval(c->field, p);
    case CXM__V1__SEGMENT_CONDITION__NODE_CONSENT:
        return consent_is(c->consent, p);
    case CXM__V1__SEGMENT_CONDITION__NODE_HAS_IDENTITY:
        return has_identity_type(c->has_identity, p);
    default:
        return false;
    }
}
