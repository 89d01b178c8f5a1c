/*
 * ident.h - identity values as the profile service stores and matches them.
 *
 * Two spellings of one identity must meet on one key, or merges miss; and a
 * placeholder value ("null", "0", an all-zero device id) must never be
 * stored, or every customer who sends it is merged into one. So every value
 * passes here first: validated (UTF-8, length), normalised per kind, and
 * checked against the junk list and the configured block list.
 *
 * Pure functions over caller buffers; thread-safe once configured.
 */
#ifndef CXM_PROFILE_IDENT_H
#define CXM_PROFILE_IDENT_H

#include <stdbool.h>
#include <stddef.h>

#define PROF_IDENT_MAX 256      /* bytes of a value (and of a customer id) */
#define PROF_CUSTOM_TYPE_MAX 64 /* bytes of a custom identity type name */

typedef enum prof_ident_kind {
    PROF_IDENT_CUSTOMER_ID = 1,
    PROF_IDENT_EMAIL,
    PROF_IDENT_PHONE,
    PROF_IDENT_DEVICE_ID,
    PROF_IDENT_ANONYMOUS_ID,
    PROF_IDENT_CRM_ID,
    PROF_IDENT_CUSTOM,
} prof_ident_kind;

typedef struct prof_ident_config {
    /* Digits prepended to national phone numbers that start with a single 0
     * trunk prefix ("82" turns 010-1234-5678 into +821012345678). NULL or ""
     * = numbers must carry their country prefix (+CC or 00CC). */
    const char *default_phone_country;
    /* Values refused for every kind, compared after normalisation. */
    const char *const *blocklist;
    size_t nblocklist;
} prof_ident_config;

/* Normalise value (len bytes) of the given kind into out (PROF_IDENT_MAX + 1
 * bytes, NUL-terminated). Returns 0, or CXM_EINVAL with *why set to a
 * sentence naming the problem ("is not an email address", "is a placeholder
 * value, not an identity", ...). cfg may be NULL. */
int prof_ident_normalize(const prof_ident_config *cfg, prof_ident_kind kind, const char *value,
                         size_t len, char *out, size_t *out_len, const char **why);

#endif
