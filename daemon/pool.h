/*
 * The worker pool: a fixed set of threads that run CPU-heavy jobs off the event
 * loop.  Jobs are submitted from the loop thread; when the bounded queue is full
 * pool_submit() returns -EBUSY at once (the caller answers "busy") instead of
 * growing.  A finished job's done() callback runs on the loop thread: workers
 * push finished jobs on a list and wake the loop through one uv_async_t.
 *
 * A job whose work() does not return (a plugin stuck in route()/forward()) must
 * not take the daemon with it.  The loop calls pool_expire() from a timer: a
 * job running longer than the timeout is *abandoned*: its thread (and any
 * worker helping its pool_parallel_for) is written off, detached and replaced
 * by a new thread, the job stops counting against the queue bound, and its
 * expired() callback runs at once so the owner can answer its requests.  If
 * work() returns after all, done() still runs, once, on the loop thread (the
 * owner frees the job there; it knows it has already answered).
 */
#ifndef MOED_POOL_H
#define MOED_POOL_H

#include <stdint.h>
#include <uv.h>

struct pool_job {
	void (*work)(struct pool_job *job);     /* worker thread */
	void (*done)(struct pool_job *job);     /* loop thread, after work(); exactly once */
	/* Optional (NULL: none).  Loop thread, from pool_expire(), once, when the job
	 * is abandoned; done() follows if and when work() returns.  Must not free
	 * the job: work() may still be using it. */
	void (*expired)(struct pool_job *job);
	/* pool-private */
	struct pool_job *next;
	struct pool_job *next_expired;
	uint64_t started_ns;                    /* uv_hrtime() when work() began */
	int abandoned;
};

struct pool;

int pool_new(uv_loop_t *loop, unsigned threads, unsigned queue_max, struct pool **ret_pool);
/* The default number of workers: the CPUs this process may run on (its
 * affinity mask, which mpirun or a cgroup may narrow), else the online
 * CPUs; [daemon] workers = N overrides it. */
unsigned pool_default_threads(void);
/* Loop thread only.  0, or -EBUSY when the queue is full, -ESHUTDOWN when stopping.
 * The job must stay valid until its done() has run. */
int pool_submit(struct pool *pool, struct pool_job *job);
/* Loop thread only.  Worker threads alive and serving: the configured count,
 * fewer only while pool_degraded(). */
unsigned pool_threads(const struct pool *pool);
/* Jobs waiting + running; abandoned jobs do not count. */
unsigned pool_queued(struct pool *pool);

/* Loop thread only.  Abandon every job whose work() has run for timeout_ns or
 * longer (0: every running job): write off its thread and the workers helping
 * it, start replacements, call each job's expired().  Also retries starting
 * threads a failed replacement left missing.  Returns the number of jobs newly
 * abandoned. */
unsigned pool_expire(struct pool *pool, uint64_t timeout_ns);
/* Loop thread only.  Nonzero while fewer threads serve than configured because
 * a replacement could not be started (logged once; pool_expire() retries). */
int pool_degraded(const struct pool *pool);
/* Jobs abandoned whose work() has not returned yet. */
unsigned pool_abandoned(const struct pool *pool);

/* Stop accepting; queued jobs still run.  Does not block: once every live
 * worker has finished and exited, they are joined, the async handle is closed
 * and closed(arg) is called, from the loop, which must keep running until then.
 * done() callbacks of finishing jobs run meanwhile.  A job still running that
 * should not be waited for must be abandoned first (pool_expire(pool, 0)):
 * abandoned threads are never waited for.  The pool must not be used after
 * closed() returns (pool_abandoned() may be read inside closed()).  An
 * abandoned job that returns after that gets no done() (its memory stays with
 * it), and its thread frees what is left of the pool; a thread that never
 * returns is left behind, so the process is expected to exit soon after. */
void pool_shutdown(struct pool *pool, void (*closed)(void *arg), void *arg);

/* Run fn(arg, i) for i in [0, n): the calling thread works through the indices
 * and idle workers of `pool` join in; returns when all are done.  Any thread;
 * pool may be NULL (then it runs serially), and so does a job that was
 * abandoned, so a stuck job never draws live workers in. */
void pool_parallel_for(struct pool *pool, size_t n, void (*fn)(void *arg, size_t i), void *arg);

#endif
