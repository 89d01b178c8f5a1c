/*
 * jrn_pipe.c - the journey pipeline thread and the stage recomputation
 * (see jrn_pipe.h).
 */
#include "jrn_pipe.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "cxm/err.h"
#include "cxm/hash.h"
#include "cxm/log.h"

#define PIPE_NICE 10             /* the pipeline thread's nice value: below ingest */
#define PIPE_INGEST_QUIET_MS 100 /* ingest counts as busy this long after a commit */
#define PIPE_DEBT_MAX 2000000    /* pending events past which the pipeline stops yielding */
#define PIPE_PAUSE_MAX_MS 500    /* longest pause between two rounds */
#define RECOMPUTE_BATCH 500      /* roots per write transaction of a rule change */
#define SWEEP_MAX 4000           /* dedup entries deleted per round */
#define MAX_TRANSITIONS 50       /* kept in the state row */
#define POLL_MS 250
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000

struct jrn_pipe {
    jrn_ctx *ctx;
    cxm_resolver *resolver;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop, woken;
    atomic_uint_fast64_t dropped;
    atomic_int_fast64_t ingest_at; /* monotonic ms of the latest ingest commit */
    cxm_arena a;                   /* a round's events and resolutions */
    cxm_arena ta;                  /* a write transaction's scratch (reset on each run) */
    /* the round in the write transaction */
    jdb_pending *batch;
    size_t n;
    cxm_resolve_item *items; /* unique items */
    size_t *item_of;         /* batch index -> items index */
    size_t nitems;
    size_t ndropped;
    /* the background recomputation after a rule change */
    bool recomputing;
    char rc_after[CXM_KEY_MAX + 1];
    char **rc_roots;
    size_t rc_n;
    bool outage; /* the profile service is away (logged once) */
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- rules ---- */

int jrn_rules_install(jrn_ctx *ctx, Cxm__V1__StageRule *const *rules, size_t n, uint64_t version)
{
    jrules *compiled = jrules_compile(rules, n, version);
    if (!compiled)
        return CXM_ENOMEM;
    bool props = false;
    for (size_t i = 0; i < n; i++)
        props = props || rules[i]->n_conditions;
    pthread_rwlock_wrlock(&ctx->rules_lock);
    jrules *old = ctx->rules;
    ctx->rules = compiled;
    ctx->rules_need_props = props;
    pthread_rwlock_unlock(&ctx->rules_lock);
    jrules_free(old);
    return 0;
}

int jrn_recompute_progress(cxm_txn *t, jrn_ctx *ctx, uint64_t *version, uint64_t *done,
                           uint64_t *total)
{
    int rc = jdb_meta_get(t, ctx->db, "rc_version", version);
    if (rc == 0)
        rc = jdb_meta_get(t, ctx->db, "rc_done", done);
    return rc ? rc : jdb_meta_get(t, ctx->db, "rc_total", total);
}

/* Compile the stored rule set (or the defaults) when its version differs
 * from the one in force, and start recomputing stored stages under it. */
static int reload_rules(jrn_pipe *p)
{
    jrn_ctx *ctx = p->ctx;
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    cxm_txn *t;
    int rc = cxm_store_read_begin(jdb_store(ctx->db), &t);
    if (rc != 0)
        return rc;
    Cxm__V1__GetStageRulesResponse *stored = NULL;
    uint64_t rc_version = 0, rc_done = 0, rc_total = 0;
    rc = jdb_rules_get(t, ctx->db, &a, &stored);
    if (rc == CXM_ENOTFOUND)
        rc = 0;
    if (rc == 0)
        rc = jrn_recompute_progress(t, ctx, &rc_version, &rc_done, &rc_total);
    cxm_store_read_end(t);
    uint64_t version = stored ? stored->version : 0;
    pthread_rwlock_rdlock(&ctx->rules_lock);
    bool same = ctx->rules && jrules_version(ctx->rules) == version;
    pthread_rwlock_unlock(&ctx->rules_lock);
    bool replaced = false;
    if (rc == 0 && !same) {
        size_t n = 0;
        Cxm__V1__StageRule *const *rules = stored ? stored->rules : jrules_defaults(&n);
        if (stored)
            n = stored->n_rules;
        rc = jrn_rules_install(ctx, rules, n, version);
        replaced = rc == 0;
    }
    /* A version whose recomputation is not complete (new, or interrupted
     * by a restart) is walked from the first root; so is a new version
     * arriving mid-walk, or the roots already walked would keep stages of
     * the old rules while rc_version names the new ones. */
    if (rc == 0 && ((replaced && p->recomputing) ||
                    (!p->recomputing && (rc_version != version || rc_done < rc_total)))) {
        p->recomputing = true;
        p->rc_after[0] = 0;
    }
    cxm_arena_dispose(&a);
    return rc;
}

/* ---- stage recomputation ---- */

typedef struct transition {
    int from, to;
    int64_t at;
    size_t rec;
    const char *rule_id;
} transition;

/* The event a rule is matched against: from the record and the dictionary,
 * or the stored event when rules look at properties. */
static int event_of(cxm_txn *t, jrn_ctx *ctx, cxm_arena *a, jdict *d, const char *home,
                    const jrec *r, bool props, Cxm__V1__TouchpointEvent *scratch,
                    const Cxm__V1__TouchpointEvent **out)
{
    if (props && (r->flags & JREC_HAS_PROPS)) {
        Cxm__V1__TouchpointEvent *ev;
        int rc = jdb_tl_get(t, ctx->db, a, home, r, &ev);
        if (rc == 0)
            *out = ev;
        return rc;
    }
    cxm__v1__touchpoint_event__init(scratch);
    scratch->event_type = (char *)d->name(d->ctx, r->type);
    scratch->touchpoint = (char *)d->name(d->ctx, r->touchpoint);
    if (!scratch->event_type || !scratch->touchpoint)
        return CXM_ECORRUPT;
    scratch->channel = (Cxm__V1__Channel)r->channel;
    scratch->occurred_at_unix_ms = r->at_ms;
    scratch->value = r->value;
    *out = scratch;
    return 0;
}

/* Write back each home's records where a stage changed. */
static int write_stages(cxm_txn *t, jrn_ctx *ctx, cxm_arena *a, const char *const *homes,
                        size_t nhomes, const jrec *recs, size_t n)
{
    for (size_t h = 0; h < nhomes; h++) {
        const jrec *stored;
        size_t ns;
        int rc = jdb_cols_get(t, ctx->db, a, homes[h], &stored, &ns);
        if (rc == CXM_ENOTFOUND)
            continue;
        if (rc != 0)
            return rc;
        jrec *copy = cxm_arena_alloc(a, (ns ? ns : 1) * sizeof *copy);
        if (!copy)
            return CXM_ENOMEM;
        memcpy(copy, stored, ns * sizeof *copy);
        bool changed = false;
        size_t k = 0;
        for (size_t i = 0; i < n && k < ns; i++) {
            if (recs[i].home != h)
                continue;
            if (copy[k].stage != recs[i].stage) {
                copy[k].stage = recs[i].stage;
                changed = true;
            }
            k++;
        }
        if (changed && (rc = jdb_cols_put(t, ctx->db, homes[h], copy, ns)) != 0)
            return rc;
    }
    return 0;
}

/* The state row from the transitions (all of them, oldest first). */
static int build_state(cxm_txn *t, jrn_ctx *ctx, cxm_arena *a, const char *root,
                       const char *const *homes, const jrec *recs, const transition *tr, size_t ntr,
                       uint64_t version, Cxm__V1__GetJourneyStateResponse *s)
{
    cxm__v1__get_journey_state_response__init(s);
    s->customer_id = (char *)root;
    s->rules_version = version;
    s->transition_count = (uint32_t)ntr;
    if (ntr) {
        s->stage = (Cxm__V1__JourneyStage)tr[ntr - 1].to;
        s->stage_since_unix_ms = tr[ntr - 1].at;
    }
    size_t keep = ntr < MAX_TRANSITIONS ? ntr : MAX_TRANSITIONS;
    s->transitions = cxm_arena_alloc(a, (keep ? keep : 1) * sizeof *s->transitions);
    if (!s->transitions)
        return CXM_ENOMEM;
    for (size_t i = 0; i < keep; i++) { /* newest first */
        const transition *x = &tr[ntr - 1 - i];
        Cxm__V1__StageTransition *st = cxm_arena_alloc(a, sizeof *st);
        Cxm__V1__TouchpointEvent *ev;
        if (!st)
            return CXM_ENOMEM;
        int rc = jdb_tl_get(t, ctx->db, a, homes[recs[x->rec].home], &recs[x->rec], &ev);
        if (rc != 0)
            return rc;
        cxm__v1__stage_transition__init(st);
        st->from_stage = (Cxm__V1__JourneyStage)x->from;
        st->to_stage = (Cxm__V1__JourneyStage)x->to;
        st->at_unix_ms = x->at;
        st->event_id = ev->event_id;
        st->rule_id = (char *)(x->rule_id ? x->rule_id : "");
        s->transitions[i] = st;
    }
    s->n_transitions = keep;
    /* Time in each stage up to the latest transition; the reader adds the
     * time since then to the current stage. */
    int64_t total[8] = {0};
    uint32_t visits[8] = {0};
    for (size_t i = 0; i < ntr; i++) {
        int st = tr[i].to >= 0 && tr[i].to < 8 ? tr[i].to : 0;
        visits[st]++;
        if (i + 1 < ntr)
            total[st] += tr[i + 1].at - tr[i].at;
    }
    s->time_in_stage = cxm_arena_alloc(a, 8 * sizeof *s->time_in_stage);
    if (!s->time_in_stage)
        return CXM_ENOMEM;
    for (int st = 1; st < 8; st++) {
        if (!visits[st])
            continue;
        Cxm__V1__StageTime *x = cxm_arena_alloc(a, sizeof *x);
        if (!x)
            return CXM_ENOMEM;
        cxm__v1__stage_time__init(x);
        x->stage = (Cxm__V1__JourneyStage)st;
        x->total_ms = total[st];
        x->visits = visits[st];
        s->time_in_stage[s->n_time_in_stage++] = x;
    }
    return 0;
}

static int emit_stage_changed(cxm_txn *t, jrn_ctx *ctx, const char *root, int from,
                              const Cxm__V1__GetJourneyStateResponse *s, int64_t now)
{
    Cxm__V1__StageChanged c = CXM__V1__STAGE_CHANGED__INIT;
    c.from_stage = (Cxm__V1__JourneyStage)from;
    c.to_stage = s->stage;
    c.since_unix_ms = s->stage_since_unix_ms;
    if (s->n_transitions) {
        c.event_id = s->transitions[0]->event_id;
        c.rule_id = s->transitions[0]->rule_id;
    }
    Cxm__V1__Event ev = CXM__V1__EVENT__INIT;
    ev.customer_id = (char *)root;
    ev.occurred_at_unix_ms = now;
    ev.payload_case = CXM__V1__EVENT__PAYLOAD_STAGE_CHANGED;
    ev.stage_changed = &c;
    return cxm_bus_emit(ctx->events, t, &ev);
}

/* Replay the group's records under the rules: stages into recs, the
 * transitions into *tr. Holds the rules' read lock. */
static int replay(cxm_txn *t, jrn_ctx *ctx, cxm_arena *a, const char *const *homes, jrec *recs,
                  size_t n, transition **tr, size_t *ntr, uint64_t *version)
{
    jdb_dict_ctx dc = {ctx->db, t, a};
    jdict d = jdb_dict(&dc);
    size_t cap = 16, k = 0;
    transition *x = malloc(cap * sizeof *x);
    if (!x)
        return CXM_ENOMEM;
    int rc = 0, cur = 0;
    pthread_rwlock_rdlock(&ctx->rules_lock);
    *version = jrules_version(ctx->rules);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        Cxm__V1__TouchpointEvent scratch;
        const Cxm__V1__TouchpointEvent *ev;
        rc = event_of(t, ctx, a, &d, homes[recs[i].home], &recs[i], ctx->rules_need_props, &scratch,
                      &ev);
        if (rc != 0)
            break;
        jrules_step st = jrules_apply(ctx->rules, ev, cur);
        if (st.changed && st.stage != cur) {
            if (k == cap) {
                transition *y = realloc(x, (cap *= 2) * sizeof *x);
                if (!y) {
                    rc = CXM_ENOMEM;
                    break;
                }
                x = y;
            }
            const char *rule =
                st.rule_id ? cxm_arena_strndup(a, st.rule_id, strlen(st.rule_id)) : NULL;
            x[k++] = (transition){cur, st.stage, recs[i].at_ms, i, rule};
            cur = st.stage;
        }
        recs[i].stage = (uint8_t)cur;
    }
    pthread_rwlock_unlock(&ctx->rules_lock);
    if (rc != 0) {
        free(x);
        return rc;
    }
    *tr = x;
    *ntr = k;
    return 0;
}

int jrn_recompute(cxm_txn *t, jrn_ctx *ctx, cxm_arena *a, const char *root, int64_t now)
{
    const char **homes;
    size_t nhomes, n;
    jrec *recs;
    int rc = jdb_group(t, ctx->db, a, root, &homes, &nhomes);
    if (rc == 0)
        rc = jdb_group_recs(t, ctx->db, a, homes, nhomes, &recs, &n);
    if (rc != 0)
        return rc;
    Cxm__V1__GetJourneyStateResponse *old = NULL;
    rc = jdb_state_get(t, ctx->db, a, root, &old);
    if (rc != 0 && rc != CXM_ENOTFOUND)
        return rc;
    int from = old ? old->stage : 0;
    if (n == 0) { /* nothing left (an erasure, an unmerge took it all) */
        rc = jdb_group_drop(t, ctx->db, root);
        return rc ? rc : jdb_state_put(t, ctx->db, a, root, NULL);
    }
    transition *tr;
    size_t ntr;
    uint64_t version;
    if ((rc = replay(t, ctx, a, homes, recs, n, &tr, &ntr, &version)) != 0)
        return rc;
    Cxm__V1__GetJourneyStateResponse s;
    rc = write_stages(t, ctx, a, homes, nhomes, recs, n);
    if (rc == 0)
        rc = jdb_group_save(t, ctx->db, root, homes, nhomes, recs, n);
    if (rc == 0)
        rc = build_state(t, ctx, a, root, homes, recs, tr, ntr, version, &s);
    free(tr);
    if (rc == 0)
        rc = jdb_state_put(t, ctx->db, a, root, &s);
    if (rc == 0 && (int)s.stage != from)
        rc = emit_stage_changed(t, ctx, root, from, &s, now);
    return rc;
}

/* ---- a round: resolve and store ---- */

static int64_t now_ms(void)
{
    return cxm_svc_now_ms();
}

/* A key naming a ref, so events of one customer share one resolution. */
static uint64_t ref_hash(const Cxm__V1__CustomerRef *r)
{
    if (r->key_case == CXM__V1__CUSTOMER_REF__KEY_CUSTOMER_ID)
        return cxm_hash(CXM_HASH_INIT, r->customer_id, strlen(r->customer_id));
    const Cxm__V1__Identity *id = r->identity;
    uint64_t h = cxm_hash(CXM_HASH_INIT + 1, &id->type, sizeof id->type);
    h = cxm_hash(h, id->custom_type ? id->custom_type : "",
                 strlen(id->custom_type ? id->custom_type : "") + 1);
    return cxm_hash(h, id->value, strlen(id->value));
}

static bool same_ref(const Cxm__V1__CustomerRef *x, const Cxm__V1__CustomerRef *y)
{
    if (x->key_case != y->key_case)
        return false;
    if (x->key_case == CXM__V1__CUSTOMER_REF__KEY_CUSTOMER_ID)
        return strcmp(x->customer_id, y->customer_id) == 0;
    return x->identity->type == y->identity->type &&
           strcmp(x->identity->custom_type ? x->identity->custom_type : "",
                  y->identity->custom_type ? y->identity->custom_type : "") == 0 &&
           strcmp(x->identity->value, y->identity->value) == 0;
}

/* One item per distinct ref among events without links; one per event with
 * links (their links must be linked, each). */
static int make_items(jrn_pipe *p)
{
    size_t nslots = 1;
    while (nslots < p->n * 2)
        nslots *= 2;
    size_t *slots = cxm_arena_alloc(&p->a, nslots * sizeof *slots);
    p->items = cxm_arena_calloc(&p->a, p->n ? p->n : 1, sizeof *p->items);
    p->item_of = cxm_arena_alloc(&p->a, (p->n ? p->n : 1) * sizeof *p->item_of);
    if (!slots || !p->items || !p->item_of)
        return CXM_ENOMEM;
    for (size_t i = 0; i < nslots; i++)
        slots[i] = SIZE_MAX;
    p->nitems = 0;
    for (size_t i = 0; i < p->n; i++) {
        const Cxm__V1__TouchpointEvent *ev = p->batch[i].ev;
        if (!ev->customer)
            return CXM_ECORRUPT;
        if (!ev->n_link_identities) {
            size_t s = ref_hash(ev->customer) & (nslots - 1);
            while (slots[s] != SIZE_MAX && !same_ref(p->items[slots[s]].customer, ev->customer))
                s = (s + 1) & (nslots - 1);
            if (slots[s] != SIZE_MAX) {
                p->item_of[i] = slots[s];
                continue;
            }
            slots[s] = p->nitems;
        }
        cxm_resolve_item *it = &p->items[p->nitems];
        it->customer = ev->customer;
        it->links = ev->link_identities;
        it->nlinks = ev->n_link_identities;
        p->item_of[i] = p->nitems++;
    }
    return 0;
}

/* The distinct roots of a round, in first-seen order, with an open-addressing
 * set over them (a round holds up to JRN_PIPE_BATCH events). */
typedef struct root_set {
    const char **roots;
    size_t n;
    size_t *slots, mask;
} root_set;

static int root_set_init(cxm_arena *a, root_set *s, size_t max)
{
    size_t nslots = 2;
    while (nslots < max * 2)
        nslots *= 2;
    s->roots = cxm_arena_alloc(a, max * sizeof *s->roots);
    s->slots = cxm_arena_alloc(a, nslots * sizeof *s->slots);
    if (!s->roots || !s->slots)
        return CXM_ENOMEM;
    for (size_t i = 0; i < nslots; i++)
        s->slots[i] = SIZE_MAX;
    s->n = 0;
    s->mask = nslots - 1;
    return 0;
}

static void root_set_add(root_set *s, const char *root)
{
    size_t i = cxm_hash(CXM_HASH_INIT, root, strlen(root)) & s->mask;
    for (; s->slots[i] != SIZE_MAX; i = (i + 1) & s->mask)
        if (strcmp(s->roots[s->slots[i]], root) == 0)
            return;
    s->slots[i] = s->n;
    s->roots[s->n++] = root;
}

static int emit_tracked(cxm_txn *t, jrn_ctx *ctx, cxm_arena *a, const Cxm__V1__TouchpointEvent *ev,
                        const char *root, int64_t now)
{
    Cxm__V1__GetJourneyStateResponse *s = NULL;
    int rc = jdb_state_get(t, ctx->db, a, root, &s);
    if (rc != 0 && rc != CXM_ENOTFOUND)
        return rc;
    Cxm__V1__TouchpointTracked tt = CXM__V1__TOUCHPOINT_TRACKED__INIT;
    tt.event_id = ev->event_id;
    tt.event_type = ev->event_type;
    tt.touchpoint = ev->touchpoint;
    tt.channel = ev->channel;
    tt.item_id = ev->item_id;
    tt.strength = jrules_strength(ev->event_type);
    tt.value = ev->value;
    tt.stage = s ? s->stage : CXM__V1__JOURNEY_STAGE__JOURNEY_STAGE_UNSPECIFIED;
    Cxm__V1__Event e = CXM__V1__EVENT__INIT;
    e.customer_id = (char *)root;
    e.occurred_at_unix_ms = ev->occurred_at_unix_ms ? ev->occurred_at_unix_ms : now;
    e.payload_case = CXM__V1__EVENT__PAYLOAD_TOUCHPOINT_TRACKED;
    e.touchpoint_tracked = &tt;
    return cxm_bus_emit(ctx->events, t, &e);
}

/* Store one resolved event under its home. */
static int store_event(cxm_txn *t, jrn_pipe *p, Cxm__V1__TouchpointEvent *ev, const char *home)
{
    jrn_ctx *ctx = p->ctx;
    ev->customer_id = (char *)home;
    jrec r;
    int rc = jdb_make_rec(t, ctx->db, ev, &r);
    if (rc == 0)
        rc = jdb_tl_put(t, ctx->db, &p->ta, home, ev, &r);
    if (rc == 0 && ev->customer->key_case == CXM__V1__CUSTOMER_REF__KEY_IDENTITY)
        rc = jdb_ident_put(t, ctx->db, ev->customer->identity, home);
    for (size_t i = 0; rc == 0 && i < ev->n_link_identities; i++)
        rc = jdb_ident_put(t, ctx->db, ev->link_identities[i], home);
    return rc;
}

static int round_txn(cxm_txn *t, void *user)
{
    jrn_pipe *p = user;
    jrn_ctx *ctx = p->ctx;
    int64_t now = now_ms();
    cxm_arena_reset(&p->ta);
    jdb_dict_rollback(ctx->db);
    p->ndropped = 0;
    const char **root_of = cxm_arena_alloc(&p->ta, (p->n ? p->n : 1) * sizeof *root_of);
    root_set roots;
    if (!root_of || root_set_init(&p->ta, &roots, p->n ? p->n : 1) != 0)
        return CXM_ENOMEM;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < p->n; i++) {
        const cxm_resolve_item *it = &p->items[p->item_of[i]];
        root_of[i] = NULL;
        if (it->rc != 0) {
            p->ndropped++;
        } else if ((rc = store_event(t, p, p->batch[i].ev, it->customer_id)) == 0 &&
                   (rc = jdb_root(t, ctx->db, &p->ta, it->customer_id, &root_of[i])) == 0) {
            root_set_add(&roots, root_of[i]);
        }
        if (rc == 0)
            rc = jdb_pending_del(t, ctx->db, p->batch[i].seq);
    }
    /* Roots a merge made non-roots since (a target that was merged away
     * meanwhile) are handled by their root: jdb_root above follows merges. */
    for (size_t i = 0; rc == 0 && i < roots.n; i++)
        rc = jrn_recompute(t, ctx, &p->ta, roots.roots[i], now);
    for (size_t i = 0; rc == 0 && i < p->n; i++) {
        const Cxm__V1__TouchpointEvent *ev = p->batch[i].ev;
        if (root_of[i] && ev->item_id && *ev->item_id)
            rc = emit_tracked(t, ctx, &p->ta, ev, root_of[i], now);
    }
    uint64_t dropped;
    if (rc == 0 && p->ndropped && (rc = jdb_meta_get(t, ctx->db, "dropped", &dropped)) == 0)
        rc = jdb_meta_put(t, ctx->db, "dropped", dropped + p->ndropped);
    size_t removed;
    if (rc == 0)
        rc = jdb_dedup_sweep(t, ctx->db, now - ctx->dedup_window_ms, SWEEP_MAX, &removed);
    return rc;
}

static void log_dropped(jrn_pipe *p)
{
    for (size_t i = 0; i < p->n; i++) {
        const cxm_resolve_item *it = &p->items[p->item_of[i]];
        if (it->rc != 0)
            cxm_log_warn("journey.event_dropped",
                         "event \"%s\" dropped: the profile service refused its customer (%s)",
                         p->batch[i].ev->event_id, it->why ? it->why : cxm_strerror(it->rc));
    }
    atomic_fetch_add(&p->dropped, p->ndropped);
}

/* One round. *did: events were moved. CXM_EUNAVAIL: the profile service is
 * away (nothing changed). */
static int run_round(jrn_pipe *p, bool *did)
{
    jrn_ctx *ctx = p->ctx;
    *did = false;
    cxm_arena_reset(&p->a);
    if (!p->batch && !(p->batch = malloc(JRN_PIPE_BATCH * sizeof *p->batch)))
        return CXM_ENOMEM;
    cxm_txn *t;
    int rc = cxm_store_read_begin(jdb_store(ctx->db), &t);
    if (rc != 0)
        return rc;
    rc = jdb_pending_oldest(t, ctx->db, &p->a, JRN_PIPE_BATCH, p->batch, &p->n);
    cxm_store_read_end(t);
    if (rc != 0 || p->n == 0)
        return rc;
    if ((rc = make_items(p)) != 0)
        return rc;
    rc = cxm_resolver_resolve(p->resolver, p->items, p->nitems, &p->a);
    if (rc != 0)
        return rc;
    /* Data flushed, meta page not (one fdatasync instead of two): an OS
     * crash may undo this commit, and with it the deletion of its pending
     * events, which the next round then moves again. The events themselves
     * were committed durably by ingest. */
    rc = cxm_store_write_flags(jdb_store(ctx->db), CXM_WRITE_NOMETASYNC, round_txn, p);
    if (rc != 0) {
        jdb_dict_rollback(ctx->db);
        return rc;
    }
    jdb_dict_commit(ctx->db);
    log_dropped(p);
    *did = true;
    return 0;
}

/* ---- the background recomputation ---- */

static int collect_roots(cxm_txn *t, jrn_pipe *p)
{
    jdb_src *s;
    int rc = jdb_src_open(t, p->ctx->db, p->rc_after, NULL, jrules_conditions_hold, &s);
    if (rc != 0)
        return rc;
    jsource src = jdb_source(s);
    jcust c;
    p->rc_n = 0;
    while (p->rc_n < RECOMPUTE_BATCH && (rc = src.next(src.ctx, &c)) == 1) {
        char *id = cxm_arena_strndup(&p->a, c.customer_id, strlen(c.customer_id));
        if (!id) {
            rc = CXM_ENOMEM;
            break;
        }
        p->rc_roots[p->rc_n++] = id;
    }
    jdb_src_close(s);
    return rc < 0 ? rc : 0;
}

static int recompute_txn(cxm_txn *t, void *user)
{
    jrn_pipe *p = user;
    jrn_ctx *ctx = p->ctx;
    cxm_arena_reset(&p->ta);
    int rc = 0;
    int64_t now = now_ms();
    uint64_t done, total, version;
    if (!p->rc_after[0] && (rc = jdb_meta_put(t, ctx->db, "rc_done", 0)) != 0)
        return rc; /* the first batch starts the count again */
    for (size_t i = 0; rc == 0 && i < p->rc_n; i++)
        rc = jrn_recompute(t, ctx, &p->ta, p->rc_roots[i], now);
    pthread_rwlock_rdlock(&ctx->rules_lock);
    version = jrules_version(ctx->rules);
    pthread_rwlock_unlock(&ctx->rules_lock);
    if (rc == 0)
        rc = jdb_meta_get(t, ctx->db, "rc_done", &done);
    if (rc == 0)
        rc = jdb_meta_get(t, ctx->db, "rc_total", &total);
    if (rc == 0)
        rc = jdb_meta_put(t, ctx->db, "rc_done", done + p->rc_n);
    if (rc == 0 && p->rc_n < RECOMPUTE_BATCH) { /* the last batch */
        if ((rc = jdb_meta_put(t, ctx->db, "rc_total", done + p->rc_n)) == 0)
            rc = jdb_meta_put(t, ctx->db, "rc_version", version);
    } else if (rc == 0 && total < done + p->rc_n) {
        rc = jdb_meta_put(t, ctx->db, "rc_total", done + p->rc_n);
    }
    return rc;
}

/* One batch of the recomputation after a rule change. */
static int recompute_step(jrn_pipe *p)
{
    if (!p->recomputing)
        return 0;
    cxm_arena_reset(&p->a);
    if (!p->rc_roots && !(p->rc_roots = malloc(RECOMPUTE_BATCH * sizeof *p->rc_roots)))
        return CXM_ENOMEM;
    cxm_txn *t;
    int rc = cxm_store_read_begin(jdb_store(p->ctx->db), &t);
    if (rc != 0)
        return rc;
    rc = collect_roots(t, p);
    cxm_store_read_end(t);
    if (rc == 0) {
        jdb_dict_rollback(p->ctx->db);
        rc = cxm_store_write(jdb_store(p->ctx->db), recompute_txn, p);
    }
    if (rc != 0)
        return rc;
    if (p->rc_n < RECOMPUTE_BATCH)
        p->recomputing = false;
    else
        snprintf(p->rc_after, sizeof p->rc_after, "%s", p->rc_roots[p->rc_n - 1]);
    return 0;
}

/* ---- the thread ---- */

static void wait_ms(jrn_pipe *p, int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&p->mu);
    while (!p->stop && !p->woken)
        if (pthread_cond_timedwait(&p->cv, &p->mu, &ts) != 0)
            break;
    p->woken = false;
    pthread_mutex_unlock(&p->mu);
}

static bool stopping(jrn_pipe *p)
{
    pthread_mutex_lock(&p->mu);
    bool s = p->stop;
    pthread_mutex_unlock(&p->mu);
    return s;
}

/* While ingest is busy, hold LMDB's one writer lock for at most a quarter
 * of the time: a round of the pipeline writes a page per event into
 * customer-ordered tables (random places) and so holds the lock far
 * longer per event than ingest, which appends; without this a burst is
 * acknowledged at a third of the rate. The backlog this builds is bounded:
 * past PIPE_DEBT_MAX pending events the pipeline runs flat out and ingest
 * shares the lock with it again. */
static void yield_to_ingest(jrn_pipe *p, int64_t round_ms)
{
    if (mono_ms() - atomic_load(&p->ingest_at) > PIPE_INGEST_QUIET_MS)
        return;
    cxm_txn *t;
    uint64_t backlog = 0;
    if (cxm_store_read_begin(jdb_store(p->ctx->db), &t) == 0) {
        jdb_pending_count(t, p->ctx->db, NULL, &backlog);
        cxm_store_read_end(t);
    }
    if (backlog > PIPE_DEBT_MAX)
        return;
    int64_t pause = round_ms * 3;
    if (pause > PIPE_PAUSE_MAX_MS)
        pause = PIPE_PAUSE_MAX_MS;
    struct timespec ts = {pause / 1000, (long)(pause % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void *pipe_main(void *arg)
{
    jrn_pipe *p = arg;
    int64_t backoff = BACKOFF_MIN_MS;
    /* Ingest comes first: acknowledging events is what callers wait for,
     * resolving them may lag in a burst (pending_events shows by how much)
     * and catches up when the burst ends. On 2 cores an equal share would
     * halve the ingest rate. */
    if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), PIPE_NICE) != 0)
        cxm_log_warn("journey.nice_failed", "the pipeline runs at normal priority: %s",
                     strerror(errno));
    while (!stopping(p)) {
        bool did = false;
        int64_t round_start = mono_ms();
        int rc = reload_rules(p);
        if (rc == 0)
            rc = run_round(p, &did);
        if (rc == CXM_EUNAVAIL) {
            if (!p->outage)
                cxm_log_warn("journey.profile_unavailable",
                             "cannot resolve customers (%s): events wait in the pending queue",
                             cxm_resolver_last_error());
            p->outage = true;
            wait_ms(p, backoff);
            backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
            continue;
        }
        if (rc == 0 && p->outage) {
            cxm_log_info("journey.profile_back", "resolving customers again");
            p->outage = false;
        }
        backoff = BACKOFF_MIN_MS;
        if (rc != 0) {
            cxm_log_error("journey.pipeline_failed", "pipeline round failed: %s (%s)",
                          cxm_strerror(rc), cxm_store_last_error());
            wait_ms(p, 1000);
            continue;
        }
        if (did)
            yield_to_ingest(p, mono_ms() - round_start);
        if ((rc = recompute_step(p)) != 0)
            cxm_log_error("journey.recompute_failed", "stage recomputation failed: %s (%s)",
                          cxm_strerror(rc), cxm_store_last_error());
        if (!did && !p->recomputing)
            wait_ms(p, POLL_MS);
    }
    return NULL;
}

int jrn_pipe_start(jrn_ctx *ctx, const cxm_resolver_opts *opts, jrn_pipe **out)
{
    jrn_pipe *p = calloc(1, sizeof *p);
    if (!p)
        return CXM_ENOMEM;
    p->ctx = ctx;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    cxm_arena_init(&p->a, NULL, 0, 0);
    cxm_arena_init(&p->ta, NULL, 0, 0);
    int rc = cxm_resolver_open(opts, &p->resolver);
    if (rc == 0 && pthread_create(&p->thread, NULL, pipe_main, p) != 0)
        rc = CXM_ENOMEM;
    if (rc != 0) {
        cxm_resolver_close(p->resolver);
        cxm_arena_dispose(&p->a);
        cxm_arena_dispose(&p->ta);
        free(p);
        return rc;
    }
    *out = p;
    return 0;
}

void jrn_pipe_stop(jrn_pipe *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->thread, NULL);
    cxm_resolver_close(p->resolver);
    cxm_arena_dispose(&p->a);
    cxm_arena_dispose(&p->ta);
    free(p->batch);
    free(p->rc_roots);
    free(p);
}

void jrn_pipe_wake(jrn_pipe *p)
{
    if (!p)
        return;
    atomic_store(&p->ingest_at, mono_ms());
    pthread_mutex_lock(&p->mu);
    p->woken = true;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

void jrn_pipe_invalidate(jrn_pipe *p)
{
    if (p) /* thread-safe: a resolution in flight caches nothing */
        cxm_resolver_invalidate(p->resolver);
}

uint64_t jrn_pipe_dropped(jrn_pipe *p)
{
    return p ? atomic_load(&p->dropped) : 0;
}
