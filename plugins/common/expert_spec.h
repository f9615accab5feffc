/*
 * What every expert backend checks of the layer it is given before trusting
 * it: the spec's size, a weight dtype it computes with (F32 or BF16), sane
 * dimensions, and a weight pointer for every matrix; and that the layer uses
 * none of the ABI-2 features they do not implement yet (FP8 weights, block
 * scales, a shared-expert gate, a local subset of experts).  Refusals are logged
 * through the host under the plugin's name.
 */
#ifndef MOED_EXPERT_SPEC_H
#define MOED_EXPERT_SPEC_H

#include "include/moed/plugin.h"

#define EXPERT_SPEC_MAX_DIM (1u << 20)          /* largest H, I or shared width */
#define EXPERT_SPEC_MAX_EXPERTS 65536u

/* 0, -EINVAL (malformed) or -ENOTSUP (dtype or feature not supported). */
int expert_spec_check(const struct moed_host *host, const char *plugin,
		      const struct moed_expert_spec *s);

#endif
