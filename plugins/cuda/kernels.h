/*
 * Device kernels of the cuda expert backend, behind a C interface so that
 * cuda.c stays plain C.  kernels.cu implements them; every function enqueues
 * work on the given stream and returns the launch's cudaError_t as an int
 * (0 = cudaSuccess), never waiting for the device.
 *
 * Token sorting: the T*k (token, slot) choices are split into chunks of
 * MOE_SORT_CHUNK; moe_sort() counts each chunk's experts, scans the counts into
 * per-expert segment offsets (E+1 of them) and scatters every choice to
 * offsets[e] + (earlier choices of e), a stable and deterministic order.
 * pos[i] remembers where choice i went, so moe_combine() can add each token's
 * k rows back in slot order without atomics.
 */
#ifndef MOED_PLUGIN_CUDA_KERNELS_H
#define MOED_PLUGIN_CUDA_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MOE_SORT_CHUNK 256
/* Largest segment the row-reading kernel takes; bigger ones go to cuBLAS. */
#define MOE_SMALL_MAX_ROWS 16
/* Items per moe_small_nt() launch: keeps the by-value argument under 4 KiB. */
#define MOE_ITEMS_MAX 240

/* One expert segment for moe_small_nt(): rows [off, off + rows) of the input. */
struct moe_item {
	uint32_t expert;
	uint16_t rows;          /* 1..MOE_SMALL_MAX_ROWS */
	uint16_t pad;
	uint32_t off;
	uint32_t pad2;
};

struct moe_items {
	uint32_t n;
	uint32_t max_rows;      /* largest rows among it[0..n) */
	struct moe_item it[MOE_ITEMS_MAX];
};

/* A no-op kernel: tells whether this binary has code for the current device. */
int moe_probe(cudaStream_t s);

/* Int32 words of scratch moe_sort() needs for n choices over E experts. */
size_t moe_sort_scratch(size_t n, uint32_t E);

/* experts [n] (already checked to lie in [0, E)) -> offsets [E+1], tok [n]
 * (token of each sorted row: choice / k), pos [n] (sorted row of each choice). */
int moe_sort(const int32_t *experts, uint32_t n, uint32_t k, uint32_t E, int32_t *scratch,
	     int32_t *offsets, int32_t *tok, int32_t *pos, cudaStream_t s);

/* xs[r] = x[tok[r]] for r < n; rows of H floats. */
int moe_gather(const float *x, const int32_t *tok, uint32_t n, uint32_t H, float *xs,
	       cudaStream_t s);

/* For every item: out[off + r][j] = sum_k W_e[j][k] * in[off + r][k] for
 * r < rows, j < out_dim.  W_e = W + expert * estride elements, row-major
 * [out_dim][K], fp32 or bf16 (top halves of fp32); fp32 arithmetic either way.
 * in has rows of K floats, out rows of ld_out floats. */
int moe_small_nt(const struct moe_items *items, const void *W, size_t estride, int bf16,
		 uint32_t out_dim, uint32_t K, const float *in, float *out, uint32_t ld_out,
		 cudaStream_t s);

/* act[r][i] = silu(h[r][i]) * h[r][I + i], h rows of 2I, act rows of I. */
int moe_swiglu(const float *h, uint32_t rows, uint32_t I, float *act, cudaStream_t s);

/* dst = bf16(src), round to nearest even. */
int moe_to_bf16(const float *src, size_t count, uint16_t *dst, cudaStream_t s);

/* dst = widen(src): bf16 -> fp32, exact. */
int moe_from_bf16(const uint16_t *src, size_t count, float *dst, cudaStream_t s);

/* y[t] = sum_{j<k} w[t*k+j] * ys[pos[t*k+j]] (+ ysh[t] when ysh != NULL), in
 * that order, for t < T; rows of H floats. */
int moe_combine(const float *ys, const int32_t *pos, const float *w, const float *ysh,
		uint32_t T, uint32_t k, uint32_t H, float *y, cudaStream_t s);

#ifdef __cplusplus
}
#endif

#endif
