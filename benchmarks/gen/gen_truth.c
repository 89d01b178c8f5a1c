/*
 * gen_truth.c - truth.json: what a world holds and what was planted in it,
 * so that tests and analyses can check what they recover.
 *
 * "observed_*" values are computed from the generated ratings themselves
 * (an analysis of the CSV or of the stored responses must find exactly
 * these); "gap" and "nps_slope" are the planted parameters they estimate.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <cxm/err.h>

#include "gen_int.h"

/* The least-squares slope of NPS on experience - expectation, or 0 when
 * undefined. */
static double slope(const gen__tp_stats *s)
{
    double n = (double)s->nps_n, den = n * s->sxx - s->sx * s->sx;
    return den > 0 ? (n * s->sxy - s->sx * s->sy) / den : 0;
}

static void sizes(FILE *f, const cxm_gen_params *p)
{
    fprintf(f,
            "  \"generator\": \"cxm-gen\",\n  \"seed\": %llu,\n"
            "  \"sizes\": {\"customers\": %lld, \"days\": %lld, \"items\": %lld, \"clusters\": "
            "%lld, \"batch\": %lld, \"start_unix_ms\": %lld, \"end_unix_ms\": %lld},\n"
            "  \"formats\": [%s%s%s],\n",
            (unsigned long long)p->seed, (long long)p->customers, (long long)p->days,
            (long long)p->items, (long long)p->clusters, (long long)p->batch,
            (long long)p->start_ms, (long long)(p->start_ms + p->days * GEN_DAY_MS),
            p->formats & CXM_GEN_FORMAT_PB ? "\"pb\"" : "",
            p->formats == (CXM_GEN_FORMAT_PB | CXM_GEN_FORMAT_CSV) ? ", " : "",
            p->formats & CXM_GEN_FORMAT_CSV ? "\"csv\"" : "");
}

/* Message counts are those of the .pb files (0 without pb). */
static void counts(FILE *f, const cxm_gen_params *p, const gen__truth *t, const cxm_gen_counts *k)
{
    bool pb = p->formats & CXM_GEN_FORMAT_PB;
    fprintf(f,
            "  \"counts\": {\"customers\": %llu, \"signed_up\": %llu, \"identities\": %llu, "
            "\"events\": %llu, \"responses\": %llu, \"nps_responses\": %llu, "
            "\"csat_responses\": %llu, \"ces_responses\": %llu, \"ratings\": %llu, "
            "\"interactions\": %llu,\n    \"messages\": {\"profiles.pb\": %llu, \"track.pb\": "
            "%llu, \"responses.pb\": %llu, \"interactions.pb\": %llu, \"surveys.pb\": %d, "
            "\"experiences.pb\": %lld, \"stage_rules.pb\": %d}},\n",
            (unsigned long long)k->customers, (unsigned long long)k->signed_up,
            (unsigned long long)k->identities, (unsigned long long)k->events,
            (unsigned long long)k->responses, (unsigned long long)t->responses[GEN_SURVEY_NPS],
            (unsigned long long)t->responses[GEN_SURVEY_CSAT],
            (unsigned long long)t->responses[GEN_SURVEY_CES], (unsigned long long)k->ratings,
            (unsigned long long)k->interactions, (unsigned long long)t->profiles,
            (unsigned long long)t->track_messages, (unsigned long long)(pb ? k->responses : 0),
            (unsigned long long)t->interaction_messages, pb ? GEN_NSURVEY : 0,
            pb ? (long long)p->items : 0LL, pb ? 1 : 0);
}

static void journeys(FILE *f, const gen__truth *t)
{
    fprintf(f, "  \"funnel\": {");
    for (int st = 1; st <= 6; st++)
        fprintf(f, "%s\"%s\": %llu", st > 1 ? ", " : "", gen__stage_name(st),
                (unsigned long long)t->stage_customers[st]);
    double n = (double)t->nps_n;
    fprintf(f,
            "},\n  \"churned\": %llu,\n  \"repeat_buyers\": %llu,\n"
            "  \"nps\": {\"responses\": %llu, \"mean\": %.4f, \"score\": %.2f, \"promoters\": "
            "%llu, \"detractors\": %llu},\n  \"follow_ups\": {",
            (unsigned long long)t->churned, (unsigned long long)t->repeat_buyers,
            (unsigned long long)t->nps_n, n ? (double)t->nps_sum / n : 0.0,
            n ? 100.0 * ((double)t->promoters - (double)t->detractors_responses) / n : 0.0,
            (unsigned long long)t->promoters, (unsigned long long)t->detractors_responses);
    for (int k = 0; k < GEN_NSURVEY; k++)
        fprintf(f, "\"%s\": {\"at_or_under\": %d, \"responses\": %llu}, ", gen__surveys[k].id,
                gen__surveys[k].follow_up_max, (unsigned long long)t->follow_ups[k]);
    fprintf(f, "\"total\": %llu},\n",
            (unsigned long long)(t->follow_ups[0] + t->follow_ups[1] + t->follow_ups[2]));
}

static void touchpoint(FILE *f, const gen__truth *t, int tp)
{
    const gen__touchpoint *g = &gen__tps[tp];
    const gen__tp_stats *s = &t->tp[tp];
    double n = (double)s->ratings;
    fprintf(f,
            "    {\"touchpoint\": \"%s\", \"stage\": \"%s\", \"gap\": %.2f, \"nps_slope\": %.2f, "
            "\"nps_effect\": %.2f, \"ratings\": %llu, \"nps_ratings\": %llu, "
            "\"observed_mean_expectation\": %.4f, \"observed_mean_experience\": %.4f, "
            "\"observed_gap\": %.4f, \"observed_slope\": %.4f}",
            g->name, gen__stage_name(g->stage), g->gap, g->slope, -g->gap * g->slope,
            (unsigned long long)s->ratings, (unsigned long long)s->nps_n,
            n ? s->sum_expectation / n : 0.0, n ? s->sum_experience / n : 0.0,
            n ? (s->sum_expectation - s->sum_experience) / n : 0.0, slope(s));
}

static void planted(FILE *f, const gen__truth *t)
{
    fprintf(f,
            "  \"planted\": {\n    \"gap_definition\": \"mean expectation - mean experience, "
            "1-7 scale; positive = disappointing\",\n    \"slope_definition\": \"NPS points "
            "per point of experience - expectation at the touchpoint\",\n"
            "    \"nps_effect_definition\": \"-gap * nps_slope: NPS points the gap costs a "
            "respondent who rated the touchpoint\",\n    \"base_slope\": %.2f,\n"
            "    \"gap_touchpoints\": [\n",
            GEN_BASE_SLOPE);
    bool first = true;
    for (int tp = 0; tp < GEN_NTP; tp++) {
        if (gen__tps[tp].gap <= 0)
            continue;
        fprintf(f, "%s  ", first ? "" : ",\n");
        touchpoint(f, t, tp);
        first = false;
    }
    fprintf(f, "\n    ]\n  },\n  \"touchpoints\": [\n");
    first = true;
    for (int tp = 0; tp < GEN_NTP; tp++) {
        if (!gen__tps[tp].rated)
            continue;
        fprintf(f, "%s", first ? "" : ",\n");
        touchpoint(f, t, tp);
        first = false;
    }
    fprintf(f, "\n  ],\n");
}

/* Each cluster with its most popular items (ranks 0 to 4). */
static void clusters(FILE *f, const cxm_gen_params *p, const gen__truth *t)
{
    fprintf(f, "  \"taste_clusters\": [\n");
    for (unsigned c = 0; c < (unsigned)p->clusters; c++) {
        char name[24], id[16];
        gen__cluster_name(c, name, sizeof name);
        long long items = (p->items - c + p->clusters - 1) / p->clusters;
        fprintf(f,
                "    {\"cluster\": \"%s\", \"index\": %u, \"items\": %lld, \"customers\": %llu, "
                "\"top_items\": [",
                name, c, items, (unsigned long long)t->cluster_customers[c]);
        for (unsigned r = 0; r < 5; r++) {
            gen__item_id(c + r * (unsigned)p->clusters, id, sizeof id);
            fprintf(f, "%s\"%s\"", r ? ", " : "", id);
        }
        fprintf(f, "]}%s\n", c + 1 < (unsigned)p->clusters ? "," : "");
    }
    fprintf(f, "  ],\n  \"item_rule\": \"item-N (N = k + 1) is in cluster k %% clusters at "
               "popularity rank k / clusters\",\n");
}

static void detractors(FILE *f, const gen__truth *t)
{
    fprintf(f,
            "  \"detractors\": {\"definition\": \"customers with an NPS score of 6 or less\", "
            "\"count\": %zu, \"customer_ids\": [",
            t->ndetractors);
    for (size_t i = 0; i < t->ndetractors; i++)
        fprintf(f, "%s\"c%07u\"", i ? (i % 8 ? ", " : ",\n    ") : "\n    ", t->detractors[i] + 1);
    fprintf(f, "]}\n");
}

int gen__truth_write(const cxm_gen_params *p, const gen__truth *t, const cxm_gen_counts *k,
                     char *err, size_t errlen)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/truth.json", p->out);
    FILE *f = fopen(path, "w");
    if (!f) {
        snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
        return CXM_EIO;
    }
    fprintf(f, "{\n");
    sizes(f, p);
    counts(f, p, t, k);
    journeys(f, t);
    planted(f, t);
    clusters(f, p, t);
    detractors(f, t);
    fprintf(f, "}\n");
    bool bad = ferror(f);
    if (fclose(f) != 0 || bad) {
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        return CXM_EIO;
    }
    return 0;
}
