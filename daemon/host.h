/*
 * The host function table handed to every plugin's init(): logging under the
 * plugin's name and an fp32 matmul backed by OpenBLAS, which host_init() pins to
 * one thread per caller (the daemon's worker pool owns the cores).  Errors a
 * plugin logs are also kept per thread, for the reply to the client.
 */
#ifndef MOED_HOST_H
#define MOED_HOST_H

#include "include/moed/plugin.h"

struct pool;

void host_init(void);
/* The pool whose idle workers run plugins' parallel_for tasks (NULL: serial). */
void host_set_pool(struct pool *pool);
const struct moed_host *host_table(void);
/* The last error a plugin logged on this thread since host_clear_error(), or
 * "" — so a failed init()/layer_new() can tell the client why. */
const char *host_last_error(void);
void host_clear_error(void);

#endif
