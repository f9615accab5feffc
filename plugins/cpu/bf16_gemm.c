/*
 * precision = bf16 on AVX512-BF16, large groups (bf16.c has the small ones
 * and the ops table): the bf16 GEMM.
 *
 * A register-blocked GEMM.  Weight rows are packed, one panel
 * of 64 rows at a time, into the layout vdpbf16ps wants ([K/2][64 rows][2]:
 * one 64-byte load holds one pair of columns of 16 rows), by 16x16 dword
 * transposes; FP8 codes are decoded to bf16 (exact: e4m3 has 4 significant
 * bits) on the way, and their block scales are applied per 128-wide K block
 * of the accumulation (a per-lane scale vector, so any block height works).
 * The micro-kernel keeps 6 tokens x 64 rows of fp32 accumulators (24 zmm) and
 * broadcasts each token's bf16 pair (FP8 too: with the block sums' running
 * totals in L1 the scaling fits beside them; 5 tokens before, S1 fp8 2
 * threads, 3 alternated rounds, T=1024 220 -> 212 ms, T=256 even); the act half packs 32 gate and the 32
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
 * The pack reads 64 rows at once, more streams than the hardware prefetcher
 * follows, so the rows of the next panel are prefetched into L2 during this
 * panel's multiply (struct pf): on a faster host (vdpbf16ps 0.95-1.4 TFLOP/s
 * on 2 threads, reads 44-73 GB/s), where the pack's stalls had come to 28% of
 * the time, S1 on 2 threads, 4 alternated rounds, cold ms: bf16 T=1024 243 ->
 * 206, FP8 T=256 109 -> 85, T=1024 261 -> 226 (on the earlier, slower host
 * the same idea had shown nothing).
 * Tried and not kept (no gain above the noise, alternated A/B builds):
 * K-blocking the panel into 32 kB (L1) slices with C kept in memory;
 * prefetching rows in the pack (1 kB ahead); the prefetch above spread over
 * half or all of the multiply instead of three quarters, or into L1; with
 * prepack = on, prefetching the next panel (contiguous) into L2 spread over
 * the current panel's micro-tiles (gemm_cmp, 6 alternated rounds: bf16 0-20%
 * slower at 1-24 tokens, FP8 -15% to +15%).  A token-lane GEMM (lanes =
 * 16 tokens, each weight pair broadcast from the stored rows, copied or
 * decoded into L1 per tile of 8-16 rows; no weight pack at all, the same bits):
 * its loop alone ran at the vdpbf16ps peak, but 10-40 tokens per expert leave
 * a quarter of the lanes empty, so in the layer (3 alternated rounds) bf16
 * T=256 72 -> 78 ms, FP8 85 -> 99, T=1024 even (204 / 214, FP8 231 / 226).
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
#include "plugins/cpu/avx512_impl.h"

/* GEMM: tokens per micro-tile, rows per panel (4 vectors of 16). */
#define PK_MR 6u


/*
 * FP8 panels: 16 rows x 64 codes at a time, transposed as dwords (quads of
 * codes: two pairs) before decoding, so the shuffles move one byte per
 * weight instead of two.  Vector t of the transpose then holds, in lane r,
 * codes 4t..4t+3 of row r; one byte permutation (VBMI) puts each lane's
 * first pair where the decode's low unpack takes it and the second where
 * the high one does, so the decode of fp8_to_bf16_64 yields pair 2t of the
 * 16 rows in w0 and pair 2t + 1 in w1.  Per 1024 weights: 56 shuffles for
 * the transpose and 6 x 16 for the decoding, against 2 x (5 x 16 + 56).
 */
static const uint8_t quad_sort[64] __attribute__((aligned(64))) = {
#define Q(k, i) 16 * (k) + 4 * (i), 16 * (k) + 4 * (i) + 1
#define QH(k, i) 16 * (k) + 4 * (i) + 2, 16 * (k) + 4 * (i) + 3
#define LANE(k) Q(k, 0), Q(k, 1), Q(k, 2), Q(k, 3), QH(k, 0), QH(k, 1), QH(k, 2), QH(k, 3)
	LANE(0), LANE(1), LANE(2), LANE(3)
#undef LANE
#undef QH
#undef Q
};

INL void fp8_quads_to_bf16(__m512i q, __m512i *w0, __m512i *w1)
{
	__m512i c = _mm512_permutexvar_epi8(_mm512_load_si512(quad_sort), q);
	__m512i hi, lo;

	hi = _mm512_permutex2var_epi8(_mm512_load_si512(f8_hi), c, _mm512_load_si512(f8_hi + 64));
	lo = _mm512_permutex2var_epi8(_mm512_load_si512(f8_lo), c, _mm512_load_si512(f8_lo + 64));
	hi = _mm512_ternarylogic_epi32(hi, c, _mm512_set1_epi8((char)0x80), 0xf8);
	*w0 = _mm512_unpacklo_epi8(lo, hi);
	*w1 = _mm512_unpackhi_epi8(lo, hi);
}

static void pack_panel_fp8(const void *const rows[PK_ROWS], uint32_t K, uint32_t *P)
{
	uint32_t KP = (K + 1) / 2;

	for (unsigned v = 0; v < PK_ROWS / 16; v++)
		for (uint32_t c0 = 0; c0 < K; c0 += 64) {
			uint32_t left = K - c0, kp0 = c0 / 2;
			__mmask64 m = left >= 64 ? ~(__mmask64)0 : ((__mmask64)1 << left) - 1;
			__m512i r[16];

			for (unsigned i = 0; i < 16; i++) {
				const uint8_t *row = rows[v * 16 + i];

				r[i] = row ? _mm512_maskz_loadu_epi8(m, row + c0) : _mm512_setzero_si512();
			}
			tr16(r);
			for (uint32_t t = 0; t < 16 && kp0 + 2 * t < KP; t++) {
				__m512i w0, w1;

				fp8_quads_to_bf16(r[t], &w0, &w1);
				_mm512_storeu_si512(P + (size_t)(kp0 + 2 * t) * PK_ROWS + v * 16, w0);
				if (kp0 + 2 * t + 1 < KP)
					_mm512_storeu_si512(
						P + (size_t)(kp0 + 2 * t + 1) * PK_ROWS + v * 16, w1);
			}
		}
}

/*
 * Pack 64 rows (rows[r] NULL: zeros) of K columns into P [ceil(K/2)][64][2]
 * bf16: P[kp][r] holds columns 2kp, 2kp+1 of row r (an odd K's last pair
 * ends in a zero).  fp8: rows of codes, decoded (pack_panel_fp8).
 */
INL void pack_panel(const void *const rows[PK_ROWS], uint32_t K, const int fp8, uint32_t *P)
{
	uint32_t KP = (K + 1) / 2;

	if (fp8) {
		pack_panel_fp8(rows, K, P);
		return;
	}
	for (unsigned v = 0; v < PK_ROWS / 16; v++)
		for (uint32_t kp0 = 0; kp0 < KP; kp0 += 16) {
			uint32_t c0 = 2 * kp0, left = K - c0;
			__mmask32 m = tail_mask(left);
			__m512i r[16];

			for (unsigned i = 0; i < 16; i++) {
				const void *row = rows[v * 16 + i];

				r[i] = row ? _mm512_maskz_loadu_epi16(m, (const uint16_t *)row + c0)
					   : _mm512_setzero_si512();
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
		  const unsigned mr, __m512 acc[PK_MR][4], struct pf *f)
{
	for (uint32_t kp = kp0; kp < kp1; kp++) {
		const uint32_t *p = P + (size_t)kp * PK_ROWS;

		if (f)
			pf_step(f);
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
	      const unsigned mr, __m512 out[PK_MR][4], struct pf *f)
{
	float tot[PK_MR * PK_ROWS] __attribute__((aligned(64)));
	__m512 acc[PK_MR][4];

	for (unsigned m = 0; m < mr; m++)
		for (unsigned v = 0; v < 4; v++)
			out[m][v] = _mm512_setzero_ps();
	if (!S) {
		tile_run(P, 0, KP, a, mr, out, f);
		return;
	}
	for (uint32_t kp0 = 0, kb = 0; kp0 < KP; kp0 += bcp, kb++) {
		const float *s = S + (size_t)kb * PK_ROWS;

		for (unsigned m = 0; m < mr; m++)
			for (unsigned v = 0; v < 4; v++)
				acc[m][v] = _mm512_setzero_ps();
		tile_run(P, kp0, KP - kp0 < bcp ? KP : kp0 + bcp, a, mr, acc, f);
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
		const u32a *const *a, unsigned mr, __m512 out[PK_MR][4], struct pf *f)
{
	switch (mr) {
	case 6:
		tile(P, KP, S, bcp, a, 6, out, f);
		break;
	case 5:
		tile(P, KP, S, bcp, a, 5, out, f);
		break;
	case 4:
		tile(P, KP, S, bcp, a, 4, out, f);
		break;
	case 3:
		tile(P, KP, S, bcp, a, 3, out, f);
		break;
	case 2:
		tile(P, KP, S, bcp, a, 2, out, f);
		break;
	default:
		tile(P, KP, S, bcp, a, 1, out, f);
		break;
	}
}

/* The act panel of rows i..i+31 of gate with the same rows of up (rows from
 * end on: zeros) into P, FP8 block scales after the pairs. */
void b16_pack_act(const struct expert_w *e, uint32_t i, uint32_t end, uint32_t *P)
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
void b16_pack_down(const struct expert_w *e, uint32_t h, uint32_t end, uint32_t *P)
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

uint32_t *b16_packed_act(const struct expert_w *e, uint32_t i)
{
	return (uint32_t *)((const char *)e->packed + (i / (PK_ROWS / 2)) * panel_bytes(e, e->H));
}

uint32_t *b16_packed_down(const struct expert_w *e, uint32_t h)
{
	return (uint32_t *)((const char *)e->packed + n_act_panels(e) * panel_bytes(e, e->H) +
			    (h / PK_ROWS) * panel_bytes(e, e->inter));
}

size_t b16_prepack(const struct expert_w *e, uint32_t *P)
{
	struct expert_w w = *e;

	if (P) {
		w.packed = P;
		for (uint32_t i = 0; i < e->inter; i += PK_ROWS / 2)
			b16_pack_act(e, i, e->inter, b16_packed_act(&w, i));
		for (uint32_t h = 0; h < e->H; h += PK_ROWS)
			b16_pack_down(e, h, e->H, b16_packed_down(&w, h));
	}
	return n_act_panels(e) * panel_bytes(e, e->H) +
	       (size_t)((e->H + PK_ROWS - 1) / PK_ROWS) * panel_bytes(e, e->inter);
}

void b16_gemm_act(const struct expert_w *e, const uint16_t *xb, size_t ldx,
			 const struct group *g, uint16_t *act, size_t lda, uint32_t r0,
			 uint32_t r1, void *scratch)
{
	uint32_t H = e->H, In = e->inter, KP = (H + 1) / 2;
	const unsigned mrmax = PK_MR;

	for (uint32_t i = r0; i < r1; i += PK_ROWS / 2) {
		uint32_t nr = r1 - i < PK_ROWS / 2 ? r1 - i : PK_ROWS / 2;
		__mmask32 keep = tail_mask(nr);
		uint32_t *P = e->packed ? b16_packed_act(e, i) : scratch;
		const float *S = e->fp8 ? (const float *)(P + (size_t)PK_ROWS * KP) : NULL;

		struct pf f, *fp = NULL;

		if (!e->packed) {
			size_t es = e->fp8 ? 1 : 2, row = (size_t)H * es, ni = i + PK_ROWS / 2;
			size_t nn = ni < r1 ? (r1 - ni < PK_ROWS / 2 ? r1 - ni : PK_ROWS / 2) : 0;

			b16_pack_act(e, i, r1, P);
			pf_init(&f, (const char *)e->gate + ni * row, nn * row,
				(const char *)e->up + ni * row, nn * row,
				(g->n + mrmax - 1) / mrmax * KP);
			fp = nn ? &f : NULL;
		}
		for (size_t j = 0; j < g->n; j += mrmax) {
			unsigned mr = g->n - j < mrmax ? (unsigned)(g->n - j) : mrmax;
			const u32a *a[PK_MR];
			__m512 c[PK_MR][4];

			for (unsigned m = 0; m < mr; m++)
				a[m] = (const u32a *)(xb + group_tok(g, j + m) * ldx);
			tile_n(P, KP, S, e->bc / 2, a, mr, c, fp);
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

void b16_gemm_down(const struct expert_w *e, const uint16_t *act, size_t lda,
			  const struct group *g, float *y, uint32_t h0, uint32_t h1,
			  void *scratch)
{
	uint32_t H = e->H, In = e->inter, KP = (In + 1) / 2;
	const unsigned mrmax = PK_MR;

	for (size_t j0 = 0; j0 < g->n; j0 += B16_GEMM_TOKENS) {
		size_t j1 = g->n - j0 < B16_GEMM_TOKENS ? g->n : j0 + B16_GEMM_TOKENS;

		for (uint32_t h = h0; h < h1; h += PK_ROWS) {
			uint32_t nr = h1 - h < PK_ROWS ? h1 - h : PK_ROWS;
			uint32_t *P = e->packed ? b16_packed_down(e, h) : scratch;
			const float *S = e->fp8 ? (const float *)(P + (size_t)PK_ROWS * KP) : NULL;

			struct pf f, *fp = NULL;

			if (!e->packed) {
				size_t row = (size_t)In * (e->fp8 ? 1 : 2), nh = h + PK_ROWS;
				size_t nn = nh < h1 ? (h1 - nh < PK_ROWS ? h1 - nh : PK_ROWS) : 0;

				b16_pack_down(e, h, h1, P);
				pf_init(&f, (const char *)e->down + nh * row, nn * row, NULL, 0,
					(j1 - j0 + mrmax - 1) / mrmax * KP);
				fp = nn ? &f : NULL;
			}
			for (size_t j = j0; j < j1; j += mrmax) {
				unsigned mr = j1 - j < mrmax ? (unsigned)(j1 - j) : mrmax;
				const u32a *a[PK_MR];
				__m512 c[PK_MR][4];

				for (unsigned m = 0; m < mr; m++)
					a[m] = (const u32a *)(act + (j + m) * lda);
				tile_n(P, KP, S, e->bc / 2, a, mr, c, fp);
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


#pragma GCC pop_options

#endif
