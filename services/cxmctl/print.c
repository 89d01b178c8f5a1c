/*
 * print.c - print any protobuf-c message, driven by its descriptor, so that
 * a new RPC or field prints without new code here.
 *
 * JSON follows the proto3 JSON mapping with two deliberate differences that
 * make it easier to use from shell scripts and jq: field names are those of
 * the .proto (customer_id, not customerId; protoc's
 * preserving_proto_field_names), and 64-bit integers are JSON numbers, not
 * strings (every cxm 64-bit value - milliseconds, versions, counts - is far
 * below 2^53, where numbers stay exact). As in the mapping, fields at their
 * default are left out, enums are their value names, bytes are base64 and a
 * oneof member or proto3 optional field that is set is printed even at zero.
 *
 * Text is for people: aligned "key  value" lines, nested messages indented
 * under their field name, times in RFC 3339, enums in the short lower-case
 * form the command line accepts, and the domain messages (identities,
 * values, attributes, ...) each on one line.
 */
#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cxm/v1/profile.pb-c.h"
#include "cxmctl.h"

/* --- walking fields --- */

static const void *field_at(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
    return (const char *)m + f->offset;
}

static uint32_t quantifier(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
    return *(const uint32_t *)((const char *)m + f->quantifier_offset);
}

static size_t element_size(ProtobufCType type)
{
    switch (type) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return 8;
    case PROTOBUF_C_TYPE_DOUBLE:
        return sizeof(double);
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING:
        return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(ProtobufCMessage *);
    default: /* the 32-bit integers, float and enums */
        return 4;
    }
}

/* Whether a proto3 field without explicit presence differs from its zero. */
static bool nonzero(ProtobufCType type, const void *p)
{
    switch (type) {
    case PROTOBUF_C_TYPE_STRING:
        return *(char *const *)p && **(char *const *)p;
    case PROTOBUF_C_TYPE_BYTES:
        return ((const ProtobufCBinaryData *)p)->len > 0;
    case PROTOBUF_C_TYPE_MESSAGE:
        return *(void *const *)p != NULL;
    default: /* numbers by their bits: -0.0 counts as set, as in the mapping */
        return element_size(type) == 8 ? *(const uint64_t *)p != 0 : *(const uint32_t *)p != 0;
    }
}

/* How many values a field holds: its length when repeated, else 1 when set. */
static size_t field_count(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
    if (f->label == PROTOBUF_C_LABEL_REPEATED)
        return *(const size_t *)((const char *)m + f->quantifier_offset);
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
        return quantifier(m, f) == f->id;
    /* proto3 optional scalars carry a has_ flag; strings and messages use
     * NULL for absent. */
    if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->quantifier_offset &&
        f->type != PROTOBUF_C_TYPE_STRING && f->type != PROTOBUF_C_TYPE_MESSAGE)
        return quantifier(m, f) != 0;
    if (f->label == PROTOBUF_C_LABEL_OPTIONAL || f->label == PROTOBUF_C_LABEL_REQUIRED)
        return f->type == PROTOBUF_C_TYPE_STRING || f->type == PROTOBUF_C_TYPE_MESSAGE
                   ? *(void *const *)field_at(m, f) != NULL
                   : 1;
    return nonzero(f->type, field_at(m, f));
}

/* The i-th value of a field, as a pointer to its storage. */
static const void *field_value(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f,
                               size_t i)
{
    if (f->label != PROTOBUF_C_LABEL_REPEATED)
        return field_at(m, f);
    return *(const char *const *)field_at(m, f) + i * element_size(f->type);
}

/* protobuf-c keeps no map_entry option: a map field is a repeated message
 * named Parent.<Field>Entry with exactly the fields key = 1 and value = 2. */
static bool is_map(const ProtobufCMessageDescriptor *parent, const ProtobufCFieldDescriptor *f)
{
    if (f->label != PROTOBUF_C_LABEL_REPEATED || f->type != PROTOBUF_C_TYPE_MESSAGE)
        return false;
    const ProtobufCMessageDescriptor *e = f->descriptor;
    size_t plen = strlen(parent->name), elen = strlen(e->name);
    return e->n_fields == 2 && e->fields[0].id == 1 && strcmp(e->fields[0].name, "key") == 0 &&
           e->fields[1].id == 2 && strcmp(e->fields[1].name, "value") == 0 && elen > plen + 6 &&
           strncmp(e->name, parent->name, plen) == 0 && e->name[plen] == '.' &&
           strcmp(e->name + elen - 5, "Entry") == 0;
}

/* --- scalars shared by both formats --- */

/* The shortest form that reads back as the same double. */
static void print_double(FILE *out, double d)
{
    char buf[32];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, d);
        if (strtod(buf, NULL) == d)
            break;
    }
    fputs(buf, out);
}

static void print_base64(FILE *out, const ProtobufCBinaryData *b)
{
    static const char digits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < b->len; i += 3) {
        uint32_t v = (uint32_t)b->data[i] << 16;
        if (i + 1 < b->len)
            v |= (uint32_t)b->data[i + 1] << 8;
        if (i + 2 < b->len)
            v |= b->data[i + 2];
        for (size_t k = 0; k < 4; k++)
            fputc(k <= b->len - i ? digits[(v >> (18 - 6 * k)) & 63] : '=', out);
    }
}

void cxmctl_print_time(FILE *out, int64_t unix_ms)
{
    /* Floor division, so that times before 1970 print correctly too. */
    int64_t ms = unix_ms % 1000 < 0 ? unix_ms % 1000 + 1000 : unix_ms % 1000;
    time_t secs = (time_t)((unix_ms - ms) / 1000);
    struct tm tm;
    char buf[64];
    if (!gmtime_r(&secs, &tm) || strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm) == 0) {
        fprintf(out, "%" PRId64 "ms", unix_ms);
        return;
    }
    fputs(buf, out);
    if (ms)
        fprintf(out, ".%03d", (int)ms);
    fputc('Z', out);
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    size_t len = s[0] < 0x80                   ? 1
                 : s[0] >= 0xc2 && s[0] < 0xe0 ? 2
                 : s[0] >= 0xe0 && s[0] < 0xf0 ? 3
                 : s[0] >= 0xf0 && s[0] < 0xf5 ? 4
                                               : 0;
    if (len == 0 || len > n)
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    /* Overlong three- and four-byte forms, surrogates, past U+10FFFF. */
    if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] >= 0xa0) ||
        (s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] >= 0x90))
        return 0;
    return len;
}

/* A JSON string literal. Invalid UTF-8 (a server bug, or bytes a proxy
 * mangled) becomes U+FFFD so the output always parses. */
static void print_json_string(FILE *out, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    fputc('"', out);
    for (size_t i = 0; i < n;) {
        size_t len = utf8_len(p + i, n - i);
        const char *esc = p[i] == '"'    ? "\\\""
                          : p[i] == '\\' ? "\\\\"
                          : p[i] == '\n' ? "\\n"
                          : p[i] == '\r' ? "\\r"
                          : p[i] == '\t' ? "\\t"
                                         : NULL;
        if (esc)
            fputs(esc, out);
        else if (len == 0)
            fputs("\\ufffd", out);
        else if (p[i] < 0x20 || p[i] == 0x7f)
            fprintf(out, "\\u%04x", p[i]);
        else
            fwrite(p + i, 1, len, out);
        i += len ? len : 1;
    }
    fputc('"', out);
}

/* Plain text as it is when it holds only printable characters, else as a
 * JSON literal so that control characters cannot mess up a terminal. */
static void print_text_string(FILE *out, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f) {
            print_json_string(out, s);
            return;
        }
    fputs(s, out);
}

/* --- enums --- */

/* How many leading bytes every value name of e shares, cut after a '_'
 * ("CONSENT_STATE_" of CONSENT_STATE_GRANTED). */
static size_t enum_prefix(const ProtobufCEnumDescriptor *e)
{
    if (e->n_values < 2)
        return 0;
    size_t len = strlen(e->values[0].name);
    for (unsigned i = 1; i < e->n_values; i++) {
        size_t k = 0;
        while (k < len && e->values[i].name[k] == e->values[0].name[k])
            k++;
        len = k;
    }
    while (len > 0 && e->values[0].name[len - 1] != '_')
        len--;
    return len;
}

void cxmctl_enum_short(FILE *out, const ProtobufCEnumDescriptor *e, int value)
{
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(e, value);
    if (!v) {
        fprintf(out, "%d", value);
        return;
    }
    for (const char *p = v->name + enum_prefix(e); *p; p++)
        fputc(*p == '_' ? '-' : tolower((unsigned char)*p), out);
}

static bool short_name_eq(const char *name, const char *word)
{
    for (; *name && *word; name++, word++) {
        char w = *word == '-' ? '_' : (char)toupper((unsigned char)*word);
        if (*name != w)
            return false;
    }
    return *name == *word;
}

int cxmctl_enum_parse(const ProtobufCEnumDescriptor *e, const char *word, int *value)
{
    size_t prefix = enum_prefix(e);
    for (unsigned i = 0; i < e->n_values; i++)
        if (e->values[i].value != 0 && short_name_eq(e->values[i].name + prefix, word)) {
            *value = e->values[i].value;
            return 0;
        }
    return -1;
}

/* --- JSON --- */

static void json_message(FILE *out, const ProtobufCMessage *m);

static void json_value(FILE *out, const ProtobufCFieldDescriptor *f, const void *p)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        fprintf(out, "%" PRId32, *(const int32_t *)p);
        break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        fprintf(out, "%" PRIu32, *(const uint32_t *)p);
        break;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        fprintf(out, "%" PRId64, *(const int64_t *)p);
        break;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        fprintf(out, "%" PRIu64, *(const uint64_t *)p);
        break;
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_DOUBLE: {
        double d = f->type == PROTOBUF_C_TYPE_FLOAT ? *(const float *)p : *(const double *)p;
        if (isfinite(d))
            print_double(out, d);
        else /* JSON has no literal for these; the mapping spells them as strings */
            fputs(isnan(d) ? "\"NaN\"" : d > 0 ? "\"Infinity\"" : "\"-Infinity\"", out);
        break;
    }
    case PROTOBUF_C_TYPE_BOOL:
        fputs(*(const protobuf_c_boolean *)p ? "true" : "false", out);
        break;
    case PROTOBUF_C_TYPE_ENUM: {
        const ProtobufCEnumValue *v =
            protobuf_c_enum_descriptor_get_value(f->descriptor, *(const int *)p);
        if (v)
            print_json_string(out, v->name);
        else /* a value newer than this build: the mapping's number form */
            fprintf(out, "%d", *(const int *)p);
        break;
    }
    case PROTOBUF_C_TYPE_STRING:
        print_json_string(out, *(char *const *)p ? *(char *const *)p : "");
        break;
    case PROTOBUF_C_TYPE_BYTES:
        fputc('"', out);
        print_base64(out, p);
        fputc('"', out);
        break;
    case PROTOBUF_C_TYPE_MESSAGE:
        json_message(out, *(const ProtobufCMessage *const *)p);
        break;
    }
}

/* A map key is always a JSON string, whatever its proto type. */
static void json_map_key(FILE *out, const ProtobufCMessage *entry)
{
    const ProtobufCFieldDescriptor *k = &entry->descriptor->fields[0];
    if (k->type == PROTOBUF_C_TYPE_STRING) {
        json_value(out, k, field_at(entry, k));
        return;
    }
    fputc('"', out);
    json_value(out, k, field_at(entry, k));
    fputc('"', out);
}

static void json_field(FILE *out, const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f,
                       size_t n)
{
    bool map = is_map(m->descriptor, f), repeated = f->label == PROTOBUF_C_LABEL_REPEATED;
    if (repeated)
        fputc(map ? '{' : '[', out);
    for (size_t i = 0; i < n; i++) {
        if (i)
            fputc(',', out);
        const void *p = field_value(m, f, i);
        if (map) {
            const ProtobufCMessage *entry = *(const ProtobufCMessage *const *)p;
            json_map_key(out, entry);
            fputc(':', out);
            json_value(out, &entry->descriptor->fields[1],
                       field_at(entry, &entry->descriptor->fields[1]));
        } else {
            json_value(out, f, p);
        }
    }
    if (repeated)
        fputc(map ? '}' : ']', out);
}

static void json_message(FILE *out, const ProtobufCMessage *m)
{
    if (!m) { /* a map entry without its value */
        fputs("{}", out);
        return;
    }
    fputc('{', out);
    bool first = true;
    for (unsigned i = 0; i < m->descriptor->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &m->descriptor->fields[i];
        size_t n = field_count(m, f);
        if (n == 0)
            continue;
        if (!first)
            fputc(',', out);
        first = false;
        print_json_string(out, f->name);
        fputc(':', out);
        json_field(out, m, f, n);
    }
    fputc('}', out);
}

void cxmctl_print_json_object(FILE *out, const ProtobufCMessage *m)
{
    json_message(out, m);
}

void cxmctl_print_json(FILE *out, const ProtobufCMessage *m)
{
    json_message(out, m);
    fputc('\n', out);
}

/* --- text: the domain messages, one line each --- */

/* Optional details after a value: " (a, b, c)", each part left out when
 * unset, the parentheses too when every part is. */
typedef struct details {
    FILE *out;
    int n;
} details;

static FILE *detail(details *d)
{
    fputs(d->n++ ? ", " : "  (", d->out);
    return d->out;
}

static void detail_str(details *d, const char *label, const char *s)
{
    if (s && *s) {
        fprintf(detail(d), "%s%s", label, *label ? " " : "");
        print_text_string(d->out, s);
    }
}

static void detail_time(details *d, const char *label, int64_t unix_ms)
{
    if (unix_ms) {
        fprintf(detail(d), "%s ", label);
        cxmctl_print_time(d->out, unix_ms);
    }
}

static void details_end(details *d)
{
    if (d->n)
        fputc(')', d->out);
}

const char *const cxmctl_identity_types[] = {
    [CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_CUSTOMER_ID] = "customer",
    [CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_EMAIL] = "email",
    [CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_PHONE] = "phone",
    [CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_DEVICE_ID] = "device",
    [CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_ANONYMOUS_ID] = "anonymous",
    [CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_CRM_ID] = "crm",
    [CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_CUSTOM] = "custom",
};
const size_t cxmctl_nidentity_types = sizeof cxmctl_identity_types / sizeof(char *);

/* TYPE:VALUE, the form --identity takes. */
static void text_identity(FILE *out, const ProtobufCMessage *m)
{
    const Cxm__V1__Identity *id = (const void *)m;
    if ((unsigned)id->type < cxmctl_nidentity_types && cxmctl_identity_types[id->type])
        fputs(cxmctl_identity_types[id->type], out);
    else
        fprintf(out, "type%d", (int)id->type);
    if (id->type == CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_CUSTOM)
        fprintf(out, ":%s", id->custom_type);
    fputc(':', out);
    print_text_string(out, id->value);
}

/* A value in the literal syntax of conditions: "text", 3, true, @TIME. */
static void text_value(FILE *out, const ProtobufCMessage *m)
{
    const Cxm__V1__Value *v = (const void *)m;
    switch (v->kind_case) {
    case CXM__V1__VALUE__KIND_STRING_VALUE:
        print_json_string(out, v->string_value);
        break;
    case CXM__V1__VALUE__KIND_NUMBER_VALUE:
        print_double(out, v->number_value);
        break;
    case CXM__V1__VALUE__KIND_BOOL_VALUE:
        fputs(v->bool_value ? "true" : "false", out);
        break;
    case CXM__V1__VALUE__KIND_TIMESTAMP_UNIX_MS:
        fputc('@', out);
        cxmctl_print_time(out, v->timestamp_unix_ms);
        break;
    default:
        fputs("(no value)", out);
    }
}

static const char *value_type(const Cxm__V1__Value *v)
{
    static const char *const names[] = {
        [CXM__V1__VALUE__KIND_STRING_VALUE] = "string",
        [CXM__V1__VALUE__KIND_NUMBER_VALUE] = "number",
        [CXM__V1__VALUE__KIND_BOOL_VALUE] = "bool",
        [CXM__V1__VALUE__KIND_TIMESTAMP_UNIX_MS] = "timestamp",
    };
    return v && (unsigned)v->kind_case < sizeof names / sizeof names[0] && names[v->kind_case]
               ? names[v->kind_case]
               : "unset";
}

/* NAME = VALUE, the start of an attribute or trait line. */
static void named_value(FILE *out, details *d, const char *name, const Cxm__V1__Value *v)
{
    fprintf(out, "%s = ", name);
    if (v)
        text_value(out, &v->base);
    else
        fputs("(no value)", out);
    fputs(value_type(v), detail(d));
}

static void text_linked_identity(FILE *out, const ProtobufCMessage *m)
{
    const Cxm__V1__LinkedIdentity *li = (const void *)m;
    details d = {out, 0};
    if (li->identity)
        text_identity(out, &li->identity->base);
    detail_time(&d, "linked", li->linked_at_unix_ms);
    detail_str(&d, "source", li->source);
    detail_str(&d, "merge", li->merge_id);
    details_end(&d);
}

static void text_attribute(FILE *out, const ProtobufCMessage *m)
{
    const Cxm__V1__Attribute *a = (const void *)m;
    details d = {out, 0};
    named_value(out, &d, a->name, a->value);
    if (a->strategy)
        cxmctl_enum_short(detail(&d), &cxm__v1__merge_strategy__descriptor, a->strategy);
    detail_str(&d, "source", a->source);
    detail_time(&d, "observed", a->observed_at_unix_ms);
    detail_time(&d, "updated", a->updated_at_unix_ms);
    details_end(&d);
}

static void text_trait(FILE *out, const ProtobufCMessage *m)
{
    const Cxm__V1__Trait *t = (const void *)m;
    details d = {out, 0};
    named_value(out, &d, t->name, t->value);
    detail_str(&d, "source", t->source);
    detail_time(&d, "observed", t->observed_at_unix_ms);
    detail_time(&d, "updated", t->updated_at_unix_ms);
    details_end(&d);
}

static void text_consent(FILE *out, const ProtobufCMessage *m)
{
    const Cxm__V1__Consent *c = (const void *)m;
    details d = {out, 0};
    print_text_string(out, c->scope);
    fputc(' ', out);
    cxmctl_enum_short(out, &cxm__v1__consent_state__descriptor, c->state);
    detail_time(&d, "decided", c->decided_at_unix_ms);
    detail_str(&d, "source", c->source);
    detail_str(&d, "policy", c->policy_version);
    detail_time(&d, "recorded", c->recorded_at_unix_ms);
    details_end(&d);
}

static void text_merge(FILE *out, const ProtobufCMessage *m)
{
    const Cxm__V1__MergeRecord *r = (const void *)m;
    details d = {out, 0};
    /* A dry run's record has no id. */
    fprintf(out, "%s: %s into %s", *r->merge_id ? r->merge_id : "(dry run)", r->source_customer_id,
            r->target_customer_id);
    detail_time(&d, "merged", r->merged_at_unix_ms);
    detail_str(&d, "reason", r->reason);
    if (r->linking_identity)
        fputs("via ", detail(&d)), text_identity(out, &r->linking_identity->base);
    detail_time(&d, "UNDONE", r->unmerged_at_unix_ms);
    details_end(&d);
}

static void text_channel_share(FILE *out, const ProtobufCMessage *m)
{
    const Cxm__V1__ChannelShare *s = (const void *)m;
    cxmctl_enum_short(out, &cxm__v1__channel__descriptor, s->channel);
    fprintf(out, " %" PRIu64 " events, %.1f%%", s->events, s->share * 100);
}

static void text_service_erasure(FILE *out, const ProtobufCMessage *m)
{
    const Cxm__V1__ServiceErasure *e = (const void *)m;
    details d = {out, 0};
    fprintf(out, "%s ", e->service);
    cxmctl_enum_short(out, &cxm__v1__erasure_state__descriptor, e->state);
    fprintf(detail(&d), "%" PRIu64 " records", e->records_erased);
    detail_time(&d, "completed", e->completed_at_unix_ms);
    detail_str(&d, "", e->detail);
    details_end(&d);
}

static const struct {
    const ProtobufCMessageDescriptor *desc;
    void (*print)(FILE *out, const ProtobufCMessage *m);
} one_liners[] = {
    {&cxm__v1__identity__descriptor, text_identity},
    {&cxm__v1__value__descriptor, text_value},
    {&cxm__v1__linked_identity__descriptor, text_linked_identity},
    {&cxm__v1__attribute__descriptor, text_attribute},
    {&cxm__v1__trait__descriptor, text_trait},
    {&cxm__v1__consent__descriptor, text_consent},
    {&cxm__v1__merge_record__descriptor, text_merge},
    {&cxm__v1__channel_share__descriptor, text_channel_share},
    {&cxm__v1__service_erasure__descriptor, text_service_erasure},
};

static void (*one_liner(const ProtobufCMessageDescriptor *d))(FILE *, const ProtobufCMessage *)
{
    for (size_t i = 0; i < sizeof one_liners / sizeof one_liners[0]; i++)
        if (one_liners[i].desc == d)
            return one_liners[i].print;
    return NULL;
}

/* --- text: the generic part --- */

enum { KEY_WIDTH = 22 }; /* values line up at this column at every depth */

/* The key column: the field name without a "_unix_ms" the value's format
 * already says, padded; blank on a repeated field's continuation lines. */
static void text_key(FILE *out, int indent, const char *name, bool show)
{
    size_t len = strlen(name);
    if (len > 8 && strcmp(name + len - 8, "_unix_ms") == 0)
        len -= 8;
    int width = KEY_WIDTH - indent > (int)len ? KEY_WIDTH - indent : (int)len;
    fprintf(out, "%*s%-*.*s ", indent, "", width, show ? (int)len : 0, name);
}

/* The line that opens a nested block: the field name (and index) alone. */
static void text_heading(FILE *out, const char *name, size_t index, int indent)
{
    fprintf(out, "%*s%s", indent, "", name);
    if (index != (size_t)-1)
        fprintf(out, "[%zu]", index);
    fputc('\n', out);
}

static void text_scalar(FILE *out, const ProtobufCFieldDescriptor *f, const void *p)
{
    size_t len = strlen(f->name);
    bool is_time = len > 8 && strcmp(f->name + len - 8, "_unix_ms") == 0;
    void (*line)(FILE *, const ProtobufCMessage *) = NULL;
    if (f->type == PROTOBUF_C_TYPE_MESSAGE)
        line = one_liner(f->descriptor);
    if (is_time && f->type == PROTOBUF_C_TYPE_INT64)
        cxmctl_print_time(out, *(const int64_t *)p);
    else if (f->type == PROTOBUF_C_TYPE_ENUM)
        cxmctl_enum_short(out, f->descriptor, *(const int *)p);
    else if (f->type == PROTOBUF_C_TYPE_STRING)
        print_text_string(out, *(char *const *)p);
    else if (line)
        line(out, *(const ProtobufCMessage *const *)p);
    else /* numbers, bools, bytes, and messages met inside a map */
        json_value(out, f, p);
    fputc('\n', out);
}

static void text_message(FILE *out, const ProtobufCMessage *m, int indent);

/* A map as an indented block of "key  value" lines. */
static void text_map(FILE *out, const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f,
                     size_t n, int indent)
{
    text_heading(out, f->name, (size_t)-1, indent);
    for (size_t i = 0; i < n; i++) {
        const ProtobufCMessage *e = *(const ProtobufCMessage *const *)field_value(m, f, i);
        const ProtobufCFieldDescriptor *k = &e->descriptor->fields[0];
        const ProtobufCFieldDescriptor *v = &e->descriptor->fields[1];
        fprintf(out, "%*s", indent + 2, "");
        if (k->type == PROTOBUF_C_TYPE_STRING)
            fprintf(out, "%-*s ", KEY_WIDTH - indent - 2, *(char *const *)field_at(e, k));
        else
            json_value(out, k, field_at(e, k)), fputc(' ', out);
        if (field_count(e, v))
            text_scalar(out, v, field_at(e, v));
        else
            fputc('\n', out);
    }
}

static bool has_fields(const ProtobufCMessage *m)
{
    for (unsigned i = 0; i < m->descriptor->n_fields; i++)
        if (field_count(m, &m->descriptor->fields[i]) > 0)
            return true;
    return false;
}

/* A nested message: its field name alone on a line, then its fields
 * indented. An empty one is left out, as a scalar at its default is. */
static void text_block(FILE *out, const char *name, size_t index, const ProtobufCMessage *m,
                       int indent)
{
    if (!has_fields(m))
        return;
    text_heading(out, name, index, indent);
    text_message(out, m, indent + 2);
}

static void text_field(FILE *out, const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f,
                       size_t n, int indent)
{
    if (is_map(m->descriptor, f)) {
        text_map(out, m, f, n, indent);
        return;
    }
    bool repeated = f->label == PROTOBUF_C_LABEL_REPEATED;
    bool block = f->type == PROTOBUF_C_TYPE_MESSAGE && !one_liner(f->descriptor);
    for (size_t i = 0; i < n; i++) {
        const void *p = field_value(m, f, i);
        if (block)
            text_block(out, f->name, repeated ? i : (size_t)-1, *(const ProtobufCMessage *const *)p,
                       indent);
        else
            text_key(out, indent, f->name, i == 0), text_scalar(out, f, p);
    }
}

static void text_message(FILE *out, const ProtobufCMessage *m, int indent)
{
    for (unsigned i = 0; i < m->descriptor->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &m->descriptor->fields[i];
        size_t n = field_count(m, f);
        if (n > 0)
            text_field(out, m, f, n, indent);
    }
}

void cxmctl_print_text(FILE *out, const ProtobufCMessage *m)
{
    text_message(out, m, 0);
}
