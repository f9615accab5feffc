/*
 * Expert kernels.  Numerics: every dot product and the weighted sum accumulate
 * in fp32; bf16 weights are widened exactly (bf16 is the top half of an fp32).
 */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "plugins/cpu/kernels.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define MULTIVERSION __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define MULTIVERSION
#endif

float silu(float z)
{
	return z / (1.0f + expf(-z));
}

static inline float bf16_to_f32(uint16_t v)
{
	uint32_t u = (uint32_t)v << 16;
	float f;

	memcpy(&f, &u, sizeof(f));
	return f;
}

MULTIVERSION
static float dot_f32(const float *restrict a, const float *restrict b, uint32_t n)
{
	float acc[16] = { 0 };
	uint32_t i = 0;

	for (; i + 16 <= n; i += 16)
		for (int j = 0; j < 16; j++)
			acc[j] += a[i + j] * b[i + j];
	float s = 0.0f;
	for (int j = 0; j < 16; j++)
		s += acc[j];
	for (; i < n; i++)
		s += a[i] * b[i];
	return s;
}

MULTIVERSION
static float dot_bf16(const uint16_t *restrict a, const float *restrict b, uint32_t n)
{
	float acc[16] = { 0 };
	uint32_t i = 0;

	for (; i + 16 <= n; i += 16)
		for (int j = 0; j < 16; j++)
			acc[j] += bf16_to_f32(a[i + j]) * b[i + j];
	float s = 0.0f;
	for (int j = 0; j < 16; j++)
		s += acc[j];
	for (; i < n; i++)
		s += bf16_to_f32(a[i]) * b[i];
	return s;
}

static float dot_row(const void *w, int bf16, size_t row, uint32_t n, const float *x)
{
	if (bf16)
		return dot_bf16((const uint16_t *)w + row * n, x, n);
	return dot_f32((const float *)w + row * n, x, n);
}

void expert_small(const struct expert_w *e, const float *x, const struct group *g, float *y,
		  float *act)
{
	uint32_t H = e->H, In = e->inter;

	/* act[j][i] = silu(gate_i · x_j) * (up_i · x_j): each gate/up row read once */
	for (uint32_t i = 0; i < In; i++)
		for (size_t j = 0; j < g->n; j++) {
			const float *xj = x + (size_t)g->tok[j] * H;
			float a = dot_row(e->gate, e->bf16, i, H, xj);
			float b = dot_row(e->up, e->bf16, i, H, xj);
			act[j * In + i] = silu(a) * b;
		}
	/* y[tok_j][h] += w_j * (down_h · act_j): each down row read once */
	for (uint32_t h = 0; h < H; h++)
		for (size_t j = 0; j < g->n; j++)
			y[(size_t)g->tok[j] * H + h] +=
				g->w[j] * dot_row(e->down, e->bf16, h, In, act + j * In);
}

static const float *as_f32(const void *w, int bf16, size_t n, float *scratch)
{
	if (!bf16)
		return w;
	for (size_t i = 0; i < n; i++)
		scratch[i] = bf16_to_f32(((const uint16_t *)w)[i]);
	return scratch;
}

void expert_gemm(const struct expert_w *e, const float *x, const struct group *g, float *y,
		 float *scratch, float *wscratch)
{
	uint32_t H = e->H, In = e->inter;
	int n = (int)g->n;
	float *xs = scratch, *gt = xs + g->n * H, *up = gt + g->n * In, *out = up + g->n * In;
	const float *wg, *wu, *wd;

	for (size_t j = 0; j < g->n; j++)
		memcpy(xs + j * H, x + (size_t)g->tok[j] * H, H * sizeof(float));
	wg = as_f32(e->gate, e->bf16, (size_t)In * H, wscratch);
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, (int)In, (int)H, 1.0f, xs, (int)H,
		    wg, (int)H, 0.0f, gt, (int)In);
	wu = as_f32(e->up, e->bf16, (size_t)In * H, wscratch ? wscratch + (size_t)In * H : NULL);
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, (int)In, (int)H, 1.0f, xs, (int)H,
		    wu, (int)H, 0.0f, up, (int)In);
	for (size_t i = 0; i < g->n * In; i++)
		gt[i] = silu(gt[i]) * up[i];
	wd = as_f32(e->down, e->bf16, (size_t)H * In,
		    wscratch ? wscratch + 2 * (size_t)In * H : NULL);
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, (int)H, (int)In, 1.0f, gt, (int)In,
		    wd, (int)In, 0.0f, out, (int)H);
	for (size_t j = 0; j < g->n; j++) {
		float *yj = y + (size_t)g->tok[j] * H;
		const float *oj = out + j * H;
		for (uint32_t h = 0; h < H; h++)
			yj[h] += g->w[j] * oj[h];
	}
}
