/*
 * Large groups of F32 weights (and BF16 ones with precision = exact, widened
 * exactly) on AVX-512F: a register-blocked fp32 GEMM in place of OpenBLAS
 * sgemm, whose kernels on this VM's AMD EPYC are its Haswell (AVX2) ones, at
 * half the AVX-512 FMA rate.  The layout is bf16_gemm.c's with one column
 * where that has a pair: 64 weight rows are packed per panel by 16 x 16
 * transposes into P[K][64] (one 64-byte load holds one column of 16 rows);
 * the micro-kernel keeps 6 tokens x 64 rows of fp32 accumulators (24 zmm) and
 * broadcasts each token's x[k]; the act half packs 32 gate and the 32 matching
 * up rows into one panel, so silu(gate) * up is taken in registers; the next
 * panel's rows are prefetched into L2 during this one's multiply.  FP8 weights
 * with precision = exact keep sgemm (gemm.c).
 *
 * Numerics: each (row, token) sum runs k = 0..K-1 in order, one fused
 * multiply-add per k, in blocks of KB columns whose sums are added in block
 * order, so a token's result does not depend on the other tokens of its
 * group (OpenBLAS's does: on its place in a block of rows).
 * The silu is silu16's (relative error about 2e-7 beside expf's).
 */
#include <stdint.h>
#include <string.h>

#include "plugins/cpu/kernels.h"

#if MOED_CPU_BF16

#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma,f16c")
#include <immintrin.h>

#include "plugins/cpu/avx512_impl.h"

#define MR 6u                   /* tokens per micro-tile */
#define ROWS 64u                /* rows per panel (4 vectors of 16) */
#define KB 128u                 /* columns per block of sums */

size_t f32_gemm_scratch(uint32_t H, uint32_t inter)
{
	return (size_t)ROWS * (H > inter ? H : inter);
}

/* 16 columns (n of them, the rest 0) of a row as 32-bit lanes: fp32, or bf16
 * widened exactly (AVX-512F only: no 16-bit masked loads). */
INL __m512i load_col16(const void *row, uint32_t k0, uint32_t n, int bf16)
{
	if (bf16) {
		uint16_t t[16] = { 0 };
		const uint16_t *p = (const uint16_t *)row + k0;
		__m256i h;

		if (n < 16)
			memcpy(t, p, n * sizeof(*p));
		h = _mm256_loadu_si256((const __m256i *)(n < 16 ? t : p));
		return _mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16);
	}
	return _mm512_maskz_loadu_epi32(n >= 16 ? 0xffff : (__mmask16)((1u << n) - 1),
					(const float *)row + k0);
}

/* Pack ROWS rows (rows[r] NULL: zeros) of K columns into P[K][ROWS]; bf16:
 * rows of bf16, widened. */
static void pack(const void *const rows[ROWS], uint32_t K, int bf16, float *P)
{
	for (unsigned v = 0; v < ROWS / 16; v++)
		for (uint32_t k0 = 0; k0 < K; k0 += 16) {
			uint32_t left = K - k0 < 16 ? K - k0 : 16;
			__m512i r[16];

			for (unsigned i = 0; i < 16; i++) {
				const void *row = rows[v * 16 + i];

				r[i] = row ? load_col16(row, k0, left, bf16) : _mm512_setzero_si512();
			}
			tr16(r);
			for (uint32_t t = 0; t < 16 && k0 + t < K; t++)
				_mm512_storeu_si512(P + (size_t)(k0 + t) * ROWS + v * 16, r[t]);
		}
}

/* out[m][v] = sum over k of P[k][16v..] x a[m][k] for MR tokens (a short
 * tile repeats its last token, whose duplicate sums are dropped).  The sums
 * of each block of KB columns run in registers and are added, block by block,
 * to totals in out (in memory, L1): one chain of 2048 multiply-adds per lane
 * came to 3.4e-6 (relative, the worst token of S1) from PyTorch's fp32. */
static void tile(const float *P, uint32_t K, const float *const *a, __m512 out[MR][4],
		 struct pf *f)
{
	for (uint32_t k0 = 0; k0 < K; k0 += KB) {
		uint32_t k1 = K - k0 < KB ? K : k0 + KB;
		__m512 acc[MR][4];

		for (unsigned m = 0; m < MR; m++)
			for (unsigned v = 0; v < 4; v++)
				acc[m][v] = _mm512_setzero_ps();
		for (uint32_t k = k0; k < k1; k++) {
			const float *p = P + (size_t)k * ROWS;
			__m512 b0 = _mm512_loadu_ps(p), b1 = _mm512_loadu_ps(p + 16);
			__m512 b2 = _mm512_loadu_ps(p + 32), b3 = _mm512_loadu_ps(p + 48);

			pf_step(f);
#pragma GCC unroll 8
			for (unsigned m = 0; m < MR; m++) {
				__m512 av = _mm512_set1_ps(a[m][k]);

				acc[m][0] = _mm512_fmadd_ps(b0, av, acc[m][0]);
				acc[m][1] = _mm512_fmadd_ps(b1, av, acc[m][1]);
				acc[m][2] = _mm512_fmadd_ps(b2, av, acc[m][2]);
				acc[m][3] = _mm512_fmadd_ps(b3, av, acc[m][3]);
			}
		}
		for (unsigned m = 0; m < MR; m++)
			for (unsigned v = 0; v < 4; v++)
				out[m][v] = k0 ? _mm512_add_ps(out[m][v], acc[m][v]) : acc[m][v];
	}
}

void f32_gemm_act(const struct expert_w *e, const float *x, const struct group *g, float *act,
		  uint32_t r0, uint32_t r1, float *P)
{
	uint32_t H = e->H, In = e->inter, half = ROWS / 2;
	size_t es = e->bf16 ? 2 : 4, row = (size_t)H * es;

	for (uint32_t i = r0; i < r1; i += half) {
		uint32_t nr = r1 - i < half ? r1 - i : half, ni = i + half;
		uint32_t nn = ni < r1 ? (r1 - ni < half ? r1 - ni : half) : 0;
		__mmask16 k0 = nr >= 16 ? 0xffff : (__mmask16)((1u << nr) - 1);
		__mmask16 k1 = nr >= 32 ? 0xffff : nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1) : 0;
		const void *rows[ROWS];
		uint32_t ri[ROWS];
		struct pf f;

		panel_rows(e->gate, H, es, i, r1, rows, ri, half);
		panel_rows(e->up, H, es, i, r1, rows + half, ri + half, half);
		pack(rows, H, e->bf16, P);
		pf_init(&f, (const char *)e->gate + ni * row, nn * row,
			(const char *)e->up + ni * row, nn * row, (g->n + MR - 1) / MR * H);
		for (size_t j = 0; j < g->n; j += MR) {
			unsigned mr = g->n - j < MR ? (unsigned)(g->n - j) : MR;
			const float *a[MR];
			__m512 c[MR][4];

			for (unsigned m = 0; m < MR; m++)
				a[m] = x + group_tok(g, j + (m < mr ? m : mr - 1)) * H;
			tile(P, H, a, c, &f);
			for (unsigned m = 0; m < mr; m++) {
				float *o = act + (j + m) * In + i;

				_mm512_mask_storeu_ps(o, k0, _mm512_mul_ps(silu16(c[m][0]), c[m][2]));
				_mm512_mask_storeu_ps(o + 16, k1,
						      _mm512_mul_ps(silu16(c[m][1]), c[m][3]));
			}
		}
	}
}

void f32_gemm_down(const struct expert_w *e, const float *act, const struct group *g, float *y,
		   uint32_t h0, uint32_t h1, float *P)
{
	uint32_t H = e->H, In = e->inter;
	size_t es = e->bf16 ? 2 : 4, row = (size_t)In * es;

	for (uint32_t h = h0; h < h1; h += ROWS) {
		uint32_t nr = h1 - h < ROWS ? h1 - h : ROWS, nh = h + ROWS;
		uint32_t nn = nh < h1 ? (h1 - nh < ROWS ? h1 - nh : ROWS) : 0;
		const void *rows[ROWS];
		uint32_t ri[ROWS];
		struct pf f;

		panel_rows(e->down, In, es, h, h1, rows, ri, ROWS);
		pack(rows, In, e->bf16, P);
		pf_init(&f, (const char *)e->down + nh * row, nn * row, NULL, 0,
			(g->n + MR - 1) / MR * In);
		for (size_t j = 0; j < g->n; j += MR) {
			unsigned mr = g->n - j < MR ? (unsigned)(g->n - j) : MR;
			const float *a[MR];
			__m512 c[MR][4];

			for (unsigned m = 0; m < MR; m++)
				a[m] = act + (j + (m < mr ? m : mr - 1)) * In;
			tile(P, In, a, c, &f);
			for (unsigned m = 0; m < mr; m++) {
				float *yj = y + group_tok(g, j + m) * H + h;
				__m512 w = _mm512_set1_ps(group_w(g, j + m));

				for (unsigned v = 0; v < 4 && 16 * v < nr; v++) {
					uint32_t left = nr - 16 * v;
					__mmask16 k = left >= 16 ? 0xffff : (__mmask16)((1u << left) - 1);
					__m512 yv = _mm512_maskz_loadu_ps(k, yj + 16 * v);

					_mm512_mask_storeu_ps(yj + 16 * v, k,
							      _mm512_fmadd_ps(w, c[m][v], yv));
				}
			}
		}
	}
}

#pragma GCC pop_options

#endif
