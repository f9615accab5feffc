/*
 * The large-group expert path: OpenBLAS sgemm.  A group is cut into blocks of
 * GEMM_TOKENS tokens (bounded scratch whatever the batch); each block's rows of
 * x are gathered (or used in place when the tokens are consecutive, as for the
 * shared experts), then gate and up are two sgemms, silu(gate) * up is applied
 * in place, down is a third sgemm, and the router-weighted rows are added into
 * y.  bf16 weights are widened GEMM_ROWS rows at a time into scratch right
 * before the sgemm that reads them, so the widened block is still in cache.
 * OpenBLAS runs on the calling thread's terms: its thread count is the
 * daemon's business, never set here.
 */
#include <cblas.h>
#include <string.h>

#include "plugins/cpu/kernels.h"

size_t expert_gemm_scratch(uint32_t H, uint32_t inter, int bf16)
{
	size_t n = (size_t)GEMM_TOKENS * (2 * (size_t)H + 2 * (size_t)inter);

	if (bf16)
		n += (size_t)GEMM_ROWS * (H > inter ? H : inter);
	return n;
}

static void widen_bf16(const uint16_t *restrict src, size_t n, float *restrict dst)
{
	uint32_t *d = (uint32_t *)dst;

	for (size_t i = 0; i < n; i++)
		d[i] = (uint32_t)src[i] << 16;
}

/* c[i][0:rows] = a[i] · w[0:rows]^T for i < m; rows of w and a have K elements. */
static void rows_nt(const void *w, int bf16, uint32_t rows, uint32_t K, const float *a, size_t m,
		    float *c, uint32_t ldc, float *wconv)
{
	if (!bf16) {
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)m, (blasint)rows,
			    (blasint)K, 1.0f, a, (blasint)K, w, (blasint)K, 0.0f, c, (blasint)ldc);
		return;
	}
	for (uint32_t r0 = 0; r0 < rows; r0 += GEMM_ROWS) {
		uint32_t nr = rows - r0 < GEMM_ROWS ? rows - r0 : GEMM_ROWS;

		widen_bf16((const uint16_t *)w + (size_t)r0 * K, (size_t)nr * K, wconv);
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)m, (blasint)nr,
			    (blasint)K, 1.0f, a, (blasint)K, wconv, (blasint)K, 0.0f, c + r0,
			    (blasint)ldc);
	}
}

static void gemm_block(const struct expert_w *e, const float *x, const struct group *g,
		       size_t j0, size_t nt, float *y, float *scratch)
{
	uint32_t H = e->H, In = e->inter;
	float *xs = scratch, *gt = xs + (size_t)GEMM_TOKENS * H;
	float *up = gt + (size_t)GEMM_TOKENS * In, *out = up + (size_t)GEMM_TOKENS * In;
	float *wconv = out + (size_t)GEMM_TOKENS * H;
	const float *xa = xs;

	if (g->tok) {
		for (size_t j = 0; j < nt; j++)
			memcpy(xs + j * H, x + (size_t)g->tok[j0 + j] * H, H * sizeof(float));
	} else {
		xa = x + (g->first + j0) * H;
	}
	rows_nt(e->gate, e->bf16, In, H, xa, nt, gt, In, wconv);
	rows_nt(e->up, e->bf16, In, H, xa, nt, up, In, wconv);
	for (size_t i = 0; i < nt * In; i++)
		gt[i] = silu(gt[i]) * up[i];
	rows_nt(e->down, e->bf16, H, In, gt, nt, out, H, wconv);
	for (size_t j = 0; j < nt; j++) {
		float *yj = y + group_tok(g, j0 + j) * H, w = group_w(g, j0 + j);
		const float *oj = out + j * H;

		for (uint32_t h = 0; h < H; h++)
			yj[h] += w * oj[h];
	}
}

void expert_gemm(const struct expert_w *e, const float *x, const struct group *g, float *y,
		 float *scratch)
{
	for (size_t j0 = 0; j0 < g->n; j0 += GEMM_TOKENS) {
		size_t nt = g->n - j0 < GEMM_TOKENS ? g->n - j0 : GEMM_TOKENS;

		gemm_block(e, x, g, j0, nt, y, scratch);
	}
}
