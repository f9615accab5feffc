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
 * Run the peer script on shape s for the nT token counts Ts with `threads`
 * threads: ms[i] gets its median milliseconds for Ts[i] (0 if it failed), and
 * *err the max relative difference between its output for `check_T` tokens
 * and y_check (ours), or -1.
 */
void peer_run(const char *script, const struct shape *s, int bf16, unsigned threads,
	      const size_t *Ts, size_t nT, const float *y_check, size_t check_T, double *ms,
	      double *err);

#endif
