/*
 * The host function table handed to every plugin's init(): logging under the
 * plugin's name and an fp32 matmul backed by OpenBLAS, which host_init() pins to
 * one thread per caller (the daemon's worker pool owns the cores).
 */
#ifndef MOED_HOST_H
#define MOED_HOST_H

#include "include/moed/plugin.h"

void host_init(void);
const struct moed_host *host_table(void);

#endif
