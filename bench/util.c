/*
 * Small helpers the benchmarks share: a monotonic clock in seconds and the
 * median of a sample.  The plugins they load get the fake host of
 * tests/common/fake_host.h.
 */
#include <stdlib.h>

#include "bench/util.h"
#include "common/clock.h"

double bench_now(void)
{
	return mono_ns() * 1e-9;
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
