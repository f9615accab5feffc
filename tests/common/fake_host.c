/*
 * The fake plugin host (see fake_host.h).  The pool lives on a private libuv
 * loop that never runs jobs: parallel_for only publishes task groups, which
 * the pool's idle workers join, so the loop is run only to close the pool.
 */
#include "config.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "daemon/pool.h"
#include "tests/common/fake_host.h"

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char last_log[1024];
static unsigned n_errors;
static int verbosity = MOED_LOG_DEBUG;

static enum fake_host_order order = FAKE_HOST_POOL;
static uv_loop_t loop;
static int loop_ready;
static struct pool *pool;

static void host_log(int level, const char *plugin, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&log_lock);
	va_start(ap, fmt);
	vsnprintf(last_log, sizeof(last_log), fmt, ap);
	va_end(ap);
	if (level <= MOED_LOG_ERR)
		n_errors++;
	if (level <= verbosity)
		fprintf(stderr, "  [%s] %s\n", plugin, last_log);
	pthread_mutex_unlock(&log_lock);
}

static void host_sgemm_nt(size_t m, size_t n, size_t k, const float *a, const float *b,
			  float *c)
{
	for (size_t i = 0; i < m; i++)
		for (size_t j = 0; j < n; j++) {
			float s = 0;
			for (size_t q = 0; q < k; q++)
				s += a[i * k + q] * b[j * k + q];
			c[i * n + j] = s;
		}
}

static void host_parallel_for(size_t n, void (*fn)(void *arg, size_t i), void *arg)
{
	switch (order) {
	case FAKE_HOST_POOL:
		pool_parallel_for(pool, n, fn, arg);
		return;
	case FAKE_HOST_FORWARD:
		for (size_t i = 0; i < n; i++)
			fn(arg, i);
		return;
	case FAKE_HOST_REVERSE:
		for (size_t i = n; i-- > 0;)
			fn(arg, i);
		return;
	}
}

static const struct moed_host host = {
	.struct_size = sizeof(struct moed_host),
	.abi_version = MOED_PLUGIN_ABI_VERSION,
	.log = host_log,
	.sgemm_nt = host_sgemm_nt,
	.parallel_for = host_parallel_for,
};

const struct moed_host *fake_host(void)
{
	return &host;
}

void fake_host_stop(void)
{
	if (!pool)
		return;
	pool_shutdown(pool, NULL, NULL);
	pool = NULL;
	uv_run(&loop, UV_RUN_DEFAULT);
}

int fake_host_set_threads(unsigned threads)
{
	int r;

	fake_host_stop();
	if (threads <= 1)
		return 0;
	if (!loop_ready) {
		r = uv_loop_init(&loop);
		if (r < 0)
			return r;
		loop_ready = 1;
	}
	return pool_new(&loop, threads - 1, 1, &pool);
}

void fake_host_set_order(enum fake_host_order o)
{
	order = o;
}

void fake_host_set_verbosity(int max_level)
{
	verbosity = max_level;
}

const char *fake_host_last_log(void)
{
	return last_log;
}

unsigned fake_host_errors(void)
{
	return n_errors;
}

void fake_host_reset_log(void)
{
	pthread_mutex_lock(&log_lock);
	last_log[0] = '\0';
	n_errors = 0;
	pthread_mutex_unlock(&log_lock);
}
