/*
 * fuzz_bus.c - an event as the bus delivers it: the bytes of a NATS message
 * (or a kept early event) decoded into an Event as fetch_apply_fn and
 * apply_early decode them (bus.c), then applied by the subscriber that
 * keeps other services' facts (replica.c: personalisation's and feedback's
 * copy of profile's and journey's events), in a transaction rolled back
 * afterwards. A peer's malformed or hostile message must be skipped or
 * refused, never crash the subscriber.
 */
#include <stdio.h>
#include <stdlib.h>

#include "cxm/replica.h"
#include "fuzz.h"

static cxm_replica *replica;

static int apply(cxm_txn *t, void *user)
{
    return cxm_replica_apply(t, replica, user);
}

/* Facts committed once, before the first input, so that fuzzed events meet
 * stored records and aliases (merges, segment changes of a known customer)
 * and not only an empty store: "c1" in two segments, "c2" merged into it. */
static int seed(cxm_txn *t, void *user)
{
    static char *entered[] = {"vip", "churn-risk"};
    Cxm__V1__SegmentMembershipChanged seg = CXM__V1__SEGMENT_MEMBERSHIP_CHANGED__INIT;
    seg.n_entered_segment_ids = 2;
    seg.entered_segment_ids = entered;
    Cxm__V1__Event ev = CXM__V1__EVENT__INIT;
    ev.producer = "profile";
    ev.sequence = 1;
    ev.customer_id = "c1";
    ev.payload_case = CXM__V1__EVENT__PAYLOAD_SEGMENT_MEMBERSHIP_CHANGED;
    ev.segment_membership_changed = &seg;
    int rc = cxm_replica_apply(t, replica, &ev);
    Cxm__V1__CustomerMerged merged = CXM__V1__CUSTOMER_MERGED__INIT;
    merged.source_customer_id = "c2";
    merged.target_customer_id = "c1";
    ev.sequence = 2;
    ev.payload_case = CXM__V1__EVENT__PAYLOAD_CUSTOMER_MERGED;
    ev.customer_merged = &merged;
    return rc ? rc : cxm_replica_apply(t, replica, &ev);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!replica && (cxm_replica_open(fuzz_store(), "fz", &replica) != 0 ||
                     cxm_store_write(fuzz_store(), seed, NULL) != 0)) {
        fprintf(stderr, "fuzz_bus: cannot set up the replica tables\n");
        abort();
    }
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, FUZZ_ARENA_LIMIT);
    Cxm__V1__Event *ev = cxm__v1__event__unpack(cxm_arena_protobuf(&a), size, data);
    if (ev)
        fuzz_store_try(apply, ev);
    cxm_arena_dispose(&a);
    return 0;
}
