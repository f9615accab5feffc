/*
 * Host services for plugins.  Everything here is thread-safe and allocation
 * free: plugins call these from worker threads in the middle of a request.
 */
#include "config.h"

#include <cblas.h>
#include <stdarg.h>
#include <stdio.h>

#include "daemon/host.h"
#include "daemon/log.h"
#include "daemon/pool.h"

static _Thread_local char last_error[256];

static void host_log(int level, const char *plugin, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(level, plugin, fmt, ap);
	va_end(ap);
	if (level <= MOED_LOG_ERR) {
		int n = snprintf(last_error, sizeof(last_error), "%s: ", plugin ? plugin : "plugin");
		va_start(ap, fmt);
		vsnprintf(last_error + n, sizeof(last_error) - (size_t)n, fmt, ap);
		va_end(ap);
	}
}

const char *host_last_error(void)
{
	return last_error;
}

void host_clear_error(void)
{
	last_error[0] = '\0';
}

static void host_sgemm_nt(size_t m, size_t n, size_t k, const float *a, const float *b,
			  float *c)
{
	if (m == 0 || n == 0)
		return;
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)m, (blasint)n, (blasint)k,
		    1.0f, a, (blasint)k, b, (blasint)k, 0.0f, c, (blasint)n);
}

static struct pool *host_pool;

static void host_parallel_for(size_t n, void (*fn)(void *arg, size_t i), void *arg)
{
	pool_parallel_for(host_pool, n, fn, arg);
}

void host_set_pool(struct pool *pool)
{
	host_pool = pool;
}

static const struct moed_host host = {
	.struct_size = sizeof(struct moed_host),
	.abi_version = MOED_PLUGIN_ABI_VERSION,
	.log = host_log,
	.sgemm_nt = host_sgemm_nt,
	.parallel_for = host_parallel_for,
};

void host_init(void)
{
	openblas_set_num_threads(1);
}

const struct moed_host *host_table(void)
{
	return &host;
}
