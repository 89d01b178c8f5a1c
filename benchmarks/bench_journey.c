/*
 * bench_journey.c - synthetic touchpoint events and JourneyService requests
 * for cxm-bench and cxm-bench-track (see bench_journey.h).
 *
 * A request's events are built in scratch storage owned by the stream and
 * packed at once, so that making a batch of 500 allocates nothing but the
 * packed bytes: the generator must cost the loop thread far less than the
 * server spends storing the events.
 */
#include "bench_journey.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <grpc/slice.h>

#include "cxm/err.h"
#include "cxm/v1/journey.pb-c.h"

/* cxm-gen's touchpoints, each with its channel and event type, weighted
 * towards browsing as real traffic is. */
static const struct {
    const char *touchpoint, *event_type;
    Cxm__V1__Channel channel;
    int item; /* the event concerns a catalogue item */
} cxm_bench_tps[] = {
    {"search_landing", "page_view", CXM__V1__CHANNEL__CHANNEL_WEB, 0},
    {"social_ad", "ad_click", CXM__V1__CHANNEL__CHANNEL_SOCIAL, 0},
    {"product_page", "product_view", CXM__V1__CHANNEL__CHANNEL_WEB, 1},
    {"product_page", "product_view", CXM__V1__CHANNEL__CHANNEL_APP, 1},
    {"product_page", "product_view", CXM__V1__CHANNEL__CHANNEL_WEB, 1},
    {"cart", "add_to_cart", CXM__V1__CHANNEL__CHANNEL_WEB, 1},
    {"checkout", "purchase", CXM__V1__CHANNEL__CHANNEL_WEB, 1},
    {"store_visit", "store_visit", CXM__V1__CHANNEL__CHANNEL_STORE, 0},
    {"support_call", "call_ended", CXM__V1__CHANNEL__CHANNEL_CONTACT_CENTRE, 0},
    {"help_center", "article_view", CXM__V1__CHANNEL__CHANNEL_WEB, 0},
};
#define CXM_BENCH_NTPS (sizeof cxm_bench_tps / sizeof cxm_bench_tps[0])

static char *const cxm_bench_campaigns[] = {"spring_sale", "new_arrivals", "loyalty_week",
                                            "black_friday"};

enum { CXM_BENCH_PROPS = 3 };

/* Everything one event points to. */
typedef struct cxm_bench_event_slot {
    Cxm__V1__TouchpointEvent m;
    Cxm__V1__CustomerRef ref;
    Cxm__V1__Identity who;
    Cxm__V1__TouchpointEvent__PropertiesEntry pe[CXM_BENCH_PROPS], *pp[CXM_BENCH_PROPS];
    Cxm__V1__Value pv[CXM_BENCH_PROPS];
    char id[64], email[40], session[40], item[24];
} cxm_bench_event_slot;

typedef struct cxm_bench_scratch {
    cxm_bench_event_slot *slots;
    Cxm__V1__TouchpointEvent **ptrs;
} cxm_bench_scratch;

int cxm_bench_events_init(cxm_bench_events *ev, uint64_t nonce, uint64_t stream, size_t cap,
                          const cxm_bench_keys *keys)
{
    *ev = (cxm_bench_events){.nonce = nonce,
                             .stream = stream,
                             .rng = 0x9E3779B97F4A7C15ULL * (stream + 1) ^ nonce,
                             .keys = keys,
                             .cap = cap};
    if (!ev->rng)
        ev->rng = 1; /* xorshift never leaves 0 */
    cxm_bench_scratch *s = calloc(1, sizeof *s);
    if (s) {
        s->slots = calloc(cap, sizeof *s->slots);
        s->ptrs = calloc(cap, sizeof *s->ptrs);
    }
    ev->scratch = s;
    if (!s || !s->slots || !s->ptrs) {
        cxm_bench_events_dispose(ev);
        return CXM_ENOMEM;
    }
    return 0;
}

void cxm_bench_events_dispose(cxm_bench_events *ev)
{
    cxm_bench_scratch *s = ev->scratch;
    if (s) {
        free(s->slots);
        free(s->ptrs);
        free(s);
    }
    ev->scratch = NULL;
}

static int64_t cxm_bench_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void cxm_bench_prop_str(cxm_bench_event_slot *s, int k, char *name, char *value)
{
    cxm__v1__touchpoint_event__properties_entry__init(&s->pe[k]);
    s->pv[k] = (Cxm__V1__Value)CXM__V1__VALUE__INIT;
    s->pv[k].kind_case = CXM__V1__VALUE__KIND_STRING_VALUE;
    s->pv[k].string_value = value;
    s->pe[k].key = name;
    s->pe[k].value = &s->pv[k];
    s->pp[k] = &s->pe[k];
}

static void cxm_bench_prop_num(cxm_bench_event_slot *s, int k, char *name, double value)
{
    cxm_bench_prop_str(s, k, name, NULL);
    s->pv[k].kind_case = CXM__V1__VALUE__KIND_NUMBER_VALUE;
    s->pv[k].number_value = value;
}

/* One new event of customer i, happening within the last minute. */
static void cxm_bench_event(cxm_bench_events *ev, cxm_bench_event_slot *s, int64_t now)
{
    uint64_t r = cxm_bench_xorshift(&ev->rng);
    uint64_t i = cxm_bench_keys_pick(ev->keys, &ev->rng);
    const __typeof__(cxm_bench_tps[0]) *tp = &cxm_bench_tps[r % CXM_BENCH_NTPS];
    Cxm__V1__TouchpointEvent *m = &s->m;
    *m = (Cxm__V1__TouchpointEvent)CXM__V1__TOUCHPOINT_EVENT__INIT;
    snprintf(s->id, sizeof s->id, "b%" PRIx64 "-%" PRIu64 "-%" PRIu64, ev->nonce, ev->stream,
             ev->seq++);
    snprintf(s->email, sizeof s->email, "user%" PRIu64 "@example.com", i);
    snprintf(s->session, sizeof s->session, "s%" PRIu64 "-%" PRIu64, i, (uint64_t)now / 1800000);
    s->who = (Cxm__V1__Identity)CXM__V1__IDENTITY__INIT;
    s->who.type = CXM__V1__IDENTITY_TYPE__IDENTITY_TYPE_EMAIL;
    s->who.value = s->email;
    s->ref = (Cxm__V1__CustomerRef)CXM__V1__CUSTOMER_REF__INIT;
    s->ref.key_case = CXM__V1__CUSTOMER_REF__KEY_IDENTITY;
    s->ref.identity = &s->who;
    m->event_id = s->id;
    m->customer = &s->ref;
    m->touchpoint = (char *)tp->touchpoint;
    m->event_type = (char *)tp->event_type;
    m->channel = tp->channel;
    m->occurred_at_unix_ms = now - (int64_t)((r >> 8) % 60000);
    m->session_id = s->session;
    double price = (double)(10 + (r >> 24) % 190) * 1000;
    cxm_bench_prop_str(s, 0, "campaign", cxm_bench_campaigns[(r >> 40) % 4]);
    cxm_bench_prop_num(s, 1, "price", price);
    cxm_bench_prop_str(s, 2, "utm_source", (r >> 44) & 1 ? "naver" : "google");
    m->n_properties = CXM_BENCH_PROPS;
    m->properties = s->pp;
    if (tp->item) {
        snprintf(s->item, sizeof s->item, "item-%" PRIu64, (r >> 48) % 5000);
        m->item_id = s->item;
    }
    if (tp->event_type[0] == 'p' && tp->event_type[1] == 'u') { /* purchase */
        m->value = price;
        m->currency = "KRW";
    }
}

static void cxm_bench_fill(cxm_bench_events *ev, size_t n, Cxm__V1__TrackRequest *req)
{
    cxm_bench_scratch *s = ev->scratch;
    int64_t now = cxm_bench_now_ms();
    for (size_t k = 0; k < n; k++) {
        cxm_bench_event(ev, &s->slots[k], now);
        s->ptrs[k] = &s->slots[k].m;
    }
    req->n_events = n;
    req->events = s->ptrs;
}

int cxm_bench_track(cxm_bench_events *ev, size_t n, grpc_byte_buffer **out)
{
    Cxm__V1__TrackRequest req = CXM__V1__TRACK_REQUEST__INIT;
    cxm_bench_fill(ev, n > ev->cap ? ev->cap : n, &req);
    return cxm_bench_pack(&req.base, out);
}

int cxm_bench_track_bytes(cxm_bench_events *ev, size_t n, uint8_t **buf, size_t *bufcap,
                          size_t *len)
{
    Cxm__V1__TrackRequest req = CXM__V1__TRACK_REQUEST__INIT;
    cxm_bench_fill(ev, n > ev->cap ? ev->cap : n, &req);
    *len = cxm__v1__track_request__get_packed_size(&req);
    if (*len > *bufcap) {
        uint8_t *p = realloc(*buf, *len);
        if (!p)
            return CXM_ENOMEM;
        *buf = p, *bufcap = *len;
    }
    cxm__v1__track_request__pack(&req, *buf);
    return 0;
}

/* ---- analytics ---- */

static Cxm__V1__FunnelStep cxm_bench_step(char *event_type)
{
    Cxm__V1__FunnelStep s = CXM__V1__FUNNEL_STEP__INIT;
    s.name = event_type;
    s.event_type = event_type;
    return s;
}

#define CXM_BENCH_WEEK_MS (7 * 86400000LL)

int cxm_bench_funnel(int64_t from_ms, int64_t to_ms, grpc_byte_buffer **out)
{
    Cxm__V1__FunnelStep steps[] = {cxm_bench_step("page_view"), cxm_bench_step("product_view"),
                                   cxm_bench_step("add_to_cart"), cxm_bench_step("purchase")};
    Cxm__V1__FunnelStep *sp[] = {&steps[0], &steps[1], &steps[2], &steps[3]};
    Cxm__V1__TimeRange range = CXM__V1__TIME_RANGE__INIT;
    range.from_unix_ms = from_ms, range.to_unix_ms = to_ms;
    Cxm__V1__FunnelRequest req = CXM__V1__FUNNEL_REQUEST__INIT;
    req.n_steps = 4, req.steps = sp;
    req.range = &range;
    req.window_ms = CXM_BENCH_WEEK_MS;
    req.order = CXM__V1__FUNNEL_ORDER__FUNNEL_ORDER_ORDERED;
    return cxm_bench_pack(&req.base, out);
}

int cxm_bench_paths(int64_t from_ms, int64_t to_ms, grpc_byte_buffer **out)
{
    Cxm__V1__TimeRange range = CXM__V1__TIME_RANGE__INIT;
    range.from_unix_ms = from_ms, range.to_unix_ms = to_ms;
    Cxm__V1__PathsRequest req = CXM__V1__PATHS_REQUEST__INIT;
    req.anchor = "product_page";
    req.direction = CXM__V1__PATH_DIRECTION__PATH_DIRECTION_FROM;
    req.max_length = 5;
    req.range = &range;
    req.limit = 20;
    req.element = CXM__V1__PATH_ELEMENT__PATH_ELEMENT_TOUCHPOINT;
    return cxm_bench_pack(&req.base, out);
}

int cxm_bench_touchpoints(int64_t from_ms, int64_t to_ms, grpc_byte_buffer **out)
{
    Cxm__V1__TimeRange range = CXM__V1__TIME_RANGE__INIT;
    range.from_unix_ms = from_ms, range.to_unix_ms = to_ms;
    Cxm__V1__TouchpointStatsRequest req = CXM__V1__TOUCHPOINT_STATS_REQUEST__INIT;
    req.range = &range;
    req.bucket = CXM__V1__TIME_BUCKET__TIME_BUCKET_DAY;
    req.goal_event_type = "purchase";
    req.goal_window_ms = CXM_BENCH_WEEK_MS;
    return cxm_bench_pack(&req.base, out);
}
