/*
 * CPU expert kernels: one SwiGLU expert applied to a group of tokens.
 *
 * Two paths.  The small-group kernel reads every weight row once for all the
 * group's tokens (gate and up fused, router weight applied in the down pass);
 * it is plain C with GNU vector extensions, compiled once per instruction set
 * and listed in a table (struct cpu_isa) that layer_new() picks from at run
 * time, so hand-written variants can be added as new table entries.  The large
 * group path gathers the tokens and calls OpenBLAS sgemm on blocks of tokens
 * and weight rows (bf16 rows widened into scratch one block at a time).
 *
 * Numerics: every dot product and the weighted sum accumulate in fp32; bf16
 * weights are widened exactly (bf16 is the top half of an fp32).  A token's
 * result does not depend on the other tokens of its group.
 */
#ifndef MOED_CPU_KERNELS_H
#define MOED_CPU_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* Most tokens the small kernel takes in one call (its act scratch). */
#define SMALL_CHUNK 64u
/* Tokens and weight rows per sgemm block. */
#define GEMM_TOKENS 256u
#define GEMM_ROWS 256u

struct expert_w {
	const void *gate;       /* [I][H] */
	const void *up;         /* [I][H] */
	const void *down;       /* [H][I] */
	uint32_t H, inter;
	int bf16;
};

/*
 * A group: n tokens with their router weights.  tok == NULL means the tokens
 * first, first + 1, ...; w == NULL means weight 1 (the shared experts).
 */
struct group {
	size_t n;
	const uint32_t *tok;
	size_t first;
	const float *w;
};

static inline size_t group_tok(const struct group *g, size_t j)
{
	return g->tok ? g->tok[j] : g->first + j;
}

static inline float group_w(const struct group *g, size_t j)
{
	return g->w ? g->w[j] : 1.0f;
}

/* y[tok[j]] += w[j] * FFN(x[tok[j]]) for j < g->n (at most SMALL_CHUNK).
 * act: g->n * e->inter floats. */
typedef void expert_small_fn(const struct expert_w *e, const float *x, const struct group *g,
			     float *y, float *act);

struct cpu_isa {
	const char *name;
	int (*supported)(void);
	expert_small_fn *small;
};

/* Table of kernels, best first, NULL-terminated. */
extern const struct cpu_isa cpu_isas[];

/* The best supported entry, or the one named (NULL if unknown or unsupported). */
const struct cpu_isa *cpu_isa_pick(const char *name);

/* Floats of scratch expert_small_run() / expert_gemm() need for an expert. */
size_t expert_small_scratch(uint32_t H, uint32_t inter);
size_t expert_gemm_scratch(uint32_t H, uint32_t inter, int bf16);

/* Whole group with the small kernel, SMALL_CHUNK tokens at a time. */
void expert_small_run(const struct cpu_isa *isa, const struct expert_w *e, const float *x,
		      const struct group *g, float *y, float *scratch);
/* Whole group with sgemm. */
void expert_gemm(const struct expert_w *e, const float *x, const struct group *g, float *y,
		 float *scratch);

float silu(float z);

#endif
