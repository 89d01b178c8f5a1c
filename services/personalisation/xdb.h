/*
 * xdb.h - the personalisation service's own tables: the experience
 * catalogue, what each customer told feedback (the signals that switch
 * Recommend to service-first), contact history (caps and pauses),
 * idempotency of outcomes and interactions, and the model infos of
 * TrainModel. The interaction log and the models themselves are recodb's
 * (reco/recodb.h); replicated stage, segments and consents are
 * cxm/replica.h's.
 *
 * Tables (prefix "pers."):
 *   pers.exp     experience id -> packed Cxm__V1__Experience (as stored:
 *                created/updated set)
 *   pers.expgen  generation (u64 big-endian) -> experience id: the order of
 *                changes, so the in-memory catalogue catches up by reading
 *                only what changed since its generation
 *   pers.meta    "catgen" -> u64, the latest generation
 *   pers.fb      customer id -> xdb_signals
 *   pers.contact customer id, experience id -> xdb_contact
 *   pers.outcome outcome id -> customer id; pers.cout customer id, outcome
 *                id -> "" (so erasure finds a customer's outcome ids)
 *   pers.inter   interaction id -> customer id; pers.cinter likewise
 *   pers.model   version (u64 BE) -> packed Cxm__V1__ModelInfo
 *
 * The catalogue in memory (xdb_catalog_*): the compiled experiences the
 * request path checks (eligibility, caps, kind, value), behind a
 * reader-writer lock. Readers lock it for the duration of one decision
 * (xdb_catalog_lock, which first catches up with the store's generation if
 * the read transaction shows a newer one), so a committed upsert is seen by
 * every Recommend that starts after the commit.
 *
 * Threading: functions taking a txn are thread-safe; the catalogue as
 * above. Errors: 0 or CXM_E* (CXM_ENOTFOUND where said).
 */
#ifndef CXM_PERSONALISATION_XDB_H
#define CXM_PERSONALISATION_XDB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cxm/arena.h"
#include "cxm/store.h"
#include "cxm/v1/events.pb-c.h"
#include "cxm/v1/personalisation.pb-c.h"

#define XDB_SHOWN_MAX 32 /* impressions remembered per customer and experience */
#define XDB_CAPS_MAX 4

typedef struct xdb xdb;

/* Open the tables and load the catalogue and the contact filter in one
 * read transaction (so not inside a transaction). */
int xdb_open(cxm_store *store, xdb **out);
void xdb_close(xdb *db);

/* ---- the catalogue ---- */

/* Fetch one experience (CXM_ENOTFOUND when absent), unpacked in a. */
int xdb_experience_get(cxm_txn *t, xdb *db, cxm_arena *a, const char *id,
                       Cxm__V1__Experience **out);

/* Store e (validated by the caller) with created_at (kept from the stored
 * one, or now) and updated_at = now; *stored is what was stored, in a;
 * *created says whether it is new. Bumps the catalogue generation. */
int xdb_experience_put(cxm_txn *t, xdb *db, cxm_arena *a, const Cxm__V1__Experience *e, int64_t now,
                       Cxm__V1__Experience **stored, bool *created);

/* Experiences in id order after `after` ("" = from the start), each
 * unpacked in a, until fn returns non-zero (returned as is; 1 = stop). */
typedef int (*xdb_experience_fn)(const Cxm__V1__Experience *e, void *user);
int xdb_experience_list(cxm_txn *t, xdb *db, cxm_arena *a, const char *after, xdb_experience_fn fn,
                        void *user);

typedef struct xdb_cap {
    uint32_t max_contacts;
    int64_t period_ms;
} xdb_cap;

/* An experience compiled for decisions. Strings and arrays live as long as
 * the entry (until the catalogue lock is released). */
typedef struct xdb_exp {
    const char *id;
    size_t idlen;
    int kind; /* Cxm__V1__ExperienceKind */
    bool disabled;
    double value, weight;            /* weight 0 stored as 1 */
    int64_t valid_from, valid_until; /* unix ms, 0 = open */
    uint32_t stages;                 /* bit (1 << JourneyStage) per allowed stage; 0 = any */
    uint32_t channels;               /* bit (1 << Channel) per allowed channel; 0 = any */
    const char *const *placements;
    size_t nplacements;
    const char *const *segments; /* in at least one */
    size_t nsegments;
    const char *const *excluded_segments;
    size_t nexcluded;
    const char *const *consents; /* all GRANTED */
    size_t nconsents;
    xdb_cap caps[XDB_CAPS_MAX];
    size_t ncaps;
    int64_t pause_after_accept_ms, pause_after_dismiss_ms;
    const Cxm__V1__Experience *msg; /* everything, for the response */
} xdb_exp;

/* Lock the catalogue for reading after catching up with what t sees.
 * Returns 0, or CXM_ENOMEM or a store error (catching up failed; the lock
 * is not held); an experience that does not decode is left out (logged),
 * not an error. t is a read transaction: a write transaction's uncommitted
 * generation must not reach the shared catalogue. Never lock twice on one
 * thread (writers go first, so a nested read lock can deadlock). */
int xdb_catalog_lock(xdb *db, cxm_txn *t);
void xdb_catalog_unlock(xdb *db);
/* Under the lock: */
const xdb_exp *xdb_catalog_find(const xdb *db, const char *id, size_t idlen);
/* Every experience, and the SERVICE_ACTION ones alone, highest value x
 * weight first (ties by id): fills can stop at the first eligible ones. */
size_t xdb_catalog_all(const xdb *db, const xdb_exp *const **out);
size_t xdb_catalog_service_actions(const xdb *db, const xdb_exp *const **out);
/* The generation the catalogue is at (changes when any experience does). */
uint64_t xdb_catalog_gen(const xdb *db);

/* ---- feedback signals (from FeedbackReceived and FollowUpChanged) ---- */

typedef struct xdb_signals {
    int64_t last_detractor_ms;       /* latest NPS detractor answer */
    int64_t last_strong_negative_ms; /* latest strongly negative comment */
    uint32_t open_follow_ups;        /* from the latest FollowUpChanged */
} xdb_signals;

/* Zeroed when nothing was recorded. */
int xdb_signals_get(cxm_txn *t, xdb *db, const char *customer_id, xdb_signals *out);
/* Apply feedback's FeedbackReceived / FollowUpChanged (others: 0). */
int xdb_signals_apply(cxm_txn *t, xdb *db, const Cxm__V1__Event *ev);

/* ---- contact history (caps and pauses) ---- */

typedef struct xdb_contact {
    int64_t last_accept_ms, last_dismiss_ms; /* 0 = never */
    uint32_t nshown;                         /* <= XDB_SHOWN_MAX */
    int64_t shown_ms[XDB_SHOWN_MAX];         /* latest impressions, oldest first */
} xdb_contact;

/* Zeroed when the customer never met the experience. */
int xdb_contact_get(cxm_txn *t, xdb *db, const char *customer_id, const char *experience_id,
                    xdb_contact *out);
/* Record an outcome (Cxm__V1__OutcomeKind) at `at`: an impression joins
 * shown_ms (the oldest falls out past XDB_SHOWN_MAX), accept and dismiss
 * set their time, a click only counts as interest (nothing here). */
int xdb_contact_record(cxm_txn *t, xdb *db, const char *customer_id, const char *experience_id,
                       int outcome, int64_t at);
/* True when c allows showing e at now: every cap has fewer than
 * max_contacts impressions in (now - period_ms, now], and no pause after
 * accept/dismiss is still running. */
bool xdb_contact_allows(const xdb_contact *c, const xdb_exp *e, int64_t now);

/* ---- idempotency ---- */

/* Claim outcome_id (or interaction_id) for customer_id: *dup is true when
 * it was claimed before (nothing is written then). */
int xdb_outcome_claim(cxm_txn *t, xdb *db, const char *outcome_id, const char *customer_id,
                      bool *dup);
int xdb_interaction_claim(cxm_txn *t, xdb *db, const char *interaction_id, const char *customer_id,
                          bool *dup);

/* ---- merges and erasure ---- */

/* source was merged into target: its signals (latest of each, open
 * follow-ups summed) and contact histories (united) move to target. */
int xdb_merge(cxm_txn *t, xdb *db, const char *source, const char *target);

/* Erase everything of customer_id: signals, contacts, outcome and
 * interaction ids. *records counts the rows deleted. */
int xdb_erase(cxm_txn *t, xdb *db, const char *customer_id, uint64_t *records);

/* ---- model infos ---- */

int xdb_model_put(cxm_txn *t, xdb *db, cxm_arena *a, const Cxm__V1__ModelInfo *m);
/* CXM_ENOTFOUND when absent. */
int xdb_model_get(cxm_txn *t, xdb *db, cxm_arena *a, uint64_t version, Cxm__V1__ModelInfo **out);

#endif
