/*
 * reco_cmd.c - `cxmctl reco ...`: the cxm.v1.PersonalisationService RPCs a
 * person runs by hand: the experience catalogue (UpsertExperience from flags,
 * from JSON lines or from cxm-gen's experiences.pb; ListExperiences a page at
 * a time), Recommend as a ranked table with scores and reasons, RecordOutcome,
 * RecordInteractions from a file, TrainModel with a progress bar,
 * GetModelInfo and SimilarExperiences.
 *
 * As in feedback_cmd.c, the server owns every rule of the contract and its
 * INVALID_ARGUMENT names the field; this file checks only the command line's
 * own syntax (numbers, caps, durations, NAME=VALUE pairs).
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cxm/err.h"
#include "cxm/v1/personalisation.pb-c.h"
#include "cxmctl.h"
#include "delim.h"

#define RECO_SERVICE (&cxm__v1__personalisation_service__descriptor)
/* RecordInteractions takes at most this many per call. */
#define RECO_BATCH 1000
/* Rejections an import summary shows; the count says the rest. */
#define RECO_SHOWN_REJECTIONS 5
/* How often `reco train` asks GetModelInfo for the training's progress. */
#define RECO_POLL_MS 200
/* How long `reco train` waits for its training unless --wait says. */
#define RECO_TRAIN_WAIT_MS (30 * 60 * 1000)

static const char *const none = "";

static const char *or_default(const cxmctl_flag *f, const char *dflt)
{
    return f->n ? f->v[0] : dflt;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int double_flag(const ctl *c, const cxmctl_flag *f, double *out)
{
    if (!f->n || cxmctl_parse_number(f->v[0], out) == 0)
        return 0;
    return cxmctl_usage_error(c, "--%s \"%s\": give a finite number", f->name, f->v[0]);
}

/* An enum value in its short form, "-" for UNSPECIFIED. */
static void print_short(FILE *out, const ProtobufCEnumDescriptor *e, int v)
{
    if (v)
        cxmctl_enum_short(out, e, v);
    else
        fputc('-', out);
}

/* An enum's short form padded to width, for table columns. */
static void print_short_col(const ProtobufCEnumDescriptor *e, int v, int width)
{
    char buf[64] = "";
    FILE *f = fmemopen(buf, sizeof buf, "w");
    if (f)
        print_short(f, e, v), fclose(f);
    printf("%-*s ", width, buf);
}

/* "-k N" is how people write a cut-off; cxmctl_parse() knows only --flags,
 * so it becomes "--k N" (a copy: argv itself is left alone). */
static char **short_k(ctl *c, int argc, char **argv)
{
    char **out = cxmctl_new_array(c, (size_t)argc + 1, sizeof *out);
    for (int i = 0; i < argc; i++)
        out[i] = strcmp(argv[i], "-k") == 0 ? "--k" : argv[i];
    return out;
}

/* -k N, named as the person typed it. */
static int k_flag(const ctl *c, const cxmctl_flag *f, uint64_t *k)
{
    return f->n ? cxmctl_parse_uint(c, "-k", f->v[0], UINT32_MAX, k) : 0;
}

static int parse_enum_list(ctl *c, const cxmctl_flag *f, const ProtobufCEnumDescriptor *e,
                           int **out, size_t *n)
{
    char what[64];
    snprintf(what, sizeof what, "--%s", f->name);
    *out = cxmctl_new_array(c, f->n, sizeof **out);
    *n = f->n;
    int rc = 0;
    for (size_t i = 0; i < f->n && rc == 0; i++)
        rc = cxmctl_parse_enum(c, e, what, f->v[i], &(*out)[i]);
    return rc;
}

/* The whole file at path, NUL-terminated, in the arena; NULL when it cannot
 * be read. */
static char *read_whole(ctl *c, const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, got;
    char *text = cxmctl_new_array(c, cap + 1, 1);
    *len = 0;
    while ((got = fread(text + *len, 1, cap - *len, f)) > 0 && (*len += got) == cap) {
        char *grown = cxmctl_new_array(c, cap * 2 + 1, 1);
        memcpy(grown, text, *len);
        text = grown, cap *= 2;
    }
    fclose(f);
    text[*len] = 0;
    return text;
}

static bool is_pb(const char *path)
{
    size_t n = strlen(path);
    return n >= 3 && strcmp(path + n - 3, ".pb") == 0;
}

/* The next non-blank line of a JSON-lines text at *p (advanced past it);
 * false at the end. *lineno counts every line. */
static bool next_line(const char **p, const char *end, const char **line, size_t *len,
                      size_t *lineno)
{
    while (*p < end) {
        const char *nl = memchr(*p, '\n', (size_t)(end - *p));
        const char *stop = nl ? nl : end;
        *line = *p, *len = (size_t)(stop - *p);
        *p = nl ? nl + 1 : end;
        ++*lineno;
        if (strspn(*line, " \t\r") < *len)
            return true;
    }
    return false;
}

/* One line of JSON into a message; 0, or -1 with a sentence in err. */
typedef int line_parser(ctl *c, const char *line, size_t len, ProtobufCMessage **out, char *err,
                        size_t errlen);

/* Every line of a JSON-lines text parsed as a message of type d into *out
 * (*n of them); 0, or a usage error naming the line, before anything is
 * sent: a file with a broken line sends nothing. */
static int parse_lines(ctl *c, const char *path, const ProtobufCMessageDescriptor *d,
                       line_parser *parse, ProtobufCMessage ***out, size_t *n)
{
    size_t len, linelen, lineno = 0, cap = 1;
    const char *text = read_whole(c, path, &len), *line, *p = text;
    if (!text)
        return cxmctl_usage_error(c, "cannot open --file %s", path);
    for (const char *q = text; (q = memchr(q, '\n', (size_t)(text + len - q))); q++)
        cap++;
    ProtobufCMessage **v = cxmctl_new_array(c, cap, sizeof *v);
    char err[512];
    *n = 0;
    while (next_line(&p, text + len, &line, &linelen, &lineno))
        if (parse(c, line, linelen, &v[(*n)++], err, sizeof err) != 0)
            return cxmctl_usage_error(c, "--file %s line %zu: %s", path, lineno, err);
    if (*n == 0)
        return cxmctl_usage_error(c, "--file %s: no %s in it", path, d->short_name);
    *out = v;
    return 0;
}

/* --- reco experience upsert --- */

typedef struct exp_flags {
    cxmctl_flag file, id, kind, title, description, stage, channel, placement, segment, excluded,
        consent, value, weight, from, until, cap, pause_accept, pause_dismiss, meta, disabled;
} exp_flags;

/* N/DURATION ("3/7d"): at most N impressions in any window that long. */
static int parse_cap(ctl *c, const char *s, Cxm__V1__ContactCap *cap)
{
    const char *slash = strchr(s, '/');
    char num[24];
    uint64_t n;
    if (!slash || slash == s || (size_t)(slash - s) >= sizeof num)
        return cxmctl_usage_error(c, "--cap \"%s\": give N/DURATION, such as 3/7d", s);
    snprintf(num, sizeof num, "%.*s", (int)(slash - s), s);
    if (cxmctl_parse_uint(c, "--cap", num, UINT32_MAX, &n) != 0)
        return CXMCTL_USAGE;
    if (cxmctl_window_parse(slash + 1, &cap->period_ms) != 0)
        return cxmctl_usage_error(c, "--cap \"%s\": the window is a duration such as 7d or 12h", s);
    cap->max_contacts = (uint32_t)n;
    return 0;
}

static int exp_caps(ctl *c, const cxmctl_flag *f, Cxm__V1__Experience *e)
{
    e->contact_caps = cxmctl_new_array(c, f->n, sizeof *e->contact_caps);
    int rc = 0;
    for (size_t i = 0; i < f->n && rc == 0; i++) {
        e->contact_caps[i] = cxmctl_new_message(c, &cxm__v1__contact_cap__descriptor);
        rc = parse_cap(c, f->v[i], e->contact_caps[i]);
        e->n_contact_caps = i + 1;
    }
    return rc;
}

/* --meta KEY=VALUE, the text as it is. */
static int exp_metadata(ctl *c, const cxmctl_flag *f, Cxm__V1__Experience *e)
{
    e->metadata = cxmctl_new_array(c, f->n, sizeof *e->metadata);
    for (size_t i = 0; i < f->n; i++) {
        const char *eq = strchr(f->v[i], '=');
        if (!eq || eq == f->v[i])
            return cxmctl_usage_error(c, "--meta \"%s\": give KEY=VALUE", f->v[i]);
        Cxm__V1__Experience__MetadataEntry *m =
            cxmctl_new_message(c, &cxm__v1__experience__metadata_entry__descriptor);
        m->key = cxm_arena_strndup(&c->arena, f->v[i], (size_t)(eq - f->v[i]));
        m->value = (char *)eq + 1;
        e->metadata[e->n_metadata++] = m;
    }
    return 0;
}

static int exp_eligibility(ctl *c, const exp_flags *f, Cxm__V1__Experience *e)
{
    Cxm__V1__Eligibility *el = cxmctl_new_message(c, &cxm__v1__eligibility__descriptor);
    int rc;
    if ((rc = parse_enum_list(c, &f->stage, &cxm__v1__journey_stage__descriptor,
                              (int **)&el->stages, &el->n_stages)) ||
        (rc = cxmctl_channels_flag(c, &f->channel, &el->channels, &el->n_channels)))
        return rc;
    el->placements = cxmctl_strings_flag(&f->placement), el->n_placements = f->placement.n;
    el->segment_ids = cxmctl_strings_flag(&f->segment), el->n_segment_ids = f->segment.n;
    el->excluded_segment_ids = cxmctl_strings_flag(&f->excluded);
    el->n_excluded_segment_ids = f->excluded.n;
    el->required_consents = cxmctl_strings_flag(&f->consent);
    el->n_required_consents = f->consent.n;
    e->eligibility = el;
    return 0;
}

static int exp_from_flags(ctl *c, const exp_flags *f, Cxm__V1__Experience *e)
{
    int kind = 0, rc;
    if ((rc = cxmctl_require(c, &f->id)) || (rc = cxmctl_require(c, &f->kind)) ||
        (rc = cxmctl_enum_flag(c, &f->kind, &cxm__v1__experience_kind__descriptor, &kind)) ||
        (rc = exp_eligibility(c, f, e)) || (rc = double_flag(c, &f->value, &e->value)) ||
        (rc = double_flag(c, &f->weight, &e->weight)) ||
        (rc = cxmctl_time_flag(c, &f->from, false, &e->valid_from_unix_ms)) ||
        (rc = cxmctl_time_flag(c, &f->until, false, &e->valid_until_unix_ms)) ||
        (rc = cxmctl_duration_flag(c, &f->pause_accept, &e->pause_after_accept_ms)) ||
        (rc = cxmctl_duration_flag(c, &f->pause_dismiss, &e->pause_after_dismiss_ms)) ||
        (rc = exp_caps(c, &f->cap, e)) || (rc = exp_metadata(c, &f->meta, e)))
        return rc;
    e->experience_id = (char *)f->id.v[0];
    e->kind = (Cxm__V1__ExperienceKind)kind;
    e->title = (char *)or_default(&f->title, none);
    e->description = (char *)or_default(&f->description, none);
    e->disabled = f->disabled.n > 0;
    return 0;
}

/* What the upserts of one command did, for a file's summary. */
typedef struct upsert_count {
    uint64_t created, updated;
} upsert_count;

static int upsert_one(ctl *c, Cxm__V1__Experience *e, upsert_count *n, bool quiet)
{
    Cxm__V1__UpsertExperienceRequest req = CXM__V1__UPSERT_EXPERIENCE_REQUEST__INIT;
    req.experience = e;
    ProtobufCMessage *resp;
    int rc = cxmctl_call(c, RECO_SERVICE, "UpsertExperience", &req.base, &resp);
    if (rc)
        return rc;
    const Cxm__V1__UpsertExperienceResponse *r = (const void *)resp;
    if (r->created)
        n->created++;
    else
        n->updated++;
    if (c->json && !quiet)
        cxmctl_print_json(stdout, resp);
    else if (!quiet)
        printf("%s %s\n", r->created ? "created" : "updated", e->experience_id);
    return 0;
}

static void upsert_summary(const ctl *c, const char *path, const upsert_count *n)
{
    if (c->json)
        printf("{\"created\":%" PRIu64 ",\"updated\":%" PRIu64 "}\n", n->created, n->updated);
    else
        printf("%s: %" PRIu64 " experiences, %" PRIu64 " created, %" PRIu64 " updated\n", path,
               n->created + n->updated, n->created, n->updated);
}

/* Every UpsertExperienceRequest record of a length-delimited file (cxm-gen's
 * experiences.pb), in order; stops at the first failure. */
static int upsert_pb(ctl *c, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return cxmctl_usage_error(c, "cannot open --file %s", path);
    uint8_t *buf = NULL;
    size_t cap = 0, len, nrec = 0;
    int got, rc = 0;
    upsert_count n = {0};
    while (rc == 0 && (got = cxm_delim_read(f, &buf, &cap, &len)) == 1) {
        Cxm__V1__UpsertExperienceRequest *req =
            cxm__v1__upsert_experience_request__unpack(cxm_arena_protobuf(&c->arena), len, buf);
        nrec++;
        if (!req || !req->experience)
            rc = cxmctl_usage_error(c, "--file %s: record %zu is not an UpsertExperienceRequest",
                                    path, nrec);
        else if ((rc = upsert_one(c, req->experience, &n, true)) != 0)
            fprintf(stderr, "cxmctl: --file %s: record %zu failed (above)\n", path, nrec);
    }
    fclose(f);
    free(buf);
    if (rc == 0 && got < 0)
        rc = cxmctl_usage_error(c, "--file %s: damaged after %zu records", path, nrec);
    if (rc == 0)
        upsert_summary(c, path, &n);
    return rc;
}

/* An Experience, or an UpsertExperienceRequest when the object's first key
 * is "experience" (so that an error names the field of what was meant). */
static int experience_json(ctl *c, const char *line, size_t len, ProtobufCMessage **e, char *err,
                           size_t errlen)
{
    size_t skip = strspn(line, " \t{");
    bool wrapped = skip < len && len - skip > 12 && strncmp(line + skip, "\"experience\"", 12) == 0;
    if (!wrapped)
        return cxmctl_json_message(c, line, len, &cxm__v1__experience__descriptor, e, err, errlen);
    Cxm__V1__UpsertExperienceRequest *req = NULL;
    if (cxmctl_json_message(c, line, len, &cxm__v1__upsert_experience_request__descriptor,
                            (ProtobufCMessage **)&req, err, errlen) != 0)
        return -1;
    if (!req->experience)
        return snprintf(err, errlen, "experience: missing"), -1;
    *e = &req->experience->base;
    return 0;
}

/* One Experience per line as JSON, or an UpsertExperienceRequest
 * ({"experience": {...}}); blank lines are skipped. Stops at the first
 * failure. */
static int upsert_jsonl(ctl *c, const char *path)
{
    ProtobufCMessage **all = NULL;
    size_t n = 0;
    int rc = parse_lines(c, path, &cxm__v1__experience__descriptor, experience_json, &all, &n);
    upsert_count count = {0};
    for (size_t i = 0; rc == 0 && i < n; i++)
        if ((rc = upsert_one(c, (Cxm__V1__Experience *)all[i], &count, true)) != 0)
            fprintf(stderr, "cxmctl: --file %s: experience %zu failed (above)\n", path, i + 1);
    if (rc == 0)
        upsert_summary(c, path, &count);
    return rc;
}

static int cmd_experience_upsert(ctl *c, int argc, char **argv)
{
    exp_flags f = {
        {"file", "FILE.jsonl|FILE.pb"},
        {"id", "ID"},
        {"kind", "KIND"},
        {"title", "TEXT"},
        {"description", "TEXT"},
        {"stage", "STAGE", true},
        {"channel", "CHANNEL", true},
        {"placement", "P", true},
        {"segment", "S", true},
        {"exclude-segment", "S", true},
        {"consent", "SCOPE", true},
        {"value", "X"},
        {"weight", "X"},
        {"valid-from", "TIME"},
        {"valid-until", "TIME"},
        {"cap", "N/DURATION", true},
        {"pause-after-accept", "DURATION"},
        {"pause-after-dismiss", "DURATION"},
        {"meta", "KEY=VALUE", true},
        {"disabled", NULL},
    };
    cxmctl_flag *const flags[] = {
        &f.file,    &f.id,           &f.kind,          &f.title,   &f.description,
        &f.stage,   &f.channel,      &f.placement,     &f.segment, &f.excluded,
        &f.consent, &f.value,        &f.weight,        &f.from,    &f.until,
        &f.cap,     &f.pause_accept, &f.pause_dismiss, &f.meta,    &f.disabled};
    char **pos;
    size_t npos;
    int rc = cxmctl_parse(c, argc, argv, flags, sizeof flags / sizeof flags[0], 0, 0, &pos, &npos);
    if (rc != CXMCTL_CONTINUE)
        return rc;
    if (f.file.n && (f.id.n || f.kind.n))
        return cxmctl_usage_error(c, "give --file or --id with the experience's flags, not both");
    if (f.file.n)
        return is_pb(f.file.v[0]) ? upsert_pb(c, f.file.v[0]) : upsert_jsonl(c, f.file.v[0]);
    Cxm__V1__Experience *e = cxmctl_new_message(c, &cxm__v1__experience__descriptor);
    upsert_count n = {0};
    if ((rc = exp_from_flags(c, &f, e)))
        return rc;
    return upsert_one(c, e, &n, false);
}

/* --- reco experience list --- */

static void print_experience_row(const Cxm__V1__Experience *e)
{
    printf("%-24s ", e->experience_id);
    print_short_col(&cxm__v1__experience_kind__descriptor, e->kind, 14);
    printf("%9.2f %6.2f %-8s %4zu  %s\n", e->value, e->weight, e->disabled ? "disabled" : "enabled",
           e->n_contact_caps, e->title);
}

/* One page; *next is its next_page_token ("" on the last). */
static int list_page(ctl *c, uint32_t size, const char *token, bool header, const char **next)
{
    Cxm__V1__ListExperiencesRequest req = CXM__V1__LIST_EXPERIENCES_REQUEST__INIT;
    req.page_size = size;
    req.page_token = (char *)token;
    ProtobufCMessage *resp;
    int rc = cxmctl_call(c, RECO_SERVICE, "ListExperiences", &req.base, &resp);
    if (rc)
        return rc;
    const Cxm__V1__ListExperiencesResponse *r = (const void *)resp;
    *next = r->next_page_token;
    if (c->json)
        return cxmctl_print_json(stdout, resp), 0;
    if (header && !r->n_experiences && !*token)
        puts("the catalogue is empty: add experiences with cxmctl reco experience upsert");
    else if (header)
        printf("%-24s %-14s %9s %6s %-8s %4s  %s\n", "EXPERIENCE", "KIND", "VALUE", "WEIGHT",
               "STATE", "CAPS", "TITLE");
    for (size_t i = 0; i < r->n_experiences; i++)
        print_experience_row(r->experiences[i]);
    return 0;
}

static int cmd_experience_list(ctl *c, int argc, char **argv)
{
    cxmctl_flag limit = {"limit", "N"}, token = {"page-token", "T"}, all = {"all", NULL};
    cxmctl_flag *const flags[] = {&limit, &token, &all};
    char **pos;
    size_t npos;
    uint64_t size = 100;
    int rc = cxmctl_parse(c, argc, argv, flags, 3, 0, 0, &pos, &npos);
    if (rc != CXMCTL_CONTINUE || (rc = cxmctl_uint_flag(c, &limit, 1000, &size)))
        return rc;
    const char *next = or_default(&token, none);
    bool first = true;
    do {
        if ((rc = list_page(c, (uint32_t)size, next, first, &next)))
            return rc;
        first = false;
    } while (all.n && *next);
    if (*next && !c->json)
        printf("next page: --page-token %s\n", next);
    return 0;
}

/* --- reco recommend --- */

typedef struct rec_flags {
    cxmctl_flag identity, channel, placement, stage, k, explain, impressions, exclude, kind, prop;
} rec_flags;

/* NAME=VALUE, the value typed by its look (as journey track's --prop). */
static int context_props(ctl *c, const cxmctl_flag *f, Cxm__V1__RecommendContext *x)
{
    x->properties = cxmctl_new_array(c, f->n, sizeof *x->properties);
    for (size_t i = 0; i < f->n; i++) {
        Cxm__V1__RecommendContext__PropertiesEntry *e =
            cxmctl_new_message(c, &cxm__v1__recommend_context__properties_entry__descriptor);
        size_t len = strspn(f->v[i], cxmctl_name_chars);
        e->key = cxm_arena_strndup(&c->arena, f->v[i], len);
        e->value = cxmctl_new_message(c, &cxm__v1__value__descriptor);
        if (len == 0 || f->v[i][len] != '=' ||
            cxmctl_typed_value(c, f->v[i] + len + 1, e->value) != 0)
            return cxmctl_usage_error(c, "--prop \"%s\": expected NAME=VALUE", f->v[i]);
        x->properties[x->n_properties++] = e;
    }
    return 0;
}

/* The context of --channel, --stage and --placement (and --prop when given). */
static int context_flags(ctl *c, const cxmctl_flag *channel, const cxmctl_flag *stage,
                         const cxmctl_flag *placement, const cxmctl_flag *prop,
                         Cxm__V1__RecommendContext **out)
{
    Cxm__V1__RecommendContext *x = cxmctl_new_message(c, &cxm__v1__recommend_context__descriptor);
    int ch = 0, st = 0, rc;
    if ((rc = cxmctl_enum_flag(c, channel, &cxm__v1__channel__descriptor, &ch)) ||
        (rc = cxmctl_enum_flag(c, stage, &cxm__v1__journey_stage__descriptor, &st)) ||
        (prop && (rc = context_props(c, prop, x))))
        return rc;
    x->channel = (Cxm__V1__Channel)ch;
    x->stage = (Cxm__V1__JourneyStage)st;
    x->placement = (char *)or_default(placement, none);
    *out = x;
    return 0;
}

static int recommend_request(ctl *c, rec_flags *f, char **pos, size_t npos,
                             Cxm__V1__RecommendRequest *req)
{
    uint64_t k = 0;
    int rc;
    if ((rc = cxmctl_customer_ref(c, &f->identity, &pos, &npos, 0, &req->customer)) ||
        (rc = k_flag(c, &f->k, &k)) ||
        (rc = context_flags(c, &f->channel, &f->stage, &f->placement, &f->prop, &req->context)) ||
        (rc = parse_enum_list(c, &f->kind, &cxm__v1__experience_kind__descriptor,
                              (int **)&req->kinds, &req->n_kinds)))
        return rc;
    req->k = (uint32_t)k;
    req->explain = f->explain.n > 0;
    req->record_impressions = f->impressions.n > 0;
    req->exclude_experience_ids = cxmctl_strings_flag(&f->exclude);
    req->n_exclude_experience_ids = f->exclude.n;
    return 0;
}

static void print_reason(const Cxm__V1__Reason *r)
{
    printf("        %3.0f%%  ", r->contribution * 100);
    print_short_col(&cxm__v1__reason_kind__descriptor, r->kind, 18);
    if (*r->text)
        fputs(r->text, stdout);
    else if (*r->related_item_id)
        printf("item %s", r->related_item_id);
    putchar('\n');
}

static void print_recommendation(const Cxm__V1__Recommendation *r)
{
    printf("%4u  %-24s ", r->rank, r->experience_id);
    print_short_col(&cxm__v1__experience_kind__descriptor, r->kind, 14);
    printf("%9.4f %9.4f  %s\n", r->score, r->model_score, r->title);
    for (size_t i = 0; i < r->n_reasons; i++)
        print_reason(r->reasons[i]);
}

static void print_recommend(const Cxm__V1__RecommendResponse *r)
{
    printf("customer %s  model version %" PRIu64 "%s  recommendation %s\n",
           *r->customer_id ? r->customer_id : "(unknown)", r->model_version,
           r->model_version ? "" : " (popularity only)", r->recommendation_id);
    printf("cold start: %s  service recovery: %s", r->cold_start ? "yes" : "no",
           r->service_recovery ? "yes" : "no");
    if (r->service_recovery || r->offers_held_back)
        printf(", %u offers held back", r->offers_held_back);
    putchar('\n');
    if (!r->n_recommendations) {
        puts("no eligible experience");
        return;
    }
    printf("%4s  %-24s %-14s %9s %9s  %s\n", "RANK", "EXPERIENCE", "KIND", "SCORE", "MODEL",
           "TITLE");
    for (size_t i = 0; i < r->n_recommendations; i++)
        print_recommendation(r->recommendations[i]);
}

static int cmd_recommend(ctl *c, int argc, char **argv)
{
    rec_flags f = {
        {"identity", "TYPE:VALUE"},
        {"channel", "CHANNEL"},
        {"placement", "P"},
        {"stage", "STAGE"},
        {"k", "N"},
        {"explain", NULL},
        {"impressions", NULL},
        {"exclude", "ID", true},
        {"kind", "KIND", true},
        {"prop", "NAME=VALUE", true},
    };
    cxmctl_flag *const flags[] = {&f.identity, &f.channel,     &f.placement, &f.stage, &f.k,
                                  &f.explain,  &f.impressions, &f.exclude,   &f.kind,  &f.prop};
    char **pos;
    size_t npos;
    int rc = cxmctl_parse(c, argc, short_k(c, argc, argv), flags, sizeof flags / sizeof flags[0], 0,
                          1, &pos, &npos);
    Cxm__V1__RecommendRequest req = CXM__V1__RECOMMEND_REQUEST__INIT;
    if (rc != CXMCTL_CONTINUE || (rc = recommend_request(c, &f, pos, npos, &req)))
        return rc;
    ProtobufCMessage *resp;
    if ((rc = cxmctl_call(c, RECO_SERVICE, "Recommend", &req.base, &resp)) != 0)
        return rc;
    if (c->json)
        cxmctl_print_json(stdout, resp);
    else
        print_recommend((const void *)resp);
    return 0;
}

/* --- reco outcome --- */

/* A fresh outcome id: the time and 64 random bits. --outcome-id is what
 * makes a resend safe. */
static const char *new_outcome_id(ctl *c)
{
    uint64_t r = 0;
    FILE *f = fopen("/dev/urandom", "rb");
    if (!f || fread(&r, sizeof r, 1, f) != 1)
        r = (uint64_t)getpid() * 0x9E3779B97F4A7C15ULL ^ (uint64_t)(now_s() * 1e9);
    if (f)
        fclose(f);
    char buf[64];
    snprintf(buf, sizeof buf, "ctl-%" PRId64 "-%016" PRIx64, cxmctl_wall_ms(), r);
    return cxm_arena_strndup(&c->arena, buf, strlen(buf));
}

static int cmd_outcome(ctl *c, int argc, char **argv)
{
    cxmctl_flag identity = {"identity", "TYPE:VALUE"}, exp = {"experience", "ID"},
                outcome = {"outcome", "KIND"}, rec = {"recommendation", "RID"},
                id = {"outcome-id", "ID"}, at = {"at", "TIME|AGO"},
                channel = {"channel", "CHANNEL"}, stage = {"stage", "STAGE"},
                placement = {"placement", "P"};
    cxmctl_flag *const flags[] = {&identity, &exp,     &outcome, &rec,      &id,
                                  &at,       &channel, &stage,   &placement};
    char **pos;
    size_t npos;
    int kind = 0;
    Cxm__V1__RecordOutcomeRequest req = CXM__V1__RECORD_OUTCOME_REQUEST__INIT;
    int rc = cxmctl_parse(c, argc, argv, flags, sizeof flags / sizeof flags[0], 0, 1, &pos, &npos);
    if (rc != CXMCTL_CONTINUE ||
        (rc = cxmctl_customer_ref(c, &identity, &pos, &npos, 0, &req.customer)) ||
        (rc = cxmctl_require(c, &exp)) || (rc = cxmctl_require(c, &outcome)) ||
        (rc = cxmctl_enum_flag(c, &outcome, &cxm__v1__outcome_kind__descriptor, &kind)) ||
        (rc = cxmctl_time_flag(c, &at, true, &req.occurred_at_unix_ms)) ||
        (rc = context_flags(c, &channel, &stage, &placement, NULL, &req.context)))
        return rc;
    req.outcome_id = (char *)(id.n ? id.v[0] : new_outcome_id(c));
    req.experience_id = (char *)exp.v[0];
    req.outcome = (Cxm__V1__OutcomeKind)kind;
    req.recommendation_id = (char *)or_default(&rec, none);
    ProtobufCMessage *resp;
    if ((rc = cxmctl_call(c, RECO_SERVICE, "RecordOutcome", &req.base, &resp)) != 0)
        return rc;
    const Cxm__V1__RecordOutcomeResponse *r = (const void *)resp;
    if (c->json)
        cxmctl_print_json(stdout, resp);
    else
        printf("%s %s customer %s\n", r->duplicate ? "duplicate" : "recorded", req.outcome_id,
               r->customer_id);
    return 0;
}

/* --- reco interactions --file --- */

/* One import of interactions: what came back from every call. */
typedef struct inter_import {
    const char *path, *source;
    uint64_t calls, sent, accepted, duplicates, rejected;
    struct {
        uint64_t call;
        const Cxm__V1__InteractionRejection *r;
    } shown[RECO_SHOWN_REJECTIONS];
    size_t nshown;
} inter_import;

static int inter_send(ctl *c, inter_import *im, Cxm__V1__RecordInteractionsRequest *req)
{
    if (im->source)
        req->source = (char *)im->source;
    ProtobufCMessage *resp;
    int rc = cxmctl_call(c, RECO_SERVICE, "RecordInteractions", &req->base, &resp);
    if (rc)
        return rc;
    const Cxm__V1__RecordInteractionsResponse *r = (const void *)resp;
    im->calls++;
    im->sent += req->n_interactions;
    im->accepted += r->accepted;
    im->duplicates += r->duplicates;
    im->rejected += r->n_rejected;
    for (size_t i = 0; i < r->n_rejected && im->nshown < RECO_SHOWN_REJECTIONS; i++) {
        im->shown[im->nshown].call = im->calls;
        im->shown[im->nshown++].r = r->rejected[i];
    }
    return 0;
}

/* RecordInteractionsRequest records (cxm-gen's interactions.pb), each sent
 * as it is. */
static int inter_pb(ctl *c, inter_import *im)
{
    FILE *f = fopen(im->path, "rb");
    if (!f)
        return cxmctl_usage_error(c, "cannot open --file %s", im->path);
    uint8_t *buf = NULL;
    size_t cap = 0, len;
    int got, rc = 0;
    while (rc == 0 && (got = cxm_delim_read(f, &buf, &cap, &len)) == 1) {
        Cxm__V1__RecordInteractionsRequest *req =
            cxm__v1__record_interactions_request__unpack(cxm_arena_protobuf(&c->arena), len, buf);
        rc = req ? inter_send(c, im, req)
                 : cxmctl_usage_error(
                       c, "--file %s: record %" PRIu64 " is not a RecordInteractionsRequest",
                       im->path, im->calls + 1);
    }
    fclose(f);
    free(buf);
    if (rc == 0 && got < 0)
        rc = cxmctl_usage_error(c, "--file %s: damaged after %" PRIu64 " records", im->path,
                                im->calls);
    return rc;
}

static int interaction_json(ctl *c, const char *line, size_t len, ProtobufCMessage **m, char *err,
                            size_t errlen)
{
    return cxmctl_json_message(c, line, len, &cxm__v1__interaction__descriptor, m, err, errlen);
}

/* One Interaction per JSON line, RECO_BATCH to a call. */
static int inter_jsonl(ctl *c, inter_import *im)
{
    ProtobufCMessage **all = NULL;
    size_t n = 0;
    int rc =
        parse_lines(c, im->path, &cxm__v1__interaction__descriptor, interaction_json, &all, &n);
    Cxm__V1__RecordInteractionsRequest req = CXM__V1__RECORD_INTERACTIONS_REQUEST__INIT;
    req.source = "cxmctl";
    for (size_t i = 0; rc == 0 && i < n; i += req.n_interactions) {
        req.interactions = (Cxm__V1__Interaction **)all + i;
        req.n_interactions = n - i < RECO_BATCH ? n - i : RECO_BATCH;
        rc = inter_send(c, im, &req);
    }
    return rc;
}

static void inter_summary(const ctl *c, const inter_import *im, double secs)
{
    if (c->json) {
        printf("{\"calls\":%" PRIu64 ",\"interactions\":%" PRIu64 ",\"accepted\":%" PRIu64
               ",\"duplicates\":%" PRIu64 ",\"rejected\":%" PRIu64 ",\"seconds\":%.3f}\n",
               im->calls, im->sent, im->accepted, im->duplicates, im->rejected, secs);
        return;
    }
    printf("accepted %" PRIu64 ", duplicates %" PRIu64 ", rejected %" PRIu64 " of %" PRIu64
           " interactions (%" PRIu64 " calls) in %.2f s\n",
           im->accepted, im->duplicates, im->rejected, im->sent, im->calls, secs);
    if (im->nshown)
        puts("first rejections:");
    for (size_t i = 0; i < im->nshown; i++)
        printf("  call %" PRIu64 " interaction %u (%s): %s\n", im->shown[i].call,
               im->shown[i].r->index, im->shown[i].r->interaction_id, im->shown[i].r->reason);
}

static int cmd_interactions(ctl *c, int argc, char **argv)
{
    cxmctl_flag file = {"file", "FILE.jsonl|FILE.pb"}, source = {"source", "S"};
    cxmctl_flag *const flags[] = {&file, &source};
    char **pos;
    size_t npos;
    int rc = cxmctl_parse(c, argc, argv, flags, 2, 0, 0, &pos, &npos);
    if (rc != CXMCTL_CONTINUE || (rc = cxmctl_require(c, &file)))
        return rc;
    inter_import im = {.path = file.v[0], .source = cxmctl_flag_value(&source)};
    double t0 = now_s();
    rc = is_pb(im.path) ? inter_pb(c, &im) : inter_jsonl(c, &im);
    if (rc == CXMCTL_USAGE)
        return rc;
    inter_summary(c, &im, now_s() - t0);
    return rc ? rc : im.rejected ? CXMCTL_FAILED : 0;
}

/* --- reco train --- */

/* A training started by `reco train` and waited for: the TrainModel call runs
 * on its own thread (the server answers when the model is done) while the
 * command's thread polls GetModelInfo for the progress bar. */
typedef struct train_run {
    ctl *c;
    Cxm__V1__TrainModelRequest *req;
    int64_t wait_ms;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* signalled when done */
    bool done;
    int rc;
    cxm_client_result res;
    ProtobufCMessage *resp;
    /* the bar */
    bool tty, drawn;
    char phase[64];
    double t0, last_draw;
} train_run;

static void *train_thread(void *arg)
{
    train_run *t = arg;
    char path[128];
    snprintf(path, sizeof path, "/%s/TrainModel", RECO_SERVICE->name);
    /* Only this thread touches the invocation's arena until it is joined. */
    int rc = cxm_client_unary_pb(t->c->ch, path, &t->req->base,
                                 &cxm__v1__train_model_response__descriptor, &t->c->arena,
                                 t->wait_ms, &t->resp, &t->res);
    pthread_mutex_lock(&t->mu);
    t->rc = rc, t->done = true;
    pthread_cond_signal(&t->cv);
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

/* Whether the training call ended, waiting up to ms for it: the answer is
 * printed as soon as it comes, not at the next poll. */
static bool train_done(train_run *t, int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += (long)ms * 1000000L;
    ts.tv_sec += ts.tv_nsec / 1000000000L;
    ts.tv_nsec %= 1000000000L;
    pthread_mutex_lock(&t->mu);
    while (!t->done && pthread_cond_timedwait(&t->cv, &t->mu, &ts) == 0)
        ;
    bool done = t->done;
    pthread_mutex_unlock(&t->mu);
    return done;
}

/* The bar on stderr: redrawn in place on a terminal, else one line per phase
 * (a log or a pipe gets a readable record, not a stream of redraws). */
static void train_draw(train_run *t, double progress, const char *phase, bool final)
{
    enum { WIDTH = 30 };
    double now = now_s();
    bool new_phase = strcmp(phase, t->phase) != 0;
    if (!final && (t->tty ? now - t->last_draw < 0.1 : !new_phase))
        return;
    t->last_draw = now;
    t->drawn = true;
    snprintf(t->phase, sizeof t->phase, "%s", phase);
    int fill = (int)(WIDTH * (progress < 0 ? 0 : progress > 1 ? 1 : progress));
    fprintf(stderr, "%s[%.*s%*s] %3.0f%%  %-24s %5.1f s%s", t->tty ? "\r" : "", fill,
            "##############################", WIDTH - fill, "", progress * 100, phase, now - t->t0,
            t->tty && !final ? "" : "\n");
}

/* One GetModelInfo for the bar; a failed poll only skips a redraw. */
static void train_poll(train_run *t)
{
    cxm_arena a;
    cxm_arena_init(&a, NULL, 0, 0);
    char path[128];
    snprintf(path, sizeof path, "/%s/GetModelInfo", RECO_SERVICE->name);
    Cxm__V1__GetModelInfoRequest req = CXM__V1__GET_MODEL_INFO_REQUEST__INIT;
    ProtobufCMessage *resp = NULL;
    cxm_client_result r = {0};
    if (cxm_client_unary_pb(t->c->ch, path, &req.base,
                            &cxm__v1__get_model_info_response__descriptor, &a, t->c->timeout_ms,
                            &resp, &r) == 0 &&
        r.status == GRPC_STATUS_OK) {
        const Cxm__V1__ModelInfo *m = ((const Cxm__V1__GetModelInfoResponse *)resp)->training;
        if (m)
            train_draw(t, m->progress, *m->phase ? m->phase : "training", false);
    }
    cxm_client_result_dispose(&r);
    cxm_arena_dispose(&a);
}

static void print_metrics(const Cxm__V1__ModelMetrics *m)
{
    if (!m || !m->holdout_customers)
        return;
    printf("  holdout  ndcg@%u %.4f  precision@%u %.4f  recall@%u %.4f  coverage %.1f%%  (%" PRIu64
           " customers)\n",
           m->k, m->ndcg_at_k, m->k, m->precision_at_k, m->k, m->recall_at_k, m->coverage * 100,
           m->holdout_customers);
}

static void print_params(const Cxm__V1__ModelInfo *m)
{
    if (!m->n_params)
        return;
    fputs("  params  ", stdout);
    for (size_t i = 0; i < m->n_params; i++)
        printf("%s%s=%g", i ? " " : "", m->params[i]->key, m->params[i]->value);
    putchar('\n');
}

/* How ALGORITHM_AUTO chose, when it did. */
static void print_choice(const Cxm__V1__ModelChoice *c)
{
    if (!c)
        return;
    printf("  chosen on %s validation  ndcg@10 %.4f  EASE alone %.4f  (%" PRIu64 " customers)\n",
           c->validation, c->ndcg_at_10, c->ease_ndcg_at_10, c->customers);
    if (c->note && *c->note)
        printf("  note  %s\n", c->note);
}

/* A model in full: the line `reco train` ends with. */
static void print_model(const Cxm__V1__ModelInfo *m, bool activated)
{
    printf("model version %" PRIu64 " ", m->version);
    print_short(stdout, &cxm__v1__model_state__descriptor, m->state);
    fputs("  ", stdout);
    print_short(stdout, &cxm__v1__algorithm__descriptor, m->algorithm);
    printf("  trained in %.2f s%s\n", (double)m->training_ms / 1000,
           activated ? "  (activated: it serves now)" : "");
    printf("  customers %" PRIu64 "  items %" PRIu64 "  interactions %" PRIu64 "\n", m->customers,
           m->items, m->interactions);
    print_metrics(m->metrics);
    print_choice(m->choice);
    print_params(m);
    if (*m->error)
        printf("  error  %s\n", m->error);
}

/* The training's answer, once the thread is joined: the server's sentence on
 * failure, the model otherwise (exit 1 when it FAILED). */
static int train_result(train_run *t)
{
    const char *method = "TrainModel";
    if (t->rc != 0)
        return fprintf(stderr, "cxmctl: %s: %s\n", method, cxm_strerror(t->rc)), CXMCTL_FAILED;
    if (t->res.status != GRPC_STATUS_OK)
        return cxmctl_rpc_failed(method, t->res.status, t->res.details);
    const Cxm__V1__TrainModelResponse *r = (const void *)t->resp;
    if (t->c->json)
        cxmctl_print_json(stdout, t->resp);
    else if (r->model)
        print_model(r->model, r->activated);
    return r->model && r->model->state == CXM__V1__MODEL_STATE__MODEL_STATE_FAILED ? CXMCTL_FAILED
                                                                                   : 0;
}

static int train_wait(ctl *c, Cxm__V1__TrainModelRequest *req, int64_t wait_ms)
{
    if (cxmctl_open_channel(c) != 0)
        return CXMCTL_FAILED;
    train_run t = {
        .c = c, .req = req, .wait_ms = wait_ms, .tty = isatty(STDERR_FILENO) == 1, .t0 = now_s()};
    pthread_mutex_init(&t.mu, NULL);
    pthread_cond_init(&t.cv, NULL);
    pthread_t th;
    if (pthread_create(&th, NULL, train_thread, &t) != 0)
        return fputs("cxmctl: cannot start a thread\n", stderr), CXMCTL_FAILED;
    while (!train_done(&t, RECO_POLL_MS))
        if (!c->json)
            train_poll(&t);
    pthread_join(th, NULL);
    pthread_cond_destroy(&t.cv);
    pthread_mutex_destroy(&t.mu);
    bool ok = t.rc == 0 && t.res.status == GRPC_STATUS_OK;
    if (!c->json && ok)
        train_draw(&t, 1, "done", true);
    else if (t.tty && t.drawn) /* the error goes below the bar, not over it */
        fputc('\n', stderr);
    int rc = train_result(&t);
    cxm_client_result_dispose(&t.res);
    return rc;
}

/* --param NAME=X, each a number. */
static int train_params(ctl *c, const cxmctl_flag *f, Cxm__V1__TrainModelRequest *req)
{
    req->params = cxmctl_new_array(c, f->n, sizeof *req->params);
    for (size_t i = 0; i < f->n; i++) {
        const char *eq = strchr(f->v[i], '=');
        Cxm__V1__TrainModelRequest__ParamsEntry *e =
            cxmctl_new_message(c, &cxm__v1__train_model_request__params_entry__descriptor);
        if (!eq || eq == f->v[i] || cxmctl_parse_number(eq + 1, &e->value) != 0)
            return cxmctl_usage_error(c, "--param \"%s\": give NAME=NUMBER, such as lambda=500",
                                      f->v[i]);
        e->key = cxm_arena_strndup(&c->arena, f->v[i], (size_t)(eq - f->v[i]));
        req->params[req->n_params++] = e;
    }
    return 0;
}

static int train_request(ctl *c, cxmctl_flag *const *fl, Cxm__V1__TrainModelRequest *req)
{
    int alg = 0, act = 0, rc;
    if ((rc = cxmctl_enum_flag(c, fl[0], &cxm__v1__algorithm__descriptor, &alg)) ||
        (rc = train_params(c, fl[1], req)) ||
        (rc = cxmctl_enum_flag(c, fl[2], &cxm__v1__activation__descriptor, &act)) ||
        (rc = cxmctl_time_flag(c, fl[3], true, &req->since_unix_ms)) ||
        (rc = double_flag(c, fl[4], &req->holdout_fraction)))
        return rc;
    req->algorithm = (Cxm__V1__Algorithm)alg;
    req->activation = (Cxm__V1__Activation)act;
    req->run_async = fl[5]->n > 0;
    return 0;
}

static int cmd_train(ctl *c, int argc, char **argv)
{
    cxmctl_flag alg = {"algorithm", "ALGORITHM"}, param = {"param", "NAME=X", true},
                act = {"activation", "always|if-better|never"}, since = {"since", "TIME|AGO"},
                holdout = {"holdout", "FRACTION"}, async = {"async", NULL},
                wait_for = {"wait", "DURATION"};
    cxmctl_flag *const flags[] = {&alg, &param, &act, &since, &holdout, &async, &wait_for};
    char **pos;
    size_t npos;
    int64_t wait_ms = RECO_TRAIN_WAIT_MS;
    Cxm__V1__TrainModelRequest req = CXM__V1__TRAIN_MODEL_REQUEST__INIT;
    int rc = cxmctl_parse(c, argc, argv, flags, sizeof flags / sizeof flags[0], 0, 0, &pos, &npos);
    if (rc != CXMCTL_CONTINUE || (rc = train_request(c, flags, &req)) ||
        (rc = cxmctl_duration_flag(c, &wait_for, &wait_ms)))
        return rc;
    if (async.n && wait_for.n)
        return cxmctl_usage_error(c, "--wait goes without --async: --async does not wait");
    if (wait_ms < 1)
        return cxmctl_usage_error(c, "--wait: give a duration of at least 1ms");
    if (!async.n)
        return train_wait(c, &req, wait_ms);
    ProtobufCMessage *resp;
    if ((rc = cxmctl_call(c, RECO_SERVICE, "TrainModel", &req.base, &resp)) != 0)
        return rc;
    const Cxm__V1__TrainModelResponse *r = (const void *)resp;
    if (c->json)
        cxmctl_print_json(stdout, resp);
    else
        printf("training model version %" PRIu64 " started; follow it with: cxmctl reco model\n",
               r->model ? r->model->version : 0);
    return 0;
}

/* --- reco model --- */

static void print_model_row(const char *role, const Cxm__V1__ModelInfo *m)
{
    if (!m)
        return;
    printf("%-9s %7" PRIu64 " ", role, m->version);
    print_short_col(&cxm__v1__model_state__descriptor, m->state, 9);
    print_short_col(&cxm__v1__algorithm__descriptor, m->algorithm, 11);
    printf("%9" PRIu64 " %7" PRIu64 " %12" PRIu64 " ", m->customers, m->items, m->interactions);
    if (m->metrics && m->metrics->holdout_customers)
        printf("%7.4f ", m->metrics->ndcg_at_k);
    else
        printf("%7s ", "-");
    if (m->state == CXM__V1__MODEL_STATE__MODEL_STATE_TRAINING)
        printf("%4.0f%% %s", m->progress * 100, *m->phase ? m->phase : "");
    else if (m->trained_at_unix_ms)
        cxmctl_print_time(stdout, m->trained_at_unix_ms);
    printf("  %s\n", *m->trigger ? m->trigger : "-");
    print_params(m);
    if (*m->error)
        printf("  error  %s\n", m->error);
}

static int cmd_model(ctl *c, int argc, char **argv)
{
    char **pos;
    size_t npos;
    int rc = cxmctl_parse(c, argc, argv, NULL, 0, 0, 0, &pos, &npos);
    if (rc != CXMCTL_CONTINUE)
        return rc;
    Cxm__V1__GetModelInfoRequest req = CXM__V1__GET_MODEL_INFO_REQUEST__INIT;
    ProtobufCMessage *resp;
    if ((rc = cxmctl_call(c, RECO_SERVICE, "GetModelInfo", &req.base, &resp)) != 0 || c->json) {
        if (rc == 0)
            cxmctl_print_json(stdout, resp);
        return rc;
    }
    const Cxm__V1__GetModelInfoResponse *r = (const void *)resp;
    if (!r->serving && !r->previous && !r->training) {
        puts("no model yet: recommendations are by popularity (train one: cxmctl reco train)");
        return 0;
    }
    printf("%-9s %7s %-9s %-11s %9s %7s %12s %7s %-24s  %s\n", "MODEL", "VERSION", "STATE",
           "ALGORITHM", "CUSTOMERS", "ITEMS", "INTERACTIONS", "NDCG", "TRAINED", "TRIGGER");
    print_model_row("serving", r->serving);
    print_model_row("previous", r->previous);
    print_model_row("training", r->training);
    return 0;
}

/* --- reco similar --- */

static int cmd_similar(ctl *c, int argc, char **argv)
{
    cxmctl_flag k = {"k", "N"}, available = {"available", NULL};
    cxmctl_flag *const flags[] = {&k, &available};
    char **pos;
    size_t npos;
    uint64_t n = 0;
    int rc = cxmctl_parse(c, argc, short_k(c, argc, argv), flags, 2, 1, 1, &pos, &npos);
    if (rc != CXMCTL_CONTINUE || (rc = k_flag(c, &k, &n)))
        return rc;
    Cxm__V1__SimilarExperiencesRequest req = CXM__V1__SIMILAR_EXPERIENCES_REQUEST__INIT;
    req.experience_id = pos[0];
    req.k = (uint32_t)n;
    req.only_available = available.n > 0;
    ProtobufCMessage *resp;
    if ((rc = cxmctl_call(c, RECO_SERVICE, "SimilarExperiences", &req.base, &resp)) != 0 ||
        c->json) {
        if (rc == 0)
            cxmctl_print_json(stdout, resp);
        return rc;
    }
    const Cxm__V1__SimilarExperiencesResponse *r = (const void *)resp;
    printf("model version %" PRIu64 "\n", r->model_version);
    if (!r->n_experiences)
        printf("nothing similar to %s yet (the serving model has not seen it)\n", pos[0]);
    else
        printf("%-24s %10s\n", "EXPERIENCE", "SIMILARITY");
    for (size_t i = 0; i < r->n_experiences; i++)
        printf("%-24s %10.4f\n", r->experiences[i]->experience_id, r->experiences[i]->similarity);
    return 0;
}

const cxmctl_command cxmctl_reco_commands[] = {
    {"reco experience upsert",
     "--id ID --kind offer|content|service-action [--title TEXT] [--description TEXT]\n"
     "      [--stage STAGE]... [--channel CHANNEL]... [--placement P]... [--segment S]...\n"
     "      [--exclude-segment S]... [--consent SCOPE]... [--value X] [--weight X]\n"
     "      [--valid-from TIME] [--valid-until TIME] [--cap N/DURATION]...\n"
     "      [--pause-after-accept DURATION] [--pause-after-dismiss DURATION]\n"
     "      [--meta KEY=VALUE]... [--disabled]\n"
     "    | --file FILE.jsonl | --file FILE.pb",
     "create or replace an experience of the catalogue from flags (an empty rule list places no "
     "limit; --cap 3/7d: at most 3 impressions in any 7 days), from one Experience per JSON "
     "line, or every UpsertExperienceRequest of FILE.pb (cxm-gen's experiences.pb)",
     "--id premium_upgrade --kind offer --title \"Premium, 20% off\" --stage consideration "
     "--channel web --consent marketing_email --value 12 --weight 2 --cap 3/7d "
     "--pause-after-dismiss 3d --meta url=https://shop.example.com/premium",
     cmd_experience_upsert},
    {"reco experience list", "[--limit N] [--page-token T] [--all]",
     "the catalogue in id order, a page at a time (default 100; --all follows every page)",
     "--limit 20", cmd_experience_list},
    {"reco recommend",
     "(ID | --identity TYPE:VALUE) [--channel CHANNEL] [--placement P] [--stage STAGE]\n"
     "      [-k N] [--explain] [--impressions] [--exclude ID]... [--kind KIND]...\n"
     "      [--prop NAME=VALUE]...",
     "the customer's next best experiences, best first: score, model score and, with --explain, "
     "the reasons with their share of the score; --impressions counts them as shown",
     "--identity email:ann@example.com --channel web --placement home_banner -k 5 --explain",
     cmd_recommend},
    {"reco outcome",
     "(ID | --identity TYPE:VALUE) --experience ID --outcome impression|click|accept|dismiss\n"
     "      [--recommendation RID] [--outcome-id ID] [--at TIME|AGO] [--channel CHANNEL]\n"
     "      [--stage STAGE] [--placement P]",
     "what the customer did with an experience: feeds contact caps, pauses and (click, accept) "
     "the model; a resend with the same --outcome-id is recorded once",
     "--identity email:ann@example.com --experience premium_upgrade --outcome accept", cmd_outcome},
    {"reco interactions", "--file FILE.jsonl|FILE.pb [--source S]",
     "feed the interaction log: one Interaction per JSON line (1000 to a call), or every "
     "RecordInteractionsRequest of FILE.pb (cxm-gen's interactions.pb)",
     "--file interactions.pb", cmd_interactions},
    {"reco train",
     "[--algorithm auto|ease|item-knn|als|popularity|sequence] [--param NAME=X]...\n"
     "      [--activation always|if-better|never] [--since TIME|AGO] [--holdout FRACTION]\n"
     "      [--async | --wait DURATION]",
     "train a model version from the interaction log with a progress bar, then show its holdout "
     "metrics and whether it serves now (--async: start it and return)",
     "--algorithm item-knn --param neighbours=200 --activation always", cmd_train},
    {"reco model", "",
     "the serving model, the previous one kept for rollback, a training's progress", "", cmd_model},
    {"reco similar", "ID [-k N] [--available]",
     "experiences most similar to one, from the serving model (--available: enabled and valid "
     "now)",
     "premium_upgrade -k 5", cmd_similar},
};
const size_t cxmctl_reco_ncommands = sizeof cxmctl_reco_commands / sizeof cxmctl_reco_commands[0];
