/*
 * What every expert backend checks of the layer it is given before trusting
 * it: the spec's size, a weight dtype it computes with (F32 or BF16, and FP8
 * E4M3 with a scale for every matrix where the backend says it can), sane
 * dimensions, and a weight pointer for every matrix; and that the layer uses
 * none of the ABI-2 features the backend does not implement (FP8 weights,
 * block scales, a shared-expert gate, a local subset of experts).  Refusals are logged
 * through the host under the plugin's name.
 */
#ifndef MOED_EXPERT_SPEC_H
#define MOED_EXPERT_SPEC_H

#include "include/moed/plugin.h"

#define EXPERT_SPEC_MAX_DIM (1u << 20)          /* largest H, I or shared width */
#define EXPERT_SPEC_MAX_EXPERTS 65536u

/* ABI-2 features a backend computes with (expert_spec_check_caps). */
#define EXPERT_CAP_FP8 1u               /* F8_E4M3 weights with block scales */
#define EXPERT_CAP_SHARED_GATE 2u       /* Qwen2-MoE's shared-expert gate */
/* a local subset of the experts (spec->local, expert parallelism): only the
 * local experts need weights, and forward() skips entries with expert id -1 */
#define EXPERT_CAP_LOCAL 4u

/* The spec's local flags (NULL = every expert is here). */
static inline const uint8_t *expert_spec_local(const struct moed_expert_spec *s)
{
	return MOED_STRUCT_HAS(s, struct moed_expert_spec, local) ? s->local : NULL;
}

/* 0, -EINVAL (malformed) or -ENOTSUP (dtype or feature not supported). */
int expert_spec_check(const struct moed_host *host, const char *plugin,
		      const struct moed_expert_spec *s);
/* The same for a backend that implements the features in caps. */
int expert_spec_check_caps(const struct moed_host *host, const char *plugin,
			   const struct moed_expert_spec *s, unsigned caps);

#endif
