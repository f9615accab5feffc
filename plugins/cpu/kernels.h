/*
 * CPU expert kernels: SwiGLU of one expert over a group of tokens, in two
 * forms.  The small-group kernel reads every weight row once for all the
 * group's tokens (gate and up fused, router weight applied in the down pass);
 * the large-group path gathers the tokens and calls sgemm.  Weights are fp32 or
 * bf16 (converted on the fly in the small kernel, per matrix into scratch for
 * sgemm).  Dot products are compiled for AVX-512, AVX2 and plain x86-64 and
 * picked at run time (target_clones).
 */
#ifndef MOED_CPU_KERNELS_H
#define MOED_CPU_KERNELS_H

#include <stddef.h>
#include <stdint.h>

struct expert_w {
	const void *gate;       /* [I][H] */
	const void *up;         /* [I][H] */
	const void *down;       /* [H][I] */
	uint32_t H, inter;
	int bf16;
};

/* A group: n tokens, rows of x by index, each with its router weight. */
struct group {
	size_t n;
	const int32_t *tok;     /* token indices */
	const float *w;         /* router weights (1.0 for shared experts) */
};

/* y[tok[j]] += w[j] * FFN(x[tok[j]]) for the group.  scratch: n*I floats. */
void expert_small(const struct expert_w *e, const float *x, const struct group *g, float *y,
		  float *scratch);
/* Same with sgemm; scratch: n*(H + 3*I) floats (+ converted weights for bf16,
 * 3*I*H floats, in wscratch, may be NULL for fp32). */
void expert_gemm(const struct expert_w *e, const float *x, const struct group *g, float *y,
		 float *scratch, float *wscratch);

float silu(float z);

#endif
