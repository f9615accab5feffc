/*
 * precision = bf16 on CPUs with AMX-BF16 (Sapphire Rapids and later), large
 * groups: the GEMM on tile instructions.  isa = amx is avx512bf16 (bf16.c's
 * row kernels for small groups) with these halves for large ones.
 *
 * C[rows][tokens] += A[rows][K] . B[K][tokens]: A is 16 weight rows as
 * stored (BF16 read in place with the matrix's own stride, so the weights
 * are never packed or copied; FP8 decoded to bf16, exactly, one scale block
 * of 16 rows at a time into L1, see amx_fp8), B the activations, packed
 * once per call into the pair-interleaved layout TDPBF16PS wants (16
 * tokens' pair k side by side, by 16x16 dword transposes: tokens are far
 * fewer bytes than weights).
 * Eight tiles: four C (2 weight strips x 2 token tiles), two A, two B; per
 * 32 columns of K, 4 tile loads and 4 TDPBF16PS (16 x 16 x 32 multiply-adds
 * each).  The act half takes the gate strip and the matching up strip, so
 * silu(gate) * up is taken on the C tiles (stored to L1), transposed to
 * tokens and written as bf16; the down half transposes C and adds w * C
 * into y.  Tokens go in chunks of up to amx_tokens() (1 MB of packed
 * activations), so the chunk and the two strips stay in L2 while every
 * token tile passes.  FP8 block scales: each 128-column block is summed in
 * the tiles, stored, and added times its scale in block order.  FP8 goes
 * block by block (decode both strips' block, then every token tile), with
 * the next strip pair's codes prefetched into L2 as the one sequential
 * stream they are: S1 fp8 layer, 2 threads, 4 alternated rounds against
 * whole-strip decode into L2 scratch, cold ms: T=64 46.3 -> 41.2, T=256
 * 62.8 -> 59.7, T=1024 130 -> 127, T=16 even; without the prefetch the
 * blocks' 16 rows side by side were slower (T=64 56, T=256 81).  perf puts
 * most of amx_fp8's own time on those prefetches (the queue to memory is
 * full: they are what waits for DRAM).  Tried and not kept: each k-step
 * alternating between two sets of A and B tiles (the tiles are not
 * renamed, so a load waits for the product still reading its tile; perf put
 * 80% of amx_run's time after the A loads), one token tile after the other:
 * one S1 expert, gemm_cmp, no faster at 4 tokens, 10% slower at 64-300.
 *
 * Taken where H and I are multiples of 32 (every release; FP8 blocks of
 * whole k-steps and 16-row strips); otherwise the call goes to
 * bf16_gemm.c's packed vdpbf16ps GEMM.  The tile state is per thread: every
 * call loads the configuration and releases it at the end; the kernel
 * grants the tile data to the process once (arch_prctl
 * ARCH_REQ_XCOMP_PERM, amx_usable()).  prepack = on packs panels this GEMM
 * does not read; with isa = amx it only costs memory.
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

/* Activations packed per chunk of tokens: up to 1 MB of them (256 tokens of
 * S1's H = 2048, 64 of V3's 7168), so they stay in L2 with the strips. */
static size_t amx_tokens(uint32_t K)
{
	size_t n = ((size_t)1 << 20) / ((size_t)K * 2) / 16 * 16;

	return n < 16 ? 16 : n > 256 ? 256 : n;
}

struct tile_cfg {
	uint8_t palette, start;
	uint8_t reserved[14];
	uint16_t colsb[16];
	uint8_t rows[16];
};

/* Tiles 0-3: C, 4-5: A (weights), 6-7: B (activations), 16 rows x 64 bytes. */
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

/* scratch: the packed activations, two weight strips (BF16 rows copied,
 * FP8 blocks decoded), two FP8 blocks' sums and the C tiles of every token
 * tile pair of a chunk, after what bf16_gemm.c needs (the fallback's panel). */
struct amx_scratch {
	uint32_t *xt;
	uint16_t *strip[2];
	float *blk, *cp;
	size_t tok;
};

static size_t up64(size_t n)
{
	return (n + 63) & ~(size_t)63;
}

static struct amx_scratch amx_scratch(const struct expert_w *e, void *scratch)
{
	uint32_t K = e->H > e->inter ? e->H : e->inter;
	char *p = (char *)scratch + up64(expert_b16_scratch(e->H, e->inter));
	struct amx_scratch a;

	a.tok = amx_tokens(K);
	a.xt = (uint32_t *)p;
	p += up64(a.tok * K * 2);
	a.strip[0] = (uint16_t *)p;
	a.strip[1] = a.strip[0] + (size_t)16 * K;
	p += up64((size_t)32 * K * 2);
	a.blk = (float *)p;
	a.cp = a.blk + 2048;
	return a;
}

size_t amx_gemm_scratch(uint32_t H, uint32_t inter)
{
	uint32_t K = H > inter ? H : inter;

	return up64(expert_b16_scratch(H, inter)) + up64(amx_tokens(K) * K * 2) +
	       up64((size_t)32 * K * 2) + (2048 + (amx_tokens(K) / 16 + 1) / 2 * 1024) * 4;
}

/*
 * Tokens' rows rows[j] (n of them, K bf16 each, K a multiple of 32) into
 * xt as B tiles: tile t, pair kp at xt + (t * K/2 + kp) * 16, 16 tokens'
 * pair kp side by side (tokens past n: zeros), by 16x16 dword transposes.
 */
static void pack_tokens(const uint16_t *const *rows, size_t n, uint32_t K, uint32_t *xt)
{
	uint32_t KP = K / 2;

	for (size_t t = 0; t < (n + 15) / 16; t++)
		for (uint32_t kp0 = 0; kp0 < KP; kp0 += 16) {
			__m512i r[16];

			for (unsigned m = 0; m < 16; m++)
				r[m] = t * 16 + m < n ? _mm512_loadu_si512(rows[t * 16 + m] + 2 * kp0)
						      : _mm512_setzero_si512();
			tr16(r);
			for (unsigned p = 0; p < 16; p++)
				_mm512_storeu_si512(xt + ((size_t)t * KP + kp0 + p) * 16, r[p]);
		}
}

/* Token rows of the chunk j0.. (n), x rows by token id or act rows in order. */
static void pack_chunk(const uint16_t *x, size_t ld, const struct group *g, size_t j0, size_t n,
		       uint32_t K, uint32_t *xt)
{
	const uint16_t *rows[256];

	for (size_t j = 0; j < n; j++)
		rows[j] = x + (g ? group_tok(g, j0 + j) : j0 + j) * ld;
	pack_tokens(rows, n, K, xt);
}

/*
 * BF16 rows r..r+15 of a matrix of R rows x K as an A source: in place (all
 * 16 rows there), else copied into buf, rows past R zeros.  Returns the
 * rows; their stride is K * 2 bytes.
 */
static const uint16_t *strip(const void *w, uint32_t r, uint32_t R, uint32_t K, uint16_t *buf)
{
	uint32_t have = R - r < 16 ? R - r : 16;

	if (have == 16)
		return (const uint16_t *)w + (size_t)r * K;
	memcpy(buf, (const uint16_t *)w + (size_t)r * K, (size_t)have * K * 2);
	memset(buf + (size_t)have * K, 0, (size_t)(16 - have) * K * 2);
	return buf;
}

/* FP8: columns [c, c + n) (n a multiple of 32) of `have` rows of codes from
 * q (row stride K) decoded into buf (row stride n), up to 16 rows, zeros. */
static void decode_block(const uint8_t *q, uint32_t have, uint32_t K, uint32_t c, uint32_t n,
			 uint16_t *buf)
{
	for (uint32_t i = 0; i < 16; i++) {
		uint16_t *dst = buf + (size_t)i * n;
		const uint8_t *src = q + (size_t)i * K + c;
		uint32_t j = 0;

		if (i >= have) {
			memset(dst, 0, (size_t)n * 2);
			continue;
		}
		for (; j + 64 <= n; j += 64) {
			__m512i w0, w1;

			fp8_to_bf16_64(src + j, &w0, &w1);
			_mm512_storeu_si512(dst + j, w0);
			_mm512_storeu_si512(dst + j + 32, w1);
		}
		if (j < n)
			_mm512_storeu_si512(dst + j, fp8_to_bf16(src + j, tail_mask(n - j)));
	}
}

/*
 * C tiles: 0 = A0 x B0, 1 = A1 x B0, 2 = A0 x B1, 3 = A1 x B1 (two), over
 * nkp pairs (a0, a1: 16 rows at a stride of sa bytes; b0, b1: 16 tokens'
 * pairs side by side), from zero; stored into cb [4][16 rows][16 tokens].
 */
INL void amx_run(const uint16_t *a0, const uint16_t *a1, size_t sa, const uint32_t *b0,
		 const uint32_t *b1, const int two, uint32_t nkp, float *cb)
{
	_tile_zero(0);
	_tile_zero(1);
	if (two) {
		_tile_zero(2);
		_tile_zero(3);
	}
	for (uint32_t kp = 0; kp < nkp; kp += 16) {
		_tile_loadd(4, a0 + 2 * kp, sa);
		_tile_loadd(5, a1 + 2 * kp, sa);
		_tile_loadd(6, b0 + (size_t)kp * 16, 64);
		_tile_dpbf16ps(0, 4, 6);
		_tile_dpbf16ps(1, 5, 6);
		if (two) {
			_tile_loadd(7, b1 + (size_t)kp * 16, 64);
			_tile_dpbf16ps(2, 4, 7);
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

/* FP8: cb (+)= blk * the block's scale, per C tile (q odd: strip 1). */
INL void scale_add(const float *blk, float *cb, const int two, const float *s0, const float *s1,
		   uint32_t kb)
{
	for (unsigned q = 0; q < (two ? 4u : 2u); q++) {
		__m512 sv = _mm512_set1_ps((q & 1 ? s1 : s0)[kb]);

		for (unsigned m = 0; m < 16; m++) {
			float *o = cb + q * 256 + m * 16;
			__m512 v = _mm512_loadu_ps(blk + q * 256 + m * 16);

			_mm512_storeu_ps(o, kb ? _mm512_fmadd_ps(v, sv, _mm512_loadu_ps(o))
					       : _mm512_mul_ps(v, sv));
		}
	}
}

/* Token tiles t, t + 1 of xt (two) or t alone (K / 2 = KP pairs each) from
 * pair kp0 on: amx_run with `two` a constant in each branch. */
static void amx_pair(const uint16_t *a0, const uint16_t *a1, size_t sa, const uint32_t *xt,
		     size_t t, int two, uint32_t KP, uint32_t kp0, uint32_t nkp, float *cb)
{
	const uint32_t *b0 = xt + (t * KP + kp0) * 16;

	if (two)
		amx_run(a0, a1, sa, b0, b0 + KP * 16, 1, nkp, cb);
	else
		amx_run(a0, a1, sa, b0, NULL, 0, nkp, cb);
}

/* BF16: strips a0, a1 (in place or copied, row stride K) times all nt token
 * tiles of xt into sc->cp (tiles t, t + 1 at cp + t / 2 * 1024). */
static void amx_b16(const uint16_t *a0, const uint16_t *a1, uint32_t K, const uint32_t *xt,
		    size_t nt, const struct amx_scratch *sc)
{
	for (size_t t = 0; t < nt; t += 2)
		amx_pair(a0, a1, (size_t)K * 2, xt, t, t + 1 < nt, K / 2, 0, K / 2,
			 sc->cp + t / 2 * 1024);
}

/* Prefetches into L2 of the next strip pair's codes, spread over the blocks
 * of this one: [p, p + len) in nb slices, slice kb now. */
struct next_codes {
	const uint8_t *p[2];
	size_t len[2];
};

static void prefetch_slice(const struct next_codes *nx, uint32_t kb, uint32_t nb)
{
	for (int i = 0; i < 2; i++) {
		size_t lo = nx->len[i] * kb / nb & ~(size_t)63, hi = nx->len[i] * (kb + 1) / nb;

		for (size_t o = lo; o < hi; o += 64)
			_mm_prefetch((const char *)nx->p[i] + o, _MM_HINT_T1);
	}
}

/*
 * FP8: strips of codes q0, q1 (n0, n1 rows of 16, row stride K; s0, s1 their
 * scale rows, one per block of bc columns) times all nt token tiles into
 * sc->cp.  Block by block: both strips' block decoded (exactly) into an L1
 * buffer (the next block into the buffer's other half, before this one's
 * tiles), summed in the tiles for every token tile, stored to one of two
 * sc->blk buffers and added, times its scale, into cp in block order, one
 * step behind, so that the vector adds run while the tiles sum the next.
 * Decoding a block at a time reads 16 rows side by side, so the next strip
 * pair's codes (nx) are prefetched meanwhile as the sequential stream they
 * are in memory.
 */
static void amx_fp8(const uint8_t *q0, uint32_t n0, const uint8_t *q1, uint32_t n1, uint32_t K,
		    const float *s0, const float *s1, uint32_t bc, const uint32_t *xt, size_t nt,
		    const struct next_codes *nx, const struct amx_scratch *sc)
{
	uint32_t nb = (K + bc - 1) / bc, runs = 0;
	float *pend = NULL, *pend_cp = NULL;
	int pend_two = 0;
	uint32_t pend_kb = 0;

	decode_block(q0, n0, K, 0, K < bc ? K : bc, sc->strip[0]);
	decode_block(q1, n1, K, 0, K < bc ? K : bc, sc->strip[1]);
	for (uint32_t kb = 0; kb < nb; kb++) {
		uint32_t c = kb * bc, n = K - c < bc ? K - c : bc, off = (kb & 1) * 16 * bc;

		if (kb + 1 < nb) {      /* the next block, into the other half */
			uint32_t c1 = c + bc, n1c = K - c1 < bc ? K - c1 : bc;

			decode_block(q0, n0, K, c1, n1c, sc->strip[0] + (16 * bc - off));
			decode_block(q1, n1, K, c1, n1c, sc->strip[1] + (16 * bc - off));
		}
		prefetch_slice(nx, kb, nb);
		for (size_t t = 0; t < nt; t += 2, runs++) {
			float *out = sc->blk + (runs & 1) * 1024;
			int two = t + 1 < nt;

			amx_pair(sc->strip[0] + off, sc->strip[1] + off, (size_t)n * 2, xt, t, two,
				 K / 2, c / 2, n / 2, out);
			if (pend)
				scale_add(pend, pend_cp, pend_two, s0, s1, pend_kb);
			pend = out;
			pend_cp = sc->cp + t / 2 * 1024;
			pend_two = two;
			pend_kb = kb;
		}
	}
	if (pend)
		scale_add(pend, pend_cp, pend_two, s0, s1, pend_kb);
}

/* A [16 rows][16 tokens] C tile, transposed: v[m] = token m's 16 rows. */
INL void c_tokens(const float *c, __m512 v[16])
{
	__m512i r[16];

	for (unsigned i = 0; i < 16; i++)
		r[i] = _mm512_castps_si512(_mm512_loadu_ps(c + 16 * i));
	tr16(r);
	for (unsigned i = 0; i < 16; i++)
		v[i] = _mm512_castsi512_ps(r[i]);
}

static __mmask16 rows_mask(int left)
{
	return left >= 16 ? 0xffff : left <= 0 ? 0 : (__mmask16)((1u << left) - 1);
}

/* FP8: the scale row of matrix rows r.. (NULL for BF16). */
static const float *scale_row(const struct expert_w *e, const float *s, uint32_t r, uint32_t K)
{
	return e->fp8 ? s + (size_t)(r / e->br) * ((K + e->bc - 1) / e->bc) : NULL;
}

/* FP8: blocks of whole k-steps (32 columns) and of whole 16-row strips. */
static int amx_fits(const struct expert_w *e)
{
	return e->H % 32 == 0 && e->inter % 32 == 0 &&
	       (!e->fp8 || (e->bc % 32 == 0 && e->br % 16 == 0));
}

void amx_gemm_act(const struct expert_w *e, const uint16_t *xb, size_t ldx, const struct group *g,
		  uint16_t *act, size_t lda, uint32_t r0, uint32_t r1, void *scratch)
{
	uint32_t H = e->H, In = e->inter;
	struct amx_scratch sc = amx_scratch(e, scratch);

	if (!amx_fits(e)) {
		b16_gemm_act(e, xb, ldx, g, act, lda, r0, r1, scratch);
		return;
	}
	amx_begin();
	for (size_t j0 = 0; j0 < g->n; j0 += sc.tok) {
		size_t n = g->n - j0 < sc.tok ? g->n - j0 : sc.tok, nt = (n + 15) / 16;

		pack_chunk(xb, ldx, g, j0, n, H, sc.xt);
		for (uint32_t i = r0; i < r1; i += 16) {
			__mmask16 keep = rows_mask((int)(r1 - i));

			if (e->fp8) {
				uint32_t nr = In - i < 16 ? In - i : 16;
				uint32_t nn = i + 16 < r1 ? (In - i - 16 < 16 ? In - i - 16 : 16) : 0;
				const uint8_t *qg = (const uint8_t *)e->gate + (size_t)i * H;
				const uint8_t *qu = (const uint8_t *)e->up + (size_t)i * H;
				struct next_codes nx = { { qg + 16 * H, qu + 16 * H },
							 { (size_t)nn * H, (size_t)nn * H } };

				if (i == r0) {  /* the first pair, as one stream each */
					struct next_codes first = { { qg, qu },
								    { (size_t)nr * H, (size_t)nr * H } };

					prefetch_slice(&first, 0, 1);
				}
				amx_fp8(qg, nr, qu, nr, H, scale_row(e, e->gate_s, i, H),
					scale_row(e, e->up_s, i, H), e->bc, sc.xt, nt, &nx, &sc);
			} else {
				amx_b16(strip(e->gate, i, In, H, sc.strip[0]),
					strip(e->up, i, In, H, sc.strip[1]), H, sc.xt, nt, &sc);
			}
			for (size_t t = 0; t < nt; t += 2) {
				int two = t + 1 < nt;

				for (unsigned s = 0; s < (two ? 2u : 1u); s++) {
					const float *c = sc.cp + t / 2 * 1024 + s * 512;
					__m512i v[16];

					for (unsigned r = 0; r < 16; r++)
						v[r] = _mm512_castps_si512(_mm512_mul_ps(
							silu16(_mm512_loadu_ps(c + 16 * r)),
							_mm512_loadu_ps(c + 256 + 16 * r)));
					tr16(v);        /* v[m]: token m's 16 rows */
					for (unsigned m = 0; m < 16 && (t + s) * 16 + m < n; m++)
						_mm256_mask_storeu_epi16(
							act + (j0 + (t + s) * 16 + m) * lda + i, keep,
							(__m256i)_mm512_cvtneps_pbh(
								_mm512_castsi512_ps(v[m])));
				}
			}
		}
	}
	_tile_release();
	if (r1 == In && lda > In)
		for (size_t j = 0; j < g->n; j++)
			act[j * lda + In] = 0;
}

void amx_gemm_down(const struct expert_w *e, const uint16_t *act, size_t lda,
		   const struct group *g, float *y, uint32_t h0, uint32_t h1, void *scratch)
{
	uint32_t H = e->H, In = e->inter;
	struct amx_scratch sc = amx_scratch(e, scratch);

	if (!amx_fits(e)) {
		b16_gemm_down(e, act, lda, g, y, h0, h1, scratch);
		return;
	}
	amx_begin();
	for (size_t j0 = 0; j0 < g->n; j0 += sc.tok) {
		size_t n = g->n - j0 < sc.tok ? g->n - j0 : sc.tok, nt = (n + 15) / 16;

		pack_chunk(act, lda, NULL, j0, n, In, sc.xt);
		for (uint32_t h = h0; h < h1; h += 32) {
			if (e->fp8) {
				const uint8_t *q0 = (const uint8_t *)e->down + (size_t)h * In;
				uint32_t n0 = H - h < 16 ? H - h : 16, n1 = n0;
				uint32_t nn = h + 32 < h1 ? (H - h - 32 < 32 ? H - h - 32 : 32) : 0;
				const uint8_t *q1 = q0;
				const float *s0 = scale_row(e, e->down_s, h, In), *s1 = s0;
				struct next_codes nx = { { q0 + (size_t)32 * In, NULL },
							 { (size_t)nn * In, 0 } };

				if (h + 16 < H) {
					q1 = q0 + (size_t)16 * In;
					n1 = H - h - 16 < 16 ? H - h - 16 : 16;
					s1 = scale_row(e, e->down_s, h + 16, In);
				}
				if (h == h0) {  /* the first pair, as one stream */
					struct next_codes first = {
						{ q0, NULL }, { (size_t)(n0 + (q1 != q0 ? n1 : 0)) * In, 0 }
					};

					prefetch_slice(&first, 0, 1);
				}
				amx_fp8(q0, n0, q1, n1, In, s0, s1, e->bc, sc.xt, nt, &nx, &sc);
			} else {
				const uint16_t *a0 = strip(e->down, h, H, In, sc.strip[0]);

				amx_b16(a0, h + 16 < H ? strip(e->down, h + 16, H, In, sc.strip[1]) : a0,
					In, sc.xt, nt, &sc);
			}
			for (size_t t = 0; t < nt; t += 2) {
				int two = t + 1 < nt;

				for (unsigned s = 0; s < (two ? 2u : 1u); s++)
					for (unsigned c = 0; c < 2; c++) {
						__mmask16 k = rows_mask((int)(h1 - h) - 16 * (int)c);
						__m512 v[16];

						if (!k)
							continue;
						c_tokens(sc.cp + t / 2 * 1024 + s * 512 + c * 256, v);
						for (unsigned m = 0; m < 16 && (t + s) * 16 + m < n; m++) {
							size_t j = j0 + (t + s) * 16 + m;
							float *yj = y + group_tok(g, j) * H + h + 16 * c;
							__m512 yv = _mm512_maskz_loadu_ps(k, yj);

							yv = _mm512_fmadd_ps(_mm512_set1_ps(group_w(g, j)),
									     v[m], yv);
							_mm512_mask_storeu_ps(yj, k, yv);
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
