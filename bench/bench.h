/*
 * Shared declarations of the cpu expert benchmark (bench/expert_bench.c): the
 * shapes, the generator both sides of a comparison build the layer from
 * (bench/gen.c, mirrored in bench/torch_peer.py), the limits measured at the
 * start of a run (bench/limits.c) and the PyTorch peer (bench/peer.c).
 */
#ifndef MOED_BENCH_H
#define MOED_BENCH_H

#include <stddef.h>
#include <stdint.h>

struct shape {
	const char *id;
	uint32_t H, In, E, k, n_shared;
};

enum bench_dtype { BENCH_F32, BENCH_BF16, BENCH_FP8 };

size_t bench_dtype_size(enum bench_dtype d);    /* bytes per weight */
const char *bench_dtype_name(enum bench_dtype d);

/* Element i of tensor `id`: uniform in [-scale/2, scale/2), exactly an fp32. */
float bench_value(uint64_t id, uint64_t i, float scale);
/* bytes as the layer's weights are held: 2 MiB aligned and advised huge
 * pages (unless MOED_NO_HUGEPAGES is set); exits on failure. */
void *bench_huge_alloc(size_t bytes);
/* n weights of tensor id in dtype d (malloc'd; exits on failure).  fp8: E4M3
 * codes of magnitude below 2^7, never NaN, to be multiplied by gen_scales(). */
void *gen_weights(uint64_t id, size_t n, enum bench_dtype d);
/* Block scales of an FP8 matrix of rows x cols, 128x128 blocks, row-major
 * over blocks: 2^-12 .. 2^-9 (malloc'd). */
float *gen_scales(uint64_t id, uint32_t rows, uint32_t cols);
/* Distinct top-k routes of rep `rep` for T tokens (ex, w: T * k); returns the
 * number of distinct experts. */
unsigned gen_routes(const struct shape *s, size_t T, double zipf, unsigned rep, int32_t *ex,
		    float *w);

struct limits {
	double peak;            /* cblas_sgemm 4096^3, GFLOP/s */
	double bw;              /* streaming read, the best variant, GB/s */
	size_t bw_mib;          /* its buffer, MiB */
	unsigned bw_streams;    /* its sequential streams per thread */
	unsigned bw_prefetch;   /* its software prefetch distance, bytes (0: none) */
	double fma_peak;        /* AVX-512 fp32 FMA, registers only, GFLOP/s; 0 = none */
	double bf16_peak;       /* AVX512-BF16 vdpbf16ps, GFLOP/s; 0 = not on this CPU */
	double amx_peak;        /* AMX-BF16 TDPBF16PS, tiles only, GFLOP/s; 0 = not here */
};

/* All limits with `threads` threads (OpenBLAS's for sgemm, ours for the
 * rest); quick: small sizes, for tests of the harness only. */
void limits_measure(unsigned threads, int quick, struct limits *ret);

/* Push the weights of the previous call out of the caches: reads a buffer of
 * four times the L3 (at least 64 MiB). */
void bench_evict(void);

/*
 * The PyTorch peer, a child process holding the same layer (bench/peer.c):
 * peer_time() runs one forward on T tokens of rep `rep`'s routes and returns
 * its seconds (< 0 on failure); peer_check() returns the max relative
 * difference between its output and y (ours) for T tokens of rep 0, or < 0.
 * dtype fp8 makes the peer run bf16 on the dequantised weights.
 */
struct peer;
struct peer *peer_start(const char *script, const struct shape *s, enum bench_dtype d,
			unsigned threads, size_t max_T, double zipf);
double peer_time(struct peer *p, const struct shape *s, size_t T, unsigned rep);
double peer_check(struct peer *p, const struct shape *s, size_t T, const float *y);
void peer_stop(struct peer *p);

#endif
