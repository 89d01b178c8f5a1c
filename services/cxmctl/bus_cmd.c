/*
 * bus_cmd.c - `cxmctl bus status`: the event bus of a server
 * (cxm.v1.BusService/GetBusStatus), as two tables or as JSON.
 */
#include <inttypes.h>
#include <stdio.h>

#include "cxm/v1/bus.pb-c.h"
#include "cxmctl.h"

static void print_age(int64_t ms)
{
    if (ms > 0)
        printf("  %" PRId64 " ms", ms);
    else
        printf("  -");
}

static void print_tables(const Cxm__V1__GetBusStatusResponse *r)
{
    printf("mode  %s\n", r->mode == CXM__V1__BUS_MODE__BUS_MODE_NATS ? "nats" : "in-process");
    printf("\n%-16s %12s %12s  %s\n", "PRODUCER", "LAST SEQ", "OUTBOX", "OLDEST");
    for (size_t i = 0; i < r->n_producers; i++) {
        const Cxm__V1__BusProducerStatus *p = r->producers[i];
        printf("%-16s %12" PRIu64 " %12" PRIu64, p->producer, p->last_sequence, p->outbox_backlog);
        print_age(p->oldest_outbox_age_ms);
        printf("\n");
    }
    printf("\n%-16s %-16s %12s %12s  %s\n", "SUBSCRIBER", "PRODUCER", "APPLIED", "BACKLOG",
           "OLDEST");
    for (size_t i = 0; i < r->n_subscribers; i++) {
        const Cxm__V1__BusSubscriberStatus *s = r->subscribers[i];
        printf("%-16s %-16s %12" PRIu64 " %12" PRIu64, s->subscriber, s->producer,
               s->applied_sequence, s->backlog);
        print_age(s->oldest_unapplied_age_ms);
        if (*s->last_error)
            printf("  error: %s", s->last_error);
        printf("\n");
    }
}

static int cmd_status(ctl *c, int argc, char **argv)
{
    char **pos;
    size_t npos;
    int rc = cxmctl_parse(c, argc, argv, NULL, 0, 0, 0, &pos, &npos);
    if (rc != CXMCTL_CONTINUE)
        return rc;
    Cxm__V1__GetBusStatusRequest req = CXM__V1__GET_BUS_STATUS_REQUEST__INIT;
    ProtobufCMessage *resp;
    rc = cxmctl_call(c, &cxm__v1__bus_service__descriptor, "GetBusStatus", &req.base, &resp);
    if (rc != 0)
        return rc;
    if (c->json)
        cxmctl_print_json(stdout, resp);
    else
        print_tables((const Cxm__V1__GetBusStatusResponse *)resp);
    return 0;
}

const cxmctl_command cxmctl_bus_commands[] = {
    {"bus status", "",
     "the event bus: per producer the last sequence and outbox backlog, per subscriber the "
     "applied sequence, backlog and age of the oldest event not applied",
     "", cmd_status},
};
const size_t cxmctl_bus_ncommands = sizeof cxmctl_bus_commands / sizeof cxmctl_bus_commands[0];
