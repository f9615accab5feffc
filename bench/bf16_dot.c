/*
 * Is bf16 decode bound by instructions or by memory?  Streams 128 MiB of
 * bf16 weight rows (2048 wide, 4 rows at a time, as the cpu plugin's small
 * kernel does) dotted with one fp32 token two ways, in the same run:
 *  - widen: each bf16 widened to fp32 (shift), fp32 FMA — what the plugin does;
 *  - dpbf16: AVX512-BF16 vdpbf16ps on the token split exactly enough into
 *    three bf16 parts (hi + mid + lo) to keep fp32 accuracy.
 * Prints GB/s of weights for both and their largest difference.  Built on
 * demand (make bench/bf16_dot); needs a CPU with AVX512-BF16.
 */
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>

#include "bench/util.h"

#define K 2048
#define ROWS 32768

#define TARGET __attribute__((target("avx512f,avx512bw,avx512bf16")))
#define WIDEN(p) \
	_mm512_castsi512_ps(_mm512_slli_epi32( \
		_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(p))), 16))

TARGET static void dot_widen(const uint16_t *w, const float *x, float *out)
{
	for (size_t r = 0; r < ROWS; r += 4) {
		__m512 acc[4] = { _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
				  _mm512_setzero_ps() };

		for (size_t i = 0; i < K; i += 16) {
			__m512 xv = _mm512_loadu_ps(x + i);

			for (size_t q = 0; q < 4; q++)
				acc[q] = _mm512_fmadd_ps(WIDEN(w + (r + q) * K + i), xv, acc[q]);
		}
		for (size_t q = 0; q < 4; q++)
			out[r + q] = _mm512_reduce_add_ps(acc[q]);
	}
}

TARGET static void dot_dpbf16(const uint16_t *w, const uint16_t *const xp[3], float *out)
{
	for (size_t r = 0; r < ROWS; r += 4) {
		__m512 acc[4] = { _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
				  _mm512_setzero_ps() };

		for (size_t i = 0; i < K; i += 32)
			for (size_t q = 0; q < 4; q++) {
				__m512bh wq = (__m512bh)_mm512_loadu_si512(w + (r + q) * K + i);

				for (int p = 0; p < 3; p++)
					acc[q] = _mm512_dpbf16_ps(
						acc[q], wq, (__m512bh)_mm512_loadu_si512(xp[p] + i));
			}
		for (size_t q = 0; q < 4; q++)
			out[r + q] = _mm512_reduce_add_ps(acc[q]);
	}
}

static uint16_t to_bf16(float f)
{
	uint32_t u;

	memcpy(&u, &f, 4);
	return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
}

static float from_bf16(uint16_t h)
{
	uint32_t u = (uint32_t)h << 16;
	float f;

	memcpy(&f, &u, 4);
	return f;
}

int main(void)
{
	uint16_t *w = malloc((size_t)ROWS * K * 2), *xp[3];
	float *x = malloc(K * 4), *a = malloc(ROWS * 4), *b = malloc(ROWS * 4);

	if (!__builtin_cpu_supports("avx512bf16")) {
		fprintf(stderr, "this CPU has no AVX512-BF16\n");
		return 77;
	}
	for (int p = 0; p < 3; p++)
		xp[p] = malloc(K * 2);
	for (size_t i = 0; i < (size_t)ROWS * K; i++)
		w[i] = to_bf16((float)((i * 2654435761u) % 1000 - 500.0) * 1e-4f);
	for (size_t i = 0; i < K; i++) {
		float rest = x[i] = (float)((i * 40503u) % 997 - 498.0) * 1.37e-3f;

		for (int p = 0; p < 3; p++) {   /* x = hi + mid + lo to ~2^-26 */
			xp[p][i] = to_bf16(rest);
			rest -= from_bf16(xp[p][i]);
		}
	}
	for (int rep = 0; rep < 5; rep++) {
		double t0 = bench_now(), t1, t2, diff = 0;

		dot_widen(w, x, a);
		t1 = bench_now();
		dot_dpbf16(w, (const uint16_t *const *)xp, b);
		t2 = bench_now();
		for (size_t r = 0; r < ROWS; r++)
			diff = fabsf(a[r] - b[r]) > diff ? fabsf(a[r] - b[r]) : diff;
		printf("widen %.1f GB/s   dpbf16 %.1f GB/s   max difference %.2g\n",
		       ROWS * (double)K * 2 / (t1 - t0) / 1e9, ROWS * (double)K * 2 / (t2 - t1) / 1e9,
		       diff);
	}
	return 0;
}
