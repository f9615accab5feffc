/*
 * Worker pool tests: jobs run off the calling thread and complete on the loop;
 * a full queue answers -EBUSY at once; parallel_for runs every index exactly
 * once, from a plain thread, from inside a job, and from several callers at a
 * time, with workers joining in.
 *
 * Stuck jobs: a job blocked on a gate the test holds is abandoned by
 * pool_expire() once past the timeout (and not before), expired() runs once,
 * the thread count stays as configured and new jobs run on the replacement;
 * opening the gate later brings exactly one done().  A stuck index inside
 * pool_parallel_for blocks no other job; when every index blocks, all the
 * workers it drew in are written off and replaced, and the replacements do
 * not join its group.  Shutdown finishes with an abandoned job still stuck.
 * A replacement that cannot be started (pthread_create wrapped to fail) shows
 * as pool_degraded() until a later pool_expire() starts it.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "daemon/pool.h"

#define N 20000

struct counts {
	int wait_for_helper;            /* index 0 waits (up to 10 s) for a second thread */
	atomic_int hits[N];
	atomic_int threads_seen;
	pthread_t who[4];
	atomic_int n_who;
};

static pthread_mutex_t who_lock = PTHREAD_MUTEX_INITIALIZER;

static void count_index(void *arg, size_t i)
{
	struct counts *c = arg;
	pthread_t self = pthread_self();
	int known = 0;

	atomic_fetch_add(&c->hits[i], 1);
	pthread_mutex_lock(&who_lock);
	for (int k = 0; k < atomic_load(&c->n_who); k++)
		known |= pthread_equal(c->who[k], self);
	if (!known && atomic_load(&c->n_who) < 4)
		c->who[atomic_fetch_add(&c->n_who, 1)] = self;
	pthread_mutex_unlock(&who_lock);
	for (volatile int spin = 0; spin < 200; spin++)
		;
	for (int ms = 0; c->wait_for_helper && i == 0 && atomic_load(&c->n_who) < 2 && ms < 10000; ms++)
		usleep(1000);
}

static void check_all_once(struct counts *c)
{
	for (int i = 0; i < N; i++)
		assert_int_equal(atomic_load(&c->hits[i]), 1);
}

struct pjob {
	struct pool_job job;
	struct pool *pool;
	struct counts *c;
	int done;
};

static void pjob_work(struct pool_job *j)
{
	struct pjob *p = (struct pjob *)j;

	pool_parallel_for(p->pool, N, count_index, p->c);
}

static void pjob_done(struct pool_job *j)
{
	((struct pjob *)j)->done = 1;
}

static void test_parallel_for_inside_job(void **state)
{
	uv_loop_t loop;
	struct pool *pool;
	struct counts *c = calloc(1, sizeof(*c));
	struct pjob j = { .job = { .work = pjob_work, .done = pjob_done }, .c = c };

	c->wait_for_helper = 1;
	uv_loop_init(&loop);
	assert_int_equal(pool_new(&loop, 2, 8, &pool), 0);
	j.pool = pool;
	assert_int_equal(pool_submit(pool, &j.job), 0);
	while (!j.done)
		uv_run(&loop, UV_RUN_ONCE);
	check_all_once(c);
	/* the idle worker joined the job's worker */
	assert_int_equal(atomic_load(&c->n_who), 2);
	pool_shutdown(pool, NULL, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
	free(c);
}

struct caller {
	struct pool *pool;
	struct counts *c;
};

static void *call_parallel(void *arg)
{
	struct caller *k = arg;

	pool_parallel_for(k->pool, N, count_index, k->c);
	return NULL;
}

static void test_parallel_for_concurrent_callers(void **state)
{
	uv_loop_t loop;
	struct pool *pool;
	struct counts *c[3];
	struct caller k[3];
	pthread_t t[3];

	uv_loop_init(&loop);
	assert_int_equal(pool_new(&loop, 2, 8, &pool), 0);
	for (int i = 0; i < 3; i++) {
		c[i] = calloc(1, sizeof(*c[i]));
		k[i] = (struct caller){ pool, c[i] };
		pthread_create(&t[i], NULL, call_parallel, &k[i]);
	}
	for (int i = 0; i < 3; i++) {
		pthread_join(t[i], NULL);
		check_all_once(c[i]);
		free(c[i]);
	}
	/* no pool: serial, still exactly once */
	struct counts *s = calloc(1, sizeof(*s));
	pool_parallel_for(NULL, N, count_index, s);
	check_all_once(s);
	assert_int_equal(atomic_load(&s->n_who), 1);
	free(s);
	pool_shutdown(pool, NULL, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
}

static pthread_mutex_t gate = PTHREAD_MUTEX_INITIALIZER;
static int blocked_done;

static void blocked_work(struct pool_job *j)
{
	pthread_mutex_lock(&gate);      /* held by the test until it has seen -EBUSY */
	pthread_mutex_unlock(&gate);
}

static void blocked_complete(struct pool_job *j)
{
	blocked_done++;
}

static void test_busy_when_full(void **state)
{
	uv_loop_t loop;
	struct pool *pool;
	struct pool_job jobs[4];

	uv_loop_init(&loop);
	assert_int_equal(pool_new(&loop, 1, 3, &pool), 0);
	pthread_mutex_lock(&gate);
	for (int i = 0; i < 4; i++)
		jobs[i] = (struct pool_job){ .work = blocked_work, .done = blocked_complete };
	for (int i = 0; i < 3; i++)
		assert_int_equal(pool_submit(pool, &jobs[i]), 0);
	assert_int_equal(pool_submit(pool, &jobs[3]), -EBUSY);
	assert_int_equal(pool_queued(pool), 3);
	pthread_mutex_unlock(&gate);
	while (blocked_done < 3)
		uv_run(&loop, UV_RUN_ONCE);
	assert_int_equal(pool_queued(pool), 0);
	assert_int_equal(pool_submit(pool, &jobs[3]), 0);
	while (blocked_done < 4)
		uv_run(&loop, UV_RUN_ONCE);
	pool_shutdown(pool, NULL, NULL);
	assert_int_equal(pool_submit(pool, &jobs[0]), -ESHUTDOWN);
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
}

/* ---- stuck jobs ---- */

/* Linked with -Wl,--wrap=pthread_create: fails while fail_spawns is set. */
int __real_pthread_create(pthread_t *t, const pthread_attr_t *a, void *(*fn)(void *), void *arg);
int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *a, void *(*fn)(void *), void *arg);
static atomic_int fail_spawns;

int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *a, void *(*fn)(void *), void *arg)
{
	if (atomic_load(&fail_spawns))
		return EAGAIN;
	return __real_pthread_create(t, a, fn, arg);
}

/* Closed until the test opens it; counts the threads that reached it. */
struct gate {
	pthread_mutex_t m;
	pthread_cond_t c;
	int open;
	atomic_int waiting;
};

static void gate_init(struct gate *g)
{
	pthread_mutex_init(&g->m, NULL);
	pthread_cond_init(&g->c, NULL);
	g->open = 0;
	atomic_init(&g->waiting, 0);
}

static void gate_pass(struct gate *g)
{
	atomic_fetch_add(&g->waiting, 1);
	pthread_mutex_lock(&g->m);
	while (!g->open)
		pthread_cond_wait(&g->c, &g->m);
	pthread_mutex_unlock(&g->m);
}

static void gate_open(struct gate *g)
{
	pthread_mutex_lock(&g->m);
	g->open = 1;
	pthread_cond_broadcast(&g->c);
	pthread_mutex_unlock(&g->m);
}

static void gate_destroy(struct gate *g)
{
	pthread_mutex_destroy(&g->m);
	pthread_cond_destroy(&g->c);
}

/* Wait (up to 10 s, then fail) until *v reaches want. */
static void wait_for(atomic_int *v, int want)
{
	for (int ms = 0; atomic_load(v) < want; ms++) {
		if (ms == 10000)
			fail_msg("waited 10 s for %d, have %d", want, atomic_load(v));
		usleep(1000);
	}
}

static void run_until(uv_loop_t *loop, const int *v, int want)
{
	while (*v < want)
		uv_run(loop, UV_RUN_ONCE);
}

#define IDX 64

struct sjob {
	struct pool_job job;
	struct gate *gate;
	struct pool *pool;              /* set: work() runs parallel_for over IDX indices */
	int every_index;                /* each index passes the gate, not only index 0 */
	atomic_int hits[IDX], ran;
	atomic_int returned;
	int expired_calls, done_calls;
};

static void stuck_index(void *arg, size_t i)
{
	struct sjob *s = arg;

	atomic_fetch_add(&s->hits[i], 1);
	if (i == 0 || s->every_index)
		gate_pass(s->gate);
	atomic_fetch_add(&s->ran, 1);
}

static void stuck_work(struct pool_job *j)
{
	struct sjob *s = (struct sjob *)j;

	if (s->pool)
		pool_parallel_for(s->pool, IDX, stuck_index, s);
	else
		gate_pass(s->gate);
	atomic_store(&s->returned, 1);
}

static void stuck_expired(struct pool_job *j)
{
	((struct sjob *)j)->expired_calls++;
}

static void stuck_done(struct pool_job *j)
{
	((struct sjob *)j)->done_calls++;
}

static void sjob_init(struct sjob *s, struct gate *g)
{
	memset(s, 0, sizeof(*s));
	s->job.work = stuck_work;
	s->job.done = stuck_done;
	s->job.expired = stuck_expired;
	s->gate = g;
}

static int quick_done;

static void quick_work(struct pool_job *j)
{
}

static void quick_complete(struct pool_job *j)
{
	quick_done++;
}

/* Jobs that each wait until `want` of them run at once (so that many threads
 * are free): `met` counts those that saw it. */
static atomic_int arrived, met;
static int meet_want, meet_done;

static void meet_work(struct pool_job *j)
{
	atomic_fetch_add(&arrived, 1);
	for (int ms = 0; atomic_load(&arrived) < meet_want && ms < 10000; ms++)
		usleep(1000);
	if (atomic_load(&arrived) >= meet_want)
		atomic_fetch_add(&met, 1);
}

static void meet_complete(struct pool_job *j)
{
	meet_done++;
}

static void meet(uv_loop_t *loop, struct pool *pool, int n)
{
	struct pool_job jobs[8];

	atomic_store(&arrived, 0);
	atomic_store(&met, 0);
	meet_want = n;
	meet_done = 0;
	for (int i = 0; i < n; i++) {
		jobs[i] = (struct pool_job){ .work = meet_work, .done = meet_complete };
		assert_int_equal(pool_submit(pool, &jobs[i]), 0);
	}
	run_until(loop, &meet_done, n);
	assert_int_equal(atomic_load(&met), n);
}

static void test_expire_replaces_worker(void **state)
{
	uv_loop_t loop;
	struct pool *pool;
	struct gate g;
	struct sjob s;
	struct pool_job quick[3];

	gate_init(&g);
	sjob_init(&s, &g);
	uv_loop_init(&loop);
	assert_int_equal(pool_new(&loop, 1, 8, &pool), 0);
	assert_int_equal(pool_submit(pool, &s.job), 0);
	wait_for(&g.waiting, 1);
	/* not past an hour yet */
	assert_int_equal(pool_expire(pool, 3600ull * 1000000000), 0);
	assert_int_equal(s.expired_calls, 0);
	assert_int_equal(pool_queued(pool), 1);
	usleep(20000);
	assert_int_equal(pool_expire(pool, 1000000), 1);      /* 1 ms */
	assert_int_equal(s.expired_calls, 1);
	assert_int_equal(pool_expire(pool, 0), 0);
	assert_int_equal(s.expired_calls, 1);
	assert_int_equal(s.done_calls, 0);
	assert_int_equal(pool_threads(pool), 1);
	assert_false(pool_degraded(pool));
	assert_int_equal(pool_abandoned(pool), 1);
	assert_int_equal(pool_queued(pool), 0);
	/* the only original thread is stuck: these run on its replacement */
	quick_done = 0;
	for (int i = 0; i < 3; i++) {
		quick[i] = (struct pool_job){ .work = quick_work, .done = quick_complete };
		assert_int_equal(pool_submit(pool, &quick[i]), 0);
	}
	run_until(&loop, &quick_done, 3);
	assert_int_equal(atomic_load(&s.returned), 0);
	/* the stuck call returns after all: one done(), nothing counted twice */
	gate_open(&g);
	run_until(&loop, &s.done_calls, 1);
	for (int i = 0; i < 5; i++)
		uv_run(&loop, UV_RUN_NOWAIT);
	assert_int_equal(s.done_calls, 1);
	assert_int_equal(s.expired_calls, 1);
	assert_int_equal(pool_abandoned(pool), 0);
	assert_int_equal(pool_queued(pool), 0);
	assert_int_equal(pool_threads(pool), 1);
	pool_shutdown(pool, NULL, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	gate_destroy(&g);
}

static int closed_calls;
static unsigned abandoned_at_close;
static struct pool *closing_pool;

static void on_closed(void *arg)
{
	closed_calls++;
	abandoned_at_close = pool_abandoned(closing_pool);
}

static void test_shutdown_waits_for_live_job(void **state)
{
	uv_loop_t loop;
	struct pool *pool;
	struct gate g;
	struct sjob s;

	gate_init(&g);
	sjob_init(&s, &g);
	uv_loop_init(&loop);
	assert_int_equal(pool_new(&loop, 2, 8, &pool), 0);
	assert_int_equal(pool_submit(pool, &s.job), 0);
	wait_for(&g.waiting, 1);
	closed_calls = 0;
	closing_pool = pool;
	pool_shutdown(pool, on_closed, NULL);
	for (int i = 0; i < 5; i++)
		uv_run(&loop, UV_RUN_NOWAIT);
	assert_int_equal(closed_calls, 0);      /* not abandoned: it finishes first */
	gate_open(&g);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(s.done_calls, 1);
	assert_int_equal(s.expired_calls, 0);
	assert_int_equal(closed_calls, 1);
	assert_int_equal(abandoned_at_close, 0);
	assert_int_equal(uv_loop_close(&loop), 0);
	gate_destroy(&g);
}

static void test_shutdown_leaves_abandoned_job(void **state)
{
	uv_loop_t loop;
	struct pool *pool;
	static struct gate g;           /* outlives the test: the stray thread uses it */
	static struct sjob s;

	gate_init(&g);
	sjob_init(&s, &g);
	uv_loop_init(&loop);
	assert_int_equal(pool_new(&loop, 2, 8, &pool), 0);
	assert_int_equal(pool_submit(pool, &s.job), 0);
	wait_for(&g.waiting, 1);
	assert_int_equal(pool_expire(pool, 0), 1);
	closed_calls = 0;
	closing_pool = pool;
	pool_shutdown(pool, on_closed, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);          /* returns with the job still stuck */
	assert_int_equal(closed_calls, 1);
	assert_int_equal(abandoned_at_close, 1);
	assert_int_equal(atomic_load(&s.returned), 0);
	assert_int_equal(uv_loop_close(&loop), 0);
	/* let it go: it frees what is left of the pool, and gets no done() */
	gate_open(&g);
	wait_for(&s.returned, 1);
	usleep(20000);
	assert_int_equal(s.done_calls, 0);
	assert_int_equal(s.expired_calls, 1);
}

/* Index 0 blocks; the other 63 indices, other jobs and another parallel_for
 * all run meanwhile, with nothing expired. */
static void test_stuck_index_blocks_no_one(void **state)
{
	uv_loop_t loop;
	struct pool *pool;
	struct gate g;
	struct sjob s;
	struct pool_job quick[2];
	struct counts *c = calloc(1, sizeof(*c));
	struct pjob pj = { .job = { .work = pjob_work, .done = pjob_done }, .c = c };

	gate_init(&g);
	sjob_init(&s, &g);
	uv_loop_init(&loop);
	assert_int_equal(pool_new(&loop, 3, 8, &pool), 0);
	s.pool = pool;
	pj.pool = pool;
	assert_int_equal(pool_submit(pool, &s.job), 0);
	wait_for(&s.ran, IDX - 1);
	assert_int_equal(atomic_load(&g.waiting), 1);
	quick_done = 0;
	for (int i = 0; i < 2; i++) {
		quick[i] = (struct pool_job){ .work = quick_work, .done = quick_complete };
		assert_int_equal(pool_submit(pool, &quick[i]), 0);
	}
	assert_int_equal(pool_submit(pool, &pj.job), 0);
	run_until(&loop, &quick_done, 2);
	run_until(&loop, &pj.done, 1);
	check_all_once(c);
	assert_int_equal(s.expired_calls, 0);
	/* now write it off: all three threads serve again at once */
	assert_int_equal(pool_expire(pool, 0), 1);
	assert_int_equal(s.expired_calls, 1);
	assert_int_equal(pool_threads(pool), 3);
	meet(&loop, pool, 3);
	gate_open(&g);
	run_until(&loop, &s.done_calls, 1);
	for (int i = 0; i < IDX; i++)
		assert_int_equal(atomic_load(&s.hits[i]), 1);
	assert_int_equal(pool_abandoned(pool), 0);
	pool_shutdown(pool, NULL, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	gate_destroy(&g);
	free(c);
}

/* Every index blocks: the job's thread and both helpers are stuck in its
 * group.  Expiring it writes all three off; the replacements serve new jobs
 * and none of them joins the stuck group. */
static void test_stuck_group_written_off(void **state)
{
	uv_loop_t loop;
	struct pool *pool;
	struct gate g;
	struct sjob s;

	gate_init(&g);
	sjob_init(&s, &g);
	uv_loop_init(&loop);
	assert_int_equal(pool_new(&loop, 3, 8, &pool), 0);
	s.pool = pool;
	s.every_index = 1;
	assert_int_equal(pool_submit(pool, &s.job), 0);
	wait_for(&g.waiting, 3);
	assert_int_equal(pool_expire(pool, 0), 1);
	assert_int_equal(pool_threads(pool), 3);
	assert_int_equal(pool_abandoned(pool), 1);
	meet(&loop, pool, 3);
	assert_int_equal(atomic_load(&g.waiting), 3);
	/* released, its thread finishes the unclaimed indices by itself */
	gate_open(&g);
	run_until(&loop, &s.done_calls, 1);
	for (int i = 0; i < IDX; i++)
		assert_int_equal(atomic_load(&s.hits[i]), 1);
	assert_int_equal(s.expired_calls, 1);
	assert_int_equal(pool_abandoned(pool), 0);
	assert_int_equal(pool_queued(pool), 0);
	pool_shutdown(pool, NULL, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	gate_destroy(&g);
}

static void test_degraded_until_replaced(void **state)
{
	uv_loop_t loop;
	struct pool *pool;
	struct gate g;
	struct sjob s;
	struct pool_job quick;

	gate_init(&g);
	sjob_init(&s, &g);
	uv_loop_init(&loop);
	assert_int_equal(pool_new(&loop, 1, 8, &pool), 0);
	assert_int_equal(pool_submit(pool, &s.job), 0);
	wait_for(&g.waiting, 1);
	atomic_store(&fail_spawns, 1);
	assert_int_equal(pool_expire(pool, 0), 1);
	assert_int_equal(s.expired_calls, 1);
	assert_true(pool_degraded(pool));
	assert_int_equal(pool_threads(pool), 0);
	atomic_store(&fail_spawns, 0);
	assert_int_equal(pool_expire(pool, 3600ull * 1000000000), 0);
	assert_false(pool_degraded(pool));
	assert_int_equal(pool_threads(pool), 1);
	quick_done = 0;
	quick = (struct pool_job){ .work = quick_work, .done = quick_complete };
	assert_int_equal(pool_submit(pool, &quick), 0);
	run_until(&loop, &quick_done, 1);
	gate_open(&g);
	run_until(&loop, &s.done_calls, 1);
	pool_shutdown(pool, NULL, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	gate_destroy(&g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parallel_for_inside_job),
		cmocka_unit_test(test_parallel_for_concurrent_callers),
		cmocka_unit_test(test_busy_when_full),
		cmocka_unit_test(test_expire_replaces_worker),
		cmocka_unit_test(test_shutdown_waits_for_live_job),
		cmocka_unit_test(test_shutdown_leaves_abandoned_job),
		cmocka_unit_test(test_stuck_index_blocks_no_one),
		cmocka_unit_test(test_stuck_group_written_off),
		cmocka_unit_test(test_degraded_until_replaced),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
