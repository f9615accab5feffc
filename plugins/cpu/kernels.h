/*
 * CPU expert kernels: one SwiGLU expert applied to a group of tokens.
 *
 * Two paths.  The small-group kernel reads every weight row once for all the
 * group's tokens (gate and up fused, router weight applied in the down pass);
 * it is plain C with GNU vector extensions, compiled once per instruction set
 * and listed in a table (struct cpu_isa) that layer_new() picks from at run
 * time, so hand-written variants can be added as new table entries.  The large
 * group path is, on AVX-512, a packed-panel fp32 GEMM (f32_gemm.c); elsewhere,
 * and for FP8 weights, it gathers the tokens and calls OpenBLAS sgemm on
 * blocks of tokens and weight rows (bf16 rows widened into scratch one block
 * at a time).
 *
 * FP8 E4M3 weights: large groups take the sgemm path, each block of rows
 * decoded (exactly) and multiplied by its block scales into fp32 scratch;
 * small groups decode the codes in registers inside the dot products
 * (fp8_impl.h; the generic entry a row at a time into scratch, fp8.c).
 * Memory holds one byte per weight either way.
 *
 * precision = bf16 (bf16.c, AVX512-BF16): activations rounded to bf16 meet
 * bf16 weights, or FP8 codes decoded exactly to bf16, in vdpbf16ps dot
 * products: a row-reading kernel for small groups and a packed-panel GEMM for
 * large ones, in the same two halves (struct cpu_bf16_ops); on AMX-BF16
 * (isa = amx) the large ones run on tiles instead (amx_gemm.c).
 *
 * Numerics: every dot product and the weighted sum accumulate in fp32; bf16
 * weights are widened exactly (bf16 is the top half of an fp32); an FP8
 * weight is fp8 * scale rounded once to fp32.  A token's
 * result does not depend on the other tokens of its group.
 */
#ifndef MOED_CPU_KERNELS_H
#define MOED_CPU_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Tokens per sgemm block, bf16 rows widened per sgemm, and the most rows
 * of a slice handed to the sgemm halves (callers keep slices within it). */
#define GEMM_TOKENS 256u
/* Tokens per block of the bf16 GEMM (bf16_gemm.c): each packed panel is used by
 * up to this many (S1, one expert, 1024 tokens: about 5% faster than 256). */
#define B16_GEMM_TOKENS 1024u
#define GEMM_ROWS 256u
#define GEMM_SLICE_MAX 512u
/* Weight rows per task of the small kernel (a multiple of its row block). */
#define SMALL_TASK_ROWS 128u

struct expert_w {
	const void *gate;       /* [I][H] */
	const void *up;         /* [I][H] */
	const void *down;       /* [H][I] */
	uint32_t H, inter;
	int bf16;
	/* FP8 E4M3 (bf16 == 0): fp32 block scales of each matrix, blocks of br x bc */
	int fp8;
	const float *gate_s, *up_s, *down_s;
	uint32_t br, bc;
	/* BF16 weights pre-packed for the bf16 GEMM (cpu_bf16_ops.prepack), or
	 * NULL: the GEMM packs each panel as it goes */
	const uint32_t *packed;
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

/*
 * The two halves of an expert, each over a slice of weight rows, so one
 * expert can be shared out as (expert, row-slice) tasks:
 *  act:  act[j][i] = silu(gate_i . x[tok j]) * (up_i . x[tok j]) for rows
 *        r0 <= i < r1 and j < g->n (act rows are e->inter floats apart);
 *  down: y[tok j][h] += w[j] * (down_h . act[j]) for rows h0 <= h < h1.
 * Slices of one expert touch disjoint act columns / y columns.
 */
typedef void expert_act_fn(const struct expert_w *e, const float *x, const struct group *g,
			   float *act, uint32_t r0, uint32_t r1);
typedef void expert_down_fn(const struct expert_w *e, const float *act, const struct group *g,
			    float *y, uint32_t h0, uint32_t h1);

/* The same for FP8 weights; scratch: 2 * max(H, inter) floats
 * (expert_gemm_scratch() has room). */
typedef void expert_fp8_fn(const struct expert_w *e, const float *in, const struct group *g,
			   float *out, uint32_t r0, uint32_t r1, float *scratch);

/*
 * precision = bf16 (bf16.c): activations rounded to bf16 (round to nearest
 * even), held as bf16 bit patterns in rows ld elements apart (ld even: an odd
 * width gets a zero pad column).  act: act[j][i] as above, stored as bf16;
 * down: as above, y stays fp32.  small_*: the row-reading kernel, gemm_*:
 * the packed-panel GEMM (bf16 or FP8 weights; FP8 needs an even block width
 * bc, checked by cpu.c), scratch (gemm_*): expert_b16_scratch() bytes.
 */
typedef void expert_act_b16_fn(const struct expert_w *e, const uint16_t *xb, size_t ldx,
			       const struct group *g, uint16_t *act, size_t lda, uint32_t r0,
			       uint32_t r1, void *scratch);
typedef void expert_down_b16_fn(const struct expert_w *e, const uint16_t *act, size_t lda,
				const struct group *g, float *y, uint32_t h0, uint32_t h1,
				void *scratch);

struct cpu_bf16_ops {
	expert_act_b16_fn *small_act, *gemm_act;
	expert_down_b16_fn *small_down, *gemm_down;
	/* T rows of H floats to bf16 rows ld apart */
	void (*round_rows)(const float *x, size_t T, uint32_t H, uint16_t *xb, size_t ld);
	/* BF16 expert e's panels for gemm_* in P (64-byte aligned), ready for
	 * e->packed; returns the bytes they take (P NULL: only that) */
	size_t (*prepack)(const struct expert_w *e, uint32_t *P);
};

struct cpu_isa {
	const char *name;
	int (*supported)(void);
	expert_act_fn *act;
	expert_down_fn *down;
	expert_fp8_fn *fp8_act;
	expert_fp8_fn *fp8_down;
	/* native bf16 dot products (precision = bf16), or NULL: the kernels
	 * above take activations rounded to bf16 in fp32 instead */
	const struct cpu_bf16_ops *bf16;
	/* the large-group halves for F32 (and widened BF16) weights, scratch
	 * f32_gemm_scratch() floats (f32_gemm.c), or NULL: OpenBLAS sgemm */
	expert_fp8_fn *gemm_act, *gemm_down;
};

/* Table of kernels, best first, NULL-terminated. */
extern const struct cpu_isa cpu_isas[];

/* The best supported entry, or the one named (NULL if unknown or unsupported). */
const struct cpu_isa *cpu_isa_pick(const char *name);

/* The same two halves with sgemm, GEMM_TOKENS tokens and (for bf16 widened,
 * for fp8 decoded) GEMM_ROWS rows at a time; scratch: expert_gemm_scratch()
 * floats (convert: bf16 or fp8 weights). */
size_t expert_gemm_scratch(uint32_t H, uint32_t inter, int convert);
/* FP8 E4M3 code -> fp32 (0x7F, 0xFF: NaN). */
float fp8_e4m3_value(uint8_t v);
/* Rows r..r+nr of an FP8 matrix with K columns times their block scales
 * (blocks br x bc) into dst [nr][K] fp32. */
void fp8_decode_rows(const uint8_t *q, const float *scale, uint32_t br, uint32_t bc, uint32_t r,
		     uint32_t nr, uint32_t K, float *dst);
/* The FP8 lookup tables (idempotent, thread-safe). */
void fp8_init(void);
/* The two halves for an FP8 expert and a small group (fp8.c): generic decodes
 * a row at a time into scratch and dots it there; the ISA variants decode in
 * registers, the block scale loaded once per block (fp8_impl.h). */
expert_fp8_fn expert_fp8_act_generic, expert_fp8_down_generic;
#if defined(__x86_64__)
expert_fp8_fn expert_fp8_act_avx512, expert_fp8_down_avx512;
expert_fp8_fn expert_fp8_act_avx2, expert_fp8_down_avx2;
#endif
void expert_gemm_act(const struct expert_w *e, const float *x, const struct group *g, float *act,
		     uint32_t r0, uint32_t r1, float *scratch);
void expert_gemm_down(const struct expert_w *e, const float *act, const struct group *g,
		      float *y, uint32_t h0, uint32_t h1, float *scratch);

float silu(float z);

/* AVX512-BF16 kernels need a compiler that knows the instructions. */
#if defined(__x86_64__) && defined(__GNUC__) && \
	((!defined(__clang__) && __GNUC__ >= 10) || (defined(__clang__) && __clang_major__ >= 11))
#define MOED_CPU_BF16 1
extern const struct cpu_bf16_ops cpu_bf16_avx512;
#else
#define MOED_CPU_BF16 0
#endif
size_t expert_b16_scratch(uint32_t H, uint32_t inter);
/* AMX-BF16 tiles (amx_gemm.c): GCC 11 or later on x86-64. */
#if MOED_CPU_BF16 && !defined(__clang__) && __GNUC__ >= 11
#define MOED_CPU_AMX 1
extern const struct cpu_bf16_ops cpu_bf16_amx;
expert_act_b16_fn amx_gemm_act;
expert_down_b16_fn amx_gemm_down;
/* scratch of amx_gemm_*: more than expert_b16_scratch() (the gathered tokens) */
size_t amx_gemm_scratch(uint32_t H, uint32_t inter);
/* the CPU has AMX-BF16 and the kernel lets this process use the tiles */
int amx_usable(void);
#else
#define MOED_CPU_AMX 0
#endif
#if MOED_CPU_BF16
expert_fp8_fn f32_gemm_act, f32_gemm_down;
size_t f32_gemm_scratch(uint32_t H, uint32_t inter);
#define F32_GEMM_ACT f32_gemm_act
#define F32_GEMM_DOWN f32_gemm_down
#else
#define F32_GEMM_ACT NULL
#define F32_GEMM_DOWN NULL
#endif

/* f rounded to bf16, to nearest even (inputs are finite): its bit pattern,
 * and as an fp32. */
static inline uint16_t bf16_bits(float f)
{
	uint32_t u;

	memcpy(&u, &f, sizeof(u));
	u += 0x7fffu + ((u >> 16) & 1);
	return (uint16_t)(u >> 16);
}

static inline float bf16_round(float f)
{
	uint32_t u = (uint32_t)bf16_bits(f) << 16;

	memcpy(&f, &u, sizeof(f));
	return f;
}

#endif
