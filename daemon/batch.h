/*
 * Running infer and route requests on the worker pool, with coalescing.
 *
 * A *batch* is one engine call over the rows of one or more requests for the
 * same layer, served by one router and expert generation, then split back into
 * one reply per request.  Infer requests that arrive while every worker is busy
 * (or, with [limits] coalesce_window_us, within that window) wait in the
 * layer's pending batch, up to max_batch_tokens; a finishing job (or the
 * window's timer, or a full batch) sends the pending batches to the pool.  An
 * idle pool and no window means no waiting: the request runs at once, alone.
 * Route requests always run alone.  Loop thread only.
 */
#ifndef MOED_BATCH_H
#define MOED_BATCH_H

#include "proto/moed.pb-c.h"

struct engine_layer;
struct server;
struct session;

/* Takes ownership of req (validated: layer exists, hidden is F32 [T, H]). */
void batch_request(struct session *s, Moed__Request *req, struct engine_layer *layer);
/* Send pending batches to the pool while workers are idle (or all, if force). */
void batch_flush(struct server *srv, int force);
/* Free the pending batches' state (shutdown; pending ones were flushed). */
void batch_release(struct server *srv);

#endif
