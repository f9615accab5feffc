/*
 * The front's side of a cluster (see cluster.h): the first epoch, waiting
 * for the ranks, the loop's event handler, and dispatch + combine.
 * cluster_forward() runs on the worker that routed a batch: it assigns
 * every (token, expert) pair to the rank holding the expert's chosen copy,
 * sends each rank with pairs its rows (the ranks without any are not sent
 * anything), computes the front's own pairs and the shared expert
 * meanwhile, waits for the partial sums and adds them in rank order.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "daemon/cluster_impl.h"
#include "daemon/cluster_wire.h"
#include "daemon/log.h"

/* One batch's assignment of pairs to ranks. */
struct split {
	int32_t *rank_of;               /* [T][k] */
	int32_t *local;                 /* [T][k]: the front's experts, -1 elsewhere */
	size_t *rows, *kr;              /* [size]: tokens with a pair on r, most pairs per token */
};

static void split_free(struct split *s)
{
	free(s->rank_of);
	free(s->local);
	free(s->rows);
	free(s->kr);
}

static int split_batch(struct cluster *cl, const struct placement *p, const struct engine_call *c,
		       size_t k, uint64_t seq, struct split *s)
{
	size_t T = c->n_tokens, S = (size_t)cl->size;
	size_t *cnt = calloc(S, sizeof(*cnt));

	s->rank_of = malloc(T * k * sizeof(*s->rank_of));
	s->local = malloc(T * k * sizeof(*s->local));
	s->rows = calloc(S, sizeof(*s->rows));
	s->kr = calloc(S, sizeof(*s->kr));
	if (!cnt || !s->rank_of || !s->local || !s->rows || !s->kr) {
		free(cnt);
		split_free(s);
		return -ENOMEM;
	}
	for (size_t t = 0; t < T; t++) {
		for (size_t j = 0; j < k; j++) {
			uint32_t e = (uint32_t)c->experts[t * k + j];
			int32_t r = (int32_t)p->slot_rank[placement_pick(p, e, seq + t)];

			s->rank_of[t * k + j] = r;
			s->local[t * k + j] = r == 0 ? (int32_t)e : -1;
			cnt[r]++;
		}
		for (size_t r = 0; r < S; r++) {
			if (!cnt[r])
				continue;
			s->rows[r]++;
			if (cnt[r] > s->kr[r])
				s->kr[r] = cnt[r];
			cnt[r] = 0;
		}
	}
	free(cnt);
	return 0;
}

static int token_on(const struct split *s, size_t t, size_t k, int r)
{
	for (size_t j = 0; j < k; j++)
		if (s->rank_of[t * k + j] == r)
			return 1;
	return 0;
}

/* The dispatch message for rank r. */
static void *build_dispatch(const struct engine_call *c, const struct split *s, size_t k,
			    size_t H, int r, uint64_t id, uint64_t epoch, size_t *ret_len)
{
	size_t n = s->rows[r], kr = s->kr[r], len;
	struct wire_dispatch *d;
	float *x, *w;
	int32_t *ex;
	size_t i = 0;

	len = sizeof(*d) + n * H * sizeof(float) + n * kr * (sizeof(int32_t) + sizeof(float));
	d = malloc(len);
	if (!d)
		return NULL;
	*d = (struct wire_dispatch){ .id = id, .epoch = epoch, .layer = c->layer->w->index,
				     .n_rows = (uint32_t)n, .k = (uint32_t)kr,
				     .hidden = (uint32_t)H };
	x = (float *)(d + 1);
	ex = (int32_t *)(x + n * H);
	w = (float *)(ex + n * kr);
	for (size_t t = 0; t < c->n_tokens; t++) {
		size_t m = 0;

		if (!token_on(s, t, k, r))
			continue;
		memcpy(x + i * H, c->x + t * H, H * sizeof(float));
		for (size_t j = 0; j < k; j++) {
			if (s->rank_of[t * k + j] != r)
				continue;
			ex[i * kr + m] = c->experts[t * k + j];
			w[i * kr + m] = c->weights[t * k + j];
			m++;
		}
		for (; m < kr; m++) {
			ex[i * kr + m] = -1;
			w[i * kr + m] = 0.0f;
		}
		i++;
	}
	*ret_len = len;
	return d;
}

/* Add rank r's partial sums (res) into y; 0, or -errno with c->err. */
static int combine(struct cluster *cl, struct engine_call *c, const struct split *s, size_t k,
		   size_t H, int r, const void *res, size_t len)
{
	const struct wire_result *h = res;
	const float *y;
	size_t i = 0;

	if (h->rc < 0) {
		snprintf(c->err, sizeof(c->err), "cluster: rank %d: %.*s", r,
			 (int)(len - sizeof(*h) < 200 ? len - sizeof(*h) : 200),
			 (const char *)(h + 1));
		return h->rc;
	}
	if (h->n_rows != s->rows[r] || h->hidden != H ||
	    len != sizeof(*h) + (size_t)h->n_rows * H * sizeof(float)) {
		snprintf(c->err, sizeof(c->err), "cluster: rank %d answered %u rows of %u, want %zu",
			 r, h->n_rows, h->hidden, s->rows[r]);
		return -EPROTO;
	}
	y = (const float *)(h + 1);
	__atomic_fetch_add(&cl->peers[r].bytes_in, len, __ATOMIC_RELAXED);
	__atomic_fetch_add(&cl->peers[r].compute_ns, h->compute_ns, __ATOMIC_RELAXED);
	for (size_t t = 0; t < c->n_tokens; t++) {
		if (!token_on(s, t, k, r))
			continue;
		for (size_t d = 0; d < H; d++)
			c->y[t * H + d] += y[i * H + d];
		i++;
	}
	return 0;
}

static int wait_results(struct cluster *cl, struct cluster_pending *pd)
{
	struct timespec ts;
	int ok;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += (time_t)(cl->timeout_ns / 1000000000ull);
	ts.tv_nsec += (long)(cl->timeout_ns % 1000000000ull);
	if (ts.tv_nsec >= 1000000000l) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000l;
	}
	pthread_mutex_lock(&cl->lock);
	while (pd->n_wait > 0 && cl->lost_rank < 0)
		if (pthread_cond_timedwait(&cl->cond, &cl->lock, &ts) == ETIMEDOUT)
			break;
	ok = pd->n_wait == 0;
	for (struct cluster_pending **p = &cl->pending; *p; p = &(*p)->next)
		if (*p == pd) {
			*p = pd->next;
			break;
		}
	pthread_mutex_unlock(&cl->lock);
	return ok;
}

static int send_dispatches(struct cluster *cl, struct engine_call *c, const struct split *s,
			   size_t k, size_t H, uint64_t id, uint64_t epoch)
{
	for (int r = 1; r < cl->size; r++) {
		size_t len;
		void *m;

		if (!s->rows[r])
			continue;
		m = build_dispatch(c, s, k, H, r, id, epoch, &len);
		if (!m || comm_send(cl->comm, r, TAG_DISPATCH, m, len) < 0)
			return -ENOMEM;
		pthread_mutex_lock(&cl->lock);
		cl->peers[r].dispatches++;
		cl->peers[r].bytes_out += len;
		cl->peers[r].last_sent_ns = mono_ns();
		pthread_mutex_unlock(&cl->lock);
	}
	return 0;
}

static void lost_error(struct cluster *cl, struct engine_call *c, const struct cluster_pending *pd)
{
	pthread_mutex_lock(&cl->lock);
	if (cl->lost_rank >= 0) {
		snprintf(c->err, sizeof(c->err), "cluster: rank %d lost (%s)", cl->lost_rank,
			 cl->lost_why);
	} else {
		int r = 1;

		while (r < cl->size && pd->res[r])
			r++;
		snprintf(c->err, sizeof(c->err), "cluster: rank %d did not answer within %llu ms",
			 r, (unsigned long long)(cl->timeout_ns / 1000000));
	}
	pthread_mutex_unlock(&cl->lock);
}

/* engine_layer.remote: worker thread. */
static int cluster_forward(void *ctx, struct engine_call *c)
{
	struct cluster *cl = ctx;
	struct engine_layer *l = c->layer;
	uint32_t li = (uint32_t)(l - cl->engine->layers);
	size_t T = c->n_tokens, k = l->rspec.top_k, H = l->rspec.hidden_size;
	struct cluster_pending pd = { 0 };
	struct split s = { 0 };
	struct cluster_epoch *ep;
	struct binding *b;
	uint64_t seq, t[5];
	int r, waiting = 0;

	t[0] = mono_ns();
	pthread_mutex_lock(&cl->lock);
	if (cl->lost_rank >= 0) {
		snprintf(c->err, sizeof(c->err), "cluster: rank %d lost (%s)", cl->lost_rank,
			 cl->lost_why);
		pthread_mutex_unlock(&cl->lock);
		return -ENOTCONN;
	}
	ep = cl->current;
	ep->refs++;
	pd.id = ++cl->next_id;
	pthread_mutex_unlock(&cl->lock);
	seq = atomic_fetch_add(&cl->token_seq, T);
	pd.res = calloc((size_t)cl->size, sizeof(*pd.res));
	pd.res_len = calloc((size_t)cl->size, sizeof(*pd.res_len));
	r = pd.res && pd.res_len ? split_batch(cl, &ep->p[li], c, k, seq, &s) : -ENOMEM;
	if (r < 0) {
		snprintf(c->err, sizeof(c->err), "cluster: out of memory");
		goto out;
	}
	for (size_t i = 0; i < T * k; i++)
		if (s.local[i] >= 0)
			__atomic_fetch_add(&cl->front_computed[li][s.local[i]], 1, __ATOMIC_RELAXED);
	for (int i = 1; i < cl->size; i++)
		pd.n_wait += s.rows[i] > 0;
	if (pd.n_wait) {
		waiting = 1;
		pthread_mutex_lock(&cl->lock);
		pd.next = cl->pending;
		cl->pending = &pd;
		pthread_mutex_unlock(&cl->lock);
		comm_busy(cl->comm, 1);
		r = send_dispatches(cl, c, &s, k, H, pd.id, ep->epoch);
	}
	b = ep->b[li];
	t[1] = mono_ns();
	if (r == 0)
		r = b->gen->desc->expert->forward(b->obj, c->x, T, k, s.local, c->weights, c->y);
	if (r < 0 && !c->err[0])
		snprintf(c->err, sizeof(c->err), "expert backend '%s' failed: %s", b->gen->name,
			 strerror(-r));
	t[2] = mono_ns();
	if (waiting) {
		int ok = wait_results(cl, &pd);

		comm_busy(cl->comm, -1);
		if (!ok && r == 0) {
			lost_error(cl, c, &pd);
			r = cl->lost_rank >= 0 ? -ENOTCONN : -ETIMEDOUT;
		}
	}
	t[3] = mono_ns();
	for (int i = 1; i < cl->size && r == 0; i++)
		if (pd.res[i])
			r = combine(cl, c, &s, k, H, i, pd.res[i], pd.res_len[i]);
	t[4] = mono_ns();
	if (r == 0) {
		struct cluster_cost *cc = &cl->cost;

		__atomic_fetch_add(&cc->calls, 1, __ATOMIC_RELAXED);
		__atomic_fetch_add(&cc->split_ns, t[1] - t[0], __ATOMIC_RELAXED);
		__atomic_fetch_add(&cc->local_ns, t[2] - t[1], __ATOMIC_RELAXED);
		__atomic_fetch_add(&cc->wait_ns, t[3] - t[2], __ATOMIC_RELAXED);
		__atomic_fetch_add(&cc->combine_ns, t[4] - t[3], __ATOMIC_RELAXED);
	}
out:
	for (int i = 0; pd.res && i < cl->size; i++)
		free(pd.res[i]);
	free(pd.res);
	free(pd.res_len);
	split_free(&s);
	pthread_mutex_lock(&cl->lock);
	cluster_epoch_unref(cl, ep);
	pthread_mutex_unlock(&cl->lock);
	return r;
}

/* ---- start ---- */

int cluster_front_prepare(struct cluster *cl, struct engine *e, char *err, size_t errlen)
{
	int r = 0;

	pthread_mutex_lock(&cl->lock);
	if (!cl->first_done)
		r = placement_compute(cl->kind, e->model->n_experts, (uint32_t)cl->size, cl->computes,
				      NULL, cl->replicas, &cl->first);
	if (r == 0) {
		cl->first_done = 1;
		cl->first_E = e->model->n_experts;
	}
	pthread_mutex_unlock(&cl->lock);
	if (r < 0 || cl->first_E != e->model->n_experts) {
		snprintf(err, errlen, "cluster: cannot place %u experts (+%u replicas) on %d ranks",
			 e->model->n_experts, cl->replicas, cl->size);
		return r < 0 ? r : -EINVAL;
	}
	cl->front_masks = calloc(e->n_layers ? e->n_layers : 1, sizeof(*cl->front_masks));
	if (!cl->front_masks)
		return -ENOMEM;
	cl->n_front_masks = e->n_layers;
	for (uint32_t i = 0; i < e->n_layers; i++) {
		cl->front_masks[i] = cluster_mask(&cl->first, 0);
		if (!cl->front_masks[i])
			return -ENOMEM;
		e->layers[i].espec.local = cl->front_masks[i];
	}
	return 0;
}

static int first_epoch(struct cluster *cl, struct engine *e)
{
	struct cluster_epoch *ep = cluster_epoch_new(e->n_layers, 0);

	if (!ep)
		return -ENOMEM;
	for (uint32_t i = 0; i < e->n_layers; i++) {
		if (placement_copy(&cl->first, &ep->p[i]) < 0 ||
		    !(ep->mask[i] = cluster_mask(&cl->first, 0))) {
			cluster_epoch_free(ep);
			return -ENOMEM;
		}
		ep->b[i] = e->layers[i].expert;
		ep->b[i]->refs++;
	}
	ep->refs = 1;
	cl->current = cl->epochs = ep;
	return 0;
}

static int wait_hellos(struct cluster *cl, char *err, size_t errlen)
{
	uint64_t start = mono_ns(), said = start;
	int missing;

	pthread_mutex_lock(&cl->lock);
	for (;;) {
		struct timespec ts;

		missing = -1;
		for (int r = 1; r < cl->size && missing < 0; r++)
			if (!cl->peers[r].hello)
				missing = r;
		if (missing < 0 || cl->lost_rank >= 0)
			break;
		if (mono_ns() - said > 10000000000ull) {
			said = mono_ns();
			log_info("cluster: waiting for rank %d (loading its experts?) for %llu s",
				 missing, (unsigned long long)((said - start) / 1000000000ull));
		}
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += 1;
		pthread_cond_timedwait(&cl->cond, &cl->lock, &ts);
	}
	pthread_mutex_unlock(&cl->lock);
	if (cl->lost_rank >= 0) {
		snprintf(err, errlen, "cluster: rank %d lost before it was ready: %s", cl->lost_rank,
			 cl->lost_why);
		return -ENOTCONN;
	}
	return 0;
}

int cluster_front_start(struct cluster *cl, uv_loop_t *loop, struct engine *e,
			const struct moed_param *expert_params, size_t n_expert_params,
			void (*lost)(void *arg), void *arg, char *err, size_t errlen)
{
	int r;

	cl->loop = loop;
	cl->engine = e;
	cl->expert_params = expert_params;
	cl->n_expert_params = n_expert_params;
	cl->on_lost = lost;
	cl->lost_arg = arg;
	cl->front_computed = calloc(e->n_layers ? e->n_layers : 1, sizeof(*cl->front_computed));
	for (uint32_t i = 0; cl->front_computed && i < e->n_layers; i++)
		if (!(cl->front_computed[i] = calloc(e->model->n_experts, sizeof(uint64_t))))
			return -ENOMEM;
	if (!cl->front_computed)
		return -ENOMEM;
	r = cluster_open_async(cl);
	if (r < 0 || (r = wait_hellos(cl, err, errlen)) < 0 || (r = first_epoch(cl, e)) < 0) {
		if (r == -ENOMEM)
			snprintf(err, errlen, "cluster: out of memory");
		return r;
	}
	for (uint32_t i = 0; i < e->n_layers; i++) {
		e->layers[i].remote = cluster_forward;
		e->layers[i].remote_ctx = cl;
	}
	for (int i = 0; i < cl->size; i++) {
		uint32_t n = 0;

		for (uint32_t s = 0; s < cl->first.n_slots; s++)
			n += cl->first.slot_rank[s] == (uint32_t)i;
		log_info("cluster: rank %d on '%s' (pid %u): %u experts per layer, %llu bytes", i,
			 i ? cl->peers[i].host : cl->host, i ? cl->peers[i].pid : (unsigned)getpid(), n,
			 (unsigned long long)(i ? cl->peers[i].bytes : e->model->weight_bytes));
	}
	log_notice("cluster: %d ranks ready; placement %s, %u replicas, the front %s experts",
		   cl->size, placement_kind_name(cl->kind), cl->replicas,
		   cl->front_computes ? "computes" : "holds no routed");
	return 0;
}
