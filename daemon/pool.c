/*
 * Worker pool.  One mutex guards two singly linked FIFO queues: `todo` (jobs
 * waiting for a thread) and `finished` (jobs whose work() returned).  Workers
 * sleep on a condition variable; each finished job triggers uv_async_send(),
 * which libuv coalesces, and the async callback drains `finished` on the loop
 * thread and calls done().  The queue bound counts waiting and running jobs, so
 * memory held by accepted work is bounded by queue_max.
 *
 * Fork-join inside a job: pool_parallel_for() publishes a task group; the
 * caller claims indices from it and so do workers that would otherwise sleep
 * (a worker prefers helping a group over starting a new job, so a request in
 * progress finishes sooner).  Indices are claimed with an atomic counter; the
 * caller waits on the group's condition variable for the last one to finish.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/log.h"
#include "daemon/pool.h"

struct task_group {
	void (*fn)(void *arg, size_t i);
	void *arg;
	size_t n;
	atomic_size_t next;             /* next index to claim */
	size_t done;                    /* guarded by the pool lock */
	unsigned active;                /* threads inside help_group(); lock-guarded */
	pthread_cond_t finished;
	struct task_group *next_group;
};

struct pool {
	pthread_mutex_t lock;
	struct task_group *groups;      /* groups with indices left to claim */
	pthread_cond_t wake;
	struct pool_job *todo_head, *todo_tail;
	struct pool_job *fin_head, *fin_tail;
	unsigned outstanding;   /* submitted and not yet done() */
	unsigned queue_max;
	unsigned n_threads;
	int stopping;
	pthread_t *threads;
	uv_async_t async;
	void (*closed)(void *arg);
	void *closed_arg;
};

static void push(struct pool_job **head, struct pool_job **tail, struct pool_job *job)
{
	job->next = NULL;
	if (*tail)
		(*tail)->next = job;
	else
		*head = job;
	*tail = job;
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
	for (struct task_group **q = &p->groups; *q; q = &(*q)->next_group)
		if (*q == g) {
			*q = g->next_group;
			break;
		}
	g->done += ran;
	g->active--;
	if (g->done == g->n && g->active == 0)
		pthread_cond_broadcast(&g->finished);
}

void pool_parallel_for(struct pool *p, size_t n, void (*fn)(void *arg, size_t i), void *arg)
{
	struct task_group g = { .fn = fn, .arg = arg, .n = n };

	if (!p || n <= 1 || p->n_threads <= 1) {
		for (size_t i = 0; i < n; i++)
			fn(arg, i);
		return;
	}
	atomic_init(&g.next, 0);
	pthread_cond_init(&g.finished, NULL);
	pthread_mutex_lock(&p->lock);
	g.next_group = p->groups;
	p->groups = &g;
	pthread_cond_broadcast(&p->wake);
	help_group(p, &g);
	while (g.done < g.n || g.active > 0)
		pthread_cond_wait(&g.finished, &p->lock);
	pthread_mutex_unlock(&p->lock);
	pthread_cond_destroy(&g.finished);
}

static void *worker_main(void *arg)
{
	struct pool *p = arg;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (!p->todo_head && !p->groups && !p->stopping)
			pthread_cond_wait(&p->wake, &p->lock);
		if (p->groups) {
			help_group(p, p->groups);
			continue;
		}
		struct pool_job *job = p->todo_head;
		if (!job)
			break;  /* stopping and drained */
		p->todo_head = job->next;
		if (!p->todo_head)
			p->todo_tail = NULL;
		pthread_mutex_unlock(&p->lock);
		job->work(job);
		pthread_mutex_lock(&p->lock);
		push(&p->fin_head, &p->fin_tail, job);
		uv_async_send(&p->async);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

static void on_async(uv_async_t *h)
{
	struct pool *p = h->data;
	struct pool_job *list;

	pthread_mutex_lock(&p->lock);
	list = p->fin_head;
	p->fin_head = p->fin_tail = NULL;
	pthread_mutex_unlock(&p->lock);
	while (list) {
		struct pool_job *next = list->next;
		pthread_mutex_lock(&p->lock);
		p->outstanding--;
		pthread_mutex_unlock(&p->lock);
		list->done(list);
		list = next;
	}
}

static void on_async_closed(uv_handle_t *h)
{
	struct pool *p = h->data;

	if (p->closed)
		p->closed(p->closed_arg);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->wake);
	free(p->threads);
	free(p);
}

int pool_new(uv_loop_t *loop, unsigned threads, unsigned queue_max, struct pool **ret_pool)
{
	struct pool *p = calloc(1, sizeof(*p));
	int r;

	if (!p)
		return -ENOMEM;
	p->queue_max = queue_max;
	p->threads = calloc(threads, sizeof(pthread_t));
	if (!p->threads) {
		free(p);
		return -ENOMEM;
	}
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->wake, NULL);
	r = uv_async_init(loop, &p->async, on_async);
	if (r < 0) {
		pthread_mutex_destroy(&p->lock);
		pthread_cond_destroy(&p->wake);
		free(p->threads);
		free(p);
		return r;
	}
	p->async.data = p;
	for (unsigned i = 0; i < threads; i++) {
		r = -pthread_create(&p->threads[i], NULL, worker_main, p);
		if (r < 0) {
			log_err("pool: cannot start worker %u: %s", i, strerror(-r));
			pthread_mutex_lock(&p->lock);
			p->stopping = 1;
			pthread_cond_broadcast(&p->wake);
			pthread_mutex_unlock(&p->lock);
			for (unsigned j = 0; j < i; j++)
				pthread_join(p->threads[j], NULL);
			uv_close((uv_handle_t *)&p->async, on_async_closed);  /* frees p */
			return r;
		}
		p->n_threads++;
	}
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
		p->outstanding++;
		push(&p->todo_head, &p->todo_tail, job);
		pthread_cond_signal(&p->wake);
	}
	pthread_mutex_unlock(&p->lock);
	return r;
}

unsigned pool_threads(const struct pool *p)
{
	return p->n_threads;
}

unsigned pool_queued(struct pool *p)
{
	pthread_mutex_lock(&p->lock);
	unsigned n = p->outstanding;
	pthread_mutex_unlock(&p->lock);
	return n;
}

void pool_shutdown(struct pool *p, void (*closed)(void *arg), void *arg)
{
	pthread_mutex_lock(&p->lock);
	p->stopping = 1;
	pthread_cond_broadcast(&p->wake);
	pthread_mutex_unlock(&p->lock);
	for (unsigned i = 0; i < p->n_threads; i++)
		pthread_join(p->threads[i], NULL);
	on_async(&p->async);    /* run the done() of everything that finished */
	p->closed = closed;
	p->closed_arg = arg;
	uv_close((uv_handle_t *)&p->async, on_async_closed);
}
