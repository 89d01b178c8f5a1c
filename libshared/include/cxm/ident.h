/*
 * ident.h - identity values as cxm stores and matches them, shared by the
 * profile service (which owns identities) and the services that resolve
 * customers through it (journey, feedback: cxm/resolve.h).
 *
 * Two spellings of one identity must meet on one key, or merges miss; and a
 * placeholder value ("null", "0", an all-zero device id) must never be
 * stored, or every customer who sends it is merged into one. So every value
 * passes here first: validated (UTF-8, length), normalised per kind, and
 * checked against the junk list and the configured block list. A service
 * that resolves through profile normalises with the same rules, so its cache
 * keys are the stored spellings.
 *
 * Pure functions over caller buffers (or a caller's arena); thread-safe
 * once configured.
 */
#ifndef CXM_IDENT_H
#define CXM_IDENT_H

#include <stdbool.h>
#include <stddef.h>

#include "cxm/arena.h"
#include "cxm/v1/common.pb-c.h"

#define CXM_IDENT_MAX 256            /* bytes of a value (and of a customer id) */
#define CXM_IDENT_CUSTOM_TYPE_MAX 64 /* bytes of a custom identity type name */

/* The kinds, numbered as Cxm__V1__IdentityType. */
typedef enum cxm_ident_kind {
    CXM_IDENT_CUSTOMER_ID = 1,
    CXM_IDENT_EMAIL,
    CXM_IDENT_PHONE,
    CXM_IDENT_DEVICE_ID,
    CXM_IDENT_ANONYMOUS_ID,
    CXM_IDENT_CRM_ID,
    CXM_IDENT_CUSTOM,
} cxm_ident_kind;

typedef struct cxm_ident_config {
    /* Digits prepended to national phone numbers that start with a single 0
     * trunk prefix ("82" turns 010-1234-5678 into +821012345678): 1 to 4
     * digits. NULL, "" (or anything else) = numbers must carry their country
     * prefix (+CC or 00CC). */
    const char *default_phone_country;
    /* Values refused for every kind, compared after normalisation. */
    const char *const *blocklist;
    size_t nblocklist;
} cxm_ident_config;

/* Normalise value (len bytes) of the given kind into out (CXM_IDENT_MAX + 1
 * bytes, NUL-terminated). Returns 0, or CXM_EINVAL with *why set to a
 * sentence naming the problem ("is not an email address", "is a placeholder
 * value, not an identity", ...). cfg may be NULL. */
int cxm_ident_normalize(const cxm_ident_config *cfg, cxm_ident_kind kind, const char *value,
                        size_t len, char *out, size_t *out_len, const char **why);

/* The enum name of an identity type ("IDENTITY_TYPE_EMAIL"), for messages;
 * "?" for a number outside the enum. Never NULL. */
const char *cxm_ident_type_name(Cxm__V1__IdentityType t);

/* Validate an Identity message (type, custom_type, value) and normalise it
 * in place: value becomes a normalised copy in arena a, custom_type "" for
 * the built-in types. Returns 0, CXM_ENOMEM, or CXM_EINVAL with a message
 * in err (CXM_SVC_ERR_MAX bytes) that starts with the field path under
 * field ("events[3].customer.identity.value: ...") and says what to do.
 * id may be NULL (a missing message: its type is required). */
int cxm_ident_check(const cxm_ident_config *cfg, cxm_arena *a, Cxm__V1__Identity *id,
                    const char *field, char *err);

/* A customer id as cxm assigns them: text of 1 to CXM_IDENT_MAX bytes.
 * 0 or CXM_EINVAL with err naming field. */
int cxm_ident_check_customer_id(const char *id, const char *field, char *err);

/* A CustomerRef: exactly one of customer_id or identity, valid; the identity
 * normalised in place as cxm_ident_check does. Same returns. */
int cxm_ident_check_ref(const cxm_ident_config *cfg, cxm_arena *a, Cxm__V1__CustomerRef *ref,
                        const char *field, char *err);

#endif
