/*
 * pipe.h - a client stream that sends and receives at once, for pipelined
 * bidi calls (JourneyService/TrackStream: many messages in flight, each
 * acknowledged).
 *
 * Why not client.h's cxm_client_stream: it runs one operation at a time, so
 * a send blocked on flow control (the server stopped reading) cannot see
 * the acknowledgements or the status that would unblock or end it; a server
 * that fails the call without reading the rest would hold the client until
 * its deadline. Here a send and a receive are always outstanding together
 * on one completion queue: a send waits only for the previous send, and
 * the call's end fails whatever is pending at once.
 *
 * A pipe belongs to one thread. Errors are negative CXM_E* codes; the
 * call's own outcome is the status cxm_pipe_finish reports.
 */
#ifndef CXM_PIPE_H
#define CXM_PIPE_H

#include <stddef.h>
#include <stdint.h>

#include "cxm/client.h"

typedef struct cxm_pipe cxm_pipe;

/* Start a call of path on ch (timeout_ms <= 0: no deadline). 0, CXM_ENOMEM,
 * or CXM_EINVAL for a NULL path. */
int cxm_pipe_open(cxm_channel *ch, const char *path, int64_t timeout_ms, cxm_pipe **out);

/* Send a copy of msg once the previous send has been taken by the
 * transport (receiving meanwhile); does not wait for this one. 0, or
 * CXM_EUNAVAIL when the call is over (cxm_pipe_finish says why). */
int cxm_pipe_send(cxm_pipe *p, const void *msg, size_t len);

/* Half-close after the sends so far. 0 or CXM_EUNAVAIL. */
int cxm_pipe_close_send(cxm_pipe *p);

/* The next message from the server in a malloc'ed buffer (*msg, *len; the
 * caller frees it): 1, or 0 at the end of the server's messages (the call
 * ended: cxm_pipe_finish has its status), or CXM_ENOMEM. */
int cxm_pipe_recv(cxm_pipe *p, uint8_t **msg, size_t *len);

/* Cancel the call; cxm_pipe_finish must still be called. */
void cxm_pipe_cancel(cxm_pipe *p);

/* Wait for the call's status into *out (response fields NULL; dispose it
 * with cxm_client_result_dispose) and release the pipe. Always exactly once
 * per opened pipe. 0 or CXM_ENOMEM. */
int cxm_pipe_finish(cxm_pipe *p, cxm_client_result *out);

#endif
