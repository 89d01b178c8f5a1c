/*
 * json_in.c - read a protobuf-c message from JSON, driven by its descriptor:
 * the inverse of print.c's JSON, so a file people write by hand (a survey)
 * becomes a request without a parser per message.
 *
 * Accepted: the proto3 JSON mapping with field names as in the .proto or in
 * lowerCamelCase; enums by their value name, by the short form the command
 * line takes ("nps" for SURVEY_KIND_NPS), or by number; 64-bit integers as
 * numbers or strings; map fields as objects; null as "leave at default".
 * Not accepted (an error naming the field): bytes, unknown fields, a value
 * of the wrong kind, nesting deeper than JSON_MAX_DEPTH.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cxmctl.h"

#define JSON_MAX_DEPTH 32
#define JSON_PATH_MAX 320 /* bytes of a field path in an error (longer ones are cut) */

typedef struct jin {
    ctl *c;
    const char *p, *end;
    char *err;
    size_t errlen;
    int depth;
} jin;

static int jin_fail(jin *j, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int jin_fail(jin *j, const char *field, const char *fmt, ...)
{
    int n = snprintf(j->err, j->errlen, "%s%s", field ? field : "", field ? ": " : "");
    va_list ap;
    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < j->errlen)
        vsnprintf(j->err + n, j->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

static void skip_ws(jin *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

/* The next character is ch (after blanks): consume it. */
static bool eat(jin *j, char ch)
{
    skip_ws(j);
    if (j->p < j->end && *j->p == ch) {
        j->p++;
        return true;
    }
    return false;
}

static bool eat_word(jin *j, const char *w)
{
    skip_ws(j);
    size_t n = strlen(w);
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, w, n) != 0)
        return false;
    j->p += n;
    return true;
}

static void put_utf8(char *out, size_t *n, unsigned cp)
{
    if (cp < 0x80) {
        out[(*n)++] = (char)cp;
    } else if (cp < 0x800) {
        out[(*n)++] = (char)(0xC0 | cp >> 6);
        out[(*n)++] = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out[(*n)++] = (char)(0xE0 | cp >> 12);
        out[(*n)++] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[(*n)++] = (char)(0x80 | (cp & 0x3F));
    } else {
        out[(*n)++] = (char)(0xF0 | cp >> 18);
        out[(*n)++] = (char)(0x80 | (cp >> 12 & 0x3F));
        out[(*n)++] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[(*n)++] = (char)(0x80 | (cp & 0x3F));
    }
}

static int hex4(const char *s, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char ch = s[i];
        int d = ch >= '0' && ch <= '9'   ? ch - '0'
                : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
                : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
                                         : -1;
        if (d < 0)
            return -1;
        v = v * 16 + (unsigned)d;
    }
    *out = v;
    return 0;
}

/* One \u escape at s (after the backslash-u), a surrogate pair joined. */
static int unicode_escape(jin *j, const char **s, unsigned *cp)
{
    if (j->end - *s < 4 || hex4(*s, cp) != 0)
        return -1;
    *s += 4;
    if (*cp >= 0xD800 && *cp < 0xDC00) {
        unsigned lo;
        if (j->end - *s < 6 || (*s)[0] != '\\' || (*s)[1] != 'u' || hex4(*s + 2, &lo) != 0 ||
            lo < 0xDC00 || lo > 0xDFFF)
            return -1;
        *cp = 0x10000 + ((*cp - 0xD800) << 10) + (lo - 0xDC00);
        *s += 6;
    }
    return 0;
}

/* A JSON string into the invocation's arena (escapes decoded). */
static int read_string(jin *j, const char *field, char **out)
{
    if (!eat(j, '"'))
        return jin_fail(j, field, "expected a string");
    const char *s = j->p;
    size_t n = 0;
    char *buf = cxmctl_new_array(j->c, (size_t)(j->end - s) + 1, 1);
    while (s < j->end && *s != '"') {
        if ((unsigned char)*s < 0x20)
            return jin_fail(j, field, "a control character inside a string");
        if (*s != '\\') {
            buf[n++] = *s++;
            continue;
        }
        if (++s >= j->end)
            break;
        static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
        const char *k = strchr(from, *s);
        if (*s == 'u') {
            unsigned cp;
            s++;
            if (unicode_escape(j, &s, &cp) != 0)
                return jin_fail(j, field, "a bad \\u escape");
            put_utf8(buf, &n, cp);
        } else if (k && *s) {
            buf[n++] = to[k - from];
            s++;
        } else {
            return jin_fail(j, field, "a bad escape \\%c", *s);
        }
    }
    if (s >= j->end)
        return jin_fail(j, field, "a string without its closing quote");
    j->p = s + 1;
    buf[n] = 0;
    *out = buf;
    return 0;
}

/* A number, or a string holding one (64-bit integers may come quoted). */
static int read_number(jin *j, const char *field, double *out)
{
    skip_ws(j);
    char *text = NULL;
    if (j->p < j->end && *j->p == '"') {
        if (read_string(j, field, &text) != 0)
            return -1;
    } else {
        const char *s = j->p;
        while (j->p < j->end && strchr("+-0123456789.eE", *j->p))
            j->p++;
        text = cxm_arena_strndup(&j->c->arena, s, (size_t)(j->p - s));
    }
    if (!text || cxmctl_parse_number(text, out) != 0)
        return jin_fail(j, field, "expected a number");
    return 0;
}

static int read_message(jin *j, const ProtobufCMessageDescriptor *d, const char *path,
                        ProtobufCMessage **out);

static int read_enum(jin *j, const ProtobufCFieldDescriptor *f, const char *path, int *out)
{
    const ProtobufCEnumDescriptor *e = f->descriptor;
    skip_ws(j);
    if (j->p < j->end && *j->p != '"') {
        double v;
        if (read_number(j, path, &v) != 0 || v != floor(v) || fabs(v) > INT32_MAX)
            return jin_fail(j, path, "expected an enum name or number");
        *out = (int)v;
        return 0;
    }
    char *name;
    if (read_string(j, path, &name) != 0)
        return -1;
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value_by_name(e, name);
    if (v) {
        *out = v->value;
        return 0;
    }
    if (cxmctl_enum_parse(e, name, out) == 0)
        return 0;
    return jin_fail(j, path, "\"%s\" is not a value of %s", name, e->name);
}

static size_t elem_size(const ProtobufCFieldDescriptor *f)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE:
        return 8;
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(void *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    default:
        return 4;
    }
}

/* An integer value v in range for f's type, stored at dst. */
static int store_integer(jin *j, const ProtobufCFieldDescriptor *f, const char *path, double v,
                         void *dst)
{
    bool u = f->type == PROTOBUF_C_TYPE_UINT32 || f->type == PROTOBUF_C_TYPE_FIXED32 ||
             f->type == PROTOBUF_C_TYPE_UINT64 || f->type == PROTOBUF_C_TYPE_FIXED64;
    bool wide = elem_size(f) == 8;
    double lo = u ? 0 : wide ? -0x1p63 : INT32_MIN, hi = wide ? 0x1p63 : u ? UINT32_MAX : INT32_MAX;
    if (v != floor(v) || v < lo || v > hi)
        return jin_fail(j, path, "expected a whole number from %.0f to %.0f", lo, hi);
    if (wide && u)
        *(uint64_t *)dst = (uint64_t)v;
    else if (wide)
        *(int64_t *)dst = (int64_t)v;
    else if (u)
        *(uint32_t *)dst = (uint32_t)v;
    else
        *(int32_t *)dst = (int32_t)v;
    return 0;
}

/* One value of f (an element, for a repeated field) at dst. */
static int read_one(jin *j, const ProtobufCFieldDescriptor *f, const char *path, void *dst)
{
    double v;
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING:
        return read_string(j, path, (char **)dst);
    case PROTOBUF_C_TYPE_MESSAGE:
        return read_message(j, f->descriptor, path, (ProtobufCMessage **)dst);
    case PROTOBUF_C_TYPE_ENUM:
        return read_enum(j, f, path, (int *)dst);
    case PROTOBUF_C_TYPE_BOOL:
        if (eat_word(j, "true") || eat_word(j, "false")) {
            *(protobuf_c_boolean *)dst = j->p[-1] == 'e' && j->p[-2] == 'u';
            return 0;
        }
        return jin_fail(j, path, "expected true or false");
    case PROTOBUF_C_TYPE_BYTES:
        return jin_fail(j, path, "bytes fields are not read from JSON");
    case PROTOBUF_C_TYPE_DOUBLE:
        return read_number(j, path, (double *)dst);
    case PROTOBUF_C_TYPE_FLOAT:
        if (read_number(j, path, &v) != 0)
            return -1;
        *(float *)dst = (float)v;
        return 0;
    default:
        return read_number(j, path, &v) != 0 ? -1 : store_integer(j, f, path, v, dst);
    }
}

/* A map field (a repeated KeyEntry message): a JSON object. */
static bool is_map(const ProtobufCFieldDescriptor *f)
{
    const ProtobufCMessageDescriptor *m = f->descriptor;
    return f->label == PROTOBUF_C_LABEL_REPEATED && f->type == PROTOBUF_C_TYPE_MESSAGE &&
           m->n_fields == 2 && strcmp(m->fields[0].name, "key") == 0 &&
           strcmp(m->fields[1].name, "value") == 0 && strlen(m->name) > 5 &&
           strcmp(m->name + strlen(m->name) - 5, "Entry") == 0;
}

/* The elements of a repeated field (an array, or an object for a map),
 * collected in a growing array and stored with their count. */
static int read_repeated(jin *j, const ProtobufCFieldDescriptor *f, const char *path,
                         ProtobufCMessage *m)
{
    bool map = is_map(f);
    if (!eat(j, map ? '{' : '['))
        return jin_fail(j, path, map ? "expected an object" : "expected an array");
    size_t size = elem_size(f), n = 0, cap = 8;
    char *elems = cxmctl_new_array(j->c, cap, size);
    char close = map ? '}' : ']';
    while (!eat(j, close)) {
        if (n && !eat(j, ','))
            return jin_fail(j, path, "expected ',' or '%c'", close);
        if (n == cap) {
            char *grown = cxmctl_new_array(j->c, cap * 2, size);
            memcpy(grown, elems, cap * size);
            elems = grown, cap *= 2;
        }
        char at[JSON_PATH_MAX];
        snprintf(at, sizeof at, "%.280s[%zu]", path, n);
        int rc;
        if (map) {
            ProtobufCMessage *e = cxmctl_new_message(j->c, f->descriptor);
            const ProtobufCMessageDescriptor *d = f->descriptor;
            rc = read_string(j, at, (char **)((char *)e + d->fields[0].offset));
            if (rc == 0 && !eat(j, ':'))
                rc = jin_fail(j, at, "expected ':'");
            if (rc == 0)
                rc = read_one(j, &d->fields[1], at, (char *)e + d->fields[1].offset);
            *(ProtobufCMessage **)(elems + n * size) = e;
        } else {
            rc = read_one(j, f, at, elems + n * size);
        }
        if (rc != 0)
            return rc;
        n++;
    }
    *(size_t *)((char *)m + f->quantifier_offset) = n;
    *(void **)((char *)m + f->offset) = elems;
    return 0;
}

/* The field of d named name (as in the .proto, or in lowerCamelCase). */
static const ProtobufCFieldDescriptor *find_field(const ProtobufCMessageDescriptor *d,
                                                  const char *name)
{
    const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(d, name);
    for (unsigned i = 0; !f && i < d->n_fields; i++) {
        const char *p = d->fields[i].name, *q = name;
        for (; *p && *q; p++, q++) {
            if (*p == '_' && p[1] && *q == p[1] - ('a' <= p[1] && p[1] <= 'z' ? 32 : 0))
                p++;
            else if (*p != *q)
                break;
        }
        if (!*p && !*q)
            f = &d->fields[i];
    }
    return f;
}

/* Field f's value into m: its presence (a oneof's case, a proto3 optional's
 * has_) recorded as the field is set. */
static int read_field(jin *j, const ProtobufCFieldDescriptor *f, const char *path,
                      ProtobufCMessage *m)
{
    if (eat_word(j, "null"))
        return 0;
    if (f->label == PROTOBUF_C_LABEL_REPEATED)
        return read_repeated(j, f, path, m);
    int rc = read_one(j, f, path, (char *)m + f->offset);
    if (rc == 0 && (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
        *(uint32_t *)((char *)m + f->quantifier_offset) = f->id;
    else if (rc == 0 && f->label == PROTOBUF_C_LABEL_OPTIONAL &&
             f->type != PROTOBUF_C_TYPE_MESSAGE && f->type != PROTOBUF_C_TYPE_STRING)
        *(protobuf_c_boolean *)((char *)m + f->quantifier_offset) = 1;
    return rc;
}

static int read_message(jin *j, const ProtobufCMessageDescriptor *d, const char *path,
                        ProtobufCMessage **out)
{
    if (++j->depth > JSON_MAX_DEPTH)
        return jin_fail(j, path, "nested deeper than %d", JSON_MAX_DEPTH);
    if (!eat(j, '{'))
        return jin_fail(j, path[0] ? path : NULL, "expected an object");
    ProtobufCMessage *m = cxmctl_new_message(j->c, d);
    for (size_t n = 0; !eat(j, '}'); n++) {
        char *name;
        if ((n && !eat(j, ',')) || read_string(j, path[0] ? path : NULL, &name) != 0 ||
            !eat(j, ':'))
            return j->err[0] ? -1 : jin_fail(j, path[0] ? path : NULL, "expected \"name\": value");
        const ProtobufCFieldDescriptor *f = find_field(d, name);
        char at[JSON_PATH_MAX];
        snprintf(at, sizeof at, "%.200s%s%.100s", path, path[0] ? "." : "", name);
        if (!f)
            return jin_fail(j, at, "%s has no such field", d->name);
        if (read_field(j, f, at, m) != 0)
            return -1;
    }
    j->depth--;
    *out = m;
    return 0;
}

int cxmctl_json_message(ctl *c, const char *text, size_t len, const ProtobufCMessageDescriptor *d,
                        ProtobufCMessage **out, char *err, size_t errlen)
{
    jin j = {.c = c, .p = text, .end = text + len, .err = err, .errlen = errlen};
    err[0] = 0;
    if (read_message(&j, d, "", out) != 0)
        return -1;
    skip_ws(&j);
    if (j.p != j.end)
        return jin_fail(&j, NULL, "text after the closing '}'");
    return 0;
}
