/*
 * Worker pool.  One mutex guards two singly linked FIFO queues: `todo` (jobs
 * waiting for a thread) and `finished` (jobs whose work() returned), and the
 * list of live workers.  Workers sleep on a condition variable; each finished
 * job triggers uv_async_send(), which libuv coalesces, and the async callback
 * drains `finished` on the loop thread and calls done().  The queue bound
 * counts waiting and running jobs, so memory held by accepted work is bounded
 * by queue_max.
 *
 * Fork-join inside a job: pool_parallel_for() publishes a task group; the
 * caller claims indices from it and so do workers that would otherwise sleep
 * (a worker prefers helping a group over starting a new job, so a request in
 * progress finishes sooner).  Indices are claimed with an atomic counter; the
 * caller waits on the group's condition variable for the last one to finish.
 *
 * Stuck jobs.  Each worker records the job it serves: the one it runs, or the
 * one that owns the group it helps (a group records its caller's job).  When
 * pool_expire() abandons a job, every live worker serving it is written off:
 * taken off the live list, detached, replaced by a fresh thread; the job's
 * groups are unlinked so no other worker joins them (their unclaimed indices
 * are left to the owner, which claims them when it gets going again), and an
 * abandoned owner runs any later parallel_for serially.  A written-off thread
 * that gets going again finishes what it was doing, hands a finished job to
 * the loop as usual, then frees its own record and exits.  Live workers only
 * ever wait for the pool lock, never for another thread's index, so no stuck
 * index holds them.  Shutdown waits for live workers only; if written-off
 * threads outlive the pool's close, the last of them frees the pool.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/log.h"
#include "daemon/pool.h"

struct task_group {
	void (*fn)(void *arg, size_t i);
	void *arg;
	size_t n;
	atomic_size_t next;             /* next index to claim */
	size_t done;                    /* guarded by the pool lock */
	unsigned active;                /* threads inside help_group(); lock-guarded */
	struct pool_job *owner;         /* the job of the calling worker, or NULL */
	pthread_cond_t finished;
	struct task_group *next_group;
};

struct worker {
	struct pool *pool;
	pthread_t thread;
	struct pool_job *job;           /* the job it serves; NULL when idle */
	int own;                        /* job is the one it runs (not a group it helps) */
	int abandoned;                  /* written off: off the live list, detached */
	int exited;                     /* live, returned from worker_main (stopping) */
	struct worker *next;            /* live list */
};

struct pool {
	pthread_mutex_t lock;
	struct task_group *groups;      /* groups with indices left to claim */
	pthread_cond_t wake;
	struct pool_job *todo_head, *todo_tail;
	struct pool_job *fin_head, *fin_tail;
	unsigned outstanding;   /* submitted, not yet done() and not abandoned */
	unsigned queue_max;
	unsigned n_wanted;      /* configured thread count */
	unsigned n_live, n_exited;
	struct worker *workers; /* live workers */
	unsigned n_stray;       /* written-off threads still running */
	atomic_uint n_abandoned;        /* abandoned jobs whose work() has not returned */
	int degraded_logged;
	int stopping;           /* pool_shutdown() called */
	int closing;            /* async handle closing: nothing may touch it */
	int dead;               /* closed with strays left: the last one frees the pool */
	uv_async_t async;
	void (*closed)(void *arg);
	void *closed_arg;
};

/* The worker record of the calling thread, if it is a pool worker. */
static _Thread_local struct worker *self;

static void push(struct pool_job **head, struct pool_job **tail, struct pool_job *job)
{
	job->next = NULL;
	if (*tail)
		(*tail)->next = job;
	else
		*head = job;
	*tail = job;
}

static void unlink_group(struct pool *p, struct task_group *g)
{
	for (struct task_group **q = &p->groups; *q; q = &(*q)->next_group)
		if (*q == g) {
			*q = g->next_group;
			return;
		}
}

/* Claim and run indices of g until none are left.  Called and returns with the
 * lock held; g stays valid meanwhile because its owner waits for active == 0. */
static void help_group(struct pool *p, struct task_group *g)
{
	size_t ran = 0, i;

	g->active++;
	pthread_mutex_unlock(&p->lock);
	while ((i = atomic_fetch_add(&g->next, 1)) < g->n) {
		g->fn(g->arg, i);
		ran++;
	}
	pthread_mutex_lock(&p->lock);
	/* every index is claimed: unlink it so no other worker picks it up */
	unlink_group(p, g);
	g->done += ran;
	g->active--;
	if (g->done == g->n && g->active == 0)
		pthread_cond_broadcast(&g->finished);
}

void pool_parallel_for(struct pool *p, size_t n, void (*fn)(void *arg, size_t i), void *arg)
{
	struct task_group g = { .fn = fn, .arg = arg, .n = n };
	struct worker *me = self && self->pool == p ? self : NULL;

	if (!p || n <= 1)
		goto serial;
	pthread_mutex_lock(&p->lock);
	if (me && me->abandoned) {
		pthread_mutex_unlock(&p->lock);
		goto serial;
	}
	atomic_init(&g.next, 0);
	pthread_cond_init(&g.finished, NULL);
	g.owner = me ? me->job : NULL;
	g.next_group = p->groups;
	p->groups = &g;
	pthread_cond_broadcast(&p->wake);
	help_group(p, &g);
	while (g.done < g.n || g.active > 0)
		pthread_cond_wait(&g.finished, &p->lock);
	pthread_mutex_unlock(&p->lock);
	pthread_cond_destroy(&g.finished);
	return;
serial:
	for (size_t i = 0; i < n; i++)
		fn(arg, i);
}

static void pool_free(struct pool *p)
{
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->wake);
	free(p);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct pool *p = w->pool;
	int last;

	self = w;
	pthread_mutex_lock(&p->lock);
	while (!w->abandoned) {
		if (p->groups) {
			struct task_group *g = p->groups;
			w->job = g->owner;
			help_group(p, g);
			w->job = NULL;
			continue;
		}
		struct pool_job *job = p->todo_head;
		if (!job) {
			if (p->stopping)
				break;
			pthread_cond_wait(&p->wake, &p->lock);
			continue;
		}
		p->todo_head = job->next;
		if (!p->todo_head)
			p->todo_tail = NULL;
		job->started_ns = uv_hrtime();
		w->job = job;
		w->own = 1;
		pthread_mutex_unlock(&p->lock);
		job->work(job);
		pthread_mutex_lock(&p->lock);
		w->job = NULL;
		w->own = 0;
		if (job->abandoned)
			atomic_fetch_sub(&p->n_abandoned, 1);
		if (!p->closing) {
			push(&p->fin_head, &p->fin_tail, job);
			uv_async_send(&p->async);
		}
	}
	if (w->abandoned) {
		last = --p->n_stray == 0 && p->dead;
		pthread_mutex_unlock(&p->lock);
		free(w);
		if (last)
			pool_free(p);
		return NULL;
	}
	/* stopping and drained: tell the loop, which joins us */
	w->exited = 1;
	p->n_exited++;
	uv_async_send(&p->async);
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

/* Start one more live worker.  Lock held. */
static int spawn(struct pool *p)
{
	struct worker *w = calloc(1, sizeof(*w));
	int r;

	if (!w)
		return -ENOMEM;
	w->pool = p;
	r = -pthread_create(&w->thread, NULL, worker_main, w);
	if (r < 0) {
		free(w);
		return r;
	}
	w->next = p->workers;
	p->workers = w;
	p->n_live++;
	return 0;
}

/* Top up the live workers to the configured count; log a shortfall once. */
static void replenish(struct pool *p)
{
	int r = 0;

	while (p->n_live < p->n_wanted && !p->closing && (r = spawn(p)) == 0)
		;
	if (r < 0 && !p->degraded_logged) {
		log_err("pool: cannot start a replacement worker: %s; serving with %u of %u threads",
			strerror(-r), p->n_live, p->n_wanted);
		p->degraded_logged = 1;
	} else if (r == 0 && p->degraded_logged) {
		log_notice("pool: replacement workers started; serving with %u threads", p->n_live);
		p->degraded_logged = 0;
	}
}

static void on_async_closed(uv_handle_t *h)
{
	struct pool *p = h->data;
	int strays;

	if (p->closed)
		p->closed(p->closed_arg);
	pthread_mutex_lock(&p->lock);
	strays = p->n_stray > 0;
	p->dead = strays;
	pthread_mutex_unlock(&p->lock);
	if (!strays)
		pool_free(p);
}

/* Run done() of a list of finished jobs.  Loop thread. */
static void run_done(struct pool *p, struct pool_job *list)
{
	while (list) {
		struct pool_job *next = list->next;
		if (!list->abandoned) {     /* an abandoned job stopped counting then */
			pthread_mutex_lock(&p->lock);
			p->outstanding--;
			pthread_mutex_unlock(&p->lock);
		}
		list->done(list);
		list = next;
	}
}

/* Stopping and every live worker exited: join them, run the last done()
 * callbacks and close.  After `closing` is set no thread touches the async
 * handle or the finished list.  Loop thread. */
static void maybe_close(struct pool *p)
{
	struct worker *w;
	struct pool_job *list;

	pthread_mutex_lock(&p->lock);
	if (!p->stopping || p->closing || p->n_exited < p->n_live) {
		pthread_mutex_unlock(&p->lock);
		return;
	}
	p->closing = 1;
	w = p->workers;
	p->workers = NULL;
	list = p->fin_head;
	p->fin_head = p->fin_tail = NULL;
	pthread_mutex_unlock(&p->lock);
	while (w) {
		struct worker *next = w->next;
		pthread_join(w->thread, NULL);
		free(w);
		w = next;
	}
	run_done(p, list);
	uv_close((uv_handle_t *)&p->async, on_async_closed);
}

static void on_async(uv_async_t *h)
{
	struct pool *p = h->data;
	struct pool_job *list;

	pthread_mutex_lock(&p->lock);
	list = p->fin_head;
	p->fin_head = p->fin_tail = NULL;
	pthread_mutex_unlock(&p->lock);
	run_done(p, list);
	maybe_close(p);
}

unsigned pool_default_threads(void)
{
	cpu_set_t set;
	long n;

	if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
		return (unsigned)CPU_COUNT(&set);
	n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (unsigned)n : 1;
}

int pool_new(uv_loop_t *loop, unsigned threads, unsigned queue_max, struct pool **ret_pool)
{
	struct pool *p = calloc(1, sizeof(*p));
	int r;

	if (!p)
		return -ENOMEM;
	p->queue_max = queue_max;
	p->n_wanted = threads;
	atomic_init(&p->n_abandoned, 0);
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->wake, NULL);
	r = uv_async_init(loop, &p->async, on_async);
	if (r < 0) {
		pool_free(p);
		return r;
	}
	p->async.data = p;
	pthread_mutex_lock(&p->lock);
	for (unsigned i = 0; i < threads; i++) {
		r = spawn(p);
		if (r < 0) {
			log_err("pool: cannot start worker %u: %s", i, strerror(-r));
			p->stopping = 1;
			pthread_cond_broadcast(&p->wake);
			pthread_mutex_unlock(&p->lock);
			for (struct worker *w = p->workers, *next; w; w = next) {
				next = w->next;
				pthread_join(w->thread, NULL);
				free(w);
			}
			p->workers = NULL;
			p->closing = 1;
			uv_close((uv_handle_t *)&p->async, on_async_closed);  /* frees p */
			return r;
		}
	}
	pthread_mutex_unlock(&p->lock);
	*ret_pool = p;
	return 0;
}

int pool_submit(struct pool *p, struct pool_job *job)
{
	int r = 0;

	pthread_mutex_lock(&p->lock);
	if (p->stopping)
		r = -ESHUTDOWN;
	else if (p->outstanding >= p->queue_max)
		r = -EBUSY;
	else {
		job->abandoned = 0;
		job->started_ns = 0;
		p->outstanding++;
		push(&p->todo_head, &p->todo_tail, job);
		pthread_cond_signal(&p->wake);
	}
	pthread_mutex_unlock(&p->lock);
	return r;
}

unsigned pool_threads(const struct pool *p)
{
	return p->n_live;
}

unsigned pool_queued(struct pool *p)
{
	pthread_mutex_lock(&p->lock);
	unsigned n = p->outstanding;
	pthread_mutex_unlock(&p->lock);
	return n;
}

int pool_degraded(const struct pool *p)
{
	return p->n_live < p->n_wanted;
}

unsigned pool_abandoned(const struct pool *p)
{
	return atomic_load(&p->n_abandoned);
}

/* Take w off the live list and let its thread go.  Lock held. */
static void write_off(struct pool *p, struct worker *w)
{
	for (struct worker **q = &p->workers; *q; q = &(*q)->next)
		if (*q == w) {
			*q = w->next;
			break;
		}
	w->abandoned = 1;
	pthread_detach(w->thread);
	p->n_live--;
	p->n_stray++;
}

unsigned pool_expire(struct pool *p, uint64_t timeout_ns)
{
	struct pool_job *expired = NULL;
	unsigned n = 0;
	uint64_t now;

	pthread_mutex_lock(&p->lock);
	now = uv_hrtime();      /* under the lock: no job started after it */
	for (struct worker *w = p->workers; w; w = w->next) {
		struct pool_job *j = w->job;
		if (!w->own || j->abandoned || now - j->started_ns < timeout_ns)
			continue;
		j->abandoned = 1;
		j->next_expired = expired;
		expired = j;
		p->outstanding--;
		atomic_fetch_add(&p->n_abandoned, 1);
		n++;
	}
	/* the owners and every worker helping them; their groups take no one else */
	for (struct worker *w = p->workers, *next; w; w = next) {
		next = w->next;
		if (w->job && w->job->abandoned)
			write_off(p, w);
	}
	for (struct task_group **q = &p->groups; *q;)
		if ((*q)->owner && (*q)->owner->abandoned)
			*q = (*q)->next_group;
		else
			q = &(*q)->next_group;
	replenish(p);
	pthread_mutex_unlock(&p->lock);
	/* the job stays valid: done() can only run later, on this thread */
	for (struct pool_job *j = expired, *next; j; j = next) {
		next = j->next_expired;
		if (j->expired)
			j->expired(j);
	}
	maybe_close(p);
	return n;
}

void pool_shutdown(struct pool *p, void (*closed)(void *arg), void *arg)
{
	pthread_mutex_lock(&p->lock);
	p->stopping = 1;
	p->closed = closed;
	p->closed_arg = arg;
	pthread_cond_broadcast(&p->wake);
	pthread_mutex_unlock(&p->lock);
	maybe_close(p);
}
