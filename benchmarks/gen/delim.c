/* delim.c - varint-length-delimited message streams (see delim.h). */
#include "delim.h"

#include <stdlib.h>

#include <cxm/err.h>

size_t cxm_delim_varint(uint64_t v, uint8_t *out)
{
    size_t n = 0;
    while (v >= 0x80) {
        out[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    out[n++] = (uint8_t)v;
    return n;
}

int cxm_delim_write(FILE *f, const uint8_t *msg, size_t len)
{
    uint8_t head[CXM_DELIM_VARINT_MAX];
    size_t n = cxm_delim_varint(len, head);
    if (fwrite(head, 1, n, f) != n || fwrite(msg, 1, len, f) != len)
        return CXM_EIO;
    return 0;
}

/* The record length: 1 with *len, 0 at end of stream before its first
 * byte, or an error code. */
static int read_length(FILE *f, uint64_t *len)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        int c = getc(f);
        if (c == EOF)
            return ferror(f) ? CXM_EIO : shift == 0 ? 0 : CXM_ECORRUPT;
        v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) {
            *len = v;
            return 1;
        }
    }
    return CXM_ECORRUPT;
}

int cxm_delim_read(FILE *f, uint8_t **buf, size_t *cap, size_t *len)
{
    uint64_t n;
    int rc = read_length(f, &n);
    if (rc <= 0)
        return rc;
    if (n > CXM_DELIM_MAX_RECORD)
        return CXM_ECORRUPT;
    if (n > *cap || !*buf) {
        uint8_t *grown = realloc(*buf, n ? n : 1);
        if (!grown)
            return CXM_ENOMEM;
        *buf = grown;
        *cap = n ? n : 1;
    }
    if (fread(*buf, 1, n, f) != n)
        return ferror(f) ? CXM_EIO : CXM_ECORRUPT;
    *len = n;
    return 1;
}
