/*
 * A monotonic clock for code without libuv (moectl, the benchmarks); the
 * daemon uses uv_hrtime(), which reads the same clock.
 */
#ifndef MOED_COMMON_CLOCK_H
#define MOED_COMMON_CLOCK_H

#include <stdint.h>
#include <time.h>

/* CLOCK_MONOTONIC in nanoseconds. */
static inline uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

#endif
