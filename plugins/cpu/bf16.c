/*
 * precision = bf16 on AVX512-BF16: expert kernels that take activations
 * rounded to bf16 and multiply them with bf16 (or exactly decoded FP8) weights
 * by vdpbf16ps, which does 32 multiply-adds per instruction (twice the fp32
 * FMA rate) and accumulates in fp32.  Two paths, as for the exact kernels:
 * the row kernels of small groups here, the packed-panel GEMM of large ones
 * in bf16_gemm.c (shared helpers: bf16_impl.h); the ops table below takes
 * both.
 *
 * Small groups (kernels.h's row-slice halves): every weight row is read once,
 * as stored, 32 bf16 per load, and dotted with up to B16_NB tokens' bf16
 * activations from registers (up to B16_ROWS adjacent rows x B16_NB tokens
 * of accumulators); lane sums at the end of a row, in a fixed order.  One
 * or two tokens read one row at a time, so each matrix is one sequential
 * stream for the hardware prefetcher (no software prefetch); the act half
 * takes a chunk of gate rows, then the same up rows, and keeps the gate
 * products in between.  Larger groups take 2, then 4 rows per block and
 * prefetch ahead.  FP8 rows: 64 codes per
 * load decoded to bf16 in registers (two VBMI byte lookups over all 64
 * bytes, exact), a gate row with its up row x B16_NB tokens, each 128-wide
 * block's sums scaled and added in order.  The decode, not memory, bounds
 * FP8 decode: 64 codes per lookup instead of 32 (5 shuffles per 64 codes
 * instead of 8) took one S1 expert (gemm_cmp, huge pages, medians of 7
 * alternated rounds) from 0.66 to 0.54 ms at 1 token, 0.98 -> 0.80 at 4,
 * 1.77 -> 1.26 at 8 and 2.91 -> 1.90 at 12; the same in the GEMM's pack
 * changed nothing there (5 rounds, within the noise).
 *
 * Tried and not kept (no gain above the noise, alternated A/B builds):
 * row-kernel prefetch distances 1024-8192 (4096 kept, later 8192), and,
 * with the L2 hint, 2048/4096 and 8192/16384 bytes (2 rows/4) against
 * 4096/8192 (one 3-run round, no better); no prefetch at all (within the
 * noise of the L1 hint); 4 rows for 1-2 tokens with the L2 hint (no better);
 * the L2 hint for the FP8 rows (T=1 3.9 -> 4.9 ms, kept L1); FP8 rows of
 * groups over 4 tokens decoded once into an L1 buffer instead of on every
 * 4-token pass, and 6 tokens per pass (gemm_cmp, 3 alternated rounds: 15%
 * faster at 32 tokens, no faster at 8-24, where the GEMM takes over at 16);
 * one or two tokens reading one row at a time, a slice's gate rows then its
 * up rows, as one sequential stream (6 rounds: 2-4% slower than two rows
 * side by side, with the prefetch left on and 4 kB pages.  On huge pages,
 * with no software prefetch, one row at a time is what is kept now: one S1
 * expert, gemm_cmp with huge-page weights, medians of 7 alternated rounds,
 * before -> after, 1 token 0.80 -> 0.62 ms, 2: 0.85 -> 0.64, 3: 0.98 ->
 * 0.87, 4: 0.91 -> 0.83, 6-31 within the noise (+-10%)); two accumulators
 * per row and token (even and odd 32-element chunks, as ggml's bf16 dot):
 * one row streamed 5-30% faster again in a stand-alone loop, but the 4 x 4
 * kernel of larger groups cannot hold 2 x 16 accumulators, and with 4 rows x
 * 3 tokens or 2 x 4 it was 15-30% slower from 8 tokens on (one summation
 * order for every group size keeps a token's result independent of its
 * batch); FP8 rows one at a time, or two adjacent rows of one matrix, for
 * one or two tokens (prefetch 0-8192 bytes ahead): 0.71-0.89 ms against
 * 0.56-0.64 for a gate row with its up row (7 rounds), so FP8 keeps the
 * pairs: its decode is bound by the in-register decoding, and two
 * independent rows keep more of it in flight.
 *
 * Numerics: products of bf16 values are exact in fp32, the sums are fp32
 * (round to nearest), so the error against the fp32 reference is that of
 * rounding x and act to bf16 (relative 2^-9 each, about 3e-3 on an output).
 */
#include <stdint.h>
#include <string.h>

#include "plugins/cpu/kernels.h"

#if MOED_CPU_BF16

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vbmi,avx512bf16,avx2,fma,f16c")
#include <immintrin.h>

#include "plugins/cpu/bf16_impl.h"

/* Tokens and weight rows per register block of the small kernel (16 zmm). */
#define B16_NB 4u
#define B16_ROWS 4u
/* Bytes ahead of a row block to prefetch (groups of 3 tokens and more; one
 * or two tokens read one row at a time, as one stream, with no software
 * prefetch; see b16_dot).  8192: one S1 expert, weights on huge pages as
 * the daemon holds them (gemm_cmp, thread CPU ms, medians of 7 alternated
 * rounds), 4096 -> 8192 for two rows: 1 token 0.95 -> 0.78, 2 tokens 0.91
 * -> 0.80 (4096 was chosen on 4 kB pages, where the two were within the
 * noise). */
#ifndef B16_PREFETCH
#define B16_PREFETCH 8192
#endif
/* ... into L2, not L1: S1 decode, 2 threads, -r 9, alternated A/B builds
 * (bench/expert_bench -p DIR -P none -s S1 -d bf16 -t 2 -T 1,4,16), median
 * cold ms over 11 (L1) and 18 (L2) runs: T=1 6.76 -> 6.17, T=4 19.1 ->
 * 17.0, T=16 44.8 -> 37.4 (1 thread, T=1: 10.9 -> 10.2; run-to-run spread
 * 15-40%, so single runs overlap; the medians moved the same way in every
 * round).  Probably
 * the L1 hint's lines, 4-8 kB ahead on 2-4 streams, evict rows still in use;
 * _MM_HINT_T2 gained less (one 3-run round). */
#ifndef B16_PF_HINT
#define B16_PF_HINT _MM_HINT_T1
#endif
/* Bytes ahead of each FP8 row to prefetch (as fp8.c). */
#ifndef F8_PREFETCH
#define F8_PREFETCH 2048
#endif

/*
 * out[r][j] = rows[r] . xs[j] over len elements, r < R, j < nb: one
 * accumulator per (row, token), 32 elements at a time in order, so the sum
 * is the same whatever R and nb.  pf: bytes ahead to prefetch (0: none).
 */
INL void b16_dot(const uint16_t *const *rows, uint32_t len, const uint16_t *const *xs,
		 const unsigned nb, const unsigned R, const int pf, float out[B16_ROWS][B16_NB])
{
	__m512 acc[B16_ROWS][B16_NB];
	uint32_t i = 0;

#pragma GCC unroll 8
	for (unsigned r = 0; r < R; r++)
#pragma GCC unroll 8
		for (unsigned j = 0; j < nb; j++)
			acc[r][j] = _mm512_setzero_ps();
	for (; i + 32 <= len; i += 32) {
		__m512bh w[B16_ROWS];

#pragma GCC unroll 8
		for (unsigned r = 0; r < R; r++) {
			w[r] = as_bh(_mm512_loadu_si512(rows[r] + i));
			if (pf)
				_mm_prefetch((const char *)(rows[r] + i) + pf, B16_PF_HINT);
		}
#pragma GCC unroll 8
		for (unsigned j = 0; j < nb; j++) {
			__m512bh xv = as_bh(_mm512_loadu_si512(xs[j] + i));

#pragma GCC unroll 8
			for (unsigned r = 0; r < R; r++)
				acc[r][j] = _mm512_dpbf16_ps(acc[r][j], w[r], xv);
		}
	}
	if (i < len) {
		__mmask32 m = tail_mask(len - i);
		__m512bh w[B16_ROWS];

		for (unsigned r = 0; r < R; r++)
			w[r] = as_bh(_mm512_maskz_loadu_epi16(m, rows[r] + i));
		for (unsigned j = 0; j < nb; j++) {
			__m512bh xv = as_bh(_mm512_maskz_loadu_epi16(m, xs[j] + i));

			for (unsigned r = 0; r < R; r++)
				acc[r][j] = _mm512_dpbf16_ps(acc[r][j], w[r], xv);
		}
	}
	for (unsigned r = 0; r < R; r++)
		for (unsigned j = 0; j < nb; j++)
			out[r][j] = _mm512_reduce_add_ps(acc[r][j]);
}

/* Up to B16_NB tokens: nb a constant in each call of b16_dot. */
INL void b16_dot_n(const uint16_t *const *rows, uint32_t len, const uint16_t *const *xs,
		   unsigned nb, const unsigned R, int pf, float out[B16_ROWS][B16_NB])
{
	switch (nb) {
	case 4:
		b16_dot(rows, len, xs, 4, R, pf, out);
		break;
	case 3:
		b16_dot(rows, len, xs, 3, R, pf, out);
		break;
	case 2:
		b16_dot(rows, len, xs, 2, R, pf, out);
		break;
	default:
		b16_dot(rows, len, xs, 1, R, pf, out);
		break;
	}
}

/* Row `at` of w (rows of len), clamped to end - 1 (results ignored). */
INL const uint16_t *row_at(const void *w, uint32_t at, uint32_t end, uint32_t len)
{
	return (const uint16_t *)w + (size_t)(at < end ? at : end - 1) * len;
}

/* Where rows_dot's products go: gs (gate, per row chunk), act or y. */
enum dot_to { TO_GATE, TO_ACT, TO_Y };

struct dot_io {
	const uint16_t *x;      /* TO_GATE/TO_ACT: x rows by token id; TO_Y: act rows */
	size_t ldx;
	const struct group *g;
	size_t t0, t1;          /* the group's tokens [t0, t1) */
	float *gs;              /* [row - r0][token - t0] gate products */
	uint16_t *act;
	size_t lda;
	float *y;
	uint32_t H;
};

/*
 * Rows [r0, r1) of w dotted with tokens [t0, t1) of the group, R adjacent
 * rows at a time, each row block read once for every B16_NB tokens (later
 * blocks find it in L1).  One row (R = 1) is one sequential stream left to
 * the hardware prefetcher; with R > 1 the first pass prefetches the rows
 * B16_PREFETCH ahead, later passes twice as far (the next row blocks).
 */
INL void rows_dot(const void *w, uint32_t len, uint32_t r0, uint32_t r1, const unsigned R,
		  const enum dot_to to, const struct dot_io *io)
{
	const struct group *g = io->g;
	size_t nt = io->t1 - io->t0;

	for (uint32_t i = r0; i < r1; i += R) {
		const uint16_t *rows[B16_ROWS], *xs[B16_NB];
		float out[B16_ROWS][B16_NB];

		for (unsigned r = 0; r < R; r++)
			rows[r] = row_at(w, i + r, r1, len);
		for (size_t j0 = io->t0; j0 < io->t1; j0 += B16_NB) {
			unsigned nb = io->t1 - j0 < B16_NB ? (unsigned)(io->t1 - j0) : B16_NB;
			int pf = R < 2 ? 0 : j0 == io->t0 ? B16_PREFETCH : 2 * B16_PREFETCH;

			for (unsigned j = 0; j < nb; j++)
				xs[j] = to == TO_Y ? io->x + (j0 + j) * io->ldx
						   : io->x + group_tok(g, j0 + j) * io->ldx;
			b16_dot_n(rows, len, xs, nb, R, pf, out);
			for (unsigned r = 0; r < R && i + r < r1; r++)
				for (unsigned j = 0; j < nb; j++) {
					size_t k = (i + r - r0) * nt + (j0 + j - io->t0);

					if (to == TO_GATE)
						io->gs[k] = out[r][j];
					else if (to == TO_ACT)
						io->act[(j0 + j) * io->lda + i + r] =
							bf16_bits(silu(io->gs[k]) * out[r][j]);
					else            /* fused, whatever the compiler makes of w */
						io->y[group_tok(g, j0 + j) * io->H + i + r] = __builtin_fmaf(
							group_w(g, j0 + j), out[r][j],
							io->y[group_tok(g, j0 + j) * io->H + i + r]);
				}
		}
	}
}

/* Rows per block by group size: 1 for one or two tokens, 2 up to
 * B16_ROWS4_MIN - 1, then 4 (B16_ROWS), where the multiply is the limit and
 * 4 rows x 4 tokens share each load (figures in the top comment). */
#ifndef B16_ROWS4_MIN
#define B16_ROWS4_MIN 8
#endif
/* Gate products kept for the up pass of a row chunk: rows x tokens. */
#define B16_GATE_SAVE 2048u

/*
 * act rows [r0, r1): a chunk of gate rows, then the same up rows, so each
 * matrix is read as one sequential stream; the chunk's gate products wait
 * in gs.  Tokens go in blocks of at most B16_GATE_SAVE / R.
 */
INL void small_act(const struct expert_w *e, const uint16_t *xb, size_t ldx,
		   const struct group *g, uint16_t *act, size_t lda, uint32_t r0, uint32_t r1,
		   const unsigned R)
{
	float gs[B16_GATE_SAVE];
	struct dot_io io = { .x = xb, .ldx = ldx, .g = g, .act = act, .lda = lda };
	size_t tmax = B16_GATE_SAVE / R;

	for (io.t0 = 0; io.t0 < g->n; io.t0 += tmax) {
		size_t nt = g->n - io.t0 < tmax ? g->n - io.t0 : tmax;
		uint32_t ch = (uint32_t)(B16_GATE_SAVE / nt) / R * R;

		io.t1 = io.t0 + nt;
		for (uint32_t c = r0; c < r1; c += ch) {
			uint32_t ce = r1 - c < ch ? r1 : c + ch;

			io.gs = gs;
			rows_dot(e->gate, e->H, c, ce, R, TO_GATE, &io);
			rows_dot(e->up, e->H, c, ce, R, TO_ACT, &io);
		}
	}
	if (r1 == e->inter && lda > e->inter)
		for (size_t j = 0; j < g->n; j++)
			act[j * lda + e->inter] = 0;
}

INL void small_down(const struct expert_w *e, const uint16_t *act, size_t lda,
		    const struct group *g, float *y, uint32_t h0, uint32_t h1, const unsigned R)
{
	struct dot_io io = { .x = act, .ldx = lda, .g = g, .t1 = g->n, .y = y, .H = e->H };

	rows_dot(e->down, e->inter, h0, h1, R, TO_Y, &io);
}

/*
 * FP8 rows: out[r][j] = sum over column blocks b of srow[r][b] * (rows[r] . xs[j]
 * over block b), r < 2, j < nb: the codes decoded to bf16 in registers, each
 * block's sums (one accumulator per row and token) scaled and added in block
 * order, so the weights meet the activations exactly as they are stored.
 */
INL void f8_dot(const uint8_t *const rows[2], const float *const srow[2], uint32_t bc,
		uint32_t len, const uint16_t *const *xs, const unsigned nb, float out[2][B16_NB])
{
	__m512 tot[2][B16_NB];

#pragma GCC unroll 8
	for (unsigned r = 0; r < 2; r++)
#pragma GCC unroll 8
		for (unsigned j = 0; j < nb; j++)
			tot[r][j] = _mm512_setzero_ps();
	for (uint32_t c0 = 0, b = 0; c0 < len; c0 += bc, b++) {
		uint32_t c1 = len - c0 < bc ? len : c0 + bc;
		__m512 acc[2][B16_NB];

#pragma GCC unroll 8
		for (unsigned r = 0; r < 2; r++)
#pragma GCC unroll 8
			for (unsigned j = 0; j < nb; j++)
				acc[r][j] = _mm512_setzero_ps();
		uint32_t c = c0;

		/* 64 codes at a time (the decode is the limit), then 32: the same
		 * sums in the same order */
		for (; c + 64 <= c1; c += 64) {
			__m512i v[2][2];

			_mm_prefetch((const char *)rows[0] + c + F8_PREFETCH, _MM_HINT_T0);
			_mm_prefetch((const char *)rows[1] + c + F8_PREFETCH, _MM_HINT_T0);
			fp8_to_bf16_64(rows[0] + c, &v[0][0], &v[0][1]);
			fp8_to_bf16_64(rows[1] + c, &v[1][0], &v[1][1]);
#pragma GCC unroll 2
			for (unsigned h = 0; h < 2; h++)
#pragma GCC unroll 8
				for (unsigned j = 0; j < nb; j++) {
					__m512bh xv = as_bh(_mm512_loadu_si512(xs[j] + c + 32 * h));

					acc[0][j] = _mm512_dpbf16_ps(acc[0][j], as_bh(v[0][h]), xv);
					acc[1][j] = _mm512_dpbf16_ps(acc[1][j], as_bh(v[1][h]), xv);
				}
		}
		for (; c < c1; c += 32) {
			__mmask32 m = tail_mask(c1 - c);
			__m512bh w0, w1;

			_mm_prefetch((const char *)rows[0] + c + F8_PREFETCH, _MM_HINT_T0);
			_mm_prefetch((const char *)rows[1] + c + F8_PREFETCH, _MM_HINT_T0);
			w0 = as_bh(fp8_to_bf16(rows[0] + c, m));
			w1 = as_bh(fp8_to_bf16(rows[1] + c, m));
#pragma GCC unroll 8
			for (unsigned j = 0; j < nb; j++) {
				__m512bh xv = as_bh(_mm512_maskz_loadu_epi16(m, xs[j] + c));

				acc[0][j] = _mm512_dpbf16_ps(acc[0][j], w0, xv);
				acc[1][j] = _mm512_dpbf16_ps(acc[1][j], w1, xv);
			}
		}
#pragma GCC unroll 8
		for (unsigned r = 0; r < 2; r++) {
			__m512 sv = _mm512_set1_ps(srow[r][b]);

#pragma GCC unroll 8
			for (unsigned j = 0; j < nb; j++)
				tot[r][j] = _mm512_fmadd_ps(acc[r][j], sv, tot[r][j]);
		}
	}
	for (unsigned r = 0; r < 2; r++)
		for (unsigned j = 0; j < nb; j++)
			out[r][j] = _mm512_reduce_add_ps(tot[r][j]);
}

INL void f8_dot_n(const uint8_t *const rows[2], const float *const srow[2], uint32_t bc,
		  uint32_t len, const uint16_t *const *xs, unsigned nb, float out[2][B16_NB])
{
	switch (nb) {
	case 4:
		f8_dot(rows, srow, bc, len, xs, 4, out);
		break;
	case 3:
		f8_dot(rows, srow, bc, len, xs, 3, out);
		break;
	case 2:
		f8_dot(rows, srow, bc, len, xs, 2, out);
		break;
	default:
		f8_dot(rows, srow, bc, len, xs, 1, out);
		break;
	}
}

/* FP8 act: gate row i with up row i. */
static void f8_small_act(const struct expert_w *e, const uint16_t *xb, size_t ldx,
			 const struct group *g, uint16_t *act, size_t lda, uint32_t r0,
			 uint32_t r1)
{
	uint32_t H = e->H, In = e->inter, scols = (H + e->bc - 1) / e->bc;
	const uint16_t *xs[B16_NB];
	float out[2][B16_NB];

	for (uint32_t i = r0; i < r1; i++) {
		const uint8_t *rows[2] = { (const uint8_t *)e->gate + (size_t)i * H,
					   (const uint8_t *)e->up + (size_t)i * H };
		const float *srow[2] = { e->gate_s + (size_t)(i / e->br) * scols,
					 e->up_s + (size_t)(i / e->br) * scols };

		for (size_t j0 = 0; j0 < g->n; j0 += B16_NB) {
			unsigned nb = g->n - j0 < B16_NB ? (unsigned)(g->n - j0) : B16_NB;

			for (unsigned j = 0; j < nb; j++)
				xs[j] = xb + group_tok(g, j0 + j) * ldx;
			f8_dot_n(rows, srow, e->bc, H, xs, nb, out);
			for (unsigned j = 0; j < nb; j++)
				act[(j0 + j) * lda + i] = bf16_bits(silu(out[0][j]) * out[1][j]);
		}
	}
	if (r1 == In && lda > In)
		for (size_t j = 0; j < g->n; j++)
			act[j * lda + In] = 0;
}

/*
 * FP8 down: the slice's first half of rows beside its second half, row h0 + i
 * with row h0 + half + i (an odd slice's last row paired with itself), so each
 * of the two runs on as one sequential stream.  Rows h and h + 1 side by side
 * made two streams that each skip the other's rows, and cpu.c's down task
 * moves to the next expert every slice: in the layer (S1, T=1, one thread,
 * perf) the down half then took longer than the act half, which reads twice
 * its bytes; the halves brought it to 0.6 of the act half's time, and the
 * layer at 2 threads (6 alternated rounds, medians) from 3.34 to 2.66 ms at
 * T=1, 10.6 to 8.0 at T=4, 25.9 to 22.9 at T=16.  (Strips for the bf16 rows
 * of R = 2 and 4 gained nothing there: 8 rounds, T = 1-64.)
 */
static void f8_small_down(const struct expert_w *e, const uint16_t *act, size_t lda,
			  const struct group *g, float *y, uint32_t h0, uint32_t h1)
{
	uint32_t H = e->H, In = e->inter, scols = (In + e->bc - 1) / e->bc;
	uint32_t half = (h1 - h0 + 1) / 2;
	const uint16_t *xs[B16_NB];
	float out[2][B16_NB];

	for (uint32_t h = h0; h < h0 + half; h++) {
		uint32_t h2 = h + half < h1 ? h + half : h;
		const uint8_t *rows[2] = { (const uint8_t *)e->down + (size_t)h * In,
					   (const uint8_t *)e->down + (size_t)h2 * In };
		const float *srow[2] = { e->down_s + (size_t)(h / e->br) * scols,
					 e->down_s + (size_t)(h2 / e->br) * scols };

		for (size_t j0 = 0; j0 < g->n; j0 += B16_NB) {
			unsigned nb = g->n - j0 < B16_NB ? (unsigned)(g->n - j0) : B16_NB;

			for (unsigned j = 0; j < nb; j++)
				xs[j] = act + (j0 + j) * lda;
			f8_dot_n(rows, srow, e->bc, In, xs, nb, out);
			for (unsigned j = 0; j < nb; j++) {
				float *yj = y + group_tok(g, j0 + j) * H, w = group_w(g, j0 + j);

				yj[h] += w * out[0][j];
				if (h2 != h)
					yj[h2] += w * out[1][j];
			}
		}
	}
}

/* Rows per block by group size (B16_ROWS4_MIN); FP8 keeps its gate/up pairs. */
static void b16_small_act(const struct expert_w *e, const uint16_t *xb, size_t ldx,
			  const struct group *g, uint16_t *act, size_t lda, uint32_t r0,
			  uint32_t r1, void *scratch)
{
	(void)scratch;
	if (e->fp8)
		f8_small_act(e, xb, ldx, g, act, lda, r0, r1);
	else if (g->n <= 2)
		small_act(e, xb, ldx, g, act, lda, r0, r1, 1);
	else if (g->n < B16_ROWS4_MIN)
		small_act(e, xb, ldx, g, act, lda, r0, r1, 2);
	else
		small_act(e, xb, ldx, g, act, lda, r0, r1, B16_ROWS);
}

static void b16_small_down(const struct expert_w *e, const uint16_t *act, size_t lda,
			   const struct group *g, float *y, uint32_t h0, uint32_t h1,
			   void *scratch)
{
	(void)scratch;
	if (e->fp8)
		f8_small_down(e, act, lda, g, y, h0, h1);
	else if (g->n <= 2)
		small_down(e, act, lda, g, y, h0, h1, 1);
	else if (g->n < B16_ROWS4_MIN)
		small_down(e, act, lda, g, y, h0, h1, 2);
	else
		small_down(e, act, lda, g, y, h0, h1, B16_ROWS);
}


/* Rows of x (T of them, H floats) to bf16 rows ld apart, an odd H's pad 0. */
static void b16_round_rows(const float *x, size_t T, uint32_t H, uint16_t *xb, size_t ld)
{
	for (size_t t = 0; t < T; t++) {
		const float *src = x + t * H;
		uint16_t *dst = xb + t * ld;
		uint32_t h = 0;

		for (; h + 16 <= H; h += 16)
			_mm256_storeu_si256((__m256i *)(dst + h),
					    (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(src + h)));
		if (h < H) {
			__mmask16 k = (__mmask16)((1u << (H - h)) - 1);

			_mm256_mask_storeu_epi16(
				dst + h, k,
				(__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(k, src + h)));
		}
		if (ld > H)
			dst[H] = 0;
	}
}

const struct cpu_bf16_ops cpu_bf16_avx512 = {
	.small_act = b16_small_act,
	.small_down = b16_small_down,
	.gemm_act = b16_gemm_act,
	.gemm_down = b16_gemm_down,
	.round_rows = b16_round_rows,
	.prepack = b16_prepack,
};

#if MOED_CPU_AMX
/* isa = amx: the same, with amx_gemm.c's tile GEMM for large groups */
const struct cpu_bf16_ops cpu_bf16_amx = {
	.small_act = b16_small_act,
	.small_down = b16_small_down,
	.gemm_act = amx_gemm_act,
	.gemm_down = amx_gemm_down,
	.round_rows = b16_round_rows,
	.prepack = b16_prepack,
};
#endif

#pragma GCC pop_options

#endif

size_t expert_b16_scratch(uint32_t H, uint32_t inter)
{
	uint32_t K = H > inter ? H : inter;

	/* the panel of 64 rows, then its scales (blocks of at least 2 columns) */
	return (size_t)64 * ((K + 1) / 2) * 4 + (size_t)64 * (K / 2 + 1) * 4;
}

