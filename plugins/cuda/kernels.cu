/*
 * Device kernels of the cuda expert backend (interface and contracts in
 * kernels.h).  Everything here is deterministic: integer counting only, no
 * float atomics, every sum in a fixed order.
 *
 * moe_small_nt() is the decode path: segments of a few tokens are bound by
 * the bytes of the expert's weights, so each warp streams WJ weight rows once
 * (16-byte loads, fp32 or bf16) and multiplies them with all of the segment's
 * rows (NR, a template bound), keeping WJ*NR partial sums in registers and
 * reducing them across the warp at the end.  Larger segments go to cuBLAS in
 * cuda.c.
 */
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "plugins/cuda/kernels.h"

#define WARPS 4                 /* per block in moe_small_nt */
#define WJ 4                    /* weight rows per warp */

static_assert(sizeof(struct moe_items) <= 4096, "moe_items must fit a 4 KiB kernel argument");

static int launched(void)
{
	return (int)cudaGetLastError();
}

static __global__ void probe_kernel(void)
{
}

extern "C" int moe_probe(cudaStream_t s)
{
	probe_kernel<<<1, 1, 0, s>>>();
	return launched();
}

/* ---- sorting by expert ---- */

static size_t n_chunks(size_t n)
{
	return (n + MOE_SORT_CHUNK - 1) / MOE_SORT_CHUNK;
}

extern "C" size_t moe_sort_scratch(size_t n, uint32_t E)
{
	/* chunk counts [chunks][E], rank in chunk [n] */
	return n_chunks(n) * E + n;
}

/* One block per chunk: each choice's rank among the chunk's earlier choices
 * of the same expert; the last of them writes the chunk's count. */
static __global__ void chunk_count_kernel(const int32_t *experts, uint32_t n, uint32_t E, int32_t *cc,
				   int32_t *rank)
{
	__shared__ int32_t ids[MOE_SORT_CHUNK];
	uint32_t base = blockIdx.x * MOE_SORT_CHUNK, i = base + threadIdx.x;
	uint32_t len = min((uint32_t)MOE_SORT_CHUNK, n - base);
	int32_t e = i < n ? experts[i] : -1, r = 0, later = 0;

	ids[threadIdx.x] = e;
	__syncthreads();
	if (i >= n)
		return;
	for (uint32_t j = 0; j < len; j++) {
		r += j < threadIdx.x && ids[j] == e;
		later += j > threadIdx.x && ids[j] == e;
	}
	rank[i] = r;
	if (!later)
		cc[(size_t)blockIdx.x * E + e] = r + 1;
}

/* One block: per expert, an exclusive scan over chunks (in place, giving each
 * chunk's base within the expert's segment), then an exclusive scan over
 * experts of the totals -> offsets [E+1]. */
static __global__ void scan_kernel(int32_t *cc, uint32_t chunks, uint32_t E, int32_t *offsets)
{
	__shared__ int32_t part[1024];
	uint32_t per = (E + blockDim.x - 1) / blockDim.x;
	uint32_t e0 = threadIdx.x * per, e1 = min(E, e0 + per);
	int32_t sum = 0, run;

	for (uint32_t e = e0; e < e1; e++) {
		int32_t acc = 0;

		for (uint32_t c = 0; c < chunks; c++) {
			int32_t v = cc[(size_t)c * E + e];

			cc[(size_t)c * E + e] = acc;
			acc += v;
		}
		offsets[e] = acc;       /* total, for now */
		sum += acc;
	}
	part[threadIdx.x] = sum;
	__syncthreads();
	for (uint32_t d = 1; d < blockDim.x; d <<= 1) {
		int32_t v = threadIdx.x >= d ? part[threadIdx.x - d] : 0;

		__syncthreads();
		part[threadIdx.x] += v;
		__syncthreads();
	}
	run = part[threadIdx.x] - sum;  /* exclusive */
	for (uint32_t e = e0; e < e1; e++) {
		int32_t tot = offsets[e];

		offsets[e] = run;
		run += tot;
	}
	if (threadIdx.x == blockDim.x - 1)
		offsets[E] = part[threadIdx.x];
}

static __global__ void scatter_kernel(const int32_t *experts, uint32_t n, uint32_t k, uint32_t E,
			       const int32_t *cc, const int32_t *rank, const int32_t *offsets,
			       int32_t *tok, int32_t *pos)
{
	uint32_t i = blockIdx.x * MOE_SORT_CHUNK + threadIdx.x;
	int32_t e, p;

	if (i >= n)
		return;
	e = experts[i];
	p = offsets[e] + cc[(size_t)blockIdx.x * E + e] + rank[i];
	tok[p] = (int32_t)(i / k);
	pos[i] = p;
}

extern "C" int moe_sort(const int32_t *experts, uint32_t n, uint32_t k, uint32_t E,
			int32_t *scratch, int32_t *offsets, int32_t *tok, int32_t *pos,
			cudaStream_t s)
{
	uint32_t chunks = (uint32_t)n_chunks(n);
	int32_t *cc = scratch, *rank = scratch + (size_t)chunks * E;
	cudaError_t r;

	r = cudaMemsetAsync(cc, 0, (size_t)chunks * E * sizeof(int32_t), s);
	if (r != cudaSuccess)
		return (int)r;
	chunk_count_kernel<<<chunks, MOE_SORT_CHUNK, 0, s>>>(experts, n, E, cc, rank);
	scan_kernel<<<1, 1024, 0, s>>>(cc, chunks, E, offsets);
	scatter_kernel<<<chunks, MOE_SORT_CHUNK, 0, s>>>(experts, n, k, E, cc, rank, offsets,
							  tok, pos);
	return launched();
}

static __global__ void gather_kernel(const float *x, const int32_t *tok, uint32_t H, float *xs)
{
	const float *src = x + (size_t)tok[blockIdx.x] * H;
	float *dst = xs + (size_t)blockIdx.x * H;

	for (uint32_t h = threadIdx.x; h < H; h += blockDim.x)
		dst[h] = src[h];
}

extern "C" int moe_gather(const float *x, const int32_t *tok, uint32_t n, uint32_t H, float *xs,
			  cudaStream_t s)
{
	if (!n)
		return 0;
	gather_kernel<<<n, 256, 0, s>>>(x, tok, H, xs);
	return launched();
}

/* ---- small segments: weight rows streamed once for all of a segment's rows ---- */

/* V consecutive weights as floats; p is 16-byte aligned when V > 1. */
template <int V>
__device__ __forceinline__ void load_w(const float *p, float *w)
{
	if (V == 4) {
		float4 a = __ldg((const float4 *)p);

		w[0] = a.x, w[1] = a.y, w[2] = a.z, w[3] = a.w;
	} else {
		for (int v = 0; v < V; v++)
			w[v] = __ldg(p + v);
	}
}

template <int V>
__device__ __forceinline__ void load_w(const uint16_t *p, float *w)
{
	if (V == 8) {
		uint4 a = __ldg((const uint4 *)p);
		uint32_t u[4] = { a.x, a.y, a.z, a.w };

		for (int q = 0; q < 4; q++) {
			w[2 * q] = __uint_as_float(u[q] << 16);
			w[2 * q + 1] = __uint_as_float(u[q] & 0xffff0000u);
		}
	} else {
		for (int v = 0; v < V; v++)
			w[v] = __uint_as_float((uint32_t)__ldg(p + v) << 16);
	}
}

template <int V>
__device__ __forceinline__ void load_x(const float *p, float *x)
{
	if (V % 4 == 0) {
		for (int q = 0; q < V / 4; q++) {
			float4 a = *(const float4 *)(p + 4 * q);

			x[4 * q] = a.x, x[4 * q + 1] = a.y, x[4 * q + 2] = a.z, x[4 * q + 3] = a.w;
		}
	} else {
		for (int v = 0; v < V; v++)
			x[v] = p[v];
	}
}

template <typename WT, int NR, int V>
static __global__ void __launch_bounds__(WARPS * 32)
small_nt_kernel(const struct moe_items items, const WT *W, size_t estride, uint32_t out_dim,
		uint32_t K, const float *in, float *out, uint32_t ld_out)
{
	const struct moe_item it = items.it[blockIdx.y];
	uint32_t warp = threadIdx.x / 32, lane = threadIdx.x % 32;
	uint32_t j0 = (blockIdx.x * WARPS + warp) * WJ;
	const WT *w = W + it.expert * estride + (size_t)j0 * K;
	const float *x = in + (size_t)it.off * K;
	int rows = it.rows;
	float acc[WJ][NR];

	if (j0 >= out_dim)
		return;
#pragma unroll
	for (int jj = 0; jj < WJ; jj++)
#pragma unroll
		for (int r = 0; r < NR; r++)
			acc[jj][r] = 0.0f;
	for (uint32_t kk = lane * V; kk < K; kk += 32 * V) {
		float wv[WJ][V];

#pragma unroll
		for (int jj = 0; jj < WJ; jj++) {
			if (j0 + jj < out_dim)
				load_w<V>(w + (size_t)jj * K + kk, wv[jj]);
			else
				for (int v = 0; v < V; v++)
					wv[jj][v] = 0.0f;
		}
#pragma unroll
		for (int r = 0; r < NR; r++) {
			float xv[V];

			if (r >= rows)
				break;
			load_x<V>(x + (size_t)r * K + kk, xv);
#pragma unroll
			for (int jj = 0; jj < WJ; jj++)
#pragma unroll
				for (int v = 0; v < V; v++)
					acc[jj][r] = fmaf(wv[jj][v], xv[v], acc[jj][r]);
		}
	}
#pragma unroll
	for (int jj = 0; jj < WJ; jj++)
#pragma unroll
		for (int r = 0; r < NR; r++)
			for (int d = 16; d > 0; d >>= 1)
				acc[jj][r] += __shfl_xor_sync(0xffffffffu, acc[jj][r], d);
	if (lane)
		return;
	for (int jj = 0; jj < WJ; jj++)
		for (int r = 0; r < NR && r < rows; r++)
			if (j0 + jj < out_dim)
				out[(size_t)(it.off + r) * ld_out + j0 + jj] = acc[jj][r];
}

template <typename WT, int NR>
static void small_launch(const struct moe_items *items, const void *W, size_t estride,
			 uint32_t out_dim, uint32_t K, const float *in, float *out,
			 uint32_t ld_out, cudaStream_t s)
{
	const int V = sizeof(WT) == 4 ? 4 : 8;
	dim3 grid((out_dim + WARPS * WJ - 1) / (WARPS * WJ), items->n);

	if (K % V == 0)
		small_nt_kernel<WT, NR, V><<<grid, WARPS * 32, 0, s>>>(*items, (const WT *)W,
			estride, out_dim, K, in, out, ld_out);
	else
		small_nt_kernel<WT, NR, 1><<<grid, WARPS * 32, 0, s>>>(*items, (const WT *)W,
			estride, out_dim, K, in, out, ld_out);
}

template <typename WT>
static void small_dispatch(const struct moe_items *items, const void *W, size_t estride,
			   uint32_t out_dim, uint32_t K, const float *in, float *out,
			   uint32_t ld_out, cudaStream_t s)
{
	if (items->max_rows <= 1)
		small_launch<WT, 1>(items, W, estride, out_dim, K, in, out, ld_out, s);
	else if (items->max_rows <= 2)
		small_launch<WT, 2>(items, W, estride, out_dim, K, in, out, ld_out, s);
	else if (items->max_rows <= 4)
		small_launch<WT, 4>(items, W, estride, out_dim, K, in, out, ld_out, s);
	else if (items->max_rows <= 8)
		small_launch<WT, 8>(items, W, estride, out_dim, K, in, out, ld_out, s);
	else
		small_launch<WT, 16>(items, W, estride, out_dim, K, in, out, ld_out, s);
}

extern "C" int moe_small_nt(const struct moe_items *items, const void *W, size_t estride,
			    int bf16, uint32_t out_dim, uint32_t K, const float *in, float *out,
			    uint32_t ld_out, cudaStream_t s)
{
	if (!items->n)
		return 0;
	if (items->max_rows > MOE_SMALL_MAX_ROWS || items->n > MOE_ITEMS_MAX)
		return (int)cudaErrorInvalidValue;
	if (bf16)
		small_dispatch<uint16_t>(items, W, estride, out_dim, K, in, out, ld_out, s);
	else
		small_dispatch<float>(items, W, estride, out_dim, K, in, out, ld_out, s);
	return launched();
}

/* ---- elementwise ---- */

static __global__ void swiglu_kernel(const float *h, size_t count, uint32_t I, float *act)
{
	for (size_t q = blockIdx.x * (size_t)blockDim.x + threadIdx.x; q < count;
	     q += (size_t)gridDim.x * blockDim.x) {
		size_t r = q / I, i = q % I;
		float g = h[r * 2 * I + i], u = h[r * 2 * I + I + i];

		act[q] = g / (1.0f + expf(-g)) * u;
	}
}

static unsigned grid_for(size_t count)
{
	size_t b = (count + 255) / 256;

	return (unsigned)(b < 65536 ? (b ? b : 1) : 65536);
}

extern "C" int moe_swiglu(const float *h, uint32_t rows, uint32_t I, float *act, cudaStream_t s)
{
	size_t count = (size_t)rows * I;

	if (!count)
		return 0;
	swiglu_kernel<<<grid_for(count), 256, 0, s>>>(h, count, I, act);
	return launched();
}

static __global__ void to_bf16_kernel(const float *src, size_t count, __nv_bfloat16 *dst)
{
	for (size_t q = blockIdx.x * (size_t)blockDim.x + threadIdx.x; q < count;
	     q += (size_t)gridDim.x * blockDim.x)
		dst[q] = __float2bfloat16_rn(src[q]);
}

extern "C" int moe_to_bf16(const float *src, size_t count, uint16_t *dst, cudaStream_t s)
{
	if (!count)
		return 0;
	to_bf16_kernel<<<grid_for(count), 256, 0, s>>>(src, count, (__nv_bfloat16 *)dst);
	return launched();
}

static __global__ void from_bf16_kernel(const uint16_t *src, size_t count, float *dst)
{
	for (size_t q = blockIdx.x * (size_t)blockDim.x + threadIdx.x; q < count;
	     q += (size_t)gridDim.x * blockDim.x)
		dst[q] = __uint_as_float((uint32_t)src[q] << 16);
}

extern "C" int moe_from_bf16(const uint16_t *src, size_t count, float *dst, cudaStream_t s)
{
	if (!count)
		return 0;
	from_bf16_kernel<<<grid_for(count), 256, 0, s>>>(src, count, dst);
	return launched();
}

/* One block per token; threads across H; the k rows summed in slot order. */
static __global__ void combine_kernel(const float *ys, const int32_t *pos, const float *w,
			       const float *ysh, uint32_t k, uint32_t H, float *y)
{
	size_t t = blockIdx.x;

	for (uint32_t h = threadIdx.x; h < H; h += blockDim.x) {
		float acc = 0.0f;

		for (uint32_t j = 0; j < k; j++)
			acc += w[t * k + j] * ys[(size_t)pos[t * k + j] * H + h];
		if (ysh)
			acc += ysh[t * H + h];
		y[t * H + h] = acc;
	}
}

extern "C" int moe_combine(const float *ys, const int32_t *pos, const float *w, const float *ysh,
			   uint32_t T, uint32_t k, uint32_t H, float *y, cudaStream_t s)
{
	if (!T)
		return 0;
	combine_kernel<<<T, 256, 0, s>>>(ys, pos, w, ysh, k, H, y);
	return launched();
}
