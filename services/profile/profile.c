/*
 * profile.c - the profile service as a module: its flags, the state its
 * handlers share (prof_ctx), and opening and closing it.
 *
 * Handlers are in prof_rpc.c, request checks in prof_check.c, the tables
 * in pdb.c, and the rules about profiles in model.c.
 */
#include "profile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cxm/bus.h"
#include "cxm/err.h"
#include "cxm/log.h"
#include "cxm/svc.h"
#include "prof_rpc.h"

#define MAX_BLOCKED 64
#define MAX_ERASURE_SERVICES 16
#define ERASURE_FLAG "--profile-erasure-services (or CXM_PROFILE_ERASURE_SERVICES)"

/* ---- configuration (module flags) ---- */

static const char *cfg_unique = "crm_id";
static const char *cfg_blocklist = "";
static const char *cfg_phone_country = "";
static const char *cfg_erasure = "journey,feedback,personalisation";

static const cxm_opt prof_opts[] = {
    {"profile-unique-types", CXM_OPT_STR, &cfg_unique, 0, 0,
     "identity types one customer may hold only one value of, comma-separated (crm_id, email, "
     "phone, device_id, ...)"},
    {"profile-identity-blocklist", CXM_OPT_STR, &cfg_blocklist, 0, 0,
     "identity values refused as junk in addition to the built-in list, comma-separated"},
    {"profile-phone-country", CXM_OPT_STR, &cfg_phone_country, 0, 0,
     "country code given to national phone numbers (0-prefixed), e.g. 82; empty: refuse them"},
    {"profile-erasure-services", CXM_OPT_STR, &cfg_erasure, 0, 0,
     "services that must confirm an erasure before its receipt is complete, comma-separated; "
     "empty: the profile service alone"},
};

/* What open allocates besides the store: the context handed to handlers,
 * and the buffers its configuration points into. */
typedef struct prof_module_state {
    prof_ctx ctx;
    char *blocklist_copy;
    const char *blocked[MAX_BLOCKED];
    char *erasure_copy;
    const char *erasure[MAX_ERASURE_SERVICES];
} prof_module_state;

static int parse_unique(prof_unique_types *unique)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", cfg_unique);
    const char *names[8];
    size_t n;
    if (cxm_svc_split(buf, names, 8, &n) != 0) {
        cxm_log_error("profile.config", "--profile-unique-types: at most 8 identity types");
        return CXM_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        char full[80];
        snprintf(full, sizeof full, "IDENTITY_TYPE_%s", names[i]);
        for (char *c = full; *c; c++)
            *c = (char)(*c >= 'a' && *c <= 'z' ? *c - 32 : *c);
        const ProtobufCEnumValue *v =
            protobuf_c_enum_descriptor_get_value_by_name(&cxm__v1__identity_type__descriptor, full);
        if (!v || v->value == 0) {
            cxm_log_error("profile.config", "--profile-unique-types: unknown identity type \"%s\"",
                          names[i]);
            return CXM_EINVAL;
        }
        unique->types[unique->n++] = (Cxm__V1__IdentityType)v->value;
    }
    return 0;
}

static int parse_ident(prof_module_state *st)
{
    if (!(st->blocklist_copy = strdup(cfg_blocklist)))
        return CXM_ENOMEM;
    if (cxm_svc_split(st->blocklist_copy, st->blocked, MAX_BLOCKED, &st->ctx.ident.nblocklist)) {
        cxm_log_error("profile.config", "--profile-identity-blocklist: at most %d values",
                      MAX_BLOCKED);
        return CXM_EINVAL;
    }
    st->ctx.ident.blocklist = st->blocked;
    if (strlen(cfg_phone_country) > 4 ||
        strspn(cfg_phone_country, "0123456789") != strlen(cfg_phone_country)) {
        cxm_log_error("profile.config",
                      "--profile-phone-country: \"%s\" is not a country code "
                      "(1 to 4 digits, e.g. 82)",
                      cfg_phone_country);
        return CXM_EINVAL;
    }
    st->ctx.ident.default_phone_country = cfg_phone_country;
    return 0;
}

/* --profile-erasure-services: distinct slug names, none of them "profile"
 * (this service's own erasure is done before DeleteProfile answers). */
static int parse_erasure(prof_module_state *st)
{
    if (!(st->erasure_copy = strdup(cfg_erasure)))
        return CXM_ENOMEM;
    size_t n;
    if (cxm_svc_split(st->erasure_copy, st->erasure, MAX_ERASURE_SERVICES, &n) != 0) {
        cxm_log_error("profile.config", ERASURE_FLAG ": at most %d services", MAX_ERASURE_SERVICES);
        return CXM_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        const char *s = st->erasure[i], *why = NULL;
        if (!cxm_svc_slug_valid(s))
            why = "is not a service name ([a-z0-9_.-], 1 to 64 bytes)";
        else if (strcmp(s, "profile") == 0)
            why = "is this service, whose erasure is done at once: list only the others";
        for (size_t k = 0; k < i && !why; k++)
            if (strcmp(st->erasure[k], s) == 0)
                why = "is listed twice";
        if (why) {
            cxm_log_error("profile.config", ERASURE_FLAG ": \"%.80s\" %s", s, why);
            return CXM_EINVAL;
        }
    }
    st->ctx.erasure_services = st->erasure;
    st->ctx.nerasure_services = n;
    return 0;
}

static const char *const completed_types[] = {"ErasureCompleted"};
static const char *const journey_types[] = {"ErasureCompleted", "StageChanged"};
static const char *const feedback_types[] = {"FeedbackReceived", "FollowUpChanged"};

/* The producer of profile's events, the ErasureCompleted events of each
 * erasure service, and feedback's answers and follow-ups. Without a bus no
 * change could be published, and subscribers would silently miss it: refuse
 * to open. */
static int open_events(cxm_store *store, prof_ctx *ctx)
{
    cxm_bus *bus = cxm_bus_of(store);
    if (!bus) {
        cxm_log_error("profile.bus_missing",
                      "the profile service publishes its changes on the event bus, and its store "
                      "has none (open it through cxm_host_main)");
        return CXM_EUNAVAIL;
    }
    int rc = cxm_bus_producer_open(bus, "profile", &ctx->events);
    for (size_t i = 0; rc == 0 && i < ctx->nerasure_services; i++) {
        /* One subscription per producer: journey's also carries the stages
         * (a deployment without journey has none to hear). */
        bool j = strcmp(ctx->erasure_services[i], "journey") == 0;
        rc = cxm_bus_subscribe(bus, "profile", ctx->erasure_services[i],
                               j ? journey_types : completed_types, j ? 2 : 1,
                               j ? prof_journey_event : prof_erasure_completed, ctx);
    }
    /* The standard traits feedback owns follow its answers and follow-ups
     * whether or not it takes part in erasures: a subscriber of their own. */
    if (rc == 0)
        rc = cxm_bus_subscribe(bus, "profile-feedback", "feedback", feedback_types, 2,
                               prof_feedback_event, ctx);
    if (rc != 0)
        cxm_log_error("profile.bus_failed", "the profile service cannot use the event bus: %s",
                      cxm_bus_last_error());
    return rc;
}

static void prof_close(cxm_service *svc)
{
    prof_module_state *st = svc->ctx;
    if (!st)
        return;
    cxm_svc_erasure_close(&st->ctx.erasure);
    pdb_close(st->ctx.db);
    free(st->blocklist_copy);
    free(st->erasure_copy);
    free(st);
    svc->ctx = NULL;
}

static int prof_open(cxm_store *store, cxm_service *svc)
{
    prof_module_state *st = calloc(1, sizeof *st);
    if (!st)
        return CXM_ENOMEM;
    /* ctx is the first member: the service's ctx is both the handlers'
     * prof_ctx and this module's state. */
    *svc = (cxm_service){.name = cxm__v1__profile_service__descriptor.name,
                         .methods = prof_methods,
                         .nmethods = prof_nmethods,
                         .scope_area = "profile",
                         .access = prof_access,
                         .naccess = prof_naccess,
                         .contract = &cxm__v1__profile_service__descriptor,
                         .ctx = st};
    int rc = parse_unique(&st->ctx.unique);
    if (rc == 0)
        rc = parse_ident(st);
    if (rc == 0)
        rc = parse_erasure(st);
    if (rc == 0)
        rc = pdb_open(store, &st->ctx.db);
    if (rc == 0)
        rc = open_events(store, &st->ctx);
    if (rc == 0)
        rc = cxm_svc_erasure_confirmer(store, "profile", prof_erasure_confirm, &st->ctx,
                                       &st->ctx.erasure);
    if (rc != 0)
        prof_close(svc);
    return rc;
}

const cxm_module prof_module = {"profile", prof_open, prof_close, prof_opts,
                                sizeof prof_opts / sizeof prof_opts[0]};
