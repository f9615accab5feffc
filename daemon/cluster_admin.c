/*
 * The cluster requests (proto/requests.def CLUSTER_SHOW, CLUSTER_REBALANCE).
 * On a single-process moed both answer enabled = false.  Under mpirun:
 *
 * show asks every rank for its counters (QUERY -> COUNTS) and answers once
 * all have (or fails with UNAVAILABLE after timeout_ms): per rank its host,
 * pid, experts per layer with the pairs computed on it since start, bytes,
 * the batches sent to it, and the token-expert pairs it got in the stats
 * window (the window's per-expert load split over the placement's copies);
 * per layer the balancedness mean/max rank load over the window.
 *
 * rebalance computes a balanced placement with [cluster] replicas from the
 * window's load, maps the front's new experts (on libuv's thread pool) and
 * has every rank PREPARE its share; once all are ready the front switches
 * new batches to the new epoch in one step (batches in flight finish on
 * theirs) and answers like show, with `previous` the balancedness the old
 * placement had on the same window.  One rebalance at a time.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/arena.h"
#include "daemon/cluster_impl.h"
#include "daemon/cluster_wire.h"
#include "daemon/log.h"
#include "daemon/model_load.h"
#include "daemon/service.h"

enum { OP_SHOW, OP_REBALANCE };

/* A request waiting for the ranks. */
struct admin_op {
	struct admin_op *next;
	int op;
	uint64_t id;
	struct service *svc;
	struct reply_to to;
	int n_wait;
	void **counts;                  /* [size] COUNTS messages (show), owned */
	size_t *counts_len;
	uv_timer_t timer;
	/* rebalance */
	struct cluster_epoch *next_ep;
	double *previous;               /* [n_layers] */
	int failed;
	char err[256];
	uv_work_t work;
	int front_rc;
	int front_pending;
};

struct cluster_admin {
	struct admin_op *ops;
	uint64_t next_id;
	int rebalancing;
};

static void answer_single(const struct reply_to *to)
{
	Moed__Response resp = MOED__RESPONSE__INIT;
	Moed__ClusterResponse cl = MOED__CLUSTER_RESPONSE__INIT;

	cl.enabled = 0;
	resp.body_case = MOED__RESPONSE__BODY_CLUSTER;
	resp.cluster = &cl;
	reply_ok(to, &resp);
}

static struct cluster_admin *admin_of(struct cluster *cl)
{
	if (!cl->admin)
		cl->admin = calloc(1, sizeof(*cl->admin));
	return cl->admin;
}

/* Window load of engine layer i into load [E]. */
static void window_load(struct service *svc, uint32_t i, uint64_t *load)
{
	stats_window(&svc->engine->layers[i].stats, uv_now(svc->loop), load);
}

/* The COUNTS of rank r for layer li: its ids and computed counters. */
static int counts_layer(const void *msg, size_t len, uint32_t li, const uint32_t **ret_ids,
			const uint64_t **ret_cnt, uint32_t *ret_n)
{
	const struct wire_counts *h = msg;
	const char *at = (const char *)(h + 1), *end = (const char *)msg + len;

	if (len < sizeof(*h) || li >= h->n_layers)
		return -EPROTO;
	for (uint32_t i = 0;; i++) {
		const struct wire_layer_ids *l = (const void *)at;
		size_t ids_bytes;

		if ((size_t)(end - at) < sizeof(*l))
			return -EPROTO;
		ids_bytes = ((size_t)l->n_ids * 4 + 7) / 8 * 8;
		if ((size_t)(end - at) < sizeof(*l) + ids_bytes + (size_t)l->n_ids * 8)
			return -EPROTO;
		if (i == li) {
			*ret_ids = (const uint32_t *)(l + 1);
			*ret_cnt = (const uint64_t *)((const char *)(l + 1) + ids_bytes);
			*ret_n = l->n_ids;
			return 0;
		}
		at += sizeof(*l) + ids_bytes + (size_t)l->n_ids * 8;
	}
}

static int fill_rank(struct cluster *cl, struct admin_op *op, const struct cluster_epoch *ep,
		     int r, const double *window, Moed__ClusterRank *cr, struct arena *a)
{
	struct engine *e = cl->engine;
	uint32_t E = e->model->n_experts;

	cr->rank = (uint32_t)r;
	cr->front = r == 0;
	cr->has_front = 1;
	cr->host = arena_strdup(a, r ? cl->peers[r].host : cl->host);
	cr->pid = r ? cl->peers[r].pid : (uint32_t)getpid();
	cr->has_pid = 1;
	cr->bytes = r ? cl->peers[r].bytes : e->model->weight_bytes;
	cr->has_bytes = 1;
	cr->dispatches = r ? cl->peers[r].dispatches : 0;
	cr->has_dispatches = 1;
	cr->bytes_out = r ? cl->peers[r].bytes_out : 0;
	cr->bytes_in = r ? cl->peers[r].bytes_in : 0;
	cr->compute_us = r ? cl->peers[r].compute_ns / 1000 : 0;
	cr->has_bytes_out = cr->has_bytes_in = cr->has_compute_us = r > 0;
	cr->window_tokens = (uint64_t)window[r];
	cr->has_window_tokens = 1;
	cr->n_experts = e->n_layers;
	cr->experts = arena_alloc(a, e->n_layers ? e->n_layers : 1, sizeof(*cr->experts));
	if (!cr->host || !cr->experts)
		return -ENOMEM;
	for (uint32_t i = 0; i < e->n_layers; i++) {
		Moed__ClusterExperts *x = arena_alloc(a, 1, sizeof(*x));
		const uint32_t *ids = NULL;
		const uint64_t *cnt = NULL;
		uint32_t n = 0;

		if (!x)
			return -ENOMEM;
		moed__cluster_experts__init(x);
		x->layer = e->layers[i].w->index;
		x->ids = arena_alloc(a, E, sizeof(*x->ids));
		x->computed = arena_alloc(a, E, sizeof(*x->computed));
		if (!x->ids || !x->computed)
			return -ENOMEM;
		if (r == 0) {
			for (uint32_t id = 0; id < E; id++)
				if (ep->mask[i][id]) {
					x->computed[x->n_ids] = cl->front_computed[i][id];
					x->ids[x->n_ids++] = id;
				}
			x->n_computed = x->n_ids;
		} else if (op && op->counts && op->counts[r] &&
			   counts_layer(op->counts[r], op->counts_len[r], i, &ids, &cnt, &n) == 0) {
			memcpy(x->ids, ids, n * sizeof(*ids));
			memcpy(x->computed, cnt, n * sizeof(*cnt));
			x->n_ids = x->n_computed = n;
		} else {
			for (uint32_t s = 0; s < ep->p[i].n_slots; s++)
				if (ep->p[i].slot_rank[s] == (uint32_t)r)
					x->ids[x->n_ids++] = ep->p[i].slot_expert[s];
		}
		cr->experts[i] = x;
	}
	return 0;
}

/* The placement serving now, with the ranks' counters in op (may be NULL). */
static void answer(struct cluster *cl, struct admin_op *op, struct service *svc,
		   const struct reply_to *to)
{
	Moed__Response resp = MOED__RESPONSE__INIT;
	Moed__ClusterResponse cr = MOED__CLUSTER_RESPONSE__INIT;
	struct engine *e = cl->engine;
	uint32_t E = e->model->n_experts;
	struct cluster_epoch *ep;
	struct arena a = { 0 };
	double *window = calloc((size_t)cl->size, sizeof(double));
	double *rank_load = calloc((size_t)cl->size, sizeof(double));
	uint64_t *load = calloc(E, sizeof(uint64_t));
	int r = window && rank_load && load ? 0 : -ENOMEM;

	pthread_mutex_lock(&cl->lock);
	ep = cl->current;
	ep->refs++;
	pthread_mutex_unlock(&cl->lock);
	cr.enabled = 1;
	cr.placement = (char *)placement_kind_name(op && op->op == OP_REBALANCE ? PLACEMENT_BALANCED
						  : ep->epoch ? PLACEMENT_BALANCED : cl->kind);
	cr.replicas = cl->replicas;
	cr.has_replicas = 1;
	cr.epoch = ep->epoch;
	cr.has_epoch = 1;
	cr.front_computes = cl->front_computes;
	cr.has_front_computes = 1;
	cr.timeout_ms = cl->timeout_ns / 1000000;
	cr.has_timeout_ms = 1;
	cr.calls = cl->cost.calls;
	cr.split_us = cl->cost.split_ns / 1000;
	cr.local_us = cl->cost.local_ns / 1000;
	cr.wait_us = cl->cost.wait_ns / 1000;
	cr.combine_us = cl->cost.combine_ns / 1000;
	cr.has_calls = cr.has_split_us = cr.has_local_us = cr.has_wait_us = cr.has_combine_us = 1;
	cr.n_balancedness = e->n_layers;
	cr.balancedness = arena_alloc(&a, e->n_layers ? e->n_layers : 1, sizeof(*cr.balancedness));
	if (!cr.balancedness)
		r = -ENOMEM;
	for (uint32_t i = 0; r == 0 && i < e->n_layers; i++) {
		Moed__ClusterBalance *b = arena_alloc(&a, 1, sizeof(*b));

		if (!b) {
			r = -ENOMEM;
			break;
		}
		moed__cluster_balance__init(b);
		window_load(svc, i, load);
		b->layer = e->layers[i].w->index;
		b->balancedness = placement_balancedness(&ep->p[i], cl->computes, load, rank_load);
		for (int x = 0; x < cl->size; x++)
			window[x] += rank_load[x];
		cr.balancedness[i] = b;
	}
	if (r == 0 && op && op->previous) {
		cr.n_previous = e->n_layers;
		cr.previous = arena_alloc(&a, e->n_layers ? e->n_layers : 1, sizeof(*cr.previous));
		for (uint32_t i = 0; cr.previous && i < e->n_layers; i++) {
			Moed__ClusterBalance *b = arena_alloc(&a, 1, sizeof(*b));

			if (!b)
				break;
			moed__cluster_balance__init(b);
			b->layer = e->layers[i].w->index;
			b->balancedness = op->previous[i];
			cr.previous[i] = b;
		}
		if (!cr.previous)
			r = -ENOMEM;
	}
	cr.n_ranks = (size_t)cl->size;
	cr.ranks = arena_alloc(&a, (size_t)cl->size, sizeof(*cr.ranks));
	if (!cr.ranks)
		r = -ENOMEM;
	pthread_mutex_lock(&cl->lock);
	for (int x = 0; r == 0 && x < cl->size; x++) {
		cr.ranks[x] = arena_alloc(&a, 1, sizeof(*cr.ranks[x]));
		if (!cr.ranks[x]) {
			r = -ENOMEM;
			break;
		}
		moed__cluster_rank__init(cr.ranks[x]);
		r = fill_rank(cl, op, ep, x, window, cr.ranks[x], &a);
	}
	cluster_epoch_unref(cl, ep);
	pthread_mutex_unlock(&cl->lock);
	if (r < 0) {
		reply_error(to, MOED__STATUS__INTERNAL, "out of memory");
	} else {
		resp.body_case = MOED__RESPONSE__BODY_CLUSTER;
		resp.cluster = &cr;
		reply_ok(to, &resp);
	}
	arena_release(&a);
	free(window);
	free(rank_load);
	free(load);
}

void cluster_counters(struct cluster *cl, struct cluster_counters *ret,
		      struct cluster_rank_counters *ret_ranks, size_t max)
{
	pthread_mutex_lock(&cl->lock);
	*ret = (struct cluster_counters){ .ranks = cl->size, .epoch = cl->current->epoch,
					  .calls = cl->cost.calls,
					  .split_us = cl->cost.split_ns / 1000,
					  .local_us = cl->cost.local_ns / 1000,
					  .wait_us = cl->cost.wait_ns / 1000,
					  .combine_us = cl->cost.combine_ns / 1000 };
	for (int r = 0; r < cl->size && (size_t)r < max; r++)
		ret_ranks[r] = (struct cluster_rank_counters){
			.dispatches = cl->peers[r].dispatches, .bytes_out = cl->peers[r].bytes_out,
			.bytes_in = cl->peers[r].bytes_in, .compute_us = cl->peers[r].compute_ns / 1000 };
	pthread_mutex_unlock(&cl->lock);
}

/* ---- requests in progress ---- */

static void op_closed(uv_handle_t *h)
{
	struct admin_op *op = h->data;

	for (int r = 0; op->counts && r < op->svc->cluster->size; r++)
		free(op->counts[r]);
	free(op->counts);
	free(op->counts_len);
	free(op->previous);
	free(op);
}

static void op_end(struct cluster *cl, struct admin_op *op)
{
	struct cluster_admin *ad = cl->admin;

	for (struct admin_op **p = &ad->ops; *p; p = &(*p)->next)
		if (*p == op) {
			*p = op->next;
			break;
		}
	if (op->op == OP_REBALANCE)
		ad->rebalancing = 0;
	reply_release(&op->to);
	uv_timer_stop(&op->timer);
	uv_close((uv_handle_t *)&op->timer, op_closed);
}

static void retire_on_ranks(struct cluster *cl, uint64_t epoch)
{
	struct wire_epoch m = { .epoch = epoch };

	for (int r = 1; r < cl->size; r++)
		cluster_send_copy(cl, r, TAG_RETIRE, &m, sizeof(m));
}

static void rebalance_fail(struct cluster *cl, struct admin_op *op)
{
	log_warn("cluster: rebalance to epoch %llu failed: %s",
		 (unsigned long long)op->next_ep->epoch, op->err);
	reply_error(&op->to, MOED__STATUS__UNAVAILABLE, "%s", op->err);
	retire_on_ranks(cl, op->next_ep->epoch);
	cluster_epoch_free(op->next_ep);
	op->next_ep = NULL;
	op_end(cl, op);
}

/* Every rank and the front are ready: switch. */
static void rebalance_commit(struct cluster *cl, struct admin_op *op)
{
	struct cluster_epoch *old;

	pthread_mutex_lock(&cl->lock);
	old = cl->current;
	op->next_ep->refs = 1;
	op->next_ep->next = cl->epochs;
	cl->epochs = cl->current = op->next_ep;
	old->retired = 1;
	cluster_epoch_unref(cl, old);   /* retired on the ranks after its last batch */
	pthread_mutex_unlock(&cl->lock);
	op->next_ep = NULL;
	cl->rebalanced = 1;
	log_notice("cluster: rebalanced to epoch %llu (placement balanced, %u replicas)",
		   (unsigned long long)cl->current->epoch, cl->replicas);
	answer(cl, op, op->svc, &op->to);
	op_end(cl, op);
}

static void rebalance_step(struct cluster *cl, struct admin_op *op)
{
	if (op->n_wait > 0 || op->front_pending)
		return;
	if (op->failed)
		rebalance_fail(cl, op);
	else
		rebalance_commit(cl, op);
}

static void on_op_timeout(uv_timer_t *t)
{
	struct admin_op *op = t->data;
	struct cluster *cl = op->svc->cluster;

	snprintf(op->err, sizeof(op->err), "cluster: %d rank(s) did not answer within %llu ms",
		 op->n_wait, (unsigned long long)(cl->timeout_ns / 1000000));
	if (op->op == OP_SHOW) {
		reply_error(&op->to, MOED__STATUS__UNAVAILABLE, "%s", op->err);
		op_end(cl, op);
		return;
	}
	op->failed = 1;
	op->n_wait = 0;
	if (!op->front_pending)
		rebalance_fail(cl, op);
}

static struct admin_op *op_new(struct service *svc, const struct reply_to *to, int kind)
{
	struct cluster *cl = svc->cluster;
	struct cluster_admin *ad = admin_of(cl);
	struct admin_op *op = ad ? calloc(1, sizeof(*op)) : NULL;

	if (!op)
		return NULL;
	op->op = kind;
	op->svc = svc;
	op->to = *to;
	op->id = ++ad->next_id;
	op->counts = calloc((size_t)cl->size, sizeof(*op->counts));
	op->counts_len = calloc((size_t)cl->size, sizeof(*op->counts_len));
	if (!op->counts || !op->counts_len) {
		free(op->counts);
		free(op->counts_len);
		free(op);
		return NULL;
	}
	uv_timer_init(svc->loop, &op->timer);
	op->timer.data = op;
	uv_timer_start(&op->timer, on_op_timeout, cl->timeout_ns / 1000000, 0);
	reply_hold(to);
	op->next = ad->ops;
	ad->ops = op;
	return op;
}

void cluster_admin_event(struct cluster *cl, struct cluster_event *ev)
{
	struct cluster_admin *ad = cl->admin;
	struct admin_op *op = NULL;

	if (ad && ev->tag == TAG_COUNTS && ev->len >= sizeof(struct wire_counts)) {
		const struct wire_counts *c = ev->buf;

		for (op = ad->ops; op && !(op->op == OP_SHOW && op->id == c->id); op = op->next)
			;
		if (op && !op->counts[ev->source]) {
			op->counts[ev->source] = ev->buf;
			op->counts_len[ev->source] = ev->len;
			cl->peers[ev->source].bytes = c->bytes;
			ev->buf = NULL;
			if (--op->n_wait == 0) {
				answer(cl, op, op->svc, &op->to);
				op_end(cl, op);
			}
		}
	} else if (ad && ev->tag == TAG_PREPARED && ev->len >= sizeof(struct wire_prepared)) {
		const struct wire_prepared *p = ev->buf;

		for (op = ad->ops; op && !(op->op == OP_REBALANCE && op->next_ep &&
					   op->next_ep->epoch == p->epoch); op = op->next)
			;
		if (op) {
			cl->peers[ev->source].bytes = p->bytes;
			if (p->rc < 0 && !op->failed) {
				op->failed = 1;
				snprintf(op->err, sizeof(op->err), "cluster: rank %d: %.*s", ev->source,
					 (int)(ev->len - sizeof(*p)), (const char *)(p + 1));
			}
			op->n_wait--;
			rebalance_step(cl, op);
		}
	}
	free(ev->buf);
	free(ev);
}

void cluster_admin_retire(struct cluster *cl, uint64_t epoch)
{
	struct model_want want = { .expert = cluster_want_live, .ctx = cl };

	retire_on_ranks(cl, epoch);
	model_drop_experts(cl->engine->model, &want);
}

/* ---- rebalance ---- */

static void front_load_work(uv_work_t *w)
{
	struct admin_op *op = w->data;
	struct cluster *cl = op->svc->cluster;
	struct model_want want = { .expert = cluster_want_live, .ctx = cl };

	op->front_rc = model_load_experts(cl->engine->model, &want, op->err, sizeof(op->err));
}

static void front_load_done(uv_work_t *w, int status)
{
	struct admin_op *op = w->data;
	struct cluster *cl = op->svc->cluster;
	struct engine *e = cl->engine;
	int r = status < 0 ? status : op->front_rc;

	for (uint32_t i = 0; r == 0 && i < e->n_layers; i++) {
		struct plugin_gen *g = e->layers[i].expert->gen;

		r = engine_bind_expert(g, &e->layers[i], cl->expert_params, cl->n_expert_params,
				       op->next_ep->mask[i], &op->next_ep->b[i]);
		if (r < 0)
			snprintf(op->err, sizeof(op->err), "layer %u: expert backend '%s': %s",
				 e->layers[i].w->index, g->name, strerror(-r));
	}
	if (r < 0 && !op->failed) {
		op->failed = 1;
		if (!op->err[0])
			snprintf(op->err, sizeof(op->err), "the front: %s", strerror(-r));
	}
	op->front_pending = 0;
	cl->preparing = NULL;
	rebalance_step(cl, op);
}

/* PREPARE for rank r: its experts per layer under ep. */
static int send_prepare(struct cluster *cl, const struct cluster_epoch *ep, int r)
{
	size_t len = sizeof(struct wire_epoch);
	struct wire_epoch *m;
	char *at;

	for (uint32_t i = 0; i < ep->n_layers; i++)
		len += sizeof(struct wire_layer_ids) + ep->p[i].n_slots * sizeof(uint32_t);
	m = calloc(1, len);
	if (!m)
		return -ENOMEM;
	*m = (struct wire_epoch){ .epoch = ep->epoch, .n_layers = ep->n_layers };
	at = (char *)(m + 1);
	for (uint32_t i = 0; i < ep->n_layers; i++) {
		struct wire_layer_ids *l = (void *)at;
		uint32_t *ids = (uint32_t *)(l + 1);

		l->layer = cl->engine->layers[i].w->index;
		for (uint32_t s = 0; s < ep->p[i].n_slots; s++)
			if (ep->p[i].slot_rank[s] == (uint32_t)r)
				ids[l->n_ids++] = ep->p[i].slot_expert[s];
		at = (char *)(ids + l->n_ids);
	}
	return comm_send(cl->comm, r, TAG_PREPARE, m, (size_t)(at - (char *)m));
}

/* The new epoch's placements from the window's load; previous[] = how the
 * serving one balances that load. */
static int plan(struct cluster *cl, struct service *svc, struct admin_op *op)
{
	struct engine *e = cl->engine;
	uint32_t E = e->model->n_experts;
	uint64_t *load = calloc(E, sizeof(*load));
	double *rank_load = calloc((size_t)cl->size, sizeof(double));
	int r = 0;

	op->next_ep = cluster_epoch_new(e->n_layers, cl->current->epoch + 1);
	op->previous = calloc(e->n_layers ? e->n_layers : 1, sizeof(double));
	if (!load || !rank_load || !op->next_ep || !op->previous)
		r = -ENOMEM;
	for (uint32_t i = 0; r == 0 && i < e->n_layers; i++) {
		window_load(svc, i, load);
		op->previous[i] = placement_balancedness(&cl->current->p[i], cl->computes, load,
							 rank_load);
		r = placement_compute(PLACEMENT_BALANCED, E, (uint32_t)cl->size, cl->computes, load,
				      cl->replicas, &op->next_ep->p[i]);
		if (r == 0 && !(op->next_ep->mask[i] = cluster_mask(&op->next_ep->p[i], 0)))
			r = -ENOMEM;
	}
	free(load);
	free(rank_load);
	if (r < 0) {
		cluster_epoch_free(op->next_ep);
		op->next_ep = NULL;
	}
	return r;
}

/* ---- the handlers ---- */

int handle_cluster_show(struct service *svc, struct caller *c, const struct reply_to *to,
			Moed__Request *req)
{
	struct cluster *cl = svc->cluster;
	struct admin_op *op;

	(void)c;
	(void)req;
	if (!cl) {
		answer_single(to);
		return 0;
	}
	if (cl->size == 1) {
		answer(cl, NULL, svc, to);
		return 0;
	}
	op = op_new(svc, to, OP_SHOW);
	if (!op) {
		reply_error(to, MOED__STATUS__INTERNAL, "out of memory");
		return 0;
	}
	op->n_wait = cl->size - 1;
	for (int r = 1; r < cl->size; r++) {
		struct wire_query q = { .id = op->id };

		cluster_send_copy(cl, r, TAG_QUERY, &q, sizeof(q));
	}
	return 0;
}

int handle_cluster_rebalance(struct service *svc, struct caller *c, const struct reply_to *to,
			     Moed__Request *req)
{
	struct cluster *cl = svc->cluster;
	struct cluster_admin *ad;
	struct admin_op *op;
	int r;

	(void)c;
	(void)req;
	if (!cl) {
		answer_single(to);
		return 0;
	}
	ad = admin_of(cl);
	if (!ad) {
		reply_error(to, MOED__STATUS__INTERNAL, "out of memory");
		return 0;
	}
	if (ad->rebalancing) {
		reply_error(to, MOED__STATUS__FAILED_PRECONDITION, "a rebalance is already running");
		return 0;
	}
	op = op_new(svc, to, OP_REBALANCE);
	if (!op) {
		reply_error(to, MOED__STATUS__INTERNAL, "out of memory");
		return 0;
	}
	ad->rebalancing = 1;
	r = plan(cl, svc, op);
	if (r < 0) {
		reply_error(to, r == -ENOMEM ? MOED__STATUS__INTERNAL : MOED__STATUS__FAILED_PRECONDITION,
			    "cluster: cannot place %u experts (+%u replicas) on %d ranks: %s",
			    cl->engine->model->n_experts, cl->replicas, cl->size, strerror(-r));
		op_end(cl, op);
		return 0;
	}
	log_info("cluster: rebalancing to epoch %llu", (unsigned long long)op->next_ep->epoch);
	cl->preparing = op->next_ep;
	op->n_wait = cl->size - 1;
	for (int x = 1; x < cl->size; x++)
		if (send_prepare(cl, op->next_ep, x) < 0) {
			op->failed = 1;
			snprintf(op->err, sizeof(op->err), "out of memory");
			op->n_wait--;
		}
	op->front_pending = 1;
	op->work.data = op;
	r = uv_queue_work(svc->loop, &op->work, front_load_work, front_load_done);
	if (r < 0) {
		op->front_pending = 0;
		cl->preparing = NULL;
		op->failed = 1;
		snprintf(op->err, sizeof(op->err), "cannot start loading: %s", uv_strerror(r));
		rebalance_step(cl, op);
	}
	return 0;
}
