/*
 * A rank other than the front (see cluster.h): it loads only its experts
 * (no router use, no shared expert), binds the configured expert backend to
 * its subset, says hello, and serves on a libuv loop of its own: dispatches
 * run on the worker pool exactly as the front's batches do, and their
 * partial sums go back through the communication thread.  It binds no
 * socket, writes no state and never talks to systemd.
 *
 * A rebalance PREPAREs a new epoch: the rank maps the experts it lacks (on
 * libuv's thread pool, while serving), creates their layer objects and
 * answers; batches carry their epoch, so both are served until the front
 * RETIREs the old one, whose experts no live epoch needs are then freed.
 */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "daemon/cluster.h"
#include "daemon/cluster_impl.h"
#include "daemon/cluster_wire.h"
#include "daemon/host.h"
#include "daemon/log.h"
#include "daemon/model_load.h"
#include "daemon/pool.h"

struct cluster_rank_state {
	const struct moed_config *cfg;
	uv_loop_t *loop;
	struct engine *engine;
	struct pool *pool;
	struct plugin_gen *gen;         /* the expert backend's generation */
	uint64_t **computed;            /* [n_layers][E] pairs computed here */
	uint32_t n_layers;
	uint64_t dispatches;
	uint8_t **first_masks;          /* the engine's specs point at them */
	uv_signal_t sig_term, sig_int, sig_usr2;
	uv_timer_t stop_timer;
	int signalled;
	int exit_code;
	int stopping;
};

struct rank_job {
	struct pool_job pj;             /* first: the pool hands it back */
	struct cluster *cl;
	struct cluster_epoch *ep;
	uint32_t li;
	int source;
	void *msg;                      /* the dispatch, owned */
	size_t len;
	void *res;                      /* the result, built by work() */
	size_t res_len;
};

struct rank_prepare {
	uv_work_t w;
	struct cluster *cl;
	struct cluster_epoch *ep;
	int rc;
	char err[256];
};

static struct cluster_epoch *find_epoch(struct cluster *cl, uint64_t epoch)
{
	for (struct cluster_epoch *ep = cl->epochs; ep; ep = ep->next)
		if (ep->epoch == epoch)
			return ep;
	return NULL;
}

static void *error_result(uint64_t id, int rc, const char *why, size_t *ret_len)
{
	size_t n = strlen(why);
	struct wire_result *r = malloc(sizeof(*r) + n + 1);

	if (!r)
		return NULL;
	*r = (struct wire_result){ .id = id, .rc = rc };
	memcpy(r + 1, why, n + 1);
	*ret_len = sizeof(*r) + n + 1;
	return r;
}

static void send_error(struct cluster *cl, int source, uint64_t id, int rc, const char *why)
{
	size_t len = 0;
	void *m = error_result(id, rc, why, &len);

	if (m)
		comm_send(cl->comm, source, TAG_RESULT, m, len);
}

static void job_work(struct pool_job *pj)
{
	struct rank_job *j = (struct rank_job *)pj;
	const struct wire_dispatch *d = j->msg;
	size_t n = d->n_rows, H = d->hidden, k = d->k;
	const float *x = (const float *)(d + 1);
	const int32_t *ex = (const int32_t *)(x + n * H);
	const float *w = (const float *)(ex + n * k);
	struct binding *b = j->ep->b[j->li];
	struct wire_result *r;
	uint64_t t0 = mono_ns();
	int rc;

	r = malloc(sizeof(*r) + n * H * sizeof(float));
	if (!r) {
		j->res = error_result(d->id, -ENOMEM, "out of memory", &j->res_len);
		return;
	}
	rc = b->gen->desc->expert->forward(b->obj, x, n, k, ex, w, (float *)(r + 1));
	if (rc < 0) {
		char why[128];

		free(r);
		snprintf(why, sizeof(why), "expert backend '%s' failed: %s", b->gen->name,
			 strerror(-rc));
		j->res = error_result(d->id, rc, why, &j->res_len);
		return;
	}
	*r = (struct wire_result){ .id = d->id, .n_rows = (uint32_t)n, .hidden = (uint32_t)H,
				   .compute_ns = mono_ns() - t0 };
	j->res = r;
	j->res_len = sizeof(*r) + n * H * sizeof(float);
}

static void job_done(struct pool_job *pj)
{
	struct rank_job *j = (struct rank_job *)pj;
	struct cluster *cl = j->cl;
	const struct wire_dispatch *d = j->msg;
	const int32_t *ex = (const int32_t *)((const float *)(d + 1) + (size_t)d->n_rows * d->hidden);
	uint64_t *count = cl->rs->computed[j->li];

	for (size_t i = 0; i < (size_t)d->n_rows * d->k; i++)
		if (ex[i] >= 0)
			count[ex[i]]++;
	if (j->res)
		comm_send(cl->comm, j->source, TAG_RESULT, j->res, j->res_len);
	pthread_mutex_lock(&cl->lock);
	cluster_epoch_unref(cl, j->ep);
	pthread_mutex_unlock(&cl->lock);
	free(j->msg);
	free(j);
}

static int check_dispatch(struct cluster *cl, const void *buf, size_t len, uint32_t *ret_li,
			  char *why, size_t n)
{
	const struct wire_dispatch *d = buf;
	struct engine *e = cl->rs->engine;
	const struct engine_layer *l;

	if (len < sizeof(*d) ||
	    len != sizeof(*d) + (size_t)d->n_rows * d->hidden * sizeof(float) +
			   (size_t)d->n_rows * d->k * (sizeof(int32_t) + sizeof(float))) {
		snprintf(why, n, "malformed dispatch of %zu bytes", len);
		return -EPROTO;
	}
	l = engine_layer(e, d->layer);
	if (!l || d->hidden != l->espec.hidden_size) {
		snprintf(why, n, "layer %u is not served here", d->layer);
		return -ENOENT;
	}
	*ret_li = (uint32_t)(l - e->layers);
	return 0;
}

static void on_dispatch(struct cluster *cl, struct cluster_event *ev)
{
	const struct wire_dispatch *d = ev->buf;
	struct rank_job *j = NULL;
	char why[128];
	uint32_t li = 0;
	int r;

	r = check_dispatch(cl, ev->buf, ev->len, &li, why, sizeof(why));
	if (r == 0 && !(j = calloc(1, sizeof(*j)))) {
		r = -ENOMEM;
		snprintf(why, sizeof(why), "out of memory");
	}
	if (r == 0) {
		pthread_mutex_lock(&cl->lock);
		j->ep = find_epoch(cl, d->epoch);
		if (j->ep)
			j->ep->refs++;
		pthread_mutex_unlock(&cl->lock);
		if (!j->ep) {
			r = -ESTALE;
			snprintf(why, sizeof(why), "placement epoch %llu is not held here",
				 (unsigned long long)d->epoch);
		}
	}
	if (r == 0) {
		*j = (struct rank_job){ .pj = { .work = job_work, .done = job_done }, .cl = cl,
					.ep = j->ep, .li = li, .source = ev->source,
					.msg = ev->buf, .len = ev->len };
		cl->rs->dispatches++;
		r = pool_submit(cl->rs->pool, &j->pj);
		if (r == 0)
			return;
		snprintf(why, sizeof(why), "the worker pool is %s",
			 r == -EBUSY ? "full" : "stopping");
		pthread_mutex_lock(&cl->lock);
		cluster_epoch_unref(cl, j->ep);
		pthread_mutex_unlock(&cl->lock);
	}
	send_error(cl, ev->source, ev->len >= sizeof(*d) ? d->id : 0, r, why);
	free(j);
	free(ev->buf);
}

/* ---- epochs ---- */

static void prepare_work(uv_work_t *w)
{
	struct rank_prepare *p = w->data;
	struct model_want want = { .expert = cluster_want_live, .ctx = p->cl };

	p->rc = model_load_experts(p->cl->rs->engine->model, &want, p->err, sizeof(p->err));
}

static void send_prepared(struct cluster *cl, uint64_t epoch, int rc, const char *why)
{
	size_t n = why ? strlen(why) + 1 : 0;
	struct wire_prepared *m = malloc(sizeof(*m) + n);

	if (!m)
		return;
	*m = (struct wire_prepared){ .epoch = epoch, .rc = rc,
				     .bytes = cl->rs->engine->model->weight_bytes };
	if (n)
		memcpy(m + 1, why, n);
	comm_send(cl->comm, 0, TAG_PREPARED, m, sizeof(*m) + n);
}

/* Free the experts no live epoch (nor one being prepared) holds. */
static void drop_unused(struct cluster *cl)
{
	struct model_want want = { .expert = cluster_want_live, .ctx = cl };

	model_drop_experts(cl->rs->engine->model, &want);
}

static void prepare_done(uv_work_t *w, int status)
{
	struct rank_prepare *p = w->data;
	struct cluster *cl = p->cl;
	struct engine *e = cl->rs->engine;
	int r = status < 0 ? status : p->rc;

	cluster_set_preparing(cl, NULL);
	for (uint32_t i = 0; r == 0 && i < e->n_layers; i++) {
		r = engine_bind_expert(cl->rs->gen, &e->layers[i], cl->rs->cfg->expert_params.p,
				       cl->rs->cfg->expert_params.n, p->ep->mask[i], &p->ep->b[i]);
		if (r < 0)
			snprintf(p->err, sizeof(p->err), "layer %u: expert backend '%s': %s",
				 e->layers[i].w->index, cl->rs->gen->name, strerror(-r));
	}
	if (r < 0) {
		log_err("cluster: rank %d: epoch %llu: %s", cl->rank,
			(unsigned long long)p->ep->epoch, p->err);
		send_prepared(cl, p->ep->epoch, r, p->err);
		cluster_epoch_free(p->ep);
		drop_unused(cl);
	} else {
		pthread_mutex_lock(&cl->lock);
		p->ep->refs = 1;        /* live until the front retires it */
		p->ep->next = cl->epochs;
		cl->epochs = p->ep;
		pthread_mutex_unlock(&cl->lock);
		log_info("cluster: rank %d: epoch %llu prepared, %llu bytes of experts", cl->rank,
			 (unsigned long long)p->ep->epoch,
			 (unsigned long long)e->model->weight_bytes);
		send_prepared(cl, p->ep->epoch, 0, NULL);
	}
	free(p);
}

/* PREPARE: struct wire_epoch + per layer (wire_layer_ids + ids). */
static int parse_epoch(struct cluster *cl, const void *buf, size_t len,
		       struct cluster_epoch **ret)
{
	const struct wire_epoch *h = buf;
	struct engine *e = cl->rs->engine;
	const char *at = (const char *)(h + 1), *end = (const char *)buf + len;
	struct cluster_epoch *ep;

	if (len < sizeof(*h) || h->n_layers != e->n_layers)
		return -EPROTO;
	ep = cluster_epoch_new(e->n_layers, h->epoch);
	if (!ep)
		return -ENOMEM;
	for (uint32_t i = 0; i < h->n_layers; i++) {
		const struct wire_layer_ids *li = (const void *)at;
		const struct engine_layer *l;

		if ((size_t)(end - at) < sizeof(*li) ||
		    (size_t)(end - at) < sizeof(*li) + (size_t)li->n_ids * sizeof(uint32_t) ||
		    !(l = engine_layer(e, li->layer)) || l != &e->layers[i] ||
		    !(ep->mask[i] = calloc(e->model->n_experts, 1)))
			goto bad;
		for (uint32_t j = 0; j < li->n_ids; j++) {
			uint32_t id = ((const uint32_t *)(li + 1))[j];

			if (id >= e->model->n_experts)
				goto bad;
			ep->mask[i][id] = 1;
		}
		at += sizeof(*li) + (size_t)li->n_ids * sizeof(uint32_t);
	}
	*ret = ep;
	return 0;
bad:
	cluster_epoch_free(ep);
	return -EPROTO;
}

static void on_prepare(struct cluster *cl, struct cluster_event *ev)
{
	struct rank_prepare *p = calloc(1, sizeof(*p));
	const struct wire_epoch *h = ev->buf;
	uint64_t epoch = ev->len >= sizeof(*h) ? h->epoch : 0;
	int r = p ? parse_epoch(cl, ev->buf, ev->len, &p->ep) : -ENOMEM;

	free(ev->buf);
	if (r == 0) {
		p->cl = cl;
		p->w.data = p;
		pthread_mutex_lock(&cl->lock);
		r = cl->preparing ? -EBUSY : 0;
		if (r == 0)
			cl->preparing = p->ep;  /* before the work reads it */
		pthread_mutex_unlock(&cl->lock);
		if (r == 0 && (r = uv_queue_work(cl->rs->loop, &p->w, prepare_work, prepare_done)) < 0)
			cluster_set_preparing(cl, NULL);
		if (r == 0)
			return;
		cluster_epoch_free(p->ep);
	}
	send_prepared(cl, epoch, r, r == -EPROTO ? "malformed placement" : strerror(-r));
	free(p);
}

static void on_retire(struct cluster *cl, struct cluster_event *ev)
{
	const struct wire_epoch *h = ev->buf;
	struct cluster_epoch *ep;

	pthread_mutex_lock(&cl->lock);
	ep = ev->len >= sizeof(*h) ? find_epoch(cl, h->epoch) : NULL;
	if (ep && !ep->retired) {
		ep->retired = 1;
		cluster_epoch_unref(cl, ep);    /* freed once its last batch is done */
	}
	pthread_mutex_unlock(&cl->lock);
	free(ev->buf);
	if (!ep && !cl->preparing)
		drop_unused(cl);        /* a failed rebalance's: what it mapped goes */
}

/* An epoch no batch uses any more: free it and the experts no live one holds. */
static void epoch_gone(struct cluster *cl, struct cluster_epoch *ep)
{
	cluster_epoch_free(ep);
	drop_unused(cl);
	log_info("cluster: rank %d: an old placement retired, %llu bytes of experts held",
		 cl->rank, (unsigned long long)cl->rs->engine->model->weight_bytes);
}

/* QUERY: the newest epoch's experts per layer and what was computed here. */
static void on_query(struct cluster *cl, struct cluster_event *ev)
{
	const struct wire_query *q = ev->buf;
	struct engine *e = cl->rs->engine;
	uint32_t E = e->model->n_experts;
	struct cluster_epoch *ep;
	struct wire_counts *m;
	size_t len = sizeof(*m);
	char *at;

	if (ev->len < sizeof(*q)) {
		free(ev->buf);
		return;
	}
	len += e->n_layers * (sizeof(struct wire_layer_ids) + ((size_t)E * 4 + 7) / 8 * 8 +
			      (size_t)E * 8);
	m = calloc(1, len);
	pthread_mutex_lock(&cl->lock);
	ep = cl->epochs;        /* newest first */
	if (m && ep) {
		*m = (struct wire_counts){ .id = q->id, .epoch = ep->epoch,
					   .bytes = e->model->weight_bytes,
					   .dispatches = cl->rs->dispatches, .n_layers = e->n_layers };
		at = (char *)(m + 1);
		for (uint32_t i = 0; i < e->n_layers; i++) {
			struct wire_layer_ids *li = (void *)at;
			uint32_t *ids = (uint32_t *)(li + 1);
			uint64_t *cnt;

			li->layer = e->layers[i].w->index;
			for (uint32_t x = 0; x < E; x++)
				if (ep->mask[i][x])
					ids[li->n_ids++] = x;
			cnt = (uint64_t *)((char *)ids + ((size_t)li->n_ids * 4 + 7) / 8 * 8);
			for (uint32_t j = 0; j < li->n_ids; j++)
				cnt[j] = cl->rs->computed[i][ids[j]];
			at = (char *)(cnt + li->n_ids);
		}
		len = (size_t)(at - (char *)m);
	}
	pthread_mutex_unlock(&cl->lock);
	free(ev->buf);
	if (m && ep)
		comm_send(cl->comm, 0, TAG_COUNTS, m, len);
	else
		free(m);
}

static void on_pool_closed(void *arg)
{
	struct cluster *cl = arg;
	struct cluster_rank_state *rs = cl->rs;

	uv_close((uv_handle_t *)&rs->sig_term, NULL);
	uv_close((uv_handle_t *)&rs->sig_int, NULL);
	uv_close((uv_handle_t *)&rs->sig_usr2, NULL);
	if (rs->signalled)
		uv_close((uv_handle_t *)&rs->stop_timer, NULL);
	cluster_close_loop(cl);
}

static void rank_stop(struct cluster *cl, int code)
{
	struct cluster_rank_state *rs = cl->rs;

	if (rs->stopping)
		return;
	rs->stopping = 1;
	rs->exit_code = code;
	if (code) {
		uv_stop(rs->loop);      /* the job is ending: its handles die with it */
		return;
	}
	/* in order: the batches queued finish, then the loop runs out */
	host_set_pool(NULL);
	pool_shutdown(rs->pool, on_pool_closed, cl);
}

void cluster_rank_event(struct cluster *cl, struct cluster_event *ev)
{
	switch (ev->tag) {
	case 0:
		epoch_gone(cl, ev->buf);
		break;
	case TAG_DISPATCH:
		on_dispatch(cl, ev);
		break;
	case TAG_PREPARE:
		on_prepare(cl, ev);
		break;
	case TAG_RETIRE:
		on_retire(cl, ev);
		break;
	case TAG_QUERY:
		on_query(cl, ev);
		break;
	case TAG_SHUTDOWN:
		log_info("cluster: rank %d: the front says stop", cl->rank);
		free(ev->buf);
		rank_stop(cl, 0);
		break;
	default:
		log_warn("cluster: rank %d: unexpected message %d from rank %d", cl->rank, ev->tag,
			 ev->source);
		free(ev->buf);
	}
	free(ev);
}

void cluster_rank_lost(struct cluster *cl)
{
	log_err("cluster: rank %d: the front (rank 0) is lost: %s; leaving", cl->rank,
		cl->lost_why);
	rank_stop(cl, 1);
}

static void on_stop_timeout(uv_timer_t *t)
{
	struct cluster *cl = t->data;

	log_notice("cluster: rank %d: no word from the front after the signal; leaving",
		   cl->rank);
	rank_stop(cl, 0);
}

/* mpirun forwards SIGTERM to every rank at once: the front finishes its
 * batches (which need us) and then says SHUTDOWN; leave on our own only if
 * it does not within timeout_ms. */
static void on_rank_signal(uv_signal_t *s, int signum)
{
	struct cluster *cl = s->data;
	struct cluster_rank_state *rs = cl->rs;

	if (rs->signalled++)
		return;
	log_info("cluster: rank %d: %s; leaving when the front says so", cl->rank,
		 strsignal(signum));
	uv_timer_init(rs->loop, &rs->stop_timer);
	rs->stop_timer.data = cl;
	uv_timer_start(&rs->stop_timer, on_stop_timeout, cl->timeout_ns / 1000000, 0);
}

static int send_hello(struct cluster *cl)
{
	struct wire_hello h = { .magic = CLUSTER_MAGIC, .rank = (uint32_t)cl->rank,
				.pid = (uint32_t)getpid(),
				.bytes = cl->rs->engine->model->weight_bytes,
				.n_layers = cl->rs->engine->n_layers,
				.n_experts = cl->rs->engine->model->n_experts };

	memcpy(h.host, cl->host, sizeof(h.host));
	snprintf(h.version, sizeof(h.version), "%s", PACKAGE_VERSION);
	pthread_mutex_lock(&cl->lock);
	cl->hello = malloc(sizeof(h));
	if (cl->hello) {
		memcpy(cl->hello, &h, sizeof(h));
		cl->hello_len = sizeof(h);
	}
	pthread_mutex_unlock(&cl->lock);
	return cl->hello ? cluster_send_copy(cl, 0, TAG_HELLO, &h, sizeof(h)) : -ENOMEM;
}

/* The model, the engine with the expert backend on this rank's subset, the
 * first epoch. */
static int rank_setup(struct cluster *cl, const struct moed_config *cfg, char *err, size_t errlen)
{
	struct cluster_rank_state *rs = cl->rs;
	struct cluster_epoch *ep;
	struct moed_model *model;
	struct engine *e;
	int r;

	r = model_load_config(cfg, cluster_model_want(cl), &model, err, errlen);
	if (r < 0)
		return r;
	r = engine_new(model, cfg->plugin_dir, &rs->engine);
	if (r < 0) {
		snprintf(err, errlen, "engine: %s", strerror(-r));
		return r;
	}
	e = rs->engine;
	cl->engine = e;
	if (!cl->first_done &&
	    placement_compute(cl->kind, model->n_experts, (uint32_t)cl->size, cl->computes, NULL,
			      cl->replicas, &cl->first) == 0) {
		cl->first_done = 1;
		cl->first_E = model->n_experts;
	}
	rs->first_masks = calloc(e->n_layers ? e->n_layers : 1, sizeof(*rs->first_masks));
	rs->computed = calloc(e->n_layers ? e->n_layers : 1, sizeof(*rs->computed));
	ep = cluster_epoch_new(e->n_layers, 0);
	if (!cl->first_done || !rs->first_masks || !rs->computed || !ep) {
		snprintf(err, errlen, "cluster: cannot place %u experts on %d ranks",
			 model->n_experts, cl->size);
		cluster_epoch_free(ep);
		return -ENOMEM;
	}
	rs->n_layers = e->n_layers;
	for (uint32_t i = 0; i < e->n_layers; i++) {
		rs->first_masks[i] = cluster_mask(&cl->first, cl->rank);
		ep->mask[i] = cluster_mask(&cl->first, cl->rank);
		rs->computed[i] = calloc(model->n_experts, sizeof(uint64_t));
		if (!rs->first_masks[i] || !ep->mask[i] || !rs->computed[i] ||
		    placement_copy(&cl->first, &ep->p[i]) < 0) {
			cluster_epoch_free(ep);
			snprintf(err, errlen, "cluster: out of memory");
			return -ENOMEM;
		}
		e->layers[i].espec.local = rs->first_masks[i];
	}
	r = engine_set_plugin(e, MOED_PLUGIN_EXPERT, cfg->expert, cfg->expert_params.p,
			      cfg->expert_params.n, -1, err, errlen);
	if (r < 0) {
		cluster_epoch_free(ep);
		return r;
	}
	rs->gen = e->layers[0].expert->gen;
	for (uint32_t i = 0; i < e->n_layers; i++) {
		ep->b[i] = e->layers[i].expert;
		ep->b[i]->refs++;
	}
	ep->refs = 1;
	cl->epochs = cl->current = ep;
	return 0;
}

int cluster_rank_serve(struct cluster *cl, const struct moed_config *cfg)
{
	struct cluster_rank_state rs = { .cfg = cfg, .loop = uv_default_loop() };
	unsigned workers = cfg->workers ? cfg->workers : pool_default_threads();
	char err[512];
	int r;

	cl->rs = &rs;
	cl->loop = rs.loop;
	r = rank_setup(cl, cfg, err, sizeof(err));
	if (r == 0 && (r = pool_new(rs.loop, workers, cfg->queue_depth, &rs.pool)) < 0)
		snprintf(err, sizeof(err), "pool: cannot start %u workers: %s", workers,
			 strerror(-r));
	if (r < 0) {
		log_err("cluster: rank %d: %s", cl->rank, err);
		comm_abort(cl->comm, 1);
	}
	host_set_pool(rs.pool);
	uv_signal_init(rs.loop, &rs.sig_term);
	uv_signal_init(rs.loop, &rs.sig_int);
	rs.sig_term.data = rs.sig_int.data = cl;
	uv_signal_start(&rs.sig_term, on_rank_signal, SIGTERM);
	uv_signal_start(&rs.sig_int, on_rank_signal, SIGINT);
	/* the front's stop signal (forwarded by mpirun to every rank): the front
	 * says SHUTDOWN when it has drained */
	uv_signal_init(rs.loop, &rs.sig_usr2);
	rs.sig_usr2.data = cl;
	uv_signal_start(&rs.sig_usr2, on_rank_signal, SIGUSR2);
	if (cluster_open_async(cl) < 0 || send_hello(cl) < 0) {
		log_err("cluster: rank %d: cannot start serving", cl->rank);
		comm_abort(cl->comm, 1);
	}
	log_info("cluster: rank %d serving %u layers, %llu bytes of experts, %u workers",
		 cl->rank, rs.engine->n_layers, (unsigned long long)rs.engine->model->weight_bytes,
		 workers);
	uv_run(rs.loop, UV_RUN_DEFAULT);
	if (rs.exit_code)
		comm_abort(cl->comm, rs.exit_code);
	comm_close(cl->comm, 2000);
	cl->comm = NULL;
	/* the pool has stopped: no batch uses the bindings any more */
	cluster_free(cl);
	engine_free(rs.engine);
	for (uint32_t i = 0; rs.first_masks && i < rs.n_layers; i++) {
		free(rs.first_masks[i]);
		free(rs.computed[i]);
	}
	free(rs.first_masks);
	free(rs.computed);
	uv_loop_close(rs.loop);
	return 0;
}
