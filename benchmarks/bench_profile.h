/*
 * bench_profile.h - the profile workloads of cxm-bench: a synthetic customer
 * population, the choice of which customer a call is about, and the packed
 * ProfileService requests for one customer.
 *
 * Customer i (0 <= i < N) always has the same identities, so a read can name
 * a customer that an earlier upsert (or --seed-customers) created without any
 * state shared between the loop threads:
 *   email  user<i>@example.com
 *   phone  +8210<i as 8 digits>      (so N is at most 10^8: no two share one)
 *   crm id crm-<i>
 */
#ifndef CXM_BENCH_PROFILE_H
#define CXM_BENCH_PROFILE_H

#include <stdint.h>

#include <grpc/byte_buffer.h>
#include <protobuf-c/protobuf-c.h>

#include "cxm/v1/common.pb-c.h"

#define CXM_BENCH_PROFILE_SERVICE "/cxm.v1.ProfileService/"
#define CXM_BENCH_METHOD_UPSERT CXM_BENCH_PROFILE_SERVICE "UpsertProfile"
#define CXM_BENCH_METHOD_GET CXM_BENCH_PROFILE_SERVICE "GetProfile"
#define CXM_BENCH_METHOD_RESOLVE CXM_BENCH_PROFILE_SERVICE "ResolveIdentity"

/* The phone number holds i in 8 digits. */
#define CXM_BENCH_MAX_CUSTOMERS 100000000

/* xorshift64*: cheap and good enough to pick keys; the state never returns
 * to 0 once it is not 0. */
static inline uint64_t cxm_bench_xorshift(uint64_t *state)
{
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return *state * 0x2545F4914F6CDD1DULL;
}

/* A uniform double in [0, 1) from the top 53 bits. */
static inline double cxm_bench_unit(uint64_t *state)
{
    return (double)(cxm_bench_xorshift(state) >> 11) * 0x1p-53;
}

/* Which customer a call is about: uniform over N, or Zipf with exponent s
 * (customer 0 the most popular) to model hot keys. Read-only once built, so
 * every thread shares one. */
typedef struct cxm_bench_keys {
    uint64_t n;
    double s;                      /* 0 = uniform */
    double h_x1, h_n, accept_band; /* rejection-inversion constants */
} cxm_bench_keys;

/* n in 1..CXM_BENCH_MAX_CUSTOMERS, s 0 (uniform) or > 0. */
void cxm_bench_keys_init(cxm_bench_keys *k, uint64_t n, double s);
uint64_t cxm_bench_keys_pick(const cxm_bench_keys *k, uint64_t *rng);

/* Pack a protobuf-c message straight into a gRPC byte buffer (one copy).
 * 0 or CXM_ENOMEM. Shared by every generator. */
int cxm_bench_pack(const ProtobufCMessage *msg, grpc_byte_buffer **out);

/* UpsertProfileRequest for customer i: its three identities and 3 to 5
 * attributes (tier; visits +1 with ADD; last_order now with KEEP_LATEST; vip
 * and city on some calls, chosen from variant). */
int cxm_bench_profile_upsert(uint64_t i, uint64_t variant, grpc_byte_buffer **out);
/* Customer i's email identity, the one reads name it by; its value points
 * into buf (len >= 40). */
Cxm__V1__Identity cxm_bench_email_identity(uint64_t i, char *buf, size_t len);
/* GetProfileRequest naming customer i by email. */
int cxm_bench_profile_get(uint64_t i, grpc_byte_buffer **out);
/* ResolveIdentityRequest for customer i's email, never creating a profile. */
int cxm_bench_profile_resolve(uint64_t i, grpc_byte_buffer **out);

#endif
