/*
 * recomatrix.c - interaction matrices from logs (see recomatrix.h).
 */
#include "personalisation/reco/recomatrix.h"

#include <stdlib.h>
#include <string.h>

#include "cxm/err.h"

/* (item, weight, ts) cells sort a row while keeping weights and ts attached. */
typedef struct cell {
    uint32_t item;
    float weight;
    int64_t ts;
} cell;

static int cmp_cell(const void *a, const void *b)
{
    const cell *x = a, *y = b;
    return (x->item > y->item) - (x->item < y->item);
}

static int matrix_alloc(reco_matrix *m, uint32_t nusers, uint32_t nitems, size_t nnz)
{
    *m = (reco_matrix){.nusers = nusers, .nitems = nitems};
    m->row = calloc((size_t)nusers + 1, sizeof *m->row);
    m->items = malloc((nnz ? nnz : 1) * sizeof *m->items);
    m->weights = malloc((nnz ? nnz : 1) * sizeof *m->weights);
    m->ts = malloc((nnz ? nnz : 1) * sizeof *m->ts);
    return m->row && m->items && m->weights && m->ts ? 0 : CXM_ENOMEM;
}

/* Counting sort of the log by user into cells, filling m->row. */
static int bucket_by_user(const recolog *log, reco_matrix *m, cell *cells)
{
    for (size_t i = 0; i < log->n; i++)
        m->row[log->ev[i].user + 1]++;
    for (uint32_t u = 0; u < m->nusers; u++)
        m->row[u + 1] += m->row[u];
    uint64_t *fill = malloc(((size_t)m->nusers + 1) * sizeof *fill);
    if (!fill)
        return CXM_ENOMEM;
    memcpy(fill, m->row, ((size_t)m->nusers + 1) * sizeof *fill);
    for (size_t i = 0; i < log->n; i++) {
        const recolog_event *e = &log->ev[i];
        cells[fill[e->user]++] = (cell){e->item, e->rating, e->ts};
    }
    free(fill);
    return 0;
}

/* Sort each row by item; a repeated item means the log was not de-duplicated. */
static int sort_rows(reco_matrix *m, cell *cells)
{
    for (uint32_t u = 0; u < m->nusers; u++) {
        uint64_t a = m->row[u], b = m->row[u + 1];
        qsort(cells + a, b - a, sizeof *cells, cmp_cell);
        for (uint64_t i = a; i < b; i++) {
            if (i > a && cells[i].item == cells[i - 1].item)
                return CXM_EINVAL;
            m->items[i] = cells[i].item;
            m->weights[i] = cells[i].weight;
            m->ts[i] = cells[i].ts;
        }
    }
    return 0;
}

int recomatrix_build(const recolog *log, uint32_t nusers, uint32_t nitems, reco_matrix *out)
{
    *out = (reco_matrix){0};
    for (size_t i = 0; i < log->n; i++)
        if (log->ev[i].user >= nusers || log->ev[i].item >= nitems)
            return CXM_EINVAL;
    cell *cells = malloc((log->n ? log->n : 1) * sizeof *cells);
    int rc = cells ? matrix_alloc(out, nusers, nitems, log->n) : CXM_ENOMEM;
    if (rc == 0)
        rc = bucket_by_user(log, out, cells);
    if (rc == 0)
        rc = sort_rows(out, cells);
    free(cells);
    if (rc)
        recomatrix_free(out);
    return rc;
}

void recomatrix_free(reco_matrix *m)
{
    free(m->row);
    free(m->items);
    free(m->weights);
    free(m->ts);
    *m = (reco_matrix){0};
}
