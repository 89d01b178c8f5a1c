/*
 * tsv.c - reading the gzip TSV sentiment files (tsv.h) with zlib.
 */
#include "feedback/senti/tsv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "cxm/err.h"

#define LINE (1 << 16)

static int grow(tsv_corpus *c, size_t *cap, size_t *tcap, size_t tlen)
{
    if (c->n + 2 > *cap) {
        *cap = *cap ? *cap * 2 : 4096;
        uint8_t *y = realloc(c->y, *cap);
        if (y)
            c->y = y;
        uint64_t *o = realloc(c->off, *cap * sizeof *o);
        if (o)
            c->off = o;
        if (!y || !o)
            return CXM_ENOMEM;
    }
    if (tlen > *tcap) {
        while (*tcap < tlen)
            *tcap = *tcap ? *tcap * 2 : 1 << 20;
        char *t = realloc(c->text, *tcap);
        if (!t)
            return CXM_ENOMEM;
        c->text = t;
    }
    return 0;
}

int tsv_read(const char *path, size_t limit, tsv_corpus *c, size_t *skipped, char *err)
{
    memset(c, 0, sizeof *c);
    *skipped = 0;
    gzFile f = gzopen(path, "rb");
    if (!f) {
        snprintf(err, 256, "%s: %s", path, strerror(errno));
        return CXM_EIO;
    }
    static char line[LINE];
    size_t cap = 0, tcap = 0, tlen = 0;
    int rc = grow(c, &cap, &tcap, 1);
    while (rc == 0 && (!limit || c->n < limit) && gzgets(f, line, sizeof line)) {
        size_t k = strlen(line);
        while (k && (line[k - 1] == '\n' || line[k - 1] == '\r'))
            k--;
        if (k < 2 || line[0] < '0' || line[0] > '2' || line[1] != '\t') {
            (*skipped)++;
            continue;
        }
        rc = grow(c, &cap, &tcap, tlen + k);
        if (rc)
            break;
        c->y[c->n] = (uint8_t)(line[0] - '0');
        c->off[c->n] = tlen;
        memcpy(c->text + tlen, line + 2, k - 2);
        tlen += k - 2;
        c->n++;
    }
    if (rc == 0) {
        c->off[c->n] = tlen;
        int zerr;
        const char *msg = gzerror(f, &zerr);
        if (zerr != Z_OK && zerr != Z_STREAM_END) {
            snprintf(err, 256, "%s: %s", path, msg);
            rc = CXM_EIO;
        }
    } else {
        snprintf(err, 256, "%s: out of memory", path);
    }
    gzclose(f);
    if (rc)
        tsv_free(c);
    return rc;
}

void tsv_free(tsv_corpus *c)
{
    free(c->y);
    free(c->off);
    free(c->text);
    memset(c, 0, sizeof *c);
}
