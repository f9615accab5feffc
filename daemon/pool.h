/*
 * The worker pool: a fixed set of threads that run CPU-heavy jobs off the event
 * loop.  Jobs are submitted from the loop thread; when the bounded queue is full
 * pool_submit() returns -EBUSY at once (the caller answers "busy") instead of
 * growing.  A finished job's done() callback runs on the loop thread: workers
 * push finished jobs on a list and wake the loop through one uv_async_t.
 */
#ifndef MOED_POOL_H
#define MOED_POOL_H

#include <uv.h>

struct pool_job {
	void (*work)(struct pool_job *job);     /* worker thread */
	void (*done)(struct pool_job *job);     /* loop thread, after work() */
	struct pool_job *next;                  /* pool-private */
};

struct pool;

int pool_new(uv_loop_t *loop, unsigned threads, unsigned queue_max, struct pool **ret_pool);
/* Loop thread only.  0, or -EBUSY when the queue is full, -ESHUTDOWN when stopping. */
int pool_submit(struct pool *pool, struct pool_job *job);
unsigned pool_threads(const struct pool *pool);
unsigned pool_queued(struct pool *pool);            /* waiting + running */
/* Stop accepting, let queued jobs finish, join the threads, close the async
 * handle.  done() callbacks of the remaining jobs still run (on the loop, which
 * must keep running until `closed` is called). */
void pool_shutdown(struct pool *pool, void (*closed)(void *arg), void *arg);

/* Run fn(arg, i) for i in [0, n): the calling thread works through the indices
 * and idle workers of `pool` join in; returns when all are done.  Any thread;
 * pool may be NULL (then it runs serially). */
void pool_parallel_for(struct pool *pool, size_t n, void (*fn)(void *arg, size_t i), void *arg);

#endif
