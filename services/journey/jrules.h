/*
 * jrules.h - journey stage rules: the shipped defaults, compiling a rule set,
 * matching an event, replaying a customer's history, and property
 * conditions (shared with funnel steps).
 *
 * A rule set is matched in descending priority, ties by rule_id (byte
 * order); the first rule whose every set matcher holds decides. A match
 * that would move the customer to an earlier stage is ignored unless the
 * rule allows regression (then the next rule is NOT tried: the match
 * decides and is ignored, as the contract says "such a match is ignored").
 * A match to the current stage changes nothing (no transition).
 *
 * Pure: no storage, no clock; thread-safe once compiled (a compiled set is
 * read-only and may be shared by threads).
 */
#ifndef CXM_JRULES_H
#define CXM_JRULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cxm/v1/journey.pb-c.h"

#define JRULES_MAX 500          /* rules in a set */
#define JRULES_MAX_CONDITIONS 8 /* conditions of a rule or funnel step */

typedef struct jrules jrules;

/* The shipped default rule set (version 0): page views and ad clicks ->
 * AWARENESS, product views, compare, add to cart, sign up -> CONSIDERATION,
 * purchase/order -> PURCHASE, onboarding, delivery, support -> USE, repeat
 * purchase, renewal, loyalty -> RETENTION, review, referral -> ADVOCACY, with
 * cancellation allowed to regress. Static storage; *n set. */
Cxm__V1__StageRule *const *jrules_defaults(size_t *n);

/* Compile a VALIDATED rule set (jrn_check_rules) for matching. Copies
 * what it needs: rules may be freed afterwards. NULL when out of memory. */
jrules *jrules_compile(Cxm__V1__StageRule *const *rules, size_t n, uint64_t version);
void jrules_free(jrules *r);
uint64_t jrules_version(const jrules *r);

/* The outcome of one event under a rule set. */
typedef struct jrules_step {
    int stage;           /* Cxm__V1__JourneyStage after the event */
    bool changed;        /* stage differs from the stage before */
    const char *rule_id; /* the deciding rule when changed (owned by r) */
} jrules_step;

/* Apply the rules to ev for a customer currently in stage `current`
 * (UNSPECIFIED before any match). */
jrules_step jrules_apply(const jrules *r, const Cxm__V1__TouchpointEvent *ev, int current);

/* Do all conditions hold on ev's properties? EXISTS / NOT_EXISTS test
 * presence; ordering ops compare numbers, timestamps and strings (bytes);
 * a property of another type than the condition's value never matches;
 * PREFIX is case-sensitive, CONTAINS case-insensitive (ASCII). n = 0 is
 * true. */
bool jrules_conditions_hold(Cxm__V1__PropertyCondition *const *conds, size_t n,
                            Cxm__V1__TouchpointEvent__PropertiesEntry *const *props, size_t nprops);

/* How strongly an event type says the customer wants the event's item
 * (TouchpointTracked.strength): purchase/order 5, add_to_cart 3, wishlist
 * 3, compare/click 2, view 1, dismiss/return/cancel/refund -1, unknown 1
 * (words found anywhere in the name, case-insensitive, negative ones
 * first: "order_cancelled" is -1). */
double jrules_strength(const char *event_type);

#endif
