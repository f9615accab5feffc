/*
 * Batches.  Members keep their unpacked requests (their rows are read from
 * there, or copied into one contiguous input when a batch has several members)
 * and a hold on their session until their reply is sent.  A batch takes its
 * router and expert bindings when it is submitted, so all its members are
 * served by the same generation.  If the pool refuses a batch (queue full or
 * shutting down), every member gets that status.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/batch.h"
#include "daemon/engine.h"
#include "daemon/log.h"
#include "daemon/pool.h"
#include "daemon/server.h"
#include "daemon/session.h"
#include "proto/tensor.h"

struct member {
	struct session *s;
	Moed__Request *req;
	size_t row, n;                  /* its rows in the batch */
	uint64_t start_ns;
};

struct batch {
	struct pool_job pj;
	struct server *srv;
	struct engine_layer *layer;
	int infer;
	size_t n_members, cap;
	struct member *m;
	size_t tokens;
	float *x;                       /* concatenated input, several members only */
	void *out;                      /* experts, weights, y */
	struct engine_call call;
};

static const Moed__Tensor *hidden_of(const Moed__Request *req)
{
	return req->body_case == MOED__REQUEST__BODY_INFER ? req->infer->hidden : req->route->hidden;
}

static struct batch *batch_new(struct server *srv, struct engine_layer *l, int infer)
{
	struct batch *b = calloc(1, sizeof(*b));

	if (!b)
		return NULL;
	b->srv = srv;
	b->layer = l;
	b->infer = infer;
	return b;
}

static int batch_add(struct batch *b, struct session *s, Moed__Request *req)
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
	b->m[b->n_members++] = (struct member){ s, req, b->tokens, n, uv_hrtime() };
	b->tokens += n;
	s->srv->queued_tokens += n;
	session_hold(s);
	return 0;
}

static void member_done(struct member *m)
{
	m->s->srv->queued_tokens -= m->n;
	moed__request__free_unpacked(m->req, NULL);
	session_release(m->s);
}

static void batch_free(struct batch *b)
{
	for (size_t i = 0; i < b->n_members; i++)
		member_done(&b->m[i]);
	free(b->m);
	free(b->x);
	free(b->out);
	free(b);
}

static void fail_all(struct batch *b, Moed__Status status, const char *msg)
{
	for (size_t i = 0; i < b->n_members; i++)
		session_send_error(b->m[i].s, b->m[i].req->id, status, "%s", msg);
	batch_free(b);
}

static void batch_work(struct pool_job *pj)
{
	engine_call_run(&((struct batch *)pj)->call);
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

	resp.id = m->req->id;
	resp.status = MOED__STATUS__OK;
	if (b->infer) {
		tensor_wrap2(&ty, shape_y, MOED__DTYPE__F32, c->y + m->row * H, m->n, H);
		infer.output = &ty;
		infer.router = c->router->gen->name;
		infer.generation = c->router->gen->generation;
		infer.compute_us = c->compute_ns / 1000;
		resp.body_case = MOED__RESPONSE__BODY_INFER;
		resp.infer = &infer;
	} else {
		tensor_wrap2(&te, shape_e, MOED__DTYPE__I32, c->experts + m->row * k, m->n, k);
		tensor_wrap2(&tw, shape_w, MOED__DTYPE__F32, c->weights + m->row * k, m->n, k);
		route.experts = &te;
		route.weights = &tw;
		route.router = c->router->gen->name;
		route.generation = c->router->gen->generation;
		resp.body_case = MOED__RESPONSE__BODY_ROUTE;
		resp.route = &route;
	}
	session_send(m->s, &resp);
}

static void batch_done(struct pool_job *pj)
{
	struct batch *b = (struct batch *)pj;
	struct server *srv = b->srv;
	size_t k = b->layer->rspec.top_k;

	if (b->call.rc < 0) {
		log_warn("batch: layer %u: %s", b->layer->w->index, b->call.err);
		for (size_t i = 0; i < b->n_members; i++)
			session_send_error(b->m[i].s, b->m[i].req->id, MOED__STATUS__INTERNAL, "%s",
					   b->call.err);
	} else {
		uint64_t now_ms = uv_now(srv->loop), now_ns = uv_hrtime();
		b->layer->stats.batches++;
		for (size_t i = 0; i < b->n_members; i++) {
			const struct member *m = &b->m[i];
			reply_member(b, m);
			srv->requests_served++;
			srv->tokens_served += m->n;
			stats_record(&b->layer->stats, now_ms, b->call.experts + m->row * k,
				     m->n * k, m->n, b->call.compute_ns / 1000,
				     (now_ns - m->start_ns) / 1000);
		}
	}
	engine_call_end(&b->call);
	batch_free(b);
	batch_flush(srv, 0);
	server_check_drained(srv);
}

/* Prepare buffers and bindings and hand the batch to the pool. */
static void batch_submit(struct batch *b)
{
	struct server *srv = b->srv;
	size_t T = b->tokens, k = b->layer->rspec.top_k, H = b->layer->rspec.hidden_size;
	int r;

	b->out = malloc(T * k * (sizeof(int32_t) + sizeof(float)) +
			(b->infer ? T * H * sizeof(float) : 0));
	if (b->n_members > 1)
		b->x = malloc(T * H * sizeof(float));
	if (!b->out || (b->n_members > 1 && !b->x)) {
		fail_all(b, MOED__STATUS__RESOURCE_EXHAUSTED, "out of memory");
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
	engine_call_begin(&b->call, b->layer);
	r = pool_submit(srv->pool, &b->pj);
	if (r < 0) {
		engine_call_end(&b->call);
		fail_all(b, r == -EBUSY ? MOED__STATUS__RESOURCE_EXHAUSTED : MOED__STATUS__UNAVAILABLE,
			 r == -EBUSY ? "busy: the worker queue is full (queue_depth)"
				     : "moed is shutting down");
	}
}

/* May another batch start now?  With max_running_batches = 1 (default) a
 * batch runs alone and the other workers join it through parallel_for, so
 * requests that arrive meanwhile make one bigger batch instead of a second
 * one competing for the same memory bandwidth. */
static int pool_idle(struct server *srv)
{
	unsigned limit = srv->cfg->max_running_batches ? srv->cfg->max_running_batches
						       : pool_threads(srv->pool);

	return pool_queued(srv->pool) < limit;
}

static struct batch **pending_slot(struct server *srv, struct engine_layer *l)
{
	if (!srv->pending) {
		srv->pending = calloc(srv->engine->n_layers, sizeof(*srv->pending));
		if (!srv->pending)
			return NULL;
	}
	return &srv->pending[l - srv->engine->layers];
}

static void on_window(uv_timer_t *t)
{
	batch_flush(t->data, 1);
}

void batch_flush(struct server *srv, int force)
{
	for (uint32_t i = 0; srv->pending && i < srv->engine->n_layers; i++) {
		struct batch *b = srv->pending[i];
		if (!b || (!force && !pool_idle(srv)))
			continue;
		srv->pending[i] = NULL;
		batch_submit(b);
	}
}

void batch_request(struct session *s, Moed__Request *req, struct engine_layer *l)
{
	struct server *srv = s->srv;
	int infer = req->body_case == MOED__REQUEST__BODY_INFER;
	uint32_t window = srv->cfg->coalesce_window_us;
	struct batch **slot;
	struct batch *b;

	if (srv->queued_tokens + hidden_of(req)->shape[0] > srv->cfg->max_queued_tokens) {
		session_send_error(s, req->id, MOED__STATUS__RESOURCE_EXHAUSTED,
				   "busy: %llu tokens already queued (max_queued_tokens %u)",
				   (unsigned long long)srv->queued_tokens, srv->cfg->max_queued_tokens);
		moed__request__free_unpacked(req, NULL);
		return;
	}
	slot = infer ? pending_slot(srv, l) : NULL;
	if (slot && *slot) {
		b = *slot;              /* join the layer's pending batch */
	} else if (!infer || (!window && pool_idle(srv)) || !slot) {
		b = batch_new(srv, l, infer);
		if (!b || batch_add(b, s, req) < 0) {
			if (b)
				batch_free(b);
			session_send_error(s, req->id, MOED__STATUS__RESOURCE_EXHAUSTED, "out of memory");
			moed__request__free_unpacked(req, NULL);
			return;
		}
		batch_submit(b);
		return;
	} else {
		b = *slot = batch_new(srv, l, infer);
		if (b && window) {
			if (!srv->window_timer_init) {
				uv_timer_init(srv->loop, &srv->window_timer);
				srv->window_timer.data = srv;
				srv->window_timer_init = 1;
			}
			if (!uv_is_active((uv_handle_t *)&srv->window_timer))
				uv_timer_start(&srv->window_timer, on_window, (window + 999) / 1000, 0);
		}
	}
	if (!b || batch_add(b, s, req) < 0) {
		session_send_error(s, req->id, MOED__STATUS__RESOURCE_EXHAUSTED, "out of memory");
		moed__request__free_unpacked(req, NULL);
		return;
	}
	if (b->tokens >= srv->cfg->max_batch_tokens) {
		*slot = NULL;
		batch_submit(b);
	}
}

void batch_release(struct server *srv)
{
	batch_flush(srv, 1);
	free(srv->pending);
	srv->pending = NULL;
	if (srv->window_timer_init)
		uv_close((uv_handle_t *)&srv->window_timer, NULL);
	srv->window_timer_init = 0;
}
