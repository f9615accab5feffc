/*
 * Shared declarations of the cpu expert benchmark (bench/expert_bench.c): the
 * shapes, the limits measured at the start of a run, and the PyTorch peer.
 */
#ifndef MOED_BENCH_H
#define MOED_BENCH_H

#include <stddef.h>
#include <stdint.h>

struct shape {
	const char *id;
	uint32_t H, In, E, k, n_shared;
};

struct limits {
	double peak;    /* cblas_sgemm 4096^3, GFLOP/s */
	double bw;      /* streaming read of 512 MiB, GB/s */
};

/* Both limits with `threads` threads (OpenBLAS's for sgemm, ours for the read). */
void limits_measure(unsigned threads, struct limits *ret);

/*
 * The PyTorch peer, a child process holding the same layer (bench/peer.c):
 * peer_time() runs one forward on T tokens and returns its seconds (< 0 on
 * failure); peer_check() returns the max relative difference between its
 * output and y (ours) for T tokens, or < 0.
 */
struct peer;
struct peer *peer_start(const char *script, const struct shape *s, int bf16, unsigned threads,
			size_t max_T, double zipf);
double peer_time(struct peer *p, const struct shape *s, size_t T);
double peer_check(struct peer *p, const struct shape *s, size_t T, const float *y);
void peer_stop(struct peer *p);

#endif
