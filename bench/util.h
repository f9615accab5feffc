/* Helpers shared by the benchmarks (bench/util.c). */
#ifndef MOED_BENCH_UTIL_H
#define MOED_BENCH_UTIL_H

#include <stddef.h>

double bench_now(void);                         /* CLOCK_MONOTONIC seconds */
double bench_median(double *v, size_t n);       /* sorts v */

#endif
