/*
 * Small helpers the benchmarks share: a monotonic clock, the median of a
 * sample, and a host log function for the plugins they load (notices and
 * worse, to stderr).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "bench/util.h"
#include "include/moed/plugin.h"

double bench_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

double bench_median(double *v, size_t n)
{
	qsort(v, n, sizeof(*v), cmp_d);
	return v[n / 2];
}

void bench_log(int level, const char *plugin, const char *fmt, ...)
{
	va_list ap;

	if (level > MOED_LOG_NOTICE)
		return;
	fprintf(stderr, "  [%s] ", plugin);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}
