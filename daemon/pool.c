/*
 * Worker pool.  One mutex guards two singly linked FIFO queues: `todo` (jobs
 * waiting for a thread) and `finished` (jobs whose work() returned).  Workers
 * sleep on a condition variable; each finished job triggers uv_async_send(),
 * which libuv coalesces, and the async callback drains `finished` on the loop
 * thread and calls done().  The queue bound counts waiting and running jobs, so
 * memory held by accepted work is bounded by queue_max.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/log.h"
#include "daemon/pool.h"

struct pool {
	pthread_mutex_t lock;
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

static void *worker_main(void *arg)
{
	struct pool *p = arg;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (!p->todo_head && !p->stopping)
			pthread_cond_wait(&p->wake, &p->lock);
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
