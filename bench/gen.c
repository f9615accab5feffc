/*
 * The benchmark's layer and inputs, from a counter-based generator that
 * bench/torch_peer.py mirrors bit for bit, so both sides build the same
 * weights and routes without exchanging them: element i of tensor `id` is
 * splitmix64 at (id << 40) + i, its top 24 bits scaled into a uniform fp32.
 * Tensor ids: expert e gate/up/down 3e..3e+2, shared 3E..3E+2, x 3E+3,
 * routes 3E+4, route weights 3E+5.  Routes of rep r (decode rows draw new
 * routes every rep so each reads cold weights) add r << 32 to the counter;
 * rep 0 is the set every earlier version of the bench used.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "bench/bench.h"
#include "common/mix.h"

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (!p) {
		perror("malloc");
		exit(1);
	}
	return p;
}

float bench_value(uint64_t id, uint64_t i, float scale)
{
	return (mix_unit24(splitmix64_at((id << 40) + i)) - 0.5f) * scale;
}

size_t bench_dtype_size(enum bench_dtype d)
{
	return d == BENCH_FP8 ? 1 : d == BENCH_BF16 ? 2 : 4;
}

const char *bench_dtype_name(enum bench_dtype d)
{
	return d == BENCH_FP8 ? "fp8" : d == BENCH_BF16 ? "bf16" : "f32";
}

/* Weights as the daemon holds what it converts or generates (daemon/
 * hugepages.c): 2 MiB aligned and advised transparent huge pages, unless
 * MOED_NO_HUGEPAGES is set (then 4 kB pages, as before 2026-12-02). */
void *bench_huge_alloc(size_t bytes)
{
	const char *off = getenv("MOED_NO_HUGEPAGES");
	size_t huge = (size_t)2 << 20;
	void *p;

	if ((off && *off && strcmp(off, "0")) || bytes < huge)
		return xmalloc(bytes);
	if (posix_memalign(&p, huge, bytes)) {
		perror("posix_memalign");
		exit(1);
	}
	madvise(p, bytes & ~(huge - 1), MADV_HUGEPAGE);
	return p;
}

void *gen_weights(uint64_t id, size_t n, enum bench_dtype d)
{
	void *p = bench_huge_alloc(n * bench_dtype_size(d));

	for (size_t i = 0; i < n; i++) {
		float f = bench_value(id, i, 0.05f);
		uint32_t u;

		memcpy(&u, &f, 4);
		if (d == BENCH_FP8)
			/* a code of magnitude below 2^7 (the scales bring it near the f32 values) */
			((uint8_t *)p)[i] = (uint8_t)((u >> 24 & 0x80) | ((u >> 13) % 0x78));
		else if (d == BENCH_BF16)
			((uint16_t *)p)[i] = (uint16_t)(u >> 16);
		else
			((float *)p)[i] = f;
	}
	return p;
}

float *gen_scales(uint64_t id, uint32_t rows, uint32_t cols)
{
	size_t n = (size_t)((rows + 127) / 128) * ((cols + 127) / 128);
	float *p = xmalloc(n * sizeof(float));

	for (size_t i = 0; i < n; i++)
		p[i] = ldexpf(1.0f, -12 + (int)(splitmix64_at((id << 40) + (1ull << 39) + i) % 4));
	return p;
}

/* Expert for hash h: uniform, or Zipf-skewed (P(e) ~ (e + 1)^-zipf, expert 0
 * hottest; the cumulative sums computed in this order in both programs). */
static int32_t pick_expert(uint64_t h, uint32_t E, double zipf)
{
	double u = (double)(h >> 11) * (1.0 / 9007199254740992.0), total = 0, acc = 0;

	if (zipf == 0)
		return (int32_t)(h % E);
	for (uint32_t e = 0; e < E; e++)
		total += pow((double)(e + 1), -zipf);
	for (uint32_t e = 0; e < E; e++) {
		acc += pow((double)(e + 1), -zipf);
		if (u < acc / total)
			return (int32_t)e;
	}
	return (int32_t)E - 1;
}

unsigned gen_routes(const struct shape *s, size_t T, double zipf, unsigned rep, int32_t *ex,
		    float *w)
{
	uint64_t rid = 3ull * s->E + 4, wid = rid + 1, r = (uint64_t)rep << 32;
	unsigned char used[1024] = { 0 };
	unsigned distinct = 0;

	for (size_t t = 0; t < T; t++)
		for (unsigned j = 0; j < s->k; j++) {
			size_t at = t * s->k + j;
			int32_t e;
			int dup;

			for (uint64_t a = 0;; a++) {
				e = pick_expert(splitmix64_at((rid << 40) + r + at * 64 + a), s->E,
						zipf);
				dup = 0;
				for (unsigned q = 0; q < j; q++)
					dup |= ex[t * s->k + q] == e;
				if (!dup)
					break;
			}
			ex[at] = e;
			w[at] = bench_value(wid, r + at, 0.4f) + 0.3f;
			distinct += !used[e];
			used[e] = 1;
		}
	return distinct;
}
