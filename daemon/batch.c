/*
 * Batches.  Members keep their unpacked requests (their rows are read from
 * there, or copied into one contiguous input when a batch has several members)
 * and a hold on their peer until their answer is sent.  A batch takes its
 * router and expert bindings when it is submitted, so all its members are
 * served by the same generation.  If the pool refuses a batch (queue full or
 * shutting down), every member gets that status.
 *
 * Expiry: when the pool writes a stuck call off, expired() answers every
 * member DEADLINE_EXCEEDED and releases the peers and the queued tokens at
 * once (so neither clients nor shutdown wait on it), but keeps the inputs,
 * outputs and bindings the stuck thread may still be using; done() frees them
 * if the call ever returns.
 */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/batch.h"
#include "daemon/conf.h"
#include "daemon/dtype.h"
#include "daemon/engine.h"
#include "daemon/log.h"
#include "daemon/pool.h"
#include "daemon/service.h"
#include "proto/tensor.h"

struct member {
	struct reply_to to;
	Moed__Request *req;
	size_t row, n;                  /* its rows in the batch */
	uint64_t start_ns;
};

struct batch {
	struct pool_job pj;
	struct batcher *bt;
	struct engine_layer *layer;
	int infer;
	int answered;                   /* expired: members answered and released */
	size_t n_members, cap;
	struct member *m;
	size_t tokens;
	float *x;                       /* concatenated input, several members only */
	void *out;                      /* experts, weights, y */
	struct engine_call call;
};

struct batcher {
	struct service *svc;
	struct batch **pending;         /* per MoE layer: infer requests waiting to coalesce */
	uv_timer_t window_timer;        /* coalesce_window_us */
	uv_timer_t regroup_timer;       /* coalesce_regroup_us */
	size_t regroup_left;            /* arrivals still awaited; 0 = not regrouping */
	int open_timers;
	struct batch_counters counters;
};

static void on_window(uv_timer_t *t)
{
	batch_flush(t->data, 1);
}

static void regroup_end(struct batcher *bt)
{
	bt->regroup_left = 0;
	uv_timer_stop(&bt->regroup_timer);
}

static void on_regroup(uv_timer_t *t)
{
	struct batcher *bt = t->data;

	regroup_end(bt);
	batch_flush(bt, 0);
}

int batcher_new(struct service *svc, struct batcher **ret)
{
	struct batcher *bt = calloc(1, sizeof(*bt));

	if (!bt || !(bt->pending = calloc(svc->engine->n_layers ? svc->engine->n_layers : 1,
					  sizeof(*bt->pending)))) {
		free(bt);
		return -ENOMEM;
	}
	bt->svc = svc;
	uv_timer_init(svc->loop, &bt->window_timer);
	uv_timer_init(svc->loop, &bt->regroup_timer);
	bt->window_timer.data = bt->regroup_timer.data = bt;
	bt->open_timers = 2;
	*ret = bt;
	return 0;
}

static void on_timer_closed(uv_handle_t *h)
{
	struct batcher *bt = h->data;

	if (--bt->open_timers == 0)
		free(bt);
}

void batcher_free(struct batcher *bt)
{
	if (!bt)
		return;
	regroup_end(bt);
	batch_flush(bt, 1);
	free(bt->pending);
	bt->pending = NULL;
	uv_close((uv_handle_t *)&bt->window_timer, on_timer_closed);   /* the last frees bt */
	uv_close((uv_handle_t *)&bt->regroup_timer, on_timer_closed);
}

const struct batch_counters *batcher_counters(const struct batcher *bt)
{
	return &bt->counters;
}

static const Moed__Tensor *hidden_of(const Moed__Request *req)
{
	return req->body_case == MOED__REQUEST__BODY_INFER ? req->infer->hidden : req->route->hidden;
}

static struct batch *batch_new(struct batcher *bt, struct engine_layer *l, int infer)
{
	struct batch *b = calloc(1, sizeof(*b));

	if (!b)
		return NULL;
	b->bt = bt;
	b->layer = l;
	b->infer = infer;
	return b;
}

static int batch_add(struct batch *b, const struct reply_to *to, Moed__Request *req)
{
	size_t n = hidden_of(req)->shape[0];

	if (b->n_members == b->cap) {
		size_t cap = b->cap ? 2 * b->cap : 4;
		struct member *m = realloc(b->m, cap * sizeof(*m));
		if (!m)
			return -ENOMEM;
		b->m = m;
		b->cap = cap;
	}
	b->m[b->n_members++] = (struct member){ *to, req, b->tokens, n, uv_hrtime() };
	b->tokens += n;
	b->bt->counters.queued_tokens += n;
	reply_hold(to);
	return 0;
}

/* Give back the members' peers and queued tokens (once). */
static void release_members(struct batch *b)
{
	if (b->answered)
		return;
	b->answered = 1;
	for (size_t i = 0; i < b->n_members; i++) {
		b->bt->counters.queued_tokens -= b->m[i].n;
		reply_release(&b->m[i].to);
	}
}

static void batch_free(struct batch *b)
{
	release_members(b);
	for (size_t i = 0; i < b->n_members; i++)
		moed__request__free_unpacked(b->m[i].req, NULL);
	free(b->m);
	free(b->x);
	free(b->out);
	free(b);
}

static void fail_all(struct batch *b, Moed__Status status, const char *msg)
{
	for (size_t i = 0; i < b->n_members; i++)
		reply_error(&b->m[i].to, status, "%s", msg);
}

static void batch_work(struct pool_job *pj)
{
	engine_call_run(&((struct batch *)pj)->call);
}

/* Index of the first non-finite value of v[0..n), or n. */
static size_t first_non_finite(const float *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!isfinite(v[i]))
			return i;
	return n;
}

/* y as the reply's dtype: F32 is sent from where it is; BF16 is rounded into
 * *ret_buf (malloc'ed, the caller frees it).  -ENOMEM, or -ERANGE when a value
 * rounds to infinity in bf16. */
static int output_as(Moed__DType dt, const float *y, size_t n, void **ret_buf)
{
	uint16_t *h;

	*ret_buf = NULL;
	if (dt != MOED__DTYPE__BF16)
		return 0;
	h = malloc(n * sizeof(*h) + 1);
	if (!h)
		return -ENOMEM;
	dtype_convert(MOED_DTYPE_F32, y, MOED_DTYPE_BF16, h, n);
	for (size_t i = 0; i < n; i++)
		if ((h[i] & 0x7f80u) == 0x7f80u) {
			free(h);
			return -ERANGE;
		}
	*ret_buf = h;
	return 0;
}

static void reply_member(struct batch *b, const struct member *m)
{
	Moed__Response resp = MOED__RESPONSE__INIT;
	Moed__InferResponse infer = MOED__INFER_RESPONSE__INIT;
	Moed__RouteResponse route = MOED__ROUTE_RESPONSE__INIT;
	const struct engine_call *c = &b->call;
	size_t k = b->layer->rspec.top_k, H = b->layer->rspec.hidden_size;
	uint64_t shape_y[2], shape_e[2], shape_w[2];
	Moed__Tensor ty, te, tw;
	const float *out = b->infer ? c->y + m->row * H : c->weights + m->row * k;
	size_t n_out = m->n * (b->infer ? H : k), bad = first_non_finite(out, n_out);
	void *conv = NULL;

	if (bad < n_out) {
		/* an overflow inside the layer (inputs near the fp32 limit): say so
		 * instead of sending NaN or Inf */
		reply_error(&m->to, MOED__STATUS__OUT_OF_RANGE,
			    "layer %u: %s[%zu][%zu] is not finite (the layer overflowed fp32: inputs too large)",
			    b->layer->w->index, b->infer ? "output" : "weights",
			    bad / (b->infer ? H : k), bad % (b->infer ? H : k));
		return;
	}
	tensor_wrap2(&te, shape_e, MOED__DTYPE__I32, c->experts + m->row * k, m->n, k);
	tensor_wrap2(&tw, shape_w, MOED__DTYPE__F32, c->weights + m->row * k, m->n, k);
	if (b->infer) {
		const Moed__InferRequest *ir = m->req->infer;
		Moed__DType dt = ir->has_output_dtype ? ir->output_dtype : MOED__DTYPE__F32;
		int r = output_as(dt, out, n_out, &conv);
		if (r == -ENOMEM) {
			reply_error(&m->to, MOED__STATUS__RESOURCE_EXHAUSTED, "out of memory");
			return;
		}
		if (r < 0) {
			reply_error(&m->to, MOED__STATUS__OUT_OF_RANGE,
				    "layer %u: the output overflows bf16 (ask for output_dtype F32)",
				    b->layer->w->index);
			return;
		}
		tensor_wrap2(&ty, shape_y, conv ? dt : MOED__DTYPE__F32, conv ? conv : out, m->n, H);
		infer.output = &ty;
		infer.router = c->router->gen->name;
		infer.generation = c->router->gen->generation;
		infer.compute_us = c->compute_ns / 1000;
		if (ir->has_return_routes && ir->return_routes) {
			infer.experts = &te;
			infer.weights = &tw;
		}
		resp.body_case = MOED__RESPONSE__BODY_INFER;
		resp.infer = &infer;
	} else {
		route.experts = &te;
		route.weights = &tw;
		route.router = c->router->gen->name;
		route.generation = c->router->gen->generation;
		resp.body_case = MOED__RESPONSE__BODY_ROUTE;
		resp.route = &route;
	}
	reply_ok(&m->to, &resp);
	free(conv);
}

static void batch_expired(struct pool_job *pj)
{
	struct batch *b = (struct batch *)pj;
	uint32_t ms = b->bt->svc->cfg->compute_timeout_ms;

	log_err("batch: layer %u: a%s call on %zu tokens (router '%s'%s%s%s) is still running after compute_timeout_ms %u ms; its worker is written off",
		b->layer->w->index, b->infer ? "n infer" : " route", b->tokens,
		b->call.router->gen->name, b->call.expert ? ", expert backend '" : "",
		b->call.expert ? b->call.expert->gen->name : "", b->call.expert ? "'" : "", ms);
	b->layer->stats.timeouts++;
	b->bt->counters.timed_out += b->n_members;
	for (size_t i = 0; i < b->n_members; i++)
		reply_error(&b->m[i].to, MOED__STATUS__DEADLINE_EXCEEDED,
			    "layer %u: the compute call did not finish within compute_timeout_ms (%u ms); its worker was written off",
			    b->layer->w->index, ms);
	release_members(b);
	/* the written-off call no longer counts as running: what waited behind
	 * it (other layers' pending batches) may start now */
	batch_flush(b->bt, 0);
}

/*
 * Regrouping.  Closed-loop clients answered together come back together, a
 * round trip later; a batch started in between (from what was pending, or
 * from the first to come back) would leave the rest for the one after, and
 * the load settles into alternating part batches that each read nearly all
 * of the layer's weights.  So after an infer batch of several members the
 * next batch waits until as many new infer requests have arrived, or for
 * coalesce_regroup_us, whichever comes first; not after a batch whose
 * compute took less than REGROUP_MIN_RATIO times that wait, so the wait
 * never costs more than a fraction of a batch when clients do not return.
 */
#define REGROUP_MIN_RATIO 4

static void regroup_start(struct batcher *bt, const struct batch *b)
{
	uint64_t us = bt->svc->cfg->coalesce_regroup_us;
	/* libuv's clock counts whole milliseconds, so one more makes sure of us */
	uint64_t ms = (us + 999) / 1000 + 1;

	if (!b->infer || b->n_members < 2 || !us ||
	    b->call.compute_ns < REGROUP_MIN_RATIO * ms * 1000000)
		return;
	bt->regroup_left = b->n_members;
	uv_timer_start(&bt->regroup_timer, on_regroup, ms, 0);
}

static void batch_done(struct pool_job *pj)
{
	struct batch *b = (struct batch *)pj;
	struct batcher *bt = b->bt;
	size_t k = b->layer->rspec.top_k;

	if (b->answered) {
		log_warn("batch: layer %u: a written-off call returned after all; its answers were already sent",
			 b->layer->w->index);
	} else if (b->call.rc < 0) {
		log_warn("batch: layer %u: %s", b->layer->w->index, b->call.err);
		/* a cluster rank lost or not answering: the service, not the call */
		fail_all(b, b->call.rc == -ENOTCONN || b->call.rc == -ETIMEDOUT
				    ? MOED__STATUS__UNAVAILABLE : MOED__STATUS__INTERNAL,
			 b->call.err);
	} else {
		uint64_t now_ms = uv_now(bt->svc->loop), now_ns = uv_hrtime();
		b->layer->stats.batches++;
		for (size_t i = 0; i < b->n_members; i++) {
			const struct member *m = &b->m[i];
			reply_member(b, m);
			bt->counters.requests_served++;
			bt->counters.tokens_served += m->n;
			stats_record(&b->layer->stats, now_ms, b->call.experts + m->row * k,
				     m->n * k, m->n, b->call.compute_ns / 1000,
				     (now_ns - m->start_ns) / 1000);
		}
		engine_shadow_record(&b->call, now_ms);
		regroup_start(bt, b);
	}
	engine_call_end(&b->call);
	batch_free(b);
	if (bt->pending)
		batch_flush(bt, 0);
}

/* Prepare buffers and bindings and hand the batch to the pool. */
static void batch_submit(struct batch *b)
{
	struct pool *pool = b->bt->svc->pool;
	size_t T = b->tokens, k = b->layer->rspec.top_k, H = b->layer->rspec.hidden_size;
	int r;

	b->out = malloc(T * k * (sizeof(int32_t) + sizeof(float)) +
			(b->infer ? T * H * sizeof(float) : 0));
	if (b->n_members > 1)
		b->x = malloc(T * H * sizeof(float));
	if (!b->out || (b->n_members > 1 && !b->x)) {
		fail_all(b, MOED__STATUS__RESOURCE_EXHAUSTED, "out of memory");
		batch_free(b);
		return;
	}
	if (b->x)
		for (size_t i = 0; i < b->n_members; i++)
			memcpy(b->x + b->m[i].row * H, hidden_of(b->m[i].req)->data.data,
			       b->m[i].n * H * sizeof(float));
	b->call.x = b->x ? b->x : (const float *)hidden_of(b->m[0].req)->data.data;
	b->call.n_tokens = T;
	b->call.experts = b->out;
	b->call.weights = (float *)(b->call.experts + T * k);
	b->call.y = b->infer ? b->call.weights + T * k : NULL;
	b->pj.work = batch_work;
	b->pj.done = batch_done;
	b->pj.expired = batch_expired;
	engine_call_begin(&b->call, b->layer);
	r = pool_submit(pool, &b->pj);
	if (r < 0) {
		engine_call_end(&b->call);
		fail_all(b, r == -EBUSY ? MOED__STATUS__RESOURCE_EXHAUSTED : MOED__STATUS__UNAVAILABLE,
			 r == -EBUSY ? "busy: the worker queue is full (queue_depth)"
				     : "moed is shutting down");
		batch_free(b);
	}
}

/* May another batch start now?  With max_running_batches = 1 (default) a
 * batch runs alone and the other workers join it through parallel_for, so
 * requests that arrive meanwhile make one bigger batch instead of a second
 * one competing for the same memory bandwidth. */
static int pool_idle(struct batcher *bt)
{
	const struct moed_config *cfg = bt->svc->cfg;
	unsigned limit = cfg->max_running_batches ? cfg->max_running_batches
						  : pool_threads(bt->svc->pool);

	return pool_queued(bt->svc->pool) < limit;
}

void batch_flush(struct batcher *bt, int force)
{
	for (uint32_t i = 0; bt->pending && i < bt->svc->engine->n_layers; i++) {
		struct batch *b = bt->pending[i];
		if (!b || (!force && (bt->regroup_left || !pool_idle(bt))))
			continue;
		bt->pending[i] = NULL;
		batch_submit(b);
	}
}

unsigned batch_expire(struct batcher *bt, uint64_t timeout_ms)
{
	return pool_expire(bt->svc->pool, timeout_ms * 1000000ull);
}

void batch_request(struct batcher *bt, const struct reply_to *to, Moed__Request *req,
		   struct engine_layer *l)
{
	const struct moed_config *cfg = bt->svc->cfg;
	int infer = req->body_case == MOED__REQUEST__BODY_INFER;
	uint32_t window = cfg->coalesce_window_us;
	struct batch **slot = infer && bt->pending ? &bt->pending[l - bt->svc->engine->layers] : NULL;
	struct batch *b;

	if (bt->counters.queued_tokens + hidden_of(req)->shape[0] > cfg->max_queued_tokens) {
		reply_error(to, MOED__STATUS__RESOURCE_EXHAUSTED,
			    "busy: %llu tokens already queued (max_queued_tokens %u)",
			    (unsigned long long)bt->counters.queued_tokens, cfg->max_queued_tokens);
		moed__request__free_unpacked(req, NULL);
		return;
	}
	int alone = !slot || (!*slot && !window && !bt->regroup_left && pool_idle(bt));
	b = slot && *slot ? *slot : batch_new(bt, l, infer);
	if (!b || batch_add(b, to, req) < 0) {
		reply_error(to, MOED__STATUS__RESOURCE_EXHAUSTED, "out of memory");
		moed__request__free_unpacked(req, NULL);
		if (b && b->n_members == 0)
			batch_free(b);
		return;
	}
	if (alone) {
		batch_submit(b);
		return;
	}
	if (!*slot) {
		*slot = b;              /* a new pending batch for this layer */
		if (window && !uv_is_active((uv_handle_t *)&bt->window_timer))
			uv_timer_start(&bt->window_timer, on_window, (window + 999) / 1000, 0);
	}
	if (b->tokens >= cfg->max_batch_tokens) {
		*slot = NULL;
		batch_submit(b);
	} else if (bt->regroup_left && --bt->regroup_left == 0) {
		regroup_end(bt);
		batch_flush(bt, 0);
	}
}
