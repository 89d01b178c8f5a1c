/*
 * cxm-bench-nbe: a ratings file through PersonalisationService's gRPC API,
 * the RPC-side twin of cxm-eval.
 *
 *   cxm-bench-nbe --target HOST:PORT --ratings ratings.csv [--load] [--quality]
 *                 [--rules] [--requests-out FILE [--histories-out FILE]] [--min-history 200]
 *                 [--json]
 *
 * The ratings are read, de-duplicated and split with cxm-eval's own code
 * (evalcsv.h: --ratings --split random, the same --seed and --test-frac give
 * the same split), and scored with its metrics (evalmetrics.h), so the two
 * numbers can be compared to the last digit. Phases, in this order:
 *   --load          UpsertExperience per item of the training part (the
 *                   model's catalogue, as cxm-eval's; kind CONTENT, the title
 *                   from movies.csv beside the ratings when there is one),
 *                   RecordInteractions of the training part in batches of
 *                   1000 (customer identity external_id "ml-<user>", weight =
 *                   rating, occurred_at = ts x 1000: MovieLens' ts are Unix
 *                   seconds), then TrainModel (synchronous, ACTIVATION_ALWAYS).
 *   --quality       Recommend (k, no context) by identity for every user with
 *                   training and test interactions; NDCG@k and the rest of
 *                   cxm-eval's metrics over the answers, which must all come
 *                   from the model --load trained (else the one serving, from
 *                   GetModelInfo).
 *   --rules         UpsertExperience again with eligibility rules, contact
 *                   caps, values and weights on part of the catalogue
 *                   (nbe_rules), for the latency benchmark.
 *   --requests-out  For every user with at least --min-history training
 *                   interactions, a Recommend by identity gives the customer
 *                   id; the file gets one RecommendRequest per such customer
 *                   (customer_id ref, k, web / home_banner / consideration),
 *                   length-delimited, for cxm-bench --requests --loop.
 *   --histories-out With --requests-out: the training interactions of those
 *                   customers as CSV customer_id,item,weight,ts (ts in Unix
 *                   seconds), what cxmd holds for them, so that a peer
 *                   server outside cxm (benchmarks/reco_peer.py) can score the
 *                   same histories for the same requests.
 * Exit status: 0; 1 for a data error or a failed call (a message names it);
 * 2 for usage; 77 when the server answers UNIMPLEMENTED (no
 * PersonalisationService yet), so that tests can skip.
 */
#include <errno.h>
#include <stdarg.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cxm/arena.h"
#include "cxm/client.h"
#include "cxm/err.h"
#include "cxm/opts.h"
#include "cxm/v1/personalisation.pb-c.h"
#include "delim.h"
#include "personalisation/eval/evalcsv.h"
#include "personalisation/eval/evalmetrics.h"
#include "personalisation/reco/recomatrix.h"

#define NBE_SVC "/cxm.v1.PersonalisationService/"
#define NBE_EXIT_SKIP 77
#define NBE_BATCH 1000       /* interactions per RecordInteractions, the API's limit */
#define NBE_TITLE_MAX 256    /* bytes of an experience title */
#define NBE_TRAIN_MS 1800000 /* a synchronous TrainModel may take this long */
#define NBE_IDENTITY_TYPE "external_id"
#define NBE_UPSERT_THREADS 16 /* UpsertExperience calls in flight */

typedef struct nbe_cfg {
    const char *target, *ratings, *movies, *test_frac, *split, *algorithm, *requests_out, *recs_out,
        *histories_out;
    int64_t seed, k, min_history, timeout_ms;
    bool load, quality, rules, json;
    const char *token, *token_file; /* --token, --token-file (CXM_TOKEN[_FILE]) */
    cxm_channel_opts chan;          /* TLS flags */
} nbe_cfg;

/* The ratings as cxm-eval sees them: the training users and items (the
 * catalogue) first, then those only in test. */
typedef struct nbe_data {
    recoids users, items;
    recolog train, test;
    uint32_t nusers, nitems; /* training users and items */
    reco_matrix trainm, testm;
    char **titles; /* nitems entries, NULL where movies.csv has none */
} nbe_data;

/* What TrainModel answered, for the report and for cxm-eval's flags. */
typedef struct nbe_model {
    uint64_t version;
    const char *algo; /* cxm-eval's name: ease, itemknn, als, pop */
    char eval_args[512];
    int64_t training_ms;
} nbe_model;

typedef struct nbe_result {
    eval_summary sum;
    uint64_t cold_start; /* answers flagged cold start (users with history!) */
    double p50_us, p99_us;
} nbe_result;

typedef struct nbe_ctx {
    const nbe_cfg *cfg;
    Cxm__V1__Algorithm algorithm;
    cxm_channel *ch;
    cxm_arena arena; /* one call's messages; reset after each */
    nbe_data d;
    nbe_model model;
    FILE *recs; /* --recs-out, while --quality runs */
} nbe_ctx;

static double nbe_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* ---- calls ---------------------------------------------------------------- */

/* One unary call; on OK *resp is decoded in c's arena. Anything else ends
 * the run after a message naming what was being done: NBE_EXIT_SKIP for
 * UNIMPLEMENTED, 1 otherwise. */
static int nbe_call(nbe_ctx *c, const char *method, const void *req,
                    const ProtobufCMessageDescriptor *desc, int64_t timeout_ms, void *resp,
                    const char *what)
{
    char path[96];
    snprintf(path, sizeof path, NBE_SVC "%s", method);
    cxm_client_result r = {0};
    int rc = cxm_client_unary_pb(c->ch, path, req, desc, &c->arena, timeout_ms,
                                 (ProtobufCMessage **)resp, &r);
    if (rc != 0) {
        fprintf(stderr, "cxm-bench-nbe: %s: cannot call %s: %s\n", what, method, cxm_strerror(rc));
        return 1;
    }
    int status = 0;
    if (r.status == GRPC_STATUS_UNIMPLEMENTED) {
        fprintf(stderr, "cxm-bench-nbe: %s does not serve %s (%s): nothing to measure\n",
                c->cfg->target, path, r.details);
        status = NBE_EXIT_SKIP;
    } else if (r.status != GRPC_STATUS_OK) {
        fprintf(stderr, "cxm-bench-nbe: %s: %s answered status %d: %s\n", what, method,
                (int)r.status, r.details);
        status = 1;
    }
    cxm_client_result_dispose(&r);
    return status;
}

static char *nbe_fmt(cxm_arena *a, const char *f, ...) __attribute__((format(printf, 2, 3)));
static char *nbe_fmt(cxm_arena *a, const char *f, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, f);
    int n = vsnprintf(buf, sizeof buf, f, ap);
    va_end(ap);
    return cxm_arena_strndup(a, buf,
                             n < 0                    ? 0
                             : (size_t)n < sizeof buf ? (size_t)n
                                                      : sizeof buf - 1);
}

/* User u of the file as a customer: the identity external_id "ml-<user>". */
static Cxm__V1__CustomerRef *nbe_ref(nbe_ctx *c, uint32_t u)
{
    Cxm__V1__Identity *id = cxm_arena_alloc(&c->arena, sizeof *id);
    Cxm__V1__CustomerRef *ref = cxm_arena_alloc(&c->arena, sizeof *ref);
    char *value = nbe_fmt(&c->arena, "ml-%s", c->d.users.names[u]);
    if (!id || !ref || !value)
        return NULL;
    cxm__v1__identity__init(id);
    id->type = CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_CUSTOM;
    id->custom_type = NBE_IDENTITY_TYPE;
    id->value = value;
    cxm__v1__customer_ref__init(ref);
    ref->key_case = CXM__V1__CUSTOMER_REF__KEY_IDENTITY;
    ref->identity = id;
    return ref;
}

/* ---- data ----------------------------------------------------------------- */

/* cxm-eval --ratings --split random|temporal, step by step (eval_load,
 * eval_prepare). */
static int nbe_read(const nbe_cfg *cfg, nbe_data *d)
{
    char *end;
    errno = 0;
    double frac = strtod(cfg->test_frac, &end);
    if (errno || end == cfg->test_frac || *end || !(frac >= 0 && frac <= 1)) {
        fprintf(stderr, "cxm-bench-nbe: --test-frac %s: want a number from 0 to 1\n",
                cfg->test_frac);
        return 2;
    }
    bool temporal = strcmp(cfg->split, "temporal") == 0;
    if (!temporal && strcmp(cfg->split, "random") != 0) {
        fprintf(stderr, "cxm-bench-nbe: --split %s: want random or temporal\n", cfg->split);
        return 2;
    }
    char err[512];
    recolog all = {0};
    int rc = eval_csv_read(cfg->ratings, &d->users, &d->items, &all, err, sizeof err);
    if (rc) {
        fprintf(stderr, "cxm-bench-nbe: %s\n", err);
        recolog_free(&all);
        return 1;
    }
    recolog_dedupe(&all);
    rc = eval_split(&all, temporal ? EVAL_SPLIT_TEMPORAL : EVAL_SPLIT_RANDOM, frac,
                    (uint64_t)cfg->seed, &d->train, &d->test);
    recolog_free(&all);
    if (rc == 0)
        rc = eval_reindex(&d->users, &d->items, &d->train, &d->test, &d->nusers, &d->nitems);
    if (rc == 0)
        rc = recomatrix_build(&d->train, d->nusers, d->nitems, &d->trainm);
    if (rc == 0)
        rc = recomatrix_build(&d->test, d->users.n, d->items.n, &d->testm);
    if (rc == 0 && d->train.n == 0)
        rc = CXM_EINVAL;
    if (rc)
        fprintf(stderr, "cxm-bench-nbe: %s: %s\n", cfg->ratings,
                rc == CXM_EINVAL ? "no training interactions" : cxm_strerror(rc));
    return rc ? 1 : 0;
}

/* At most max bytes of s, cut at a UTF-8 character boundary. */
static size_t nbe_utf8_cut(const char *s, size_t len, size_t max)
{
    if (len <= max)
        return len;
    while (max > 0 && ((unsigned char)s[max] & 0xC0) == 0x80)
        max--;
    return max;
}

/* The title field of a movies.csv line after "movieId,": quoted when it
 * holds a comma ("" inside is one "), else up to the next comma. Written
 * into out (NBE_TITLE_MAX + 1 bytes). */
static void nbe_title_field(const char *p, char *out)
{
    size_t n = 0;
    char tmp[4096];
    if (*p == '"') {
        for (p++; *p && n < sizeof tmp - 1; p++) {
            if (*p == '"' && p[1] != '"')
                break;
            if (*p == '"')
                p++;
            tmp[n++] = *p;
        }
    } else {
        while (*p && *p != ',' && *p != '\r' && *p != '\n' && n < sizeof tmp - 1)
            tmp[n++] = *p++;
    }
    n = nbe_utf8_cut(tmp, n, NBE_TITLE_MAX);
    memcpy(out, tmp, n);
    out[n] = '\0';
}

/* The default movies file: movies.csv in the ratings' directory. */
static char *nbe_movies_path(const nbe_cfg *cfg)
{
    if (cfg->movies)
        return strdup(cfg->movies);
    const char *slash = strrchr(cfg->ratings, '/');
    size_t dir = slash ? (size_t)(slash - cfg->ratings) + 1 : 0;
    char *path = malloc(dir + sizeof "movies.csv");
    if (path) {
        memcpy(path, cfg->ratings, dir);
        memcpy(path + dir, "movies.csv", sizeof "movies.csv");
    }
    return path;
}

/* Titles of the catalogue from a MovieLens movies.csv (movieId,title,genres).
 * No such file is not an error: the experiences are titled by their ids. */
static int nbe_titles(const nbe_cfg *cfg, nbe_data *d)
{
    d->titles = calloc(d->nitems + 1, sizeof *d->titles);
    char *path = nbe_movies_path(cfg);
    FILE *f = path ? fopen(path, "r") : NULL;
    if (!d->titles || !path) {
        free(path);
        return CXM_ENOMEM;
    }
    if (!f) {
        fprintf(stderr, "cxm-bench-nbe: no %s (%s): experiences are titled by their ids\n", path,
                strerror(errno));
        free(path);
        return 0;
    }
    char *line = NULL, title[NBE_TITLE_MAX + 1];
    size_t cap = 0;
    int rc = 0;
    for (ssize_t len; rc == 0 && (len = getline(&line, &cap, f)) > 0;) {
        char *comma = strchr(line, ',');
        if (!comma)
            continue;
        *comma = '\0';
        uint32_t i = recoids_find(&d->items, line);
        if (i >= d->nitems || d->titles[i])
            continue;
        nbe_title_field(comma + 1, title);
        if (!(d->titles[i] = strdup(title)))
            rc = CXM_ENOMEM;
    }
    free(line);
    fclose(f);
    free(path);
    return rc;
}

static void nbe_data_free(nbe_data *d)
{
    for (uint32_t i = 0; d->titles && i < d->nitems; i++)
        free(d->titles[i]);
    free(d->titles);
    recoids_free(&d->users);
    recoids_free(&d->items);
    recolog_free(&d->train);
    recolog_free(&d->test);
    recomatrix_free(&d->trainm);
    recomatrix_free(&d->testm);
}

/* ---- catalogue -------------------------------------------------------------- */

/* Rules on part of the catalogue, chosen by item index so that every run
 * has the same: a third only on the web (home banner or product page) in
 * the consideration and purchase stages; a quarter capped at 3 impressions
 * a week and paused for a day after a dismissal; a tenth closed to the
 * segment "churned"; a twentieth needing the consent "personalisation",
 * which no benchmark customer has granted, so never eligible; a sixth are
 * offers with a value; a seventh boosted x2. The benchmark's context (web,
 * home_banner, consideration) passes the channel, placement and stage
 * rules: each costs its check without emptying the list. */
static int nbe_rules(cxm_arena *a, uint32_t i, Cxm__V1__Experience *e)
{
    static Cxm__V1__Channel web[] = {CXM__V1__CHANNEL__CHANNEL_WEB};
    static Cxm__V1__JourneyStage stages[] = {CXM__V1__JOURNEY_STAGE__JOURNEY_STAGE_CONSIDERATION,
                                             CXM__V1__JOURNEY_STAGE__JOURNEY_STAGE_PURCHASE};
    static char *placements[] = {"home_banner", "product_page"};
    static char *churned[] = {"churned"}, *consent[] = {"personalisation"};
    Cxm__V1__Eligibility *el = cxm_arena_alloc(a, sizeof *el);
    Cxm__V1__ContactCap *cap = cxm_arena_alloc(a, sizeof *cap);
    Cxm__V1__ContactCap **caps = cxm_arena_alloc(a, sizeof *caps);
    if (!el || !cap || !caps)
        return CXM_ENOMEM;
    cxm__v1__eligibility__init(el);
    if (i % 3 == 0) {
        el->channels = web, el->n_channels = 1;
        el->placements = placements, el->n_placements = 2;
        el->stages = stages, el->n_stages = 2;
    }
    if (i % 10 == 2)
        el->excluded_segment_ids = churned, el->n_excluded_segment_ids = 1;
    if (i % 20 == 3)
        el->required_consents = consent, el->n_required_consents = 1;
    e->eligibility = el;
    if (i % 4 == 1) {
        cxm__v1__contact_cap__init(cap);
        cap->max_contacts = 3;
        cap->period_ms = 7 * 86400000LL;
        caps[0] = cap;
        e->contact_caps = caps, e->n_contact_caps = 1;
        e->pause_after_dismiss_ms = 86400000LL;
    }
    if (i % 6 == 5) {
        e->kind = CXM__V1__EXPERIENCE_KIND__EXPERIENCE_KIND_OFFER;
        e->value = 1 + i % 9;
    }
    if (i % 7 == 4)
        e->weight = 2;
    return 0;
}

static int nbe_upsert(nbe_ctx *c, uint32_t i, bool rules)
{
    Cxm__V1__Experience e = CXM__V1__EXPERIENCE__INIT;
    e.experience_id = c->d.items.names[i];
    e.kind = CXM__V1__EXPERIENCE_KIND__EXPERIENCE_KIND_CONTENT;
    e.title = c->d.titles[i] ? c->d.titles[i] : c->d.items.names[i];
    if (rules && nbe_rules(&c->arena, i, &e) != 0) {
        fprintf(stderr, "cxm-bench-nbe: out of memory\n");
        return 1;
    }
    Cxm__V1__UpsertExperienceRequest req = CXM__V1__UPSERT_EXPERIENCE_REQUEST__INIT;
    req.experience = &e;
    Cxm__V1__UpsertExperienceResponse *resp;
    char what[320];
    snprintf(what, sizeof what, "experience %s", e.experience_id);
    return nbe_call(c, "UpsertExperience", &req, &cxm__v1__upsert_experience_response__descriptor,
                    c->cfg->timeout_ms, &resp, what);
}

/* One thread's share of the upserts: items first, first + step, ... */
typedef struct nbe_upserter {
    nbe_ctx c; /* a copy of the run's, with an arena of its own */
    uint32_t first, step;
    bool rules;
    atomic_int *failed; /* the first failure's exit status, shared */
    pthread_t tid;
} nbe_upserter;

static void *nbe_upsert_main(void *p)
{
    nbe_upserter *w = p;
    for (uint32_t i = w->first; i < w->c.d.nitems && !atomic_load(w->failed); i += w->step) {
        int rc = nbe_upsert(&w->c, i, w->rules), none = 0;
        cxm_arena_reset(&w->c.arena);
        if (rc)
            atomic_compare_exchange_strong(w->failed, &none, rc);
    }
    return NULL;
}

/* Every item of the training part, one UpsertExperience each, from
 * NBE_UPSERT_THREADS threads: a call is answered after its commit, and the
 * server commits the calls that wait together in one transaction, so one
 * call at a time would measure the disk's sync latency 9,000 times. */
static int nbe_upsert_all(nbe_ctx *c, bool rules)
{
    nbe_upserter w[NBE_UPSERT_THREADS];
    atomic_int failed = 0;
    size_t started = 0;
    double t0 = nbe_now();
    for (; started < NBE_UPSERT_THREADS; started++) {
        w[started] = (nbe_upserter){.c = *c,
                                    .first = (uint32_t)started,
                                    .step = NBE_UPSERT_THREADS,
                                    .rules = rules,
                                    .failed = &failed};
        cxm_arena_init(&w[started].c.arena, NULL, 0, 0);
        if (pthread_create(&w[started].tid, NULL, nbe_upsert_main, &w[started]) != 0) {
            cxm_arena_dispose(&w[started].c.arena);
            fprintf(stderr, "cxm-bench-nbe: cannot start an upsert thread\n");
            atomic_store(&failed, 1);
            break;
        }
    }
    for (size_t t = 0; t < started; t++) {
        pthread_join(w[t].tid, NULL);
        cxm_arena_dispose(&w[t].c.arena);
    }
    if (failed)
        return failed;
    fprintf(stderr, "cxm-bench-nbe: %" PRIu32 " experiences upserted%s in %.2f s\n", c->d.nitems,
            rules ? " with rules on part of them" : "", nbe_now() - t0);
    return 0;
}

/* ---- interactions ----------------------------------------------------------- */

static Cxm__V1__Interaction *nbe_interaction(nbe_ctx *c, const recolog_event *ev)
{
    Cxm__V1__Interaction *it = cxm_arena_alloc(&c->arena, sizeof *it);
    if (!it)
        return NULL;
    cxm__v1__interaction__init(it);
    const char *user = c->d.users.names[ev->user], *item = c->d.items.names[ev->item];
    it->interaction_id = nbe_fmt(&c->arena, "ml-%s-%s", user, item);
    it->customer = nbe_ref(c, ev->user);
    it->item_id = (char *)item;
    it->weight = ev->rating;
    it->occurred_at_unix_ms = ev->ts * 1000;
    it->interaction_type = "rating";
    return it->interaction_id && it->customer ? it : NULL;
}

/* One RecordInteractions of ev[0..n); *dups counts the server's duplicates. */
static int nbe_record_batch(nbe_ctx *c, const recolog_event *ev, size_t n, uint64_t *dups)
{
    Cxm__V1__Interaction **items = cxm_arena_alloc(&c->arena, n * sizeof *items);
    for (size_t i = 0; items && i < n; i++)
        if (!(items[i] = nbe_interaction(c, &ev[i])))
            items = NULL;
    if (!items) {
        fprintf(stderr, "cxm-bench-nbe: out of memory\n");
        return 1;
    }
    Cxm__V1__RecordInteractionsRequest req = CXM__V1__RECORD_INTERACTIONS_REQUEST__INIT;
    req.interactions = items, req.n_interactions = n;
    req.source = "cxm-bench-nbe";
    Cxm__V1__RecordInteractionsResponse *resp;
    int rc =
        nbe_call(c, "RecordInteractions", &req, &cxm__v1__record_interactions_response__descriptor,
                 c->cfg->timeout_ms, &resp, "interactions");
    if (rc)
        return rc;
    if (resp->n_rejected > 0) {
        const Cxm__V1__InteractionRejection *r = resp->rejected[0];
        fprintf(stderr, "cxm-bench-nbe: %zu interactions rejected, the first %s: %s\n",
                resp->n_rejected, r->interaction_id, r->reason);
        return 1;
    }
    if ((size_t)resp->accepted + resp->duplicates != n) {
        fprintf(stderr,
                "cxm-bench-nbe: RecordInteractions of %zu answered %" PRIu32
                " accepted and %" PRIu32 " duplicates\n",
                n, resp->accepted, resp->duplicates);
        return 1;
    }
    *dups += resp->duplicates;
    return 0;
}

static int nbe_record_all(nbe_ctx *c)
{
    const recolog *log = &c->d.train;
    for (size_t i = 0; i < log->n; i++)
        if (log->ev[i].ts < 0 || log->ev[i].ts > INT64_MAX / 1000) {
            fprintf(stderr, "cxm-bench-nbe: %s: ts %" PRId64 " is not Unix seconds\n",
                    c->cfg->ratings, log->ev[i].ts);
            return 1;
        }
    double t0 = nbe_now();
    uint64_t dups = 0;
    for (size_t at = 0; at < log->n; at += NBE_BATCH) {
        size_t n = log->n - at < NBE_BATCH ? log->n - at : NBE_BATCH;
        int rc = nbe_record_batch(c, log->ev + at, n, &dups);
        cxm_arena_reset(&c->arena);
        if (rc)
            return rc;
    }
    double s = nbe_now() - t0;
    fprintf(stderr,
            "cxm-bench-nbe: %zu training interactions recorded in %.2f s (%.0f/s, %" PRIu64
            " already there)\n",
            log->n, s, s > 0 ? (double)log->n / s : 0.0, dups);
    return 0;
}

/* ---- training ----------------------------------------------------------------- */

static const struct {
    const char *name;
    Cxm__V1__Algorithm algo;
    const char *eval; /* cxm-eval --algo */
} nbe_algos[] = {
    {"auto", CXM__V1__ALGORITHM__ALGORITHM_AUTO, NULL},
    {"ease", CXM__V1__ALGORITHM__ALGORITHM_EASE, "ease"},
    {"itemknn", CXM__V1__ALGORITHM__ALGORITHM_ITEM_KNN, "itemknn"},
    {"als", CXM__V1__ALGORITHM__ALGORITHM_ALS, "als"},
    {"popularity", CXM__V1__ALGORITHM__ALGORITHM_POPULARITY, "pop"},
    {"sequence", CXM__V1__ALGORITHM__ALGORITHM_SEQUENCE, "seq"},
};
#define NBE_NALGOS (sizeof nbe_algos / sizeof nbe_algos[0])

/* ModelInfo.params by name as cxm-eval's flags (those it has). */
static const struct {
    const char *param, *flag;
} nbe_eval_flags[] = {
    {"lambda", "--lambda"},         {"regularisation", "--lambda"}, {"shrinkage", "--shrink"},
    {"neighbours", "--neighbours"}, {"factors", "--factors"},       {"iterations", "--iterations"},
    {"alpha", "--alpha"},           {"seq_lambda", "--seq-lambda"}, {"seq_half", "--seq-half"},
    {"hist_half", "--hist-half"},   {"blend", "--blend"},
};

/* "--algo ease --lambda 500 ..." for the model TrainModel reported. */
static void nbe_eval_args(nbe_model *m, const Cxm__V1__ModelInfo *info)
{
    size_t len = (size_t)snprintf(m->eval_args, sizeof m->eval_args, "--algo %s", m->algo);
    for (size_t p = 0; p < info->n_params; p++)
        for (size_t f = 0; f < sizeof nbe_eval_flags / sizeof nbe_eval_flags[0]; f++) {
            if (strcmp(info->params[p]->key, nbe_eval_flags[f].param) != 0 ||
                len >= sizeof m->eval_args)
                continue;
            len += (size_t)snprintf(m->eval_args + len, sizeof m->eval_args - len, " %s %.17g",
                                    nbe_eval_flags[f].flag, info->params[p]->value);
        }
}

static void nbe_model_from(nbe_model *model, const Cxm__V1__ModelInfo *m)
{
    model->version = m->version;
    model->training_ms = m->training_ms;
    model->algo = "?";
    for (size_t i = 0; i < NBE_NALGOS; i++)
        if (nbe_algos[i].algo == m->algorithm && nbe_algos[i].eval)
            model->algo = nbe_algos[i].eval;
    nbe_eval_args(model, m);
}

/* --quality without --load: the model serving now, from GetModelInfo. */
static int nbe_serving_model(nbe_ctx *c)
{
    Cxm__V1__GetModelInfoRequest req = CXM__V1__GET_MODEL_INFO_REQUEST__INIT;
    Cxm__V1__GetModelInfoResponse *resp;
    int rc = nbe_call(c, "GetModelInfo", &req, &cxm__v1__get_model_info_response__descriptor,
                      c->cfg->timeout_ms, &resp, "the serving model");
    if (rc == 0 && !resp->serving) {
        fprintf(stderr, "cxm-bench-nbe: no model serves yet: run with --load first\n");
        rc = 1;
    }
    if (rc == 0)
        nbe_model_from(&c->model, resp->serving);
    cxm_arena_reset(&c->arena);
    return rc;
}

static int nbe_train(nbe_ctx *c)
{
    Cxm__V1__TrainModelRequest req = CXM__V1__TRAIN_MODEL_REQUEST__INIT;
    req.algorithm = c->algorithm;
    req.activation = CXM__V1__ACTIVATION__ACTIVATION_ALWAYS;
    Cxm__V1__TrainModelResponse *resp;
    double t0 = nbe_now();
    int rc = nbe_call(c, "TrainModel", &req, &cxm__v1__train_model_response__descriptor,
                      NBE_TRAIN_MS, &resp, "training");
    if (rc)
        return rc;
    const Cxm__V1__ModelInfo *m = resp->model;
    if (!m || !resp->activated || m->state != CXM__V1__MODEL_STATE__MODEL_STATE_SERVING) {
        fprintf(stderr, "cxm-bench-nbe: TrainModel with ACTIVATION_ALWAYS did not activate %s\n",
                m ? "the model" : "anything (no model in the answer)");
        return 1;
    }
    nbe_model_from(&c->model, m);
    fprintf(stderr,
            "cxm-bench-nbe: model %" PRIu64 " serving: %s, %" PRIu64 " customers, %" PRIu64
            " items, %" PRIu64 " interactions, trained in %" PRId64 " ms (call %.2f s); holdout "
            "ndcg@%" PRIu32 " %.4f\n",
            m->version, c->model.algo, m->customers, m->items, m->interactions, m->training_ms,
            nbe_now() - t0, m->metrics ? m->metrics->k : 0, m->metrics ? m->metrics->ndcg_at_k : 0);
    cxm_arena_reset(&c->arena);
    return 0;
}

static int nbe_load(nbe_ctx *c)
{
    int rc = nbe_upsert_all(c, false);
    if (rc == 0)
        rc = nbe_record_all(c);
    if (rc == 0)
        rc = nbe_train(c);
    return rc;
}

/* ---- recommendations ---------------------------------------------------------- */

static int nbe_cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static size_t nbe_history(const nbe_data *d, uint32_t u)
{
    return (size_t)(d->trainm.row[u + 1] - d->trainm.row[u]);
}

/* The answer's experiences as catalogue indices in recs (at most k), each
 * checked as cxm-eval checks a model's list: in the catalogue, not already
 * consumed. */
static int nbe_answer_items(nbe_ctx *c, uint32_t u, const Cxm__V1__RecommendResponse *resp,
                            uint32_t *recs)
{
    const nbe_data *d = &c->d;
    const uint32_t *hist = d->trainm.items + d->trainm.row[u];
    if (resp->n_recommendations > (size_t)c->cfg->k) {
        fprintf(stderr, "cxm-bench-nbe: Recommend k = %" PRId64 " answered %zu\n", c->cfg->k,
                resp->n_recommendations);
        return 1;
    }
    for (size_t i = 0; i < resp->n_recommendations; i++) {
        const char *id = resp->recommendations[i]->experience_id;
        recs[i] = recoids_find(&d->items, id);
        const char *bad = recs[i] >= d->nitems ? "is not in the catalogue loaded"
                          : bsearch(&recs[i], hist, nbe_history(d, u), sizeof *hist, nbe_cmp_u32)
                              ? "is already in their history"
                              : NULL;
        if (bad) {
            fprintf(stderr, "cxm-bench-nbe: user %s was recommended %s, which %s\n",
                    d->users.names[u], id, bad);
            return 1;
        }
    }
    for (size_t i = 0; c->recs && i < resp->n_recommendations; i++) {
        const Cxm__V1__Recommendation *r = resp->recommendations[i];
        fprintf(c->recs, "%s,%s,%zu,%.9g,%.9g\n", d->users.names[u], r->experience_id, i + 1,
                r->score, r->model_score);
    }
    return 0;
}

/* Recommend k for user u by identity; the list in recs, its length in *n. */
static int nbe_recommend_user(nbe_ctx *c, uint32_t u, uint32_t *recs, size_t *n, bool *cold,
                              double *micros)
{
    Cxm__V1__RecommendRequest req = CXM__V1__RECOMMEND_REQUEST__INIT;
    req.customer = nbe_ref(c, u);
    req.k = (uint32_t)c->cfg->k;
    Cxm__V1__RecommendResponse *resp;
    double t0 = nbe_now();
    int rc = nbe_call(c, "Recommend", &req, &cxm__v1__recommend_response__descriptor,
                      c->cfg->timeout_ms, &resp, c->d.users.names[u]);
    *micros = (nbe_now() - t0) * 1e6;
    if (rc == 0 && (!resp->customer_id[0] || resp->model_version != c->model.version)) {
        fprintf(stderr,
                "cxm-bench-nbe: user %s: Recommend answered customer \"%s\", model %" PRIu64
                " (the trained one is %" PRIu64 ")\n",
                c->d.users.names[u], resp->customer_id, resp->model_version, c->model.version);
        rc = 1;
    }
    if (rc == 0 && (rc = nbe_answer_items(c, u, resp, recs)) == 0) {
        *n = resp->n_recommendations;
        *cold = resp->cold_start;
    }
    cxm_arena_reset(&c->arena);
    return rc;
}

static int nbe_score_all(nbe_ctx *c, eval_acc *acc, uint32_t *recs, double *micros,
                         uint64_t *cold_start)
{
    const nbe_data *d = &c->d;
    for (uint32_t u = 0; u < d->nusers; u++) {
        size_t nrel = (size_t)(d->testm.row[u + 1] - d->testm.row[u]), n = 0;
        if (nbe_history(d, u) == 0 || nrel == 0)
            continue;
        bool cold = false;
        int rc = nbe_recommend_user(c, u, recs, &n, &cold, &micros[acc->users]);
        if (rc)
            return rc;
        eval_user_metrics m;
        eval_user_score(recs, n, d->testm.items + d->testm.row[u], nrel, (size_t)c->cfg->k, &m);
        eval_acc_add(acc, recs, n, &m);
        *cold_start += cold;
    }
    return 0;
}

/* cxm-eval's serving pass, through the RPC. */
static int nbe_quality_run(nbe_ctx *c, nbe_result *q)
{
    eval_acc acc;
    uint32_t *recs = malloc((size_t)c->cfg->k * sizeof *recs);
    double *micros = malloc(((size_t)c->d.nusers + 1) * sizeof *micros);
    int rc = !recs || !micros || eval_acc_init(&acc, c->d.nitems) ? CXM_ENOMEM : 0;
    if (rc) {
        fprintf(stderr, "cxm-bench-nbe: out of memory\n");
        free(recs);
        free(micros);
        return 1;
    }
    double t0 = nbe_now();
    rc = nbe_score_all(c, &acc, recs, micros, &q->cold_start);
    eval_acc_summary(&acc, &q->sum);
    q->p50_us = eval_quantile(micros, acc.users, 0.50);
    q->p99_us = eval_quantile(micros, acc.users, 0.99);
    fprintf(stderr, "cxm-bench-nbe: %" PRIu64 " customers recommended in %.2f s\n", acc.users,
            nbe_now() - t0);
    eval_acc_free(&acc);
    free(recs);
    free(micros);
    return rc;
}

static void nbe_report(const nbe_ctx *c, const nbe_result *q)
{
    const eval_summary *s = &q->sum;
    if (c->cfg->json) {
        printf(
            "{\"k\":%" PRId64 ",\"users\":%" PRIu64 ",\"items\":%" PRIu32
            ",\"train_interactions\":%zu,\"test_interactions\":%zu,\"precision\":%.6f,"
            "\"recall\":%.6f,\"ndcg\":%.6f,\"map\":%.6f,\"coverage\":%.6f,\"cold_start\":%" PRIu64
            ",\"model_version\":%" PRIu64 ",\"algo\":\"%s\",\"training_ms\":%" PRId64
            ",\"rpc_p50_us\":%.1f,\"rpc_p99_us\":%.1f,\"eval_args\":\"%s\"}\n",
            c->cfg->k, s->users, c->d.nitems, c->d.train.n, c->d.test.n, s->precision, s->recall,
            s->ndcg, s->map, s->coverage, q->cold_start, c->model.version, c->model.algo,
            c->model.training_ms, q->p50_us, q->p99_us, c->model.eval_args);
        return;
    }
    printf("%-20s %s (%s)\n", "model", c->model.algo, c->model.eval_args);
    printf("%-20s %" PRIu64 "\n", "users evaluated", s->users);
    printf("%-20s %" PRIu64 "\n", "cold-start answers", q->cold_start);
    printf("precision@%-10" PRId64 " %.6f\n", c->cfg->k, s->precision);
    printf("recall@%-13" PRId64 " %.6f\n", c->cfg->k, s->recall);
    printf("ndcg@%-15" PRId64 " %.6f\n", c->cfg->k, s->ndcg);
    printf("map@%-16" PRId64 " %.6f\n", c->cfg->k, s->map);
    printf("%-20s %.6f\n", "coverage", s->coverage);
    printf("%-20s %.1f / %.1f\n", "rpc p50 / p99 us", q->p50_us, q->p99_us);
}

static int nbe_quality(nbe_ctx *c)
{
    if (!c->model.version && nbe_serving_model(c) != 0)
        return 1;
    const char *path = c->cfg->recs_out;
    if (path && (!(c->recs = fopen(path, "w")) ||
                 fputs("user,item,rank,score,model_score\n", c->recs) < 0)) {
        fprintf(stderr, "cxm-bench-nbe: --recs-out %s: %s\n", path, strerror(errno));
        if (c->recs)
            fclose(c->recs);
        return 1;
    }
    nbe_result q = {0};
    int rc = nbe_quality_run(c, &q);
    if (c->recs && (ferror(c->recs) | fclose(c->recs)) && rc == 0) {
        fprintf(stderr, "cxm-bench-nbe: --recs-out %s: write failed\n", path);
        rc = 1;
    }
    if (rc == 0)
        nbe_report(c, &q);
    return rc;
}

/* ---- the latency benchmark's requests ------------------------------------------ */

/* The customer id of user u, from a Recommend by identity, in c's arena. */
static int nbe_customer_id(nbe_ctx *c, uint32_t u, const char **out)
{
    Cxm__V1__RecommendRequest req = CXM__V1__RECOMMEND_REQUEST__INIT;
    req.customer = nbe_ref(c, u);
    req.k = 1;
    Cxm__V1__RecommendResponse *resp;
    int rc = nbe_call(c, "Recommend", &req, &cxm__v1__recommend_response__descriptor,
                      c->cfg->timeout_ms, &resp, c->d.users.names[u]);
    if (rc == 0 && !resp->customer_id[0]) {
        fprintf(stderr, "cxm-bench-nbe: user %s is unknown to the server: run --load first\n",
                c->d.users.names[u]);
        rc = 1;
    }
    if (rc == 0)
        *out = resp->customer_id;
    return rc;
}

/* RecommendRequest for customer_id, length-delimited into f. */
static int nbe_write_request(nbe_ctx *c, const char *customer_id, FILE *f)
{
    Cxm__V1__CustomerRef ref = CXM__V1__CUSTOMER_REF__INIT;
    ref.key_case = CXM__V1__CUSTOMER_REF__KEY_CUSTOMER_ID;
    ref.customer_id = (char *)customer_id;
    Cxm__V1__RecommendContext ctx = CXM__V1__RECOMMEND_CONTEXT__INIT;
    ctx.channel = CXM__V1__CHANNEL__CHANNEL_WEB;
    ctx.stage = CXM__V1__JOURNEY_STAGE__JOURNEY_STAGE_CONSIDERATION;
    ctx.placement = "home_banner";
    Cxm__V1__RecommendRequest req = CXM__V1__RECOMMEND_REQUEST__INIT;
    req.customer = &ref;
    req.context = &ctx;
    req.k = (uint32_t)c->cfg->k;
    size_t len = protobuf_c_message_get_packed_size(&req.base);
    uint8_t *buf = cxm_arena_alloc(&c->arena, len + 1);
    if (!buf)
        return CXM_ENOMEM;
    protobuf_c_message_pack(&req.base, buf);
    return cxm_delim_write(f, buf, len);
}

/* User u's training interactions as customer_id's, CSV lines into f. */
static int nbe_write_history(const nbe_ctx *c, uint32_t u, const char *customer_id, FILE *f)
{
    const reco_matrix *m = &c->d.trainm;
    for (uint64_t q = m->row[u]; q < m->row[u + 1]; q++)
        if (fprintf(f, "%s,%s,%.9g,%" PRId64 "\n", customer_id, c->d.items.names[m->items[q]],
                    m->weights[q], m->ts ? m->ts[q] : 0) < 0)
            return 1;
    return 0;
}

/* fopen for option name's path, or NULL after saying why. */
static FILE *nbe_open_out(const char *name, const char *path)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        fprintf(stderr, "cxm-bench-nbe: --%s %s: %s\n", name, path, strerror(errno));
    return f;
}

static int nbe_close_out(FILE *f, const char *path)
{
    if (!f)
        return 0;
    bool failed = ferror(f); /* fclose must run either way */
    if (fclose(f) == 0 && !failed)
        return 0;
    fprintf(stderr, "cxm-bench-nbe: %s: write failed\n", path);
    return 1;
}

static int nbe_requests(nbe_ctx *c)
{
    const char *path = c->cfg->requests_out, *hpath = c->cfg->histories_out;
    FILE *f = nbe_open_out("requests-out", path), *h = NULL;
    if (!f || (hpath && !(h = nbe_open_out("histories-out", hpath)))) {
        if (f)
            fclose(f);
        return 1;
    }
    size_t n = 0;
    int rc = 0;
    for (uint32_t u = 0; rc == 0 && u < c->d.nusers; u++) {
        if (nbe_history(&c->d, u) < (size_t)c->cfg->min_history)
            continue;
        const char *id;
        if ((rc = nbe_customer_id(c, u, &id)) == 0 && nbe_write_request(c, id, f) != 0) {
            fprintf(stderr, "cxm-bench-nbe: %s: cannot write a request\n", path);
            rc = 1;
        }
        if (rc == 0 && h && nbe_write_history(c, u, id, h) != 0) {
            fprintf(stderr, "cxm-bench-nbe: %s: cannot write a history\n", hpath);
            rc = 1;
        }
        cxm_arena_reset(&c->arena);
        n += rc == 0;
    }
    if ((nbe_close_out(f, path) | nbe_close_out(h, hpath)) && rc == 0)
        rc = 1;
    if (rc == 0 && n == 0) {
        fprintf(stderr,
                "cxm-bench-nbe: no user has %" PRId64 " training interactions: lower "
                "--min-history\n",
                c->cfg->min_history);
        rc = 1;
    }
    if (rc == 0)
        fprintf(stderr,
                "cxm-bench-nbe: %zu Recommend requests (customers with >= %" PRId64
                " training interactions) in %s\n",
                n, c->cfg->min_history, path);
    return rc;
}

/* ---- main ------------------------------------------------------------------------ */

static int nbe_run(nbe_ctx *c)
{
    const nbe_cfg *cfg = c->cfg;
    int rc = nbe_read(cfg, &c->d);
    if (rc)
        return rc;
    if (nbe_titles(cfg, &c->d) != 0) {
        fprintf(stderr, "cxm-bench-nbe: out of memory reading titles\n");
        return 1;
    }
    fprintf(stderr,
            "cxm-bench-nbe: %s: %" PRIu32 " users, %" PRIu32 " items, %zu training and %zu "
            "test interactions\n",
            cfg->ratings, c->d.nusers, c->d.nitems, c->d.train.n, c->d.test.n);
    char *token = NULL;
    char err[512];
    if (cxm_client_token_pick(cfg->token, cfg->token_file, &token, err, sizeof err) != 0) {
        fprintf(stderr, "cxm-bench-nbe: --token / --token-file: %s\n", err);
        return 2;
    }
    cxm_channel_opts copts = cfg->chan;
    copts.token = token;
    rc = cxm_channel_open(cfg->target, &copts, &c->ch);
    free(token); /* the channel keeps a copy */
    if (rc != 0) {
        fprintf(stderr, "cxm-bench-nbe: cannot open a channel to %s: %s\n", cfg->target,
                cxm_channel_last_error());
        return 1;
    }
    if (cfg->load)
        rc = nbe_load(c);
    if (rc == 0 && cfg->quality)
        rc = nbe_quality(c);
    if (rc == 0 && cfg->rules)
        rc = nbe_upsert_all(c, true);
    if (rc == 0 && cfg->requests_out)
        rc = nbe_requests(c);
    cxm_channel_close(c->ch);
    return rc;
}

static int nbe_settle(const nbe_cfg *cfg, nbe_ctx *c)
{
    if (!cfg->ratings) {
        fprintf(stderr, "cxm-bench-nbe: --ratings is required (see --help)\n");
        return 2;
    }
    if (!cfg->load && !cfg->quality && !cfg->rules && !cfg->requests_out) {
        fprintf(stderr, "cxm-bench-nbe: nothing to do: give --load, --quality, --rules or "
                        "--requests-out (see --help)\n");
        return 2;
    }
    if (cfg->histories_out && !cfg->requests_out) {
        fprintf(stderr, "cxm-bench-nbe: --histories-out goes with --requests-out (see --help)\n");
        return 2;
    }
    /* The automatic choice validates on each customer's latest
     * interactions: the temporal split's question, not the random one's. */
    const char *algorithm = cfg->algorithm                        ? cfg->algorithm
                            : strcmp(cfg->split, "temporal") == 0 ? "auto"
                                                                  : "ease";
    for (size_t i = 0; i < NBE_NALGOS; i++)
        if (strcmp(algorithm, nbe_algos[i].name) == 0) {
            c->algorithm = nbe_algos[i].algo;
            return 0;
        }
    fprintf(stderr,
            "cxm-bench-nbe: --algorithm %s: want auto, ease, itemknn, als, popularity or "
            "sequence\n",
            algorithm);
    return 2;
}

int main(int argc, char **argv)
{
    nbe_cfg cfg = {.target = "127.0.0.1:7400",
                   .test_frac = "0.2",
                   .split = "random",
                   .seed = 42,
                   .k = 10,
                   .min_history = 200,
                   .timeout_ms = 30000};
    const cxm_opt opts[] = {
        {"target", CXM_OPT_STR, &cfg.target, 0, 0, "cxmd's address, HOST:PORT"},
        CXM_CHANNEL_TLS_OPTS(cfg.chan),
        {"ratings", CXM_OPT_STR, &cfg.ratings, 0, 0,
         "interactions CSV (user,item,rating,ts or MovieLens' ratings.csv)"},
        {"movies", CXM_OPT_STR, &cfg.movies, 0, 0,
         "titles, MovieLens' movies.csv (default: movies.csv beside --ratings, if any)"},
        {"test-frac", CXM_OPT_STR, &cfg.test_frac, 0, 0,
         "share of each user held out (as cxm-eval)"},
        {"split", CXM_OPT_STR, &cfg.split, 0, 0,
         "random or temporal (each user's latest --test-frac held out), as cxm-eval"},
        {"seed", CXM_OPT_INT, &cfg.seed, 0, 0, "seed of the random split (as cxm-eval)"},
        {"k", CXM_OPT_INT, &cfg.k, 1, 100, "recommendations per call"},
        {"algorithm", CXM_OPT_STR, &cfg.algorithm, 0, 0,
         "TrainModel's: auto, ease, itemknn, als, popularity or sequence (default: auto with "
         "--split temporal, ease with random)"},
        {"load", CXM_OPT_BOOL, &cfg.load, 0, 0,
         "upsert the catalogue, record the training part, train"},
        {"quality", CXM_OPT_BOOL, &cfg.quality, 0, 0,
         "Recommend for every test user and report cxm-eval's metrics"},
        {"rules", CXM_OPT_BOOL, &cfg.rules, 0, 0,
         "upsert the catalogue again with eligibility rules and caps on part of it"},
        {"requests-out", CXM_OPT_STR, &cfg.requests_out, 0, 0,
         "write Recommend requests by customer id for cxm-bench --requests"},
        {"histories-out", CXM_OPT_STR, &cfg.histories_out, 0, 0,
         "with --requests-out: write those customers' training interactions as CSV "
         "customer_id,item,weight,ts here (for benchmarks/reco_peer.py)"},
        {"min-history", CXM_OPT_INT, &cfg.min_history, 1, 1000000,
         "training interactions a customer needs for --requests-out"},
        {"timeout", CXM_OPT_MILLIS, &cfg.timeout_ms, 1, 3600000, "deadline of each call"},
        {"json", CXM_OPT_BOOL, &cfg.json, 0, 0, "report --quality as one JSON line"},
        {"recs-out", CXM_OPT_STR, &cfg.recs_out, 0, 0,
         "with --quality: write user,item,rank (as cxm-eval --recs-out),score,model_score CSV "
         "here"},
        CXM_CLIENT_TOKEN_OPTS(&cfg.token, &cfg.token_file),
    };
    size_t nopts = sizeof opts / sizeof opts[0];
    char err[256] = "";
    int rc = cxm_opts_parse(opts, nopts, argc, argv, NULL, NULL, err, sizeof err);
    if (rc == 1) {
        cxm_opts_usage(stdout, "cxm-bench-nbe",
                       "a ratings file through PersonalisationService's API: load, train, and "
                       "cxm-eval's metrics over Recommend",
                       opts, nopts);
        return 0;
    }
    if (rc) {
        fprintf(stderr, "cxm-bench-nbe: %s (see --help)\n", err);
        return 2;
    }
    nbe_ctx c = {.cfg = &cfg};
    if ((rc = nbe_settle(&cfg, &c)) != 0)
        return rc;
    cxm_arena_init(&c.arena, NULL, 0, 0);
    rc = nbe_run(&c);
    cxm_arena_dispose(&c.arena);
    nbe_data_free(&c.d);
    return rc;
}
