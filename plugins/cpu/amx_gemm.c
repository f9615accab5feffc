/*
 * precision = bf16 on CPUs with AMX-BF16 (Sapphire Rapids and later), large
 * groups of BF16 weights: the GEMM on tile instructions.  isa = amx is
 * avx512bf16 (bf16.c's row kernels, bf16_gemm.c's panels) with these halves
 * in place of the vdpbf16ps micro-kernel.
 *
 * C[tokens][rows] += A[tokens][K] . B[K][rows]: A is the activations as
 * stored (x rows, or the act rows of the down half; 16 tokens x 32 bf16 per
 * tile, loaded with the rows' own stride), B the weight panels bf16_gemm.c
 * packs ([K/2][64 rows][2], already the pair-interleaved layout TDPBF16PS
 * wants: a tile is 16 pairs x 16 rows, 256 bytes apart), packed per call or
 * once (prepack = on).  Eight tiles: four C (2 token tiles x 2 column
 * groups of 16 rows), two A, two B; per 32 columns of K, 4 tile loads and 4
 * TDPBF16PS (16 x 16 x 32 multiply-adds each).  The act half takes gate rows
 * i.. and the matching up rows as its two column groups, so silu(gate) * up
 * is taken on the C tiles (stored to L1) and written as bf16; the down half
 * adds w * C into y.  Routed experts' tokens are scattered rows of x, so the
 * act half gathers up to AMX_GATHER of them into scratch first; a last tile
 * of fewer than 16 tokens is copied into a zeroed one, so no tile load reads
 * past the rows it was given.
 *
 * Taken where H and I are multiples of 32 (every release) and the weights
 * are BF16; otherwise (and for FP8, whose per-block scales would need the C
 * tiles stored every 128 columns) the call goes to bf16_gemm.c.  The tile
 * state is per thread: every call loads the configuration (TDPBF16PS needs
 * it) and releases it at the end; the kernel grants the tile data to the
 * process once (arch_prctl ARCH_REQ_XCOMP_PERM, amx_usable()).
 *
 * Numerics: TDPBF16PS adds the products of a pair in its own order (it
 * matches neither vdpbf16ps's odd-then-even nor even-then-odd one rounded
 * step at a time: 65-69 of 256 sums differ in the last bits), so the AMX
 * GEMM's bits differ from the vdpbf16ps GEMM's and the row kernel's, as
 * those two already differ from each other; products are exact and sums
 * fp32 either way, so the error against the fp32 reference is the same:
 * that of rounding x and act to bf16.
 */
#include <stdint.h>
#include <string.h>

#include "plugins/cpu/kernels.h"

#if MOED_CPU_AMX

#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vbmi,avx512bf16,avx2,fma,f16c," \
		   "amx-tile,amx-bf16")
#include <immintrin.h>

#include "plugins/cpu/bf16_impl.h"
#include "plugins/cpu/avx512_impl.h"

/* Tokens of a routed expert gathered into scratch per chunk (S1: 1 MB). */
#define AMX_GATHER 256u

struct tile_cfg {
	uint8_t palette, start;
	uint8_t reserved[14];
	uint16_t colsb[16];
	uint8_t rows[16];
};

/* Tiles 0-3: C, 4-5: A, 6-7: B, all 16 rows x 64 bytes. */
static void amx_begin(void)
{
	struct tile_cfg c;

	memset(&c, 0, sizeof(c));
	c.palette = 1;
	for (int i = 0; i < 8; i++) {
		c.rows[i] = 16;
		c.colsb[i] = 64;
	}
	_tile_loadconfig(&c);
}

/* Where a token tile's 16 rows of A start, and their stride in bytes. */
struct a_src {
	const uint16_t *base;   /* full tiles: row 0 of the chunk */
	size_t stride;
	const uint16_t *tail;   /* the last tile, if partial: 16 rows, K apart */
	size_t ntiles, n;
	uint32_t K;
};

INL const uint16_t *a_tile(const struct a_src *a, size_t t, size_t *stride)
{
	if (a->tail && t == a->ntiles - 1) {
		*stride = (size_t)a->K * 2;
		return a->tail;
	}
	*stride = a->stride;
	return (const uint16_t *)((const char *)a->base + t * 16 * a->stride);
}

/* A over n rows at rows[0..n) (stride ld elements) or, tok != NULL, the rows
 * rows + tok[j] * ld: gathered into buf (then K apart), a partial last tile
 * copied zero-padded into buf too. */
static void a_setup(struct a_src *a, const uint16_t *rows, size_t ld, const struct group *g,
		    size_t j0, size_t n, uint32_t K, uint16_t *buf)
{
	size_t full = n / 16 * 16;

	a->n = n;
	a->K = K;
	a->ntiles = (n + 15) / 16;
	a->tail = NULL;
	if (g && g->tok) {
		for (size_t j = 0; j < n; j++)
			memcpy(buf + j * K, rows + (size_t)g->tok[j0 + j] * ld, (size_t)K * 2);
		memset(buf + n * K, 0, (a->ntiles * 16 - n) * K * 2);
		a->base = buf;
		a->stride = (size_t)K * 2;
		return;
	}
	a->base = rows + (g ? g->first + j0 : j0) * ld;
	a->stride = ld * 2;
	if (full < n) {
		for (size_t j = full; j < n; j++)
			memcpy(buf + (j - full) * K, a->base + j * ld, (size_t)K * 2);
		memset(buf + (n - full) * K, 0, (16 - (n - full)) * (size_t)K * 2);
		a->tail = buf;
	}
}

/*
 * C tiles 0/1 = A tile t x B columns c0 / c1 of the panel, 2/3 the same for
 * tile t + 1 (two), over all KP pairs; stored into cb [4][16][16].
 */
INL void amx_run(const uint16_t *a0, size_t s0, const uint16_t *a1, size_t s1, const int two,
		 const uint32_t *P, uint32_t kp0, uint32_t kp1, unsigned c0, unsigned c1, float *cb)
{
	_tile_zero(0);
	_tile_zero(1);
	if (two) {
		_tile_zero(2);
		_tile_zero(3);
	}
	for (uint32_t kp = kp0; kp < kp1; kp += 16) {
		const uint32_t *p = P + (size_t)kp * PK_ROWS;

		_tile_loadd(4, a0 + 2 * kp, s0);
		_tile_loadd(6, p + c0, PK_ROWS * 4);
		_tile_loadd(7, p + c1, PK_ROWS * 4);
		_tile_dpbf16ps(0, 4, 6);
		_tile_dpbf16ps(1, 4, 7);
		if (two) {
			_tile_loadd(5, a1 + 2 * kp, s1);
			_tile_dpbf16ps(2, 5, 6);
			_tile_dpbf16ps(3, 5, 7);
		}
	}
	_tile_stored(0, cb, 64);
	_tile_stored(1, cb + 256, 64);
	if (two) {
		_tile_stored(2, cb + 512, 64);
		_tile_stored(3, cb + 768, 64);
	}
}

/*
 * The same over all KP pairs into cb.  S (FP8): the panel's block scales,
 * S[kb][64 rows], blocks of bcp pairs (a multiple of 16): each block's
 * products summed in the tiles, stored to cb + 1024 and added, times the
 * rows' scales, into cb in block order, as bf16_gemm.c's tile() does.
 */
INL void amx_block(const struct a_src *a, size_t t, const int two, const uint32_t *P,
		   uint32_t KP, const float *S, uint32_t bcp, unsigned c0, unsigned c1, float *cb)
{
	size_t s0, s1 = 0;
	const uint16_t *a0 = a_tile(a, t, &s0), *a1 = two ? a_tile(a, t + 1, &s1) : NULL;
	float *blk = cb + 1024;

	if (!S) {
		amx_run(a0, s0, a1, s1, two, P, 0, KP, c0, c1, cb);
		return;
	}
	for (uint32_t kp0 = 0, kb = 0; kp0 < KP; kp0 += bcp, kb++) {
		amx_run(a0, s0, a1, s1, two, P, kp0, KP - kp0 < bcp ? KP : kp0 + bcp, c0, c1, blk);
		for (unsigned q = 0; q < (two ? 4u : 2u); q++) {
			__m512 sv = _mm512_loadu_ps(S + (size_t)kb * PK_ROWS + (q & 1 ? c1 : c0));

			for (unsigned m = 0; m < 16; m++) {
				float *o = cb + q * 256 + m * 16;
				__m512 v = _mm512_loadu_ps(blk + q * 256 + m * 16);

				_mm512_storeu_ps(o, kb ? _mm512_fmadd_ps(v, sv, _mm512_loadu_ps(o))
						       : _mm512_mul_ps(v, sv));
			}
		}
	}
}

static __mmask16 rows_mask(int left)
{
	return left >= 16 ? 0xffff : left <= 0 ? 0 : (__mmask16)((1u << left) - 1);
}

/* scratch: the panel (expert_b16_scratch), then A rows, then C. */
static uint16_t *a_buf(const struct expert_w *e, void *scratch)
{
	return (uint16_t *)((char *)scratch +
			    ((expert_b16_scratch(e->H, e->inter) + 63) & ~(size_t)63));
}

static float *c_buf(const struct expert_w *e, void *scratch)
{
	uint32_t K = e->H > e->inter ? e->H : e->inter;

	return (float *)(a_buf(e, scratch) + (size_t)(AMX_GATHER + 16) * K);
}

size_t amx_gemm_scratch(uint32_t H, uint32_t inter)
{
	uint32_t K = H > inter ? H : inter;

	return ((expert_b16_scratch(H, inter) + 63) & ~(size_t)63) +
	       (size_t)(AMX_GATHER + 16) * K * 2 + 8 * 256 * 4;
}

/* FP8: blocks of whole k-steps (32 columns) and of whole 16-row tiles. */
static int amx_fits(const struct expert_w *e)
{
	return e->H % 32 == 0 && e->inter % 32 == 0 &&
	       (!e->fp8 || (e->bc % 32 == 0 && e->br % 16 == 0));
}

void amx_gemm_act(const struct expert_w *e, const uint16_t *xb, size_t ldx, const struct group *g,
		  uint16_t *act, size_t lda, uint32_t r0, uint32_t r1, void *scratch)
{
	uint32_t H = e->H, KP = H / 2, bcp = e->bc / 2;
	float *cb = c_buf(e, scratch);
	size_t chunk = g->tok ? AMX_GATHER : g->n;

	if (!amx_fits(e)) {
		b16_gemm_act(e, xb, ldx, g, act, lda, r0, r1, scratch);
		return;
	}
	amx_begin();
	for (size_t j0 = 0; j0 < g->n; j0 += chunk) {
		size_t n = g->n - j0 < chunk ? g->n - j0 : chunk;
		struct a_src a;

		a_setup(&a, xb, ldx, g, j0, n, H, a_buf(e, scratch));
		for (uint32_t i = r0; i < r1; i += PK_ROWS / 2) {
			uint32_t *P = e->packed ? b16_packed_act(e, i) : scratch;
			const float *S = e->fp8 ? (const float *)(P + (size_t)PK_ROWS * KP) : NULL;

			if (!e->packed)
				b16_pack_act(e, i, r1, P);
			for (size_t t = 0; t < a.ntiles; t += 2) {
				int two = t + 1 < a.ntiles;

				/* gate rows 16q.. with up rows 16q.. (panel columns 32 + 16q) */
				for (unsigned q = 0; q < 2; q++) {
					__mmask16 keep = rows_mask((int)(r1 - i) - 16 * (int)q);

					if (!keep)
						break;
					if (two)
						amx_block(&a, t, 1, P, KP, S, bcp, 16 * q,
							  32 + 16 * q, cb);
					else
						amx_block(&a, t, 0, P, KP, S, bcp, 16 * q,
							  32 + 16 * q, cb);
					for (unsigned s = 0; s < (two ? 2u : 1u); s++)
						for (unsigned m = 0; m < 16 && (t + s) * 16 + m < n; m++) {
							const float *c = cb + s * 512 + m * 16;
							__m512 v = _mm512_mul_ps(
								silu16(_mm512_loadu_ps(c)),
								_mm512_loadu_ps(c + 256));
							size_t j = j0 + (t + s) * 16 + m;

							_mm256_mask_storeu_epi16(
								act + j * lda + i + 16 * q, keep,
								(__m256i)_mm512_cvtneps_pbh(v));
						}
				}
			}
		}
	}
	_tile_release();
}

void amx_gemm_down(const struct expert_w *e, const uint16_t *act, size_t lda,
		   const struct group *g, float *y, uint32_t h0, uint32_t h1, void *scratch)
{
	uint32_t H = e->H, KP = e->inter / 2, bcp = e->bc / 2;
	float *cb = c_buf(e, scratch);
	struct a_src a;

	if (!amx_fits(e)) {
		b16_gemm_down(e, act, lda, g, y, h0, h1, scratch);
		return;
	}
	amx_begin();
	a_setup(&a, act, lda, NULL, 0, g->n, e->inter, a_buf(e, scratch));
	for (uint32_t h = h0; h < h1; h += PK_ROWS) {
		uint32_t *P = e->packed ? b16_packed_down(e, h) : scratch;
		const float *S = e->fp8 ? (const float *)(P + (size_t)PK_ROWS * KP) : NULL;

		if (!e->packed)
			b16_pack_down(e, h, h1, P);
		for (size_t t = 0; t < a.ntiles; t += 2) {
			int two = t + 1 < a.ntiles;

			for (unsigned q = 0; q < 2; q++) {
				if ((int)(h1 - h) - 32 * (int)q <= 0)
					break;
				if (two)
					amx_block(&a, t, 1, P, KP, S, bcp, 32 * q, 32 * q + 16,
						  cb);
				else
					amx_block(&a, t, 0, P, KP, S, bcp, 32 * q, 32 * q + 16,
						  cb);
				for (unsigned s = 0; s < (two ? 2u : 1u); s++)
					for (unsigned m = 0; m < 16 && (t + s) * 16 + m < g->n; m++) {
						size_t j = (t + s) * 16 + m;
						float *yj = y + group_tok(g, j) * H + h + 32 * q;
						__m512 w = _mm512_set1_ps(group_w(g, j));

						for (unsigned c = 0; c < 2; c++) {
							__mmask16 k = rows_mask((int)(h1 - h) -
										32 * (int)q - 16 * (int)c);
							const float *cv = cb + s * 512 + c * 256 + m * 16;
							__m512 yv = _mm512_maskz_loadu_ps(k, yj + 16 * c);

							yv = _mm512_fmadd_ps(w, _mm512_loadu_ps(cv), yv);
							_mm512_mask_storeu_ps(yj + 16 * c, k, yv);
						}
					}
			}
		}
	}
	_tile_release();
}

#pragma GCC pop_options

/* CPUID leaf 7: AMX-BF16 (EDX bit 22) and AMX-TILE (bit 24); then the
 * kernel's grant of the tile data state to this process (Linux 5.16+). */
static int amx_ok;
static pthread_once_t amx_once = PTHREAD_ONCE_INIT;

static void amx_probe(void)
{
	unsigned a, b, c, d;

	__asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(7), "c"(0));
	amx_ok = (d >> 22 & 1) && (d >> 24 & 1) &&
		 syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */,
			 18 /* XFEATURE_XTILEDATA */) == 0;
}

int amx_usable(void)
{
	pthread_once(&amx_once, amx_probe);
	return amx_ok;
}

#endif
