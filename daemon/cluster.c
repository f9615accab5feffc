/*
 * The cluster core (see cluster.h): joining the job, the first placement and
 * its expert filter, the communication thread's handler (hellos, results,
 * heartbeats, loss), placement epochs, and the front's dispatch and combine,
 * which runs on the worker that routed the batch: it sends each rank its
 * rows, computes the front's share (shared expert included) on the front's
 * own layer object, waits for the ranks' partial sums (at most timeout_ms)
 * and adds them in rank order.
 */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "daemon/cluster.h"
#include "daemon/cluster_impl.h"
#include "daemon/cluster_wire.h"
#include "daemon/log.h"

#define ALIGN8(n) (((n) + 7) & ~(size_t)7)

/* ---- epochs ---- */

struct cluster_epoch *cluster_epoch_new(uint32_t n_layers, uint64_t epoch)
{
	struct cluster_epoch *ep = calloc(1, sizeof(*ep));
	uint32_t n = n_layers ? n_layers : 1;

	if (!ep)
		return NULL;
	ep->epoch = epoch;
	ep->n_layers = n_layers;
	ep->p = calloc(n, sizeof(*ep->p));
	ep->mask = calloc(n, sizeof(*ep->mask));
	ep->b = calloc(n, sizeof(*ep->b));
	if (!ep->p || !ep->mask || !ep->b) {
		cluster_epoch_free(ep);
		return NULL;
	}
	return ep;
}

/* Loop thread (bindings are unreferenced there). */
void cluster_epoch_free(struct cluster_epoch *ep)
{
	if (!ep)
		return;
	for (uint32_t i = 0; i < ep->n_layers; i++) {
		if (ep->p)
			placement_free(&ep->p[i]);
		if (ep->mask)
			free(ep->mask[i]);
		if (ep->b)
			binding_unref(ep->b[i]);
	}
	free(ep->p);
	free(ep->mask);
	free(ep->b);
	free(ep);
}

uint8_t *cluster_mask(const struct placement *p, int r)
{
	uint8_t *m = calloc(p->n_experts ? p->n_experts : 1, 1);

	if (!m)
		return NULL;
	for (uint32_t s = 0; s < p->n_slots; s++)
		if (p->slot_rank[s] == (uint32_t)r)
			m[p->slot_expert[s]] = 1;
	return m;
}

/* Under lock.  The last user of an epoch that is no longer current hands
 * it to the loop, which frees it and retires it on the ranks. */
void cluster_epoch_unref(struct cluster *cl, struct cluster_epoch *ep)
{
	struct cluster_epoch **p;

	if (--ep->refs)
		return;
	for (p = &cl->epochs; *p && *p != ep; p = &(*p)->next)
		;
	if (*p)
		*p = ep->next;
	ep->next = NULL;
	cluster_post(cl, cl->rank, 0, ep, 0);   /* tag 0: an epoch to free */
}

int cluster_want_live(void *ctx, uint32_t E, uint32_t layer, uint32_t e)
{
	struct cluster *cl = ctx;
	const struct engine_layer *l = engine_layer(cl->engine, layer);
	uint32_t li;
	int want = 0;

	(void)E;
	if (!l)
		return 0;
	li = (uint32_t)(l - cl->engine->layers);
	pthread_mutex_lock(&cl->lock);
	if (cl->preparing && cl->preparing->mask[li][e])
		want = 1;
	for (struct cluster_epoch *ep = cl->epochs; ep && !want; ep = ep->next)
		want = ep->mask[li][e];
	pthread_mutex_unlock(&cl->lock);
	return want;
}

void cluster_set_preparing(struct cluster *cl, struct cluster_epoch *ep)
{
	pthread_mutex_lock(&cl->lock);
	cl->preparing = ep;
	pthread_mutex_unlock(&cl->lock);
}

/* ---- the first placement (every rank computes the same one) ---- */

static int first_placement(struct cluster *cl, uint32_t E)
{
	int r;

	if (cl->first_done)
		return cl->first_E == E ? 0 : -EINVAL;
	r = placement_compute(cl->kind, E, (uint32_t)cl->size, cl->computes, NULL, cl->replicas,
			      &cl->first);
	if (r < 0)
		return r;
	cl->first_E = E;
	cl->first_done = 1;
	return 0;
}

static int want_expert(void *ctx, uint32_t E, uint32_t layer, uint32_t e)
{
	struct cluster *cl = ctx;

	(void)layer;
	if (first_placement(cl, E) < 0)
		return 1;       /* cluster_front_prepare / the rank report the error */
	for (uint32_t i = 0; i < cl->first.n_copies[e]; i++)
		if (cl->first.slot_rank[cl->first.copies[cl->first.copy_start[e] + i]] ==
		    (uint32_t)cl->rank)
			return 1;
	return 0;
}

const struct model_want *cluster_model_want(struct cluster *cl)
{
	return &cl->want;
}

int cluster_rank(const struct cluster *cl)
{
	return cl->rank;
}

int cluster_size(const struct cluster *cl)
{
	return cl->size;
}

/* ---- messages ---- */

void cluster_post(struct cluster *cl, int source, int tag, void *buf, size_t len)
{
	struct cluster_event *ev = malloc(sizeof(*ev));

	if (!ev) {
		if (tag)
			free(buf);
		return;
	}
	*ev = (struct cluster_event){ .source = source, .tag = tag, .buf = buf, .len = len };
	*cl->events_tail = ev;
	cl->events_tail = &ev->next;
	if (cl->async_open)
		uv_async_send(&cl->async);
}

struct cluster_event *cluster_take_events(struct cluster *cl)
{
	struct cluster_event *ev;

	pthread_mutex_lock(&cl->lock);
	ev = cl->events;
	cl->events = NULL;
	cl->events_tail = &cl->events;
	pthread_mutex_unlock(&cl->lock);
	return ev;
}

int cluster_send_copy(struct cluster *cl, int dest, int tag, const void *msg, size_t len)
{
	void *b = malloc(len ? len : 1);

	if (!b)
		return -ENOMEM;
	memcpy(b, msg, len);
	if (dest > 0 && dest < cl->size) {
		pthread_mutex_lock(&cl->lock);
		cl->peers[dest].last_sent_ns = mono_ns();
		pthread_mutex_unlock(&cl->lock);
	}
	return comm_send(cl->comm, dest, tag, b, len);
}

void cluster_lose(struct cluster *cl, int rank, const char *why)
{
	if (cl->lost_rank >= 0)
		return;
	cl->lost_rank = rank;
	snprintf(cl->lost_why, sizeof(cl->lost_why), "%s", why);
	pthread_cond_broadcast(&cl->cond);
	if (cl->async_open)
		uv_async_send(&cl->async);
}

static void on_hello(struct cluster *cl, int source, const void *buf, size_t len)
{
	const struct wire_hello *h = buf;
	struct cluster_peer *p = &cl->peers[source];

	if (len < sizeof(*h) || h->magic != CLUSTER_MAGIC || h->rank != (uint32_t)source) {
		cluster_lose(cl, source, "its hello is not from this moed build");
		return;
	}
	memcpy(p->host, h->host, sizeof(p->host));
	p->host[sizeof(p->host) - 1] = '\0';
	p->pid = h->pid;
	p->bytes = h->bytes;
	p->hello = 1;
	pthread_cond_broadcast(&cl->cond);
}

static void on_result(struct cluster *cl, int source, void *buf, size_t len)
{
	const struct wire_result *res = buf;
	struct cluster_pending *pd;

	if (len < sizeof(*res)) {
		free(buf);
		return;
	}
	for (pd = cl->pending; pd && pd->id != res->id; pd = pd->next)
		;
	if (!pd || pd->res[source]) {
		free(buf);      /* its dispatch timed out already */
		return;
	}
	pd->res[source] = buf;
	pd->res_len[source] = len;
	pd->n_wait--;
	pthread_cond_broadcast(&cl->cond);
}

/* Communication thread. */
static void on_message(void *ctx, int source, int tag, void *buf, size_t len)
{
	struct cluster *cl = ctx;
	uint64_t now = mono_ns();

	pthread_mutex_lock(&cl->lock);
	if (source >= 0 && source < cl->size)
		cl->peers[source].last_seen_ns = now;
	if (source == 0)
		cl->front_seen_ns = now;
	if (tag == TAG_HEARTBEAT || source < 0 || source >= cl->size) {
		free(buf);
	} else if (cl->rank == 0 && tag == TAG_HELLO) {
		on_hello(cl, source, buf, len);
		free(buf);
		pthread_mutex_unlock(&cl->lock);
		cluster_send_copy(cl, source, TAG_HELLO, "", 1);       /* the acknowledgement */
		return;
	} else if (tag == TAG_HELLO) {
		cl->hello_acked = 1;
		free(buf);
	} else if (cl->rank == 0 && tag == TAG_RESULT) {
		on_result(cl, source, buf, len);
	} else {
		cluster_post(cl, source, tag, buf, len);
	}
	pthread_mutex_unlock(&cl->lock);
}

/* Whether process pid has ended: reaped (ESRCH), or a zombie or dead in
 * /proc/PID/stat, which it stays until its parent (mpirun's daemon) reaps it;
 * mpirun reaps and then ends the whole job at once, so waiting for the reap
 * lost the race on a loaded host (the ASan build of cluster_faults.sh). */
static int pid_ended(pid_t pid)
{
	char path[32], buf[512], *paren;
	FILE *f;
	size_t n;

	if (kill(pid, 0) != 0)
		return errno == ESRCH;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (!(f = fopen(path, "re")))
		return errno == ENOENT;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	/* "pid (comm) S ...": the state follows the last ')' (comm may hold one) */
	paren = strrchr(buf, ')');
	return paren && paren[1] == ' ' && (paren[2] == 'Z' || paren[2] == 'X');
}

/* Same-host ranks whose process has ended (before its silence reaches
 * timeout_ms). Under lock. */
static void check_local_pids(struct cluster *cl)
{
	char host[64] = "";

	gethostname(host, sizeof(host) - 1);
	for (int r = 1; r < cl->size; r++) {
		const struct cluster_peer *p = &cl->peers[r];
		char why[96];

		if (!p->hello || strcmp(p->host, host) || !pid_ended((pid_t)p->pid))
			continue;
		snprintf(why, sizeof(why), "its process %u is gone", p->pid);
		cluster_lose(cl, r, why);
	}
}

static void on_tick(void *ctx, uint64_t now)
{
	struct cluster *cl = ctx;
	static const char beat = 0;
	int send_to[2] = { -1, -1 };

	pthread_mutex_lock(&cl->lock);
	if (cl->rank == 0) {
		for (int r = 1; r < cl->size; r++) {
			struct cluster_peer *p = &cl->peers[r];
			char why[96];

			if (p->last_seen_ns && now - p->last_seen_ns > cl->timeout_ns) {
				snprintf(why, sizeof(why), "no message for %llu ms",
					 (unsigned long long)((now - p->last_seen_ns) / 1000000));
				cluster_lose(cl, r, why);
			}
			if (now - p->last_sent_ns > cl->heartbeat_ns) {
				p->last_sent_ns = now;
				pthread_mutex_unlock(&cl->lock);
				cluster_send_copy(cl, r, TAG_HEARTBEAT, &beat, 1);
				pthread_mutex_lock(&cl->lock);
			}
		}
		if (now - cl->peers[0].last_sent_ns > cl->heartbeat_ns) {
			cl->peers[0].last_sent_ns = now;
			check_local_pids(cl);
		}
	} else {
		if (cl->front_seen_ns && now - cl->front_seen_ns > cl->timeout_ns)
			cluster_lose(cl, 0, "no message from the front");
		if (now - cl->peers[0].last_sent_ns > cl->heartbeat_ns) {
			cl->peers[0].last_sent_ns = now;
			send_to[0] = 0;
			send_to[1] = cl->hello && !cl->hello_acked;
		}
	}
	pthread_mutex_unlock(&cl->lock);
	if (send_to[0] == 0)
		cluster_send_copy(cl, 0, send_to[1] ? TAG_HELLO : TAG_HEARTBEAT,
				  send_to[1] ? cl->hello : &beat, send_to[1] ? cl->hello_len : 1);
}

static void on_send_failed(void *ctx, int dest, int err)
{
	struct cluster *cl = ctx;
	char why[96];

	snprintf(why, sizeof(why), "a send to it failed (%s)", strerror(-err));
	pthread_mutex_lock(&cl->lock);
	cluster_lose(cl, dest, why);
	pthread_mutex_unlock(&cl->lock);
}

/* ---- joining ---- */

/* Communication thread, before any message. */
static int on_joined(void *ctx, int rank, int size)
{
	struct cluster *cl = ctx;

	cl->peers = calloc((size_t)size, sizeof(*cl->peers));
	cl->computes = calloc((size_t)size, 1);
	if (!cl->peers || !cl->computes) {
		free(cl->peers);
		free(cl->computes);
		return -ENOMEM;
	}
	for (int i = 0; i < size; i++)
		cl->computes[i] = i > 0 || cl->front_computes;
	cl->want.shared = rank == 0;
	return 0;
}

int cluster_join(const struct moed_config *cfg, struct cluster **ret, char *err, size_t errlen)
{
	const struct comm_handler h = { .joined = on_joined, .message = on_message,
					.tick = on_tick, .send_failed = on_send_failed };
	struct comm_handler hc = h;
	struct cluster *cl;
	int r;

	*ret = NULL;
	if (!comm_launched())
		return 0;
	cl = calloc(1, sizeof(*cl));
	if (!cl) {
		snprintf(err, errlen, "cluster: out of memory");
		return -ENOMEM;
	}
	r = placement_kind_parse(cfg->cluster_placement ? cfg->cluster_placement : "contiguous",
				 &cl->kind);
	if (r < 0) {
		snprintf(err, errlen, "cluster: placement '%s': want contiguous or balanced",
			 cfg->cluster_placement);
		free(cl);
		return r;
	}
	cl->replicas = cfg->cluster_replicas;
	cl->front_computes = (int)cfg->cluster_front_computes;
	cl->timeout_ns = (uint64_t)cfg->cluster_timeout_ms * 1000000ull;
	cl->heartbeat_ns = cl->timeout_ns / 5;
	cl->lost_rank = -1;
	cl->events_tail = &cl->events;
	cl->want = (struct model_want){ .expert = want_expert, .ctx = cl };
	atomic_init(&cl->token_seq, 0);
	pthread_mutex_init(&cl->lock, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&cl->cond, &ca);
		pthread_condattr_destroy(&ca);
	}
	gethostname(cl->host, sizeof(cl->host) - 1);
	hc.ctx = cl;
	r = comm_open(NULL, &hc, &cl->comm, &cl->rank, &cl->size, err, errlen);
	if (r < 0) {
		free(cl);
		return r;
	}
	if (cl->size == 1 && !cl->front_computes) {
		snprintf(err, errlen, "cluster: front_computes = 0 needs at least 2 ranks "
			 "(mpirun -np 2 or more)");
		comm_close(cl->comm, 0);
		free(cl->peers);
		free(cl->computes);
		free(cl);
		return -EINVAL;
	}
	log_info("cluster: rank %d of %d joined (%s)", cl->rank, cl->size, comm_library(cl->comm));
	*ret = cl;
	return 1;
}

int cluster_failed(const struct cluster *cl)
{
	return cl && cl->lost_rank >= 0;
}

/* ---- the loop's side ---- */

static void report_loss(struct cluster *cl)
{
	const struct cluster_peer *p;
	int rank;

	pthread_mutex_lock(&cl->lock);
	rank = cl->loss_reported ? -1 : cl->lost_rank;
	if (rank >= 0)
		cl->loss_reported = 1;
	pthread_mutex_unlock(&cl->lock);
	if (rank < 0)
		return;
	if (cl->rank != 0) {
		cluster_rank_lost(cl);
		return;
	}
	p = &cl->peers[rank];
	log_err("cluster: rank %d (host '%s', pid %u) lost: %s; ending the job", rank,
		p->hello ? p->host : "?", p->pid, cl->lost_why);
	if (cl->on_lost)
		cl->on_lost(cl->lost_arg);
}

static void on_async(uv_async_t *a)
{
	struct cluster *cl = a->data;
	struct cluster_event *ev = cluster_take_events(cl);

	while (ev) {
		struct cluster_event *next = ev->next;

		if (ev->tag == 0) {
			struct cluster_epoch *ep = ev->buf;     /* unused now */

			if (cl->rank == 0)
				cluster_admin_retire(cl, ep->epoch);
			cluster_epoch_free(ep);
			free(ev);
		} else if (cl->rank == 0) {
			cluster_admin_event(cl, ev);
		} else {
			cluster_rank_event(cl, ev);
		}
		ev = next;
	}
	report_loss(cl);
}

int cluster_open_async(struct cluster *cl)
{
	int r = uv_async_init(cl->loop, &cl->async, on_async);

	if (r < 0)
		return r;
	cl->async.data = cl;
	pthread_mutex_lock(&cl->lock);
	cl->async_open = 1;
	if (cl->events || cl->lost_rank >= 0)
		uv_async_send(&cl->async);
	pthread_mutex_unlock(&cl->lock);
	return 0;
}

void cluster_free(struct cluster *cl)
{
	struct cluster_event *ev = cl->events;

	while (cl->epochs) {
		struct cluster_epoch *ep = cl->epochs;

		cl->epochs = ep->next;
		cluster_epoch_free(ep);
	}
	while (ev) {
		struct cluster_event *next = ev->next;

		if (ev->tag == 0)
			cluster_epoch_free(ev->buf);
		else
			free(ev->buf);
		free(ev);
		ev = next;
	}
	for (uint32_t i = 0; i < cl->n_front_masks; i++) {
		free(cl->front_masks[i]);
		free(cl->front_computed ? cl->front_computed[i] : NULL);
	}
	free(cl->front_masks);
	free(cl->front_computed);
	if (cl->first_done)
		placement_free(&cl->first);
	free(cl->peers);
	free(cl->computes);
	free(cl->hello);
	free(cl->admin);
	pthread_mutex_destroy(&cl->lock);
	pthread_cond_destroy(&cl->cond);
	free(cl);
}

void cluster_close_loop(struct cluster *cl)
{
	if (!cl)
		return;
	pthread_mutex_lock(&cl->lock);
	if (cl->async_open) {
		cl->async_open = 0;
		uv_close((uv_handle_t *)&cl->async, NULL);
	}
	pthread_mutex_unlock(&cl->lock);
}

void cluster_finish(struct cluster *cl, int failing)
{
	static const char bye = 0;
	int failed;

	if (!cl)
		return;
	pthread_mutex_lock(&cl->lock);
	if (cl->rank == 0)
		check_local_pids(cl);
	failed = cl->lost_rank >= 0;
	pthread_mutex_unlock(&cl->lock);
	cluster_close_loop(cl);
	if (cl->loop)
		uv_run(cl->loop, UV_RUN_NOWAIT);
	if (failed) {
		if (!cl->loss_reported && cl->rank == 0)
			log_err("cluster: rank %d (pid %u) lost: %s; ending the job", cl->lost_rank,
				cl->peers[cl->lost_rank].pid, cl->lost_why);
		comm_abort(cl->comm, 1);
	}
	if (failing)
		comm_abort(cl->comm, 1);
	if (cl->rank == 0)
		for (int r = 1; r < cl->size; r++)
			cluster_send_copy(cl, r, TAG_SHUTDOWN, &bye, 1);
	comm_close(cl->comm, 2000);
	cluster_free(cl);
}
