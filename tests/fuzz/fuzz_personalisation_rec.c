/*
 * fuzz_personalisation_rec.c - the personalisation store's records as its
 * readers decode them (xdb.c, and the replica of other services' facts in
 * replica.c): the first byte picks the record, the rest is its stored
 * value, put in place in a transaction rolled back afterwards.
 *   0  an experience, 1  feedback signals, 2  a contact history (read and
 *   rewritten by an impression), 3  a model's info, 4  a replica record
 *   (read, then rebuilt by a segment change)
 * A damaged record must come back as an error, never crash.
 */
#include <stdio.h>
#include <stdlib.h>

#include "cxm/keyenc.h"
#include "cxm/replica.h"
#include "fuzz.h"
#include "personalisation/xdb.h"

static xdb *db;
static cxm_replica *replica;

static size_t key_of(uint8_t *buf, const char *a, const char *b, uint64_t n)
{
    cxm_key k;
    size_t len = 0;
    cxm_key_init(&k, buf, CXM_KEY_MAX);
    if (a)
        cxm_key_str(&k, a);
    if (b)
        cxm_key_str(&k, b);
    if (!a)
        cxm_key_u64(&k, n);
    cxm_key_finish(&k, &len);
    return len;
}

/* c1 enters a segment: the replica loads its record and writes it back. */
static void replica_rebuild(cxm_txn *t)
{
    static char *entered[] = {"vip"};
    Cxm__V1__SegmentMembershipChanged seg = CXM__V1__SEGMENT_MEMBERSHIP_CHANGED__INIT;
    seg.n_entered_segment_ids = 1;
    seg.entered_segment_ids = entered;
    Cxm__V1__Event ev = CXM__V1__EVENT__INIT;
    ev.producer = "profile";
    ev.sequence = 1;
    ev.customer_id = "c1";
    ev.payload_case = CXM__V1__EVENT__PAYLOAD_SEGMENT_MEMBERSHIP_CHANGED;
    ev.segment_membership_changed = &seg;
    cxm_replica_apply(t, replica, &ev);
}

static int read_back(cxm_txn *t, void *user)
{
    const fuzz_record *in = user;
    uint8_t key[CXM_KEY_MAX];
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, FUZZ_ARENA_LIMIT);
    Cxm__V1__Experience *e;
    xdb_signals sig;
    Cxm__V1__ModelInfo *info;
    cxm_replica_customer cust;
    switch (in->kind) {
    case 0:
        fuzz_put(t, "pers.exp", "x1", 2, in->data, in->size);
        xdb_experience_get(t, db, &a, "x1", &e);
        break;
    case 1:
        fuzz_put(t, "pers.fb", "c1", 2, in->data, in->size);
        xdb_signals_get(t, db, "c1", &sig);
        break;
    case 2:
        fuzz_put(t, "pers.contact", key, key_of(key, "c1", "x1", 0), in->data, in->size);
        xdb_contact_record(t, db, "c1", "x1", CXM__V1__OUTCOME_KIND__OUTCOME_KIND_IMPRESSION,
                           FUZZ_NOW_MS);
        break;
    case 3:
        fuzz_put(t, "pers.model", key, key_of(key, NULL, NULL, 1), in->data, in->size);
        xdb_model_get(t, db, &a, 1, &info);
        break;
    default:
        fuzz_put(t, "pers.rcust", "c1", 2, in->data, in->size);
        cxm_replica_get(t, replica, &a, "c1", &cust);
        replica_rebuild(t);
    }
    cxm_arena_dispose(&a);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!db && (xdb_open(fuzz_store(), &db) != 0 ||
                cxm_replica_open(fuzz_store(), "pers", &replica) != 0)) {
        fprintf(stderr, "fuzz_personalisation_rec: cannot open the personalisation tables\n");
        abort();
    }
    fuzz_records(data, size, 5, read_back);
    return 0;
}
