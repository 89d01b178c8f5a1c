/*
 * jrec.h - the compact form of a customer's journey that analytics read:
 * one fixed-size record per event, a customer's records in time order.
 *
 * Why: Funnel, Paths and TouchpointStats over a million events must beat an
 * in-memory column store. Decoding a million protobuf events would take a
 * second; walking a million 48-byte records laid out per customer takes
 * milliseconds. The store (jdb.h) keeps these records next to the full
 * events and hands them out through a jsource; the analytics (jan.h) are
 * pure functions over a jsource, unit-tested with an in-memory one.
 *
 * Strings (event types, touchpoints) are interned to small ids by the store's
 * dictionary (jdict); an id is stable for the life of the data directory.
 */
#ifndef CXM_JREC_H
#define CXM_JREC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cxm/v1/journey.pb-c.h"

/* No session_id: the analytics cut sessions by the 30-minute gap rule. */
#define JREC_NO_SESSION 0u
#define JREC_SESSION_GAP_MS (30 * 60 * 1000)

enum {
    JREC_BASE_CURRENCY = 1, /* value is in the base currency (counts in totals) */
    JREC_HAS_PROPS = 2,     /* the event has properties (conditions need a lookup) */
};

/* One event. A customer's records are sorted by (at_ms, eid). */
typedef struct jrec {
    int64_t at_ms;       /* occurred_at */
    double value;        /* the event's value (see JREC_BASE_CURRENCY) */
    uint64_t session;    /* hash of session_id, JREC_NO_SESSION when none */
    uint64_t eid;        /* hash of event_id: tie order and lookup key */
    uint32_t type;       /* event_type, a jdict id */
    uint32_t touchpoint; /* touchpoint, a jdict id */
    uint8_t channel;     /* Cxm__V1__Channel */
    uint8_t stage;       /* Cxm__V1__JourneyStage after this event */
    uint8_t flags;       /* JREC_* */
    uint8_t home;        /* index into jcust.homes: the id it is stored under */
    uint32_t reserved;   /* zero */
} jrec;

/* One customer as of the query: its records and those of every customer
 * merged into it, merged in (at_ms, eid) order. */
typedef struct jcust {
    const char *customer_id; /* the surviving customer */
    const jrec *recs;
    size_t n;
    /* The ids the records are stored under (homes[rec.home]): the customer
     * itself first, then the ids merged into it. */
    const char *const *homes;
    size_t nhomes;
} jcust;

/* Interned strings. id 0 is never used: "no such string". */
typedef struct jdict {
    void *ctx;
    /* The id of s, or 0 when s was never seen (so it matches nothing). */
    uint32_t (*id)(void *ctx, const char *s);
    /* The string of id; NULL for an unknown id. Valid while the query runs. */
    const char *(*name)(void *ctx, uint32_t id);
} jdict;

/* The customers to analyse, one at a time. The jcust and its arrays are
 * valid until the next call of next. */
typedef struct jsource {
    void *ctx;
    /* 1 with *out filled, 0 at the end, or a negative CXM_E* code. */
    int (*next)(void *ctx, jcust *out);
    /* Do the property conditions hold for the event of record r of c?
     * Asked only for records that matched the step's other fields; a record
     * without JREC_HAS_PROPS is judged against no properties, without a
     * lookup. 0 with *match set, or a CXM_E* code. */
    int (*props_match)(void *ctx, const jcust *c, const jrec *r,
                       Cxm__V1__PropertyCondition *const *conds, size_t nconds, bool *match);
} jsource;

#endif
