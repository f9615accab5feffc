/*
 * Running infer and route requests on the worker pool, with coalescing.
 *
 * A *batch* is one engine call over the rows of one or more requests for the
 * same layer, served by one router and expert generation, then split back into
 * one answer per request.  Infer requests that arrive while every worker is
 * busy (or, with [limits] coalesce_window_us, within that window) wait in the
 * layer's pending batch, up to max_batch_tokens; a finishing job (or the
 * window's timer, or a full batch) sends the pending batches to the pool.  An
 * idle pool and no window means no waiting: the request runs at once, alone.
 * After a batch of several infers the next one waits for as many arrivals,
 * or [limits] coalesce_regroup_us (regrouping, batch.c).  Route requests
 * always run alone.
 *
 * A call that runs past [limits] compute_timeout_ms is answered
 * DEADLINE_EXCEEDED and its worker written off (pool_expire); its memory is
 * kept until the stuck call returns, if ever.  Loop thread only.
 */
#ifndef MOED_BATCH_H
#define MOED_BATCH_H

#include <stdint.h>

#include "daemon/reply.h"
#include "proto/moed.pb-c.h"

struct batcher;
struct engine_layer;
struct service;


struct batch_counters {
	uint64_t queued_tokens;         /* accepted infer/route tokens not yet answered */
	uint64_t requests_served;
	uint64_t tokens_served;
	uint64_t timed_out;             /* requests answered DEADLINE_EXCEEDED */
};

int batcher_new(struct service *svc, struct batcher **ret);
/* Send what is pending to the pool and free the batcher's own state (batches
 * still running keep what they need and finish normally). */
void batcher_free(struct batcher *bt);
const struct batch_counters *batcher_counters(const struct batcher *bt);

/* Takes ownership of req (validated: layer exists, hidden is F32 [T, H]) and
 * answers through `to` (held until then). */
void batch_request(struct batcher *bt, const struct reply_to *to, Moed__Request *req,
		   struct engine_layer *layer);
/* Send pending batches to the pool while workers are idle (or all, if force). */
void batch_flush(struct batcher *bt, int force);
/* Write off every call running longer than timeout_ms (0: every running call,
 * at shutdown); returns how many. */
unsigned batch_expire(struct batcher *bt, uint64_t timeout_ms);

#endif
