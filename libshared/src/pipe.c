/* pipe.c - a client stream that sends and receives at once (see pipe.h). */
#include "cxm/pipe.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer_reader.h>
#include <grpc/slice.h>

#include "cxm/err.h"

/* Completion tags: one batch of each kind at most is outstanding. */
enum { PIPE_START, PIPE_SEND, PIPE_RECV, PIPE_CLOSE, PIPE_STATUS, PIPE_NTAGS };

struct cxm_pipe {
    grpc_call *call;
    grpc_completion_queue *cq;
    bool busy[PIPE_NTAGS]; /* a batch of that kind is outstanding */
    bool broken;           /* a send failed: the call is over */
    bool closed_send, recv_ended, status_done;
    grpc_byte_buffer *send_bb; /* of the outstanding send */
    grpc_byte_buffer *recv_bb; /* the outstanding receive's target */
    grpc_byte_buffer *ready;   /* received and not yet handed out */
    grpc_metadata_array initial_md, trailing_md;
    grpc_status_code status;
    grpc_slice details;
};

/* Tags are the addresses of busy[kind], so a completion finds its kind. */
static bool start(cxm_pipe *p, int kind, grpc_op *ops, size_t n)
{
    if (grpc_call_start_batch(p->call, ops, n, &p->busy[kind], NULL) != GRPC_CALL_OK)
        return false;
    p->busy[kind] = true;
    return true;
}

static bool start_recv(cxm_pipe *p)
{
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &p->recv_bb;
    p->recv_bb = NULL;
    return start(p, PIPE_RECV, &op, 1);
}

/* Wait for one completion and account for it. */
static void pump(cxm_pipe *p)
{
    grpc_event ev = grpc_completion_queue_next(p->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
    if (ev.type != GRPC_OP_COMPLETE)
        return;
    int kind = (int)((bool *)ev.tag - p->busy);
    p->busy[kind] = false;
    if (kind == PIPE_SEND) {
        grpc_byte_buffer_destroy(p->send_bb);
        p->send_bb = NULL;
        p->broken |= !ev.success;
    } else if (kind == PIPE_RECV) {
        if (ev.success && p->recv_bb)
            p->ready = p->recv_bb;
        else
            p->recv_ended = true;
        p->recv_bb = NULL;
    } else if (kind == PIPE_STATUS) {
        p->status_done = true;
    }
}

int cxm_pipe_open(cxm_channel *ch, const char *path, int64_t timeout_ms, cxm_pipe **out)
{
    void *method = path ? cxm_channel_method(ch, path) : NULL;
    if (!path)
        return CXM_EINVAL;
    cxm_pipe *p = calloc(1, sizeof *p);
    if (!p || !method || !(p->cq = grpc_completion_queue_create_for_next(NULL)))
        return (free(p), CXM_ENOMEM);
    gpr_timespec deadline = timeout_ms > 0
                                ? gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                               gpr_time_from_millis(timeout_ms, GPR_TIMESPAN))
                                : gpr_inf_future(GPR_CLOCK_MONOTONIC);
    p->call = grpc_channel_create_registered_call(
        cxm_channel_raw(ch), NULL, GRPC_PROPAGATE_DEFAULTS, p->cq, method, deadline, NULL);
    if (!p->call) {
        grpc_completion_queue_shutdown(p->cq);
        grpc_completion_queue_destroy(p->cq);
        free(p);
        return CXM_ENOMEM;
    }
    grpc_metadata_array_init(&p->initial_md);
    grpc_metadata_array_init(&p->trailing_md);
    p->details = grpc_empty_slice();
    grpc_op ops[2];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[1].data.recv_initial_metadata.recv_initial_metadata = &p->initial_md;
    grpc_op st;
    memset(&st, 0, sizeof st);
    st.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    st.data.recv_status_on_client.trailing_metadata = &p->trailing_md;
    st.data.recv_status_on_client.status = &p->status;
    st.data.recv_status_on_client.status_details = &p->details;
    /* Failing to start these leaves the call cancelled; finish reports it. */
    if (!start(p, PIPE_START, ops, 2) || !start(p, PIPE_STATUS, &st, 1) || !start_recv(p))
        grpc_call_cancel(p->call, NULL);
    *out = p;
    return 0;
}

int cxm_pipe_send(cxm_pipe *p, const void *msg, size_t len)
{
    while (p->busy[PIPE_SEND] && !p->broken)
        pump(p);
    if (p->broken || p->closed_send || p->status_done)
        return CXM_EUNAVAIL;
    grpc_slice s = grpc_slice_from_copied_buffer(msg, len);
    p->send_bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    if (!p->send_bb)
        return CXM_ENOMEM;
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_SEND_MESSAGE;
    op.data.send_message.send_message = p->send_bb;
    if (start(p, PIPE_SEND, &op, 1))
        return 0;
    grpc_byte_buffer_destroy(p->send_bb);
    p->send_bb = NULL;
    p->broken = true;
    return CXM_EUNAVAIL;
}

int cxm_pipe_close_send(cxm_pipe *p)
{
    while (p->busy[PIPE_SEND] && !p->broken)
        pump(p);
    if (p->closed_send)
        return 0;
    if (p->broken || p->status_done)
        return CXM_EUNAVAIL;
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    p->closed_send = start(p, PIPE_CLOSE, &op, 1);
    return p->closed_send ? 0 : CXM_EUNAVAIL;
}

static int to_heap(grpc_byte_buffer *bb, uint8_t **msg, size_t *len)
{
    grpc_byte_buffer_reader r;
    if (!grpc_byte_buffer_reader_init(&r, bb))
        return CXM_ENOMEM;
    grpc_slice all = grpc_byte_buffer_reader_readall(&r);
    grpc_byte_buffer_reader_destroy(&r);
    *len = GRPC_SLICE_LENGTH(all);
    *msg = malloc(*len ? *len : 1);
    if (*msg)
        memcpy(*msg, GRPC_SLICE_START_PTR(all), *len);
    grpc_slice_unref(all);
    return *msg ? 1 : CXM_ENOMEM;
}

int cxm_pipe_recv(cxm_pipe *p, uint8_t **msg, size_t *len)
{
    /* Without a receive outstanding (open could not start one) no
     * completion would ever end the wait. */
    while (!p->ready && !p->recv_ended && p->busy[PIPE_RECV])
        pump(p);
    if (!p->ready)
        return 0;
    grpc_byte_buffer *bb = p->ready;
    p->ready = NULL;
    if (!start_recv(p))
        p->recv_ended = true;
    int rc = to_heap(bb, msg, len);
    grpc_byte_buffer_destroy(bb);
    return rc;
}

void cxm_pipe_cancel(cxm_pipe *p)
{
    grpc_call_cancel(p->call, NULL);
}

static char *slice_string(grpc_slice s)
{
    size_t n = GRPC_SLICE_LENGTH(s);
    char *out = malloc(n + 1);
    if (out) {
        memcpy(out, GRPC_SLICE_START_PTR(s), n);
        out[n] = '\0';
    }
    return out;
}

int cxm_pipe_finish(cxm_pipe *p, cxm_client_result *out)
{
    memset(out, 0, sizeof *out);
    /* Every batch must complete before the call goes; a receive still
     * outstanding ends with the call. */
    for (;;) {
        bool any = false;
        for (int k = 0; k < PIPE_NTAGS; k++)
            any |= p->busy[k];
        if (!any)
            break;
        if (p->status_done && p->busy[PIPE_RECV] && !p->busy[PIPE_SEND])
            grpc_call_cancel(p->call, NULL); /* unread messages: let it go */
        pump(p);
    }
    out->status = p->status_done ? p->status : GRPC_STATUS_UNKNOWN;
    out->details = slice_string(p->details);
    if (p->ready)
        grpc_byte_buffer_destroy(p->ready);
    grpc_slice_unref(p->details);
    grpc_metadata_array_destroy(&p->initial_md);
    grpc_metadata_array_destroy(&p->trailing_md);
    grpc_call_unref(p->call);
    grpc_completion_queue_shutdown(p->cq);
    while (grpc_completion_queue_next(p->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type !=
           GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(p->cq);
    free(p);
    return out->details ? 0 : CXM_ENOMEM;
}
