/*
 * precision = bf16 on AVX512-BF16: expert kernels that take activations
 * rounded to bf16 and multiply them with bf16 (or exactly decoded FP8) weights
 * by vdpbf16ps, which does 32 multiply-adds per instruction (twice the fp32
 * FMA rate) and accumulates in fp32.  Two paths, as for the exact kernels:
 *
 * Small groups (kernels.h's row-slice halves): every weight row is read once,
 * as stored, 32 bf16 per load, and dotted with up to B16_NB tokens' bf16
 * activations from registers (up to B16_ROWS adjacent rows x B16_NB tokens
 * of accumulators); lane sums at the end of a row, in a fixed order.  One
 * or two tokens read one row at a time, so each matrix is one sequential
 * stream for the hardware prefetcher (no software prefetch); the act half
 * takes a chunk of gate rows, then the same up rows, and keeps the gate
 * products in between.  Larger groups take 2, then 4 rows per block and
 * prefetch ahead.  FP8 rows: 32 codes per
 * load decoded to bf16 in registers (two VBMI byte lookups, exact), two rows
 * x B16_NB tokens, each 128-wide block's sums scaled and added in order.
 *
 * Large groups: a register-blocked GEMM.  Weight rows are packed, one panel
 * of 64 rows at a time, into the layout vdpbf16ps wants ([K/2][64 rows][2]:
 * one 64-byte load holds one pair of columns of 16 rows), by 16x16 dword
 * transposes; FP8 codes are decoded to bf16 (exact: e4m3 has 4 significant
 * bits) on the way, and their block scales are applied per 128-wide K block
 * of the accumulation (a per-lane scale vector, so any block height works).
 * The micro-kernel keeps 6 tokens x 64 rows of fp32 accumulators (24 zmm) and
 * broadcasts each token's bf16 pair; the act half packs 32 gate and the 32
 * matching up rows into one panel, so silu(gate) * up is taken in registers
 * and stored as bf16, ready for the down half.  The panel (64 rows x K) stays
 * in L2 while every token of the block passes; the pack costs about 1/nt of
 * the multiply.  Packing per call rather than once at layer_new keeps one copy
 * of the weights (the mapped checkpoint) and the FP8 bytes at one per weight;
 * prepack = on (BF16 only, b16_prepack) trades a second copy for no packing
 * at all: each panel is then read from memory as one sequential stream.
 *
 * Measured (S1 expert: H 2048, I 1408; one thread; thread CPU ms, best of 9
 * calls, the range over 3 runs of plugins/cpu/gemm_cmp, whose top comment has
 * the command; weights read cold below 64 tokens; machine shared with other
 * agents):
 *
 *	T     fp32 sgemm  bf16 exact  bf16 (this)  FP8 (this)  oneDNN bf16
 *	1     2.24-2.40   1.13-1.21   1.10-1.23    0.66-0.75   (warm L3 only)
 *	8     3.70-4.60   2.36-2.77   1.65-1.97    1.59-1.68
 *	64    15.9-17.5   20.1-25.9   7.2-8.2      7.5-8.4     5.7-6.4
 *	256   50.5-53.9   56.4-63.2   22.2-22.7    24.0-24.9   21.3-23.9
 *	1024  202-222     230-257     84.9-87.7    91.5-92.8   86.3-88.2
 *
 * so bf16 prefill is 2.4x the fp32 path and 2.7x the old bf16 one (widened
 * to fp32 for sgemm) at T=1024, on a par with oneDNN from 256 tokens (1.25x
 * slower at 64, where oneDNN's weights are pre-reordered once and ours are
 * packed per call); FP8 prefill 5-10% behind bf16; FP8 decode 1.6-1.7x bf16.
 * A dpbf16 peak loop measured 215-235 GFLOP/s on one thread here, this GEMM
 * 195-209 at T=1024.
 * oneDNN is not used: no faster where it counts, and one dependency less.
 * Tried and not kept (no gain above the noise, alternated A/B builds):
 * K-blocking the panel into 32 kB (L1) slices with C kept in memory;
 * prefetching rows in the pack (1 kB ahead) or the next panel into L2 during
 * the multiply; row-kernel prefetch distances 1024-8192 (4096 kept), and,
 * with the L2 hint, 2048/4096 and 8192/16384 bytes (2 rows/4) against
 * 4096/8192 (one 3-run round, no better); no prefetch at all (within the
 * noise of the L1 hint); 4 rows for 1-2 tokens with the L2 hint (no better);
 * the L2 hint for the FP8 rows (T=1 3.9 -> 4.9 ms, kept L1); FP8 rows of
 * groups over 4 tokens decoded once into an L1 buffer instead of on every
 * 4-token pass, and 6 tokens per pass (gemm_cmp, 3 alternated rounds: 15%
 * faster at 32 tokens, no faster at 8-24, where the GEMM takes over at 16);
 * with prepack = on, prefetching the next panel (contiguous) into L2 spread
 * over the current panel's micro-tiles (gemm_cmp, 6 alternated rounds: bf16
 * 0-20% slower at 1-24 tokens, FP8 -15% to +15%); one or two tokens
 * reading one row at a time, a slice's gate rows then its up rows, as one
 * sequential stream (6 rounds: 2-4% slower than two rows side by side;
 * with the prefetch left on and 4 kB pages.  On huge pages, with no software
 * prefetch, one row at a time is what is kept now: one S1 expert, gemm_cmp
 * with huge-page weights, medians of 7 alternated rounds, before -> after,
 * 1 token 0.80 -> 0.62 ms, 2: 0.85 -> 0.64, 3: 0.98 -> 0.87, 4: 0.91 ->
 * 0.83, 6-31 within the noise (+-10%)); two accumulators per row and token
 * (even and odd 32-element chunks, as ggml's bf16 dot): one row streamed
 * 5-30% faster again in a stand-alone loop, but the 4 x 4 kernel of larger
 * groups cannot hold 2 x 16 accumulators, and with 4 rows x 3 tokens or 2 x
 * 4 it was 15-30% slower from 8 tokens on (one summation order for every
 * group size keeps a token's result independent of its batch).
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

#define INL static inline __attribute__((always_inline))

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
/* GEMM: tokens per micro-tile, rows per panel (4 vectors of 16). */
#define PK_MR 6u
/* ... 5 with FP8 scales: the scaling's live values leave no room for 24 */
#define PK_MR_SCALED 5u
#define PK_ROWS 64u

typedef uint32_t u32a __attribute__((may_alias));

INL __m512bh as_bh(__m512i v)
{
	return (__m512bh)v;
}

INL __mmask32 tail_mask(uint32_t n)
{
	return n >= 32 ? 0xffffffffu : (1u << n) - 1;
}

/*
 * The bf16 bit pattern of each e4m3 magnitude (code & 0x7f: (8 + m) * 2^(e-10),
 * exponent 0 subnormal m * 2^-9, all normal numbers in bf16, exactly), high
 * and low byte; 0x7f (NaN) never gets here, the loader refuses it.
 */
static const uint8_t f8_hi[128] __attribute__((aligned(64))) = {
	0x00, 0x3b, 0x3b, 0x3b, 0x3c, 0x3c, 0x3c, 0x3c, 0x3c, 0x3c, 0x3c, 0x3c,
	0x3c, 0x3c, 0x3c, 0x3c, 0x3d, 0x3d, 0x3d, 0x3d, 0x3d, 0x3d, 0x3d, 0x3d,
	0x3d, 0x3d, 0x3d, 0x3d, 0x3d, 0x3d, 0x3d, 0x3d, 0x3e, 0x3e, 0x3e, 0x3e,
	0x3e, 0x3e, 0x3e, 0x3e, 0x3e, 0x3e, 0x3e, 0x3e, 0x3e, 0x3e, 0x3e, 0x3e,
	0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f,
	0x3f, 0x3f, 0x3f, 0x3f, 0x40, 0x40, 0x40, 0x40, 0x40, 0x40, 0x40, 0x40,
	0x40, 0x40, 0x40, 0x40, 0x40, 0x40, 0x40, 0x40, 0x41, 0x41, 0x41, 0x41,
	0x41, 0x41, 0x41, 0x41, 0x41, 0x41, 0x41, 0x41, 0x41, 0x41, 0x41, 0x41,
	0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42,
	0x42, 0x42, 0x42, 0x42, 0x43, 0x43, 0x43, 0x43, 0x43, 0x43, 0x43, 0x43,
	0x43, 0x43, 0x43, 0x43, 0x43, 0x43, 0x43, 0x7f,
};
static const uint8_t f8_lo[128] __attribute__((aligned(64))) = {
	0x00, 0x00, 0x80, 0xc0, 0x00, 0x20, 0x40, 0x60, 0x80, 0x90, 0xa0, 0xb0,
	0xc0, 0xd0, 0xe0, 0xf0, 0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70,
	0x80, 0x90, 0xa0, 0xb0, 0xc0, 0xd0, 0xe0, 0xf0, 0x00, 0x10, 0x20, 0x30,
	0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xa0, 0xb0, 0xc0, 0xd0, 0xe0, 0xf0,
	0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xa0, 0xb0,
	0xc0, 0xd0, 0xe0, 0xf0, 0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70,
	0x80, 0x90, 0xa0, 0xb0, 0xc0, 0xd0, 0xe0, 0xf0, 0x00, 0x10, 0x20, 0x30,
	0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xa0, 0xb0, 0xc0, 0xd0, 0xe0, 0xf0,
	0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xa0, 0xb0,
	0xc0, 0xd0, 0xe0, 0xf0, 0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70,
	0x80, 0x90, 0xa0, 0xb0, 0xc0, 0xd0, 0xe0, 0xc0,
};

/*
 * Up to 32 e4m3 codes at q (mask m) to 32 bf16, exactly: two 128-entry byte
 * lookups (vpermt2b, AVX512-VBMI) give the high and low byte of each
 * magnitude's bf16, the code's sign goes into the high byte, and the bytes
 * are interleaved into words; the qword shuffle first puts the codes where
 * the in-lane interleave leaves them in order.
 */
INL __m512i fp8_to_bf16(const uint8_t *q, __mmask32 m)
{
	__m512i c = _mm512_maskz_loadu_epi8((__mmask64)m, q);
	__m512i hi, lo;

	c = _mm512_permutexvar_epi64(_mm512_setr_epi64(0, 4, 1, 5, 2, 6, 3, 7), c);
	hi = _mm512_permutex2var_epi8(_mm512_load_si512(f8_hi), c, _mm512_load_si512(f8_hi + 64));
	lo = _mm512_permutex2var_epi8(_mm512_load_si512(f8_lo), c, _mm512_load_si512(f8_lo + 64));
	/* hi | (c & 0x80) */
	hi = _mm512_ternarylogic_epi32(hi, c, _mm512_set1_epi8((char)0x80), 0xf8);
	return _mm512_unpacklo_epi8(lo, hi);
}

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
					else
						io->y[group_tok(g, j0 + j) * io->H + i + r] +=
							group_w(g, j0 + j) * out[r][j];
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
		for (uint32_t c = c0; c < c1; c += 32) {
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

/* FP8 down: rows h and h + 1 (an odd slice's last row paired with itself). */
static void f8_small_down(const struct expert_w *e, const uint16_t *act, size_t lda,
			  const struct group *g, float *y, uint32_t h0, uint32_t h1)
{
	uint32_t H = e->H, In = e->inter, scols = (In + e->bc - 1) / e->bc;
	const uint16_t *xs[B16_NB];
	float out[2][B16_NB];

	for (uint32_t h = h0; h < h1; h += 2) {
		uint32_t h2 = h + 1 < h1 ? h + 1 : h;
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

/* Two rows at a time for one or two tokens (fewer streams, as small_impl.h). */
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

/* ---- the GEMM ---- */

/* Transpose 16 rows of 16 dwords in place: r[c] becomes column c. */
INL void tr16(__m512i r[16])
{
	__m512i t[16], s[16];

	for (int i = 0; i < 8; i++) {
		t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
		t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
	}
	for (int a = 0; a < 4; a++) {
		s[4 * a] = _mm512_unpacklo_epi64(t[4 * a], t[4 * a + 2]);
		s[4 * a + 1] = _mm512_unpackhi_epi64(t[4 * a], t[4 * a + 2]);
		s[4 * a + 2] = _mm512_unpacklo_epi64(t[4 * a + 1], t[4 * a + 3]);
		s[4 * a + 3] = _mm512_unpackhi_epi64(t[4 * a + 1], t[4 * a + 3]);
	}
	/* s[4a + c], 128-bit lane L: column 4L + c of rows 4a..4a+3 */
	for (int c = 0; c < 4; c++) {
		__m512i u0 = _mm512_shuffle_i32x4(s[c], s[4 + c], 0x44);
		__m512i u1 = _mm512_shuffle_i32x4(s[c], s[4 + c], 0xee);
		__m512i u2 = _mm512_shuffle_i32x4(s[8 + c], s[12 + c], 0x44);
		__m512i u3 = _mm512_shuffle_i32x4(s[8 + c], s[12 + c], 0xee);

		r[c] = _mm512_shuffle_i32x4(u0, u2, 0x88);
		r[4 + c] = _mm512_shuffle_i32x4(u0, u2, 0xdd);
		r[8 + c] = _mm512_shuffle_i32x4(u1, u3, 0x88);
		r[12 + c] = _mm512_shuffle_i32x4(u1, u3, 0xdd);
	}
}

/*
 * Pack 64 rows (rows[r] NULL: zeros) of K columns into P [ceil(K/2)][64][2]
 * bf16: P[kp][r] holds columns 2kp, 2kp+1 of row r (an odd K's last pair
 * ends in a zero).  fp8: rows of codes, decoded.
 */
INL void pack_panel(const void *const rows[PK_ROWS], uint32_t K, const int fp8, uint32_t *P)
{
	uint32_t KP = (K + 1) / 2;

	for (unsigned v = 0; v < PK_ROWS / 16; v++)
		for (uint32_t kp0 = 0; kp0 < KP; kp0 += 16) {
			uint32_t c0 = 2 * kp0, left = K - c0;
			__mmask32 m = tail_mask(left);
			__m512i r[16];

			for (unsigned i = 0; i < 16; i++) {
				const void *row = rows[v * 16 + i];

				if (!row)
					r[i] = _mm512_setzero_si512();
				else if (fp8)
					r[i] = fp8_to_bf16((const uint8_t *)row + c0, m);
				else
					r[i] = _mm512_maskz_loadu_epi16(
						m, (const uint16_t *)row + c0);
			}
			tr16(r);
			for (uint32_t t = 0; t < 16 && kp0 + t < KP; t++)
				_mm512_storeu_si512(P + (size_t)(kp0 + t) * PK_ROWS + v * 16, r[t]);
		}
}

/* The block scales of packed rows r0..r1: S[kb][64] (rows[r] NULL: 0). */
static void pack_scales(const struct expert_w *e, const float *scale, const uint32_t *ri,
			const void *const rows[PK_ROWS], uint32_t K, unsigned r0, unsigned r1,
			float *S)
{
	uint32_t nkb = (K + e->bc - 1) / e->bc;

	for (unsigned r = r0; r < r1; r++) {
		const float *srow = scale + (size_t)(ri[r] / e->br) * nkb;

		for (uint32_t kb = 0; kb < nkb; kb++)
			S[(size_t)kb * PK_ROWS + r] = rows[r] ? srow[kb] : 0.0f;
	}
}

/* acc[m][v] = sum over pairs kp0..kp1 of P[kp][16v..] x a[m] pair kp. */
INL void tile_run(const uint32_t *P, uint32_t kp0, uint32_t kp1, const u32a *const *a,
		  const unsigned mr, __m512 acc[PK_MR][4])
{
	for (uint32_t kp = kp0; kp < kp1; kp++) {
		const uint32_t *p = P + (size_t)kp * PK_ROWS;
		__m512bh b0 = as_bh(_mm512_loadu_si512(p)), b1 = as_bh(_mm512_loadu_si512(p + 16));
		__m512bh b2 = as_bh(_mm512_loadu_si512(p + 32)), b3 = as_bh(_mm512_loadu_si512(p + 48));

#pragma GCC unroll 8
		for (unsigned m = 0; m < mr; m++) {
			__m512bh av = as_bh(_mm512_set1_epi32((int)a[m][kp]));

			acc[m][0] = _mm512_dpbf16_ps(acc[m][0], b0, av);
			acc[m][1] = _mm512_dpbf16_ps(acc[m][1], b1, av);
			acc[m][2] = _mm512_dpbf16_ps(acc[m][2], b2, av);
			acc[m][3] = _mm512_dpbf16_ps(acc[m][3], b3, av);
		}
	}
}

/* The micro-tile over all KP pairs; S (fp8): per-K-block scales, blocks of bcp
 * pairs, each block's sums scaled and added in block order.  The running
 * totals live in memory (L1): in registers they would push the block's
 * accumulators out of them inside the inner loop. */
INL void tile(const uint32_t *P, uint32_t KP, const float *S, uint32_t bcp, const u32a *const *a,
	      const unsigned mr, __m512 out[PK_MR][4])
{
	float tot[PK_MR * PK_ROWS] __attribute__((aligned(64)));
	__m512 acc[PK_MR][4];

	for (unsigned m = 0; m < mr; m++)
		for (unsigned v = 0; v < 4; v++)
			out[m][v] = _mm512_setzero_ps();
	if (!S) {
		tile_run(P, 0, KP, a, mr, out);
		return;
	}
	for (uint32_t kp0 = 0, kb = 0; kp0 < KP; kp0 += bcp, kb++) {
		const float *s = S + (size_t)kb * PK_ROWS;

		for (unsigned m = 0; m < mr; m++)
			for (unsigned v = 0; v < 4; v++)
				acc[m][v] = _mm512_setzero_ps();
		tile_run(P, kp0, KP - kp0 < bcp ? KP : kp0 + bcp, a, mr, acc);
		for (unsigned v = 0; v < 4; v++) {
			__m512 sv = _mm512_loadu_ps(s + 16 * v);

			for (unsigned m = 0; m < mr; m++) {
				float *t = tot + m * PK_ROWS + 16 * v;

				_mm512_store_ps(t, kb ? _mm512_fmadd_ps(acc[m][v], sv,
									 _mm512_load_ps(t))
						      : _mm512_mul_ps(acc[m][v], sv));
			}
		}
		__asm__ volatile("" ::: "memory");
	}
	for (unsigned m = 0; m < mr; m++)
		for (unsigned v = 0; v < 4; v++)
			out[m][v] = _mm512_load_ps(tot + m * PK_ROWS + 16 * v);
}

INL void tile_n(const uint32_t *P, uint32_t KP, const float *S, uint32_t bcp,
		const u32a *const *a, unsigned mr, __m512 out[PK_MR][4])
{
	switch (mr) {
	case 6:
		tile(P, KP, S, bcp, a, 6, out);
		break;
	case 5:
		tile(P, KP, S, bcp, a, 5, out);
		break;
	case 4:
		tile(P, KP, S, bcp, a, 4, out);
		break;
	case 3:
		tile(P, KP, S, bcp, a, 3, out);
		break;
	case 2:
		tile(P, KP, S, bcp, a, 2, out);
		break;
	default:
		tile(P, KP, S, bcp, a, 1, out);
		break;
	}
}

/* e^x for the silu: 2^n * p(r), r = x - n ln 2 in [-ln2/2, ln2/2], a degree-6
 * Taylor polynomial (relative error ~2e-7, far below the bf16 rounding of
 * its result). */
INL __m512 exp16(__m512 x)
{
	__m512 n, r, p;

	x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.0f)), _mm512_set1_ps(-104.0f));
	n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
				 _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
	r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606820309417e-06f), r);
	p = _mm512_set1_ps(1.0f / 720);
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
	return _mm512_scalef_ps(p, n);
}

INL __m512 silu16(__m512 z)
{
	return _mm512_div_ps(z, _mm512_add_ps(_mm512_set1_ps(1.0f),
					      exp16(_mm512_sub_ps(_mm512_setzero_ps(), z))));
}

/* A panel's rows: n rows of w from row r (below end), then NULL. */
static void panel_rows(const void *w, uint32_t len, size_t es, uint32_t r, uint32_t end,
		       const void **rows, uint32_t *ri, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		rows[i] = r + i < end ? (const char *)w + (size_t)(r + i) * len * es : NULL;
		ri[i] = r + i < end ? r + i : 0;
	}
}

/* The act panel of rows i..i+31 of gate with the same rows of up (rows from
 * end on: zeros) into P, FP8 block scales after the pairs. */
static void pack_act(const struct expert_w *e, uint32_t i, uint32_t end, uint32_t *P)
{
	size_t es = e->fp8 ? 1 : 2;
	const void *rows[PK_ROWS];
	uint32_t ri[PK_ROWS];

	panel_rows(e->gate, e->H, es, i, end, rows, ri, PK_ROWS / 2);
	panel_rows(e->up, e->H, es, i, end, rows + PK_ROWS / 2, ri + PK_ROWS / 2, PK_ROWS / 2);
	pack_panel(rows, e->H, e->fp8, P);
	if (e->fp8) {
		float *S = (float *)(P + (size_t)PK_ROWS * ((e->H + 1) / 2));

		pack_scales(e, e->gate_s, ri, rows, e->H, 0, PK_ROWS / 2, S);
		pack_scales(e, e->up_s, ri, rows, e->H, PK_ROWS / 2, PK_ROWS, S);
	}
}

/* The down panel of rows h..h+63 (below end) into P, as pack_act. */
static void pack_down(const struct expert_w *e, uint32_t h, uint32_t end, uint32_t *P)
{
	const void *rows[PK_ROWS];
	uint32_t ri[PK_ROWS];

	panel_rows(e->down, e->inter, e->fp8 ? 1 : 2, h, end, rows, ri, PK_ROWS);
	pack_panel(rows, e->inter, e->fp8, P);
	if (e->fp8)
		pack_scales(e, e->down_s, ri, rows, e->inter, 0, PK_ROWS,
			    (float *)(P + (size_t)PK_ROWS * ((e->inter + 1) / 2)));
}

/*
 * Pre-packed experts (prepack = on): the act panels for rows i = 0, 32, ...,
 * then the down panels for h = 0, 64, ..., each as the GEMM packs it into its
 * scratch (pairs, then FP8 scales).  A slice starts on a panel (act tasks at
 * multiples of 32 rows, down slices of 64), so panel i / 32 (h / 64) is the
 * one the GEMM would have packed, and the results are the same bit for bit.
 */
static size_t panel_bytes(const struct expert_w *e, uint32_t K)
{
	return (size_t)PK_ROWS * ((K + 1) / 2) * 4 +
	       (e->fp8 ? (size_t)PK_ROWS * ((K + e->bc - 1) / e->bc) * 4 : 0);
}

static uint32_t n_act_panels(const struct expert_w *e)
{
	return (e->inter + PK_ROWS / 2 - 1) / (PK_ROWS / 2);
}

static uint32_t *packed_act(const struct expert_w *e, uint32_t i)
{
	return (uint32_t *)((const char *)e->packed + (i / (PK_ROWS / 2)) * panel_bytes(e, e->H));
}

static uint32_t *packed_down(const struct expert_w *e, uint32_t h)
{
	return (uint32_t *)((const char *)e->packed + n_act_panels(e) * panel_bytes(e, e->H) +
			    (h / PK_ROWS) * panel_bytes(e, e->inter));
}

static size_t b16_prepack(const struct expert_w *e, uint32_t *P)
{
	struct expert_w w = *e;

	if (P) {
		w.packed = P;
		for (uint32_t i = 0; i < e->inter; i += PK_ROWS / 2)
			pack_act(e, i, e->inter, packed_act(&w, i));
		for (uint32_t h = 0; h < e->H; h += PK_ROWS)
			pack_down(e, h, e->H, packed_down(&w, h));
	}
	return n_act_panels(e) * panel_bytes(e, e->H) +
	       (size_t)((e->H + PK_ROWS - 1) / PK_ROWS) * panel_bytes(e, e->inter);
}

static void b16_gemm_act(const struct expert_w *e, const uint16_t *xb, size_t ldx,
			 const struct group *g, uint16_t *act, size_t lda, uint32_t r0,
			 uint32_t r1, void *scratch)
{
	uint32_t H = e->H, In = e->inter, KP = (H + 1) / 2;
	const unsigned mrmax = e->fp8 ? PK_MR_SCALED : PK_MR;

	for (uint32_t i = r0; i < r1; i += PK_ROWS / 2) {
		uint32_t nr = r1 - i < PK_ROWS / 2 ? r1 - i : PK_ROWS / 2;
		__mmask32 keep = tail_mask(nr);
		uint32_t *P = e->packed ? packed_act(e, i) : scratch;
		const float *S = e->fp8 ? (const float *)(P + (size_t)PK_ROWS * KP) : NULL;

		if (!e->packed)
			pack_act(e, i, r1, P);
		for (size_t j = 0; j < g->n; j += mrmax) {
			unsigned mr = g->n - j < mrmax ? (unsigned)(g->n - j) : mrmax;
			const u32a *a[PK_MR];
			__m512 c[PK_MR][4];

			for (unsigned m = 0; m < mr; m++)
				a[m] = (const u32a *)(xb + group_tok(g, j + m) * ldx);
			tile_n(P, KP, S, e->bc / 2, a, mr, c);
			for (unsigned m = 0; m < mr; m++) {
				__m512 a0 = _mm512_mul_ps(silu16(c[m][0]), c[m][2]);
				__m512 a1 = _mm512_mul_ps(silu16(c[m][1]), c[m][3]);
				__m512i bits = (__m512i)_mm512_cvtne2ps_pbh(a1, a0);

				_mm512_mask_storeu_epi16(act + (j + m) * lda + i, keep, bits);
			}
		}
	}
	if (r1 == In && lda > In)
		for (size_t j = 0; j < g->n; j++)
			act[j * lda + In] = 0;
}

static void b16_gemm_down(const struct expert_w *e, const uint16_t *act, size_t lda,
			  const struct group *g, float *y, uint32_t h0, uint32_t h1,
			  void *scratch)
{
	uint32_t H = e->H, In = e->inter, KP = (In + 1) / 2;
	const unsigned mrmax = e->fp8 ? PK_MR_SCALED : PK_MR;

	for (size_t j0 = 0; j0 < g->n; j0 += B16_GEMM_TOKENS) {
		size_t j1 = g->n - j0 < B16_GEMM_TOKENS ? g->n : j0 + B16_GEMM_TOKENS;

		for (uint32_t h = h0; h < h1; h += PK_ROWS) {
			uint32_t nr = h1 - h < PK_ROWS ? h1 - h : PK_ROWS;
			uint32_t *P = e->packed ? packed_down(e, h) : scratch;
			const float *S = e->fp8 ? (const float *)(P + (size_t)PK_ROWS * KP) : NULL;

			if (!e->packed)
				pack_down(e, h, h1, P);
			for (size_t j = j0; j < j1; j += mrmax) {
				unsigned mr = j1 - j < mrmax ? (unsigned)(j1 - j) : mrmax;
				const u32a *a[PK_MR];
				__m512 c[PK_MR][4];

				for (unsigned m = 0; m < mr; m++)
					a[m] = (const u32a *)(act + (j + m) * lda);
				tile_n(P, KP, S, e->bc / 2, a, mr, c);
				for (unsigned m = 0; m < mr; m++) {
					float *yj = y + group_tok(g, j + m) * H + h;
					__m512 w = _mm512_set1_ps(group_w(g, j + m));

					for (unsigned v = 0; v < 4 && 16 * v < nr; v++) {
						uint32_t left = nr - 16 * v;
						__mmask16 k = left >= 16 ? 0xffff
									 : (__mmask16)((1u << left) - 1);
						__m512 yv = _mm512_maskz_loadu_ps(k, yj + 16 * v);

						yv = _mm512_fmadd_ps(w, c[m][v], yv);
						_mm512_mask_storeu_ps(yj + 16 * v, k, yv);
					}
				}
			}
		}
	}
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

#pragma GCC pop_options

#endif

size_t expert_b16_scratch(uint32_t H, uint32_t inter)
{
	uint32_t K = H > inter ? H : inter;

	/* the panel of 64 rows, then its scales (blocks of at least 2 columns) */
	return (size_t)64 * ((K + 1) / 2) * 4 + (size_t)64 * (K / 2 + 1) * 4;
}
