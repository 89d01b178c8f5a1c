/*
 * reflection.c - grpc.reflection.v1 and v1alpha ServerReflectionInfo over the
 * descriptor set that the build embeds (protoc --include_imports
 * --include_source_info), so grpcurl-style tools need no .proto files and
 * show our comments.
 *
 * The v1alpha messages are wire-identical to v1 (same fields, same numbers),
 * so one handler decoding v1 types serves both paths.
 *
 * The index is built once at start-up and read-only afterwards: requests take
 * no lock. Lookups are linear; the set holds a few hundred symbols and
 * reflection is not a hot path.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cxm/err.h"
#include "cxm/log.h"
#include "google/protobuf/descriptor.pb-c.h"
#include "grpc/reflection/v1/reflection.pb-c.h"
#include "grpc/reflection/v1alpha/reflection.pb-c.h"
#include "server_internal.h"

extern const unsigned char cxm_descriptor_set[];
extern const size_t cxm_descriptor_set_len;

typedef struct file_entry {
    const Google__Protobuf__FileDescriptorProto *fd;
    ProtobufCBinaryData bytes; /* the file as it stands in the embedded set */
} file_entry;

typedef struct symbol {
    char *name; /* fully qualified, no leading dot */
    size_t file;
    bool is_message;
} symbol;

struct cxm__reflection {
    Google__Protobuf__FileDescriptorSet *set;
    file_entry *files;
    size_t nfiles;
    symbol *symbols;
    size_t nsymbols, cap;
    char **services;
    size_t nservices;
    cxm_service v1, v1alpha;
};

/* ---- index ---- */

static uint64_t read_varint(const uint8_t **p, const uint8_t *end, bool *ok)
{
    uint64_t v = 0;
    for (int shift = 0; *p < end && shift < 64; shift += 7) {
        uint8_t b = *(*p)++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return v;
    }
    *ok = false;
    return 0;
}

/* Point each file entry at its bytes inside the set (field 1, repeated). */
static bool slice_files(cxm__reflection *r)
{
    const uint8_t *p = cxm_descriptor_set, *end = p + cxm_descriptor_set_len;
    size_t i = 0;
    bool ok = true;
    while (p < end && ok) {
        uint64_t key = read_varint(&p, end, &ok);
        uint64_t len = read_varint(&p, end, &ok);
        if (!ok || key != ((1 << 3) | 2) || len > (uint64_t)(end - p) || i == r->nfiles)
            return false;
        r->files[i].bytes.data = (uint8_t *)p;
        r->files[i].bytes.len = (size_t)len;
        p += len;
        i++;
    }
    return ok && i == r->nfiles;
}

static bool add_symbol(cxm__reflection *r, const char *scope, const char *name, size_t file,
                       bool is_message)
{
    if (r->nsymbols == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 256;
        symbol *s = realloc(r->symbols, cap * sizeof *s);
        if (!s)
            return false;
        r->symbols = s;
        r->cap = cap;
    }
    size_t len = strlen(scope) + 1 + strlen(name) + 1;
    char *full = malloc(len);
    if (!full)
        return false;
    snprintf(full, len, "%s%s%s", scope, *scope ? "." : "", name);
    r->symbols[r->nsymbols++] = (symbol){full, file, is_message};
    return true;
}

static bool index_enums(cxm__reflection *r, const char *scope, size_t file,
                        Google__Protobuf__EnumDescriptorProto **enums, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!add_symbol(r, scope, enums[i]->name, file, false))
            return false;
    return true;
}

static bool index_messages(cxm__reflection *r, const char *scope, size_t file,
                           Google__Protobuf__DescriptorProto **msgs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!add_symbol(r, scope, msgs[i]->name, file, true))
            return false;
        const char *inner = r->symbols[r->nsymbols - 1].name;
        if (!index_messages(r, inner, file, msgs[i]->nested_type, msgs[i]->n_nested_type) ||
            !index_enums(r, inner, file, msgs[i]->enum_type, msgs[i]->n_enum_type))
            return false;
    }
    return true;
}

static bool index_file(cxm__reflection *r, size_t file)
{
    const Google__Protobuf__FileDescriptorProto *fd = r->files[file].fd;
    const char *pkg = fd->package ? fd->package : "";
    if (!index_messages(r, pkg, file, fd->message_type, fd->n_message_type) ||
        !index_enums(r, pkg, file, fd->enum_type, fd->n_enum_type))
        return false;
    for (size_t i = 0; i < fd->n_service; i++) {
        const Google__Protobuf__ServiceDescriptorProto *svc = fd->service[i];
        if (!add_symbol(r, pkg, svc->name, file, false))
            return false;
        const char *svc_name = r->symbols[r->nsymbols - 1].name;
        for (size_t j = 0; j < svc->n_method; j++)
            if (!add_symbol(r, svc_name, svc->method[j]->name, file, false))
                return false;
    }
    return true;
}

static const symbol *find_symbol(const cxm__reflection *r, const char *name)
{
    if (name[0] == '.')
        name++;
    for (size_t i = 0; i < r->nsymbols; i++)
        if (strcmp(r->symbols[i].name, name) == 0)
            return &r->symbols[i];
    return NULL;
}

static size_t find_file(const cxm__reflection *r, const char *name)
{
    for (size_t i = 0; i < r->nfiles; i++)
        if (strcmp(r->files[i].fd->name, name) == 0)
            return i;
    return SIZE_MAX;
}

/* ---- answers ---- */

typedef Grpc__Reflection__V1__ServerReflectionRequest refl_request;
typedef Grpc__Reflection__V1__ServerReflectionResponse refl_response;

/* Append file and, depth first, everything it imports, each once. */
static void collect_files(const cxm__reflection *r, size_t file, bool *seen,
                          ProtobufCBinaryData *out, size_t *n)
{
    if (seen[file])
        return;
    seen[file] = true;
    out[(*n)++] = r->files[file].bytes;
    const Google__Protobuf__FileDescriptorProto *fd = r->files[file].fd;
    for (size_t i = 0; i < fd->n_dependency; i++) {
        size_t dep = find_file(r, fd->dependency[i]);
        if (dep != SIZE_MAX)
            collect_files(r, dep, seen, out, n);
    }
}

static void answer_error(refl_response *resp, cxm_arena *a, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void answer_error(refl_response *resp, cxm_arena *a, int err, const char *fmt, ...)
{
    Grpc__Reflection__V1__ErrorResponse *e = cxm_arena_alloc(a, sizeof *e);
    char *msg = cxm_arena_alloc(a, 512);
    if (!e || !msg)
        return;
    grpc__reflection__v1__error_response__init(e);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, 512, fmt, ap);
    va_end(ap);
    e->error_code = (int32_t)cxm_err_status(err);
    e->error_message = msg;
    resp->message_response_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE;
    resp->error_response = e;
}

static void answer_files(const cxm__reflection *r, refl_response *resp, cxm_arena *a, size_t file)
{
    Grpc__Reflection__V1__FileDescriptorResponse *fr = cxm_arena_alloc(a, sizeof *fr);
    bool *seen = cxm_arena_calloc(a, r->nfiles, sizeof *seen);
    ProtobufCBinaryData *files = cxm_arena_calloc(a, r->nfiles, sizeof *files);
    if (!fr || !seen || !files)
        return;
    grpc__reflection__v1__file_descriptor_response__init(fr);
    fr->file_descriptor_proto = files;
    collect_files(r, file, seen, files, &fr->n_file_descriptor_proto);
    resp->message_response_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE;
    resp->file_descriptor_response = fr;
}

static void answer_services(const cxm__reflection *r, refl_response *resp, cxm_arena *a)
{
    Grpc__Reflection__V1__ListServiceResponse *ls = cxm_arena_alloc(a, sizeof *ls);
    Grpc__Reflection__V1__ServiceResponse *items = cxm_arena_calloc(a, r->nservices, sizeof *items);
    Grpc__Reflection__V1__ServiceResponse **ptrs = cxm_arena_calloc(a, r->nservices, sizeof *ptrs);
    if (!ls || !items || !ptrs)
        return;
    grpc__reflection__v1__list_service_response__init(ls);
    for (size_t i = 0; i < r->nservices; i++) {
        grpc__reflection__v1__service_response__init(&items[i]);
        items[i].name = r->services[i];
        ptrs[i] = &items[i];
    }
    ls->service = ptrs;
    ls->n_service = r->nservices;
    resp->message_response_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE;
    resp->list_services_response = ls;
}

static void answer_extension_numbers(const cxm__reflection *r, refl_response *resp, cxm_arena *a,
                                     const char *type)
{
    const symbol *sym = find_symbol(r, type);
    if (!sym || !sym->is_message) {
        answer_error(resp, a, CXM_ENOTFOUND, "no message type named \"%s\"", type);
        return;
    }
    Grpc__Reflection__V1__ExtensionNumberResponse *en = cxm_arena_alloc(a, sizeof *en);
    if (!en)
        return;
    grpc__reflection__v1__extension_number_response__init(en);
    en->base_type_name = sym->name; /* cxm declares no extensions */
    resp->message_response_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ALL_EXTENSION_NUMBERS_RESPONSE;
    resp->all_extension_numbers_response = en;
}

static void answer(const cxm__reflection *r, const refl_request *req, refl_response *resp,
                   cxm_arena *a)
{
    size_t file;
    const symbol *sym;
    switch (req->message_request_case) {
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME:
        file = find_file(r, req->file_by_filename);
        if (file == SIZE_MAX)
            answer_error(resp, a, CXM_ENOTFOUND, "no file named \"%s\"", req->file_by_filename);
        else
            answer_files(r, resp, a, file);
        break;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL:
        sym = find_symbol(r, req->file_containing_symbol);
        if (!sym)
            answer_error(resp, a, CXM_ENOTFOUND, "no symbol named \"%s\"",
                         req->file_containing_symbol);
        else
            answer_files(r, resp, a, sym->file);
        break;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION:
        answer_error(resp, a, CXM_ENOTFOUND, "%s declares no extensions",
                     req->file_containing_extension->containing_type);
        break;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE:
        answer_extension_numbers(r, resp, a, req->all_extension_numbers_of_type);
        break;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES:
        answer_services(r, resp, a);
        break;
    default:
        answer_error(resp, a, CXM_EINVAL, "%s",
                     "the request sets none of file_by_filename, file_containing_symbol, "
                     "file_containing_extension, all_extension_numbers_of_type, list_services");
        break;
    }
}

/* One answer per request on the bidi stream. The arena grows with the
 * stream, so it is bounded by the call's arena limit; reflection sessions
 * are short. */
static void on_request(cxm_call *call, const ProtobufCMessage *msg)
{
    const cxm__reflection *r = cxm_call_service_ctx(call);
    const refl_request *req = (const void *)msg;
    refl_response resp = GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__INIT;
    resp.valid_host = req->host;
    resp.original_request = (refl_request *)req;
    answer(r, req, &resp, cxm_call_arena(call));
    if (resp.message_response_case ==
        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE__NOT_SET) {
        cxm_call_finish(call, CXM_ENOMEM, "out of memory answering a reflection request");
        return;
    }
    int rc = cxm_call_send(call, &resp.base);
    if (rc != 0)
        cxm_call_finish(call, rc, "cannot send the reflection answer: %s", cxm_strerror(rc));
}

static void on_cancel(cxm_call *call)
{
    cxm_call_finish(call, CXM_ECANCELLED, NULL);
}

static const cxm_method reflection_methods[] = {
    {"ServerReflectionInfo", CXM_BIDI_STREAMING,
     &grpc__reflection__v1__server_reflection_request__descriptor, on_request, NULL, on_cancel},
};

/* The schema is no secret, but the port should not tell strangers what it
 * serves: any valid credential. */
static const cxm_method_access reflection_access[] = {{"ServerReflectionInfo", CXM_ACCESS_ANY}};

/* ---- lifecycle ---- */

static int load(cxm__reflection *r)
{
    r->set = google__protobuf__file_descriptor_set__unpack(NULL, cxm_descriptor_set_len,
                                                           cxm_descriptor_set);
    if (!r->set)
        return CXM_ECORRUPT;
    r->nfiles = r->set->n_file;
    r->files = calloc(r->nfiles, sizeof *r->files);
    if (!r->files)
        return CXM_ENOMEM;
    for (size_t i = 0; i < r->nfiles; i++)
        r->files[i].fd = r->set->file[i];
    if (!slice_files(r))
        return CXM_ECORRUPT;
    for (size_t i = 0; i < r->nfiles; i++)
        if (!index_file(r, i))
            return CXM_ENOMEM;
    return 0;
}

int cxm__reflection_create(const char *const *names, size_t n, cxm__reflection **out)
{
    cxm__reflection *r = calloc(1, sizeof *r);
    if (!r)
        return CXM_ENOMEM;
    int rc = load(r);
    if (rc == 0 && !(r->services = calloc(n, sizeof *r->services)))
        rc = CXM_ENOMEM;
    for (size_t i = 0; rc == 0 && i < n; i++, r->nservices++)
        if (!(r->services[i] = strdup(names[i])))
            rc = CXM_ENOMEM;
    if (rc != 0) {
        cxm_log_error("reflection.load_failed",
                      "cannot index the embedded descriptor set: %s; the build is broken",
                      cxm_strerror(rc));
        cxm__reflection_destroy(r);
        return rc;
    }
    r->v1 = (cxm_service){.name = "grpc.reflection.v1.ServerReflection",
                          .methods = reflection_methods,
                          .nmethods = 1,
                          .access = reflection_access,
                          .naccess = 1,
                          .contract = &grpc__reflection__v1__server_reflection__descriptor,
                          .ctx = r};
    r->v1alpha = r->v1;
    r->v1alpha.name = "grpc.reflection.v1alpha.ServerReflection";
    r->v1alpha.contract = &grpc__reflection__v1alpha__server_reflection__descriptor;
    *out = r;
    return 0;
}

const cxm_service *cxm__reflection_service_v1(cxm__reflection *r)
{
    return &r->v1;
}

const cxm_service *cxm__reflection_service_v1alpha(cxm__reflection *r)
{
    return &r->v1alpha;
}

void cxm__reflection_destroy(cxm__reflection *r)
{
    for (size_t i = 0; i < r->nsymbols; i++)
        free(r->symbols[i].name);
    free(r->symbols);
    for (size_t i = 0; i < r->nservices; i++)
        free(r->services[i]);
    free(r->services);
    free(r->files);
    if (r->set)
        google__protobuf__file_descriptor_set__free_unpacked(r->set, NULL);
    free(r);
}
