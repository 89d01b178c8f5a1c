/*
 * auth.h - who is calling (bearer tokens: JWT or a static token file), what
 * they may call (scopes per service and access level), and how often
 * (a token bucket per subject).
 *
 * Credentials travel in the `authorization` metadata as "Bearer <token>".
 * A token is either
 *   - a JWT signed with HS256 (a shared secret read from a file), RS256 or
 *     ES256 (a public key PEM file), checked for exp (required), nbf, iss and
 *     aud (a string or an array) with a clock skew; alg "none" and any alg
 *     but the configured one are refused. The subject is `sub`, the scopes
 *     the space-separated `scope` claim or the `scp` array; or
 *   - a line of the token file: "<token> <subject> <scope,scope,...>"
 *     (blank lines and # comments allowed). Tokens are kept as SHA-256
 *     hashes and compared with CRYPTO_memcmp against every line.
 * Both may be configured at once. A verified JWT is remembered (by its
 * SHA-256, in a table of jwt_cache entries emptied on reload), so a client
 * repeating its token pays the signature check once. The key and the token
 * file are reloaded
 * when their mtime or size changes (checked at most once a second, on the
 * calls themselves); a file that no longer loads keeps the previous one
 * in force and is logged.
 *
 * Scopes: "<area>:read" and "<area>:write" for the areas profile, journey,
 * feedback and reco; "admin" grants everything; "internal" grants the
 * internal RPCs (calls the services make to each other). Unknown scopes in
 * a JWT are ignored; in the token file they are an error (a typo would
 * otherwise silently grant less).
 *
 * Access levels: each service lists the level of every method next to its
 * method table (cxm_service.access); the server runtime checks it before a
 * request is read. A method with no level is refused when auth is on
 * (fails closed). The table of the four services:
 *
 *   level        scope needed      methods
 *   PUBLIC       none              grpc.health.v1.Health (every method)
 *   ANY          any valid token   server reflection
 *   READ         <area>:read       GetProfile, GetDeletionReceipt, SearchProfiles,
 *                                  ListSegmentMembers; GetTimeline, GetJourneyState,
 *                                  GetStageRules, Funnel, Paths, TouchpointStats;
 *                                  GetScores, GapAnalysis, ListFollowUps, AnalyzeText,
 *                                  GetSurvey, ListSurveys, CheckEligibility,
 *                                  GetFollowUpPolicy; Recommend, SimilarExperiences,
 *                                  GetModelInfo, ListExperiences
 *   WRITE        <area>:write      UpsertProfile, ResolveIdentity (may create a
 *                                  profile), MergeProfiles, UnmergeProfile, SetConsent,
 *                                  UpsertSegment; Track, TrackStream, UpsertStageRules;
 *                                  UpsertSurvey, SubmitResponse, UpdateFollowUp,
 *                                  SetFollowUpPolicy; UpsertExperience, RecordOutcome
 *   ADMIN        admin             DeleteProfile (erasure), TrainModel
 *   ADMIN_READ   admin             BusService/GetBusStatus
 *   INTERNAL     internal          ResolveIdentities (the resolver), WriteTraits,
 *                                  RecordInteractions
 * WRITE, ADMIN and INTERNAL calls are audited (one "audit" log line each);
 * reads are not. "admin" satisfies every level.
 *
 * Thread-safety: a cxm_auth is shared by every worker; every function but
 * create/destroy is thread-safe. Tokens are never logged nor echoed in a
 * message.
 */
#ifndef CXM_AUTH_H
#define CXM_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct cxm_auth cxm_auth;

/* Longest token accepted, in bytes: a bigger "token" is refused before any
 * work is done on it. */
#define CXM_AUTH_TOKEN_MAX 8192
#define CXM_AUTH_SUBJECT_MAX 128

/* The scope bits of a principal. */
enum cxm_scope {
    CXM_SCOPE_PROFILE_READ = 1u << 0,
    CXM_SCOPE_PROFILE_WRITE = 1u << 1,
    CXM_SCOPE_JOURNEY_READ = 1u << 2,
    CXM_SCOPE_JOURNEY_WRITE = 1u << 3,
    CXM_SCOPE_FEEDBACK_READ = 1u << 4,
    CXM_SCOPE_FEEDBACK_WRITE = 1u << 5,
    CXM_SCOPE_RECO_READ = 1u << 6,
    CXM_SCOPE_RECO_WRITE = 1u << 7,
    CXM_SCOPE_ADMIN = 1u << 8,
    CXM_SCOPE_INTERNAL = 1u << 9,
};

typedef enum cxm_access {
    CXM_ACCESS_UNSET = 0, /* no level given: refused when auth is on */
    CXM_ACCESS_PUBLIC,    /* no credentials needed (health) */
    CXM_ACCESS_ANY,       /* any valid credential (reflection) */
    CXM_ACCESS_READ,      /* <area>:read */
    CXM_ACCESS_WRITE,     /* <area>:write, audited */
    CXM_ACCESS_ADMIN_READ,
    CXM_ACCESS_ADMIN,    /* admin, audited */
    CXM_ACCESS_INTERNAL, /* internal, audited */
} cxm_access;

/* One row of a service's access table (cxm_service.access). */
typedef struct cxm_method_access {
    const char *method; /* "GetProfile" */
    cxm_access access;
} cxm_method_access;

typedef struct cxm_principal {
    char subject[CXM_AUTH_SUBJECT_MAX];
    uint32_t scopes; /* enum cxm_scope bits */
} cxm_principal;

typedef struct cxm_auth_opts {
    const char *tokens_file;  /* static tokens; NULL or "" = none */
    const char *jwt_key_file; /* HS256 secret or RS256/ES256 public key PEM */
    const char *jwt_alg;      /* "HS256", "RS256" or "ES256"; required with a key */
    const char *jwt_issuer;   /* required iss; NULL or "" = not checked */
    const char *jwt_audience; /* required in aud; NULL or "" = not checked */
    int64_t clock_skew_s;     /* leeway on exp and nbf; < 0 = 60 */
    double rate_rps;          /* per-subject requests per second; 0 = no limit */
    int64_t rate_burst;       /* bucket size; 0 = max(1, rate_rps) */
    size_t rate_subjects;     /* subjects tracked; 0 = 4096 (oldest evicted) */
    /* Verified JWTs remembered by their SHA-256 (only exp and nbf are
     * checked again on a hit); 0 = 1024, < 0 = none. */
    int64_t jwt_cache;
} cxm_auth_opts;

/* Load the configured credentials. Returns 0, or CXM_EINVAL with a sentence
 * in err (a missing file, a key of the wrong type, a bad token-file line, an
 * alg without a key); nothing configured at all is CXM_EINVAL too. */
int cxm_auth_create(const cxm_auth_opts *opts, cxm_auth **out, char *err, size_t errlen);
void cxm_auth_destroy(cxm_auth *a);

/* Check the value of an `authorization` header (len bytes, not
 * NUL-terminated; NULL when the call had none) at now_s (Unix seconds).
 * Returns 0 and fills *out, or CXM_EAUTH with a sentence in why saying
 * what is wrong (missing, not "Bearer", malformed, bad signature, expired,
 * not yet valid, wrong issuer or audience, unknown token); why never holds
 * the token. */
int cxm_auth_check(cxm_auth *a, const char *value, size_t len, int64_t now_s, cxm_principal *out,
                   char *why, size_t whylen);

/* Check one bare token (no "Bearer "), as cxm_auth_check. */
int cxm_auth_check_token(cxm_auth *a, const char *token, size_t len, int64_t now_s,
                         cxm_principal *out, char *why, size_t whylen);

/* The scope a level needs in a service area ("profile"): "profile:write",
 * "admin", "internal", or NULL for PUBLIC, ANY and UNSET. */
const char *cxm_access_scope(cxm_access level, const char *area, char *buf, size_t len);

/* May p call a method of this level in this area? Returns 0, or CXM_EPERM
 * with "requires scope <scope>" in why (or, for UNSET, that the method has
 * no access level). */
int cxm_auth_allow(const cxm_principal *p, cxm_access level, const char *area, char *why,
                   size_t whylen);

/* Writes, erasures and internal calls are audited. */
bool cxm_access_audited(cxm_access level);

/* Parse a scope name ("profile:read") into its bit; 0 when unknown. */
uint32_t cxm_scope_parse(const char *name, size_t len);

/* Take one request from subject's bucket at now_ms (any monotonic clock).
 * Returns 0, or CXM_ELIMIT with *retry_ms set to when a request will be
 * allowed again. Always 0 when no limit is configured. */
int cxm_auth_rate(cxm_auth *a, const char *subject, int64_t now_ms, int64_t *retry_ms);

#endif
