/*
 * bench_profile.c - synthetic customers and ProfileService requests for
 * cxm-bench (see bench_profile.h).
 *
 * Requests are built on the stack and packed at once: make() runs for every
 * call on the loop thread, so nothing here allocates besides the packed
 * buffer.
 */
#include "bench_profile.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <time.h>

#include <grpc/slice.h>

#include "cxm/err.h"
#include "cxm/v1/profile.pb-c.h"

/* ---- key choice ----
 *
 * Zipf by rejection-inversion (Hoermann and Derflinger 1996, as in Apache
 * Commons RNG): O(1) time and no table, so N can be 10^8 with any exponent,
 * where an inverted CDF would need 800 MB. It samples ranks 1..N from the
 * integral of h(x) = x^-s and rejects rarely (under 1% of draws for usual
 * exponents). */

/* log1p(x)/x and expm1(x)/x, accurate near 0 where s is close to 1. */
static double cxm_bench_log1p_x(double x)
{
    return fabs(x) > 1e-8 ? log1p(x) / x : 1 - x * (0.5 - x * (1.0 / 3 - 0.25 * x));
}

static double cxm_bench_expm1_x(double x)
{
    return fabs(x) > 1e-8 ? expm1(x) / x : 1 + x * 0.5 * (1 + x / 3 * (1 + 0.25 * x));
}

static double cxm_bench_zipf_h(double s, double x)
{
    return exp(-s * log(x));
}

/* The integral of h; (x^(1-s) - 1) / (1-s), or log(x) when s == 1. */
static double cxm_bench_zipf_hint(double s, double x)
{
    double lx = log(x);
    return cxm_bench_expm1_x((1 - s) * lx) * lx;
}

static double cxm_bench_zipf_hint_inv(double s, double y)
{
    double t = y * (1 - s);
    if (t < -1)
        t = -1; /* rounding near the end of the range */
    return exp(cxm_bench_log1p_x(t) * y);
}

void cxm_bench_keys_init(cxm_bench_keys *k, uint64_t n, double s)
{
    *k = (cxm_bench_keys){.n = n, .s = s};
    if (s <= 0)
        return;
    k->h_x1 = cxm_bench_zipf_hint(s, 1.5) - 1;
    k->h_n = cxm_bench_zipf_hint(s, (double)n + 0.5);
    k->accept_band =
        2 - cxm_bench_zipf_hint_inv(s, cxm_bench_zipf_hint(s, 2.5) - cxm_bench_zipf_h(s, 2));
}

uint64_t cxm_bench_keys_pick(const cxm_bench_keys *k, uint64_t *rng)
{
    if (k->s <= 0)
        return cxm_bench_xorshift(rng) % k->n; /* bias below 2^-37 for n <= 10^8 */
    for (;;) {
        double u = k->h_n + cxm_bench_unit(rng) * (k->h_x1 - k->h_n);
        double x = cxm_bench_zipf_hint_inv(k->s, u);
        double rank = floor(x + 0.5);
        if (rank < 1)
            rank = 1;
        else if (rank > (double)k->n)
            rank = (double)k->n;
        if (rank - x <= k->accept_band ||
            u >= cxm_bench_zipf_hint(k->s, rank + 0.5) - cxm_bench_zipf_h(k->s, rank))
            return (uint64_t)rank - 1;
    }
}

/* ---- requests ---- */

int cxm_bench_pack(const ProtobufCMessage *msg, grpc_byte_buffer **out)
{
    size_t len = protobuf_c_message_get_packed_size(msg);
    grpc_slice s = len ? grpc_slice_malloc(len) : grpc_empty_slice();
    if (len)
        protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(s));
    *out = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return *out ? 0 : CXM_ENOMEM;
}

/* Customer i's identities, formatted into caller-owned buffers. */
typedef struct cxm_bench_idents {
    char email[40], phone[24], crm[32];
} cxm_bench_idents;

static void cxm_bench_email(uint64_t i, char *buf, size_t len)
{
    snprintf(buf, len, "user%" PRIu64 "@example.com", i);
}

static void cxm_bench_idents_format(uint64_t i, cxm_bench_idents *ids)
{
    cxm_bench_email(i, ids->email, sizeof ids->email);
    snprintf(ids->phone, sizeof ids->phone, "+8210%08" PRIu64, i % CXM_BENCH_MAX_CUSTOMERS);
    snprintf(ids->crm, sizeof ids->crm, "crm-%" PRIu64, i);
}

static Cxm__V1__Identity cxm_bench_identity(Cxm__V1__IdentityType type, char *value)
{
    Cxm__V1__Identity id = CXM__V1__IDENTITY__INIT;
    id.type = type;
    id.value = value;
    return id;
}

Cxm__V1__Identity cxm_bench_email_identity(uint64_t i, char *buf, size_t len)
{
    cxm_bench_email(i, buf, len);
    return cxm_bench_identity(CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_EMAIL, buf);
}

static int64_t cxm_bench_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Spread over four tiers and a handful of cities by customer, so values
 * differ between profiles but stay the same for one customer. */
static char *cxm_bench_tier(uint64_t i)
{
    static char *const tiers[] = {"bronze", "silver", "gold", "platinum"};
    return tiers[i % 4];
}

static char *cxm_bench_city(uint64_t i)
{
    static char *const cities[] = {"Seoul", "Busan", "Incheon", "Daegu", "Daejeon", "Gwangju"};
    return cities[i % 6];
}

/* One attribute update: fills *u and *v and links them. */
static Cxm__V1__AttributeUpdate *cxm_bench_attr(Cxm__V1__AttributeUpdate *u, Cxm__V1__Value *v,
                                                char *name, Cxm__V1__MergeStrategy strategy)
{
    *u = (Cxm__V1__AttributeUpdate)CXM__V1__ATTRIBUTE_UPDATE__INIT;
    u->name = name;
    u->value = v;
    u->strategy = strategy;
    return u;
}

enum { CXM_BENCH_MAX_ATTRS = 5 };

int cxm_bench_profile_upsert(uint64_t i, uint64_t variant, grpc_byte_buffer **out)
{
    cxm_bench_idents s;
    cxm_bench_idents_format(i, &s);
    Cxm__V1__Identity ids[] = {
        cxm_bench_identity(CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_EMAIL, s.email),
        cxm_bench_identity(CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_PHONE, s.phone),
        cxm_bench_identity(CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_CRM_ID, s.crm),
    };
    Cxm__V1__Identity *idp[] = {&ids[0], &ids[1], &ids[2]};

    Cxm__V1__Value v[CXM_BENCH_MAX_ATTRS];
    for (size_t k = 0; k < CXM_BENCH_MAX_ATTRS; k++)
        v[k] = (Cxm__V1__Value)CXM__V1__VALUE__INIT;
    v[0].kind_case = CXM__V1__VALUE__KIND_STRING_VALUE;
    v[0].string_value = cxm_bench_tier(i);
    v[1].kind_case = CXM__V1__VALUE__KIND_NUMBER_VALUE;
    v[1].number_value = 1;
    v[2].kind_case = CXM__V1__VALUE__KIND_TIMESTAMP_UNIX_MS;
    v[2].timestamp_unix_ms = cxm_bench_wall_ms();
    v[3].kind_case = CXM__V1__VALUE__KIND_BOOL_VALUE;
    v[3].bool_value = i % 10 == 0;
    v[4].kind_case = CXM__V1__VALUE__KIND_STRING_VALUE;
    v[4].string_value = cxm_bench_city(i);

    Cxm__V1__AttributeUpdate u[CXM_BENCH_MAX_ATTRS];
    Cxm__V1__AttributeUpdate *up[] = {
        cxm_bench_attr(&u[0], &v[0], "tier", CXM__V1__MERGE_STRATEGY__MERGE_STRATEGY_OVERWRITE),
        cxm_bench_attr(&u[1], &v[1], "visits", CXM__V1__MERGE_STRATEGY__MERGE_STRATEGY_ADD),
        cxm_bench_attr(&u[2], &v[2], "last_order",
                       CXM__V1__MERGE_STRATEGY__MERGE_STRATEGY_KEEP_LATEST),
        cxm_bench_attr(&u[3], &v[3], "vip", CXM__V1__MERGE_STRATEGY__MERGE_STRATEGY_OVERWRITE),
        cxm_bench_attr(&u[4], &v[4], "city", CXM__V1__MERGE_STRATEGY__MERGE_STRATEGY_OVERWRITE),
    };
    /* KEEP_LATEST compares observed times: the order time is when it was seen. */
    u[2].observed_at_unix_ms = v[2].timestamp_unix_ms;

    Cxm__V1__UpsertProfileRequest req = CXM__V1__UPSERT_PROFILE_REQUEST__INIT;
    req.n_identities = sizeof idp / sizeof idp[0];
    req.identities = idp;
    req.n_attributes = 3 + variant % 3; /* real writers send what they know */
    req.attributes = up;
    req.source = "cxm-bench";
    return cxm_bench_pack(&req.base, out);
}

int cxm_bench_profile_get(uint64_t i, grpc_byte_buffer **out)
{
    char email[40];
    Cxm__V1__Identity id = cxm_bench_email_identity(i, email, sizeof email);
    Cxm__V1__CustomerRef ref = CXM__V1__CUSTOMER_REF__INIT;
    ref.key_case = CXM__V1__CUSTOMER_REF__KEY_IDENTITY;
    ref.identity = &id;
    Cxm__V1__GetProfileRequest req = CXM__V1__GET_PROFILE_REQUEST__INIT;
    req.customer = &ref;
    return cxm_bench_pack(&req.base, out);
}

int cxm_bench_profile_resolve(uint64_t i, grpc_byte_buffer **out)
{
    char email[40];
    Cxm__V1__Identity id = cxm_bench_email_identity(i, email, sizeof email);
    Cxm__V1__ResolveIdentityRequest req = CXM__V1__RESOLVE_IDENTITY_REQUEST__INIT;
    req.identity = &id;
    req.create_if_missing = 0; /* a miss must show as NOT_FOUND, not create */
    return cxm_bench_pack(&req.base, out);
}
