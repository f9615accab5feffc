/*
 * Worker pool tests: jobs run off the calling thread and complete on the loop;
 * a full queue answers -EBUSY at once; parallel_for runs every index exactly
 * once, from a plain thread, from inside a job, and from several callers at a
 * time, with workers joining in.
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

static void count_index(void *arg, size_t i)
{
	struct counts *c = arg;
	pthread_t self = pthread_self();
	int known = 0;

	atomic_fetch_add(&c->hits[i], 1);
	for (int k = 0; k < atomic_load(&c->n_who); k++)
		known |= pthread_equal(c->who[k], self);
	if (!known && atomic_load(&c->n_who) < 4)
		c->who[atomic_fetch_add(&c->n_who, 1)] = self;
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
	struct pjob j = { .job = { pjob_work, pjob_done, NULL }, .c = c };

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
		jobs[i] = (struct pool_job){ blocked_work, blocked_complete, NULL };
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parallel_for_inside_job),
		cmocka_unit_test(test_parallel_for_concurrent_callers),
		cmocka_unit_test(test_busy_when_full),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
