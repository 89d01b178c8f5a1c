/*
 * model.h - the profile as data: attribute strategies, merges and their
 * reversal, consent, traits and segment conditions, on cxm.v1.Profile
 * messages whose memory lives in one arena.
 *
 * Everything here is pure (no storage, no clock: times come in as
 * arguments), so the rules that decide what a customer's profile says are
 * unit-tested without a server. Functions that can fail return 0 or a
 * CXM_E* code and write a sentence naming the problem into err (errlen
 * bytes). Repeated fields are kept sorted (attributes and traits by name,
 * consents by scope) so that two profiles with the same content pack to the
 * same bytes.
 */
#ifndef CXM_PROFILE_MODEL_H
#define CXM_PROFILE_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cxm/arena.h"
#include "cxm/v1/events.pb-c.h"
#include "cxm/v1/profile.pb-c.h"

#define PROF_MAX_ATTRIBUTES 200
#define PROF_MAX_TRAITS 100
#define PROF_MAX_IDENTITIES 100
#define PROF_MAX_VALUE_BYTES 8192
#define PROF_MAX_NAME 128

typedef Cxm__V1__Profile prof_profile;
typedef Cxm__V1__Value prof_value;

/* A fresh empty profile. */
prof_profile *prof_new(cxm_arena *a, const char *customer_id, int64_t now_ms);

/* Decode a stored profile into a, standard_traits always set. NULL when the
 * bytes are not a profile (or one with a linked identity missing its
 * identity) or out of memory. */
prof_profile *prof_unpack(cxm_arena *a, const void *buf, size_t n);

/* A deep copy (pack + unpack into a). NULL when out of memory. */
prof_profile *prof_copy(cxm_arena *a, const prof_profile *p);

/* Deep value helpers. */
bool prof_value_equal(const prof_value *x, const prof_value *y);
/* -1, 0, 1 for comparable kinds (numbers with numbers, timestamps with
 * timestamps, strings bytewise, bools false < true); *comparable false for
 * mixed kinds. */
int prof_value_cmp(const prof_value *x, const prof_value *y, bool *comparable);
prof_value *prof_value_copy(cxm_arena *a, const prof_value *v);

/* Check a caller-chosen name: [A-Za-z0-9_.-], 1..128 bytes. */
bool prof_name_valid(const char *s);
/* Check a value: a kind set, strings valid UTF-8 <= 8 KiB, numbers finite,
 * timestamps >= 0. field names it in err. */
int prof_value_check(const prof_value *v, const char *field, char *err, size_t errlen);

/* The attribute with this name, or NULL. */
Cxm__V1__Attribute *prof_attr_find(const prof_profile *p, const char *name);

/* Apply one update (validated) at time now_ms with source. Returns 0 when
 * applied or ignored by its strategy (*changed says which), CXM_EINVAL
 * when the strategy does not fit the value's type, CXM_ESTALE when the
 * profile would exceed PROF_MAX_ATTRIBUTES; err then names field, the
 * update's path in its request ("attributes[3]"). */
int prof_attr_apply(cxm_arena *a, prof_profile *p, const Cxm__V1__AttributeUpdate *u,
                    const char *field, const char *source, int64_t now_ms, bool *changed, char *err,
                    size_t errlen);

/* Set or unset a generic trait; an update observed before the stored one is
 * ignored (*applied false). */
int prof_trait_set(cxm_arena *a, prof_profile *p, const char *name, const prof_value *v,
                   const char *source, int64_t observed_ms, int64_t now_ms, bool *applied);
bool prof_trait_unset(prof_profile *p, const char *name);

/* Apply a StandardTraitsUpdate with the monotonic rules of the contract.
 * Feedback's answers (last_nps, last_csat, last_ces) are stamped with
 * observed_ms and replace the stored one only when not older than it. */
void prof_standard_apply(cxm_arena *a, prof_profile *p, const Cxm__V1__StandardTraitsUpdate *u,
                         int64_t observed_ms);

/* Record a consent decision; an older decision than the stored one is not
 * applied (*applied false). Returns the scope's current decision. */
Cxm__V1__Consent *prof_consent_set(cxm_arena *a, prof_profile *p, const Cxm__V1__Consent *c,
                                   bool *applied);

/* Identity helpers; identities compare by (type, custom_type, value). */
bool prof_identity_equal(const Cxm__V1__Identity *x, const Cxm__V1__Identity *y);
bool prof_has_identity(const prof_profile *p, const Cxm__V1__Identity *id);
int prof_identity_add(cxm_arena *a, prof_profile *p, const Cxm__V1__Identity *id,
                      const char *source, const char *merge_id, int64_t now_ms);
void prof_identity_remove(prof_profile *p, const Cxm__V1__Identity *id);

/* Identity types that one profile may hold only one value of. */
typedef struct prof_unique_types {
    Cxm__V1__IdentityType types[8];
    size_t n;
} prof_unique_types;

/* Whether adding id to target would give it two values of a unique type
 * (CXM_ESTALE); err names the type and both values. */
int prof_unique_check(const prof_profile *target, const Cxm__V1__Identity *id,
                      const prof_unique_types *unique, char *err, size_t errlen);

/* Whether merging source into target would give the result two values of
 * a unique type, or too many identities; err names the problem. */
int prof_merge_check(const prof_profile *target, const prof_profile *source,
                     const prof_unique_types *unique, char *err, size_t errlen);

/* Merge source into target (in place): identities move (tagged with
 * merge_id), attributes combine by the target's remembered strategies,
 * traits by later observed time, consents by later decision, standard traits
 * by their monotonic rules. */
int prof_merge(cxm_arena *a, prof_profile *target, const prof_profile *source, const char *merge_id,
               int64_t now_ms, char *err, size_t errlen);

/* Undo a merge on the target by three-way reconciliation: for each
 * attribute, trait and consent, a value still as the merge left it (after)
 * returns to what it was before; one changed since keeps its current value.
 * Identities the merge brought leave. The result replaces *current's
 * content; with no change since the merge it equals before exactly. */
prof_profile *prof_unmerge(cxm_arena *a, const prof_profile *current, const prof_profile *before,
                           const prof_profile *after, const char *merge_id);

/* ---- what a change did, for the events profile publishes ---- */

/* The traits of p as they are now, for prof_traits_diff after p changes:
 * shallow copies of each Trait (prof_trait_set gives a changed trait a new
 * value instead of changing the old one in place, so the copies keep the
 * old values). NULL when out of memory (or p has no traits: then *n is 0). */
Cxm__V1__Trait **prof_traits_keep(cxm_arena *a, const prof_profile *p, size_t *n);

/* The generic traits that changed from before[0..nbefore) (sorted by name,
 * as a profile keeps them) to p: out->traits gets p's traits that are new
 * or hold another value, out->removed_trait_names the names p no longer
 * has. Pointers into p and before. 0 or CXM_ENOMEM. */
int prof_traits_diff(cxm_arena *a, Cxm__V1__Trait *const *before, size_t nbefore,
                     const prof_profile *p, Cxm__V1__TraitsChanged *out);

/* The segments entered and left from before[0..nbefore) to p->segment_ids
 * (both sorted, as pdb keeps them). Pointers into both lists. 0 or
 * CXM_ENOMEM. */
int prof_segments_diff(cxm_arena *a, char *const *before, size_t nbefore, const prof_profile *p,
                       Cxm__V1__SegmentMembershipChanged *out);

/* Segment conditions: validate a tree (depth <= 8, nodes <= 64, every node
 * set), and evaluate it against a profile. */
int prof_condition_check(const Cxm__V1__SegmentCondition *c, char *err, size_t errlen);
bool prof_condition_eval(const Cxm__V1__SegmentCondition *c, const prof_profile *p);

/* A field condition (SearchProfiles and segments) against a profile. */
bool prof_field_eval(const Cxm__V1__FieldCondition *f, const prof_profile *p);
int prof_field_check(const Cxm__V1__FieldCondition *f, const char *field, char *err, size_t errlen);

#endif
