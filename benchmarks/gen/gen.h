/*
 * gen.h - a synthetic customer-experience world, reproducible from a seed:
 * the data the benchmarks, the tests and the quick-start demo share.
 *
 * A world is N customers over D days. Each customer has several identities
 * (anonymous web cookies and an app device id before they sign up; email,
 * phone and CRM id once known) and walks the journey awareness ->
 * consideration -> purchase -> use -> retention -> advocacy across the
 * channels web, app, contact centre, store, email and social, with drop-off
 * at every stage, repeat purchases and churn. Product events pick items from
 * a long-tailed popularity inside the customer's taste cluster, so that
 * collaborative filtering has structure to learn. Surveys (NPS 0-10, CSAT 1-5,
 * CES 1-7) carry expectation and experience ratings per touchpoint and free
 * text in Korean or English whose sentiment follows the score.
 *
 * Planted structure that analysis must recover (written to truth.json):
 * a few touchpoints whose experience falls short of expectation by a known
 * gap, and whose experience - expectation drives the NPS score with a known
 * slope; every other rated touchpoint has no gap and a small slope. The
 * customers with an NPS score of 6 or less are the detractors who should
 * get follow-ups.
 *
 * Files written into the output directory (see cxm_gen_run):
 *   pb:  profiles.pb      UpsertProfileRequest, one per signed-up customer
 *        track.pb         TrackRequest, up to batch events each
 *        responses.pb     SubmitResponseRequest, one per survey response
 *        interactions.pb  RecordInteractionsRequest, up to batch each
 *        surveys.pb       UpsertSurveyRequest, the three surveys answered
 *        experiences.pb   UpsertExperienceRequest, one per catalogue item
 *        stage_rules.pb   one UpsertStageRulesRequest mapping events to stages
 *   csv: customers.csv identities.csv events.csv responses.csv ratings.csv
 *        interactions.csv (RFC 4180: header row, fields with a comma, quote
 *        or line break quoted, quotes doubled)
 *   always: truth.json
 * A .pb file is a stream of messages, each preceded by its length as a
 * protobuf base-128 varint (delim.h reads and writes that framing).
 *
 * Records come out customer by customer: a customer's events in time
 * order, each response and interaction after the event that caused it.
 * Reproducible: the same parameters give byte-identical files with the same
 * build. Each customer draws from a stream seeded by the seed and the
 * customer's number, so the formats written change nothing, and a world with
 * more customers (and otherwise the same flags) keeps the first ones as they
 * were.
 *
 * Not thread-safe per run; separate runs share nothing.
 */
#ifndef CXM_GEN_H
#define CXM_GEN_H

#include <stddef.h>
#include <stdint.h>

/* Limits of the parameters, checked by cxm_gen_check(). */
#define CXM_GEN_MAX_CUSTOMERS 10000000
#define CXM_GEN_MAX_DAYS 3650
#define CXM_GEN_MIN_ITEMS 10
#define CXM_GEN_MAX_ITEMS 1000000
#define CXM_GEN_MAX_CLUSTERS 64
#define CXM_GEN_ITEMS_PER_CLUSTER 5 /* fewest items a taste cluster may hold */
#define CXM_GEN_MAX_BATCH 1000      /* TrackRequest and RecordInteractions cap */

/* Output formats, OR-ed into cxm_gen_params.formats. */
#define CXM_GEN_FORMAT_PB 1u
#define CXM_GEN_FORMAT_CSV 2u

typedef struct cxm_gen_params {
    uint64_t seed;
    int64_t customers; /* 1 .. CXM_GEN_MAX_CUSTOMERS */
    int64_t days;      /* 1 .. CXM_GEN_MAX_DAYS: the world's time span */
    int64_t items;     /* catalogue size, MIN_ITEMS .. MAX_ITEMS */
    int64_t clusters;  /* taste clusters, 2 .. MAX_CLUSTERS */
    int64_t batch;     /* events / interactions per request, 1 .. MAX_BATCH */
    int64_t start_ms;  /* the first day starts here (Unix ms, UTC) */
    unsigned formats;  /* CXM_GEN_FORMAT_* bits; truth.json is always written */
    const char *out;   /* output directory; created if missing */
} cxm_gen_params;

/* What a run produced, for the caller's summary line. */
typedef struct cxm_gen_counts {
    uint64_t customers, signed_up, identities, events, responses, ratings, interactions;
    uint64_t detractors;
} cxm_gen_counts;

/* The defaults: seed 1, 10000 customers, 90 days, 1000 items, 8 clusters,
 * batches of 500, start 2025-01-01T00:00Z, pb and csv, no output directory. */
void cxm_gen_params_default(cxm_gen_params *p);

/* Parse a comma-separated list of formats ("pb", "csv", "pb,csv") into
 * CXM_GEN_FORMAT_* bits. 0, or CXM_EINVAL with a message naming the format. */
int cxm_gen_parse_formats(const char *list, unsigned *formats, char *err, size_t errlen);

/* Check parameters against the limits above and against each other.
 * 0, or CXM_EINVAL with a message that names the flag (--customers, ...). */
int cxm_gen_check(const cxm_gen_params *p, char *err, size_t errlen);

/* Generate the world into p->out. Returns 0 and fills *counts, or a CXM_E*
 * code with a message in err (CXM_EINVAL for bad parameters, CXM_EIO when a
 * file cannot be created or written, CXM_ENOMEM). Files already in the
 * directory with the same names are replaced. */
int cxm_gen_run(const cxm_gen_params *p, cxm_gen_counts *counts, char *err, size_t errlen);

#endif
