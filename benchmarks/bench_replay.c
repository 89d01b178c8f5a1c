/* bench_replay.c - a recorded request stream for cxm-bench (see bench_replay.h). */
#include "bench_replay.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/slice.h>

#include "cxm/err.h"
#include "cxm/svc.h"
#include "cxm/v1/feedback.pb-c.h"
#include "cxm/v1/journey.pb-c.h"
#include "cxm/v1/personalisation.pb-c.h"
#include "cxm/v1/profile.pb-c.h"
#include "delim.h"
#include "grpc/health/v1/health.pb-c.h"

static const ProtobufCServiceDescriptor *const known_services[] = {
    &cxm__v1__profile_service__descriptor,  &cxm__v1__journey_service__descriptor,
    &cxm__v1__feedback_service__descriptor, &cxm__v1__personalisation_service__descriptor,
    &grpc__health__v1__health__descriptor,
};

const ProtobufCMessageDescriptor *cxm_bench_request_type(const char *method)
{
    const char *slash = method[0] == '/' ? strchr(method + 1, '/') : NULL;
    if (!slash)
        return NULL;
    size_t svc_len = (size_t)(slash - method - 1);
    for (size_t i = 0; i < sizeof known_services / sizeof known_services[0]; i++) {
        const ProtobufCServiceDescriptor *s = known_services[i];
        if (strlen(s->name) != svc_len || memcmp(s->name, method + 1, svc_len) != 0)
            continue;
        const ProtobufCMethodDescriptor *m =
            protobuf_c_service_descriptor_get_method_by_name(s, slash + 1);
        return m ? m->input : NULL;
    }
    return NULL;
}

/* Field f's values in m (strings or messages: pointers both), *n of them; a
 * singular field is an array of one, an unset oneof member of none. */
static const void *const *field_values(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f,
                                       size_t *n)
{
    const char *base = (const char *)m;
    *n = 1;
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
        *n = *(const size_t *)(base + f->quantifier_offset);
        return *(const void *const *const *)(base + f->offset);
    }
    if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
        *(const uint32_t *)(base + f->quantifier_offset) != f->id)
        *n = 0;
    return (const void *const *)(base + f->offset);
}

/* Why m cannot be what its type describes, into why: a field the type does
 * not define or a string that is not UTF-8, in m or any message inside it.
 * protobuf-c takes both without complaint, and they are what another
 * method's request looks like when read as this one (its messages land in
 * string fields, their fields in places this type has none). */
static bool odd_message(const ProtobufCMessage *m, char *why, size_t len)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    if (m->n_unknown_fields) {
        snprintf(why, len, "it has a field %u that %s does not define", m->unknown_fields[0].tag,
                 d->name);
        return true;
    }
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->type != PROTOBUF_C_TYPE_MESSAGE && f->type != PROTOBUF_C_TYPE_STRING)
            continue;
        size_t n;
        const void *const *v = field_values(m, f, &n);
        for (size_t k = 0; k < n; k++) {
            if (!v[k])
                continue;
            if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
                if (odd_message(v[k], why, len))
                    return true;
            } else if (!cxm_svc_utf8_valid(v[k], strlen(v[k]))) {
                snprintf(why, len, "its %s.%s is not UTF-8 text", d->name, f->name);
                return true;
            }
        }
    }
    return false;
}

/* Whether record `no` is a `type`; says why not on stderr. */
static int check_record(const char *path, size_t no, const ProtobufCMessageDescriptor *type,
                        const uint8_t *buf, size_t len)
{
    ProtobufCMessage *m = protobuf_c_message_unpack(type, NULL, len, buf);
    char why[256] = "it is not valid protobuf";
    int rc = m && !odd_message(m, why, sizeof why) ? 0 : CXM_EINVAL;
    if (rc != 0)
        fprintf(stderr,
                "cxm-bench: --requests %s: record %zu does not decode as %s (%s); is it a file "
                "of another method?\n",
                path, no, type->name, why);
    if (m)
        protobuf_c_message_free_unpacked(m, NULL);
    return rc;
}

/* Append one record to the growing array. */
static int push_record(grpc_byte_buffer ***records, size_t *n, size_t *cap, const uint8_t *buf,
                       size_t len)
{
    if (*n == *cap) {
        size_t grown = *cap ? *cap * 2 : 1024;
        grpc_byte_buffer **p = realloc(*records, grown * sizeof *p);
        if (!p)
            return CXM_ENOMEM;
        *records = p;
        *cap = grown;
    }
    grpc_slice s = len ? grpc_slice_from_copied_buffer((const char *)buf, len) : grpc_empty_slice();
    (*records)[*n] = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    if (!(*records)[*n])
        return CXM_ENOMEM;
    (*n)++;
    return 0;
}

/* A damaged or unreadable stream; CXM_ENOMEM is reported by the caller. */
static void read_error(const char *path, size_t no, int rc)
{
    if (rc == CXM_ECORRUPT)
        fprintf(stderr,
                "cxm-bench: --requests %s: record %zu is cut short or its length is "
                "malformed (over 64 MiB or an endless varint); the file is damaged\n",
                path, no);
    else if (rc == CXM_EIO)
        fprintf(stderr, "cxm-bench: --requests %s: cannot read record %zu: %s\n", path, no,
                strerror(errno));
}

int cxm_bench_replay_load(cxm_bench_replay *r, const char *path, const char *method)
{
    const ProtobufCMessageDescriptor *type = cxm_bench_request_type(method);
    if (!type)
        fprintf(stderr,
                "cxm-bench: %s is not a method cxm-bench knows; the records of %s are "
                "sent unchecked and the server will judge them\n",
                method, path);
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cxm-bench: --requests %s: cannot open: %s\n", path, strerror(errno));
        return CXM_EINVAL;
    }
    grpc_byte_buffer **records = NULL;
    uint8_t *buf = NULL;
    size_t n = 0, cap = 0, bufcap = 0, len;
    int rc;
    while ((rc = cxm_delim_read(f, &buf, &bufcap, &len)) == 1) {
        rc = type ? check_record(path, n + 1, type, buf, len) : 0;
        if (rc == 0)
            rc = push_record(&records, &n, &cap, buf, len);
        if (rc != 0)
            goto fail;
    }
    if (rc < 0) {
        read_error(path, n + 1, rc);
        goto fail;
    }
    if (n == 0) {
        fprintf(stderr, "cxm-bench: --requests %s: no records (the file is empty)\n", path);
        rc = CXM_EINVAL;
        goto fail;
    }
    fclose(f);
    free(buf);
    *r = (cxm_bench_replay){.records = records, .n = n};
    return 0;
fail:
    if (rc == CXM_ENOMEM)
        fprintf(stderr, "cxm-bench: --requests %s: out of memory at record %zu\n", path, n + 1);
    fclose(f);
    free(buf);
    cxm_bench_replay_dispose(&(cxm_bench_replay){.records = records, .n = n});
    return rc;
}

void cxm_bench_replay_dispose(cxm_bench_replay *r)
{
    for (size_t i = 0; i < r->n; i++)
        grpc_byte_buffer_destroy(r->records[i]);
    free(r->records);
    r->records = NULL;
    r->n = 0;
}
