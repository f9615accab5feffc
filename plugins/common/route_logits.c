/*
 * The router's logits, x . gate^T, with one fixed summation order for every
 * (token, expert): sixteen partial sums (element h in lane h % 16, added in
 * order of h), then the lanes added pairwise (lane i + lane i + 8, and so on
 * down to one).  A token's logits, and so its routes and weights, are then the
 * same bits whatever batch it came in.  The host's sgemm (OpenBLAS) does not
 * promise that: a row's result depends on its place in a block of rows, and
 * on an AMD EPYC (Zen 5) with OpenBLAS 0.3.21's Haswell kernels, tokens 0-3 of
 * a batch of 7 got weights an ulp or two away from the same tokens sent alone,
 * so coalescing requests changed their answers.
 *
 * Blocking: tokens in chunks of TC, columns in blocks of HB, so that a
 * chunk's slab of x (TC x HB) and the gate's slab (E x HB) stay in L2 while
 * register tiles of tokens x experts pass over them; a tile's lane sums are
 * kept in memory between column blocks (stored and reloaded exactly, so the
 * blocking changes no bit).  Three builds chosen once at run time: AVX-512F
 * (4 x 4 tiles), AVX2 with FMA and baseline x86-64 (2 x 2); the first two
 * fuse each multiply-add and give the same bits, the baseline does not.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "plugins/common/route.h"

typedef float v16 __attribute__((vector_size(64)));

#define TC 32u                  /* tokens per chunk */
#define HB 512u                 /* columns per block (a multiple of 16) */
#define TMAX 4u                 /* the largest tile, either way */
#define AI static inline __attribute__((always_inline))

/* n (<= 16) floats at p, zero-padded (vectors by pointer: passed by value,
 * their ABI would differ between the builds). */
AI void load16(v16 *v, const float *p, uint32_t n)
{
	*v = (v16){ 0 };
	memcpy(v, p, n * sizeof(float));
}

AI float lanes_sum(const v16 *v)
{
	float a[16];

	memcpy(a, v, sizeof(a));
	for (unsigned w = 8; w; w /= 2)
		for (unsigned i = 0; i < w; i++)
			a[i] += a[i + w];
	return a[0];
}

/* Columns h0..h1 of a tile: rows xr[i] of x, gr[j] of the gate (a short tile
 * repeats its last row); the lane sums continue from acc. */
AI void tile_step(const float *const *xr, const float *const *gr, uint32_t h, uint32_t n,
		  const unsigned TT, const unsigned TE, v16 acc[TMAX][TMAX])
{
	v16 xv[TMAX], gv[TMAX];

#pragma GCC unroll 4
	for (unsigned i = 0; i < TT; i++)
		load16(&xv[i], xr[i] + h, n);
#pragma GCC unroll 4
	for (unsigned j = 0; j < TE; j++)
		load16(&gv[j], gr[j] + h, n);
#pragma GCC unroll 4
	for (unsigned i = 0; i < TT; i++)
#pragma GCC unroll 4
		for (unsigned j = 0; j < TE; j++)
			acc[i][j] += xv[i] * gv[j];
}

AI void tile(const float *const *xr, const float *const *gr, uint32_t h0, uint32_t h1,
	     const unsigned TT, const unsigned TE, v16 acc[TMAX][TMAX])
{
	uint32_t h = h0;

	for (; h + 16 <= h1; h += 16)
		tile_step(xr, gr, h, 16, TT, TE, acc);
	if (h < h1)
		tile_step(xr, gr, h, h1 - h, TT, TE, acc);
}

/* Tokens t0..t0+nt of the chunk whose lane sums are P[t - c0][e] (chunk
 * tokens from c0), for every expert, over columns h0..h1 (h0 == 0: start from
 * zero; h1 == H: finish into logits). */
AI void chunk_block(size_t c0, size_t nt, uint32_t E, uint32_t H, uint32_t h0, uint32_t h1,
		    const float *x, const float *gate, v16 *P, float *logits, const unsigned TT,
		    const unsigned TE)
{
	for (uint32_t e0 = 0; e0 < E; e0 += TE) {
		uint32_t ne = E - e0 < TE ? E - e0 : TE;
		const float *gr[TMAX];

		for (unsigned j = 0; j < TE; j++)
			gr[j] = gate + (size_t)(e0 + (j < ne ? j : ne - 1)) * H;
		for (size_t t0 = 0; t0 < nt; t0 += TT) {
			size_t n = nt - t0 < TT ? nt - t0 : TT;
			const float *xr[TMAX];
			v16 acc[TMAX][TMAX];

#pragma GCC unroll 4
			for (unsigned i = 0; i < TT; i++)
				xr[i] = x + (c0 + t0 + (i < n ? i : n - 1)) * H;
#pragma GCC unroll 4
			for (unsigned i = 0; i < TT; i++)
#pragma GCC unroll 4
				for (unsigned j = 0; j < TE; j++)
					acc[i][j] = h0 && i < n && j < ne
							    ? P[(t0 + i) * E + e0 + j]
							    : (v16){ 0 };
			tile(xr, gr, h0, h1, TT, TE, acc);
			for (size_t i = 0; i < n; i++)
				for (uint32_t j = 0; j < ne; j++) {
					if (h1 == H)
						logits[(c0 + t0 + i) * E + e0 + j] =
							lanes_sum(&acc[i][j]);
					else
						P[(t0 + i) * E + e0 + j] = acc[i][j];
				}
		}
	}
}

AI void logits_body(size_t T, uint32_t E, uint32_t H, const float *x, const float *gate,
		    float *logits, v16 *P, const unsigned TT, const unsigned TE)
{
	for (size_t c0 = 0; c0 < T; c0 += TC) {
		size_t nt = T - c0 < TC ? T - c0 : TC;

		for (uint32_t h0 = 0; h0 < H; h0 += HB)
			chunk_block(c0, nt, E, H, h0, H - h0 < HB ? H : h0 + HB, x, gate, P, logits,
				    TT, TE);
	}
}

typedef void logits_fn(size_t T, uint32_t E, uint32_t H, const float *x, const float *gate,
		       float *logits, v16 *P);

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx512f"))) static void logits_avx512(size_t T, uint32_t E, uint32_t H,
							       const float *x, const float *gate,
							       float *logits, v16 *P)
{
	logits_body(T, E, H, x, gate, logits, P, 4, 4);
}

__attribute__((target("avx2,fma"))) static void logits_avx2(size_t T, uint32_t E, uint32_t H,
							      const float *x, const float *gate,
							      float *logits, v16 *P)
{
	logits_body(T, E, H, x, gate, logits, P, 2, 2);
}
#endif

static void logits_base(size_t T, uint32_t E, uint32_t H, const float *x, const float *gate,
			float *logits, v16 *P)
{
	logits_body(T, E, H, x, gate, logits, P, 2, 2);
}

static logits_fn *pick(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
	__builtin_cpu_init();
	if (__builtin_cpu_supports("avx512f"))
		return logits_avx512;
	if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
		return logits_avx2;
#endif
	return logits_base;
}

int route_logits(size_t T, uint32_t E, uint32_t H, const float *x, const float *gate,
		 float *logits)
{
	static logits_fn *_Atomic fn;
	logits_fn *f = fn;
	v16 *P = NULL;

	if (!f)
		fn = f = pick();
	/* lane sums between column blocks: one chunk's tokens x experts */
	if (H > HB && !(P = aligned_alloc(64, (size_t)TC * E * sizeof(v16))))
		return -1;
	f(T, E, H, x, gate, logits, P);
	free(P);
	return 0;
}
