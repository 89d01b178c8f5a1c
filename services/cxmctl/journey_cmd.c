/*
 * journey_cmd.c - `cxmctl journey ...`: the cxm.v1.JourneyService RPCs a
 * person runs by hand: Track (one event from flags) and TrackStream (a file
 * of cxm-gen's TrackRequest records, with a progress bar), GetTimeline,
 * GetJourneyState, GetStageRules and UpsertStageRules, and the analytics
 * Funnel, Paths and TouchpointStats as readable tables.
 *
 * As in profile_cmd.c, the server owns every rule of the contract and its
 * INVALID_ARGUMENT names the field; this file checks only the command line's
 * own syntax (a step's TYPE@TOUCHPOINT#CHANNEL, times, durations).
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cxm/err.h"
#include "cxm/pipe.h"
#include "cxm/v1/journey.pb-c.h"
#include "cxmctl.h"
#include "delim.h"

#define JOURNEY_SERVICE (&cxm__v1__journey_service__descriptor)
#define TRACK_STREAM_PATH "/cxm.v1.JourneyService/TrackStream"

/* Messages a file import keeps unacknowledged: enough to keep the server's
 * commit pipeline busy (it reads ahead while a batch commits), few enough
 * that a broken stream leaves little to resend. */
#define JOURNEY_WINDOW 8
/* Rejection reasons an import summary shows; the count says the rest. */
#define JOURNEY_SHOWN_REJECTIONS 5

static const char *const nothing = "";

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* --- printing helpers --- */

/* "850ms", "42s", "3m 20s", "2h 5m", "1d 4h": two units are enough to
 * compare funnel steps at a glance. */
static void print_duration(FILE *out, int64_t ms)
{
    static const struct {
        const char *unit;
        int64_t ms;
    } units[] = {{"d", 86400000}, {"h", 3600000}, {"m", 60000}, {"s", 1000}};
    if (ms < 1000) {
        fprintf(out, "%" PRId64 "ms", ms);
        return;
    }
    for (size_t i = 0; i < 4; i++) {
        if (ms < units[i].ms)
            continue;
        fprintf(out, "%" PRId64 "%s", ms / units[i].ms, units[i].unit);
        if (i + 1 < 4 && (ms % units[i].ms) / units[i + 1].ms)
            fprintf(out, " %" PRId64 "%s", (ms % units[i].ms) / units[i + 1].ms, units[i + 1].unit);
        return;
    }
}

static void print_cell_duration(int width, int64_t ms)
{
    char buf[32] = ""; /* kept empty if fmemopen fails: the column stays */
    FILE *f = fmemopen(buf, sizeof buf, "w");
    if (f)
        print_duration(f, ms), fclose(f);
    printf("%*s", width, buf);
}

static void print_channel(FILE *out, Cxm__V1__Channel ch)
{
    cxmctl_enum_short(out, &cxm__v1__channel__descriptor, ch);
}

static void print_stage(FILE *out, Cxm__V1__JourneyStage st)
{
    if (st)
        cxmctl_enum_short(out, &cxm__v1__journey_stage__descriptor, st);
    else
        fputc('-', out);
}

/* A fixed-width column of text; longer text runs over, which is rarer and
 * kinder than cutting a touchpoint's name. */
static void print_col(const char *s, int width)
{
    printf("%-*s ", width, s);
}

static void print_pct(int width, double share)
{
    printf("%*.1f%%", width - 1, share * 100);
}

/* --- journey track: one event from flags --- */

/* A fresh event id: the time and 64 random bits, so two runs in the same
 * millisecond still differ. A retry with --event-id is what makes a resend
 * safe. */
static const char *new_event_id(ctl *c)
{
    uint64_t r = 0;
    FILE *f = fopen("/dev/urandom", "rb");
    if (!f || fread(&r, sizeof r, 1, f) != 1)
        r = (uint64_t)getpid() * 0x9E3779B97F4A7C15ULL ^ (uint64_t)mono_s();
    if (f)
        fclose(f);
    char buf[64];
    snprintf(buf, sizeof buf, "ctl-%" PRId64 "-%016" PRIx64, cxmctl_wall_ms(), r);
    return cxm_arena_strndup(&c->arena, buf, strlen(buf));
}

/* NAME=VALUE: VALUE a number, true/false, @TIME, "quoted" or plain text. */
static int parse_prop(ctl *c, const char *arg, Cxm__V1__TouchpointEvent__PropertiesEntry *e)
{
    size_t len = strspn(arg, cxmctl_name_chars);
    e->key = cxm_arena_strndup(&c->arena, arg, len);
    e->value = cxmctl_new_message(c, &cxm__v1__value__descriptor);
    if (len == 0 || arg[len] != '=' || cxmctl_typed_value(c, arg + len + 1, e->value) != 0)
        return cxmctl_usage_error(c,
                                  "--prop \"%s\": expected NAME=VALUE, VALUE a number, true, "
                                  "false, @TIME, \"text\" or text",
                                  arg);
    return 0;
}

static int event_props(ctl *c, const cxmctl_flag *prop, Cxm__V1__TouchpointEvent *ev)
{
    ev->n_properties = prop->n;
    ev->properties = cxmctl_new_array(c, prop->n, sizeof *ev->properties);
    int rc = 0;
    for (size_t i = 0; i < prop->n && rc == 0; i++) {
        ev->properties[i] =
            cxmctl_new_message(c, &cxm__v1__touchpoint_event__properties_entry__descriptor);
        rc = parse_prop(c, prop->v[i], ev->properties[i]);
    }
    return rc;
}

static int event_links(ctl *c, const cxmctl_flag *link, Cxm__V1__TouchpointEvent *ev)
{
    ev->n_link_identities = link->n;
    ev->link_identities = cxmctl_new_array(c, link->n, sizeof *ev->link_identities);
    int rc = 0;
    for (size_t i = 0; i < link->n && rc == 0; i++)
        ev->link_identities[i] = cxmctl_new_identity(c, link->v[i], &rc);
    return rc;
}

/* The flags of `journey track`, in one place for the two ways it runs. */
typedef struct track_flags {
    cxmctl_flag event_id, customer, identity, link, touchpoint, channel, type, at, prop, value,
        currency, session, item, file, window;
} track_flags;

/* The event the flags describe. */
static int build_event(ctl *c, track_flags *f, Cxm__V1__TouchpointEvent *ev)
{
    if (f->customer.n == f->identity.n)
        return cxmctl_usage_error(c, "name the customer by --customer-id or by --identity, not %s",
                                  f->customer.n ? "both" : "neither");
    int rc, ch = 0;
    if ((rc = cxmctl_require(c, &f->touchpoint)) || (rc = cxmctl_require(c, &f->type)) ||
        (rc = cxmctl_require(c, &f->channel)) ||
        (rc = cxmctl_enum_flag(c, &f->channel, &cxm__v1__channel__descriptor, &ch)) ||
        (rc = cxmctl_time_flag(c, &f->at, true, &ev->occurred_at_unix_ms)))
        return rc;
    if (f->value.n && cxmctl_parse_number(f->value.v[0], &ev->value) != 0)
        return cxmctl_usage_error(c, "--value \"%s\" is not a finite number", f->value.v[0]);
    Cxm__V1__CustomerRef *ref = cxmctl_new_message(c, &cxm__v1__customer_ref__descriptor);
    if (f->customer.n) {
        ref->key_case = CXM__V1__CUSTOMER_REF__KEY_CUSTOMER_ID;
        ref->customer_id = (char *)f->customer.v[0];
    } else {
        ref->key_case = CXM__V1__CUSTOMER_REF__KEY_IDENTITY;
        ref->identity = cxmctl_new_identity(c, f->identity.v[0], &rc);
    }
    ev->customer = ref;
    ev->channel = (Cxm__V1__Channel)ch;
    ev->event_id = (char *)(f->event_id.n ? f->event_id.v[0] : new_event_id(c));
    ev->touchpoint = (char *)f->touchpoint.v[0];
    ev->event_type = (char *)f->type.v[0];
    ev->currency = (char *)(f->currency.n ? f->currency.v[0] : nothing);
    ev->session_id = (char *)(f->session.n ? f->session.v[0] : nothing);
    ev->item_id = (char *)(f->item.n ? f->item.v[0] : nothing);
    if (rc || (rc = event_links(c, &f->link, ev)) || (rc = event_props(c, &f->prop, ev)))
        return rc;
    return 0;
}

static void print_rejection(FILE *out, const Cxm__V1__EventRejection *r, bool stream)
{
    fputs("  ", out);
    if (stream)
        fprintf(out, "message %" PRIu32 " ", r->message_index);
    fprintf(out, "event %" PRIu32 " (%s): %s\n", r->index, r->event_id, r->reason);
}

static int track_one(ctl *c, track_flags *f)
{
    Cxm__V1__TouchpointEvent *ev = cxmctl_new_message(c, &cxm__v1__touchpoint_event__descriptor);
    int rc = build_event(c, f, ev);
    if (rc)
        return rc;
    Cxm__V1__TrackRequest req = CXM__V1__TRACK_REQUEST__INIT;
    req.n_events = 1;
    req.events = &ev;
    ProtobufCMessage *resp;
    if ((rc = cxmctl_call(c, JOURNEY_SERVICE, "Track", &req.base, &resp)) != 0)
        return rc;
    const Cxm__V1__TrackResponse *r = (const void *)resp;
    if (c->json)
        cxmctl_print_json(stdout, resp);
    else if (r->n_rejected == 0)
        printf("%s %s\n", r->duplicates ? "duplicate" : "accepted", ev->event_id);
    else
        fputs("rejected\n", stdout), print_rejection(stdout, r->rejected[0], false);
    return r->n_rejected ? CXMCTL_FAILED : 0;
}

/* --- journey track --file: TrackStream --- */

/* One import: the file, the stream and what came back. */
typedef struct import {
    FILE *f;
    const char *path;
    uint8_t *buf;
    size_t cap;
    uint64_t messages, events; /* in the file (first pass) */
    uint64_t *message_events;  /* events per message, for the progress */
    uint64_t sent, acked, acked_events, accepted, duplicates, rejected;
    const Cxm__V1__EventRejection *shown[JOURNEY_SHOWN_REJECTIONS];
    size_t nshown;
    bool tty;
    double t0, last_draw;
} import;

static int read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    *v = 0;
    for (unsigned shift = 0; *p < end && shift < 64; shift += 7) {
        uint8_t b = *(*p)++;
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return 0;
    }
    return -1;
}

/* The events of one TrackRequest record, counted from its wire form (field
 * 1, length-delimited) without decoding them; -1 when it is not a
 * well-formed message. */
static int64_t count_events(const uint8_t *p, size_t len)
{
    const uint8_t *end = p + len;
    int64_t n = 0;
    while (p < end) {
        uint64_t tag, v;
        if (read_varint(&p, end, &tag) != 0)
            return -1;
        switch (tag & 7) {
        case 0:
            if (read_varint(&p, end, &v) != 0)
                return -1;
            break;
        case 1:
        case 5:
            if ((size_t)(end - p) < ((tag & 7) == 1 ? 8u : 4u))
                return -1;
            p += (tag & 7) == 1 ? 8 : 4;
            break;
        case 2:
            if (read_varint(&p, end, &v) != 0 || v > (uint64_t)(end - p))
                return -1;
            p += v;
            n += tag >> 3 == 1;
            break;
        default:
            return -1;
        }
    }
    return n;
}

/* The first pass: the file must be a clean stream of TrackRequest records,
 * each with 1 or more events; counts them for the progress bar. */
static int import_scan(import *im)
{
    size_t len, cap = 0;
    int rc;
    while ((rc = cxm_delim_read(im->f, &im->buf, &im->cap, &len)) == 1) {
        int64_t n = count_events(im->buf, len);
        if (n <= 0) {
            fprintf(stderr, "cxmctl: journey track: %s: record %" PRIu64 " is %s\n", im->path,
                    im->messages + 1,
                    n < 0 ? "not a TrackRequest" : "a TrackRequest without events");
            return CXMCTL_USAGE;
        }
        if (im->messages == cap) {
            cap = cap ? cap * 2 : 1024;
            uint64_t *p = realloc(im->message_events, cap * sizeof *p);
            if (!p)
                return (fputs("cxmctl: out of memory\n", stderr), CXMCTL_FAILED);
            im->message_events = p;
        }
        im->message_events[im->messages++] = (uint64_t)n;
        im->events += (uint64_t)n;
    }
    if (rc < 0 || im->messages == 0) {
        fprintf(stderr, "cxmctl: journey track: %s: %s\n", im->path,
                rc < 0 ? "damaged: a record is cut short or its length malformed (is it a "
                         "length-delimited .pb file such as cxm-gen's track.pb?)"
                       : "no records");
        return CXMCTL_USAGE;
    }
    rewind(im->f);
    return 0;
}

static void import_draw(import *im, bool final)
{
    double now = mono_s();
    if (!im->tty || (!final && now - im->last_draw < 0.1))
        return;
    im->last_draw = now;
    enum { WIDTH = 30 };
    int fill = im->events ? (int)(WIDTH * im->acked_events / im->events) : WIDTH;
    double rate = now > im->t0 ? (double)im->acked_events / (now - im->t0) : 0;
    fprintf(stderr, "\r[%.*s%*s] %" PRIu64 "/%" PRIu64 " events  %.0f events/s ", fill,
            "##############################", WIDTH - fill, "", im->acked_events, im->events, rate);
    if (final)
        fputc('\n', stderr);
}

/* One acknowledgement: in order, counted, its first rejections kept. */
static int import_ack(ctl *c, import *im, const uint8_t *msg, size_t len)
{
    Cxm__V1__TrackStreamResponse *r =
        cxm__v1__track_stream_response__unpack(cxm_arena_protobuf(&c->arena), len, msg);
    /* An ack of a message not sent yet would wrap sent - acked and stall
     * the send window until the deadline. */
    if (!r || r->message_index != im->acked || im->acked >= im->sent) {
        fprintf(stderr, "cxmctl: journey track: acknowledgement %" PRIu64 " %s\n", im->acked,
                !r                      ? "does not decode"
                : im->acked >= im->sent ? "is of a message not sent yet"
                                        : "is out of order");
        return CXMCTL_FAILED;
    }
    im->acked_events += im->message_events[im->acked++];
    im->accepted += r->accepted;
    im->duplicates += r->duplicates;
    im->rejected += r->n_rejected;
    for (size_t i = 0; i < r->n_rejected && im->nshown < JOURNEY_SHOWN_REJECTIONS; i++)
        im->shown[im->nshown++] = r->rejected[i];
    import_draw(im, false);
    return 0;
}

static int import_send_next(import *im, cxm_pipe *s)
{
    size_t len;
    if (cxm_delim_read(im->f, &im->buf, &im->cap, &len) != 1)
        return (fprintf(stderr, "cxmctl: journey track: %s changed while it was read\n", im->path),
                CXMCTL_FAILED);
    /* A TrackRequest and a TrackStreamRequest share their wire form: the
     * records go out as they are. */
    im->sent++;
    int rc = cxm_pipe_send(s, im->buf, len);
    if (rc == CXM_ENOMEM) /* the call goes on: a positive status cancels it */
        return (fputs("cxmctl: out of memory\n", stderr), CXMCTL_FAILED);
    return rc == 0 ? 0 : -1; /* the call is over: its status says why */
}

/* Send with up to window messages unacknowledged; returns 0 when every
 * message was acknowledged, -1 when the stream ended early (its status
 * says why), or an exit status. */
static int import_pump(ctl *c, import *im, cxm_pipe *s, uint64_t window)
{
    while (im->acked < im->messages) {
        while (im->sent < im->messages && im->sent - im->acked < window) {
            int rc = import_send_next(im, s);
            if (rc)
                return rc;
        }
        if (im->sent == im->messages && cxm_pipe_close_send(s) != 0)
            return -1;
        uint8_t *msg = NULL;
        size_t len = 0;
        int got = cxm_pipe_recv(s, &msg, &len);
        int rc = got == 1 ? import_ack(c, im, msg, len) : -1;
        free(msg);
        if (rc)
            return rc;
    }
    return 0;
}

static void import_summary(const ctl *c, const import *im, double secs)
{
    double rate = secs > 0 ? (double)im->acked_events / secs : 0;
    if (c->json) {
        printf("{\"messages\":%" PRIu64 ",\"events\":%" PRIu64 ",\"acknowledged_messages\":%" PRIu64
               ",\"accepted\":%" PRIu64 ",\"duplicates\":%" PRIu64 ",\"rejected\":%" PRIu64
               ",\"seconds\":%.3f,\"events_per_s\":%.1f,\"first_rejections\":[",
               im->messages, im->events, im->acked, im->accepted, im->duplicates, im->rejected,
               secs, rate);
        for (size_t i = 0; i < im->nshown; i++) {
            if (i)
                putchar(',');
            cxmctl_print_json_object(stdout, &im->shown[i]->base);
        }
        puts("]}");
        return;
    }
    printf("accepted %" PRIu64 ", duplicates %" PRIu64 ", rejected %" PRIu64 " of %" PRIu64
           " events acknowledged (%" PRIu64 " of %" PRIu64 " messages) in %.2f s, %.0f events/s\n",
           im->accepted, im->duplicates, im->rejected, im->acked_events, im->acked, im->messages,
           secs, rate);
    if (im->nshown)
        printf("first rejections:\n");
    for (size_t i = 0; i < im->nshown; i++)
        print_rejection(stdout, im->shown[i], true);
}

/* The stream's deadline: --timeout for every window of messages, so a big
 * import is not cut off while each window still gets the time a call gets. */
static int64_t import_deadline(const ctl *c, const import *im, uint64_t window)
{
    uint64_t windows = (im->messages + window - 1) / window;
    return windows > (uint64_t)(INT64_MAX / c->timeout_ms) ? INT64_MAX
                                                           : c->timeout_ms * (int64_t)windows;
}

static int import_run(ctl *c, import *im, uint64_t window)
{
    int rc = import_scan(im);
    if (rc)
        return rc;
    cxm_pipe *s = NULL;
    if (!c->ch && cxm_channel_open(c->target, &c->chan, &c->ch) != 0)
        return (fprintf(stderr, "cxmctl: cannot open a channel to %s\n", c->target), 1);
    if (cxm_pipe_open(c->ch, TRACK_STREAM_PATH, import_deadline(c, im, window), &s) != 0)
        return (fprintf(stderr, "cxmctl: cannot open a stream to %s\n", c->target), 1);
    im->t0 = mono_s();
    rc = import_pump(c, im, s, window);
    if (rc > 0)
        cxm_pipe_cancel(s);
    cxm_client_result r = {0};
    cxm_pipe_finish(s, &r);
    double secs = mono_s() - im->t0;
    import_draw(im, true);
    if (rc == 0 && r.status != GRPC_STATUS_OK)
        rc = -1; /* every message acknowledged, then a failure: still say so */
    if (rc < 0)
        rc = cxmctl_rpc_failed("TrackStream", r.status,
                               r.status == GRPC_STATUS_OK ? "the stream ended early" : r.details);
    cxm_client_result_dispose(&r);
    import_summary(c, im, secs);
    return rc ? rc : im->rejected ? CXMCTL_FAILED : 0;
}

static int track_file(ctl *c, track_flags *f)
{
    uint64_t window = JOURNEY_WINDOW;
    int rc = cxmctl_uint_flag(c, &f->window, 1000, &window);
    if (rc)
        return rc;
    if (window == 0)
        return cxmctl_usage_error(c, "--window: give 1 to 1000 messages in flight");
    /* The single-event flags mean nothing with a file: say so, not ignore. */
    cxmctl_flag *single[] = {&f->event_id, &f->customer, &f->identity, &f->link, &f->touchpoint,
                             &f->channel,  &f->type,     &f->at,       &f->prop, &f->value,
                             &f->currency, &f->session,  &f->item};
    for (size_t i = 0; i < sizeof single / sizeof single[0]; i++)
        if (single[i]->n)
            return cxmctl_usage_error(
                c, "--%s describes one event; it does not combine with --file", single[i]->name);
import im = {.path = f->file.v[0], .tty = isatty(STDERR_FILENO) == 1 };
    if (!(im.f = fopen(im.path, "rb"))) {
        fprintf(stderr, "cxmctl: journey track: cannot open --file %s\n", im.path);
        return CXMCTL_USAGE;
    }
    rc = import_run(c, &im, window);
    fclose(im.f);
    free(im.buf);
    free(im.message_events);
    return rc;
}

static int cmd_track(ctl *c, int argc, char **argv)
{
    track_flags f = {
        {"event-id", "ID"},
        {"customer-id", "ID"},
        {"identity", "TYPE:VALUE"},
        {"link", "TYPE:VALUE", true},
        {"touchpoint", "T"},
        {"channel", "CHANNEL"},
        {"type", "EVENT_TYPE"},
        {"at", "TIME|AGO"},
        {"prop", "NAME=VALUE", true},
        {"value", "X"},
        {"currency", "ISO4217"},
        {"session", "S"},
        {"item", "ITEM"},
        {"file", "FILE.pb"},
        {"window", "N"},
    };
    cxmctl_flag *const flags[] = {&f.event_id, &f.customer, &f.identity, &f.link, &f.touchpoint,
                                  &f.channel,  &f.type,     &f.at,       &f.prop, &f.value,
                                  &f.currency, &f.session,  &f.item,     &f.file, &f.window};
    char **pos;
    size_t npos;
    int rc = cxmctl_parse(c, argc, argv, flags, sizeof flags / sizeof flags[0], 0, 0, &pos, &npos);
    if (rc != CXMCTL_CONTINUE)
        return rc;
    if (f.window.n && !f.file.n)
        return cxmctl_usage_error(c, "--window applies only to --file");
    return f.file.n ? track_file(c, &f) : track_one(c, &f);
}

/* --- journey timeline --- */

static void print_events(const Cxm__V1__GetTimelineResponse *r, bool header)
{
    if (header)
        printf("%-24s %-20s %-14s %-18s %-13s %10s  %s\n", "TIME", "TOUCHPOINT", "CHANNEL",
               "EVENT_TYPE", "STAGE", "VALUE", "EVENT_ID");
    for (size_t i = 0; i < r->n_events; i++) {
        const Cxm__V1__TouchpointEvent *e = r->events[i];
        char when[40] = "", ch[32] = "", st[32] = ""; /* kept empty if fmemopen fails */
        FILE *f = fmemopen(when, sizeof when, "w");
        if (f)
            cxmctl_print_time(f, e->occurred_at_unix_ms), fclose(f);
        if ((f = fmemopen(ch, sizeof ch, "w")))
            print_channel(f, e->channel), fclose(f);
        if ((f = fmemopen(st, sizeof st, "w")))
            print_stage(f, e->stage), fclose(f);
        print_col(when, 24), print_col(e->touchpoint, 20), print_col(ch, 14);
        print_col(e->event_type, 18), print_col(st, 13);
        if (e->value != 0)
            printf("%10.2f  ", e->value);
        else
            printf("%10s  ", "");
        printf("%s\n", e->event_id);
    }
}

static int cmd_timeline(ctl *c, int argc, char **argv)
{
    cxmctl_flag identity = {"identity", "TYPE:VALUE"}, from = {"from", "TIME"}, to = {"to", "TIME"},
                tp = {"touchpoint", "T", true}, channel = {"channel", "CHANNEL", true},
                type = {"type", "EVENT_TYPE", true}, oldest = {"oldest-first"},
                limit = {"limit", "N"}, token = {"page-token", "T"}, all = {"all"};
    cxmctl_flag *const flags[] = {&identity, &from,   &to,    &tp,    &channel,
                                  &type,     &oldest, &limit, &token, &all};
    char **pos;
    size_t npos;
    uint64_t size = 0;
    int rc = cxmctl_parse(c, argc, argv, flags, sizeof flags / sizeof flags[0], 0, 1, &pos, &npos);
    Cxm__V1__GetTimelineRequest req = CXM__V1__GET_TIMELINE_REQUEST__INIT;
    if (rc != CXMCTL_CONTINUE ||
        (rc = cxmctl_customer_ref(c, &identity, &pos, &npos, 0, &req.customer)) ||
        (rc = cxmctl_range_flags(c, &from, &to, false, &req.range)) ||
        (rc = cxmctl_channels_flag(c, &channel, &req.channels, &req.n_channels)) ||
        (rc = cxmctl_uint_flag(c, &limit, 1000, &size)))
        return rc;
    req.touchpoints = cxmctl_strings_flag(&tp), req.n_touchpoints = tp.n;
    req.event_types = cxmctl_strings_flag(&type), req.n_event_types = type.n;
    req.oldest_first = oldest.n > 0;
    req.page_size = (int32_t)size;
    req.page_token = (char *)(token.n ? token.v[0] : nothing);
    for (bool first = true;; first = false) {
        ProtobufCMessage *resp;
        if ((rc = cxmctl_call(c, JOURNEY_SERVICE, "GetTimeline", &req.base, &resp)) != 0)
            return rc;
        const Cxm__V1__GetTimelineResponse *r = (const void *)resp;
        if (c->json)
            cxmctl_print_json(stdout, resp);
        else
            print_events(r, first);
        if (!all.n || !*r->next_page_token) {
            if (!c->json && *r->next_page_token)
                printf("more: --page-token %s (or --all)\n", r->next_page_token);
            return 0;
        }
        req.page_token = r->next_page_token;
    }
}

/* --- journey state, rules, set-rules --- */

static int cmd_state(ctl *c, int argc, char **argv)
{
    cxmctl_flag identity = {"identity", "TYPE:VALUE"};
    cxmctl_flag *const flags[] = {&identity};
    char **pos;
    size_t npos;
    int rc = cxmctl_parse(c, argc, argv, flags, 1, 0, 1, &pos, &npos);
    Cxm__V1__GetJourneyStateRequest req = CXM__V1__GET_JOURNEY_STATE_REQUEST__INIT;
    if (rc != CXMCTL_CONTINUE ||
        (rc = cxmctl_customer_ref(c, &identity, &pos, &npos, 0, &req.customer)))
        return rc;
    return cxmctl_call_print(c, JOURNEY_SERVICE, "GetJourneyState", &req.base);
}

static int cmd_rules(ctl *c, int argc, char **argv)
{
    char **pos;
    size_t npos;
    int rc = cxmctl_parse(c, argc, argv, NULL, 0, 0, 0, &pos, &npos);
    if (rc != CXMCTL_CONTINUE)
        return rc;
    Cxm__V1__GetStageRulesRequest req = CXM__V1__GET_STAGE_RULES_REQUEST__INIT;
    return cxmctl_call_print(c, JOURNEY_SERVICE, "GetStageRules", &req.base);
}

/* The one UpsertStageRulesRequest record of a length-delimited file (as
 * cxm-gen's stage_rules.pb). */
static int read_rules(ctl *c, const char *path, Cxm__V1__UpsertStageRulesRequest **out)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return cxmctl_usage_error(c, "cannot open --file %s", path);
    uint8_t *buf = NULL, *extra = NULL;
    size_t cap = 0, xcap = 0, len = 0, xlen;
    int got = cxm_delim_read(f, &buf, &cap, &len);
    int more = got == 1 ? cxm_delim_read(f, &extra, &xcap, &xlen) : 0;
    fclose(f);
    free(extra);
    *out =
        got == 1 && more == 0
            ? cxm__v1__upsert_stage_rules_request__unpack(cxm_arena_protobuf(&c->arena), len, buf)
            : NULL;
    free(buf);
    if (!*out)
        return cxmctl_usage_error(c,
                                  "--file %s: expected one length-delimited "
                                  "UpsertStageRulesRequest (as cxm-gen's stage_rules.pb)%s",
                                  path, more ? ", found more than one record" : "");
    return 0;
}

static int cmd_set_rules(ctl *c, int argc, char **argv)
{
    cxmctl_flag file = {"file", "FILE.pb"}, version = {"expected-version", "N"};
    cxmctl_flag *const flags[] = {&file, &version};
    char **pos;
    size_t npos;
    Cxm__V1__UpsertStageRulesRequest *req;
    int rc = cxmctl_parse(c, argc, argv, flags, 2, 0, 0, &pos, &npos);
    if (rc != CXMCTL_CONTINUE || (rc = cxmctl_require(c, &file)) ||
        (rc = read_rules(c, file.v[0], &req)))
        return rc;
    if ((rc = cxmctl_uint_flag(c, &version, UINT64_MAX, &req->expected_version)))
        return rc;
    return cxmctl_call_print(c, JOURNEY_SERVICE, "UpsertStageRules", &req->base);
}

/* --- journey funnel --- */

/* TYPE[@TOUCHPOINT][#CHANNEL]; any part may be left out but not all. */
static int parse_step(ctl *c, const char *s, Cxm__V1__FunnelStep *st)
{
    size_t tlen = strcspn(s, "@#");
    const char *at = s[tlen] == '@' ? s + tlen + 1 : NULL;
    size_t alen = at ? strcspn(at, "#") : 0;
    const char *hash = strchr(s, '#');
    st->name = (char *)s;
    st->event_type = cxm_arena_strndup(&c->arena, s, tlen);
    st->touchpoint = at ? cxm_arena_strndup(&c->arena, at, alen) : (char *)nothing;
    if (!tlen && !alen && (!hash || !hash[1]))
        return cxmctl_usage_error(c, "--step \"%s\": expected TYPE[@TOUCHPOINT][#CHANNEL]", s);
    return hash ? cxmctl_channel_word(c, "step channel", hash + 1, &st->channel) : 0;
}

/* The bar of one step: its share of step 1's customers filled, the rest
 * dots, so drop-off reads as the gap between two bars. */
static void print_bar(double share)
{
    enum { WIDTH = 24 };
    int fill = (int)(share * WIDTH + 0.5);
    fill = fill < 0 ? 0 : fill > WIDTH ? WIDTH : fill;
    printf("%.*s%.*s", fill, "########################", WIDTH - fill, "........................");
}

static void print_funnel(Cxm__V1__FunnelStepResult *const *steps, size_t n)
{
    printf("  %-28s %-24s %10s %10s %9s %9s %9s\n", "STEP", "", "CUSTOMERS", "CONVERSION",
           "DROP-OFF", "MEDIAN", "P90");
    for (size_t i = 0; i < n; i++) {
        const Cxm__V1__FunnelStepResult *s = steps[i];
        printf("%zu %-28s ", i + 1, s->name);
        print_bar(s->overall_conversion);
        printf(" %10" PRIu64, s->customers);
        print_pct(11, s->conversion);
        if (i == 0) {
            printf("%10s%10s%10s\n", "", "", "");
            continue;
        }
        print_pct(10, s->drop_off);
        putchar(' ');
        print_cell_duration(9, s->median_from_previous_ms);
        putchar(' ');
        print_cell_duration(9, s->p90_from_previous_ms);
        putchar('\n');
    }
}

static int cmd_funnel(ctl *c, int argc, char **argv)
{
    cxmctl_flag step = {"step", "TYPE[@TOUCHPOINT][#CHANNEL]", true}, from = {"from", "TIME"},
                to = {"to", "TIME"}, window = {"window", "DURATION"}, order = {"order", "ORDER"},
                breakdown = {"breakdown", "BY"}, channel = {"channel", "CHANNEL", true},
                segment = {"segment", "S"}, limit = {"breakdown-limit", "N"};
    cxmctl_flag *const flags[] = {&step,      &from,    &to,      &window, &order,
                                  &breakdown, &channel, &segment, &limit};
    char **pos;
    size_t npos;
    int ord = 0, by = 0;
    uint64_t groups = 0;
    int rc = cxmctl_parse(c, argc, argv, flags, sizeof flags / sizeof flags[0], 0, 0, &pos, &npos);
    Cxm__V1__FunnelRequest req = CXM__V1__FUNNEL_REQUEST__INIT;
    if (rc != CXMCTL_CONTINUE || (rc = cxmctl_range_flags(c, &from, &to, true, &req.range)) ||
        (rc = cxmctl_duration_flag(c, &window, &req.window_ms)) ||
        (rc = cxmctl_enum_flag(c, &order, &cxm__v1__funnel_order__descriptor, &ord)) ||
        (rc = cxmctl_enum_flag(c, &breakdown, &cxm__v1__funnel_breakdown__descriptor, &by)) ||
        (rc = cxmctl_channels_flag(c, &channel, &req.channels, &req.n_channels)) ||
        (rc = cxmctl_uint_flag(c, &limit, 100, &groups)))
        return rc;
    if (step.n < 2 || step.n > 20)
        return cxmctl_usage_error(c, "--step: give 2 to 20 steps, in order (got %zu)", step.n);
    req.n_steps = step.n;
    req.steps = cxmctl_new_array(c, step.n, sizeof *req.steps);
    for (size_t i = 0; i < step.n && rc == 0; i++) {
        req.steps[i] = cxmctl_new_message(c, &cxm__v1__funnel_step__descriptor);
        rc = parse_step(c, step.v[i], req.steps[i]);
    }
    if (rc)
        return rc;
    req.order = (Cxm__V1__FunnelOrder)ord;
    req.breakdown = (Cxm__V1__FunnelBreakdown)by;
    req.breakdown_limit = (uint32_t)groups;
    req.segment_id = (char *)(segment.n ? segment.v[0] : nothing);
    ProtobufCMessage *resp;
    if ((rc = cxmctl_call(c, JOURNEY_SERVICE, "Funnel", &req.base, &resp)) != 0 || c->json) {
        if (rc == 0)
            cxmctl_print_json(stdout, resp);
        return rc;
    }
    const Cxm__V1__FunnelResponse *r = (const void *)resp;
    print_funnel(r->steps, r->n_steps);
    for (size_t g = 0; g < r->n_groups; g++) {
        printf("\n%s ", by == CXM__V1__FUNNEL_BREAKDOWN__FUNNEL_BREAKDOWN_CHANNEL
                            ? "channel"
                            : "first touchpoint");
        printf("%s\n", r->groups[g]->value);
        print_funnel(r->groups[g]->steps, r->groups[g]->n_steps);
    }
    printf("\ncustomers considered %" PRIu64 "\n", r->customers_considered);
    if (r->pending_events)
        printf("pending events       %" PRIu64 " (not resolved to a customer yet)\n",
               r->pending_events);
    return 0;
}

/* --- journey paths --- */

static int cmd_paths(ctl *c, int argc, char **argv)
{
    cxmctl_flag anchor = {"anchor", "X"}, direction = {"direction", "from|to"},
                max_len = {"max-length", "N"}, limit = {"limit", "N"},
                element = {"element", "touchpoint|event-type"}, repeats = {"keep-repeats"},
                from = {"from", "TIME"}, to = {"to", "TIME"},
                channel = {"channel", "CHANNEL", true}, segment = {"segment", "S"};
    cxmctl_flag *const flags[] = {&anchor,  &direction, &max_len, &limit,   &element,
                                  &repeats, &from,      &to,      &channel, &segment};
    char **pos;
    size_t npos;
    int dir = 0, el = 0;
    uint64_t ml = 0, lim = 0;
    int rc = cxmctl_parse(c, argc, argv, flags, sizeof flags / sizeof flags[0], 0, 0, &pos, &npos);
    Cxm__V1__PathsRequest req = CXM__V1__PATHS_REQUEST__INIT;
    if (rc != CXMCTL_CONTINUE || (rc = cxmctl_require(c, &anchor)) ||
        (rc = cxmctl_require(c, &direction)) ||
        (rc = cxmctl_enum_flag(c, &direction, &cxm__v1__path_direction__descriptor, &dir)) ||
        (rc = cxmctl_enum_flag(c, &element, &cxm__v1__path_element__descriptor, &el)) ||
        (rc = cxmctl_uint_flag(c, &max_len, 10, &ml)) ||
        (rc = cxmctl_uint_flag(c, &limit, 100, &lim)) ||
        (rc = cxmctl_range_flags(c, &from, &to, true, &req.range)) ||
        (rc = cxmctl_channels_flag(c, &channel, &req.channels, &req.n_channels)))
        return rc;
    req.anchor = (char *)anchor.v[0];
    req.direction = (Cxm__V1__PathDirection)dir;
    req.element = (Cxm__V1__PathElement)el;
    req.max_length = (uint32_t)ml;
    req.limit = (uint32_t)lim;
    req.keep_repeats = repeats.n > 0;
    req.segment_id = (char *)(segment.n ? segment.v[0] : nothing);
    ProtobufCMessage *resp;
    if ((rc = cxmctl_call(c, JOURNEY_SERVICE, "Paths", &req.base, &resp)) != 0 || c->json) {
        if (rc == 0)
            cxmctl_print_json(stdout, resp);
        return rc;
    }
    const Cxm__V1__PathsResponse *r = (const void *)resp;
    printf("%10s %10s %7s  %s\n", "SESSIONS", "CUSTOMERS", "SHARE", "PATH");
    for (size_t i = 0; i < r->n_paths; i++) {
        const Cxm__V1__Path *p = r->paths[i];
        printf("%10" PRIu64 " %10" PRIu64, p->sessions, p->customers);
        print_pct(8, p->share);
        fputs("  ", stdout);
        for (size_t k = 0; k < p->n_elements; k++)
            printf("%s%s", k ? " > " : "", p->elements[k]);
        putchar('\n');
    }
    printf("\nsessions considered %" PRIu64 ", distinct paths %" PRIu64 "\n",
           r->sessions_considered, r->distinct_paths);
    if (r->pending_events)
        printf("pending events %" PRIu64 " (not resolved to a customer yet)\n", r->pending_events);
    return 0;
}

/* --- journey touchpoints --- */

static void print_touchpoint(const Cxm__V1__TouchpointStat *s, bool goal)
{
    print_col(s->touchpoint, 22);
    printf("%9" PRIu64 " %9" PRIu64, s->events, s->unique_customers);
    print_pct(8, s->customer_share);
    print_pct(8, s->exit_rate);
    printf(" %12.0f", s->total_value);
    if (goal) {
        printf(" %7" PRIu64, s->goal_customers);
        print_pct(8, s->goal_conversion);
    }
    const Cxm__V1__TouchpointFeedback *fb = s->feedback;
    if (fb && fb->nps_responses)
        printf("  nps %+.0f (%" PRIu64 ")", fb->nps, fb->nps_responses);
    if (fb && fb->csat_responses)
        printf("  csat %.0f%% (%" PRIu64 ")", fb->csat * 100, fb->csat_responses);
    putchar('\n');
    for (size_t b = 0; b < s->n_buckets; b++) {
        fputs("    ", stdout);
        cxmctl_print_time(stdout, s->buckets[b]->start_unix_ms);
        printf("  %9" PRIu64 " events %9" PRIu64 " customers\n", s->buckets[b]->events,
               s->buckets[b]->unique_customers);
    }
}

static int cmd_touchpoints(ctl *c, int argc, char **argv)
{
    cxmctl_flag from = {"from", "TIME"}, to = {"to", "TIME"},
                bucket = {"bucket", "hour|day|week|month"}, goal = {"goal", "EVENT_TYPE"},
                goal_window = {"goal-window", "DURATION"}, tp = {"touchpoint", "T", true},
                channel = {"channel", "CHANNEL", true};
    cxmctl_flag *const flags[] = {&from, &to, &bucket, &goal, &goal_window, &tp, &channel};
    char **pos;
    size_t npos;
    int b = 0;
    int rc = cxmctl_parse(c, argc, argv, flags, sizeof flags / sizeof flags[0], 0, 0, &pos, &npos);
    Cxm__V1__TouchpointStatsRequest req = CXM__V1__TOUCHPOINT_STATS_REQUEST__INIT;
    if (rc != CXMCTL_CONTINUE || (rc = cxmctl_range_flags(c, &from, &to, true, &req.range)) ||
        (rc = cxmctl_enum_flag(c, &bucket, &cxm__v1__time_bucket__descriptor, &b)) ||
        (rc = cxmctl_duration_flag(c, &goal_window, &req.goal_window_ms)) ||
        (rc = cxmctl_channels_flag(c, &channel, &req.channels, &req.n_channels)))
        return rc;
    if (goal_window.n && !goal.n)
        return cxmctl_usage_error(c, "--goal-window needs --goal EVENT_TYPE");
    req.bucket = (Cxm__V1__TimeBucket)b;
    req.goal_event_type = (char *)(goal.n ? goal.v[0] : nothing);
    req.touchpoints = cxmctl_strings_flag(&tp), req.n_touchpoints = tp.n;
    ProtobufCMessage *resp;
    if ((rc = cxmctl_call(c, JOURNEY_SERVICE, "TouchpointStats", &req.base, &resp)) != 0 ||
        c->json) {
        if (rc == 0)
            cxmctl_print_json(stdout, resp);
        return rc;
    }
    const Cxm__V1__TouchpointStatsResponse *r = (const void *)resp;
    printf("%-22s %9s %9s %8s %8s %12s", "TOUCHPOINT", "EVENTS", "CUSTOMERS", "SHARE", "EXIT",
           "VALUE");
    if (goal.n)
        printf(" %7s %8s", "GOAL", "CONV");
    putchar('\n');
    for (size_t i = 0; i < r->n_stats; i++)
        print_touchpoint(r->stats[i], goal.n > 0);
    printf("\ncustomers active %" PRIu64 "\n", r->customers_active);
    if (r->pending_events)
        printf("pending events   %" PRIu64 " (not resolved to a customer yet)\n",
               r->pending_events);
    return 0;
}

const cxmctl_command cxmctl_journey_commands[] = {
    {"journey track",
     "(--customer-id ID | --identity TYPE:VALUE) --touchpoint T --channel CHANNEL\n"
     "      --type EVENT_TYPE [--event-id ID] [--at TIME|AGO] [--link TYPE:VALUE]...\n"
     "      [--prop NAME=VALUE]... [--value X] [--currency ISO4217] [--session S] [--item ITEM]\n"
     "    | --file FILE.pb [--window N]",
     "record one event (a new --event-id unless given), or stream a file of TrackRequest "
     "records (cxm-gen's track.pb) over TrackStream with N messages in flight (default 8)",
     "--identity email:ann@example.com --touchpoint checkout_page --channel web --type "
     "purchase --value 59000 --currency KRW --prop items=2 --at 5m",
     cmd_track},
    {"journey timeline",
     "(ID | --identity TYPE:VALUE) [--from TIME] [--to TIME] [--touchpoint T]...\n"
     "      [--channel CHANNEL]... [--type EVENT_TYPE]... [--oldest-first] [--limit N]\n"
     "      [--page-token T] [--all]",
     "a customer's events, newest first, a page at a time (--all: every page)",
     "--identity email:ann@example.com --from 7d --channel web --all", cmd_timeline},
    {"journey state", "(ID | --identity TYPE:VALUE)",
     "a customer's journey stage, since when, transitions and time in each stage",
     "--identity email:ann@example.com", cmd_state},
    {"journey rules", "", "the stage rules in force, their version and recomputation progress", "",
     cmd_rules},
    {"journey set-rules", "--file FILE.pb [--expected-version N]",
     "replace the stage rules with the UpsertStageRulesRequest in FILE.pb (cxm-gen's "
     "stage_rules.pb)",
     "--file stage_rules.pb", cmd_set_rules},
    {"journey funnel",
     "--step TYPE[@TOUCHPOINT][#CHANNEL]... --from TIME [--to TIME] [--window DURATION]\n"
     "      [--order ordered|strict|any] [--breakdown channel|first-touchpoint]\n"
     "      [--breakdown-limit N] [--channel CHANNEL]... [--segment S]",
     "customers through 2 to 20 steps within the window (default 14d), with conversion, "
     "drop-off and time between steps",
     "--step page_view@product_page --step add_to_cart --step purchase#web --from 30d "
     "--window 7d --breakdown channel",
     cmd_funnel},
    {"journey paths",
     "--anchor X --direction from|to --from TIME [--to TIME] [--max-length N] [--limit N]\n"
     "      [--element touchpoint|event-type] [--keep-repeats] [--channel CHANNEL]... "
     "[--segment S]",
     "the most frequent paths in sessions from or to a touchpoint (or event type)",
     "--anchor product_page --direction from --from 30d --max-length 4", cmd_paths},
    {"journey touchpoints",
     "--from TIME [--to TIME] [--bucket hour|day|week|month] [--goal EVENT_TYPE]\n"
     "      [--goal-window DURATION] [--touchpoint T]... [--channel CHANNEL]...",
     "per touchpoint: events, customers, share, exit rate, value, goal conversion, feedback",
     "--from 30d --goal purchase --goal-window 7d", cmd_touchpoints},
};
const size_t cxmctl_journey_ncommands =
    sizeof cxmctl_journey_commands / sizeof cxmctl_journey_commands[0];
