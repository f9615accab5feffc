/*
 * FP8 E4M3 weights for the cpu backend: decoding rows with their block
 * scales (used by the sgemm path into its scratch), and the small-group
 * kernels for FP8.  The AVX-512 and AVX2 ones (fp8_impl.h, instantiated below,
 * picked by the isa table of kernels.c) decode in registers inside the dot
 * products, so a weight is read from memory once, as one byte, and nothing is
 * written; the generic one decodes one row at a time into an L1-sized buffer
 * and takes its dot products there.  Dot products accumulate in fp32 in a
 * fixed order.  Measured (S1, one thread, 5 alternating rounds of
 * bench/expert_bench -s S1 -d bf16,fp8 -t 1 -T 1,4,16,64 -P none against the
 * row-decode kernel this replaced, medians, machine shared and noisy): fp8
 * T=1 6.2 ms (was 51), T=4 19.9 (133), T=16 69 (378), T=64 217 (651) against
 * bf16 9.7, 27, 83, 206 in the same runs.  With isa=avx2 fp8 about equals
 * bf16.  At 64 tokens (6 per expert) decoding costs about what the bytes
 * save: there the kernel is compute-bound.
 */
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "plugins/cpu/kernels.h"

float fp8_e4m3_value(uint8_t v)
{
	int exp = (v >> 3) & 0xf, man = v & 7;
	float f;

	if ((v & 0x7f) == 0x7f)
		return NAN;
	/* bias 7; exponent 0 is subnormal: man * 2^-9 */
	f = exp ? ldexpf((float)(8 + man), exp - 10) : ldexpf((float)man, -9);
	return v & 0x80 ? -f : f;
}

/* Each code's value, and its value times 2^-8 (what the register decode of
 * the ISA kernels yields, for their scalar tails). */
static float fp8_lut[256], fp8_lut_scaled[256];
static pthread_once_t fp8_once = PTHREAD_ONCE_INIT;

static void fp8_lut_init(void)
{
	for (unsigned i = 0; i < 256; i++) {
		fp8_lut[i] = fp8_e4m3_value((uint8_t)i);
		fp8_lut_scaled[i] = fp8_lut[i] * 0x1p-8f;
	}
}

void fp8_init(void)
{
	pthread_once(&fp8_once, fp8_lut_init);
}

typedef uint8_t v8b __attribute__((vector_size(8)));
typedef uint32_t v8u __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));
typedef float v8f __attribute__((vector_size(32)));

/*
 * Eight e4m3 codes to fp32 times s, exactly, without a table: the 7 bits
 * below the sign shifted into an fp32's exponent and mantissa and the bias
 * moved from 7 to 127 are the value for a normal code; a subnormal code
 * (exponent 0, value man * 2^-9) comes out as 2^-7 * (1 + man/8), so it is
 * corrected to 2 * (that - 2^-7).  NaN codes never get here (the loader
 * refuses them).
 */
static inline __attribute__((always_inline)) void fp8x8(const uint8_t *q, float s, float *d)
{
	v8b b;
	v8u u, bits, sub, sign;
	v8f f, fs;

	memcpy(&b, q, sizeof(b));
	u = __builtin_convertvector(b, v8u);
	sign = (u & 0x80) << 24;
	bits = ((u & 0x7f) << 20) + (120u << 23);
	memcpy(&f, &bits, sizeof(f));
	fs = (f - 0x1p-7f) * 2.0f;
	sub = (v8u)((u & 0x78) == 0);
	memcpy(&u, &fs, sizeof(u));
	bits = (sub & u) | (~sub & bits);
	bits |= sign;
	memcpy(&f, &bits, sizeof(f));
	f *= s;
	memcpy(d, &f, sizeof(f));
}

/* Rows r..r+nr of an FP8 matrix with K columns, times their block scales. */
/* Compiled for each instruction set and picked at load time (an ifunc): the
 * generic x86-64 build widens the bytes one by one. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11
#define FP8_CLONES __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#elif defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define FP8_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define FP8_CLONES
#endif

FP8_CLONES void fp8_decode_rows(const uint8_t *q, const float *scale, uint32_t br, uint32_t bc,
		       uint32_t r, uint32_t nr, uint32_t K, float *restrict dst)
{
	uint32_t scols = (K + bc - 1) / bc;

	pthread_once(&fp8_once, fp8_lut_init);
	for (uint32_t i = 0; i < nr; i++) {
		const uint8_t *row = q + (size_t)(r + i) * K;
		const float *srow = scale + (size_t)((r + i) / br) * scols;
		float *d = dst + (size_t)i * K;

		for (uint32_t c0 = 0, b = 0; c0 < K; c0 += bc, b++) {
			uint32_t c1 = K - c0 < bc ? K : c0 + bc;
			float s = srow[b];

			uint32_t c = c0;

			for (; c + 8 <= c1; c += 8)
				fp8x8(row + c, s, d + c);
			for (; c < c1; c++)
				d[c] = fp8_lut[row[c]] * s;
		}
	}
}

typedef float v16f __attribute__((vector_size(64)));

/* a . b over n floats: 16 lanes, then the lanes in a fixed order, then the tail. */
static inline __attribute__((always_inline)) float dot(const float *a, const float *b, uint32_t n)
{
	v16f acc = { 0 };
	float t[16], sum = 0;
	uint32_t i = 0;

	for (; i + 16 <= n; i += 16) {
		v16f va, vb;

		memcpy(&va, a + i, sizeof(va));
		memcpy(&vb, b + i, sizeof(vb));
		acc += va * vb;
	}
	memcpy(t, &acc, sizeof(t));
	for (unsigned w = 8; w; w /= 2)
		for (unsigned l = 0; l < w; l++)
			t[l] += t[l + w];
	sum = t[0];
	for (; i < n; i++)
		sum += a[i] * b[i];
	return sum;
}

FP8_CLONES void expert_fp8_act_generic(const struct expert_w *e, const float *x,
				       const struct group *g, float *act, uint32_t r0, uint32_t r1,
				       float *scratch)
{
	uint32_t H = e->H, In = e->inter;
	float *gr = scratch, *ur = scratch + H;

	for (uint32_t i = r0; i < r1; i++) {
		fp8_decode_rows(e->gate, e->gate_s, e->br, e->bc, i, 1, H, gr);
		fp8_decode_rows(e->up, e->up_s, e->br, e->bc, i, 1, H, ur);
		for (size_t j = 0; j < g->n; j++) {
			const float *xj = x + group_tok(g, j) * H;

			act[j * In + i] = silu(dot(gr, xj, H)) * dot(ur, xj, H);
		}
	}
}

FP8_CLONES void expert_fp8_down_generic(const struct expert_w *e, const float *act,
					const struct group *g, float *y, uint32_t h0, uint32_t h1,
					float *scratch)
{
	uint32_t H = e->H, In = e->inter;

	for (uint32_t h = h0; h < h1; h++) {
		fp8_decode_rows(e->down, e->down_s, e->br, e->bc, h, 1, In, scratch);
		for (size_t j = 0; j < g->n; j++)
			y[group_tok(g, j) * H + h] += group_w(g, j) * dot(scratch, act + j * In, In);
	}
}

/* Bytes ahead of each row to prefetch in the ISA kernels (two rows stream at
 * once; S1 fp8 with 1024, 2048, 4096 and 8192 alternated, one thread: T=1
 * 5.6-7.8 ms for all, no difference above the noise).  Tokens whose
 * accumulators stay in registers (2 rows x 8 tokens: 16 of the 32 zmm). */
#ifndef FP8_PREFETCH
#define FP8_PREFETCH 2048
#endif
#ifndef FP8_NB
#define FP8_NB 8
#endif

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

/*
 * Codes to fp16 bit patterns worth value * 2^-8, exactly: sign-extending a
 * code to 16 bits and shifting it left by 7 puts its exponent and mantissa
 * under an fp16's low four exponent bits and top three mantissa bits (the
 * biases 7 and 15 differ by 8, and an e4m3 subnormal lands on an fp16
 * subnormal) and copies the sign to bits 14 and 15; bit 14 is cleared and
 * vcvtph2ps widens the halves to fp32.  NaN codes never get here.
 */
#pragma GCC push_options
#pragma GCC target("avx512f,avx2,f16c,fma")
static inline __attribute__((always_inline)) __m512 fp8_dec16(const uint8_t *q)
{
	__m256i h = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)q));

	h = _mm256_and_si256(_mm256_slli_epi16(h, 7), _mm256_set1_epi16((short)0xbfff));
	return _mm512_cvtph_ps(h);
}

#define FP8_ISA avx512
#define FP8_VW 16
#define FP8_DEC(q) ((vf_avx512)fp8_dec16(q))
#include "plugins/cpu/fp8_impl.h"
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,f16c,fma")
static inline __attribute__((always_inline)) __m256 fp8_dec8(const uint8_t *q)
{
	__m128i h = _mm_cvtepi8_epi16(_mm_loadl_epi64((const __m128i *)q));

	h = _mm_and_si128(_mm_slli_epi16(h, 7), _mm_set1_epi16((short)0xbfff));
	return _mm256_cvtph_ps(h);
}

#define FP8_ISA avx2
#define FP8_VW 8
#define FP8_DEC(q) ((vf_avx2)fp8_dec8(q))
#include "plugins/cpu/fp8_impl.h"
#pragma GCC pop_options

#endif
