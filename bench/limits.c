/*
 * The limits a benchmark is measured against, taken in the same run with the
 * same thread count: cblas_sgemm 4096^3 (median of 3; OpenBLAS's threads set
 * to `threads` for the measurement), a streaming read of a buffer of 4x the
 * L3 on huge pages (read_bw: the best of 4 variants, each the median of 5;
 * `threads` pthreads each summing one slice, timed from a common start to
 * the last finish), and the register-only peaks of AVX-512 fp32 FMA
 * and of AVX512-BF16 vdpbf16ps (`threads` pthreads each running 24
 * independent accumulator chains, enough to cover the latency on Zen 4/5 and
 * Sapphire Rapids; median of 3).  vdpbf16ps on a zmm register is 32 products
 * and 32 sums, 64 FLOP, counted as a GEMM counts them; where the CPU lacks
 * AVX512-BF16 its peak is reported as 0 and bf16 work is measured against
 * sgemm (the plugin then computes bf16 in fp32).  Where the CPU has AMX-BF16
 * (and the kernel grants it), the peak of TDPBF16PS on 4 tile accumulators
 * per thread too: the cpu plugin's GEMM runs on it there (isa = amx).  `quick` shrinks every
 * measurement (sgemm 512^3, a 32 MiB read) for the harness's smoke test,
 * whose figures mean nothing.
 */
#include <cblas.h>
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "bench/bench.h"
#include "bench/util.h"


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

static double sgemm_peak(unsigned threads, size_t n)
{
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
	const char *a;
	size_t bytes;
	unsigned streams, prefetch;
	pthread_barrier_t *start;
	float sink;
};

/* Sums the slice as `streams` sequential streams side by side (256 bytes of
 * each in turn), prefetching `prefetch` bytes ahead of each (0: none). */
static void *read_slice(void *arg)
{
	struct slice *s = arg;
	size_t per = s->bytes / s->streams / 256 * 256;
	v4f acc[8] = { { 0 } };

	pthread_barrier_wait(s->start);
	for (size_t off = 0; off < per; off += 256)
		for (unsigned k = 0; k < s->streams; k++) {
			const char *q = s->a + k * per + off;

			if (s->prefetch)
				for (int l = 0; l < 4; l++)
					__builtin_prefetch(q + s->prefetch + 64 * l, 0, 3);
			for (int j = 0; j < 16; j++) {
				v4f v;

				memcpy(&v, q + 16 * j, sizeof(v));
				acc[j & 7] += v;
			}
		}
	s->sink = acc[0][0] + acc[7][3];
	return NULL;
}

/* GB/s of `threads` threads reading a slice of buf each (median of 5). */
static double read_run(unsigned threads, const char *buf, size_t bytes, unsigned streams,
		       unsigned prefetch)
{
	size_t per = bytes / threads;
	struct slice *sl = xmalloc(threads * sizeof(*sl));
	pthread_t *th = xmalloc(threads * sizeof(*th));
	pthread_barrier_t start;
	double t[5];

	for (int r = 0; r < 5; r++) {
		double t0;

		pthread_barrier_init(&start, NULL, threads + 1);
		for (unsigned i = 0; i < threads; i++) {
			sl[i] = (struct slice){ buf + i * per, per, streams, prefetch, &start, 0 };
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
	free(sl), free(th);
	return (double)(per / streams / 256 * 256 * streams) * threads / bench_median(t, 5) / 1e9;
}

/*
 * The read bandwidth the kernels can reach: a buffer of four times the L3
 * (at least 512 MiB, at most a quarter of the memory) held as the layer's
 * weights are (bench_huge_alloc: huge pages), read as 1 or 2 streams per
 * thread, with no software prefetch or 512 bytes ahead; the best median.
 * (A single stream on 4 kB pages, what this measured before 2026-12-03,
 * read 20-24 GB/s on the 2-core AMX VM where these reach 33-36 and the
 * bf16 row kernel 25-26: efficiencies above 1.)
 */
static void read_bw(unsigned threads, int quick, struct limits *ret)
{
	static const unsigned streams[] = { 1, 2 }, prefetch[] = { 0, 512 };
	long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE), pages = sysconf(_SC_PHYS_PAGES);
	size_t bytes = l3 > 0 ? 4 * (size_t)l3 : 0, cap = pages > 0 ? (size_t)pages * 4096 / 4 : 0;
	char *buf;

	if (bytes < (512u << 20))
		bytes = 512u << 20;
	if (cap && bytes > cap)
		bytes = cap;
	bytes = quick ? 32u << 20 : bytes >> 21 << 21;
	buf = bench_huge_alloc(bytes);
	memset(buf, 1, bytes);
	ret->bw = 0;
	ret->bw_mib = bytes >> 20;
	for (unsigned i = 0; i < 2; i++)
		for (unsigned j = 0; j < 2; j++) {
			double bw = read_run(threads, buf, bytes, streams[i], prefetch[j]);

			if (bw > ret->bw) {
				ret->bw = bw;
				ret->bw_streams = streams[i];
				ret->bw_prefetch = prefetch[j];
			}
		}
	free(buf);
}

#define CHAINS 24
#define DOT_ITERS 4000000u

struct peak_arg {
	int bf16;
	unsigned iters;
	pthread_barrier_t *start;
	float sink;
};

__attribute__((target("avx512f,avx512bf16"))) static float dot_chains(int bf16, unsigned iters)
{
	__m512 acc[CHAINS], s = _mm512_setzero_ps();
	__m512 a = _mm512_set1_ps(1e-3f), b = _mm512_set1_ps(0.999f);
	__m512bh ah = (__m512bh)_mm512_set1_epi16(0x3a83), bh = (__m512bh)_mm512_set1_epi16(0x3f7f);

	for (int i = 0; i < CHAINS; i++)
		acc[i] = _mm512_set1_ps((float)i);
	/* unrolled, so the chains live in registers, not on the stack */
	if (bf16)
		for (unsigned n = 0; n < iters; n++) {
#pragma GCC unroll 32
			for (int i = 0; i < CHAINS; i++)
				acc[i] = _mm512_dpbf16_ps(acc[i], ah, bh);
		}
	else
		for (unsigned n = 0; n < iters; n++) {
#pragma GCC unroll 32
			for (int i = 0; i < CHAINS; i++)
				acc[i] = _mm512_fmadd_ps(acc[i], b, a);
		}
	for (int i = 0; i < CHAINS; i++)
		s = _mm512_add_ps(s, acc[i]);
	return _mm512_reduce_add_ps(s);
}

static void *peak_thread(void *arg)
{
	struct peak_arg *p = arg;

	pthread_barrier_wait(p->start);
	p->sink = dot_chains(p->bf16, p->iters);
	return NULL;
}

/* Median seconds of `threads` threads running fn (a struct peak_arg each). */
static double peak_seconds(unsigned threads, void *(*fn)(void *), int bf16, unsigned iters)
{
	struct peak_arg *pa = xmalloc(threads * sizeof(*pa));
	pthread_t *th = xmalloc(threads * sizeof(*th));
	pthread_barrier_t start;
	double t[3];

	for (int r = 0; r < 3; r++) {
		double t0;

		pthread_barrier_init(&start, NULL, threads + 1);
		for (unsigned i = 0; i < threads; i++) {
			pa[i] = (struct peak_arg){ bf16, iters, &start, 0 };
			if (pthread_create(&th[i], NULL, fn, &pa[i])) {
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
	free(pa), free(th);
	return bench_median(t, 3);
}

/* GFLOP/s of `threads` threads running dot_chains(bf16, iters). */
static double dot_peak(unsigned threads, int bf16, unsigned iters)
{
	/* fmadd: 16 lanes x 2 FLOP; dpbf16: 16 lanes x 2 pairs x 2 FLOP */
	return (double)threads * iters * CHAINS * (bf16 ? 64 : 32) /
	       peak_seconds(threads, peak_thread, bf16, iters) / 1e9;
}

/*
 * AMX: 4 independent C tiles (16 x 16 fp32) += A (16 x 32 bf16) . B, 16 x
 * 16 x 32 multiply-adds per TDPBF16PS, 16384 FLOP.  Usable where CPUID says
 * AMX-BF16 and AMX-TILE and the kernel grants the tile state (arch_prctl
 * ARCH_REQ_XCOMP_PERM, as the cpu plugin asks).
 */
static int amx_here(void)
{
	unsigned a, b, c, d;

	__asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(7), "c"(0));
	return (d >> 22 & 1) && (d >> 24 & 1) && syscall(SYS_arch_prctl, 0x1023, 18) == 0;
}

__attribute__((target("amx-tile,amx-bf16"))) static void *amx_thread(void *arg)
{
	struct peak_arg *p = arg;
	static const uint16_t a[16 * 32];   /* zeros: the time does not depend on them */
	struct {
		uint8_t palette, start, reserved[14];
		uint16_t colsb[16];
		uint8_t rows[16];
	} cfg;

	memset(&cfg, 0, sizeof(cfg));
	cfg.palette = 1;
	for (int i = 0; i < 8; i++)
		cfg.rows[i] = 16, cfg.colsb[i] = 64;
	pthread_barrier_wait(p->start);
	_tile_loadconfig(&cfg);
	_tile_zero(0);
	_tile_zero(1);
	_tile_zero(2);
	_tile_zero(3);
	_tile_loadd(4, a, 64);
	_tile_loadd(5, a, 64);
	_tile_loadd(6, a, 64);
	_tile_loadd(7, a, 64);
	for (unsigned n = 0; n < p->iters; n++) {
		_tile_dpbf16ps(0, 4, 6);
		_tile_dpbf16ps(1, 4, 7);
		_tile_dpbf16ps(2, 5, 6);
		_tile_dpbf16ps(3, 5, 7);
	}
	_tile_release();
	return NULL;
}

static double amx_peak(unsigned threads, unsigned iters)
{
	return (double)threads * iters * 4 * 16384 / peak_seconds(threads, amx_thread, 1, iters) /
	       1e9;
}

void limits_measure(unsigned threads, int quick, struct limits *ret)
{
	unsigned iters = quick ? DOT_ITERS / 64 : DOT_ITERS;

	ret->peak = sgemm_peak(threads, quick ? 512 : 4096);
	read_bw(threads, quick, ret);
	ret->fma_peak = __builtin_cpu_supports("avx512f") ? dot_peak(threads, 0, iters) : 0;
	ret->bf16_peak = __builtin_cpu_supports("avx512bf16") ? dot_peak(threads, 1, iters) : 0;
	ret->amx_peak = amx_here() ? amx_peak(threads, iters / 4) : 0;
}

void bench_evict(void)
{
	static float *buf;
	static size_t n;
	volatile float sink;
	v4f acc = { 0 };

	if (!buf) {
		long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);

		n = (size_t)(l3 > (16l << 20) ? 4 * l3 : 64l << 20) / sizeof(float);
		buf = xmalloc(n * sizeof(float));
		for (size_t i = 0; i < n; i++)
			buf[i] = (float)(i & 3);
	}
	for (size_t i = 0; i < n; i += 16) {       /* one load per 64-byte line */
		v4f v;

		memcpy(&v, buf + i, sizeof(v));
		acc += v;
	}
	sink = acc[0];
	(void)sink;
}
