/*
 * fuzz_journey_rec.c - the journey store's records as its readers decode
 * them (jdb.c): the first byte picks the record, the rest is its stored
 * value, put in place in a transaction rolled back afterwards.
 *   0  a customer's compact records (jrec.h), read by Funnel and Paths
 *   1  a merged group's saved homes and records, read the same way
 *   2  a pending event, read by the pipeline and counted per customer
 *      (the hand-written walk to its customer ref)
 *   3  a journey state, 4  the rule set, 5  a merge alias
 * A damaged record must come back as an error (or be skipped), never be
 * read past its end.
 */
#include <stdio.h>
#include <stdlib.h>

#include "cxm/keyenc.h"
#include "cxm/svc.h"
#include "fuzz.h"
#include "journey/jan.h"
#include "journey/jdb.h"
#include "journey/jrn_check.h"
#include "journey/jrules.h"

static jdb *db;

static size_t key_str(uint8_t *buf, const char *s)
{
    cxm_key k;
    size_t len = 0;
    cxm_key_init(&k, buf, CXM_KEY_MAX);
    cxm_key_str(&k, s);
    cxm_key_finish(&k, &len);
    return len;
}

/* Funnel and Paths over the store, as the analytics RPCs run them. */
static void analytics(cxm_txn *t, cxm_arena *a)
{
    char err[CXM_SVC_ERR_MAX];
    Cxm__V1__FunnelStep view = CXM__V1__FUNNEL_STEP__INIT, buy = CXM__V1__FUNNEL_STEP__INIT;
    view.event_type = "view";
    buy.event_type = "purchase";
    Cxm__V1__FunnelStep *steps[] = {&view, &buy};
    Cxm__V1__FunnelRequest fq = CXM__V1__FUNNEL_REQUEST__INIT;
    fq.steps = steps;
    fq.n_steps = 2;
    Cxm__V1__TimeRange day = CXM__V1__TIME_RANGE__INIT;
    day.from_unix_ms = FUZZ_NOW_MS - 86400000;
    day.to_unix_ms = FUZZ_NOW_MS;
    fq.range = &day;
    Cxm__V1__PathsRequest pq = CXM__V1__PATHS_REQUEST__INIT;
    pq.anchor = "web";
    pq.direction = CXM__V1__PATH_DIRECTION__PATH_DIRECTION_FROM;
    pq.range = &day;
    if (jrn_check_funnel(&fq, FUZZ_NOW_MS, err) != 0 || jrn_check_paths(&pq, FUZZ_NOW_MS, err)) {
        fprintf(stderr, "fuzz_journey_rec: a request of the target is invalid: %s\n", err);
        abort();
    }
    jdb_dict_ctx dc = {db, t, a};
    jdict d = jdb_dict(&dc);
    for (int i = 0; i < 2; i++) {
        jdb_src *s;
        if (jdb_src_open(t, db, NULL, NULL, jrules_conditions_hold, &s) != 0)
            return;
        jsource src = jdb_source(s);
        Cxm__V1__FunnelResponse *fr;
        Cxm__V1__PathsResponse *pr;
        if (i == 0)
            jan_funnel(&fq, &d, &src, a, &fr);
        else
            jan_paths(&pq, &d, &src, a, &pr);
        jdb_src_close(s);
    }
}

static void pending(cxm_txn *t, cxm_arena *a, const fuzz_record *in)
{
    static const uint8_t seq[8] = {0, 0, 0, 0, 0, 0, 0, 1};
    jdb_pending out[4];
    size_t n;
    uint64_t count;
    fuzz_put(t, "journey.pending", seq, sizeof seq, in->data, in->size);
    jdb_pending_count(t, db, "c1", &count);
    jdb_pending_oldest(t, db, a, 4, out, &n);
}

static int read_back(cxm_txn *t, void *user)
{
    const fuzz_record *in = user;
    uint8_t key[CXM_KEY_MAX];
    size_t klen = key_str(key, "c1");
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, FUZZ_ARENA_LIMIT);
    const char *root;
    Cxm__V1__GetJourneyStateResponse *state;
    Cxm__V1__GetStageRulesResponse *rules;
    switch (in->kind) {
    case 0:
        fuzz_put(t, "journey.cols", key, klen, in->data, in->size);
        analytics(t, &a);
        break;
    case 1: /* c2 merged into c1: c1's group is read from its saved row */
        if (jdb_merge_set(t, db, "c2", "c1") == 0) {
            fuzz_put(t, "journey.groups", key, klen, in->data, in->size);
            analytics(t, &a);
        }
        break;
    case 2:
        pending(t, &a, in);
        break;
    case 3:
        fuzz_put(t, "journey.state", key, klen, in->data, in->size);
        jdb_state_get(t, db, &a, "c1", &state);
        break;
    case 4:
        fuzz_put(t, "journey.rules", "current", 7, in->data, in->size);
        jdb_rules_get(t, db, &a, &rules);
        break;
    default:
        fuzz_put(t, "journey.merged", key, klen, in->data, in->size);
        jdb_root(t, db, &a, "c1", &root);
    }
    cxm_arena_dispose(&a);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!db && jdb_open(fuzz_store(), &db) != 0) {
        fprintf(stderr, "fuzz_journey_rec: cannot open the journey tables\n");
        abort();
    }
    fuzz_records(data, size, 6, read_back);
    return 0;
}
