/*
 * The large-group expert path: OpenBLAS sgemm, in the two halves kernels.h
 * describes so an expert can be shared out as (expert, row-slice) tasks.  A
 * group is cut into blocks of GEMM_TOKENS tokens (bounded scratch whatever the
 * batch); the act half gathers a block's rows of x (or uses them in place
 * when the tokens are consecutive, as for the shared experts), runs gate into
 * the act rows and up into scratch (a slice at a time for fp32, GEMM_ROWS
 * rows for bf16), and applies silu(gate) * up in place; the down half multiplies the block's act rows by
 * a slice of down rows and adds the router-weighted result into y.  bf16
 * weights are widened GEMM_ROWS rows at a time into scratch right before the
 * sgemm that reads them, so the widened block is still in cache.  OpenBLAS
 * runs on the calling thread's terms: its thread count is the daemon's
 * business, never set here.
 */
#include <cblas.h>
#include <string.h>

#include "plugins/cpu/kernels.h"

size_t expert_gemm_scratch(uint32_t H, uint32_t inter, int convert)
{
	size_t n = (size_t)GEMM_TOKENS * H + (size_t)GEMM_TOKENS * GEMM_SLICE_MAX;

	if (convert)
		n += (size_t)GEMM_ROWS * (H > inter ? H : inter);
	return n;
}

static void widen_bf16(const uint16_t *restrict src, size_t n, float *restrict dst)
{
	uint32_t *d = (uint32_t *)dst;

	for (size_t i = 0; i < n; i++)
		d[i] = (uint32_t)src[i] << 16;
}

/* c[i][0:nr] = a[i] · w[r:r+nr]^T for i < m; rows of w and a have K elements;
 * scale: w's block scales when e is FP8. */
static void rows_nt(const struct expert_w *e, const void *w, const float *scale, uint32_t r,
		    uint32_t nr, uint32_t K, const float *a, size_t m, float *c, uint32_t ldc,
		    float *wconv)
{
	const float *wf = (const float *)w + (size_t)r * K;
	int bf16 = e->bf16;

	if (e->fp8) {
		fp8_decode_rows(w, scale, e->br, e->bc, r, nr, K, wconv);
		wf = wconv;
	} else if (bf16) {
		widen_bf16((const uint16_t *)w + (size_t)r * K, (size_t)nr * K, wconv);
		wf = wconv;
	}
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)m, (blasint)nr, (blasint)K,
		    1.0f, a, (blasint)K, wf, (blasint)K, 0.0f, c, (blasint)ldc);
}

/* Rows per sgemm call: all of a slice for fp32 (OpenBLAS packs the tokens
 * once per call), GEMM_ROWS for bf16 (the widened block in scratch). */
static uint32_t block_rows(const struct expert_w *e, uint32_t left)
{
	return (e->bf16 || e->fp8) && left > GEMM_ROWS ? GEMM_ROWS : left;
}

void expert_gemm_act(const struct expert_w *e, const float *x, const struct group *g, float *act,
		     uint32_t r0, uint32_t r1, float *scratch)
{
	uint32_t H = e->H, In = e->inter;
	float *xs = scratch, *up = xs + (size_t)GEMM_TOKENS * H;
	float *wconv = up + (size_t)GEMM_TOKENS * GEMM_SLICE_MAX;

	for (size_t j0 = 0; j0 < g->n; j0 += GEMM_TOKENS) {
		size_t nt = g->n - j0 < GEMM_TOKENS ? g->n - j0 : GEMM_TOKENS;
		const float *xa = xs;

		if (g->tok) {
			for (size_t j = 0; j < nt; j++)
				memcpy(xs + j * H, x + (size_t)g->tok[j0 + j] * H,
				       H * sizeof(float));
		} else {
			xa = x + (g->first + j0) * H;
		}
		for (uint32_t r = r0, nr; r < r1; r += nr) {
			float *a = act + j0 * In + r;

			nr = block_rows(e, r1 - r);
			rows_nt(e, e->gate, e->gate_s, r, nr, H, xa, nt, a, In, wconv);
			rows_nt(e, e->up, e->up_s, r, nr, H, xa, nt, up, nr, wconv);
			for (size_t j = 0; j < nt; j++)
				for (uint32_t i = 0; i < nr; i++)
					a[j * In + i] = silu(a[j * In + i]) * up[j * nr + i];
		}
	}
}

void expert_gemm_down(const struct expert_w *e, const float *act, const struct group *g,
		      float *y, uint32_t h0, uint32_t h1, float *scratch)
{
	uint32_t H = e->H, In = e->inter;
	float *out = scratch, *wconv = out + (size_t)GEMM_TOKENS * GEMM_SLICE_MAX;

	for (size_t j0 = 0; j0 < g->n; j0 += GEMM_TOKENS) {
		size_t nt = g->n - j0 < GEMM_TOKENS ? g->n - j0 : GEMM_TOKENS;

		for (uint32_t h = h0, nr; h < h1; h += nr) {
			nr = block_rows(e, h1 - h);
			rows_nt(e, e->down, e->down_s, h, nr, In, act + j0 * In, nt, out, nr, wconv);
			for (size_t j = 0; j < nt; j++) {
				float *yj = y + group_tok(g, j0 + j) * H + h, w = group_w(g, j0 + j);
				const float *oj = out + j * nr;

				for (uint32_t i = 0; i < nr; i++)
					yj[i] += w * oj[i];
			}
		}
	}
}
