/*
 * One plugin host for everything that loads a plugin without the daemon: the
 * backend tests (tests/unit, tests/gpu) and the benchmarks (bench/).  It is
 * the `struct moed_host` table a plugin's init() gets, with the members that
 * ABI 1 has: log (one line to stderr, the last line kept for assertions),
 * sgemm_nt (a plain loop: slow, exact enough for tests) and parallel_for,
 * backed by the daemon's own worker pool (daemon/pool.c): the calling thread
 * plus threads - 1 pool workers, as in moed.  Link with libmoedcore.la.
 *
 * Not thread-safe to configure: call the fake_host_set_* functions while no
 * plugin call is running.  log and parallel_for may be called from any thread.
 */
#ifndef MOED_TESTS_FAKE_HOST_H
#define MOED_TESTS_FAKE_HOST_H

#include "include/moed/plugin.h"

/* How parallel_for runs the indices. */
enum fake_host_order {
	FAKE_HOST_POOL,         /* on the pool (default; serial with 1 thread) */
	FAKE_HOST_FORWARD,      /* serially on the caller, 0 .. n-1 */
	FAKE_HOST_REVERSE,      /* serially on the caller, n-1 .. 0 */
};

/* The table to pass to init(); valid for the life of the process. */
const struct moed_host *fake_host(void);

/* Run parallel_for on `threads` threads (caller included; 1 = serial): stops
 * the previous pool, starts threads - 1 workers.  0 or -errno. */
int fake_host_set_threads(unsigned threads);
void fake_host_set_order(enum fake_host_order order);
/* Print lines at level <= max_level (MOED_LOG_*; default MOED_LOG_DEBUG: all). */
void fake_host_set_verbosity(int max_level);

/* The last line logged (any level, printed or not); "" after a reset. */
const char *fake_host_last_log(void);
/* Lines logged at MOED_LOG_ERR or worse since the last reset. */
unsigned fake_host_errors(void);
void fake_host_reset_log(void);

/* Stop the pool (parallel_for is serial afterwards).  Safe to call twice. */
void fake_host_stop(void);

#endif
