/*
 * The limits a benchmark is measured against, taken in the same run with the
 * same thread count: cblas_sgemm 4096^3 (median of 3; OpenBLAS's threads set
 * to `threads` for the measurement) and a streaming read of a 512 MiB buffer
 * (median of 5; `threads` pthreads each summing one slice, timed from a common
 * start to the last finish).
 */
#include <cblas.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/bench.h"
#include "bench/util.h"

#define READ_BYTES (512u << 20)

typedef float v4f __attribute__((vector_size(16)));

static void *xmalloc(size_t n)
{
	void *p = malloc(n);

	if (!p) {
		perror("malloc");
		exit(1);
	}
	return p;
}

static double sgemm_peak(unsigned threads)
{
	size_t n = 4096;
	float *a = xmalloc(n * n * 4), *b = xmalloc(n * n * 4), *c = xmalloc(n * n * 4);
	double t[3];

	for (size_t i = 0; i < n * n; i++)
		a[i] = (float)(i % 13) * 0.01f, b[i] = (float)(i % 7) * 0.01f;
	openblas_set_num_threads((int)threads);
	for (int r = 0; r < 3; r++) {
		double t0 = bench_now();

		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)n, (int)n, 1.0f, a,
			    (int)n, b, (int)n, 0.0f, c, (int)n);
		t[r] = bench_now() - t0;
	}
	free(a), free(b), free(c);
	return 2.0 * n * n * n / bench_median(t, 3) / 1e9;
}

struct slice {
	const float *a;
	size_t n;
	pthread_barrier_t *start;
	float sink;
};

static void *read_slice(void *arg)
{
	struct slice *s = arg;
	v4f acc[8] = { { 0 } };

	pthread_barrier_wait(s->start);
	for (size_t i = 0; i + 32 <= s->n; i += 32)
		for (int j = 0; j < 8; j++) {
			v4f v;

			memcpy(&v, s->a + i + 4 * j, sizeof(v));
			acc[j] += v;
		}
	s->sink = acc[0][0] + acc[7][3];
	return NULL;
}

static double read_bw(unsigned threads)
{
	size_t n = READ_BYTES / 4, per = n / threads;
	float *a = xmalloc(READ_BYTES);
	struct slice *sl = xmalloc(threads * sizeof(*sl));
	pthread_t *th = xmalloc(threads * sizeof(*th));
	pthread_barrier_t start;
	double t[5];

	for (size_t i = 0; i < n; i++)
		a[i] = (float)(i & 7);
	for (int r = 0; r < 5; r++) {
		double t0;

		pthread_barrier_init(&start, NULL, threads + 1);
		for (unsigned i = 0; i < threads; i++) {
			sl[i] = (struct slice){ a + i * per, per, &start, 0 };
			if (pthread_create(&th[i], NULL, read_slice, &sl[i])) {
				perror("pthread_create");
				exit(1);
			}
		}
		pthread_barrier_wait(&start);
		t0 = bench_now();
		for (unsigned i = 0; i < threads; i++)
			pthread_join(th[i], NULL);
		t[r] = bench_now() - t0;
		pthread_barrier_destroy(&start);
	}
	free(a), free(sl), free(th);
	return (double)per * threads * 4 / bench_median(t, 5) / 1e9;
}

void limits_measure(unsigned threads, struct limits *ret)
{
	ret->peak = sgemm_peak(threads);
	ret->bw = read_bw(threads);
}
