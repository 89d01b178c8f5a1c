/*
 * bench_journey.h - the journey workloads of cxm-bench and cxm-bench-track:
 * synthetic touchpoint events shaped like cxm-gen's (a touchpoint, its
 * channel and event type, two or three properties, a session, an item on
 * product events; 200 to 300 bytes packed) with event ids that are never
 * repeated, and the analytics requests (Funnel, Paths, TouchpointStats)
 * over cxm-gen's touchpoints and event types.
 *
 * Event ids are "b<nonce>-<stream>-<seq>": the nonce differs between runs
 * (the start time), the stream between the threads or streams of one run,
 * and seq counts that stream's events, so every event of every run is new
 * to the server's dedup and is stored. Customers are those of
 * bench_profile.h (user<i>@example.com), picked with its keys.
 */
#ifndef CXM_BENCH_JOURNEY_H
#define CXM_BENCH_JOURNEY_H

#include <stddef.h>
#include <stdint.h>

#include <grpc/byte_buffer.h>

#include "bench_profile.h"

#define CXM_BENCH_JOURNEY_SERVICE "/cxm.v1.JourneyService/"
#define CXM_BENCH_METHOD_TRACK CXM_BENCH_JOURNEY_SERVICE "Track"
#define CXM_BENCH_METHOD_FUNNEL CXM_BENCH_JOURNEY_SERVICE "Funnel"
#define CXM_BENCH_METHOD_PATHS CXM_BENCH_JOURNEY_SERVICE "Paths"
#define CXM_BENCH_METHOD_TOUCHPOINTS CXM_BENCH_JOURNEY_SERVICE "TouchpointStats"

/* The Track and TrackStream message limit. */
#define CXM_BENCH_MAX_BATCH 1000

/* One stream of events: a thread of cxm-bench or a stream of
 * cxm-bench-track owns one; nothing in it is shared. */
typedef struct cxm_bench_events {
    uint64_t nonce, stream, seq, rng;
    const cxm_bench_keys *keys;
    size_t cap; /* events the scratch below holds */
    void *scratch;
} cxm_bench_events;

/* cap (1 .. CXM_BENCH_MAX_BATCH) events per request at most. 0 or
 * CXM_ENOMEM; release with cxm_bench_events_dispose. */
int cxm_bench_events_init(cxm_bench_events *ev, uint64_t nonce, uint64_t stream, size_t cap,
                          const cxm_bench_keys *keys);
void cxm_bench_events_dispose(cxm_bench_events *ev);

/* A TrackRequest (the wire form of a TrackStreamRequest too) of n new
 * events (1 .. cap), packed into *out. 0 or CXM_ENOMEM. */
int cxm_bench_track(cxm_bench_events *ev, size_t n, grpc_byte_buffer **out);

/* The same packed into *buf (grown with realloc; *bufcap its size), its
 * length in *len. 0 or CXM_ENOMEM. */
int cxm_bench_track_bytes(cxm_bench_events *ev, size_t n, uint8_t **buf, size_t *bufcap,
                          size_t *len);

/* The analytics over [from_ms, to_ms), as a person would ask them of a
 * cxm-gen world: a 4-step funnel page_view > product_view > add_to_cart >
 * purchase within 7 days; the paths of up to 5 touchpoints from
 * product_page; and per-touchpoint statistics with purchase as the goal
 * within 7 days. 0 or CXM_ENOMEM. */
int cxm_bench_funnel(int64_t from_ms, int64_t to_ms, grpc_byte_buffer **out);
int cxm_bench_paths(int64_t from_ms, int64_t to_ms, grpc_byte_buffer **out);
int cxm_bench_touchpoints(int64_t from_ms, int64_t to_ms, grpc_byte_buffer **out);

#endif
